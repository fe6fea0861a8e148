//! Everything that changes the routing table, in one place and one at a time: the health
//! monitor's transitions, ejecting and rejoining shards, promoting replicas, and topology swaps
//! (`update_topology`, `reload_config`, the config watcher).
//!
//! A new table is always built off to the side — nodes (pools) of unchanged endpoints reused,
//! new ones opened and checked — then made current with one atomic store. Requests in flight
//! finish on the table they loaded; the replaced table is released once none uses it, and the
//! pools only it held close with it.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::broadcast;

use crate::config::{Config, Options};
use crate::error::{Error, ErrorKind, Result};
use crate::health::{Event, Health, HealthOptions, Role, Transition};
use crate::node::{Node, PoolOptions};
use crate::placement::Locator;
use crate::router::{OnPrimaryDown, Router, RoutingTable, ShardRoute};
use crate::topology::{Endpoint, ShardName, Topology};

/// How many events a slow subscriber may fall behind before it loses the oldest.
const EVENT_CAPACITY: usize = 1024;

/// Nodes are shared between tables when endpoint and settings are the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct NodeKey {
    url: String,
    pool: PoolOptions,
    health: HealthOptions,
}

/// What the routing table is built from.
#[derive(Debug, Clone)]
struct Control {
    topology: Topology,
    options: Options,
    /// Each shard's endpoints in their current roles (changed by promotions).
    roles: HashMap<ShardName, (Endpoint, Vec<Endpoint>)>,
    /// Shards out of the placement (`eject`).
    ejected: BTreeSet<ShardName>,
    version: u64,
}

impl Control {
    fn new(topology: Topology, options: Options, version: u64) -> Control {
        let roles = topology
            .shards()
            .iter()
            .map(|s| {
                (
                    s.name().clone(),
                    (s.primary().clone(), s.replicas().to_vec()),
                )
            })
            .collect();
        Control {
            topology,
            options,
            roles,
            ejected: BTreeSet::new(),
            version,
        }
    }
}

/// The state shared by every clone of a client and its background tasks.
pub(crate) struct Shared {
    pub(crate) router: Router,
    events: broadcast::Sender<Event>,
    /// Serializes table changes; held across the awaits of a change (connecting, promoting).
    control: tokio::sync::Mutex<Control>,
    /// Open nodes by endpoint and settings, weakly: a node lives as long as a table holds it.
    registry: Mutex<HashMap<NodeKey, Weak<Node>>>,
    /// `limits.max_key_bytes`, checked before a request loads the routing table.
    max_key_bytes: AtomicUsize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    /// Builds the first table, checks every primary unless `lazy`, and starts the monitor.
    pub(crate) async fn start(
        topology: Topology,
        options: Options,
        lazy: bool,
    ) -> Result<Arc<Shared>> {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let registry = Mutex::new(HashMap::new());
        let control = Control::new(topology, options, 1);
        let (table, opened) = build_table(&registry, &control, None)?;
        if !lazy {
            check_connected(&table, &opened).await?;
        }
        let interval = control.options.health.interval;
        let shared = Arc::new(Shared {
            router: Router::new(table),
            events,
            max_key_bytes: AtomicUsize::new(control.options.max_key_bytes),
            control: tokio::sync::Mutex::new(control),
            registry,
        });
        tokio::spawn(crate::health::monitor(Arc::downgrade(&shared), interval));
        Ok(shared)
    }

    /// The largest key accepted, in bytes.
    #[inline]
    pub(crate) fn max_key_bytes(&self) -> usize {
        self.max_key_bytes.load(Ordering::Relaxed)
    }

    /// Subscribes to events.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn emit(&self, event: Event) {
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    /// Builds the table for `control` from the current one on a blocking thread: a placement
    /// table can take milliseconds to compute, which must not stall the async workers serving
    /// requests.
    async fn build(self: &Arc<Self>, control: &Control) -> Result<(RoutingTable, Vec<Arc<Node>>)> {
        let (shared, control, current) = (self.clone(), control.clone(), self.router.load());
        tokio::task::spawn_blocking(move || build_table(&shared.registry, &control, Some(&current)))
            .await
            .map_err(|e| Error::new(ErrorKind::Io, format!("routing table build failed: {e}")))?
    }

