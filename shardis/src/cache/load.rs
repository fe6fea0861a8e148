//! [`Cache::get_or_load`]: read, single-flight in the process, the load lock in Redis, load,
//! store; and early refresh (XFetch) in the background.
//!
//! The load lock is `SET shardis:lock:{full key} {token} NX PX {lock_timeout}`, sent to the
//! shard of the key itself (the command is routed by the cached key, so the lock lives beside
//! the value whatever the placement). The leader stores the value and releases the lock in one
//! script, deleting the lock only if it still holds its token; a failed or abandoned load
//! releases it the same way. The scripts name their keys as arguments (`EVAL script 0 ...`):
//! both keys live on the routing key's shard, which plain Redis allows.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::envelope::{self, Meta};
use super::flight::{Failure, Joined, Landed, Leader};
use super::{degradable, expiry_after, now_ms, Cache, CacheKey, Found, LoadError};
use crate::error::{Error, Result};
use crate::metrics;

/// Stores the value and releases the lock if the token is still the lock's.
/// ARGV: key, lock, value, ttl ms, token.
const STORE_AND_RELEASE: &str = "redis.call('SET', ARGV[1], ARGV[3], 'PX', ARGV[4]) \
    if redis.call('GET', ARGV[2]) == ARGV[5] then redis.call('DEL', ARGV[2]) end return 1";

/// Releases the lock if the token is still the lock's. ARGV: lock, token.
const RELEASE: &str =
    "if redis.call('GET', ARGV[1]) == ARGV[2] then return redis.call('DEL', ARGV[1]) end return 0";

/// The first pause of a caller waiting for another process's load; pauses double up to
/// [`MAX_POLL`] (and a tenth of the lock timeout).
const FIRST_POLL: Duration = Duration::from_millis(10);
const MAX_POLL: Duration = Duration::from_millis(100);

/// How the leader's turn at the Redis lock ended.
enum Acquired {
    /// The lock is ours, with this token.
    Lock(String),
    /// Another process loaded the value while we waited.
    Value(Meta, Vec<u8>),
    /// The lock stayed taken for `lock_timeout`: load without it.
    TimedOut,
}

/// The Redis key of `full`'s load lock.
pub(crate) fn lock_key(full: &[u8]) -> Vec<u8> {
    let mut k = b"shardis:lock:".to_vec();
    k.extend_from_slice(full);
    k
}

