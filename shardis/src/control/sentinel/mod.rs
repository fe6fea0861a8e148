//! Sentinel-managed shards (feature `sentinel`): their primary and replicas come from their
//! sentinels, and follow the sentinels' failovers.
//!
//! A Sentinel shard is asked before the first table is built and at every reload. Then one
//! task per shard follows it: a subscription on each sentinel wakes it on `+switch-master`
//! (and on a replica's `+convert-to-slave`, `+slave`, `+sdown`, `-sdown`), and it asks again
//! every `refresh_ms` in case a message was missed. A changed answer becomes a new routing
//! table through [`Shared::apply`]: only the shard's endpoints (`Control::roles`) change, never
//! its name or the placement, so no key moves. Writes go to the new primary from the moment
//! that table is in force; reads meanwhile fall back to replicas as for any primary failure.
//!
//! - `ask`: asking the sentinels in turn, and checking the primary with `ROLE`.
//! - `follow`: the per-shard task and the sentinel subscriptions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::Notify;

use super::build::Control;
use super::Shared;
use crate::error::{ConfigError, Result};
use crate::health::Event;
use crate::metrics::{self, FailoverKind};
use crate::options::{OnPrimaryDown, Options};
use crate::router::RoutingTable;
use crate::tls::{TlsMaterial, TlsOptions};
use crate::topology::{SentinelSource, ShardName};

mod ask;
mod follow;

pub(crate) use ask::Answer;

/// The followers of the Sentinel shards in force, by shard. Dropping one stops its task.
#[derive(Default)]
pub(crate) struct Sentinels {
    shards: Mutex<HashMap<ShardName, Watch>>,
}

struct Watch {
    source: SentinelSource,
    follow: Arc<Follow>,
    task: tokio::task::AbortHandle,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a shard's follower shares with its subscriptions and with `status`.
#[derive(Default)]
pub(crate) struct Follow {
    /// Wakes the follower to ask at once.
    nudge: Notify,
    /// The last answer (or failure), for `status`; never held across an await.
    known: Mutex<Known>,
}

#[derive(Default, Clone)]
struct Known {
    sentinel: Option<String>,
    primary: Option<String>,
    error: Option<String>,
}

impl Follow {
    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `answer` as the one in force, clearing the last failure.
    fn answered(&self, answer: &Answer) {
        let mut known = self.known();
        known.sentinel = Some(answer.sentinel.clone());
        known.primary = Some(answer.primary.label());
        known.error = None;
    }
}

/// A Sentinel-managed shard as [`Client::status`](crate::Client::status) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SentinelStatus {
    /// The master's name as the sentinels know it.
    pub master: String,
    /// The sentinels, `host:port`, in the order they are asked.
    pub sentinels: Vec<String>,
    /// The sentinel whose answer is in force, `host:port`.
    pub answered_by: Option<String>,
    /// The master's current address as that sentinel gave it, `host:port[/db]`.
    pub primary: Option<String>,
    /// Why the last attempt to ask found no usable answer, if it did not.
    pub error: Option<String>,
}

/// Refuses `promote_replica` when a shard is Sentinel-managed: Sentinel decides.
pub(super) fn check_policy(control: &Control) -> Result<()> {
    if control.options.routing.on_primary_down == OnPrimaryDown::PromoteReplica {
        if let Some(s) = control
            .topology
            .shards()
            .iter()
            .find(|s| s.sentinel().is_some())
        {
            return Err(ConfigError::SentinelPromote {
                shard: s.name().to_string(),
            }
            .into());
        }
    }
    Ok(())
}

/// How long one question to a sentinel or a data endpoint may take.
fn ask_timeout(options: &Options) -> Duration {
    options
        .pool
        .connect_timeout
        .max(options.pool.response_timeout)
        .max(options.health.probe_timeout)
}

/// The TLS material `source` needs, read from `tls` (each time, so that renewed files are
/// picked up), or `None` if it uses no TLS.
fn material(source: &SentinelSource, tls: &TlsOptions) -> Result<Option<TlsMaterial>> {
    if !source.uses_tls() {
        return Ok(None);
    }
    TlsMaterial::load(tls).map(Some)
}

/// Asks every Sentinel shard of `next` (all at once) and sets its roles. A shard that gets
/// no answer keeps the roles `previous` knew for the same source, or fails the change.
pub(super) async fn resolve(
    next: &mut Control,
    previous: Option<&Control>,
) -> Result<Vec<(ShardName, Answer)>> {
    let timeout = ask_timeout(&next.options);
    let tls = &next.options.tls;
    let asks = next.topology.shards().iter().filter_map(|s| {
        let source = s.sentinel()?;
        Some(async move {
            let answer = match material(source, tls) {
                Ok(m) => ask::ask(source, m.as_ref(), timeout).await,
                Err(e) => Err(e),
            };
            (s.name().clone(), answer)
        })
    });
    let mut answers = Vec::new();
    for (name, result) in join_all(asks).await {
        match result {
            Ok(answer) => {
                next.roles.insert(
                    name.clone(),
                    (answer.primary.clone(), answer.replicas.clone()),
                );
                answers.push((name, answer));
            }
            Err(e) => {
                let kept = previous.and_then(|p| {
                    let same = p.topology.shard(name.as_str())?.sentinel()
                        == next.topology.shard(name.as_str())?.sentinel();
                    same.then(|| p.roles.get(&name).cloned()).flatten()
                });
                match kept {
                    Some(roles) => {
                        tracing::warn!(shard = %name, "shardis: sentinels not reachable, keeping the endpoints known: {e}");
                        next.roles.insert(name, roles);
                    }
                    None => return Err(e.with_shard(name.as_str())),
                }
            }
        }
    }
    Ok(answers)
}

