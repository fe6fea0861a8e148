//! The request path, one function deep: load the routing table once, find the key's shard,
//! pick the endpoint the policies choose, run the command on a pooled multiplexed connection,
//! record the outcome for health and metrics. Multi-key commands go through the same `exec` per
//! shard.

use std::sync::Arc;

use futures_util::future::join_all;
#[cfg(feature = "warm")]
use futures_util::FutureExt;
use redis::{Cmd, FromRedisValue, ToRedisArgs, Value};
use tracing::Instrument;

use super::args::{check_size, flatten, ArgSink, FlatArgs};
use super::fanout::Plan;
use super::Client;
use crate::control::{unavailable, Outcome};
use crate::error::{Error, ErrorKind, Result};
use crate::health::Role;
use crate::metrics::{self, FailoverKind, RequestOutcome, Started};
use crate::node::{Node, Request};
use crate::options::{HedgeAfter, ReadFrom};
use crate::router::{RoutingTable, ShardRoute};

/// Whether a command only reads (and may go to a replica under the read policy) or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// How an attempt is sent: merged with other callers' reads (`coalesce_reads`, for `GET`s
/// and `MGET` parts), and whether its latency feeds adaptive hedging.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sending {
    pub(crate) coalesce: bool,
    pub(crate) time_reads: bool,
    /// A read with nowhere else to go: if the server closed its connection, it is sent once
    /// more on a fresh one (see `exec`), and only that second try counts for the endpoint's
    /// health. (A server that closes its clients' connections, as Sentinel's `CLIENT KILL`
    /// does to a replica it promotes, is up: one closed connection shared by many reads must
    /// not mark it down.)
    pub(crate) retry_if_closed: bool,
}

/// A connection error after the request was written: the server (or the network) closed the
/// connection under it.
fn closed(e: &Error) -> bool {
    e.kind() == ErrorKind::Connection && e.is_outcome_unknown()
}

/// One shard's reply to its part of a multi-key command: the range of the plan's order its
/// command covered, and the reply.
pub(crate) type PartReply = (std::ops::Range<usize>, Value);

impl Client {
    /// The request path of every single-key command.
    pub(crate) async fn run<T: FromRedisValue>(
        &self,
        name: &'static str,
        key: &[u8],
        cmd: &Cmd,
        access: Access,
    ) -> Result<T> {
        // Every request passes an await point, even one that fails at once: tight retry loops
        // over a dead fleet must not starve the runtime (and the health monitor on it).
        tokio::task::coop::consume_budget().await;
        let table = self.shared.router.load();
        let Some(route) = table.route(key) else {
            metrics::unavailable(
                None,
                needed_role(access, table.options().routing.read_from),
                name,
            );
            return Err(fail_fast(no_shard()).await);
        };
        // Warm resharding: a moved key's previous owner, while a warm window is open.
        #[cfg(feature = "warm")]
        let previous = self.previous_owner(&table, route, key);
        #[cfg(feature = "warm")]
        let removed = match (&previous, access) {
            (Some(p), Access::Write) => {
                self.before_write(&table, route, p, name, key).boxed().await
            }
            _ => 0,
        };
        let reply = self
            .exec(&table, route, name, Request::Cmd(cmd), access)
            .await?;
        #[cfg(feature = "warm")]
        let reply = match (&previous, access) {
            (Some(p), Access::Read) => {
                match self
                    .warmed(&table, route, p, name, key, &reply)
                    .boxed()
                    .await
                {
                    super::warm::Warmed::Reread => {
                        self.exec(&table, route, name, Request::Cmd(cmd), access)
                            .await?
                    }
                    super::warm::Warmed::Value(v) => v,
                    super::warm::Warmed::Miss => reply,
                }
            }
            (Some(_), Access::Write) => {
                self.after_write(key).await;
                // `del` of a key that only its previous owner still had.
                if name == "DEL" && removed > 0 {
                    Value::Int(1)
                } else {
                    reply
                }
            }
            _ => reply,
        };
        T::from_redis_value(reply).map_err(|e| Error::conversion(e).with_shard(route.name.as_str()))
    }