    /// Makes `table` current and releases the one it replaces once no request uses it.
    fn install(self: &Arc<Self>, table: RoutingTable) {
        let version = table.version;
        let old = self.router.swap(table);
        tracing::info!(version, "shardis: routing table {version} in force");
        self.emit(Event::TopologyChanged { version });
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            // Held by: this task, the router's "previous" slot, and requests still using it.
            for _ in 0..6000 {
                if Arc::strong_count(&old) <= 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if let Some(shared) = weak.upgrade() {
                shared.router.release_previous(&old);
            }
        });
    }

    /// Applies `change` to a copy of `control` under a new version, installs the table it
    /// gives, and only then keeps the copy and emits `event`.
    async fn apply<R>(
        self: &Arc<Self>,
        control: &mut Control,
        change: impl FnOnce(&mut Control) -> R,
        event: Event,
    ) -> Result<()> {
        let mut next = control.clone();
        change(&mut next);
        next.version += 1;
        let (table, _) = self.build(&next).await?;
        self.install(table);
        *control = next;
        self.emit(event);
        Ok(())
    }

    /// Replaces the topology (and, with `options`, the settings). Rejected changes leave the
    /// current table in force.
    pub(crate) async fn update(
        self: &Arc<Self>,
        topology: Topology,
        options: Option<Options>,
    ) -> Result<u64> {
        let mut control = self.control.lock().await;
        let mut next = Control::new(
            topology,
            options.unwrap_or_else(|| control.options.clone()),
            control.version + 1,
        );
        let result = async {
            let (table, opened) = self.build(&next).await?;
            check_connected(&table, &opened).await?;
            Ok::<_, Error>(table)
        }
        .await;
        let mut table = match result {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("shardis: new topology rejected: {e}");
                self.emit(Event::ConfigRejected {
                    error: e.to_string(),
                });
                return Err(e);
            }
        };
        // A shard whose reused primary is already down stays out, as it would have been.
        if next.options.routing.on_primary_down == OnPrimaryDown::Eject {
            let down: Vec<ShardName> = table
                .shards
                .iter()
                .filter(|r| r.primary.health() == Health::Down)
                .map(|r| r.name.clone())
                .collect();
            if !down.is_empty() {
                next.ejected.extend(down);
                table = self.build(&next).await?.0;
            }
        }
        let version = next.version;
        self.install(table);
        self.max_key_bytes
            .store(next.options.max_key_bytes, Ordering::Relaxed);
        *control = next;
        Ok(version)
    }

    /// Reads a config file and applies its topology and settings.
    pub(crate) async fn reload(self: &Arc<Self>, path: &Path) -> Result<u64> {
        let config = match Config::from_file(path) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("shardis: config {} rejected: {e}", path.display());
                self.emit(Event::ConfigRejected {
                    error: e.to_string(),
                });
                return Err(e);
            }
        };
        let (topology, options) = config.into_parts();
        self.update(topology, Some(options)).await
    }

    /// Reports a health transition of `node` in `route`, and acts on it under the policy.
    pub(crate) fn transition(
        self: &Arc<Self>,
        route: &ShardRoute,
        node: &Arc<Node>,
        t: Transition,
    ) {
        let role = if Arc::ptr_eq(node, &route.primary) {
            Role::Primary
        } else {
            Role::Replica
        };
        match t.to {
            Health::Down => {
                tracing::warn!(shard = %route.name, endpoint = node.label(), role = role.as_str(), "shardis: endpoint down")
            }
            Health::Suspect => {
                tracing::info!(shard = %route.name, endpoint = node.label(), role = role.as_str(), "shardis: endpoint suspect")
            }
            Health::Up => {
                tracing::info!(shard = %route.name, endpoint = node.label(), role = role.as_str(), "shardis: endpoint up")
            }
        }
        self.emit(Event::Health {
            shard: route.name.clone(),
            endpoint: node.label().to_owned(),
            role,
            from: t.from,
            to: t.to,
        });
        let policy = self.router.load().options.routing.on_primary_down;
        let shard = route.name.clone();
        let this = self.clone();
        match (policy, role, t.to) {
            (OnPrimaryDown::Eject, Role::Primary, Health::Down) => {
                tokio::spawn(async move { this.eject(shard).await });
            }
            (OnPrimaryDown::Eject, Role::Primary, Health::Up) => {
                tokio::spawn(async move { this.rejoin(shard).await });
            }
            (OnPrimaryDown::PromoteReplica, Role::Primary, Health::Down) => {
                tokio::spawn(async move { this.promote(shard).await });
            }
            (OnPrimaryDown::PromoteReplica, Role::Replica, Health::Up) => {
                let node = node.clone();
                tokio::spawn(async move { this.follow(shard, node).await });
            }
            _ => {}
        }
    }

    async fn eject(self: Arc<Self>, shard: ShardName) {
        let mut control = self.control.lock().await;
        let table = self.router.load();
        let Some(route) = table.shards.iter().find(|r| r.name == shard) else {
            return;
        };
        if route.primary.health() != Health::Down || control.ejected.contains(&shard) {
            return;
        }
        let event = Event::Ejected {
            shard: shard.clone(),
        };
        match self
            .apply(&mut control, |c| c.ejected.insert(shard.clone()), event)
            .await
        {
            Ok(()) => tracing::warn!(shard = %shard, "shardis: shard ejected from placement"),
            Err(e) => tracing::error!(shard = %shard, "shardis: cannot eject: {e}"),
        }
    }

    async fn rejoin(self: Arc<Self>, shard: ShardName) {
        let mut control = self.control.lock().await;
        let table = self.router.load();
        let Some(route) = table.shards.iter().find(|r| r.name == shard) else {
            return;
        };
        if route.primary.health() == Health::Down || !control.ejected.contains(&shard) {
            return;
        }
        if control.options.routing.flush_on_rejoin {
            if let Err(e) = route.primary.query(&redis::cmd("FLUSHDB")).await {
                // Better out than stale: it stays ejected until its next recovery.
                tracing::error!(shard = %shard, "shardis: FLUSHDB before rejoin failed, shard stays out: {e}");
                return;
            }
        }
        let event = Event::Rejoined {
            shard: shard.clone(),
        };
        match self
            .apply(&mut control, |c| c.ejected.remove(&shard), event)
            .await
        {
            Ok(()) => tracing::info!(shard = %shard, "shardis: shard rejoined placement"),
            Err(e) => tracing::error!(shard = %shard, "shardis: cannot rejoin: {e}"),
        }
    }

    /// Promotes the healthy replica with the largest replication offset.
    async fn promote(self: Arc<Self>, shard: ShardName) {
        let mut control = self.control.lock().await;
        let table = self.router.load();
        let Some(route) = table.shards.iter().find(|r| r.name == shard) else {
            return;
        };
        if route.primary.health() != Health::Down {
            return; // recovered, or already replaced by an earlier promotion
        }
        let timeout = control.options.pool.response_timeout;
        let candidates = join_all(
            route
                .replicas
                .iter()
                .filter(|r| r.health() != Health::Down)
                .map(|r| async move { (r, r.replication(timeout).await) }),
        )
        .await;
        let Some(winner) = candidates
            .iter()
            .filter_map(|(r, info)| info.as_ref().ok().map(|(_, offset)| (*r, *offset)))
            .max_by_key(|(_, offset)| *offset)
            .map(|(r, _)| r.clone())
        else {
            tracing::error!(shard = %shard, "shardis: primary down and no healthy replica to promote");
            return;
        };
        if let Err(e) = winner
            .query(redis::cmd("REPLICAOF").arg("NO").arg("ONE"))
            .await
        {
            tracing::error!(shard = %shard, endpoint = winner.label(), "shardis: promotion failed: {e}");
            return;
        }
        let (host, port) = (
            winner.endpoint().host().to_owned(),
            winner.endpoint().port(),
        );
        for r in route.replicas.iter().filter(|r| !Arc::ptr_eq(r, &winner)) {
            if r.health() != Health::Down {
                if let Err(e) = r.query(redis::cmd("REPLICAOF").arg(&host).arg(port)).await {
                    tracing::warn!(shard = %shard, endpoint = r.label(), "shardis: cannot repoint replica: {e}");
                }
            }
        }
        let replicas: Vec<Endpoint> = route
            .replicas
            .iter()
            .filter(|r| !Arc::ptr_eq(r, &winner))
            .map(|r| r.endpoint().clone())
            .chain(std::iter::once(route.primary.endpoint().clone()))
            .collect();
        let roles = (winner.endpoint().clone(), replicas);
        let event = Event::Promoted {
            shard: shard.clone(),
            endpoint: winner.label().to_owned(),
        };
        match self
            .apply(
                &mut control,
                |c| c.roles.insert(shard.clone(), roles),
                event,
            )
            .await
        {
            Ok(()) => {
                tracing::warn!(shard = %shard, endpoint = winner.label(), "shardis: replica promoted to primary")
            }
            Err(e) => tracing::error!(shard = %shard, "shardis: cannot install promotion: {e}"),
        }
    }

    /// A replica came back: if it believes it is a primary (a restarted old primary), make it
    /// follow the shard's current primary.
    async fn follow(self: Arc<Self>, shard: ShardName, node: Arc<Node>) {
        let _control = self.control.lock().await;
        let table = self.router.load();
        let Some(route) = table.shards.iter().find(|r| r.name == shard) else {
            return;
        };
        if Arc::ptr_eq(&route.primary, &node) {
            return;
        }
        let timeout = table.options.pool.response_timeout;
        if let Ok((role, _)) = node.replication(timeout).await {
            if role == "master" {
                let p = route.primary.endpoint();
                match node
                    .query(redis::cmd("REPLICAOF").arg(p.host()).arg(p.port()))
                    .await
                {
                    Ok(_) => {
                        tracing::info!(shard = %shard, endpoint = node.label(), "shardis: returning endpoint now replicates the promoted primary")
                    }
                    Err(e) => {
                        tracing::error!(shard = %shard, endpoint = node.label(), "shardis: cannot demote returning endpoint: {e}")
                    }
                }
            }
        }
    }

    /// One round of probes over every endpoint of the current table. A suspect endpoint is
    /// probed again at once (a tenth of the interval later), so a dead one is down within
    /// about `interval + probe_timeout` even with no traffic.
    pub(crate) async fn probe_round(self: &Arc<Self>, interval: Duration) {
        let table = self.router.load();
        let timeout = table.options.health.probe_timeout;
        let limit = table.options.health.failure_threshold.max(1);
        let probes = table.shards.iter().flat_map(|route| {
            route.nodes().map(move |(node, _)| async move {
                for _ in 0..limit {
                    let result = node.ping(timeout).await;
                    let state = node.health_state();
                    let t = match &result {
                        Ok(()) => state.probe_success(),
                        Err(_) => state.failure(),
                    };
                    if let Some(t) = t {
                        self.transition(route, node, t);
                    }
                    if result.is_ok() || node.health() != Health::Suspect {
                        break;
                    }
                    tokio::time::sleep(interval / 10).await;
                }
            })
        });
        join_all(probes).await;
    }

    /// Every shard and endpoint with its role, health and what its server says of replication.
    pub(crate) async fn status(&self) -> Vec<ShardStatus> {
        let table = self.router.load();
        // Read what is needed and let go: the queries below may take a timeout each.
        let ejected = self.control.lock().await.ejected.clone();
        let timeout = table
            .options
            .health
            .probe_timeout
            .max(table.options.pool.response_timeout);
        let mut out = Vec::new();
        for (route, shard) in table.shards.iter().zip(table.topology.shards()) {
            let endpoints = join_all(route.nodes().map(|(node, role)| async move {
                let info = node.replication(timeout).await;
                EndpointStatus {
                    endpoint: node.label().to_owned(),
                    role,
                    health: node.health(),
                    server_role: info.as_ref().ok().map(|(r, _)| r.clone()),
                    replication_offset: info.as_ref().ok().map(|(_, o)| *o),
                    error: info.err().map(|e| e.to_string()),
                }
            }))
            .await;
            out.push(ShardStatus {
                name: route.name.clone(),
                weight: shard.weight(),
                placed: !ejected.contains(&route.name),
                endpoints,
            });
        }
        out
    }
}

