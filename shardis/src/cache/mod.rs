//! Typed cache-aside over the fleet (feature `cache`, on by default): [`Cache`].
//!
//! A [`Cache`] wraps a [`Client`] and stores serde values in a small versioned envelope (see
//! the README's "Cache layer" section for its byte layout). Reads that miss call your loader
//! with the hard parts done:
//!
//! - **single-flight in the process**: concurrent [`get_or_load`](Cache::get_or_load) calls for
//!   one key run one loader; a cancelled or panicking leader hands over to a waiter;
//! - **across processes**: the loading caller takes a short lock on the key's own shard
//!   (`SET lock token NX PX lock_timeout`, released only with its token), and callers in other
//!   processes poll for the value instead of loading, for at most `lock_timeout`;
//! - **early refresh** (XFetch): values record how long their load took and when they expire,
//!   and a read may reload a hot value in the background before it expires;
//! - **TTL jitter, negative caching, stale-if-error**;
//! - **degradation**: when the key's shard is down or slow, the read-through calls load and
//!   answer instead of failing, and skip the shard for a second after a timeout or connection
//!   failure instead of waiting out a timeout per call;
//! - **invalidation** by key, by tag (tag sets live on each tag's own shard, members are
//!   deleted over every shard) and by pattern (`SCAN` on every shard's primary).
//!
//! ```no_run
//! # #[derive(serde::Serialize, serde::Deserialize)] struct User { name: String }
//! # #[derive(Debug)] struct DbError;
//! # impl std::fmt::Display for DbError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { Ok(()) } }
//! # impl std::error::Error for DbError {}
//! # async fn db_load(id: u64) -> Result<User, DbError> { Ok(User { name: String::new() }) }
//! # async fn run(client: shardis::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use shardis::cache::Cache;
//! let cache = Cache::builder(client).namespace("app:v1").ttl(Duration::from_secs(600)).build();
//! let user: User = cache.get_or_load("user:42", || async { db_load(42).await }).await?;
//! cache.invalidate("user:42").await?;
//! # let _ = user; Ok(()) }
//! ```
//!
//! # Layout
//! - `builder`: [`CacheBuilder`] and every default.
//! - `envelope`: the stored form ([`Codec`], compression, header), pure.
//! - `flight`: single-flight in the process.
//! - `load`: [`Cache::get_or_load`]: the read-through path, the Redis load lock, early refresh.
//! - `batch`: [`Cache::get_many_or_load`].
//! - `invalidate`: invalidation by key, tag and pattern.
//! - `error`: [`LoadError`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::metrics;
use crate::topology::ShardName;
use crate::Client;

mod batch;
mod builder;
mod envelope;
mod error;
mod flight;
mod invalidate;
mod lease;
mod load;

pub use builder::{
    CacheBuilder, DEFAULT_COMPRESS_ABOVE, DEFAULT_EARLY_REFRESH, DEFAULT_LOCK_TIMEOUT,
    DEFAULT_NEGATIVE_TTL, DEFAULT_STALE_IF_ERROR, DEFAULT_TTL, DEFAULT_TTL_JITTER,
};
pub use envelope::{Codec, DecodeError};
pub use error::LoadError;

use builder::Settings;

/// Stores a value and deletes the key's load lock (revoking a load's lease) in one step.
/// ARGV: key, lock, value, ttl ms.
const STORE_REVOKING: &str =
    "redis.call('SET', ARGV[1], ARGV[3], 'PX', ARGV[4]) redis.call('DEL', ARGV[2]) return 1";
use envelope::Meta;
use flight::Flights;

/// How long the read-through calls skip a shard after a timeout or a connection failure on
/// it (they load without the cache meanwhile): one timeout per second, not one per call.
pub const DEGRADED_FOR: Duration = Duration::from_secs(1);

/// A key of the cache: `&str`, `String`, `&[u8]`, `Vec<u8>` and references to them.
///
/// `Owned` is what the batch loader of [`Cache::get_many_or_load`] receives and returns.
pub trait CacheKey {
    /// The owned form of the key.
    type Owned: Eq + std::hash::Hash + Clone + Send + Sync + 'static;
    /// The key's bytes (without the namespace).
    fn key_bytes(&self) -> &[u8];
    /// The owned form of the key.
    fn to_owned_key(&self) -> Self::Owned;
}

