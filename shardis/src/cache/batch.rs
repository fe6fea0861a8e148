//! [`Cache::get_many_or_load`]: batch read-through.
//!
//! Plan first (which keys go to which shard), then one `MGET` per shard sent at once, then
//! the keys in flight in this process are awaited (holding no flight of our own, so two
//! batches can never wait for each other), then the loader runs once with every key still
//! missing, then one store script per shard.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use futures_util::future::join_all;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::envelope;
use super::flight::{Landed, Leader};
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
    /// fails, its error is returned (the cross-process load lock is not taken for batches).
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
        let leaders: Vec<Option<Leader>> = to_load
            .iter()
            .map(|&s| self.inner.flights.lead_if_idle(&slots[s].full))
            .collect();
        let owned: Vec<K::Owned> = to_load
            .iter()
            .map(|&s| keys[slots[s].positions[0]].to_owned_key())
            .collect();
        let (mut loaded, load_ms) = match self.run_loader(|| loader(owned.clone())).await {
            Ok(loaded) => loaded,
            Err(e) => {
                // Leaders dropped unlanded: their waiters load for themselves.
                drop(leaders);
                return Err(LoadError::Loader(std::sync::Arc::new(e)));
            }
        };
        let mut stores: Vec<(Vec<u8>, Vec<u8>, Duration)> = Vec::new();
        for ((&s, key), leader) in to_load.iter().zip(&owned).zip(leaders) {
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
                stores.push((slots[s].full.clone(), sealed.0.clone(), sealed.1));
            }
            if let Some(leader) = leader {
                leader.land(Landed::Value(sealed.0.into()));
            }
        }
        self.store_many(stores).await;
        Ok(out)
    }

    /// One `MGET` per shard, all at once; slots of a shard that fails are marked skipped and
    /// read as missing.
    async fn read_many<E>(
        &self,
        slots: &mut [Slot],
    ) -> std::result::Result<Vec<Found>, LoadError<E>> {
        let mut by_shard: HashMap<String, Vec<usize>> = HashMap::new();
        for (s, slot) in slots.iter().enumerate() {
            if !slot.skipped {
                let shard = self.inner.client.locate(slot.full.as_slice());
                by_shard
                    .entry(shard.as_str().to_owned())
                    .or_default()
                    .push(s);
            }
        }
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
        let mut by_shard: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, (full, ..)) in items.iter().enumerate() {
            let shard = self.inner.client.locate(full.as_slice());
            by_shard
                .entry(shard.as_str().to_owned())
                .or_default()
                .push(i);
        }
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
