//! The routing table: an immutable snapshot of shards, placement and node handles, and the
//! `arc-swap` cell that holds the current one.
//!
//! A request loads the table exactly once and uses that snapshot for its whole life, so a
//! topology swap never splits one request across two tables.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Options;
use crate::error::Result;
use crate::node::Node;
use crate::placement::Locator;
use crate::topology::{Endpoint, ShardName, Topology};

/// One shard's route: its name and the nodes of its endpoints.
#[derive(Debug)]
pub(crate) struct ShardRoute {
    pub(crate) name: ShardName,
    pub(crate) primary: Arc<Node>,
    #[allow(dead_code)] // read by the read policies of the failover work
    pub(crate) replicas: Vec<Arc<Node>>,
}

/// An immutable routing snapshot.
#[derive(Debug)]
pub(crate) struct RoutingTable {
    pub(crate) version: u64,
    pub(crate) topology: Topology,
    pub(crate) locator: Locator,
    /// In the order of `topology.shards()`, which is the placement's index order.
    pub(crate) shards: Vec<ShardRoute>,
}

impl RoutingTable {
    /// Builds a table, opening a node (pool) per endpoint; no I/O is awaited.
    pub(crate) fn build(
        version: u64,
        topology: Topology,
        options: &Options,
    ) -> Result<RoutingTable> {
        let locator = Locator::new(&topology, options)?;
        let node = |ep: &Endpoint| Node::new(ep.clone(), &options.pool).map(Arc::new);
        let mut shards = Vec::with_capacity(topology.shards().len());
        for s in topology.shards() {
            shards.push(ShardRoute {
                name: s.name().clone(),
                primary: node(s.primary()).map_err(|e| e.with_shard(s.name().as_str()))?,
                replicas: s
                    .replicas()
                    .iter()
                    .map(&node)
                    .collect::<Result<Vec<_>>>()
                    .map_err(|e| e.with_shard(s.name().as_str()))?,
            });
        }
        Ok(RoutingTable {
            version,
            topology,
            locator,
            shards,
        })
    }

    /// The index of the shard owning `key`.
    #[inline]
    pub(crate) fn shard_index(&self, key: &[u8]) -> usize {
        self.locator.index(key)
    }
}

/// Holds the current routing table.
pub(crate) struct Router {
    current: ArcSwap<RoutingTable>,
}

impl Router {
    pub(crate) fn new(table: RoutingTable) -> Router {
        Router {
            current: ArcSwap::from_pointee(table),
        }
    }

    /// The current table. Load once per request.
    #[inline]
    pub(crate) fn load(&self) -> Arc<RoutingTable> {
        self.current.load_full()
    }
}