/// Builds a table from `control`, reusing the open nodes of `registry`; returns it with the
/// nodes it opened.
fn build_table(
    registry: &Mutex<HashMap<NodeKey, Weak<Node>>>,
    control: &Control,
    previous: Option<&RoutingTable>,
) -> Result<(RoutingTable, Vec<Arc<Node>>)> {
    let options = &control.options;
    let mut opened = Vec::new();
    let mut registry = registry.lock().unwrap_or_else(|p| p.into_inner());
    registry.retain(|_, node| node.strong_count() > 0);
    let mut node = |ep: &Endpoint| -> Result<Arc<Node>> {
        let key = NodeKey {
            url: ep.secret_url(),
            pool: options.pool,
            health: options.health,
        };
        if let Some(n) = registry.get(&key).and_then(Weak::upgrade) {
            return Ok(n);
        }
        let n = Arc::new(Node::new(ep.clone(), &options.pool, &options.health)?);
        registry.insert(key, Arc::downgrade(&n));
        opened.push(n.clone());
        Ok(n)
    };
    let mut shards = Vec::with_capacity(control.topology.shards().len());
    for s in control.topology.shards() {
        let (primary, replicas) = control
            .roles
            .get(s.name())
            .cloned()
            .unwrap_or_else(|| (s.primary().clone(), s.replicas().to_vec()));
        let with_shard = |e: Error| e.with_shard(s.name().as_str());
        shards.push(ShardRoute::new(
            s.name().clone(),
            node(&primary).map_err(with_shard)?,
            replicas
                .iter()
                .map(&mut node)
                .collect::<Result<Vec<_>>>()
                .map_err(with_shard)?,
        ));
    }
    drop(registry);
    let placed_topology = control
        .topology
        .filter(|s| !control.ejected.contains(s.name()));
    let (locator, placed) = match placed_topology {
        None => (None, Vec::new()),
        Some(t) => {
            let locator = match previous.and_then(|p| p.locator.as_ref()) {
                Some(prev) => prev.derive(&t, options)?,
                None => Locator::new(&t, options)?,
            };
            let placed = t
                .shards()
                .iter()
                .map(|s| {
                    control
                        .topology
                        .shards()
                        .iter()
                        .position(|all| all.name() == s.name())
                        .unwrap_or(0)
                })
                .collect();
            (Some(locator), placed)
        }
    };
    Ok((
        RoutingTable {
            version: control.version,
            topology: control.topology.clone(),
            options: control.options.clone(),
            locator,
            placed,
            shards,
            unejected: std::sync::OnceLock::new(),
        },
        opened,
    ))
}