    /// Sends `cmd` to the endpoint of `route` that the policies choose; a read that fails with
    /// a connection error, a timeout or a transient server error (`LOADING`, `BUSY`,
    /// `MASTERDOWN`, `TRYAGAIN`) is sent once more, at once, to the fallback endpoint.
    /// With `hedge_after_ms`, a read unanswered after the delay also goes to the fallback
    /// endpoint (see `hedge`). A read a replica serves in the primary's stead (not as a hedge)
    /// counts as a `replica_read` failover.
    pub(super) async fn exec(
        &self,
        table: &RoutingTable,
        route: &ShardRoute,
        name: &'static str,
        request: Request<'_>,
        access: Access,
    ) -> Result<Value> {
        let routing = &table.options().routing;
        let (first, fallback) = match access {
            Access::Read => route.read_targets(routing.read_from),
            Access::Write => (route.write_target(), None),
        };
        let Some(node) = first else {
            metrics::unavailable(
                Some(&route.name),
                needed_role(access, routing.read_from),
                name,
            );
            let e = unavailable(route, access == Access::Write, routing.on_primary_down);
            return Err(fail_fast(e).await);
        };
        let pool = &table.options().pool;
        let read = access == Access::Read;
        let how = Sending {
            coalesce: read && pool.coalesce_reads && matches!(name, "GET" | "MGET"),
            time_reads: read && pool.hedge_after == HedgeAfter::Adaptive,
            retry_if_closed: read && fallback.is_none(),
        };
        let (served_by, result, both) = match fallback {
            Some(other) if read && pool.hedge_after != HedgeAfter::Off => {
                // Boxed: only hedged reads pay for it, and it keeps the request path's future
                // shallow (a deeply nested future type can exceed the compiler's layout depth
                // limit in a caller's crate).
                Box::pin(self.hedged(route, node, other, pool.hedge_after, name, request, how))
                    .await
            }
            _ => (
                node,
                Box::pin(self.attempt(route, node, name, request, how)).await,
                false,
            ),
        };
        let (served_by, result) = match result {
            Err(e) if !both && (e.is_failover_candidate() || e.is_transient()) => match fallback {
                Some(other) => (
                    other,
                    Box::pin(self.attempt(route, other, name, request, how)).await,
                ),
                // The server closed a connection the read was on (a restart, or Sentinel's
                // `CLIENT KILL` of a replica it promotes): with nowhere else to go, the read is
                // sent once more on a fresh connection to the same endpoint.
                None if how.retry_if_closed && closed(&e) => {
                    let again = Sending {
                        retry_if_closed: false,
                        ..how
                    };
                    (
                        node,
                        Box::pin(self.attempt(route, node, name, request, again)).await,
                    )
                }
                None => (node, Err(e)),
            },
            result => (served_by, result),
        };
        // Only `primary_then_replica` reads a replica instead of the primary: `primary` never
        // reads one, and `prefer_replica` reads them by choice.
        if routing.read_from == ReadFrom::PrimaryThenReplica
            && result.is_ok()
            && !both
            && !Arc::ptr_eq(served_by, &route.primary)
        {
            metrics::failover(&route.name, FailoverKind::ReplicaRead);
        }
        result
    }

    /// One try on one endpoint, recorded for its health and in the request metrics.
    ///
    /// Callers box its future: one allocation per try (next to a network round trip) keeps
    /// the future types of every public call shallow, so that callers nesting them in their
    /// own tasks and combinators stay within the compiler's type-layout depth limit.
    pub(super) async fn attempt(
        &self,
        route: &ShardRoute,
        node: &Arc<Node>,
        name: &'static str,
        request: Request<'_>,
        how: Sending,
    ) -> Result<Value> {
        let span = tracing::debug_span!(
            "shardis",
            cmd = name,
            shard = %route.name,
            endpoint = node.label()
        );
        let started = Started::now();
        let timed = how.time_reads.then(std::time::Instant::now);
        let result = match request {
            Request::Cmd(cmd) if how.coalesce => {
                let (result, callers) = node.read_merged(cmd, name == "GET").instrument(span).await;
                if callers > 1 {
                    route.metrics.coalesced(callers);
                }
                result
            }
            _ => node.send(request).instrument(span).await,
        };
        if let (Some(t), Ok(_)) = (timed, &result) {
            node.latency().record(t.elapsed());
        }
        let role = if Arc::ptr_eq(node, &route.primary) {
            Role::Primary
        } else {
            Role::Replica
        };
        started.finish(&route.metrics, role, name, RequestOutcome::of(&result));
        // Health is judged by probes (on their own connection) and by connection failures. A
        // request that timed out is not held against the endpoint: it may be slow by its own
        // size. Its connection is retired, and the probes tell a hung server.
        match &result {
            Ok(_) => self.shared.record(route, node, Outcome::Answered),
            // Not yet for a closed connection that `exec` tries once more: the retry counts.
            Err(e) if how.retry_if_closed && closed(e) => {}
            Err(e) if e.kind() == ErrorKind::Connection => {
                self.shared.record(route, node, Outcome::Failed)
            }
            Err(_) => {}
        }
        result.map_err(|e| e.with_shard(route.name.as_str()))
    }

