//! [`Cache::get_many_or_load`]: batch read-through.
//!
//! Plan first (which keys go to which shard), then one `MGET` per shard sent at once, then
//! the keys in flight in this process are awaited (holding no flight of our own, so two
//! batches can never wait for each other), then the load locks of the keys left are taken
//! (one script per shard) and keys another process is loading are awaited, then the loader
//! runs once with every key still missing, then one store script per shard.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use futures_util::future::join_all;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::envelope;
use super::flight::{Landed, Leader};
use super::lease::Holder;
use super::{degradable, Cache, CacheKey, Found, LoadError};
use crate::error::{ErrorKind, Result};
use crate::metrics;

/// Stores every `KEYS[i]` with `ARGV[2i-1]` for `ARGV[2i]` ms.
const STORE_MANY: &str = "for i = 1, #KEYS do \
    redis.call('SET', KEYS[i], ARGV[2 * i - 1], 'PX', ARGV[2 * i]) end return #KEYS";

/// Per unique key: where it is in the input, and what the read found.
struct Slot {
    full: Vec<u8>,
    /// Input positions holding this key (duplicates share one slot).
    positions: Vec<usize>,
    /// Whether its shard is being skipped (nothing is stored there).
    skipped: bool,
}

impl Cache {
    /// The values of `keys`, in input order, loading the missing ones in one loader call.
    ///
    /// Keys are read with one `MGET` per shard, all shards at once. Keys that another call in
    /// this process is loading are awaited. The loader is then called once, with exactly the
    /// keys still missing (in input order, each once); what it returns is stored with the
    /// cache's TTL (jittered), one script per shard, and keys it did not return are cached as
    /// "does not exist" for `negative_ttl` and answered `None`. A shard that cannot be read
    /// has its keys loaded; one that cannot be written is skipped (logged). If the loader
    /// fails, its error is returned.
    ///
    /// Across processes, the batch takes the load lock of every key it is about to load (one
    /// script per shard), as [`get_or_load`](Self::get_or_load) does for one key, and stores
    /// a value only while its lock holds, so a write or invalidation of a key during the load
    /// wins over the loaded value. If another caller holds the lock of every key left, the
    /// batch waits for their values (up to `lock_timeout`) instead of loading; if it got some
    /// of the locks, it loads every key (waiting while holding locks could deadlock two
    /// batches) and stores only those whose locks it holds.
    ///
    /// ```no_run
    /// # use std::collections::HashMap;
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct User { name: String }
    /// # #[derive(Debug)] struct DbError;
    /// # impl std::fmt::Display for DbError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { Ok(()) } }
    /// # impl std::error::Error for DbError {}
    /// # async fn db_load_many(ids: &[String]) -> Result<HashMap<String, User>, DbError> { Ok(HashMap::new()) }
    /// # async fn run(cache: shardis::cache::Cache) -> Result<(), Box<dyn std::error::Error>> {
    /// let users: Vec<Option<User>> = cache
    ///     .get_many_or_load(&["user:1", "user:2"], |missing: Vec<String>| async move {
    ///         db_load_many(&missing).await
    ///     })
    ///     .await?;
    /// # let _ = users; Ok(()) }
    /// ```
    pub async fn get_many_or_load<K, T, E, F, Fut>(
        &self,
        keys: &[K],
        loader: F,
    ) -> std::result::Result<Vec<Option<T>>, LoadError<E>>
    where
        K: CacheKey,
        T: Serialize + DeserializeOwned + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
        F: FnOnce(Vec<K::Owned>) -> Fut + Send,
        Fut: Future<Output = std::result::Result<HashMap<K::Owned, T>, E>> + Send,
    {
        let mut out: Vec<Option<T>> = (0..keys.len()).map(|_| None).collect();
        let mut slots: Vec<Slot> = Vec::new();
        let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            let full = self.full_key(k.key_bytes());
            match index.get(&full) {
                Some(&s) => slots[s].positions.push(i),
                None => {
                    index.insert(full.clone(), slots.len());
                    let skipped = self.shard_skipped(&full);
                    slots.push(Slot {
                        full,
                        positions: vec![i],
                        skipped,
                    });
                }
            }
        }

