//! The routing table: an immutable snapshot of shards, placement and node handles, and the
//! `arc-swap` cell that holds the current one (and the placement before it).
//!
//! A request loads the table exactly once and uses that snapshot for its whole life, so a
//! topology swap never splits one request across two tables.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::health::Role;
use crate::metrics::RouteMetrics;
use crate::node::Node;
use crate::options::{Options, ReadFrom};
use crate::placement::Locator;
use crate::topology::{ShardName, Topology};

/// One shard's route: its name and the nodes of its endpoints in their current roles.
#[derive(Debug)]
pub(crate) struct ShardRoute {
    pub(crate) name: ShardName,
    pub(crate) primary: Arc<Node>,
    pub(crate) replicas: Vec<Arc<Node>>,
    /// The shard's metric handles of the request path, kept so that a request registers none.
    pub(crate) metrics: RouteMetrics,
    /// Round robin over replicas for `prefer_replica`.
    next_replica: AtomicUsize,
}

impl ShardRoute {
    pub(crate) fn new(name: ShardName, primary: Arc<Node>, replicas: Vec<Arc<Node>>) -> ShardRoute {
        ShardRoute {
            metrics: RouteMetrics::new(&name),
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
            .find(|r| r.health().is_usable())
    }

    /// Where a read goes first, and where it goes if that fails with a connection error or a
    /// timeout. `None` first: no endpoint can take it.
    pub(crate) fn read_targets(
        &self,
        policy: ReadFrom,
    ) -> (Option<&Arc<Node>>, Option<&Arc<Node>>) {
        let primary_up = self.primary.health().is_usable();
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

    /// Where a write goes: the primary unless it is down or in the wrong role.
    pub(crate) fn write_target(&self) -> Option<&Arc<Node>> {
        self.primary.health().is_usable().then_some(&self.primary)
    }

    /// Every node of the shard with its role.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = (&Arc<Node>, Role)> {
        std::iter::once((&self.primary, Role::Primary))
            .chain(self.replicas.iter().map(|r| (r, Role::Replica)))
    }
}

/// An immutable routing snapshot: every shard's route, and the placement over the shards that
/// take keys.
#[derive(Debug)]
pub(crate) struct RoutingTable {
    version: u64,
    /// The topology as configured (roles as the user wrote them).
    topology: Topology,
    options: Options,
    /// Placement over the shards that take keys (all but ejected ones); `None` if none does.
    locator: Option<Arc<Locator>>,
    /// Placement index -> index in `shards`.
    placed: Vec<usize>,
    /// Every shard, in topology order, with its endpoints in their current roles.
    shards: Vec<ShardRoute>,
    /// Placement over every shard, ejected or not, built on first need (`locate` while every
    /// shard is ejected) and at most once per table.
    unejected: OnceLock<Option<Locator>>,
}

impl RoutingTable {
    /// A table of `shards` (in `topology` order) routed by `locator`, which places keys over
    /// the shards of `topology` that are not `ejected`.
    pub(crate) fn new(
        version: u64,
        topology: Topology,
        options: Options,
        locator: Option<Arc<Locator>>,
        shards: Vec<ShardRoute>,
    ) -> RoutingTable {
        // Each placed shard's index in the full list, found by name once per table.
        let placed = locator
            .as_ref()
            .map(|l| {
                let index: HashMap<&ShardName, usize> = shards
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (&r.name, i))
                    .collect();
                l.names()
                    .iter()
                    .map(|name| index.get(name).copied().unwrap_or(0))
                    .collect()
            })
            .unwrap_or_default();
        RoutingTable {
            version,
            topology,
            options,
            locator,
            placed,
            shards,
            unejected: OnceLock::new(),
        }
    }

    /// The table's version: 1 at start, raised by every change.
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// The topology as configured.
    pub(crate) fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The settings in force.
    pub(crate) fn options(&self) -> &Options {
        &self.options
    }

    /// The placement over the shards that take keys, if any does.
    pub(crate) fn locator(&self) -> Option<&Arc<Locator>> {
        self.locator.as_ref()
    }

    /// Every shard's route, in topology order.
    pub(crate) fn shards(&self) -> &[ShardRoute] {
        &self.shards
    }

    /// The route of the shard called `name`.
    pub(crate) fn shard(&self, name: &ShardName) -> Option<&ShardRoute> {
        self.shards.iter().find(|r| r.name == *name)
    }

    /// The route of the shard owning `key`; `None` when every shard is ejected.
    #[inline]
    pub(crate) fn route(&self, key: &[u8]) -> Option<&ShardRoute> {
        self.shard_index(key).map(|i| &self.shards[i])
    }

    /// The index in `shards` of the shard owning `key`.
    #[inline]
    pub(crate) fn shard_index(&self, key: &[u8]) -> Option<usize> {
        let locator = self.locator.as_ref()?;
        Some(self.placed[locator.index(key)])
    }

    /// The name of the shard owning `key` as if no shard were ejected.
    pub(crate) fn owner_without_ejections(&self, key: &[u8]) -> Option<&ShardName> {
        self.unejected
            .get_or_init(|| {
                Locator::from_source(
                    &self.topology,
                    &self.options.placement_source(),
                    self.options.hash_tag,
                )
                .ok()
            })
            .as_ref()
            .map(|l| l.locate(key))
    }
}

/// Holds the current routing table, and the placement it replaced.
///
/// The replaced table itself is not kept: requests in flight hold it until they finish, and it
/// is freed (closing the pools only it used) when the last one does. Its placement is kept, so
/// that code that must find a key's previous owner (warm resharding) can.
pub(crate) struct Router {
    current: ArcSwap<RoutingTable>,
    previous: ArcSwapOption<Locator>,
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

    /// Makes `table` current in one atomic store; the placement it replaces stays reachable
    /// as the previous one when the placement changed.
    pub(crate) fn swap(&self, table: RoutingTable) {
        let old = self.current.swap(Arc::new(table));
        let new = self.current.load();
        let changed = match (old.locator(), new.locator()) {
            (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
            (a, b) => a.is_some() != b.is_some(),
        };
        if changed {
            self.previous.store(old.locator().cloned());
        }
    }

    /// The placement in force before the last change of placement, if any.
    #[allow(dead_code)] // read by warm resharding
    pub(crate) fn previous_placement(&self) -> Option<Arc<Locator>> {
        self.previous.load_full()
    }
}