    /// Plans `keys` per shard, builds one `name` command per shard with `add(cmd, index)` for
    /// each of its keys, and sends them all at once. Returns the plan and each shard's reply.
    pub(crate) async fn fan_out(
        &self,
        name: &'static str,
        access: Access,
        keys: &FlatArgs,
        mut add: impl FnMut(&mut Cmd, usize),
    ) -> Result<(Plan, Vec<PartReply>)> {
        tokio::task::coop::consume_budget().await;
        if keys.is_empty() {
            return Ok((Plan::new(&[]), Vec::new()));
        }
        let table = self.shared.router.load();
        let Some(owners) = (0..keys.len())
            .map(|i| table.shard_index(keys.get(i)))
            .collect::<Option<Vec<usize>>>()
        else {
            metrics::unavailable(
                None,
                needed_role(access, table.options().routing.read_from),
                name,
            );
            return Err(fail_fast(no_shard()).await);
        };
        let plan = Plan::new(&owners);
        let table = &table;
        let requests: Vec<_> = plan
            .groups
            .iter()
            .map(|(shard, range)| {
                let route = &table.shards()[*shard];
                let positions = plan.positions(range);
                let mut cmd =
                    Cmd::with_capacity(positions.len() + 1, keys.bytes_in(positions) + 16);
                cmd.arg(name);
                for &i in positions {
                    add(&mut cmd, i);
                }
                let range = range.clone();
                async move {
                    #[cfg(feature = "warm")]
                    let moved = self.previous_owners(table, route, keys, positions);
                    #[cfg(feature = "warm")]
                    if access == Access::Write && !moved.is_empty() {
                        self.before_write_many(&moved, keys, positions)
                            .boxed()
                            .await;
                    }
                    let reply = self
                        .exec(table, route, name, Request::Cmd(&cmd), access)
                        .await?;
                    #[cfg(feature = "warm")]
                    let reply = match access {
                        _ if moved.is_empty() => reply,
                        Access::Read => {
                            self.warmed_many(table, route, &moved, keys, positions, reply)
                                .boxed()
                                .await?
                        }
                        Access::Write => {
                            self.after_write_many(&moved, keys, positions).boxed().await;
                            reply
                        }
                    };
                    Ok::<_, Error>((range, reply))
                }
            })
            .collect();
        // Collect every shard's outcome before returning, so no request is left half-read.
        let replies = join_all(requests)
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        Ok((plan, replies))
    }

    /// The key as the single argument it is, within the size limit.
    pub(crate) fn key<K: ToRedisArgs>(&self, key: &K) -> Result<Vec<u8>> {
        // Checked before it is copied: an oversized key costs nothing.
        check_size("a key", key, self.shared.max_key_bytes())?;
        let mut bytes = Vec::new();
        key.write_redis_args(&mut ArgSink::new(&mut bytes));
        Ok(bytes)
    }

    /// The command `name key` with room for `more` arguments of `bytes` bytes after the key,
    /// the key checked to be one argument within the size limit. The key is written once, into
    /// the command, and routed from there ([`routing_key`]): no copy of its own.
    pub(crate) fn keyed<K: ToRedisArgs>(
        &self,
        name: &'static str,
        key: &K,
        more: usize,
        bytes: usize,
    ) -> Result<Cmd> {
        let len = self.key_len(key)?;
        Ok(keyed_with(name, key, len, more, bytes))
    }

    /// The length of `key`, checked to be one argument within the size limit.
    pub(crate) fn key_len<K: ToRedisArgs>(&self, key: &K) -> Result<usize> {
        check_size("a key", key, self.shared.max_key_bytes())
    }

    /// Many keys, each a single argument within the size limit, in one buffer.
    pub(crate) fn keys<'k, K: ToRedisArgs + 'k>(
        &self,
        keys: impl Iterator<Item = &'k K>,
    ) -> Result<FlatArgs> {
        flatten(keys, "a key", self.shared.max_key_bytes())
    }
}

/// The command `name key` (`key` of `len` bytes, already checked) with room for `more`
/// arguments of `bytes` bytes.
pub(crate) fn keyed_with<K: ToRedisArgs>(
    name: &'static str,
    key: &K,
    len: usize,
    more: usize,
    bytes: usize,
) -> Cmd {
    let mut cmd = Cmd::with_capacity(2 + more, name.len() + len + bytes);
    cmd.arg(name).arg(key);
    cmd
}

/// The key of a command built by [`Client::keyed`]: its argument 1.
pub(crate) fn routing_key(cmd: &Cmd) -> &[u8] {
    match cmd.args_iter().nth(1) {
        Some(redis::Arg::Simple(key)) => key,
        // `keyed` writes the key as one plain argument: never reached.
        _ => &[],
    }
}

/// Returns `e` after yielding to the runtime: a request that fails without any I/O (its shard
/// is down) gives the other tasks — the health monitor among them — their turn, so that loops
/// retrying such requests cannot keep a worker to themselves.
pub(super) async fn fail_fast(e: Error) -> Error {
    tokio::task::yield_now().await;
    e
}

/// The role a request refused before any I/O needed, as `shardis_requests_total` labels it:
/// the primary for writes, the policy's first choice for reads.
pub(super) fn needed_role(access: Access, read_from: ReadFrom) -> Role {
    match (access, read_from) {
        (Access::Read, ReadFrom::PreferReplica) => Role::Replica,
        _ => Role::Primary,
    }
}

/// The error of a request when every shard is ejected.
pub(super) fn no_shard() -> Error {
    Error::new(
        ErrorKind::ShardUnavailable,
        "every shard is ejected (its primary down); no shard can take the key",
    )
}