impl Cache {
    /// The value under `key`, or the loader's value, stored for the next callers.
    ///
    /// A fresh value is returned at once (and may be refreshed early, in the background, with
    /// `loader`). On a miss, one caller in the process loads while the others wait for its
    /// value; that caller takes the key's load lock on its shard, so callers in other
    /// processes wait for the stored value (up to `lock_timeout`) instead of loading too.
    /// A loaded value that encodes to the codec's null (`None`) is cached for `negative_ttl`.
    ///
    /// If the loader fails, a value expired less than `stale_if_error` ago is returned
    /// instead (counted as `stale`); otherwise the loader's error, which every waiting caller
    /// receives too. If the key's shard cannot be read or written, the loader's value is
    /// returned anyway, and the shard is skipped for [`DEGRADED_FOR`](super::DEGRADED_FOR)
    /// after a timeout or connection failure.
    ///
    /// ```no_run
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct User { name: String }
    /// # #[derive(Debug)] struct DbError;
    /// # impl std::fmt::Display for DbError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { Ok(()) } }
    /// # impl std::error::Error for DbError {}
    /// # async fn db_find(id: u64) -> Result<Option<User>, DbError> { Ok(None) }
    /// # async fn run(cache: shardis::cache::Cache) {
    /// // `None` answers are cached too, for `negative_ttl`.
    /// match cache.get_or_load("user:42", || async { db_find(42).await }).await {
    ///     Ok(Some(user)) => { /* ... */ }
    ///     Ok(None) => { /* no such user */ }
    ///     Err(e) => match e.loader_error() {
    ///         Some(db) => eprintln!("database: {db}"),
    ///         None => eprintln!("{e}"),
    ///     },
    /// }
    /// # }
    /// ```
    pub async fn get_or_load<K, T, E, F, Fut>(
        &self,
        key: K,
        loader: F,
    ) -> std::result::Result<T, LoadError<E>>
    where
        K: CacheKey,
        T: Serialize + DeserializeOwned + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
    {
        let full = self.full_key(key.key_bytes());
        loop {
            let mut stale = None;
            let mut skip = self.shard_skipped(&full);
            if !skip {
                match self.read(&full).await {
                    Ok(Found::Fresh(meta, bytes)) => match envelope::decode::<T>(&bytes, &meta) {
                        Ok(value) => {
                            metrics::cache_request(if meta.negative { "negative" } else { "hit" });
                            if self.should_refresh(&meta) {
                                self.refresh(full, loader);
                            }
                            return Ok(value);
                        }
                        Err(e) => self.undecodable(&e),
                    },
                    Ok(Found::Expired(meta, bytes)) => {
                        metrics::cache_request("miss");
                        stale = Some((meta, bytes));
                    }
                    Ok(Found::Missing) => metrics::cache_request("miss"),
                    Ok(Found::Undecodable(e)) => self.undecodable(&e),
                    Err(e) if degradable(&e) => {
                        metrics::cache_request("miss");
                        self.note_failure(&e);
                        skip = true;
                    }
                    Err(e) => return Err(LoadError::Cache(e)),
                }
            } else {
                metrics::cache_request("miss");
            }
            match self.inner.flights.join(&full) {
                Joined::Lead(leader) => {
                    return self.lead(full, leader, loader, stale, skip).await;
                }
                Joined::Wait(waiter) => {
                    metrics::cache_wait("in_process");
                    let Some(landed) = waiter.wait().await else {
                        continue; // the leader was cancelled or panicked: take over
                    };
                    match &*landed {
                        Landed::Value(bytes) => match envelope::open::<T>(bytes) {
                            Ok((_, value)) => return Ok(value),
                            Err(e) => self.undecodable(&e),
                        },
                        Landed::Failed(Failure::Loader { any, .. }) => {
                            if let Ok(e) = Arc::clone(any).downcast::<E>() {
                                return Err(LoadError::Loader(e));
                            }
                        }
                        Landed::Failed(Failure::Cache { kind, message }) => {
                            return Err(LoadError::Cache(Error::new(*kind, &**message)));
                        }
                    }
                    // Another type under this key: load our own once that flight is over.
                }
            }
        }
    }

