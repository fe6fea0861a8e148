//! The recording helpers (feature `metrics`).
//!
//! Label values are shared, never copied: shard and endpoint names are `Arc<str>`, the rest
//! `&'static str`. The request path keeps its handles: each route holds, per role and command,
//! the `ok` counter and the duration histogram as registered with the recorder in force
//! ([`RouteMetrics`]). Registering is what costs (a key built and hashed, a registry lookup, an
//! allocation in most recorders), so a request registers nothing while the recorder stays the
//! same: it loads its kept handle, checks it belongs to the current recorder, and counts. A
//! recorder installed later (the global one is set once; tests set thread-local ones) is seen
//! at the next request, which registers again with it.

use std::sync::Arc;
use std::time::Instant;

use ::metrics::{
    counter, gauge, with_recorder, Counter, Histogram, Key, Label, Level, Metadata, Recorder,
    SharedString,
};
use arc_swap::ArcSwapOption;

use super::*;
use crate::health::Role;
use crate::topology::ShardName;

/// What the macros would attach to each registration.
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The commands whose `ok` counters are kept, in [`command_slot`] order.
const COMMANDS: usize = 10;

/// The kept-handle slot of a command name, for the names the library sends.
fn command_slot(command: &str) -> Option<usize> {
    Some(match command {
        "GET" => 0,
        "SET" => 1,
        "DEL" => 2,
        "EXISTS" => 3,
        "PEXPIRE" => 4,
        "PTTL" => 5,
        "INCRBY" => 6,
        "MGET" => 7,
        "MSET" => 8,
        "QUERY" => 9,
        _ => return None,
    })
}

fn role_slot(role: Role) -> usize {
    match role {
        Role::Primary => 0,
        Role::Replica => 1,
    }
}

#[inline]
fn shared(name: &Arc<str>) -> SharedString {
    SharedString::from(Arc::clone(name))
}

/// Which recorder a handle was registered with: its address. The global recorder never moves
/// or goes; a thread-local one (tests) could be replaced by another at the same address, whose
/// first requests would then count into the old one's storage.
#[inline]
fn recorder_id(recorder: &dyn Recorder) -> usize {
    (recorder as *const dyn Recorder).cast::<()>().addr()
}

/// The labels of one `shardis_requests_total` series.
fn request_labels(
    shard: SharedString,
    role: Role,
    command: &'static str,
    outcome: RequestOutcome,
) -> Vec<Label> {
    vec![
        Label::new("shard", shard),
        Label::new("role", role.as_str()),
        Label::new("command", command),
        Label::new("outcome", outcome.as_str()),
    ]
}

/// A handle and the recorder it was registered with.
struct Registered<H> {
    recorder: usize,
    handle: H,
}

/// A handle kept for the hot path: read without a lock, replaced when the recorder changes.
struct Kept<H>(ArcSwapOption<Registered<H>>);

impl<H> Kept<H> {
    fn new() -> Kept<H> {
        Kept(ArcSwapOption::empty())
    }

    /// Runs `apply` on the handle registered with `recorder`, registering it first if the kept
    /// one belongs to another recorder (or there is none yet).
    #[inline]
    fn apply(
        &self,
        recorder: &dyn Recorder,
        register: impl FnOnce(&dyn Recorder) -> H,
        apply: impl FnOnce(&H),
    ) {
        let id = recorder_id(recorder);
        let kept = self.0.load();
        match kept.as_deref() {
            Some(r) if r.recorder == id => apply(&r.handle),
            _ => {
                let handle = register(recorder);
                apply(&handle);
                self.0.store(Some(Arc::new(Registered {
                    recorder: id,
                    handle,
                })));
            }
        }
    }
}

/// One shard's handles for the request path: the `ok` counter of every role and command and
/// the duration histogram of every role. Other outcomes are rare and register when they happen.
pub(crate) struct RouteMetrics {
    shard: SharedString,
    ok: [Kept<Counter>; 2 * COMMANDS],
    duration: [Kept<Histogram>; 2],
    /// `shardis_coalesced_batches_total` and `shardis_coalesced_reads_total`.
    coalesced: [Kept<Counter>; 2],
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMetrics").finish_non_exhaustive()
    }
}

impl RouteMetrics {
    pub(crate) fn new(shard: &ShardName) -> RouteMetrics {
        RouteMetrics {
            shard: shared(shard.shared()),
            ok: std::array::from_fn(|_| Kept::new()),
            duration: std::array::from_fn(|_| Kept::new()),
            coalesced: std::array::from_fn(|_| Kept::new()),
        }
    }

    /// Records a merged `MGET` that carried the reads of `callers` callers.
    pub(crate) fn coalesced(&self, callers: usize) {
        with_recorder(|recorder| {
            for (kept, name, n) in [
                (&self.coalesced[0], COALESCED_BATCHES_TOTAL, 1),
                (&self.coalesced[1], COALESCED_READS_TOTAL, callers as u64),
            ] {
                kept.apply(
                    recorder,
                    |rec| {
                        let labels = vec![Label::new("shard", self.shard.clone())];
                        rec.register_counter(&Key::from_parts(name, labels), &METADATA)
                    },
                    |counter| counter.increment(n),
                );
            }
        });
    }
}

