//! Load locks for batches: the same `shardis:lock:{full key}` locks (and leases) as
//! [`Cache::get_or_load`], taken, checked and released for many keys at once, one script per
//! shard.
//!
//! A batch takes the lock of every key it is about to load with one token. If other holders
//! have every lock, it awaits their values (polled, bounded by `lock_timeout`); keys whose lock
//! it got are stored only while their lock still holds its token (a write or an invalidation
//! in between deletes the lock and wins), and a batch dropped before it stored releases its
//! locks from a task of its own.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use super::Cache;
use crate::error::Result;
use crate::topology::ShardName;

/// Takes the lock of every key in ARGV[3..] with token ARGV[1] for ARGV[2] ms: per key, 1 if
/// taken, 0 if another holder has it.
const TAKE_MANY: &str = "local r = {} for i = 3, #ARGV do \
    if redis.call('SET', 'shardis:lock:' .. ARGV[i], ARGV[1], 'NX', 'PX', ARGV[2]) then \
    r[#r + 1] = 1 else r[#r + 1] = 0 end end return r";

/// For each (key, value, ttl ms) triple after the token ARGV[1]: stores the value and releases
/// the lock if the lock still holds the token; how many were stored.
const STORE_MANY_IF_HELD: &str = "local n = 0 for i = 2, #ARGV, 3 do \
    local lock = 'shardis:lock:' .. ARGV[i] \
    if redis.call('GET', lock) == ARGV[1] then \
    redis.call('SET', ARGV[i], ARGV[i + 1], 'PX', ARGV[i + 2]) redis.call('DEL', lock) \
    n = n + 1 end end return n";

/// Releases the lock of every key in ARGV[2..] that still holds token ARGV[1].
const RELEASE_MANY: &str = "for i = 2, #ARGV do local lock = 'shardis:lock:' .. ARGV[i] \
    if redis.call('GET', lock) == ARGV[1] then redis.call('DEL', lock) end end return 1";

/// A value to store: full key, envelope, logical TTL.
pub(crate) type StoreItem = (Vec<u8>, Vec<u8>, Duration);

/// The locks a batch holds: full keys by shard, under one token. Dropped while armed (the
/// batch was cancelled or failed before storing), it releases them from a task of its own.
pub(crate) struct BatchLocks {
    cache: Cache,
    token: String,
    held: HashMap<ShardName, Vec<Vec<u8>>>,
}

impl std::fmt::Debug for BatchLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchLocks")
            .field("shards", &self.held.len())
            .finish_non_exhaustive()
    }
}

/// Who holds the lock of one key a batch wants to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    /// This batch: load it, store it while the lock holds.
    Us,
    /// Another caller, probably another process: wait for its value.
    Other,
    /// No lock could be asked (its shard failed or is skipped): load it, store it plainly.
    Nobody,
}

impl Cache {
    /// Takes the locks of `keys` (full keys), one script per shard, all shards at once.
    pub(crate) async fn lock_many(&self, keys: &[&[u8]]) -> (BatchLocks, Vec<Holder>) {
        let token = super::load::new_token();
        let ms = self.inner.settings.lock_timeout.as_millis().max(1) as u64;
        let client = &self.inner.client;
        let by_shard = self.by_shard(keys.iter().copied().enumerate());
        let takes = by_shard.into_iter().map(|(shard, group)| {
            let token = &token;
            async move {
                let mut eval = redis::cmd("EVAL");
                eval.arg(TAKE_MANY).arg(0).arg(token).arg(ms);
                for &i in &group {
                    eval.arg(keys[i]);
                }
                let taken: Result<Vec<u8>> = client.run_on_shard(&shard, &eval).await;
                (shard, group, taken)
            }
        });
        let mut holders = vec![Holder::Nobody; keys.len()];
        let mut held: HashMap<ShardName, Vec<Vec<u8>>> = HashMap::new();
        for (shard, group, taken) in join_all(takes).await {
            match taken {
                Ok(taken) if taken.len() == group.len() => {
                    for (&i, t) in group.iter().zip(taken) {
                        if t == 1 {
                            holders[i] = Holder::Us;
                            held.entry(shard.clone())
                                .or_default()
                                .push(keys[i].to_vec());
                        } else {
                            holders[i] = Holder::Other;
                        }
                    }
                }
                Ok(_) => tracing::debug!("shardis cache: unexpected reply taking batch locks"),
                Err(e) => self.note_failure(&e),
            }
        }
        let locks = BatchLocks {
            cache: self.clone(),
            token,
            held,
        };
        (locks, holders)
    }

