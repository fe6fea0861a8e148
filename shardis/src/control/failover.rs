//! Acting on health transitions under the `on_primary_down` policy: ejecting and rejoining
//! shards, promoting a replica, and making a returning old primary follow the new one.

use std::sync::Arc;

use futures_util::future::join_all;

use super::monitor::role_mismatch;
use super::{log_transition, role_of, Shared};
use crate::health::{Event, Health, Role, Transition};
use crate::metrics::{self, FailoverKind};
use crate::node::Node;
use crate::options::OnPrimaryDown;
use crate::router::ShardRoute;
use crate::topology::{Endpoint, ShardName};

impl Shared {
    /// Reports a health transition of `node` in `route`, and acts on it under the policy.
    pub(super) fn transition(
        self: &Arc<Self>,
        route: &ShardRoute,
        node: &Arc<Node>,
        t: Transition,
    ) {
        let role = role_of(route, node);
        log_transition(route, node, role, t.to);
        metrics::endpoint_up(&route.name, node.address(), role, t.to.is_usable());
        self.emit(Event::Health {
            shard: route.name.clone(),
            endpoint: node.label().to_owned(),
            role,
            from: t.from,
            to: t.to,
        });
        // A Sentinel shard's roles are its sentinels' to decide: a change of health only
        // makes its follower ask them at once. It is never ejected, promoted or repointed here.
        #[cfg(feature = "sentinel")]
        if self.sentinel_nudge(&route.name) {
            return;
        }
        let policy = self.router.load().options().routing.on_primary_down;
        let shard = route.name.clone();
        let this = self.clone();
        match (policy, role, t.to) {
            (OnPrimaryDown::Eject, Role::Primary, Health::Down | Health::RoleMismatch) => {
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
        let Some(route) = table.shard(&shard) else {
            return;
        };
        if route.primary.health().is_usable() || control.ejected.contains(&shard) {
            return;
        }
        let event = Event::Ejected {
            shard: shard.clone(),
        };
        match self
            .apply(&mut control, |c| c.ejected.insert(shard.clone()), event)
            .await
        {
            Ok(()) => {
                metrics::failover(&shard, FailoverKind::Eject);
                tracing::warn!(shard = %shard, "shardis: shard ejected from placement")
            }
            Err(e) => tracing::error!(shard = %shard, "shardis: cannot eject: {e}"),
        }
    }

    async fn rejoin(self: Arc<Self>, shard: ShardName) {
        let mut control = self.control.lock().await;
        let table = self.router.load();
        let Some(route) = table.shard(&shard) else {
            return;
        };
        if !route.primary.health().is_usable() || !control.ejected.contains(&shard) {
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
            Ok(()) => {
                metrics::failover(&shard, FailoverKind::Rejoin);
                tracing::info!(shard = %shard, "shardis: shard rejoined placement")
            }
            Err(e) => tracing::error!(shard = %shard, "shardis: cannot rejoin: {e}"),
        }
    }

    /// Promotes the healthy replica with the largest replication offset.
    async fn promote(self: Arc<Self>, shard: ShardName) {
        let mut control = self.control.lock().await;
        let table = self.router.load();
        let Some(route) = table.shard(&shard) else {
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
                .filter(|r| r.health().is_usable())
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
            if r.health().is_usable() {
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
                metrics::failover(&shard, FailoverKind::Promote);
                tracing::warn!(shard = %shard, endpoint = winner.label(), "shardis: replica promoted to primary");
                // The new primary and the repointed replicas now have the roles the new table
                // gives them; a mismatch a probe saw during the change no longer stands.
                let table = self.router.load();
                if let Some(route) = table.shard(&shard) {
                    for (node, _) in route.nodes() {
                        if let Some(t) = node.health_state().clear_mismatch() {
                            self.transition(route, node, t);
                        }
                    }
                }
            }
            Err(e) => tracing::error!(shard = %shard, "shardis: cannot install promotion: {e}"),
        }
    }

    /// A replica came back, or answers in the wrong role: if it does not replicate the shard's
    /// current primary (a restarted old primary believes it is one), make it follow it.
    pub(super) async fn follow(self: Arc<Self>, shard: ShardName, node: Arc<Node>) {
        let _control = self.control.lock().await;
        let table = self.router.load();
        let Some(route) = table.shard(&shard) else {
            return;
        };
        if Arc::ptr_eq(&route.primary, &node) {
            return;
        }
        let Ok(found) = node.probe().await else {
            return;
        };
        if role_mismatch(route, Role::Replica, &found).is_some() {
            {
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
}