/// When an attempt started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Started(Instant);

impl Started {
    #[inline]
    pub(crate) fn now() -> Started {
        Started(Instant::now())
    }

    /// Records one attempt on an endpoint of the shard of `route`: its outcome and how long it
    /// took.
    #[inline]
    pub(crate) fn finish(
        self,
        route: &RouteMetrics,
        role: Role,
        command: &'static str,
        outcome: RequestOutcome,
    ) {
        let seconds = self.0.elapsed().as_secs_f64();
        let r = role_slot(role);
        let labels = || request_labels(route.shard.clone(), role, command, outcome);
        with_recorder(|recorder| {
            match (outcome, command_slot(command)) {
                (RequestOutcome::Ok, Some(c)) => route.ok[r * COMMANDS + c].apply(
                    recorder,
                    |rec| {
                        rec.register_counter(&Key::from_parts(REQUESTS_TOTAL, labels()), &METADATA)
                    },
                    |counter| counter.increment(1),
                ),
                _ => recorder
                    .register_counter(&Key::from_parts(REQUESTS_TOTAL, labels()), &METADATA)
                    .increment(1),
            }
            route.duration[r].apply(
                recorder,
                |rec| {
                    let labels = vec![
                        Label::new("shard", route.shard.clone()),
                        Label::new("role", role.as_str()),
                    ];
                    let key = Key::from_parts(REQUEST_DURATION_SECONDS, labels);
                    rec.register_histogram(&key, &METADATA)
                },
                |histogram| histogram.record(seconds),
            );
        });
    }
}

/// Records a request refused before any I/O; `shard` is `None` when every shard is ejected.
pub(crate) fn unavailable(shard: Option<&ShardName>, role: Role, command: &'static str) {
    let shard = shard.map_or(SharedString::const_str(""), |s| shared(s.shared()));
    let labels = request_labels(shard, role, command, RequestOutcome::Unavailable);
    counter!(REQUESTS_TOTAL, labels).increment(1);
}

/// Records a failover action on `shard`.
pub(crate) fn failover(shard: &ShardName, kind: FailoverKind) {
    counter!(FAILOVERS_TOTAL, "shard" => shared(shard.shared()), "kind" => kind.as_str())
        .increment(1);
}

/// Records what came of a hedged read on `shard`.
pub(crate) fn hedge(shard: &ShardName, result: HedgeResult) {
    counter!(HEDGED_READS_TOTAL, "shard" => shared(shard.shared()), "result" => result.as_str())
        .increment(1);
}

/// Sets whether requests may use the endpoint.
pub(crate) fn endpoint_up(shard: &ShardName, endpoint: &Arc<str>, role: Role, up: bool) {
    gauge!(ENDPOINT_UP, "shard" => shared(shard.shared()), "endpoint" => shared(endpoint),
        "role" => role.as_str())
    .set(f64::from(u8::from(up)));
}

/// Sets the request connections open to the endpoint.
pub(crate) fn pool_connections(shard: &ShardName, endpoint: &Arc<str>, open: u32) {
    gauge!(POOL_CONNECTIONS, "shard" => shared(shard.shared()), "endpoint" => shared(endpoint))
        .set(f64::from(open));
}

/// Sets the version of the routing table in force.
pub(crate) fn table_version(version: u64) {
    gauge!(ROUTING_TABLE_VERSION).set(version as f64);
}

/// Counts a cache lookup by its `result` (`hit`, `miss`, `stale`, `negative`, `decode_error`).
#[cfg_attr(not(feature = "cache"), allow(dead_code))]
pub(crate) fn cache_request(result: &'static str) {
    counter!(CACHE_REQUESTS_TOTAL, "result" => result).increment(1);
}

/// Counts a cache loader run and records how long it took.
#[cfg_attr(not(feature = "cache"), allow(dead_code))]
pub(crate) fn cache_load(ok: bool, seconds: f64) {
    counter!(CACHE_LOADS_TOTAL, "outcome" => if ok { "ok" } else { "error" }).increment(1);
    ::metrics::histogram!(CACHE_LOAD_DURATION_SECONDS).record(seconds);
}

/// Counts a cache caller that waited for another's load (`in_process` or `lock`).
#[cfg_attr(not(feature = "cache"), allow(dead_code))]
pub(crate) fn cache_wait(source: &'static str) {
    counter!(CACHE_WAITS_TOTAL, "source" => source).increment(1);
}

/// Counts a cache value refreshed before it expired.
#[cfg_attr(not(feature = "cache"), allow(dead_code))]
pub(crate) fn cache_early_refresh() {
    counter!(CACHE_EARLY_REFRESHES_TOTAL).increment(1);
}

/// Registers the descriptions (a client calls it when it starts).
pub(crate) fn describe_all() {
    describe();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_the_library_sends_has_a_kept_slot() {
        let names = [
            "GET", "SET", "DEL", "EXISTS", "PEXPIRE", "PTTL", "INCRBY", "MGET", "MSET", "QUERY",
        ];
        let slots: Vec<usize> = names.iter().filter_map(|n| command_slot(n)).collect();
        assert_eq!(slots, (0..COMMANDS).collect::<Vec<_>>());
        assert_eq!(command_slot("HSET"), None);
    }
}
