//! The health monitor: probes every endpoint of the current table each interval, until the
//! client is dropped.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::join_all;

use super::{Outcome, Shared};
use crate::health::Health;

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
        let timeout = table.options().health.probe_timeout;
        let limit = table.options().health.failure_threshold.max(1);
        let probes = table.shards().iter().flat_map(|route| {
            route.nodes().map(move |(node, _)| async move {
                for _ in 0..limit {
                    let result = node.ping(timeout).await;
                    let outcome = match &result {
                        Ok(()) => Outcome::ProbeAnswered,
                        Err(_) => Outcome::Failed,
                    };
                    self.record(route, node, outcome);
                    if result.is_ok() || node.health() != Health::Suspect {
                        break;
                    }
                    tokio::time::sleep(interval / 10).await;
                }
            })
        });
        join_all(probes).await;
    }
}
