//! What a routing table is built from ([`Control`]), and building one: nodes of unchanged
//! endpoints reused from the registry, new ones opened, placement derived from the previous
//! table's where the algorithm allows.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

use futures_util::future::join_all;

use crate::error::{Error, ErrorKind, Result};
use crate::node::Node;
use crate::options::{HealthOptions, Options, PoolOptions};
use crate::placement::Locator;
use crate::router::{RoutingTable, ShardRoute};
use crate::tls::TlsMaterial;
use crate::topology::{Endpoint, ShardName, Topology};

/// Nodes are shared between tables when endpoint and settings are the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct NodeKey {
    endpoint: Endpoint,
    pool: PoolOptions,
    health: HealthOptions,
    /// The TLS settings and files' fingerprint, for `rediss://` endpoints.
    tls: Option<u64>,
}

/// Open nodes by endpoint and settings, held weakly: a node lives as long as a table holds it.
pub(crate) type Registry = HashMap<NodeKey, Weak<Node>>;

/// What the routing table is built from.
#[derive(Debug, Clone)]
pub(crate) struct Control {
    pub(crate) topology: Topology,
    pub(crate) options: Options,
    /// Each shard's endpoints in their current roles (changed by promotions, and set from its
    /// sentinels' answer for a Sentinel-managed shard).
    pub(crate) roles: HashMap<ShardName, (Endpoint, Vec<Endpoint>)>,
    /// Shards out of the placement (`eject`).
    pub(crate) ejected: BTreeSet<ShardName>,
    pub(crate) version: u64,
}

impl Control {
    pub(crate) fn new(topology: Topology, options: Options, version: u64) -> Control {
        let roles = topology
            .shards()
            .iter()
            .filter_map(|s| {
                let primary = s.primary()?.clone();
                Some((s.name().clone(), (primary, s.replicas().to_vec())))
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

/// Builds the table for `control` on a blocking thread: a placement table can take
/// milliseconds to compute, which must not stall the async workers serving requests.
pub(crate) async fn build_off_thread(
    registry: &Arc<Mutex<Registry>>,
    control: &Control,
    previous: Option<Arc<RoutingTable>>,
) -> Result<(RoutingTable, Vec<Arc<Node>>)> {
    let (registry, control) = (registry.clone(), control.clone());
    tokio::task::spawn_blocking(move || build_table(&registry, &control, previous.as_deref()))
        .await
        .map_err(|e| Error::new(ErrorKind::Io, format!("routing table build failed: {e}")))?
}

/// Builds a table from `control`, reusing the open nodes of `registry`; returns it with the
/// nodes it opened.
fn build_table(
    registry: &Mutex<Registry>,
    control: &Control,
    previous: Option<&RoutingTable>,
) -> Result<(RoutingTable, Vec<Arc<Node>>)> {
    let options = &control.options;
    // Placement first: a topology it rejects must not open a pool (or resolve a host).
    let source = options.placement_source();
    let locator = match control
        .topology
        .filter(|s| !control.ejected.contains(s.name()))
    {
        None => None,
        Some(placed) => Some(Arc::new(match previous.and_then(|p| p.locator()) {
            Some(prev) => prev.derive(&placed, &source, options.hash_tag)?,
            None => Locator::from_source(&placed, &source, options.hash_tag)?,
        })),
    };
    let mut opened = Vec::new();
    let mut registry = registry.lock().unwrap_or_else(|p| p.into_inner());
    registry.retain(|_, node| node.strong_count() > 0);
    // Read at the first `rediss://` endpoint, once per build (start and every reload).
    let mut tls: Option<Arc<TlsMaterial>> = None;
    let mut node = |ep: &Endpoint| -> Result<Arc<Node>> {
        let material = match &tls {
            _ if !ep.is_tls() => None,
            Some(m) => Some(m.clone()),
            None => {
                let m = Arc::new(
                    TlsMaterial::load(&options.tls).map_err(|e| e.with_endpoint(&ep.label()))?,
                );
                tls = Some(m.clone());
                Some(m)
            }
        };
        let key = NodeKey {
            endpoint: ep.clone(),
            pool: options.pool,
            health: options.health,
            tls: material.as_ref().map(|m| m.fingerprint()),
        };
        if let Some(n) = registry.get(&key).and_then(Weak::upgrade) {
            return Ok(n);
        }
        let n = Arc::new(Node::new(
            ep.clone(),
            &options.pool,
            &options.health,
            material.as_deref(),
        )?);
        registry.insert(key, Arc::downgrade(&n));
        opened.push(n.clone());
        Ok(n)
    };
    let mut shards = Vec::with_capacity(control.topology.shards().len());
    for s in control.topology.shards() {
        let with_shard = |e: Error| e.with_shard(s.name().as_str());
        let (primary, replicas) = match (control.roles.get(s.name()), s.primary()) {
            (Some(roles), _) => roles.clone(),
            (None, Some(p)) => (p.clone(), s.replicas().to_vec()),
            // A Sentinel-managed shard is asked before any build: not reached.
            (None, None) => {
                return Err(with_shard(Error::new(
                    ErrorKind::ShardUnavailable,
                    "no primary known yet (its sentinels were not asked)",
                )))
            }
        };
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
    let table = RoutingTable::new(
        control.version,
        control.topology.clone(),
        control.options.clone(),
        locator,
        shards,
    );
    Ok((table, opened))
}

/// Fails unless every newly opened primary accepts a connection (each within its connect
/// timeout, all at once).
pub(crate) async fn check_connected(table: &RoutingTable, opened: &[Arc<Node>]) -> Result<()> {
    // Addresses only, to find the opened primaries in one pass.
    let opened: HashSet<usize> = opened.iter().map(|n| Arc::as_ptr(n) as usize).collect();
    let checks: Vec<_> = table
        .shards()
        .iter()
        .filter(|r| opened.contains(&(Arc::as_ptr(&r.primary) as usize)))
        .map(|r| async move {
            r.primary
                .ensure_connected()
                .await
                .map_err(|e| e.with_shard(r.name.as_str()))
        })
        .collect();
    drop(opened);
    for result in join_all(checks).await {
        result?;
    }
    Ok(())
}
