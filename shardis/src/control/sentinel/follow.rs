//! The follower of one Sentinel shard: subscriptions on its sentinels that wake it, and the
//! periodic question in case a message was missed.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;

use super::Follow;
use crate::control::Shared;
use crate::tls::{TlsMaterial, TlsOptions};
use crate::topology::{Endpoint, SentinelSource, ShardName};

/// The Sentinel channels that say a shard's endpoints changed: the master moved, or a
/// replica was (re)configured, appeared, went down or came back.
const CHANNELS: [&str; 5] = [
    "+switch-master",
    "+convert-to-slave",
    "+slave",
    "+sdown",
    "-sdown",
];

/// Aborts the subscriptions when the follower ends (or is aborted).
struct Subscriptions(Vec<tokio::task::AbortHandle>);

impl Drop for Subscriptions {
    fn drop(&mut self) {
        for s in &self.0 {
            s.abort();
        }
    }
}

/// Asks `shard`'s sentinels whenever a subscription wakes it, and every `refresh`, until the
/// client is gone or the shard's follower is replaced.
pub(super) async fn run(
    shared: Weak<Shared>,
    shard: ShardName,
    source: SentinelSource,
    follow: Arc<Follow>,
    tls: TlsOptions,
    timeout: Duration,
) {
    let _subscriptions = Subscriptions(
        source
            .sentinels
            .iter()
            .map(|s| {
                tokio::spawn(subscribe(
                    s.clone(),
                    source.master.clone(),
                    Arc::downgrade(&follow),
                    tls.clone(),
                    timeout,
                    source.refresh,
                ))
                .abort_handle()
            })
            .collect(),
    );
    loop {
        // Woken by a subscription, or the refresh period is up: either way, ask.
        let _ = tokio::time::timeout(source.refresh, follow.nudge.notified()).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.refresh_sentinel(&shard, &source, &follow).await;
    }
}

/// Subscribes to `sentinel`'s channels and wakes the follower on each message about
/// `master`; after a lost subscription, subscribes again (waking the follower once, for what
/// was missed meanwhile).
async fn subscribe(
    sentinel: Endpoint,
    master: String,
    follow: Weak<Follow>,
    tls: TlsOptions,
    timeout: Duration,
    retry: Duration,
) {
    let retry = retry.min(Duration::from_secs(1));
    loop {
        let opened = tokio::time::timeout(timeout * 2, async {
            // The TLS files are read at each (re)subscription: renewed ones are picked up.
            let material = match sentinel.is_tls() {
                true => Some(TlsMaterial::load(&tls).ok()?),
                false => None,
            };
            let client = crate::node::client_for(&sentinel, material.as_ref()).ok()?;
            let mut pubsub = client.get_async_pubsub().await.ok()?;
            pubsub.subscribe(&CHANNELS[..]).await.ok()?;
            Some(pubsub)
        })
        .await
        .ok()
        .flatten();
        if let Some(pubsub) = opened {
            match follow.upgrade() {
                Some(f) => f.nudge.notify_one(),
                None => return,
            }
            let mut messages = pubsub.into_on_message();
            while let Some(msg) = messages.next().await {
                let payload: String = msg.get_payload().unwrap_or_default();
                if about(&payload, &master) {
                    match follow.upgrade() {
                        Some(f) => f.nudge.notify_one(),
                        None => return,
                    }
                }
            }
        }
        if follow.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(retry).await;
    }
}

/// True if a Sentinel event's text concerns master `master`: `+switch-master` starts with
/// the master's name, instance events end with `@ <master> <ip> <port>`.
fn about(payload: &str, master: &str) -> bool {
    let mut words = payload.split_whitespace();
    if words.clone().next() == Some(master) {
        return true;
    }
    words.any(|w| w == "@") && words.next() == Some(master)
}

#[cfg(test)]
mod tests {
    use super::about;

    #[test]
    fn events_are_matched_by_master_name() {
        assert!(about("cache-a 127.0.0.1 7001 127.0.0.1 7002", "cache-a"));
        assert!(!about("cache-b 127.0.0.1 7001 127.0.0.1 7002", "cache-a"));
        assert!(about(
            "slave 127.0.0.1:7001 127.0.0.1 7001 @ cache-a 127.0.0.1 7002",
            "cache-a"
        ));
        assert!(!about(
            "slave 127.0.0.1:7001 127.0.0.1 7001 @ cache-b 127.0.0.1 7002",
            "cache-a"
        ));
        assert!(!about("master cache-ab 127.0.0.1 7002", "cache-a"));
    }
}
