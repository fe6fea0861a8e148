//! The routing table: an immutable snapshot of shards, placement and node handles, and the
//! `arc-swap` cell that holds the current one (and the one before it).
//!
//! A request loads the table exactly once and uses that snapshot for its whole life, so a
//! topology swap never splits one request across two tables.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use serde::Deserialize;

use crate::config::Options;
use crate::health::Health;
use crate::node::Node;
use crate::placement::Locator;
use crate::topology::{ShardName, Topology};

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

/// One shard's route: its name and the nodes of its endpoints in their current roles.
#[derive(Debug)]
pub(crate) struct ShardRoute {
    pub(crate) name: ShardName,
    pub(crate) primary: Arc<Node>,
    pub(crate) replicas: Vec<Arc<Node>>,
    /// Round robin over replicas for `prefer_replica`.
    next_replica: AtomicUsize,
}

impl ShardRoute {
    pub(crate) fn new(name: ShardName, primary: Arc<Node>, replicas: Vec<Arc<Node>>) -> ShardRoute {
        ShardRoute {
            name,
            primary,
            replicas,
            next_replica: AtomicUsize::new(0),
        }
    }

    /// A replica that is not down, taking turns.
    fn healthy_replica(&self) -> Option<&Arc<Node>> {
        let n = self.replicas.len();
        if n == 0 {
            return None;
        }
        let start = self.next_replica.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.replicas[(start + i) % n])
            .find(|r| r.health() != Health::Down)
    }

    /// Where a read goes first, and where it goes if that fails with a connection error or a
    /// timeout. `None` first: no endpoint can take it.
    pub(crate) fn read_targets(
        &self,
        policy: ReadFrom,
    ) -> (Option<&Arc<Node>>, Option<&Arc<Node>>) {
        let primary_up = self.primary.health() != Health::Down;
        match policy {
            ReadFrom::Primary => (primary_up.then_some(&self.primary), None),
            ReadFrom::PrimaryThenReplica if primary_up => {
                (Some(&self.primary), self.healthy_replica())
            }
            ReadFrom::PrimaryThenReplica => (self.healthy_replica(), None),
            ReadFrom::PreferReplica => match self.healthy_replica() {
                Some(r) => (Some(r), primary_up.then_some(&self.primary)),
                None => (primary_up.then_some(&self.primary), None),
            },
        }
    }

    /// Where a write goes: the primary unless it is down.
    pub(crate) fn write_target(&self) -> Option<&Arc<Node>> {
        (self.primary.health() != Health::Down).then_some(&self.primary)
    }

    /// Every node of the shard with its role.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = (&Arc<Node>, crate::health::Role)> {
        std::iter::once((&self.primary, crate::health::Role::Primary)).chain(
            self.replicas
                .iter()
                .map(|r| (r, crate::health::Role::Replica)),
        )
    }
}

/// An immutable routing snapshot.
#[derive(Debug)]
pub(crate) struct RoutingTable {
    pub(crate) version: u64,
    /// The topology as configured (roles as the user wrote them).
    pub(crate) topology: Topology,
    pub(crate) options: Options,
    /// Placement over the shards that take keys (all but ejected ones); `None` if none does.
    pub(crate) locator: Option<Locator>,
    /// Placement index -> index in `shards`.
    pub(crate) placed: Vec<usize>,
    /// Every shard, in topology order, with its endpoints in their current roles.
    pub(crate) shards: Vec<ShardRoute>,
    /// Placement over every shard, ejected or not, built on first need (`locate` while every
    /// shard is ejected) and at most once per table.
    pub(crate) unejected: std::sync::OnceLock<Option<Locator>>,
}

impl RoutingTable {
    /// The route of the shard owning `key`; `None` when every shard is ejected.
    #[inline]
    pub(crate) fn route(&self, key: &[u8]) -> Option<&ShardRoute> {
        let locator = self.locator.as_ref()?;
        Some(&self.shards[self.placed[locator.index(key)]])
    }

    /// The name of the shard owning `key` as if no shard were ejected.
    pub(crate) fn owner_without_ejections(&self, key: &[u8]) -> Option<&ShardName> {
        self.unejected
            .get_or_init(|| Locator::new(&self.topology, &self.options).ok())
            .as_ref()
            .map(|l| l.locate(key))
    }

    /// The index in `shards` of the shard owning `key`.
    #[inline]
    pub(crate) fn shard_index(&self, key: &[u8]) -> Option<usize> {
        let locator = self.locator.as_ref()?;
        Some(self.placed[locator.index(key)])
    }
}

/// Holds the current routing table, and the one it replaced while requests still use it.
pub(crate) struct Router {
    current: ArcSwap<RoutingTable>,
    previous: ArcSwapOption<RoutingTable>,
}

impl Router {
    pub(crate) fn new(table: RoutingTable) -> Router {
        Router {
            current: ArcSwap::from_pointee(table),
            previous: ArcSwapOption::empty(),
        }
    }

    /// The current table. Load once per request.
    #[inline]
    pub(crate) fn load(&self) -> Arc<RoutingTable> {
        self.current.load_full()
    }

    /// Makes `table` current in one atomic store; the table it replaces stays reachable as
    /// the previous one, and is returned.
    pub(crate) fn swap(&self, table: RoutingTable) -> Arc<RoutingTable> {
        let old = self.current.swap(Arc::new(table));
        self.previous.store(Some(old.clone()));
        old
    }

    /// Forgets the previous table if it is still `old` (so its pools can close).
    pub(crate) fn release_previous(&self, old: &Arc<RoutingTable>) {
        let current = self.previous.load();
        if current.as_ref().is_some_and(|p| Arc::ptr_eq(p, old)) {
            self.previous.store(None);
        }
    }
}
