//! # shardis
//!
//! Client-side sharding of a cache over a fleet of plain, independent Redis servers (no Redis
//! Cluster): consistent hashing by stable shard names, per-endpoint pools of multiplexed
//! connections, one async API.
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
//! A request flows one way: key → hash tag → placement → shard → endpoint → pool → Redis.
//!
//! - `topology`: shards (stable name, weight, primary, replicas), endpoint URLs, validation.
//! - `config`: the TOML config file and the options it sets.
//! - [`placement`]: the [`Placement`](placement::Placement) trait, hash tags, one file per
//!   algorithm; `rendezvous_table` is the default.
//! - `pool`: our bb8 connection manager over redis-rs multiplexed connections (timeouts, broken
//!   connections dropped).
//! - `node`: one endpoint's pool and its health state.
//! - `health`: the up / suspect / down state machine and the probing monitor task.
//! - `router`: the immutable routing table snapshot in `arc-swap`, and the read and write
//!   policies.
//! - `control`: every change of the routing table, one at a time: hot swaps, config reloads,
//!   ejections, promotions.
//! - `client`: the public [`Client`]: single-key commands and per-shard fan-out of multi-key
//!   commands.
//! - `error`: the one [`Error`] type and its [`ErrorKind`]s.
//! - [`twemproxy`]: loading a twemproxy (nutcracker) pool as a shardis config.
//! - [`local`]: local `redis-server` processes for the demo, tests and benchmarks.

#![deny(missing_docs, missing_debug_implementations)]
#![warn(clippy::unwrap_used, clippy::panic)]

mod client;
mod config;
mod control;
mod error;
mod health;
mod node;
mod pool;
mod router;
mod topology;

pub mod local;
pub mod placement;
pub mod twemproxy;

pub use client::{Client, ClientBuilder, Ttl};
pub use config::{Config, Options};
pub use control::{ConfigWatch, EndpointStatus, ShardStatus};
pub use error::{ConfigError, Error, ErrorKind, Result};
pub use health::{Event, Health, HealthOptions, Role};
pub use node::PoolOptions;
pub use placement::HashTag;
pub use router::{OnPrimaryDown, ReadFrom, RoutingOptions};
pub use topology::{Endpoint, Shard, ShardName, ShardSpec, Topology, MAX_WEIGHT};

/// Re-export of the `redis` crate, for [`Client::query`]'s commands and the value traits.
pub use redis;
