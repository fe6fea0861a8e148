//! [`CacheBuilder`]: every setting of a [`Cache`], its default in one place.

use std::time::Duration;

use super::envelope::{Codec, Encoding};
use super::Cache;
use crate::Client;

/// Default of [`CacheBuilder::ttl`]: one hour.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Default of [`CacheBuilder::ttl_jitter`]: each TTL drawn within ±10 %.
pub const DEFAULT_TTL_JITTER: f64 = 0.1;
/// Default of [`CacheBuilder::negative_ttl`]: 30 seconds.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// Default of [`CacheBuilder::compress_above`]: values encoded to more than 1 KiB.
pub const DEFAULT_COMPRESS_ABOVE: usize = 1024;
/// Default of [`CacheBuilder::early_refresh`]: XFetch's β = 1.
pub const DEFAULT_EARLY_REFRESH: f64 = 1.0;
/// Default of [`CacheBuilder::lock_timeout`]: 5 seconds.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of [`CacheBuilder::stale_if_error`]: 0 (off).
pub const DEFAULT_STALE_IF_ERROR: Duration = Duration::ZERO;

/// The settings of a cache, validated.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// `namespace + ":"`, or empty.
    pub(crate) prefix: Vec<u8>,
    pub(crate) ttl: Duration,
    pub(crate) jitter: f64,
    pub(crate) negative_ttl: Duration,
    pub(crate) encoding: Encoding,
    pub(crate) beta: f64,
    pub(crate) lock_timeout: Duration,
    pub(crate) stale_if_error: Duration,
}

/// Builds a [`Cache`]; every setter documents its default.
///
/// Out-of-range values are clamped, never refused: a negative or NaN jitter or β is 0, a
/// jitter above 0.9 is 0.9, a zero TTL is 1 ms, a zero lock timeout is 1 ms.
///
/// ```no_run
/// # async fn run(client: shardis::Client) {
/// use std::time::Duration;
/// use shardis::cache::{Cache, Codec};
/// let cache = Cache::builder(client)
///     .namespace("app:v1")
///     .ttl(Duration::from_secs(3600))
///     .ttl_jitter(0.1)
///     .negative_ttl(Duration::from_secs(30))
///     .compress_above(1024)
///     .codec(Codec::Json)
///     .early_refresh(1.0)
///     .lock_timeout(Duration::from_secs(5))
///     .stale_if_error(Duration::from_secs(300))
///     .build();
/// # let _ = cache; }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct CacheBuilder {
    client: Client,
    settings: Settings,
}

impl CacheBuilder {
    pub(crate) fn new(client: Client) -> CacheBuilder {
        CacheBuilder {
            client,
            settings: Settings {
                prefix: Vec::new(),
                ttl: DEFAULT_TTL,
                jitter: DEFAULT_TTL_JITTER,
                negative_ttl: DEFAULT_NEGATIVE_TTL,
                encoding: Encoding {
                    codec: Codec::default(),
                    compress_above: DEFAULT_COMPRESS_ABOVE,
                },
                beta: DEFAULT_EARLY_REFRESH,
                lock_timeout: DEFAULT_LOCK_TIMEOUT,
                stale_if_error: DEFAULT_STALE_IF_ERROR,
            },
        }
    }

    /// A prefix for every key: key `k` is stored as `"{namespace}:k"`, and invalidation by
    /// pattern or tag stays inside the namespace. Change it (`app:v2`) to start over with an
    /// empty cache after an incompatible change of the cached types. Defaults to none.
    pub fn namespace(mut self, namespace: impl AsRef<str>) -> Self {
        let ns = namespace.as_ref();
        self.settings.prefix = if ns.is_empty() {
            Vec::new()
        } else {
            format!("{ns}:").into_bytes()
        };
        self
    }

    /// The TTL of [`Cache::set`], [`Cache::set_tagged`] and loaded values (before jitter).
    /// Defaults to [`DEFAULT_TTL`] (1 hour).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.settings.ttl = ttl.max(Duration::from_millis(1));
        self
    }

    /// How far each TTL is spread, as a fraction: every stored TTL is drawn uniformly in
    /// `ttl × (1 ± jitter)`, so values written together do not expire together. 0 turns it
    /// off; at most 0.9. Defaults to [`DEFAULT_TTL_JITTER`] (0.1, ±10 %).
    pub fn ttl_jitter(mut self, jitter: f64) -> Self {
        self.settings.jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 0.9)
        };
        self
    }

    /// How long a loader's "does not exist" is cached (jittered like every TTL): a loader
    /// answer that encodes to the codec's null (`None` of an `Option`), and keys that the
    /// batch loader of [`Cache::get_many_or_load`] did not return. Defaults to
    /// [`DEFAULT_NEGATIVE_TTL`] (30 s).
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.settings.negative_ttl = ttl.max(Duration::from_millis(1));
        self
    }

    /// Compress encoded values longer than this many bytes with LZ4. `usize::MAX` turns
    /// compression off. Defaults to [`DEFAULT_COMPRESS_ABOVE`] (1024).
    pub fn compress_above(mut self, bytes: usize) -> Self {
        self.settings.encoding.compress_above = bytes;
        self
    }

    /// The codec values are written with (values are read with the codec recorded in them).
    /// Defaults to [`Codec::Json`].
    pub fn codec(mut self, codec: Codec) -> Self {
        self.settings.encoding.codec = codec;
        self
    }

    /// XFetch's β for early refresh: a read of a fresh value by
    /// [`get_or_load`](Cache::get_or_load) starts a background reload with probability rising
    /// as expiry nears (refresh when `now − load_time × β × ln(rand) ≥ expiry`), so a hot key
    /// is reloaded before it expires and no caller waits for its loader. Larger refreshes
    /// earlier; 0.0 turns early refresh off. Defaults to [`DEFAULT_EARLY_REFRESH`] (1.0).
    pub fn early_refresh(mut self, beta: f64) -> Self {
        self.settings.beta = if beta.is_nan() { 0.0 } else { beta.max(0.0) };
        self
    }

    /// The lifetime of the load lock a loading caller takes in Redis (on the key's shard), and
    /// how long callers in other processes wait for that load before loading themselves. Set
    /// it above your slowest load. Defaults to [`DEFAULT_LOCK_TIMEOUT`] (5 s).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.settings.lock_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long after its expiry a value is still served when its reload fails: the key
    /// stays in Redis this much longer than its TTL, and a failed load returns the expired
    /// value (counted as `stale`) instead of the loader's error. Defaults to
    /// [`DEFAULT_STALE_IF_ERROR`] (0: the loader's error is returned).
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.settings.stale_if_error = window;
        self
    }

    /// The cache.
    pub fn build(self) -> Cache {
        Cache::from_parts(self.client, self.settings)
    }
}
