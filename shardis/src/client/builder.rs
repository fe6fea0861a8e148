//! [`ClientBuilder`]: shards and settings, checked once by [`Options::validate`] at `build`.

use std::time::Duration;

use super::Client;
use crate::config::Config;
use crate::error::Result;
use crate::options::{HealthOptions, HedgeAfter, OnPrimaryDown, Options, ReadFrom};
use crate::placement::{CustomPlacement, HashTag, PlacementSpec};
use crate::topology::{ShardSpec, Topology};

/// Builds a [`Client`].
///
/// Defaults: `rendezvous_table` placement, no hash tag, 1 connection per endpoint, 500 ms
/// connect and response timeouts, health probes every 250 ms, reads from primaries, fail fast
/// when a primary is down, and a connection check of every primary at [`build`](Self::build).
///
/// ```no_run
/// # async fn run() -> shardis::Result<()> {
/// use std::time::Duration;
/// use shardis::{Client, ReadFrom, ShardSpec};
/// let client = Client::builder()
///     .shard("cache-a", "redis://127.0.0.1:7001")
///     .shard_spec(ShardSpec::new("cache-b", "redis://127.0.0.1:7002").replica("redis://127.0.0.1:7102"))
///     .hash_tag("{}")
///     .read_from(ReadFrom::PrimaryThenReplica)
///     .response_timeout(Duration::from_millis(200))
///     .build()
///     .await?;
/// # let _ = client; Ok(()) }
/// ```
#[derive(Debug, Default)]
#[must_use]
pub struct ClientBuilder {
    /// Shards from a config file, already validated (passwords kept as parsed, never
    /// re-rendered).
    topology: Option<Topology>,
    /// Shards added one by one, validated with the others at `build`.
    specs: Vec<ShardSpec>,
    options: Options,
    hash_tag: Option<String>,
    lazy: bool,
}

impl ClientBuilder {
    /// Adds a shard with weight 1 and no replica.
    pub fn shard(mut self, name: impl Into<String>, primary_url: impl Into<String>) -> Self {
        self.specs.push(ShardSpec::new(name, primary_url));
        self
    }

    /// Takes the shards and every setting from a parsed config file, replacing what was set
    /// before.
    pub fn config(mut self, config: Config) -> Self {
        let (topology, options) = config.into_parts();
        self.topology = Some(topology);
        self.specs.clear();
        self.hash_tag = None;
        self.options = options;
        self
    }

    /// Adds a fully described shard (weight, replicas).
    pub fn shard_spec(mut self, spec: ShardSpec) -> Self {
        self.specs.push(spec);
        self
    }

    /// Hashes only the part of a key between the two tag characters, e.g. `"{}"`.
    /// Defaults to none.
    pub fn hash_tag(mut self, tag: impl Into<String>) -> Self {
        self.hash_tag = Some(tag.into());
        self
    }

    /// The placement algorithm. Defaults to `rendezvous_table` with 2^21 arcs.
    pub fn placement(mut self, spec: PlacementSpec) -> Self {
        self.options.placement = spec;
        self.options.custom_placement = None;
        self
    }

    /// A placement algorithm of your own (any [`Placement`](crate::placement::Placement)
    /// implementation), used instead of the built-in ones. Defaults to none.
    pub fn custom_placement(mut self, custom: CustomPlacement) -> Self {
        self.options.custom_placement = Some(custom);
        self
    }

    /// Multiplexed connections per endpoint. Defaults to 1.
    pub fn connections_per_endpoint(mut self, n: u32) -> Self {
        self.options.pool.connections_per_endpoint = n;
        self
    }

