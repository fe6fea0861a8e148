//! # shardis
//!
//! Client-side sharding of a cache over a fleet of plain, independent Redis servers (no Redis
//! Cluster): consistent hashing by stable shard names, per-endpoint pools of multiplexed
//! connections, health checks and failover, a hot-swappable topology, one async API.
//!
//! ```no_run
//! # async fn run() -> shardis::Result<()> {
//! let client = shardis::Client::builder()
//!     .shard("cache-a", "redis://127.0.0.1:7001")
//!     .shard("cache-b", "redis://127.0.0.1:7002")
//!     .build()
//!     .await?;
//! client.set("user:1", "alice").await?;
//! let v: Option<String> = client.get("user:1").await?;
//! # let _ = v; Ok(()) }
//! ```
//!
//! # Layout
//!
//! A request flows one way: key → hash tag → placement → shard → endpoint → pool → Redis, and
//! the modules import each other in that direction only:
//! `error ← topology ← placement ← options ← {health, pool} ← node ← router ← control ← client`,
//! with `config` translating a TOML file into a topology and options for `control` and `client`,
//! and `metrics` (names and recording helpers, after `health`) used by `router`, `control` and
//! `client`.
//!
//! - `error`: the one [`Error`] type and its [`ErrorKind`]s.
//! - `topology`: shards (stable name, weight, primary, replicas), endpoint URLs, validation.
//! - [`placement`]: the [`Placement`](placement::Placement) trait, hash tags, the
//!   [`Locator`](placement::Locator), one file per algorithm; `rendezvous_table` is the default.
//! - `options`: every setting but the shards, its default, and one [`Options::validate`].
//! - `health`: the up / suspect / down state machine of one endpoint, and [`Event`]s.
//! - `pool`: our bb8 connection manager over redis-rs multiplexed connections (timeouts, broken
//!   connections dropped).
//! - `node`: one endpoint's pool and its health state; read coalescing (`coalesce_reads`: the
//!   endpoint's lane of reads waiting for the batch in flight) and what hedging knows of the
//!   endpoint (recent read latency, hedge budget).
//! - `router`: the immutable routing table snapshot in `arc-swap`, the read and write targets
//!   of a shard, and the placement in force before the last change.
//! - `control/`: everything that changes the routing table, one change at a time: table builds,
//!   swaps, config reloads and the watcher, failover (eject, rejoin, promote), the probe
//!   monitor, status, and the one `record()` of request and probe outcomes.
//! - `client/`: the public [`Client`] and [`ClientBuilder`]: commands, the request path, the
//!   per-shard fan-out plan of multi-key commands, hedged reads (`hedge_after_ms`), argument
//!   encoding.
//! - `control/sentinel/` (feature `sentinel`): asking a Sentinel shard's sentinels for its
//!   primary and replicas (checked with `ROLE`), following `+switch-master` and re-asking
//!   periodically, and repointing the shard's endpoints (never its placement).
//! - `tls/`: the `[tls]` settings, and (feature `tls`) the certificate files read and checked
//!   and the redis-rs clients of `rediss://` endpoints.
//! - `config`: the TOML config file.
//! - [`metrics`]: the metric names (a contract), their descriptions, the recording helpers of
//!   the request path (each route keeps its registered handles) and of `control` (compiled away
//!   without the feature), and the Prometheus exporter.
//! - [`cache`] (feature `cache`): typed cache-aside over a [`Client`]: codecs and the stored
//!   envelope, single-flight and cross-process load locks, early refresh, degradation, and
//!   invalidation by key, tag and pattern.
//! - `recipes/`: the lock (feature `lock`) and the rate limiter (feature `rate-limit`), on
//!   top of `client`'s scripts.
//! - [`twemproxy`] (feature `twemproxy`): loading a twemproxy (nutcracker) pool as a shardis
//!   config.
//!
//! # Features
//!
//! - `twemproxy` (default): [`twemproxy`] config import, for teams moving off twemproxy.
//! - `metrics` (default): counters, gauges and histograms through the `metrics` facade (see
//!   [`metrics`] for every name and label), for services that graph their cache fleet. With no
//!   recorder installed a request pays a few nanoseconds; without the feature, nothing.
//! - `cache` (default): [`cache::Cache`], for services that use the fleet as a cache in
//!   front of a database (and the CLI's `invalidate`).
//! - `prometheus`: `metrics::serve_prometheus` installs a Prometheus recorder and serves
//!   `/metrics`, for services without an exporter of their own (and `shardis bench
//!   --prometheus`).
//! - `tls` (default): `rediss://` endpoints and the `[tls]` settings through redis-rs's rustls
//!   support (`ring` is installed as rustls's crypto provider unless the application installed
//!   one), for fleets reached over TLS.
//!
//! - `sentinel` (default): Sentinel-managed shards (`sentinel = { master, addrs }`): the
//!   primary and replicas asked of the sentinels, `+switch-master` followed, for fleets whose
//!   primaries fail over under Redis Sentinel.
//!
//! - `scripts` (default): [`Client::invoke_script`] (redis-rs's `script` feature), for
//!   services that run Lua on their cache; needed by `lock` and `rate-limit`.
//! - `lock` (default): [`Client::lock`], a single-shard lock with fencing tokens, for jobs
//!   that must run once at a time and for guarded cache fills.
//! - `rate-limit` (default): [`Client::rate_limit`], GCRA in one script call, for services
//!   that throttle per user or key.
//!
//! - `warm` (default): warm resharding ([`ReshardingOptions`], `[resharding]` in the
//!   config, [`ClientBuilder::warm_resharding`], [`Client::migrate_moved_keys`]), for
//!   services that add or remove shards under load without a cold cache, and the CLI's
//!   `migrate`.
//!
//! Local Redis processes for tests live in the separate `shardis-testkit` crate, and the
//! command line in `shardis-cli`.