impl CacheKey for str {
    type Owned = String;
    fn key_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
    fn to_owned_key(&self) -> String {
        self.to_owned()
    }
}

impl CacheKey for String {
    type Owned = String;
    fn key_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
    fn to_owned_key(&self) -> String {
        self.clone()
    }
}

impl CacheKey for [u8] {
    type Owned = Vec<u8>;
    fn key_bytes(&self) -> &[u8] {
        self
    }
    fn to_owned_key(&self) -> Vec<u8> {
        self.to_vec()
    }
}

impl CacheKey for Vec<u8> {
    type Owned = Vec<u8>;
    fn key_bytes(&self) -> &[u8] {
        self
    }
    fn to_owned_key(&self) -> Vec<u8> {
        self.clone()
    }
}

impl<K: CacheKey + ?Sized> CacheKey for &K {
    type Owned = K::Owned;
    fn key_bytes(&self) -> &[u8] {
        (**self).key_bytes()
    }
    fn to_owned_key(&self) -> K::Owned {
        (**self).to_owned_key()
    }
}

/// A typed cache over a [`Client`]; see the [module docs](self).
///
/// `Cache` is `Clone + Send + Sync`; clones share the settings, the client and the loads in
/// flight. Values are any `Serialize + DeserializeOwned + Send + 'static` type.
///
/// ```no_run
/// # #[derive(serde::Serialize, serde::Deserialize)] struct User { name: String }
/// # async fn run(client: shardis::Client) -> shardis::Result<()> {
/// use std::time::Duration;
/// use shardis::cache::Cache;
/// let cache = Cache::builder(client).namespace("app:v1").build();
/// let user = User { name: "ada".into() };
/// cache.set("user:42", &user).await?;
/// cache.set_with_ttl("user:42", &user, Duration::from_secs(60)).await?;
/// cache.set_tagged("user:42", &user, &["tenant:7", "users"]).await?;
/// let back: Option<User> = cache.get("user:42").await?;
/// assert!(back.is_some());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    settings: Settings,
    flights: Arc<Flights>,
    degraded: Degraded,
    /// The first undecodable value is logged as a warning, later ones at debug level.
    decode_logged: AtomicBool,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.inner.settings;
        f.debug_struct("Cache")
            .field("namespace", &String::from_utf8_lossy(&s.prefix))
            .field("ttl", &s.ttl)
            .field("codec", &s.encoding.codec)
            .finish_non_exhaustive()
    }
}

/// What a read found under a key.
#[derive(Debug)]
pub(crate) enum Found {
    Missing,
    /// A value (maybe negative) before its logical expiry.
    Fresh(Meta, Vec<u8>),
    /// A value past its logical expiry, kept for `stale_if_error`.
    Expired(Meta, Vec<u8>),
    Undecodable(envelope::DecodeError),
}

impl Cache {
    /// A builder over `client` with the defaults.
    pub fn builder(client: Client) -> CacheBuilder {
        CacheBuilder::new(client)
    }

    fn from_parts(client: Client, settings: Settings) -> Cache {
        Cache {
            inner: Arc::new(Inner {
                client,
                settings,
                flights: Arc::default(),
                degraded: Degraded::default(),
                decode_logged: AtomicBool::new(false),
            }),
        }
    }

    /// The client under the cache.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The Redis key a cache key is stored under: the namespace, `:`, the key.
    ///
    /// ```no_run
    /// # async fn run(client: shardis::Client) {
    /// let cache = shardis::cache::Cache::builder(client).namespace("app:v1").build();
    /// assert_eq!(cache.redis_key("user:42"), b"app:v1:user:42");
    /// # }
    /// ```
    pub fn redis_key<K: CacheKey>(&self, key: K) -> Vec<u8> {
        self.full_key(key.key_bytes())
    }

    fn full_key(&self, key: &[u8]) -> Vec<u8> {
        let prefix = &self.inner.settings.prefix;
        let mut full = Vec::with_capacity(prefix.len() + key.len());
        full.extend_from_slice(prefix);
        full.extend_from_slice(key);
        full
    }

