//! Every setting of a client except its shards, with its default, and one place that checks
//! them all: [`Options::validate`].
//!
//! Each field's doc names its default and its config key; each default is a `const` beside the
//! field. Ranges are bounded so that no arithmetic on them can overflow (e.g. a probe interval
//! times a failure threshold).

use std::time::Duration;

use serde::Deserialize;

use crate::error::ConfigError;
use crate::placement::{CustomPlacement, HashTag, PlacementSource, PlacementSpec};
use crate::tls::TlsOptions;

/// Everything about a client except its shards: placement, pools and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// The placement algorithm and its parameters. Defaults to `rendezvous_table` with 2^21 arcs.
    pub placement: PlacementSpec,
    /// The hash tag, if any. Defaults to none: the whole key is hashed.
    pub hash_tag: Option<HashTag>,
    /// Pool settings for every endpoint.
    pub pool: PoolOptions,
    /// Health monitoring.
    pub health: HealthOptions,
    /// Read and failover policies.
    pub routing: RoutingOptions,
    /// A placement algorithm of your own, used instead of `placement` when set. Defaults to
    /// none.
    pub custom_placement: Option<CustomPlacement>,
    /// The largest key accepted, in bytes; a longer key is rejected with
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) before anything is sent. Defaults to
    /// [`Options::DEFAULT_MAX_KEY_BYTES`], Redis's own limit.
    pub max_key_bytes: usize,
    /// How `rediss://` endpoints are reached (`[tls]`). Defaults to the system's trust roots,
    /// no client certificate, verification on.
    pub tls: TlsOptions,
    /// Warm resharding (`[resharding]` in the config file). Defaults to off.
    pub resharding: ReshardingOptions,
}

impl Options {
    /// Redis's own key size limit: 512 MiB.
    pub const DEFAULT_MAX_KEY_BYTES: usize = 512 * 1024 * 1024;

    /// Checks every setting's range; the error names the setting as the config file does.
    /// Called by the builder, the config parser and every reload, so all three agree.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.placement.validate()?;
        self.pool.validate()?;
        if self.pool.hedge_after != HedgeAfter::Off && self.routing.read_from == ReadFrom::Primary {
            return Err(ConfigError::InvalidValue {
                field: "pool.hedge_after_ms".into(),
                reason: "reads go to primaries only (routing.read_from = \"primary\"), so no \
                         read can be hedged; set read_from to \"primary_then_replica\" or \
                         \"prefer_replica\""
                    .into(),
            });
        }
        self.health.validate()?;
        self.tls.validate()?;
        self.resharding.validate()?;
        if self.max_key_bytes == 0 || self.max_key_bytes > Self::DEFAULT_MAX_KEY_BYTES {
            return Err(ConfigError::InvalidValue {
                field: "limits.max_key_bytes".into(),
                reason: format!(
                    "{} is outside 1..={}",
                    self.max_key_bytes,
                    Self::DEFAULT_MAX_KEY_BYTES
                ),
            });
        }
        Ok(())
    }

    /// Where placement tables come from: the custom placement if set, else `placement`.
    pub fn placement_source(&self) -> PlacementSource {
        match &self.custom_placement {
            Some(custom) => PlacementSource::Custom(custom.clone()),
            None => PlacementSource::Spec(self.placement),
        }
    }
}

/// An out-of-range setting.
fn out_of_range(field: &str, value: impl std::fmt::Display, range: &str) -> ConfigError {
    ConfigError::InvalidValue {
        field: field.into(),
        reason: format!("{value} is outside {range}"),
    }
}

/// Checks a duration in milliseconds against `min..=max` ms.
fn check_ms(field: &str, d: Duration, min: u64, max: u64) -> Result<(), ConfigError> {
    let ms = d.as_millis();
    if ms < u128::from(min) || ms > u128::from(max) {
        return Err(out_of_range(field, ms, &format!("{min}..={max}")));
    }
    Ok(())
}

impl Default for Options {
    fn default() -> Self {
        Options {
            placement: PlacementSpec::default(),
            hash_tag: None,
            pool: PoolOptions::default(),
            health: HealthOptions::default(),
            routing: RoutingOptions::default(),
            custom_placement: None,
            max_key_bytes: Self::DEFAULT_MAX_KEY_BYTES,
            tls: TlsOptions::default(),
            resharding: ReshardingOptions::default(),
        }
    }
}