impl Shared {
    /// Starts a follower for every Sentinel shard of `control` that has none for its source,
    /// and stops those of shards no longer there (or with another source).
    pub(super) fn sync_sentinels(
        self: &Arc<Self>,
        control: &Control,
        answers: &[(ShardName, Answer)],
    ) {
        let mut shards = self
            .sentinels
            .shards
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let wanted: HashMap<&ShardName, &SentinelSource> = control
            .topology
            .shards()
            .iter()
            .filter_map(|s| Some((s.name(), s.sentinel()?)))
            .collect();
        shards.retain(|name, w| wanted.get(name).is_some_and(|s| **s == w.source));
        let timeout = ask_timeout(&control.options);
        let tls = &control.options.tls;
        for (name, source) in wanted {
            let follow = match shards.get(name) {
                Some(w) => w.follow.clone(),
                None => {
                    let follow = Arc::new(Follow::default());
                    let task = tokio::spawn(follow::run(
                        Arc::downgrade(self),
                        name.clone(),
                        source.clone(),
                        follow.clone(),
                        tls.clone(),
                        timeout,
                    ))
                    .abort_handle();
                    let watch = Watch {
                        source: source.clone(),
                        follow: follow.clone(),
                        task,
                    };
                    shards.insert(name.clone(), watch);
                    follow
                }
            };
            if let Some((_, a)) = answers.iter().find(|(n, _)| n == name) {
                follow.answered(a);
            }
        }
    }

    /// Wakes the follower of `shard` to ask its sentinels at once; false if the shard is not
    /// Sentinel-managed.
    pub(super) fn sentinel_nudge(&self, shard: &ShardName) -> bool {
        let shards = self
            .sentinels
            .shards
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match shards.get(shard) {
            Some(w) => {
                w.follow.nudge.notify_one();
                true
            }
            None => false,
        }
    }

    /// What `status` says of `shard`'s sentinels, if it is Sentinel-managed.
    pub(super) fn sentinel_status(&self, shard: &ShardName) -> Option<SentinelStatus> {
        let shards = self
            .sentinels
            .shards
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let w = shards.get(shard)?;
        let known = w.follow.known().clone();
        Some(SentinelStatus {
            master: w.source.master.clone(),
            sentinels: w.source.sentinels.iter().map(|s| s.address()).collect(),
            answered_by: known.sentinel,
            primary: known.primary,
            error: known.error,
        })
    }

    /// Asks `shard`'s sentinels and, if the answer differs from the endpoints in force,
    /// installs a table with the new ones.
    pub(super) async fn refresh_sentinel(
        self: &Arc<Self>,
        shard: &ShardName,
        source: &SentinelSource,
        follow: &Follow,
    ) {
        let (timeout, material) = {
            let table = self.router.load();
            (
                ask_timeout(table.options()),
                material(source, &table.options().tls),
            )
        };
        let answer = match material {
            Ok(m) => ask::ask(source, m.as_ref(), timeout).await,
            Err(e) => Err(e),
        };
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                let message = e.to_string();
                let mut known = follow.known();
                if known.error.as_deref() != Some(message.as_str()) {
                    tracing::warn!(shard = %shard, "shardis: {message}");
                }
                known.error = Some(message);
                return;
            }
        };
        follow.answered(&answer);
        let mut control = self.control.lock().await;
        // A reload may have replaced the shard's source meanwhile.
        if control
            .topology
            .shard(shard.as_str())
            .and_then(|s| s.sentinel())
            != Some(source)
        {
            return;
        }
        let roles = (answer.primary.clone(), answer.replicas.clone());
        let before = control.roles.get(shard);
        if before == Some(&roles) {
            return;
        }
        let moved = before.is_some_and(|(primary, _)| *primary != answer.primary);
        let event = Event::SentinelSwitched {
            shard: shard.clone(),
            primary: answer.primary.label(),
            sentinel: answer.sentinel.clone(),
        };
        let change = |c: &mut Control| c.roles.insert(shard.clone(), roles);
        // The sentinels just said which server is primary: a mismatch a probe saw while they
        // promoted it no longer stands. Cleared before the table is in force, so that no
        // write finds the new primary refused. (Replicas are left to the probes.)
        let ready = |table: &RoutingTable| {
            if let Some(route) = table.shard(shard) {
                if let Some(t) = route.primary.health_state().clear_mismatch() {
                    self.transition(route, &route.primary, t);
                }
            }
        };
        match self.apply_then(&mut control, change, ready, event).await {
            Ok(()) => {
                if moved {
                    metrics::failover(shard, FailoverKind::SentinelSwitch);
                }
                tracing::warn!(
                    shard = %shard,
                    primary = answer.primary.label(),
                    sentinel = answer.sentinel.as_str(),
                    "shardis: Sentinel shard repointed"
                );
            }
            Err(e) => {
                tracing::error!(shard = %shard, "shardis: cannot repoint Sentinel shard: {e}")
            }
        }
    }
}