    /// Polls the values of `keys` (full keys) that other holders are loading, until every one
    /// is fresh or `lock_timeout` passed: the envelopes found, by position.
    pub(crate) async fn await_others(&self, keys: &[&[u8]]) -> Vec<Option<Vec<u8>>> {
        let timeout = self.inner.settings.lock_timeout;
        let deadline = Instant::now() + timeout;
        let mut pause = super::load::FIRST_POLL;
        let max_pause = super::load::MAX_POLL
            .min(timeout / 10)
            .max(Duration::from_millis(1));
        let mut found: Vec<Option<Vec<u8>>> = vec![None; keys.len()];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return found;
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(max_pause);
            let pending: Vec<usize> = (0..keys.len()).filter(|&i| found[i].is_none()).collect();
            let wanted: Vec<&[u8]> = pending.iter().map(|&i| keys[i]).collect();
            let Ok(values) = self.inner.client.mget::<_, Option<Vec<u8>>>(&wanted).await else {
                return found;
            };
            for (i, v) in pending.into_iter().zip(values) {
                if let Some(bytes) = v {
                    if matches!(self.classify(Some(bytes.clone())), super::Found::Fresh(..)) {
                        found[i] = Some(bytes);
                    }
                }
            }
            if found.iter().all(Option::is_some) {
                return found;
            }
        }
    }
}

impl BatchLocks {
    /// Stores `(full key, envelope, logical ttl)` items whose locks this batch holds, each only
    /// while its lock still holds the token, and releases those locks; one script per shard.
    /// Failures are logged: the values were loaded and are answered.
    pub(crate) async fn store(mut self, items: Vec<StoreItem>) {
        let held = std::mem::take(&mut self.held);
        let mut shard_of: HashMap<&[u8], &ShardName> = HashMap::new();
        for (shard, keys) in &held {
            for k in keys {
                shard_of.insert(k.as_slice(), shard);
            }
        }
        let mut by_shard: HashMap<&ShardName, Vec<&StoreItem>> = HashMap::new();
        for item in &items {
            if let Some(shard) = shard_of.get(item.0.as_slice()) {
                by_shard.entry(*shard).or_default().push(item);
            }
        }
        let cache = &self.cache;
        let token = &self.token;
        let writes = by_shard.into_iter().map(|(shard, group)| async move {
            let mut eval = redis::cmd("EVAL");
            eval.arg(STORE_MANY_IF_HELD).arg(0).arg(token);
            for (full, bytes, ttl) in &group {
                eval.arg(full)
                    .arg(bytes)
                    .arg(cache.physical(*ttl).as_millis().max(1) as u64);
            }
            match cache.inner.client.run_on_shard::<usize>(shard, &eval).await {
                Ok(n) if n < group.len() => tracing::debug!(
                    "shardis cache: {} loaded values were not stored: written or invalidated \
                     during the load, or the load outlived lock_timeout",
                    group.len() - n
                ),
                Ok(_) => {}
                Err(e) => {
                    cache.note_failure(&e);
                    tracing::debug!("shardis cache: storing a batch failed: {e}");
                }
            }
        });
        join_all(writes).await;
        // Locks of keys that had nothing to store are released by the drop.
        let stored: HashSet<&[u8]> = items.iter().map(|(f, ..)| f.as_slice()).collect();
        self.held = held
            .into_iter()
            .filter_map(|(shard, keys)| {
                let left: Vec<Vec<u8>> = keys
                    .into_iter()
                    .filter(|k| !stored.contains(k.as_slice()))
                    .collect();
                (!left.is_empty()).then_some((shard, left))
            })
            .collect();
    }

    /// Whether this batch holds any lock.
    pub(crate) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

impl Drop for BatchLocks {
    fn drop(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // the locks expire after lock_timeout
        };
        let cache = self.cache.clone();
        let token = std::mem::take(&mut self.token);
        let held = std::mem::take(&mut self.held);
        runtime.spawn(async move {
            for (shard, keys) in held {
                let mut eval = redis::cmd("EVAL");
                eval.arg(RELEASE_MANY).arg(0).arg(&token).arg(keys);
                if let Err(e) = cache.inner.client.run_on_shard::<i64>(&shard, &eval).await {
                    tracing::debug!("shardis cache: releasing batch locks failed: {e}");
                }
            }
        });
    }
}
