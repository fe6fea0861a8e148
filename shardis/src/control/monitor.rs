//! The health monitor: probes every endpoint of the current table each interval, on each
//! endpoint's own probe connection, until the client is dropped.
//!
//! A probe is `ROLE`: it proves the server answers, and that it is what the routing table says
//! — a primary, or a replica of the shard's current primary. An endpoint in the wrong role is
//! taken out ([`Health::RoleMismatch`]) so that no read goes to a replica of something else and
//! no write meets `READONLY`.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::join_all;

use super::{Outcome, Shared};
use crate::health::{Health, Role};
use crate::metrics;
use crate::node::{Node, ServerRole};
use crate::options::OnPrimaryDown;
use crate::router::{RoutingTable, ShardRoute};
use crate::topology::Endpoint;

/// Probes every endpoint each `interval`; stops when the client is gone.
pub(super) async fn run(client: Weak<Shared>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = client.upgrade() else {
            return;
        };
        shared.probe_round(interval).await;
    }
}

impl Shared {
    /// One round of probes over every endpoint of the current table. A suspect endpoint is
    /// probed again at once (a tenth of the interval later), so a dead one is down within
    /// about `interval + probe_timeout` even with no traffic.
    async fn probe_round(self: &Arc<Self>, interval: Duration) {
        let table = self.router.load();
        let limit = table.options().health.failure_threshold.max(1);
        let probes = table.shards().iter().flat_map(|route| {
            route.nodes().map(move |(node, role)| async move {
                for _ in 0..limit {
                    let answered = self.probe(route, node, role).await;
                    if answered || node.health() != Health::Suspect {
                        break;
                    }
                    tokio::time::sleep(interval / 10).await;
                }
            })
        });
        join_all(probes).await;
        // The table in force now: the round may have led to a new one.
        publish_gauges(&self.router.load());
    }

    /// Probes, once and all at once, the endpoints of `table` that are in `opened`.
    pub(super) async fn probe_opened(self: &Arc<Self>, table: &RoutingTable, opened: &[Arc<Node>]) {
        let opened: HashSet<usize> = opened.iter().map(|n| Arc::as_ptr(n) as usize).collect();
        let probes: Vec<_> = table
            .shards()
            .iter()
            .flat_map(|route| {
                route
                    .nodes()
                    .filter(|(node, _)| opened.contains(&(Arc::as_ptr(node) as usize)))
                    .map(move |(node, role)| self.probe(route, node, role))
            })
            .collect();
        join_all(probes).await;
    }

    /// Probes `node` (in `role` of `route`) once and records the outcome; true if it answered.
    pub(super) async fn probe(
        self: &Arc<Self>,
        route: &ShardRoute,
        node: &Arc<Node>,
        role: Role,
    ) -> bool {
        match node.probe().await {
            Ok(found) => {
                match role_mismatch(route, role, &found) {
                    None => self.record(route, node, Outcome::ProbeAnswered),
                    // A Sentinel shard's replica that became a primary while the primary in
                    // force is down is being promoted by the sentinels: it keeps serving reads
                    // (it holds the shard's data) while its follower asks them at once.
                    #[cfg(feature = "sentinel")]
                    Some(_)
                        if role == Role::Replica
                            && found == ServerRole::Primary
                            && !route.primary.health().is_usable()
                            && self.sentinel_nudge(&route.name) =>
                    {
                        self.record(route, node, Outcome::ProbeAnswered)
                    }
                    Some(found) => {
                        self.record_mismatch(route, node, role, found);
                        #[cfg(feature = "sentinel")]
                        self.sentinel_nudge(&route.name);
                        // Under promote_replica this client owns the roles: a replica found
                        // following the wrong primary (a returning old primary) is repointed,
                        // and again on every probe until it is right.
                        let policy = self.router.load().options().routing.on_primary_down;
                        if role == Role::Replica && policy == OnPrimaryDown::PromoteReplica {
                            let (this, shard, node) =
                                (self.clone(), route.name.clone(), node.clone());
                            tokio::spawn(async move { this.follow(shard, node).await });
                        }
                    }
                }
                true
            }
            Err(_) => {
                self.record(route, node, Outcome::Failed);
                false
            }
        }
    }
}

/// Sets every gauge from `table`: its version, and each endpoint's usability and open
/// connections. Called after each probe round, so gauges stay current (and reach a recorder
/// installed after the client started) without a hook on every change.
pub(super) fn publish_gauges(table: &RoutingTable) {
    metrics::table_version(table.version());
    for route in table.shards() {
        for (node, role) in route.nodes() {
            metrics::endpoint_up(&route.name, node.address(), role, node.health().is_usable());
            metrics::pool_connections(&route.name, node.address(), node.connections().0);
        }
    }
}

/// `None` if `found` is what `role` in `route` should be, else what was found, in words.
pub(super) fn role_mismatch(route: &ShardRoute, role: Role, found: &ServerRole) -> Option<String> {
    let primary = route.primary.endpoint();
    match (role, found) {
        (Role::Primary, ServerRole::Primary) => None,
        (Role::Replica, ServerRole::Replica { host, port })
            if same_server(primary, host, *port) =>
        {
            None
        }
        (_, ServerRole::Primary) => Some("primary (replicating nothing)".into()),
        (_, ServerRole::Replica { host, port }) => Some(format!("replica of {host}:{port}")),
        (_, ServerRole::Other(name)) => Some(name.clone()),
    }
}

/// True unless `host:port` (as a replica names its primary) is certainly another server than
/// `primary`. Ports must match; hosts must match when both are IP addresses (all loopback
/// names count as one) — a DNS name cannot be compared without resolving it, which a probe
/// does not do, so it is given the benefit of the doubt.
fn same_server(primary: &Endpoint, host: &str, port: u16) -> bool {
    if primary.port() != port {
        return false;
    }
    let ip = |h: &str| -> Option<IpAddr> {
        if h.eq_ignore_ascii_case("localhost") {
            return Some(IpAddr::from([127, 0, 0, 1]));
        }
        h.trim_start_matches('[').trim_end_matches(']').parse().ok()
    };
    match (ip(primary.host()), ip(host)) {
        (Some(a), Some(b)) => a == b || (a.is_loopback() && b.is_loopback()),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_server_compares_ports_and_ip_hosts() {
        let p = Endpoint::parse("redis://127.0.0.1:7001").unwrap();
        assert!(same_server(&p, "127.0.0.1", 7001));
        assert!(same_server(&p, "localhost", 7001));
        assert!(same_server(&p, "::1", 7001));
        assert!(!same_server(&p, "127.0.0.1", 7002));
        assert!(!same_server(&p, "10.0.0.9", 7001));
        let named = Endpoint::parse("redis://cache-a.internal:7001").unwrap();
        assert!(
            same_server(&named, "10.1.2.3", 7001),
            "names are not resolved"
        );
        assert!(!same_server(&named, "10.1.2.3", 7002));
    }
}
