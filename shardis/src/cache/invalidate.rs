//! Invalidation: one key, every key of a tag, every key matching a pattern.
//!
//! A tag is a Redis set `{namespace}:shardis:tag:{tag}` on the tag's own shard, holding the
//! full keys tagged with it; its TTL is raised to the longest TTL of a value tagged. Keys of a
//! tag live on every shard: `invalidate_tag` pops the set in batches (`SPOP`, so keys tagged
//! meanwhile are never lost) and deletes each batch over every shard (one script per shard).
//! Every invalidation also deletes the keys' load locks, revoking the lease of any load in
//! flight (see `load.rs`): a load that began before the invalidation does not store its value.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::join_all;

use super::Cache;
use crate::error::Result;
use crate::topology::ShardName;

/// Keys popped from a tag set, and keys deleted, per round trip.
pub const INVALIDATE_BATCH: usize = 500;

/// `SCAN ... COUNT` of `invalidate_pattern`.
const SCAN_COUNT: usize = 1000;

/// Unlinks every ARGV key and deletes its load lock (see [`super::load::lock_key`]),
/// revoking the lease of any load in flight: how many of the keys existed.
const UNLINK_REVOKING: &str = "local n = 0 for i = 1, #ARGV do \
    n = n + redis.call('UNLINK', ARGV[i]) redis.call('DEL', 'shardis:lock:' .. ARGV[i]) end \
    return n";

/// Adds ARGV[1] to the set KEYS[1] and raises the set's TTL to ARGV[2] ms.
const TAG: &str = "redis.call('SADD', KEYS[1], ARGV[1]) \
    if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then \
    redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 1";

impl Cache {
    /// The Redis key of a tag's set.
    pub(crate) fn tag_key(&self, tag: &str) -> Vec<u8> {
        self.full_key(format!("shardis:tag:{tag}").as_bytes())
    }

    /// Adds `full` to every tag's set, keeping each set at least `ttl` longer.
    pub(crate) async fn tag(&self, full: &[u8], tags: &[&str], ttl: Duration) -> Result<()> {
        let ms = ttl.as_millis().max(1) as u64;
        let adds = tags.iter().map(|tag| async move {
            let key = self.tag_key(tag);
            let mut eval = redis::cmd("EVAL");
            eval.arg(TAG).arg(1).arg(&key).arg(full).arg(ms);
            self.inner
                .client
                .query::<_, i64>(key.as_slice(), &eval)
                .await
        });
        join_all(adds)
            .await
            .into_iter()
            .try_for_each(|r| r.map(|_| ()))
    }

    /// Deletes `key`: true if it existed.
    ///
    /// ```no_run
    /// # async fn run(cache: shardis::cache::Cache) -> shardis::Result<()> {
    /// let removed: bool = cache.invalidate("user:42").await?;
    /// # let _ = removed; Ok(()) }
    /// ```
    pub async fn invalidate<K: super::CacheKey>(&self, key: K) -> Result<bool> {
        let full = self.full_key(key.key_bytes());
        self.inner.flights.detach(&full);
        let mut eval = redis::cmd("EVAL");
        eval.arg(UNLINK_REVOKING).arg(0).arg(&full);
        let n: usize = self.inner.client.query(full.as_slice(), &eval).await?;
        Ok(n > 0)
    }

    /// Deletes `keys` (full keys) and their load locks, one script per shard, all shards at
    /// once: how many existed. The first error is returned after every shard answered.
    async fn unlink_revoking(&self, keys: &[Vec<u8>]) -> Result<usize> {
        let client = &self.inner.client;
        keys.iter().for_each(|k| self.inner.flights.detach(k));
        let by_shard = self.by_shard(keys.iter().map(Vec::as_slice).enumerate());
        let deletes = by_shard.into_iter().map(|(shard, group)| async move {
            let mut eval = redis::cmd("EVAL");
            eval.arg(UNLINK_REVOKING).arg(0);
            for i in group {
                eval.arg(&keys[i]);
            }
            client.run_on_shard::<usize>(&shard, &eval).await
        });
        join_all(deletes).await.into_iter().sum()
    }

