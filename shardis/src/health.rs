//! Endpoint health: the up / suspect / down state machine of one endpoint, and the events a
//! client reports. Who probes, and what a transition triggers, is `control`'s business.
//!
//! An endpoint is `Up` until a probe or a real request fails with a connection error or a
//! timeout; it is then `Suspect`, re-probed at once, and `Down` after
//! `failure_threshold` consecutive failures. A `Down` endpoint comes back only after
//! `recovery_probes` consecutive successful probes — never on a timer. Each transition is reported
//! once (a `tracing` event and an [`Event`] on [`Client::events`](crate::Client::events)).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use crate::options::HealthOptions;
use crate::topology::ShardName;

/// An endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Health {
    /// Serving.
    Up,
    /// Failed recently, fewer than `failure_threshold` times in a row; still used.
    Suspect,
    /// Failed `failure_threshold` times in a row; not used until it recovers.
    Down,
    /// Answers, but not in the role the routing table gives it: a "replica" that does not
    /// replicate the shard's primary, or a "primary" that is a replica. Not used until its
    /// probes find the right role `recovery_probes` times in a row.
    RoleMismatch,
}

impl Health {
    /// `"up"`, `"suspect"` or `"down"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Suspect => "suspect",
            Health::Down => "down",
            Health::RoleMismatch => "role_mismatch",
        }
    }

    /// True when requests may use the endpoint (`Up` or `Suspect`).
    #[inline]
    pub fn is_usable(self) -> bool {
        matches!(self, Health::Up | Health::Suspect)
    }

    fn from_u8(v: u8) -> Health {
        match v {
            0 => Health::Up,
            1 => Health::Suspect,
            2 => Health::Down,
            _ => Health::RoleMismatch,
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
#[non_exhaustive]
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
    /// A Sentinel-managed shard's endpoints moved: its sentinels name another primary (a
    /// `+switch-master`, or a change found by asking again) or other replicas.
    SentinelSwitched {
        /// The shard.
        shard: ShardName,
        /// The primary now, `host:port[/db]`.
        primary: String,
        /// The sentinel that answered, `host:port`.
        sentinel: String,
    },
    /// An endpoint answers in the wrong role (see [`Health::RoleMismatch`]); reported once,
    /// when it is found, beside the `Health` transition.
    RoleMismatch {
        /// The shard.
        shard: ShardName,
        /// The endpoint, `host:port[/db]`.
        endpoint: String,
        /// The role the routing table gives it.
        expected: Role,
        /// What the server says it is (e.g. `master`, or `replica of 127.0.0.1:7003`).
        found: String,
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

    /// A probe found the endpoint in the wrong role: out at once, whatever the counts.
    pub(crate) fn mismatch(&self) -> Option<Transition> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.successes = 0;
        c.failures = 0;
        self.set(Health::RoleMismatch)
    }

    /// The endpoint was just given the role it has (a promotion, a repointed replica): a
    /// role mismatch found before the change no longer stands.
    pub(crate) fn clear_mismatch(&self) -> Option<Transition> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if self.get() == Health::RoleMismatch {
            c.successes = 0;
            return self.set(Health::Up);
        }
        None
    }

    /// A successful probe in the right role. A down or mismatched endpoint needs `recovery`
    /// of them in a row.
    pub(crate) fn probe_success(&self) -> Option<Transition> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.failures = 0;
        match self.get() {
            Health::Down | Health::RoleMismatch => {
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
