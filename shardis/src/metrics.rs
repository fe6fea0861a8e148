//! Metrics, through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`, on by
//! default).
//!
//! The library records; the application chooses where the numbers go by installing a recorder
//! (a Prometheus exporter, a StatsD bridge, a test recorder). With no recorder installed every
//! call is a near no-op; without the feature the calls compile away.
//!
//! The names below are a contract: dashboards and alerts are built on them. Every metric is
//! prefixed `shardis_`, counters end in `_total`, durations are in seconds. **Labels never carry
//! a key, a value or a password**: `shard` is the shard's configured name, `endpoint` is
//! `host:port` (the database number, shown by `status` as `/db`, is not part of it), `role` is
//! `primary` or `replica` (the endpoint's role in the routing table in force), and `command` is
//! one of a fixed set of names. Every label set is bounded by the topology.
//!
//! Gauges are set when they change and again on every probe round of the health monitor, so a
//! recorder installed after the client was built sees them within one `health.interval_ms`.
//! Series of an endpoint that left the topology or changed role keep their last value unless
//! the exporter drops idle series (`serve_prometheus` drops gauges idle for 5 minutes).
//!
//! `describe` (feature `metrics`) registers the descriptions and units of every metric with the
//! current recorder; building a client calls it, and so does `serve_prometheus` (feature
//! `prometheus`).

#[cfg(feature = "prometheus")]
mod prometheus;
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub use prometheus::serve_prometheus;

/// Counter: one per attempt of a request on an endpoint, and one per request refused because
/// no endpoint could take it.
///
/// Labels: `shard`, `role`, `command`, `outcome`.
/// - `command`: `GET`, `SET` (also `set_ex`), `DEL` (also `del_many`), `EXISTS`, `PEXPIRE`,
///   `PTTL`, `INCRBY`, `MGET`, `MSET`, and `QUERY` for every command sent by `query` and
///   `query_read` (their own names are not recorded, to keep the label set small) and by
///   `on_every_shard`; `PIPELINE` for each shard's part of a `query_pipeline`, `MULTI` for a
///   transaction, `EVALSHA` for a script (the lock and the rate limiter included), `SCAN` for
///   each call of a scan.
/// - `outcome`: `ok` (any reply, error replies excepted); `error` (an error reply, a connection
///   failure); `timeout` (no connection or no reply in time); `unavailable` (refused before any
///   I/O: the shard's endpoints are down, or every shard is ejected — then `shard` is empty).
///
/// A multi-key command counts once per shard part; a read retried on its fallback endpoint
/// counts once per attempt. For `unavailable`, `role` is the role the request needed: `primary`
/// for writes, and for reads the policy's first choice (`replica` under `prefer_replica`).
pub const REQUESTS_TOTAL: &str = "shardis_requests_total";

/// Histogram, seconds: how long one attempt on an endpoint took, from taking a connection to
/// the reply or the error (requests refused as `unavailable` are not timed).
///
/// Labels: `shard`, `role`.
pub const REQUEST_DURATION_SECONDS: &str = "shardis_request_duration_seconds";

/// Gauge, 0 or 1: whether requests may use the endpoint — 1 when its health is `up` or
/// `suspect`, 0 when it is `down` or `role_mismatch`.
///
/// Labels: `shard`, `endpoint`, `role`.
pub const ENDPOINT_UP: &str = "shardis_endpoint_up";

/// Counter: failover actions.
///
/// Labels: `shard`, `kind`.
/// - `replica_read`: a read served by a replica because the primary was down or failed
///   (`read_from = "primary_then_replica"`; replica reads under `prefer_replica` are normal and
///   not counted);
/// - `eject`, `rejoin`: the shard left or rejoined the placement (`on_primary_down = "eject"`);
/// - `promote`: a replica was promoted to primary (`on_primary_down = "promote_replica"`);
/// - `sentinel_switch`: a Sentinel-managed shard's primary moved (its sentinels named
///   another one, and the client repointed the shard).
pub const FAILOVERS_TOTAL: &str = "shardis_failovers_total";

/// Gauge: request connections open to the endpoint (the pool aims for
/// `pool.connections_per_endpoint`; fewer means some could not be made).
///
/// Labels: `shard`, `endpoint`.
pub const POOL_CONNECTIONS: &str = "shardis_pool_connections";

/// Gauge: the version of the routing table in force: 1 at start, +1 per topology swap,
/// ejection, rejoin or promotion (as `Client::topology_version`).
///
/// No labels.
pub const ROUTING_TABLE_VERSION: &str = "shardis_routing_table_version";

/// Counter: merged `MGET`s sent by read coalescing (`pool.coalesce_reads`) that carried the
/// reads of two or more callers. A read sent alone is not counted.
///
/// Labels: `shard`.
pub const COALESCED_BATCHES_TOTAL: &str = "shardis_coalesced_batches_total";

/// Counter: reads (`get` calls and per-shard parts of `mget` calls) that went in a merged
/// `MGET` with other callers' reads. Divided by [`COALESCED_BATCHES_TOTAL`]: the mean number
/// of callers per merged batch.
///
/// Labels: `shard`.
pub const COALESCED_READS_TOTAL: &str = "shardis_coalesced_reads_total";

/// Counter: hedged reads (`pool.hedge_after_ms`), by what came of them.
///
/// Labels: `shard`, `result`:
/// - `won`: the hedge, sent to the shard's other endpoint, answered first;
/// - `lost`: the first endpoint answered first (the hedge was extra load);
/// - `capped`: the delay passed without an answer, but the hedge budget (5% of reads) was
///   spent, so no hedge was sent.
pub const HEDGED_READS_TOTAL: &str = "shardis_hedged_reads_total";