    /// The value under `key`, or `None` if there is none, it expired, it is a cached "does
    /// not exist", or it cannot be decoded as `T` (counted as `decode_error` and logged,
    /// never an error). A shard that cannot answer is an error of its kind.
    pub async fn get<K: CacheKey, T: DeserializeOwned>(&self, key: K) -> Result<Option<T>> {
        let full = self.full_key(key.key_bytes());
        match self.read(&full).await? {
            Found::Fresh(meta, bytes) if !meta.negative => match envelope::decode(&bytes, &meta) {
                Ok(v) => {
                    metrics::cache_request("hit");
                    Ok(Some(v))
                }
                Err(e) => {
                    self.undecodable(&e);
                    Ok(None)
                }
            },
            Found::Fresh(..) => {
                metrics::cache_request("negative");
                Ok(None)
            }
            Found::Missing | Found::Expired(..) => {
                metrics::cache_request("miss");
                Ok(None)
            }
            Found::Undecodable(e) => {
                self.undecodable(&e);
                Ok(None)
            }
        }
    }

    /// Stores `value` under `key` with the cache's TTL (jittered). A value that encodes to the
    /// codec's null (`None`) is stored as a cached "does not exist".
    pub async fn set<K: CacheKey, T: Serialize + ?Sized>(&self, key: K, value: &T) -> Result<()> {
        let ttl = self.jittered(self.inner.settings.ttl);
        self.set_with_ttl(key, value, ttl).await
    }

    /// Stores `value` under `key` for exactly `ttl` (no jitter; at least 1 ms).
    pub async fn set_with_ttl<K: CacheKey, T: Serialize + ?Sized>(
        &self,
        key: K,
        value: &T,
        ttl: Duration,
    ) -> Result<()> {
        let full = self.full_key(key.key_bytes());
        let ttl = ttl.max(Duration::from_millis(1));
        let (bytes, _) = self.seal(value, 0, ttl)?;
        self.store_revoking(&full, &bytes, ttl).await
    }

    /// Stores `value` under `key` (TTL as [`set`](Self::set)) and adds the key to each tag's
    /// set, so that [`invalidate_tag`](Self::invalidate_tag) removes it. Tags are added first:
    /// a value is never stored untagged.
    pub async fn set_tagged<K: CacheKey, T: Serialize + ?Sized>(
        &self,
        key: K,
        value: &T,
        tags: &[&str],
    ) -> Result<()> {
        let full = self.full_key(key.key_bytes());
        let ttl = self.jittered(self.inner.settings.ttl);
        let (bytes, _) = self.seal(value, 0, ttl)?;
        self.tag(&full, tags, self.physical(ttl)).await?;
        self.store_revoking(&full, &bytes, ttl).await
    }

    /// Reads `full`.
    pub(crate) async fn read(&self, full: &[u8]) -> Result<Found> {
        let bytes: Option<Vec<u8>> = self.inner.client.get(full).await?;
        Ok(self.classify(bytes))
    }

    pub(crate) fn classify(&self, bytes: Option<Vec<u8>>) -> Found {
        let Some(bytes) = bytes else {
            return Found::Missing;
        };
        match envelope::meta(&bytes) {
            Ok(meta) if meta.is_fresh(now_ms()) => Found::Fresh(meta, bytes),
            Ok(meta) => Found::Expired(meta, bytes),
            Err(e) => Found::Undecodable(e),
        }
    }

    /// Encodes `value` with a logical TTL of `ttl`; also says whether it is negative.
    pub(crate) fn seal<T: Serialize + ?Sized>(
        &self,
        value: &T,
        load_ms: u32,
        ttl: Duration,
    ) -> Result<(Vec<u8>, bool)> {
        envelope::encode(
            value,
            self.inner.settings.encoding,
            load_ms,
            expiry_after(ttl),
        )
    }

    /// Stores an envelope whose logical TTL is `ttl`; the key lives `stale_if_error` longer.
    pub(crate) async fn store(&self, full: &[u8], bytes: &[u8], ttl: Duration) -> Result<()> {
        self.inner
            .client
            .set_ex(full, bytes, self.physical(ttl))
            .await
    }

    /// Stores a value written by the caller (not loaded), revoking the lease of any load of
    /// the key in flight (its lock is deleted in the same script), so that load cannot
    /// overwrite this newer value; later callers of this process do not join that load.
    async fn store_revoking(&self, full: &[u8], bytes: &[u8], ttl: Duration) -> Result<()> {
        self.inner.flights.detach(full);
        let mut eval = redis::cmd("EVAL");
        eval.arg(STORE_REVOKING)
            .arg(0)
            .arg(full)
            .arg(load::lock_key(full))
            .arg(bytes)
            .arg(self.physical(ttl).as_millis().max(1) as u64);
        self.inner.client.query::<_, i64>(full, &eval).await?;
        Ok(())
    }