/// Fails unless every newly opened primary accepts a connection (each within its connect
/// timeout, all at once).
async fn check_connected(table: &RoutingTable, opened: &[Arc<Node>]) -> Result<()> {
    let checks = table
        .shards
        .iter()
        .filter(|r| opened.iter().any(|n| Arc::ptr_eq(n, &r.primary)))
        .map(|r| async move {
            r.primary
                .ensure_connected()
                .await
                .map_err(|e| e.with_shard(r.name.as_str()))
        });
    for result in join_all(checks).await {
        result?;
    }
    Ok(())
}

/// A shard as [`Client::status`](crate::Client::status) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardStatus {
    /// The shard.
    pub name: ShardName,
    /// Its weight.
    pub weight: u32,
    /// False while ejected from the placement.
    pub placed: bool,
    /// Its endpoints, the current primary first.
    pub endpoints: Vec<EndpointStatus>,
}

/// An endpoint as [`Client::status`](crate::Client::status) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointStatus {
    /// `host:port[/db]`.
    pub endpoint: String,
    /// Its role in the current routing table.
    pub role: Role,
    /// Its health.
    pub health: Health,
    /// What the server says it is (`master` or `slave`), if it answered.
    pub server_role: Option<String>,
    /// Its replication offset (`master_repl_offset` or `slave_repl_offset`), if it answered.
    pub replication_offset: Option<i64>,
    /// Why it did not answer.
    pub error: Option<String>,
}

/// Watches a config file and reloads the client when its content changes. Stops when dropped.
#[derive(Debug)]
pub struct ConfigWatch {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ConfigWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ConfigWatch {
    pub(crate) fn start(shared: &Arc<Shared>, path: PathBuf, every: Duration) -> ConfigWatch {
        let weak = Arc::downgrade(shared);
        let task = tokio::spawn(async move {
            let mut last = std::fs::read(&path).ok();
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                let now = std::fs::read(&path).ok();
                if now.is_some() && now != last {
                    last = now;
                    // A rejected file is reported (event, log) and the old topology stays.
                    let _ = shared.reload(&path).await;
                }
            }
        });
        ConfigWatch { task }
    }
}

/// The error of a request that no endpoint of its shard can take.
pub(crate) fn unavailable(route: &ShardRoute, write: bool, policy: OnPrimaryDown) -> Error {
    let what = if write {
        format!(
            "primary {} is down (on_primary_down = {})",
            route.primary.label(),
            policy.as_str()
        )
    } else {
        format!(
            "no healthy endpoint can take the read (primary {} is down)",
            route.primary.label()
        )
    };
    Error::new(ErrorKind::ShardUnavailable, what).with_shard(route.name.as_str())
}
