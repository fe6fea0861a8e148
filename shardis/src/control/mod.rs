//! Everything that changes the routing table, in one place and one at a time: the health
//! monitor's transitions, ejecting and rejoining shards, promoting replicas, and topology swaps
//! (`update_topology`, `reload_config`, the config watcher).
//!
//! A new table is always built off to the side — nodes (pools) of unchanged endpoints reused,
//! new ones opened and checked — then made current with one atomic store. Requests in flight
//! finish on the table they loaded; the replaced table is freed when the last of them ends, and
//! the pools only it held close with it.
//!
//! - `build`: the inputs of a table ([`Control`]) and building one from them.
//! - `swap`: installing a table, topology updates and config reloads.
//! - `failover`: acting on health transitions: eject, rejoin, promote, follow.
//! - `monitor`: the probe loop.
//! - `status`: what `Client::status` reports.
//! - `watch`: the config file watcher.
//! - `warm` (feature `warm`): the warm window after a topology change (the replaced table,
//!   kept reachable for `warm_window_s`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::error::{Error, ErrorKind, Result};
use crate::health::{Event, Health, Role};
use crate::node::Node;
use crate::options::{OnPrimaryDown, Options};
use crate::router::{Router, ShardRoute};
use crate::topology::Topology;

mod build;
mod failover;
mod monitor;
#[cfg(feature = "sentinel")]
mod sentinel;
mod status;
mod swap;
#[cfg(feature = "warm")]
mod warm;
mod watch;

use build::{build_off_thread, check_connected, Control, Registry};
#[cfg(feature = "sentinel")]
pub use sentinel::SentinelStatus;
pub use status::{EndpointStatus, ShardStatus};
#[cfg(feature = "warm")]
pub(crate) use warm::{CopyGuard, Window};
pub use watch::ConfigWatch;

/// How many events a slow subscriber may fall behind before it loses the oldest.
const EVENT_CAPACITY: usize = 1024;

/// What happened to one try on one endpoint, as its health sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A request got its reply (any reply, error replies included).
    Answered,
    /// A probe got its reply.
    ProbeAnswered,
    /// A request or probe failed on the connection or timed out.
    Failed,
}

/// The state shared by every clone of a client and its background tasks.
pub(crate) struct Shared {
    pub(crate) router: Router,
    events: broadcast::Sender<Event>,
    /// Serializes table changes; held across the awaits of a change (connecting, promoting).
    control: tokio::sync::Mutex<Control>,
    /// Open nodes by endpoint and settings, weakly: a node lives as long as a table holds it.
    registry: Arc<Mutex<Registry>>,
    /// `limits.max_key_bytes`, checked before a request loads the routing table.
    max_key_bytes: AtomicUsize,
    /// The followers of Sentinel-managed shards.
    #[cfg(feature = "sentinel")]
    sentinels: sentinel::Sentinels,
    /// The warm window of the last topology change, if one is open.
    #[cfg(feature = "warm")]
    pub(crate) warm: warm::Warm,
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
        options.validate()?;
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let registry = Arc::new(Mutex::new(Registry::default()));
        #[allow(unused_mut)]
        let mut control = Control::new(topology, options, 1);
        #[cfg(feature = "sentinel")]
        let answers = {
            sentinel::check_policy(&control)?;
            sentinel::resolve(&mut control, None).await?
        };
        let (table, opened) = build_off_thread(&registry, &control, None).await?;
        if !lazy {
            check_connected(&table, &opened).await?;
        }
        let interval = control.options.health.interval;
        let shared = Arc::new(Shared {
            router: Router::new(table),
            events,
            max_key_bytes: AtomicUsize::new(control.options.max_key_bytes),
            #[cfg(feature = "sentinel")]
            sentinels: sentinel::Sentinels::default(),
            control: tokio::sync::Mutex::new(control),
            registry,
            #[cfg(feature = "warm")]
            warm: warm::Warm::default(),
        });
        #[cfg(feature = "sentinel")]
        shared.sync_sentinels(&*shared.control.lock().await, &answers);
        if !lazy {
            // Every endpoint proves its role before the first request.
            let table = shared.router.load();
            shared.probe_opened(&table, &opened).await;
        }
        crate::metrics::describe_all();
        monitor::publish_gauges(&shared.router.load());
        tokio::spawn(monitor::run(Arc::downgrade(&shared), interval));
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

    /// Records the outcome of one try on `node` of `route` for its health, and acts on a
    /// transition. The one place where requests and probes feed health.
    #[inline]
    pub(crate) fn record(self: &Arc<Self>, route: &ShardRoute, node: &Arc<Node>, outcome: Outcome) {
        let state = node.health_state();
        let transition = match outcome {
            Outcome::Answered => state.request_success(),
            Outcome::ProbeAnswered => state.probe_success(),
            Outcome::Failed => state.failure(),
        };
        if let Some(t) = transition {
            self.transition(route, node, t);
        }
    }

    /// Records that a probe found `node` in the wrong role (`found`, in words) for `expected`.
    pub(crate) fn record_mismatch(
        self: &Arc<Self>,
        route: &ShardRoute,
        node: &Arc<Node>,
        expected: Role,
        found: String,
    ) {
        if let Some(t) = node.health_state().mismatch() {
            tracing::warn!(
                shard = %route.name,
                endpoint = node.label(),
                expected = expected.as_str(),
                found = found.as_str(),
                "shardis: endpoint in the wrong role, taken out"
            );
            self.emit(Event::RoleMismatch {
                shard: route.name.clone(),
                endpoint: node.label().to_owned(),
                expected,
                found,
            });
            self.transition(route, node, t);
        }
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

/// The role of `node` in `route`.
fn role_of(route: &ShardRoute, node: &Arc<Node>) -> Role {
    if Arc::ptr_eq(node, &route.primary) {
        Role::Primary
    } else {
        Role::Replica
    }
}

/// Logs a health transition at the level it deserves.
fn log_transition(route: &ShardRoute, node: &Node, role: Role, to: Health) {
    let (shard, endpoint, role) = (&route.name, node.label(), role.as_str());
    match to {
        Health::Down => tracing::warn!(%shard, endpoint, role, "shardis: endpoint down"),
        Health::Suspect => tracing::info!(%shard, endpoint, role, "shardis: endpoint suspect"),
        Health::RoleMismatch => {
            tracing::warn!(%shard, endpoint, role, "shardis: endpoint role mismatch")
        }
        _ => tracing::info!(%shard, endpoint, role, "shardis: endpoint up"),
    }
}