    /// The positions of `(position, full key)` pairs grouped by the shard each key is routed
    /// to now (for one command or script per shard).
    pub(crate) fn by_shard<'k>(
        &self,
        keys: impl IntoIterator<Item = (usize, &'k [u8])>,
    ) -> HashMap<ShardName, Vec<usize>> {
        let mut groups: HashMap<ShardName, Vec<usize>> = HashMap::new();
        for (i, key) in keys {
            groups
                .entry(self.inner.client.locate(key))
                .or_default()
                .push(i);
        }
        groups
    }

    /// The Redis TTL of a value whose logical TTL is `ttl`.
    pub(crate) fn physical(&self, ttl: Duration) -> Duration {
        ttl + self.inner.settings.stale_if_error
    }

    /// `ttl` spread by the jitter.
    pub(crate) fn jittered(&self, ttl: Duration) -> Duration {
        let j = self.inner.settings.jitter;
        if j == 0.0 {
            return ttl;
        }
        let factor = 1.0 + j * (2.0 * fastrand::f64() - 1.0);
        ttl.mul_f64(factor).max(Duration::from_millis(1))
    }

    /// Counts and logs an undecodable value.
    pub(crate) fn undecodable(&self, e: &envelope::DecodeError) {
        metrics::cache_request("decode_error");
        if !self.inner.decode_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "shardis cache: {e}; treated as a miss (further ones are logged at debug level)"
            );
        } else {
            tracing::debug!("shardis cache: {e}; treated as a miss");
        }
    }
}

/// Unix time in milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The Unix millisecond at which a value stored now with `ttl` expires.
pub(crate) fn expiry_after(ttl: Duration) -> u64 {
    now_ms().saturating_add(ttl.as_millis().min(u128::from(u64::MAX)) as u64)
}

/// Whether a cache error may be routed around by loading (everything but a refused key).
pub(crate) fn degradable(e: &Error) -> bool {
    e.kind() != ErrorKind::InvalidInput
}

/// Shards recently seen failing (timeout, connection failure), skipped by the read-through
/// calls until their mark passes.
#[derive(Debug, Default)]
struct Degraded {
    /// Whether any shard is marked: the hot path reads this one atomic only.
    any: AtomicBool,
    until: Mutex<HashMap<String, Instant>>,
}

impl Cache {
    /// Whether the shard of `full` is marked as failing.
    pub(crate) fn shard_skipped(&self, full: &[u8]) -> bool {
        let d = &self.inner.degraded;
        if !d.any.load(Ordering::Relaxed) {
            return false;
        }
        let shard = self.inner.client.locate(full);
        let mut until = d.until.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        until.retain(|_, t| *t > now);
        d.any.store(!until.is_empty(), Ordering::Relaxed);
        until.contains_key(shard.as_str())
    }

    /// Marks the shard of a failed request, if it failed by timeout or connection.
    pub(crate) fn note_failure(&self, e: &Error) {
        if !matches!(e.kind(), ErrorKind::Timeout | ErrorKind::Connection) {
            return;
        }
        let Some(shard) = e.shard() else { return };
        tracing::debug!(
            "shardis cache: shard {shard} failed ({e}); loading without it for {DEGRADED_FOR:?}"
        );
        let d = &self.inner.degraded;
        let mut until = d.until.lock().unwrap_or_else(|p| p.into_inner());
        until.insert(shard.to_owned(), Instant::now() + DEGRADED_FOR);
        d.any.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_is_clone_send_sync() {
        fn shared<T: Clone + Send + Sync + 'static>() {}
        shared::<Cache>();
    }

    #[test]
    fn keys_of_every_accepted_type_give_their_bytes() {
        fn bytes<K: CacheKey>(k: K) -> Vec<u8> {
            k.key_bytes().to_vec()
        }
        let s = String::from("a");
        let v = vec![b'a'];
        assert_eq!(bytes("a"), b"a");
        assert_eq!(bytes(&s), b"a");
        assert_eq!(bytes(s.clone()), b"a");
        assert_eq!(bytes(&b"a"[..]), b"a");
        assert_eq!(bytes(&v), b"a");
        assert_eq!(bytes(v), b"a");
    }
}