/// Counter (cache layer): lookups by what they found.
///
/// Labels: `result`: `hit` (a fresh value), `miss` (no value), `stale` (a value past its
/// freshness, served while it is refreshed), `negative` (a cached "does not exist"),
/// `decode_error` (a stored value that does not decode; treated as a miss).
pub const CACHE_REQUESTS_TOTAL: &str = "shardis_cache_requests_total";

/// Counter (cache layer): loader runs after a miss or for a refresh.
///
/// Labels: `outcome`: `ok` (loaded and stored) or `error` (the loader failed; nothing stored).
pub const CACHE_LOADS_TOTAL: &str = "shardis_cache_loads_total";

/// Histogram, seconds (cache layer): how long a loader run took.
///
/// No labels.
pub const CACHE_LOAD_DURATION_SECONDS: &str = "shardis_cache_load_duration_seconds";

/// Counter (cache layer): callers that waited for another caller's load instead of loading.
///
/// Labels: `source`: `in_process` (another task of this process was loading the key) or `lock`
/// (another process held the key's load lock on its shard).
pub const CACHE_WAITS_TOTAL: &str = "shardis_cache_waits_total";

/// Counter (cache layer): values refreshed before they expired (probabilistic early refresh).
///
/// No labels.
pub const CACHE_EARLY_REFRESHES_TOTAL: &str = "shardis_cache_early_refreshes_total";

/// Registers the description and unit of every metric above with the current recorder.
///
/// Recorders keep descriptions they were given, so call this after installing a recorder of
/// your own if it was installed after the client was built. It is cheap and idempotent.
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        REQUESTS_TOTAL,
        Unit::Count,
        "Attempts of requests on endpoints, and requests refused before I/O, by outcome (ok, error, timeout, unavailable)."
    );
    describe_histogram!(
        REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of one attempt of a request on an endpoint."
    );
    describe_gauge!(
        ENDPOINT_UP,
        "1 when requests may use the endpoint (health up or suspect), 0 when it is down or in the wrong role."
    );
    describe_counter!(
        FAILOVERS_TOTAL,
        Unit::Count,
        "Failover actions by kind (replica_read, eject, rejoin, promote, sentinel_switch)."
    );
    describe_gauge!(
        POOL_CONNECTIONS,
        Unit::Count,
        "Request connections open to the endpoint."
    );
    describe_gauge!(
        ROUTING_TABLE_VERSION,
        "Version of the routing table in force (+1 per swap, ejection, rejoin or promotion)."
    );
    describe_counter!(
        COALESCED_BATCHES_TOTAL,
        Unit::Count,
        "Merged MGETs that carried the reads of two or more callers (coalesce_reads)."
    );
    describe_counter!(
        COALESCED_READS_TOTAL,
        Unit::Count,
        "Reads (get calls, mget parts) sent in a merged MGET with other callers' reads."
    );
    describe_counter!(
        HEDGED_READS_TOTAL,
        Unit::Count,
        "Hedged reads by result (won, lost, capped)."
    );
    describe_counter!(
        CACHE_REQUESTS_TOTAL,
        Unit::Count,
        "Cache lookups by result (hit, miss, stale, negative, decode_error)."
    );
    describe_counter!(
        CACHE_LOADS_TOTAL,
        Unit::Count,
        "Cache loader runs by outcome (ok, error)."
    );
    describe_histogram!(
        CACHE_LOAD_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of one cache loader run."
    );
    describe_counter!(
        CACHE_WAITS_TOTAL,
        Unit::Count,
        "Cache callers that waited for another's load, by source (in_process, lock)."
    );
    describe_counter!(
        CACHE_EARLY_REFRESHES_TOTAL,
        Unit::Count,
        "Cache values refreshed before they expired."
    );
}

/// The `outcome` of a request, as [`REQUESTS_TOTAL`] labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) enum RequestOutcome {
    Ok,
    Error,
    Timeout,
    Unavailable,
}

impl RequestOutcome {
    /// The outcome of a reply or an error.
    #[inline]
    pub(crate) fn of<T>(result: &crate::Result<T>) -> RequestOutcome {
        match result {
            Ok(_) => RequestOutcome::Ok,
            Err(e) if e.kind() == crate::ErrorKind::Timeout => RequestOutcome::Timeout,
            Err(_) => RequestOutcome::Error,
        }
    }

    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Ok => "ok",
            RequestOutcome::Error => "error",
            RequestOutcome::Timeout => "timeout",
            RequestOutcome::Unavailable => "unavailable",
        }
    }
}

/// The `kind` of a failover, as [`FAILOVERS_TOTAL`] labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailoverKind {
    ReplicaRead,
    Eject,
    Rejoin,
    Promote,
    #[cfg_attr(not(feature = "sentinel"), allow(dead_code))]
    SentinelSwitch,
}

impl FailoverKind {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn as_str(self) -> &'static str {
        match self {
            FailoverKind::ReplicaRead => "replica_read",
            FailoverKind::Eject => "eject",
            FailoverKind::Rejoin => "rejoin",
            FailoverKind::Promote => "promote",
            FailoverKind::SentinelSwitch => "sentinel_switch",
        }
    }
}

/// The `result` of a hedged read, as [`HEDGED_READS_TOTAL`] labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HedgeResult {
    Won,
    Lost,
    Capped,
}

impl HedgeResult {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn as_str(self) -> &'static str {
        match self {
            HedgeResult::Won => "won",
            HedgeResult::Lost => "lost",
            HedgeResult::Capped => "capped",
        }
    }
}

pub(crate) use record::*;

#[cfg(feature = "metrics")]
mod record;

/// The no-op twin, without the feature: the same calls, compiled away.
#[cfg(not(feature = "metrics"))]
#[path = "metrics/noop.rs"]
mod record;
