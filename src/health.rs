//! Endpoint health: the up / suspect / down state machine, and the monitor task that probes
//! every endpoint.
//!
//! An endpoint is `Up` until a probe or a real request fails with a connection error or a
//! timeout; it is then `Suspect`, re-probed at once, and `Down` after
//! `failure_threshold` consecutive failures. A `Down` endpoint comes back only after
//! `recovery_probes` consecutive successful probes — never on a timer. Each transition is reported
//! once (a `tracing` event and an [`Event`] on [`Client::events`](crate::Client::events)).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use crate::topology::ShardName;

/// Health monitoring settings (`[health]` in the config file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct HealthOptions {
    /// Time between probe rounds. Defaults to [`HealthOptions::DEFAULT_INTERVAL`].
    pub interval: Duration,
    /// Limit on one probe (`PING`). Defaults to [`HealthOptions::DEFAULT_PROBE_TIMEOUT`].
    pub probe_timeout: Duration,
    /// Consecutive failures that mark an endpoint down. Defaults to
    /// [`HealthOptions::DEFAULT_FAILURE_THRESHOLD`].
    pub failure_threshold: u32,
    /// Consecutive successful probes that bring a down endpoint back. Defaults to
    /// [`HealthOptions::DEFAULT_RECOVERY_PROBES`].
    pub recovery_probes: u32,
}

impl HealthOptions {
    /// 250 ms: with the immediate re-probe of a suspect endpoint, a dead one is marked down
    /// within about 300 ms even with no traffic (go-redis's Ring needs about 1.5 s).
    pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(250);
    /// 100 ms: a PING on loopback or a LAN answers in well under a millisecond; a host that
    /// needs 100 ms is in trouble.
    pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(100);
    /// 2: one lost packet does not take a host out; two in a row do.
    pub const DEFAULT_FAILURE_THRESHOLD: u32 = 2;
    /// 2: a host that answers once after a crash may be restarting; twice in a row, it is back.
    pub const DEFAULT_RECOVERY_PROBES: u32 = 2;
}

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions {
            interval: Self::DEFAULT_INTERVAL,
            probe_timeout: Self::DEFAULT_PROBE_TIMEOUT,
            failure_threshold: Self::DEFAULT_FAILURE_THRESHOLD,
            recovery_probes: Self::DEFAULT_RECOVERY_PROBES,
        }
    }
}

/// An endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// Serving.
    Up,
    /// Failed recently, fewer than `failure_threshold` times in a row; still used.
    Suspect,
    /// Failed `failure_threshold` times in a row; not used until it recovers.
    Down,
}

impl Health {
    /// `"up"`, `"suspect"` or `"down"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Suspect => "suspect",
            Health::Down => "down",
        }
    }

    fn from_u8(v: u8) -> Health {
        match v {
            0 => Health::Up,
            1 => Health::Suspect,
            _ => Health::Down,
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An endpoint's role in its shard, as the routing table currently has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Takes writes (and reads, by default).
    Primary,
    /// Replicates the primary; takes reads under the `prefer_replica` and
    /// `primary_then_replica` policies.
    Replica,
}

impl Role {
    /// `"primary"` or `"replica"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

/// Something that happened to the client, as delivered by [`Client::events`](crate::Client::events).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// An endpoint changed health (reported once per transition).
    Health {
        /// The shard.
        shard: ShardName,
        /// The endpoint, `host:port[/db]`.
        endpoint: String,
        /// Its role when the transition happened.
        role: Role,
        /// The previous state.
        from: Health,
        /// The new state.
        to: Health,
    },
    /// A new routing table is in force.
    TopologyChanged {
        /// Its version.
        version: u64,
    },
    /// A shard left the placement because its primary is down (`on_primary_down = "eject"`).
    Ejected {
        /// The shard.
        shard: ShardName,
    },
    /// An ejected shard rejoined the placement.
    Rejoined {
        /// The shard.
        shard: ShardName,
    },
    /// A replica was promoted to primary (`on_primary_down = "promote_replica"`).
    Promoted {
        /// The shard.
        shard: ShardName,
        /// The new primary, `host:port[/db]`.
        endpoint: String,
    },
    /// A new topology or config was rejected; the old one stays in force.
    ConfigRejected {
        /// Why.
        error: String,
    },
}

/// A change of health, to be reported by whoever knows the shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transition {
    pub(crate) from: Health,
    pub(crate) to: Health,
}

