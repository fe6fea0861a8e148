//! A node: one endpoint's connection pool and what is known of its state.
//!
//! Nodes are keyed by endpoint, not by shard, and hold no placement: the routing table points
//! shards at nodes, so a topology swap can hand an unchanged endpoint's node to the new table.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use std::time::Duration;

use redis::{Cmd, Pipeline, Value};

use crate::error::{is_connection_failure, Error, ErrorKind, Result};
use crate::health::{Health, HealthState};
use crate::options::{HealthOptions, PoolOptions};
use crate::pool::{is_turned_away, Conn, Manager};
use crate::tls::TlsMaterial;
use crate::topology::Endpoint;

mod coalesce;
mod latency;
mod probe;

use coalesce::Lane;
pub(crate) use latency::{HedgeBudget, Latency};
use probe::Prober;
pub(crate) use probe::ServerRole;

/// What one request sends to an endpoint.
#[derive(Clone, Copy)]
pub(crate) enum Request<'a> {
    /// One command; an error reply is an error.
    Cmd(&'a Cmd),
    /// A pipeline: the reply of every command (ignored ones too) comes back as one array, error
    /// replies inside it, as the server sent them; nothing of the pipeline's own completion
    /// (`.ignore()`, `ignore_errors`) is applied. A transaction (which must be built with
    /// `ignore_errors`) is answered the `EXEC` reply.
    Pipeline(&'a Pipeline),
    /// A script: `EVALSHA`, and on `NOSCRIPT` a `SCRIPT LOAD` and the call once more.
    #[cfg(feature = "scripts")]
    Script(&'a redis::ScriptInvocation<'a>),
}

/// One endpoint's pool.
pub(crate) struct Node {
    endpoint: Endpoint,
    /// `host:port[/db]`, computed once for spans and errors.
    label: Arc<str>,
    /// `host:port`, computed once for metric labels.
    address: Arc<str>,
    pool: bb8::Pool<Manager>,
    connect_timeout: Duration,
    max_connections: u32,
    last_error: Arc<Mutex<Option<String>>>,
    health: HealthState,
    /// Live connections for the request path, read without a lock; refreshed from the pool
    /// when one breaks. bb8 still owns the connections' lifecycle.
    ready: ArcSwapOption<Vec<Conn>>,
    /// Round robin over `ready`.
    turn: AtomicUsize,
    /// Health probes and status queries, on a connection of their own: never queued behind
    /// user traffic, and replaced after any failure.
    prober: Prober,
    /// Shared with the manager's connections: raising it retires them all.
    generation: Arc<AtomicU64>,
    /// Reads waiting for the batch in flight (`coalesce_reads`).
    lane: Arc<Lane>,
    /// Recent read latencies, for adaptive hedging.
    latency: Latency,
    /// Hedges away from this endpoint still allowed.
    hedges: HedgeBudget,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// The redis-rs client of `endpoint`: with `tls`'s settings for a `rediss://` one (an error
/// without them).
pub(crate) fn client_for(endpoint: &Endpoint, tls: Option<&TlsMaterial>) -> Result<redis::Client> {
    match tls {
        Some(material) if endpoint.is_tls() => material.client(endpoint),
        _ if endpoint.is_tls() => Err(Error::new(
            ErrorKind::Tls,
            "no TLS settings for a rediss:// endpoint",
        )),
        _ => redis::Client::open(endpoint.secret_url()).map_err(|e| {
            // The redis-rs message may quote the URL; replace it with our own words.
            Error::new(
                ErrorKind::Config,
                format!("redis-rs rejected the endpoint: {:?}", e.kind()),
            )
        }),
    }
}

impl Node {
    /// Creates the node and starts its pool filling in the background; never blocks on I/O.
    /// `tls` is the build's TLS material, for a `rediss://` endpoint.
    pub(crate) fn new(
        endpoint: Endpoint,
        options: &PoolOptions,
        health: &HealthOptions,
        tls: Option<&TlsMaterial>,
    ) -> Result<Node> {
        let label: Arc<str> = Arc::from(endpoint.label());
        let client = client_for(&endpoint, tls).map_err(|e| e.with_endpoint(&label))?;
        let last_error = Arc::new(Mutex::new(None));
        let generation = Arc::new(AtomicU64::new(0));
        let address = (endpoint.host().to_owned(), endpoint.port());
        let prober = Prober::new(
            client.clone(),
            address.clone(),
            options.connect_timeout,
            health.probe_timeout,
        );
        let manager = Manager::new(
            client,
            address,
            endpoint.is_tls(),
            options.connect_timeout,
            options.response_timeout,
            last_error.clone(),
            generation.clone(),
        );
        let pool = bb8::Pool::builder()
            .max_size(options.connections_per_endpoint)
            .min_idle(Some(options.connections_per_endpoint))
            .connection_timeout(options.connect_timeout)
            // Connections are multiplexed and checked out only for an instant; a dead one is
            // found by its broken flag, so a PING per checkout would only add a round trip.
            .test_on_check_out(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .build_unchecked(manager);
        Ok(Node {
            address: Arc::from(endpoint.address()),
            endpoint,
            label,
            pool,
            connect_timeout: options.connect_timeout,
            max_connections: options.connections_per_endpoint,
            last_error,
            health: HealthState::new(health),
            ready: ArcSwapOption::empty(),
            turn: AtomicUsize::new(0),
            prober,
            generation,
            lane: Arc::default(),
            latency: Latency::default(),
            hedges: HedgeBudget::default(),
        })
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// `host:port`, the `endpoint` label of metrics.
    pub(crate) fn address(&self) -> &Arc<str> {
        &self.address
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The current health, read lock-free.
    #[inline]
    pub(crate) fn health(&self) -> Health {
        self.health.get()
    }

    /// Request connections open now, and the number aimed for.
    pub(crate) fn connections(&self) -> (u32, u32) {
        (self.pool.state().connections, self.max_connections)
    }

    /// Recent read latencies (recorded only while hedging is adaptive).
    pub(crate) fn latency(&self) -> &Latency {
        &self.latency
    }

    /// The budget of hedges away from this endpoint.
    pub(crate) fn hedge_budget(&self) -> &HedgeBudget {
        &self.hedges
    }

    /// The health state machine.
    pub(crate) fn health_state(&self) -> &HealthState {
        &self.health
    }

    /// A connection to use for one request. The pool slot is released before returning:
    /// multiplexed connections are shared, not owned.
    async fn connection(&self) -> Result<Conn> {
        // Fast path: a live connection from the snapshot, no lock taken.
        {
            let ready = self.ready.load();
            if let Some(list) = ready.as_ref() {
                let n = list.len();
                let short = n < self.max_connections as usize;
                // One connection, and no more expected: no counter to bump.
                let turn = if n > 1 || short {
                    self.turn.fetch_add(1, Ordering::Relaxed)
                } else {
                    0
                };
                let conn = &list[turn % n];
                // While the snapshot lacks connections the pool may hold, now and then take the
                // slow path to pick them up.
                let fill = short && turn % 64 == 63;
                if !conn.is_broken() && !fill {
                    return Ok(conn.clone());
                }
            }
        }
        // Boxed: the slow path (bb8's checkout, a direct connect) is a deep future; inline, it
        // would deepen every request's future type enough to exceed the compiler's layout
        // depth limit in callers that nest a few more levels (a cache call in a task in a
        // benchmark harness). Only checkouts pay for the allocation.
        let conn = Box::pin(self.checkout()).await?;
        self.remember(&conn);
        Ok(conn)
    }

    /// Adds `conn` to the snapshot of live connections, dropping broken ones.
    fn remember(&self, conn: &Conn) {
        let current = self.ready.load_full();
        let mut list: Vec<Conn> = current
            .as_ref()
            .map(|l| l.iter().filter(|c| !c.is_broken()).cloned().collect())
            .unwrap_or_default();
        if !list.iter().any(|c| c.same(conn)) {
            list.push(conn.clone());
        }
        list.truncate(self.max_connections.max(1) as usize);
        self.ready.store(Some(Arc::new(list)));
    }

    /// A connection from the pool (bb8), replacing broken ones.
    async fn checkout(&self) -> Result<Conn> {
        // A broken connection is dropped when its guard is released; bounded so a flapping
        // endpoint cannot keep a caller here.
        for _ in 0..=self.max_connections {
            if self.pool.state().connections == 0 {
                return self.connect_now().await;
            }
            match self.pool.get().await {
                Ok(guard) if guard.is_broken() => drop(guard),
                Ok(guard) => return Ok(guard.clone()),
                Err(bb8::RunError::User(e)) => return Err(self.error(Error::from_redis(e))),
                Err(bb8::RunError::TimedOut) => return Err(self.checkout_timeout()),
            }
        }
        self.connect_now().await
    }

    /// Connects directly when the pool holds no established connection, so that a refused or
    /// unreachable endpoint fails at once with its real cause (bb8's checkout only reports a
    /// timeout, after the whole connect timeout). The new connection is offered to the pool.
    async fn connect_now(&self) -> Result<Conn> {
        let conn = match self.pool.dedicated_connection().await {
            Ok(conn) => conn,
            // Unreachable (refused, timed out): say so at once.
            Err(e) if e.is_connection_refusal() || e.is_timeout() => {
                return Err(self.error(Error::from_redis(e)))
            }
            // The server answered and turned this connection away (e.g. at `maxclients`): the
            // pool's own fillers may have got in before it, so wait for one of theirs.
            Err(e) => {
                return match self.pool.get().await {
                    Ok(guard) if !guard.is_broken() => Ok(guard.clone()),
                    _ => Err(self.error(Error::from_redis(e))),
                }
            }
        };
        // At capacity (the background filler won the race) the pool refuses it; this request
        // still uses it, and it closes when the request ends.
        let _ = self.pool.add(conn.clone());
        Ok(conn)
    }

    fn checkout_timeout(&self) -> Error {
        let last = self.last_error.lock().ok().and_then(|slot| slot.clone());
        let e = match last {
            Some(reason) => Error::new(
                ErrorKind::Connection,
                format!(
                    "cannot connect within {} ms: {reason}",
                    self.connect_timeout.as_millis()
                ),
            ),
            None => Error::timeout("waiting for a connection", self.connect_timeout),
        };
        self.error(e)
    }

    fn error(&self, e: Error) -> Error {
        e.with_endpoint(&self.label)
    }

    /// Runs one command. The reply is returned unconverted: a reply of an unexpected type is
    /// the caller's problem, not the connection's.
    pub(crate) async fn query(&self, cmd: &Cmd) -> Result<Value> {
        self.send(Request::Cmd(cmd)).await
    }

    /// Sends one request; the reply is returned unconverted.
    pub(crate) async fn send(&self, request: Request<'_>) -> Result<Value> {
        let mut conn = self.connection().await?;
        let reply = match request {
            Request::Cmd(cmd) => cmd.query_async::<Value>(&mut conn.inner).await,
            Request::Pipeline(pipe) if pipe.is_transaction() => {
                pipe.query_async::<Value>(&mut conn.inner).await
            }
            Request::Pipeline(pipe) => {
                use redis::aio::ConnectionLike;
                conn.inner
                    .req_packed_commands(pipe, 0, pipe.len())
                    .await
                    .map(Value::Array)
            }
            #[cfg(feature = "scripts")]
            Request::Script(call) => call.invoke_async::<Value>(&mut conn.inner).await,
        };
        reply.map_err(|e| self.fail(&conn, e))
    }

    fn fail(&self, conn: &Conn, e: redis::RedisError) -> Error {
        // A dropped or failed socket is dead. A timed-out one may be half-open, or stuck
        // behind a reply that never comes: it is retired too (requests already on it finish),
        // and the next request gets a fresh connection.
        if is_connection_failure(&e) || e.is_timeout() {
            conn.mark_broken();
        }
        // The server closed the connection: it has likely closed the others too (a restart,
        // a `CLIENT KILL TYPE normal` as Sentinel sends to a replica it promotes), so every
        // connection made so far is retired and the next request opens a fresh one.
        if is_connection_failure(&e) {
            self.retire_connections();
        }
        // The command was written, or may have been: whether it ran is unknown.
        self.error(Error::from_redis(e).sent())
    }

    /// One health probe (`ROLE`) on the probe connection, within the probe timeout.
    pub(crate) async fn probe(&self) -> Result<ServerRole> {
        let result = match self.prober.role().await {
            // The server answered and turned the probe connection away (full at `maxclients`,
            // the request connections having taken the room): it is up. Ask on a request
            // connection already open instead; the request connections stay.
            Err(e) if e.kind() == ErrorKind::Connection && is_turned_away(&e.to_string()) => {
                self.role_on_request_connection().await.map_err(|_| e)
            }
            Err(e) => {
                if e.is_failover_candidate() {
                    // The endpoint is unreachable or hung: the request connections are likely
                    // dead too, even if no request has found out yet (an ejected shard gets none).
                    self.retire_connections();
                }
                Err(e)
            }
            ok => ok,
        };
        result.map_err(|e| self.error(e))
    }

    /// `ROLE` on a live request connection, within the probe timeout; never opens one (that
    /// would be turned away too, and could wait a whole connect timeout).
    async fn role_on_request_connection(&self) -> Result<ServerRole> {
        let timeout = self.prober.timeout();
        let ready = {
            let ready = self.ready.load();
            ready
                .as_ref()
                .and_then(|list| list.iter().find(|c| !c.is_broken()).cloned())
        };
        let conn = match ready {
            Some(conn) => Some(conn),
            // None used yet: one idle in the pool, if it holds any.
            None if self.pool.state().connections > 0 => {
                match tokio::time::timeout(timeout, self.pool.get()).await {
                    Ok(Ok(guard)) if !guard.is_broken() => Some(guard.clone()),
                    _ => None,
                }
            }
            None => None,
        };
        let Some(mut conn) = conn else {
            return Err(Error::new(
                ErrorKind::Connection,
                "no request connection open to probe on",
            ));
        };
        let role = redis::cmd("ROLE");
        let ask = role.query_async::<Value>(&mut conn.inner);
        match tokio::time::timeout(timeout, ask).await {
            Ok(Ok(reply)) => probe::parse_role(reply),
            Ok(Err(e)) => Err(Error::from_redis(e)),
            Err(_) => Err(Error::timeout("health probe", timeout)),
        }
    }

    /// Retires every request connection made so far, in the request path's snapshot and
    /// idle in the pool alike: the next request opens a fresh one.
    fn retire_connections(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// `INFO replication` on the probe connection: the server's role (`master` or `slave`)
    /// and its replication offset.
    pub(crate) async fn replication(&self, timeout: Duration) -> Result<(String, i64)> {
        self.prober
            .replication(timeout)
            .await
            .map_err(|e| self.error(e))
    }

    /// Waits until at least one connection is established, or fails with why it cannot.
    pub(crate) async fn ensure_connected(&self) -> Result<()> {
        self.connection().await.map(|_| ())
    }
}