/// Pool settings for every endpoint (`[pool]` in the config file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PoolOptions {
    /// Multiplexed connections kept open to each endpoint. Each carries any number of
    /// concurrent requests, pipelined; more than one spreads reply parsing over more tasks but
    /// batches fewer requests per system call. Defaults to [`PoolOptions::DEFAULT_CONNECTIONS`].
    pub connections_per_endpoint: u32,
    /// Limit on establishing a connection (TCP connect and handshake), and on waiting for a
    /// pooled connection. Defaults to [`PoolOptions::DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// Limit on waiting for a reply to a request. Defaults to
    /// [`PoolOptions::DEFAULT_RESPONSE_TIMEOUT`].
    pub response_timeout: Duration,
    /// Merge concurrent reads per endpoint (`coalesce_reads`): `get`s and the per-shard parts
    /// of `mget`s that go to one endpoint while a batch to it is in flight are sent together
    /// as one `MGET` when it answers. No timer: a read that finds no batch in flight is sent
    /// at once. With it on, `get` is always sent as `MGET`, so a key holding a non-string
    /// reads as nil instead of failing with `WRONGTYPE`; `query` and `query_read` are never
    /// merged. Defaults to [`PoolOptions::DEFAULT_COALESCE_READS`].
    pub coalesce_reads: bool,
    /// Hedged reads (`hedge_after_ms`): a read allowed on a replica that has no answer after
    /// this delay is also sent to the shard's other endpoint, and the first answer wins; at
    /// most 5% of reads (plus a burst of 10) are hedged. Defaults to [`HedgeAfter::Off`].
    pub hedge_after: HedgeAfter,
}

/// When a read is hedged (`[pool] hedge_after_ms`): a number of milliseconds, `"adaptive"`,
/// or off (the default, when the key is absent).
///
/// ```
/// use std::time::Duration;
/// use shardis::HedgeAfter;
/// assert_eq!(HedgeAfter::from(5), HedgeAfter::Fixed(Duration::from_millis(5)));
/// assert_eq!(HedgeAfter::default(), HedgeAfter::Off);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum HedgeAfter {
    /// No hedging.
    #[default]
    Off,
    /// Hedge after this long without an answer (1 ms up to below the response timeout).
    Fixed(Duration),
    /// Hedge after the endpoint's observed p99 read latency (over its recent reads, at least
    /// [`HedgeAfter::ADAPTIVE_FLOOR`]); [`HedgeAfter::ADAPTIVE_START`] until it has answered
    /// enough reads to tell.
    Adaptive,
}

impl HedgeAfter {
    /// The shortest adaptive delay: 1 ms. Below that, a hedge costs more than it saves.
    pub const ADAPTIVE_FLOOR: Duration = Duration::from_millis(1);
    /// The adaptive delay before an endpoint has a latency record: 10 ms.
    pub const ADAPTIVE_START: Duration = Duration::from_millis(10);
}

impl From<u64> for HedgeAfter {
    /// A fixed delay of `ms` milliseconds.
    fn from(ms: u64) -> HedgeAfter {
        HedgeAfter::Fixed(Duration::from_millis(ms))
    }
}

impl From<Duration> for HedgeAfter {
    fn from(d: Duration) -> HedgeAfter {
        HedgeAfter::Fixed(d)
    }
}