/// The state machine of one endpoint.
#[derive(Debug)]
pub(crate) struct HealthState {
    /// Read lock-free on every request.
    state: AtomicU8,
    /// Counters, changed only on probes and failures; never held across an await.
    counts: Mutex<Counts>,
    threshold: u32,
    recovery: u32,
}

#[derive(Debug, Default)]
struct Counts {
    failures: u32,
    successes: u32,
}

impl HealthState {
    pub(crate) fn new(options: &HealthOptions) -> HealthState {
        HealthState {
            state: AtomicU8::new(0),
            counts: Mutex::new(Counts::default()),
            threshold: options.failure_threshold.max(1),
            recovery: options.recovery_probes.max(1),
        }
    }

    #[inline]
    pub(crate) fn get(&self) -> Health {
        Health::from_u8(self.state.load(Ordering::Acquire))
    }

    fn set(&self, to: Health) -> Option<Transition> {
        let from = Health::from_u8(self.state.swap(to as u8, Ordering::AcqRel));
        (from != to).then_some(Transition { from, to })
    }

    /// A failed probe, or a real request that failed with a connection error or timeout.
    pub(crate) fn failure(&self) -> Option<Transition> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.successes = 0;
        c.failures = c.failures.saturating_add(1);
        if c.failures >= self.threshold {
            self.set(Health::Down)
        } else if self.get() == Health::Up {
            self.set(Health::Suspect)
        } else {
            None
        }
    }

    /// A successful probe. A down endpoint needs `recovery` of them in a row.
    pub(crate) fn probe_success(&self) -> Option<Transition> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.failures = 0;
        match self.get() {
            Health::Down => {
                c.successes = c.successes.saturating_add(1);
                if c.successes >= self.recovery {
                    c.successes = 0;
                    self.set(Health::Up)
                } else {
                    None
                }
            }
            Health::Suspect => self.set(Health::Up),
            Health::Up => None,
        }
    }

    /// A real request succeeded: clears a suspicion, never revives a down endpoint.
    #[inline]
    pub(crate) fn request_success(&self) -> Option<Transition> {
        if self.get() == Health::Suspect {
            let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            c.failures = 0;
            if self.get() == Health::Suspect {
                return self.set(Health::Up);
            }
        }
        None
    }
}

/// Probes every endpoint of the current table each `interval`, until the client is dropped.
pub(crate) async fn monitor(client: Weak<crate::control::Shared>, interval: Duration) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state(threshold: u32, recovery: u32) -> HealthState {
        HealthState::new(&HealthOptions {
            failure_threshold: threshold,
            recovery_probes: recovery,
            ..HealthOptions::default()
        })
    }

    #[test]
    fn down_after_threshold_and_back_after_recovery_probes() {
        let h = state(2, 2);
        assert_eq!(
            h.failure(),
            Some(Transition {
                from: Health::Up,
                to: Health::Suspect
            })
        );
        assert_eq!(
            h.failure(),
            Some(Transition {
                from: Health::Suspect,
                to: Health::Down
            })
        );
        assert_eq!(h.failure(), None, "reported once per transition");
        assert_eq!(
            h.request_success(),
            None,
            "a request never revives a down endpoint"
        );
        assert_eq!(h.probe_success(), None);
        assert_eq!(h.get(), Health::Down);
        assert_eq!(h.failure(), None);
        assert_eq!(
            h.probe_success(),
            None,
            "a failure resets the recovery count"
        );
        assert_eq!(
            h.probe_success(),
            Some(Transition {
                from: Health::Down,
                to: Health::Up
            })
        );
    }

    #[test]
    fn suspicion_clears_on_success() {
        let h = state(3, 2);
        h.failure();
        assert_eq!(h.get(), Health::Suspect);
        assert_eq!(
            h.request_success(),
            Some(Transition {
                from: Health::Suspect,
                to: Health::Up
            })
        );
        h.failure();
        h.failure();
        assert_eq!(
            h.probe_success(),
            Some(Transition {
                from: Health::Suspect,
                to: Health::Up
            })
        );
        assert_eq!(
            h.failure(),
            Some(Transition {
                from: Health::Up,
                to: Health::Suspect
            })
        );
    }
}