    /// Deletes every key tagged with `tag` (by [`set_tagged`](Self::set_tagged)), over every
    /// shard, and the tag's set: how many keys existed.
    ///
    /// The set is emptied in batches of [`INVALIDATE_BATCH`] with `SPOP`, each batch deleted
    /// with `DEL` split per shard. If a shard fails, the batch's keys are put back into the
    /// set and the error returned: calling again finishes the job.
    ///
    /// ```no_run
    /// # async fn run(cache: shardis::cache::Cache) -> shardis::Result<()> {
    /// let n: usize = cache.invalidate_tag("tenant:7").await?;
    /// # let _ = n; Ok(()) }
    /// ```
    pub async fn invalidate_tag(&self, tag: &str) -> Result<usize> {
        let key = self.tag_key(tag);
        let client = &self.inner.client;
        let mut removed = 0;
        loop {
            let mut spop = redis::cmd("SPOP");
            spop.arg(&key).arg(INVALIDATE_BATCH);
            let members: Vec<Vec<u8>> = client.query(key.as_slice(), &spop).await?;
            if members.is_empty() {
                return Ok(removed);
            }
            match self.unlink_revoking(&members).await {
                Ok(n) => removed += n,
                Err(e) => {
                    let mut sadd = redis::cmd("SADD");
                    sadd.arg(&key).arg(&members);
                    if let Err(back) = client.query::<_, i64>(key.as_slice(), &sadd).await {
                        tracing::warn!(
                            "shardis cache: {} keys of a tag could not be deleted nor put back: {back}",
                            members.len()
                        );
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Deletes every key of the namespace matching the glob `pattern` (`user:*`), running
    /// `SCAN MATCH` on every shard's primary at once and deleting in batches with `UNLINK`
    /// (the load locks of matching keys are scanned and deleted too, revoking their loads):
    /// how many keys were removed. The namespace's own glob characters are escaped. Any shard
    /// that fails fails the call (after the others finish); calling again finishes the job.
    ///
    /// ```no_run
    /// # async fn run(cache: shardis::cache::Cache) -> shardis::Result<()> {
    /// let n: usize = cache.invalidate_pattern("user:*").await?;
    /// # let _ = n; Ok(()) }
    /// ```
    pub async fn invalidate_pattern(&self, pattern: &str) -> Result<usize> {
        self.invalidate_pattern_with_progress(pattern, &AtomicUsize::new(0))
            .await
    }

    /// [`invalidate_pattern`](Self::invalidate_pattern), adding each batch's removed keys to
    /// `removed` as it goes (for a progress display).
    pub async fn invalidate_pattern_with_progress(
        &self,
        pattern: &str,
        removed: &AtomicUsize,
    ) -> Result<usize> {
        let mut glob = escape_glob(&self.inner.settings.prefix);
        glob.extend_from_slice(pattern.as_bytes());
        let lock_glob = super::load::lock_key(&glob);
        let (glob, lock_glob) = (&glob, &lock_glob);
        let shards = self.inner.client.shard_names();
        let scans = shards.iter().map(|shard| async move {
            // The keys, and the load locks of matching keys being loaded (which may not
            // exist yet): their leases are revoked.
            let (keys, locks) = futures_util::future::join(
                self.unlink_matching(shard, glob, Some(removed)),
                self.unlink_matching(shard, lock_glob, None),
            )
            .await;
            locks?;
            keys
        });
        join_all(scans).await.into_iter().sum()
    }

    /// `SCAN MATCH glob` over `shard`'s primary, deleting in batches: cached keys (with their
    /// locks) when `removed` counts them, else load locks (whose loads are detached).
    async fn unlink_matching(
        &self,
        shard: &ShardName,
        glob: &[u8],
        removed: Option<&AtomicUsize>,
    ) -> Result<usize> {
        let client = &self.inner.client;
        let prefix_len = super::load::lock_key(b"").len();
        let mut cursor: u64 = 0;
        let mut total = 0usize;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(glob)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let (next, keys): (u64, Vec<Vec<u8>>) = client.run_on_shard(shard, &scan).await?;
            for chunk in keys.chunks(INVALIDATE_BATCH) {
                let mut unlink;
                if removed.is_some() {
                    chunk.iter().for_each(|k| self.inner.flights.detach(k));
                    unlink = redis::cmd("EVAL");
                    unlink.arg(UNLINK_REVOKING).arg(0).arg(chunk);
                } else {
                    for lock in chunk {
                        self.inner
                            .flights
                            .detach(lock.get(prefix_len..).unwrap_or_default());
                    }
                    unlink = redis::cmd("UNLINK");
                    unlink.arg(chunk);
                }
                let n: usize = client.run_on_shard(shard, &unlink).await?;
                total += n;
                if let Some(removed) = removed {
                    removed.fetch_add(n, Ordering::Relaxed);
                }
            }
            if next == 0 {
                return Ok(total);
            }
            cursor = next;
        }
    }
}

/// `bytes` with the glob characters `*?[]\` escaped.
fn escape_glob(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_invalidation_script_deletes_the_lock_the_loader_takes() {
        let lock = super::super::load::lock_key(b"K");
        let prefix = std::str::from_utf8(&lock[..lock.len() - 1]).unwrap();
        assert!(super::UNLINK_REVOKING.contains(&format!("'{prefix}' .. ARGV[i]")));
    }

    #[test]
    fn glob_characters_of_the_namespace_are_escaped() {
        assert_eq!(
            super::escape_glob(b"a*b?[c]\\:"),
            b"a\\*b\\?\\[c\\]\\\\:".to_vec()
        );
    }
}