    /// Connect (and connection wait) timeout. Defaults to 500 ms.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.pool.connect_timeout = timeout;
        self
    }

    /// Response timeout. Defaults to 500 ms.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.options.pool.response_timeout = timeout;
        self
    }

    /// Merges concurrent `get`s and `mget` parts per endpoint into one `MGET` while a batch to
    /// that endpoint is in flight (see [`PoolOptions::coalesce_reads`](crate::PoolOptions)).
    /// Defaults to [`PoolOptions::DEFAULT_COALESCE_READS`](crate::PoolOptions::DEFAULT_COALESCE_READS).
    pub fn coalesce_reads(mut self, on: bool) -> Self {
        self.options.pool.coalesce_reads = on;
        self
    }

    /// Hedged reads: `hedge_after_ms(5)` sends a read that has no answer after 5 ms to the
    /// shard's other endpoint too (first answer wins, at most 5% of reads hedged);
    /// `hedge_after_ms(HedgeAfter::Adaptive)` waits for the endpoint's observed p99. Needs a
    /// `read_from` that allows replicas. Defaults to [`HedgeAfter::Off`].
    ///
    /// ```no_run
    /// # async fn run() -> shardis::Result<()> {
    /// use shardis::{Client, HedgeAfter, ReadFrom, ShardSpec};
    /// let client = Client::builder()
    ///     .shard_spec(ShardSpec::new("a", "redis://127.0.0.1:7001").replica("redis://127.0.0.1:7101"))
    ///     .read_from(ReadFrom::PrimaryThenReplica)
    ///     .hedge_after_ms(HedgeAfter::Adaptive)
    ///     .build()
    ///     .await?;
    /// # let _ = client; Ok(()) }
    /// ```
    pub fn hedge_after_ms(mut self, hedge: impl Into<HedgeAfter>) -> Self {
        self.options.pool.hedge_after = hedge.into();
        self
    }

    /// Health monitoring settings. Defaults to [`HealthOptions::default`].
    pub fn health(mut self, health: HealthOptions) -> Self {
        self.options.health = health;
        self
    }

    /// Where reads go. Defaults to [`ReadFrom::Primary`].
    pub fn read_from(mut self, policy: ReadFrom) -> Self {
        self.options.routing.read_from = policy;
        self
    }

    /// What a shard with a down primary does. Defaults to [`OnPrimaryDown::FailFast`].
    pub fn on_primary_down(mut self, policy: OnPrimaryDown) -> Self {
        self.options.routing.on_primary_down = policy;
        self
    }

    /// With [`OnPrimaryDown::Eject`], empty a shard (`FLUSHDB`) before it rejoins. Defaults to
    /// false.
    pub fn flush_on_rejoin(mut self, flush: bool) -> Self {
        self.options.routing.flush_on_rejoin = flush;
        self
    }

    /// How `rediss://` endpoints are reached: trust roots, a client certificate for mutual
    /// TLS, or no verification (see [`TlsOptions`](crate::TlsOptions)). Defaults to the
    /// system's trust roots and no client certificate.
    ///
    /// ```
    /// let builder = shardis::Client::builder()
    ///     .shard("cache-a", "rediss://cache-a.internal:6380")
    ///     .tls(shardis::TlsOptions::default().ca_file("/etc/shardis/ca.pem"));
    /// # let _ = builder;
    /// ```
    pub fn tls(mut self, tls: crate::TlsOptions) -> Self {
        self.options.tls = tls;
        self
    }

    /// The largest key accepted, in bytes. Defaults to 512 MiB, Redis's own limit.
    pub fn max_key_bytes(mut self, n: usize) -> Self {
        self.options.max_key_bytes = n;
        self
    }

    /// Warm resharding for `window` after each topology change: a read that misses a moved
    /// key on its new owner reads its previous owner and moves the value over (TTL kept), and
    /// a write or delete of a moved key removes it from its previous owner. Same as
    /// `[resharding] warm = true` and `warm_window_s`. Defaults to off. `window` must be
    /// 1 s to 1 day (checked at [`build`](Self::build)).
    ///
    /// ```no_run
    /// # async fn run() -> shardis::Result<()> {
    /// use std::time::Duration;
    /// let client = shardis::Client::builder()
    ///     .shard("cache-a", "redis://127.0.0.1:7001")
    ///     .warm_resharding(Duration::from_secs(600))
    ///     .build()
    ///     .await?;
    /// # let _ = client; Ok(()) }
    /// ```
    #[cfg(feature = "warm")]
    #[cfg_attr(docsrs, doc(cfg(feature = "warm")))]
    pub fn warm_resharding(mut self, window: Duration) -> Self {
        self.options.resharding.warm = true;
        self.options.resharding.warm_window = window;
        self
    }

    /// Skips the connection check at [`build`](Self::build): pools connect in the background
    /// and an unreachable shard fails its own requests only. Defaults to false.
    pub fn lazy_connect(mut self, lazy: bool) -> Self {
        self.lazy = lazy;
        self
    }

    /// Validates the topology and options, opens the pools and, unless
    /// [`lazy_connect`](Self::lazy_connect), waits until every shard's primary accepts a
    /// connection (each bounded by the connect timeout).
    pub async fn build(mut self) -> Result<Client> {
        if let Some(tag) = &self.hash_tag {
            self.options.hash_tag = Some(HashTag::parse(tag)?);
        }
        self.options.validate()?;
        let topology = match self.topology {
            Some(t) if self.specs.is_empty() => t,
            Some(t) => t.with_specs(self.specs)?,
            None => Topology::new(self.specs)?,
        };
        Client::start(topology, self.options, self.lazy).await
    }
}