impl PoolOptions {
    /// Default connections per endpoint: 1. One multiplexed connection pipelines every
    /// concurrent request of the process to that endpoint; measured on 2 cores with 64
    /// concurrent requests, 1 connection gave 1.45x the throughput of 2 and 1.8x that of 4.
    pub const DEFAULT_CONNECTIONS: u32 = 1;
    /// Default connect timeout: 500 ms. A cache that cannot connect within that is better
    /// treated as down than waited for.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
    /// Default response timeout: 500 ms.
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
    /// Default `coalesce_reads`: see the README's "Read coalescing and hedged reads" for the
    /// measurements it was chosen from.
    pub const DEFAULT_COALESCE_READS: bool = true;
    /// Upper bound on connections per endpoint.
    pub const MAX_CONNECTIONS: u32 = 1024;
    /// Upper bound on the connect and response timeouts: 1 hour.
    pub const MAX_TIMEOUT_MS: u64 = 3_600_000;

    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=Self::MAX_CONNECTIONS).contains(&self.connections_per_endpoint) {
            return Err(out_of_range(
                "pool.connections_per_endpoint",
                self.connections_per_endpoint,
                &format!("1..={}", Self::MAX_CONNECTIONS),
            ));
        }
        check_ms(
            "pool.connect_timeout_ms",
            self.connect_timeout,
            1,
            Self::MAX_TIMEOUT_MS,
        )?;
        check_ms(
            "pool.response_timeout_ms",
            self.response_timeout,
            1,
            Self::MAX_TIMEOUT_MS,
        )?;
        if let HedgeAfter::Fixed(d) = self.hedge_after {
            // A hedge at or after the response timeout would never go: the read has failed
            // over by then.
            let below = (self.response_timeout.as_millis() as u64).saturating_sub(1);
            check_ms("pool.hedge_after_ms", d, 1, below.max(1))?;
            if d >= self.response_timeout {
                return Err(out_of_range(
                    "pool.hedge_after_ms",
                    d.as_millis(),
                    "1..response_timeout_ms",
                ));
            }
        }
        Ok(())
    }
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            connections_per_endpoint: Self::DEFAULT_CONNECTIONS,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
            coalesce_reads: Self::DEFAULT_COALESCE_READS,
            hedge_after: HedgeAfter::Off,
        }
    }
}

/// Health monitoring settings (`[health]` in the config file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct HealthOptions {
    /// Time between probe rounds. Defaults to [`HealthOptions::DEFAULT_INTERVAL`].
    pub interval: Duration,
    /// Limit on one probe (`PING`). Defaults to [`HealthOptions::DEFAULT_PROBE_TIMEOUT`].
    pub probe_timeout: Duration,
    /// Consecutive failures that mark an endpoint down. Defaults to
    /// [`HealthOptions::DEFAULT_FAILURE_THRESHOLD`].
    pub failure_threshold: u32,
    /// Consecutive successful probes that bring a down endpoint back. Defaults to
    /// [`HealthOptions::DEFAULT_RECOVERY_PROBES`].
    pub recovery_probes: u32,
}

impl HealthOptions {
    /// 250 ms: with the immediate re-probe of a suspect endpoint, a dead one is marked down
    /// within about 300 ms even with no traffic (go-redis's Ring needs about 1.5 s).
    pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(250);
    /// 100 ms: a PING on loopback or a LAN answers in well under a millisecond; a host that
    /// needs 100 ms is in trouble.
    pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(100);
    /// 2: one lost packet does not take a host out; two in a row do.
    pub const DEFAULT_FAILURE_THRESHOLD: u32 = 2;
    /// 2: a host that answers once after a crash may be restarting; twice in a row, it is back.
    pub const DEFAULT_RECOVERY_PROBES: u32 = 2;
    /// Upper bound on the interval and the probe timeout: 1 hour.
    pub const MAX_INTERVAL_MS: u64 = 3_600_000;
    /// Upper bound on `failure_threshold` and `recovery_probes`.
    pub const MAX_COUNT: u32 = 1_000;

    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_ms(
            "health.interval_ms",
            self.interval,
            10,
            Self::MAX_INTERVAL_MS,
        )?;
        check_ms(
            "health.probe_timeout_ms",
            self.probe_timeout,
            1,
            Self::MAX_INTERVAL_MS,
        )?;
        for (field, v) in [
            ("health.failure_threshold", self.failure_threshold),
            ("health.recovery_probes", self.recovery_probes),
        ] {
            if !(1..=Self::MAX_COUNT).contains(&v) {
                return Err(out_of_range(field, v, &format!("1..={}", Self::MAX_COUNT)));
            }
        }
        Ok(())
    }
}

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions {
            interval: Self::DEFAULT_INTERVAL,
            probe_timeout: Self::DEFAULT_PROBE_TIMEOUT,
            failure_threshold: Self::DEFAULT_FAILURE_THRESHOLD,
            recovery_probes: Self::DEFAULT_RECOVERY_PROBES,
        }
    }
}

/// Where reads go (`[routing] read_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReadFrom {
    /// Reads go to the primary; when it is down they fail fast with `ShardUnavailable`. The
    /// default: a replica may lag, and a cache that reads its own writes is least surprising.
    #[default]
    Primary,
    /// Reads go to a healthy replica (round robin), else to the primary; a read that fails on
    /// a replica with a connection error or timeout is retried on the primary.
    PreferReplica,
    /// Reads go to the primary; when it is down, or a read on it fails with a connection error
    /// or timeout, the same read is sent at once to a healthy replica, so the caller sees no
    /// error.
    PrimaryThenReplica,
}