        // Read: one MGET per shard. `missing` holds slot indices still without a value.
        let found = self.read_many(&mut slots).await?;
        let mut missing: Vec<usize> = Vec::new();
        for (s, found) in found.into_iter().enumerate() {
            match found {
                Found::Fresh(meta, bytes) if meta.negative => {
                    metrics::cache_request("negative");
                    let _ = bytes;
                }
                Found::Fresh(meta, bytes) => match envelope::decode::<T>(&bytes, &meta) {
                    Ok(v) => {
                        metrics::cache_request("hit");
                        place(&mut out, &slots[s].positions, v, &bytes);
                    }
                    Err(e) => {
                        self.undecodable(&e);
                        missing.push(s);
                    }
                },
                Found::Undecodable(e) => {
                    self.undecodable(&e);
                    missing.push(s);
                }
                Found::Missing | Found::Expired(..) => {
                    metrics::cache_request("miss");
                    missing.push(s);
                }
            }
        }

        // Await the keys that other calls of this process are loading, holding no flight of
        // our own meanwhile.
        let mut waits = Vec::new();
        let mut to_load: Vec<usize> = Vec::new();
        for &s in &missing {
            match self.inner.flights.waiter(&slots[s].full) {
                Some(w) => waits.push((s, w)),
                None => to_load.push(s),
            }
        }
        if !waits.is_empty() {
            metrics::cache_wait("in_process");
            let results = join_all(
                waits
                    .into_iter()
                    .map(|(s, w)| async move { (s, w.wait().await) }),
            )
            .await;
            for (s, landed) in results {
                let got = landed.and_then(|l| match &*l {
                    Landed::Value(bytes) => envelope::open::<T>(bytes)
                        .ok()
                        .map(|(meta, v)| (meta.negative, v, bytes.clone())),
                    Landed::Failed(_) => None,
                });
                match got {
                    Some((false, v, bytes)) => place(&mut out, &slots[s].positions, v, &bytes),
                    Some((true, ..)) => {}
                    None => to_load.push(s), // failed or abandoned: we load it
                }
            }
        }
        if to_load.is_empty() {
            return Ok(out);
        }
        to_load.sort_unstable_by_key(|&s| slots[s].positions[0]);
        // Lead what is free now; a key someone started meanwhile is loaded by us too.
        let mut leaders: HashMap<usize, Leader> = HashMap::new();
        for &s in &to_load {
            if let Some(leader) = self.inner.flights.lead_if_idle(&slots[s].full) {
                leaders.insert(s, leader);
            }
        }
        // Across processes: take the keys' load locks; wait for the keys another holder loads.
        let lockable: Vec<usize> = to_load
            .iter()
            .copied()
            .filter(|&s| !slots[s].skipped)
            .collect();
        let lock_keys: Vec<&[u8]> = lockable.iter().map(|&s| slots[s].full.as_slice()).collect();
        let (locks, holders) = self.lock_many(&lock_keys).await;
        let holder: HashMap<usize, Holder> = lockable.iter().copied().zip(holders).collect();
        let others: Vec<usize> = lockable
            .iter()
            .copied()
            .filter(|s| holder.get(s) == Some(&Holder::Other))
            .collect();
        // Wait only holding no lock: a batch that holds some keys' locks while waiting for
        // others' could wait for a batch that waits for it. One that holds locks loads every
        // key and stores only its own (the other holders store theirs).
        if !others.is_empty() && locks.is_empty() {
            metrics::cache_wait("lock");
            let keys: Vec<&[u8]> = others.iter().map(|&s| slots[s].full.as_slice()).collect();
            let found = self.await_others(&keys).await;
            let mut done: Vec<usize> = Vec::new();
            for (&s, bytes) in others.iter().zip(found) {
                let Some(Found::Fresh(meta, bytes)) = bytes.map(|b| self.classify(Some(b))) else {
                    continue;
                };
                if !meta.negative {
                    match envelope::decode::<T>(&bytes, &meta) {
                        Ok(v) => place(&mut out, &slots[s].positions, v, &bytes),
                        Err(e) => {
                            self.undecodable(&e);
                            continue;
                        }
                    }
                }
                if let Some(leader) = leaders.remove(&s) {
                    leader.land(Landed::Value(bytes.into()));
                }
                done.push(s);
            }
            to_load.retain(|s| !done.contains(s));
            if to_load.is_empty() {
                return Ok(out);
            }
        }
        let owned: Vec<K::Owned> = to_load
            .iter()
            .map(|&s| keys[slots[s].positions[0]].to_owned_key())
            .collect();
        let (mut loaded, load_ms) = match self.run_loader(|| loader(owned.clone())).await {
            Ok(loaded) => loaded,
            Err(e) => {
                // Leaders dropped unlanded: their waiters load for themselves; the locks are
                // released by their drop.
                drop(leaders);
                drop(locks);
                return Err(LoadError::Loader(std::sync::Arc::new(e)));
            }
        };
        let mut leased: Vec<(Vec<u8>, Vec<u8>, Duration)> = Vec::new();
        let mut stores: Vec<(Vec<u8>, Vec<u8>, Duration)> = Vec::new();
        for (&s, key) in to_load.iter().zip(&owned) {
            let sealed = match loaded.remove(key) {
                Some(v) => {
                    let (bytes, ttl) = self.seal_loaded(&v, load_ms)?;
                    place(&mut out, &slots[s].positions, v, &bytes);
                    (bytes, ttl)
                }
                None => {
                    let s = &self.inner.settings;
                    let ttl = self.jittered(s.negative_ttl);
                    let bytes = envelope::negative(s.encoding, load_ms, super::expiry_after(ttl));
                    (bytes, ttl)
                }
            };
            if !slots[s].skipped {
                let item = (slots[s].full.clone(), sealed.0.clone(), sealed.1);
                match holder.get(&s) {
                    Some(Holder::Us) => leased.push(item),
                    Some(Holder::Other) => {} // its holder stores it (or its lock expires)
                    _ => stores.push(item),
                }
            }
            if let Some(leader) = leaders.remove(&s) {
                leader.land(Landed::Value(sealed.0.into()));
            }
        }
        futures_util::future::join(locks.store(leased), self.store_many(stores)).await;
        Ok(out)
    }

    /// One `MGET` per shard, all at once; slots of a shard that fails are marked skipped and
    /// read as missing.
    async fn read_many<E>(
        &self,
        slots: &mut [Slot],
    ) -> std::result::Result<Vec<Found>, LoadError<E>> {
        let by_shard = self.by_shard(
            slots
                .iter()
                .enumerate()
                .filter(|(_, slot)| !slot.skipped)
                .map(|(s, slot)| (s, slot.full.as_slice())),
        );
        let client = &self.inner.client;
        let reads = by_shard.into_values().map(|group| {
            let slots = &*slots;
            async move {
                let keys: Vec<&[u8]> = group.iter().map(|&s| slots[s].full.as_slice()).collect();
                let r: Result<Vec<Option<Vec<u8>>>> = client.mget(&keys).await;
                (group, r)
            }
        });
        let mut found: Vec<Found> = (0..slots.len()).map(|_| Found::Missing).collect();
        for (group, result) in join_all(reads).await {
            match result {
                Ok(values) => {
                    for (s, v) in group.into_iter().zip(values) {
                        found[s] = self.classify(v);
                    }
                }
                Err(e) if degradable(&e) => {
                    self.note_failure(&e);
                    for s in group {
                        slots[s].skipped = true;
                    }
                }
                Err(e) => return Err(LoadError::Cache(e)),
            }
        }
        Ok(found)
    }

    /// Stores `(full key, envelope, logical ttl)` items, one script per shard, all shards at
    /// once. Failures are logged, never returned: the values were loaded and are answered.
    async fn store_many(&self, items: Vec<(Vec<u8>, Vec<u8>, Duration)>) {
        let by_shard = self.by_shard(
            items
                .iter()
                .enumerate()
                .map(|(i, (full, ..))| (i, full.as_slice())),
        );
        let items = &items;
        let writes = by_shard.into_values().map(|group| async move {
            let mut eval = redis::cmd("EVAL");
            eval.arg(STORE_MANY).arg(group.len());
            for &i in &group {
                eval.arg(&items[i].0);
            }
            for &i in &group {
                eval.arg(&items[i].1)
                    .arg(self.physical(items[i].2).as_millis().max(1) as u64);
            }
            let first = &items[group[0]].0;
            match self
                .inner
                .client
                .query::<_, i64>(first.as_slice(), &eval)
                .await
            {
                Ok(_) => {}
                // The topology changed between planning and sending: store one by one.
                Err(e) if e.kind() == ErrorKind::InvalidInput => {
                    for &i in &group {
                        let (full, bytes, ttl) = &items[i];
                        if let Err(e) = self.store(full, bytes, *ttl).await {
                            self.note_failure(&e);
                        }
                    }
                }
                Err(e) => {
                    self.note_failure(&e);
                    tracing::debug!("shardis cache: storing a batch failed: {e}");
                }
            }
        });
        join_all(writes).await;
    }
}

/// Puts `v` at the first position and decoded copies at the others (duplicate keys).
fn place<T: DeserializeOwned>(out: &mut [Option<T>], positions: &[usize], v: T, bytes: &[u8]) {
    for &p in &positions[1..] {
        out[p] = envelope::open::<T>(bytes).ok().map(|(_, v)| v);
    }
    out[positions[0]] = Some(v);
}
