//! The library's integration tests, in one test binary: one build of the shared helpers and
//! of the generic code they instantiate, one link. Each module is one area (`routing`,
//! `failover`, `cache`, ...); run one with `cargo test -p shardis --test it routing::`.
//!
//! Every test starts its own redis-server processes on free loopback ports (`common`), so
//! tests run in parallel like separate binaries did.

mod common;
#[cfg(any(feature = "cache", feature = "metrics"))]
mod support;

mod acl;
mod cache;
mod cache_faults;
mod cache_invalidation;
mod cache_leases;
mod coalesce;
mod commands;
mod concurrency;
mod config;
mod failover;
mod failures;
mod fleet;
mod fuzz_parsers;
mod hardening;
mod hedge;
mod hostile;
mod hot_swap;
mod large_fleet;
mod metrics;
mod pipeline;
mod placement_properties;
mod query_guard;
mod recipes;
mod rejected_config;
mod routing;
mod secrets;
mod sentinel;
mod sentinel_tls;
mod tls;
mod twemproxy;
mod warm_reads;
mod warm_resharding;