/// What happens to a shard whose primary is down (`[routing] on_primary_down`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnPrimaryDown {
    /// Writes fail at once with `ShardUnavailable` naming the shard; no key changes shard.
    /// The default: nothing is remapped, so nothing goes stale when the host comes back.
    #[default]
    FailFast,
    /// The shard leaves the placement while down (its keys go to their next owner, as with
    /// twemproxy's `auto_eject_hosts`) and rejoins after its recovery probes. Keys written
    /// elsewhere meanwhile are not moved back, and the shard's own copies of keys overwritten
    /// elsewhere are stale when it rejoins: set `flush_on_rejoin` to empty it first.
    Eject,
    /// The healthy replica with the largest replication offset is promoted (`REPLICAOF NO
    /// ONE`), the other replicas follow it, and writes go there; the old primary is made a
    /// replica of it when it comes back. Safe only when this client is the single controller
    /// of failover for these hosts (no Sentinel, no second client doing the same).
    PromoteReplica,
}

/// Routing policies (`[routing]` in the config file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RoutingOptions {
    /// Where reads go. Defaults to [`ReadFrom::Primary`].
    pub read_from: ReadFrom,
    /// What a shard with a down primary does. Defaults to [`OnPrimaryDown::FailFast`].
    pub on_primary_down: OnPrimaryDown,
    /// With `eject`: `FLUSHDB` a shard's primary before it rejoins. Defaults to false.
    pub flush_on_rejoin: bool,
}

impl ReadFrom {
    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadFrom::Primary => "primary",
            ReadFrom::PreferReplica => "prefer_replica",
            ReadFrom::PrimaryThenReplica => "primary_then_replica",
        }
    }
}

impl OnPrimaryDown {
    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            OnPrimaryDown::FailFast => "fail_fast",
            OnPrimaryDown::Eject => "eject",
            OnPrimaryDown::PromoteReplica => "promote_replica",
        }
    }
}

/// Warm resharding (`[resharding]` in the config file; needs the `warm` feature): after a
/// topology change, a moved key's previous owner is consulted for `warm_window` so that the
/// keys that move do not go cold. See the README's "Warm resharding" for what is guaranteed.
///
/// ```
/// let parsed = shardis::Config::from_toml_str(r#"
///     [resharding]
///     warm = true
///     warm_window_s = 120
///     [[shards]]
///     name = "a"
///     primary = "redis://127.0.0.1:7001"
/// "#);
/// match parsed {
///     Ok(config) => {
///         let r = config.options().resharding;
///         assert!(r.warm);
///         assert_eq!(r.warm_window, std::time::Duration::from_secs(120));
///     }
///     // A build without the `warm` feature refuses `warm = true`, naming the feature.
///     Err(e) => assert!(e.to_string().contains("`warm` feature"), "{e}"),
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReshardingOptions {
    /// `warm`: after `update_topology`, `reload_config` or the config watcher changes
    /// placement, reads that miss a moved key on its new owner read its previous owner and
    /// move the value over; writes and deletes of a moved key remove it from its previous
    /// owner. Defaults to false.
    pub warm: bool,
    /// `warm_window_s`: how long the previous owner is consulted after a change. Defaults to
    /// [`ReshardingOptions::DEFAULT_WARM_WINDOW`].
    pub warm_window: Duration,
}

impl ReshardingOptions {
    /// 600 s.
    pub const DEFAULT_WARM_WINDOW: Duration = Duration::from_secs(600);
    /// The longest window accepted: one day.
    pub const MAX_WARM_WINDOW: Duration = Duration::from_secs(86_400);

    fn validate(&self) -> Result<(), ConfigError> {
        if self.warm && cfg!(not(feature = "warm")) {
            return Err(ConfigError::InvalidValue {
                field: "resharding.warm".into(),
                reason: "this build of shardis has no `warm` feature".into(),
            });
        }
        check_ms(
            "resharding.warm_window_s",
            self.warm_window,
            1000,
            Self::MAX_WARM_WINDOW.as_millis() as u64,
        )
    }
}

impl Default for ReshardingOptions {
    fn default() -> Self {
        ReshardingOptions {
            warm: false,
            warm_window: Self::DEFAULT_WARM_WINDOW,
        }
    }
}