#![deny(missing_docs, missing_debug_implementations, unsafe_code)]
#![warn(clippy::unwrap_used, clippy::panic)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod config;
mod control;
mod error;
mod health;
mod node;
mod options;
mod pool;
#[cfg(any(feature = "lock", feature = "rate-limit"))]
mod recipes;
mod router;
mod tls;
mod topology;

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub mod cache;
pub mod metrics;
pub mod placement;
#[cfg(feature = "twemproxy")]
#[cfg_attr(docsrs, doc(cfg(feature = "twemproxy")))]
pub mod twemproxy;

#[cfg(feature = "warm")]
#[cfg_attr(docsrs, doc(cfg(feature = "warm")))]
pub use client::MigrationReport;
pub use client::{Client, ClientBuilder, Ttl};
pub use config::Config;
#[cfg(feature = "sentinel")]
#[cfg_attr(docsrs, doc(cfg(feature = "sentinel")))]
pub use control::SentinelStatus;
pub use control::{ConfigWatch, EndpointStatus, ShardStatus};
pub use error::{ConfigError, Error, ErrorKind, Result};
pub use health::{Event, Health, Role};
pub use options::{
    HealthOptions, HedgeAfter, OnPrimaryDown, Options, PoolOptions, ReadFrom, ReshardingOptions,
    RoutingOptions,
};
pub use placement::HashTag;
#[cfg(feature = "lock")]
#[cfg_attr(docsrs, doc(cfg(feature = "lock")))]
pub use recipes::lock::{Lock, LockBuilder};
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub use recipes::rate_limit::{RateLimit, RateLimitDecision};
pub use tls::TlsOptions;
pub use topology::{Endpoint, Shard, ShardName, ShardSpec, Topology, DEFAULT_PORT, MAX_WEIGHT};
#[cfg(feature = "sentinel")]
#[cfg_attr(docsrs, doc(cfg(feature = "sentinel")))]
pub use topology::{SentinelSpec, DEFAULT_SENTINEL_REFRESH};

/// Re-export of the `redis` crate, for [`Client::query`]'s commands and the value traits.
pub use redis;
