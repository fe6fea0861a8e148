//! What [`Client::status`](crate::Client::status) reports: every shard and endpoint with its
//! role, health, and what its server says of replication.

use futures_util::future::join_all;

use super::Shared;
use crate::health::{Health, Role};
use crate::topology::ShardName;

impl Shared {
    /// Every shard and endpoint with its role, health and what its server says of replication.
    pub(crate) async fn status(&self) -> Vec<ShardStatus> {
        let table = self.router.load();
        // Read what is needed and let go: the queries below may take a timeout each.
        let ejected = self.control.lock().await.ejected.clone();
        let options = table.options();
        let timeout = options
            .health
            .probe_timeout
            .max(options.pool.response_timeout);
        // Every endpoint of every shard at once, each bounded by `timeout` (connect included):
        // any fleet answers within about one timeout, however many endpoints do not answer.
        let shards = join_all(table.shards().iter().zip(table.topology().shards()).map(
            |(route, shard)| {
                let endpoints = join_all(route.nodes().map(|(node, role)| async move {
                    let info = node.replication(timeout).await;
                    let (connections, target_connections) = node.connections();
                    EndpointStatus {
                        endpoint: node.label().to_owned(),
                        role,
                        health: node.health(),
                        server_role: info.as_ref().ok().map(|(r, _)| r.clone()),
                        replication_offset: info.as_ref().ok().map(|(_, o)| *o),
                        connections,
                        target_connections,
                        error: info.err().map(|e| e.to_string()),
                    }
                }));
                let ejected = &ejected;
                async move {
                    ShardStatus {
                        name: route.name.clone(),
                        weight: shard.weight(),
                        placed: !ejected.contains(&route.name),
                        endpoints: endpoints.await,
                        #[cfg(feature = "sentinel")]
                        sentinel: self.sentinel_status(&route.name),
                    }
                }
            },
        ))
        .await;
        shards
    }
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
    /// For a Sentinel-managed shard: its master's name, which sentinel answered, and the
    /// master's current address.
    #[cfg(feature = "sentinel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sentinel")))]
    pub sentinel: Option<super::SentinelStatus>,
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
    /// Request connections open to it now (a server at `maxclients` may have refused some;
    /// the pool keeps trying in the background).
    pub connections: u32,
    /// Request connections the pool aims for (`pool.connections_per_endpoint`).
    pub target_connections: u32,
    /// Why it did not answer.
    pub error: Option<String>,
}