    /// The leader's part: the Redis lock, the load, the store, the hand-over to waiters.
    async fn lead<T, E, F, Fut>(
        &self,
        full: Vec<u8>,
        mut leader: Leader,
        loader: F,
        stale: Option<(Meta, Vec<u8>)>,
        mut skip: bool,
    ) -> std::result::Result<T, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        let mut token = None;
        if !skip {
            match self.acquire(&full).await {
                Ok(Acquired::Lock(t)) => {
                    let (cache, full, t2) = (self.clone(), full.clone(), t.clone());
                    leader.on_abandon(move || cache.release_later(full, t2));
                    token = Some(t);
                }
                Ok(Acquired::Value(meta, bytes)) => {
                    metrics::cache_wait("lock");
                    match envelope::decode::<T>(&bytes, &meta) {
                        Ok(value) => {
                            leader.land(Landed::Value(bytes.into()));
                            return Ok(value);
                        }
                        Err(e) => self.undecodable(&e),
                    }
                }
                Ok(Acquired::TimedOut) => {
                    metrics::cache_wait("lock");
                }
                Err(e) => {
                    self.note_failure(&e);
                    skip = true;
                }
            }
        }
        match self.run_loader(loader).await {
            Ok((value, load_ms)) => {
                let (bytes, ttl) = match self.seal_loaded(&value, load_ms) {
                    Ok(sealed) => sealed,
                    Err(e) => {
                        if let Some(t) = token {
                            self.release(&full, &t).await;
                        }
                        leader.clear_abandon();
                        leader.land(Landed::Failed(Failure::Cache {
                            kind: e.kind(),
                            message: e.to_string().into(),
                        }));
                        return Err(LoadError::Cache(e));
                    }
                };
                if !skip {
                    if let Err(e) = self
                        .store_loaded(&full, &bytes, ttl, token.as_deref())
                        .await
                    {
                        self.note_failure(&e);
                        tracing::debug!("shardis cache: storing a loaded value failed: {e}");
                    }
                }
                leader.clear_abandon();
                leader.land(Landed::Value(bytes.into()));
                Ok(value)
            }
            Err(e) => {
                if let Some(t) = token {
                    self.release(&full, &t).await;
                }
                leader.clear_abandon();
                if let Some((meta, bytes)) = stale {
                    let window = self.inner.settings.stale_if_error.as_millis() as u64;
                    if now_ms() <= meta.expires_at_ms.saturating_add(window) {
                        if let Ok(value) = envelope::decode::<T>(&bytes, &meta) {
                            metrics::cache_request("stale");
                            leader.land(Landed::Value(bytes.into()));
                            return Ok(value);
                        }
                    }
                }
                let e = Arc::new(e);
                leader.land(Landed::Failed(Failure::loader(Arc::clone(&e))));
                Err(LoadError::Loader(e))
            }
        }
    }

    /// Runs a loader, timed and counted; returns its value and how long it took in ms.
    pub(crate) async fn run_loader<T, E, F, Fut>(
        &self,
        loader: F,
    ) -> std::result::Result<(T, u32), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        let started = Instant::now();
        let result = loader().await;
        let took = started.elapsed();
        metrics::cache_load(result.is_ok(), took.as_secs_f64());
        result.map(|v| (v, took.as_millis().min(u128::from(u32::MAX)) as u32))
    }

    /// Encodes a loaded value with its TTL: the cache's, or `negative_ttl` for a null, each
    /// jittered.
    pub(crate) fn seal_loaded<T: Serialize>(
        &self,
        value: &T,
        load_ms: u32,
    ) -> Result<(Vec<u8>, Duration)> {
        let s = &self.inner.settings;
        let (mut bytes, negative) = envelope::encode(value, s.encoding, load_ms, 0)?;
        let ttl = self.jittered(if negative { s.negative_ttl } else { s.ttl });
        envelope::set_expiry(&mut bytes, expiry_after(ttl));
        Ok((bytes, ttl))
    }

    /// Takes the key's load lock, or waits for the process that holds it to store the value.
    async fn acquire(&self, full: &[u8]) -> Result<Acquired> {
        let lock = lock_key(full);
        let token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let timeout = self.inner.settings.lock_timeout;
        let deadline = Instant::now() + timeout;
        let mut pause = FIRST_POLL;
        let max_pause = MAX_POLL.min(timeout / 10).max(Duration::from_millis(1));
        loop {
            let mut set = redis::cmd("SET");
            set.arg(&lock)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(timeout.as_millis().max(1) as u64);
            let taken: Option<String> = self.inner.client.query(full, &set).await?;
            if taken.is_some() {
                return Ok(Acquired::Lock(token));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Acquired::TimedOut);
            }
            // Spread the pollers of many processes.
            let jitter = pause.mul_f64(fastrand::f64() * 0.5);
            tokio::time::sleep((pause + jitter).min(deadline - now)).await;
            pause = (pause * 2).min(max_pause);
            if let Found::Fresh(meta, bytes) = self.read(full).await? {
                return Ok(Acquired::Value(meta, bytes));
            }
        }
    }

    /// Stores a loaded value and, holding the lock, releases it in the same round trip.
    pub(crate) async fn store_loaded(
        &self,
        full: &[u8],
        bytes: &[u8],
        ttl: Duration,
        token: Option<&str>,
    ) -> Result<()> {
        let Some(token) = token else {
            return self.store(full, bytes, ttl).await;
        };
        let mut eval = redis::cmd("EVAL");
        eval.arg(STORE_AND_RELEASE)
            .arg(0)
            .arg(full)
            .arg(lock_key(full))
            .arg(bytes)
            .arg(self.physical(ttl).as_millis().max(1) as u64)
            .arg(token);
        self.inner
            .client
            .query::<_, i64>(full, &eval)
            .await
            .map(|_| ())
    }

    /// Releases the key's lock if `token` still holds it; failures are logged (the lock
    /// expires by itself).
    async fn release(&self, full: &[u8], token: &str) {
        let mut eval = redis::cmd("EVAL");
        eval.arg(RELEASE).arg(0).arg(lock_key(full)).arg(token);
        if let Err(e) = self.inner.client.query::<_, i64>(full, &eval).await {
            tracing::debug!("shardis cache: releasing a load lock failed: {e}");
        }
    }

    /// Releases a lock from a task of its own (the leader holding it was dropped).
    fn release_later(&self, full: Vec<u8>, token: String) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let cache = self.clone();
            runtime.spawn(async move { cache.release(&full, &token).await });
        }
    }

    /// XFetch: refresh now if `now − load_time × β × ln(rand) ≥ expiry`, rand in (0, 1].
    fn should_refresh(&self, meta: &Meta) -> bool {
        let beta = self.inner.settings.beta;
        if beta <= 0.0 || meta.load_ms == 0 {
            return false;
        }
        let r = 1.0 - fastrand::f64();
        let gap = -(f64::from(meta.load_ms) * beta * r.ln());
        now_ms() as f64 + gap >= meta.expires_at_ms as f64
    }

    /// Starts a background reload of `full`, unless one is in flight in this process or
    /// another process holds the key's lock.
    fn refresh<T, E, F, Fut>(&self, full: Vec<u8>, loader: F)
    where
        T: Serialize + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(leader) = self.inner.flights.lead_if_idle(&full) else {
            return;
        };
        let cache = self.clone();
        runtime.spawn(async move { cache.refresh_now(full, leader, loader).await });
    }

    async fn refresh_now<T, E, F, Fut>(&self, full: Vec<u8>, mut leader: Leader, loader: F)
    where
        T: Serialize,
        E: std::error::Error,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        let lock = lock_key(&full);
        let token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let mut set = redis::cmd("SET");
        set.arg(&lock)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(self.inner.settings.lock_timeout.as_millis().max(1) as u64);
        match self
            .inner
            .client
            .query::<_, Option<String>>(&full, &set)
            .await
        {
            Ok(Some(_)) => {}
            _ => return, // another process refreshes it, or the shard cannot take the lock
        }
        let (cache, key, t2) = (self.clone(), full.clone(), token.clone());
        leader.on_abandon(move || cache.release_later(key, t2));
        match self.run_loader(loader).await {
            Ok((value, load_ms)) => match self.seal_loaded(&value, load_ms) {
                Ok((bytes, ttl)) => {
                    match self.store_loaded(&full, &bytes, ttl, Some(&token)).await {
                        Ok(()) => metrics::cache_early_refresh(),
                        Err(e) => tracing::debug!("shardis cache: early refresh not stored: {e}"),
                    }
                    leader.clear_abandon();
                    leader.land(Landed::Value(bytes.into()));
                }
                Err(e) => {
                    tracing::warn!("shardis cache: early refresh: {e}");
                    self.release(&full, &token).await;
                    leader.clear_abandon();
                }
            },
            Err(e) => {
                tracing::warn!("shardis cache: early refresh failed, the value stays: {e}");
                self.release(&full, &token).await;
                leader.clear_abandon();
            }
        }
    }
}
