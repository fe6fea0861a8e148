//! Sentinel-managed shards against three real `redis-sentinel` processes started from
//! `deploy/sentinel/sentinel.conf` (down-after 1 s, failover timeout 3 s).
#![cfg(feature = "sentinel")]

use crate::common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{eventually, fast_health, replicated, wait_event, wait_replicated, Replicated};
use futures_util::StreamExt;
use shardis::{
    Client, ConfigError, Event, Health, OnPrimaryDown, ReadFrom, Role, SentinelSpec, ShardSpec,
};
use shardis_testkit::{Monitored, RedisSentinel};

const MASTER: &str = "cache-a";

pub(crate) fn template() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/sentinel/sentinel.conf")
}

/// Three sentinels over `shard`'s primary, each seeing its replicas and the two others.
fn sentinels(shard: &Replicated) -> Vec<RedisSentinel> {
    let watched = [Monitored::new(MASTER, shard.primary.port())];
    let all: Vec<RedisSentinel> = (0..3)
        .map(|_| {
            RedisSentinel::start(&template(), &watched)
                .unwrap_or_else(|e| panic!("cannot start redis-sentinel: {e}"))
        })
        .collect();
    for s in &all {
        s.wait_ready(MASTER, shard.replicas.len(), 2, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    all
}

fn spec(sentinels: &[RedisSentinel]) -> ShardSpec {
    ShardSpec::sentinel(
        MASTER,
        SentinelSpec::new(MASTER, sentinels.iter().map(|s| s.url()))
            .refresh(Duration::from_millis(500)),
    )
}

async fn client(sentinels: &[RedisSentinel]) -> Client {
    Client::builder()
        .shard_spec(spec(sentinels))
        .health(fast_health())
        .read_from(ReadFrom::PrimaryThenReplica)
        .response_timeout(Duration::from_millis(500))
        .build()
        .await
        .expect("client over a Sentinel shard builds")
}

/// Tells `sentinel` to monitor `master` at `127.0.0.1:port` instead (quorum 1): the master
/// moved without a failover, hence without `+switch-master`.
pub(crate) async fn monitor_instead(sentinel: &RedisSentinel, master: &str, port: u16) {
    let mut con = common::connect(&sentinel.url()).await;
    let _: () = redis::cmd("SENTINEL")
        .arg("REMOVE")
        .arg(master)
        .query_async(&mut con)
        .await
        .unwrap();
    let _: () = redis::cmd("SENTINEL")
        .arg("MONITOR")
        .arg(master)
        .arg("127.0.0.1")
        .arg(port)
        .arg(1)
        .query_async(&mut con)
        .await
        .unwrap();
}

/// The shard's primary in the client's table, `host:port`.
async fn primary_of(client: &Client) -> String {
    let status = client.status().await;
    status[0].endpoints[0].endpoint.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_a_sentinel_primary_fails_no_read_and_writes_resume_after_switch_master() {
    let mut shard = replicated(1).await;
    let sentinels = sentinels(&shard);
    let client = client(&sentinels).await;
    let old = format!("127.0.0.1:{}", shard.primary.port());
    let new = format!("127.0.0.1:{}", shard.replicas[0].port());
    assert_eq!(primary_of(&client).await, old);

    let keys = 200;
    for i in 0..keys {
        client.set(format!("k{i}"), format!("v{i}")).await.unwrap();
    }
    wait_replicated(&shard).await;

    // When a sentinel publishes +switch-master, as the test sees it.
    let switched: Arc<Mutex<Option<Instant>>> = Arc::default();
    let mut pubsub = redis::Client::open(sentinels[0].url())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    pubsub.subscribe("+switch-master").await.unwrap();
    let seen = switched.clone();
    tokio::spawn(async move {
        let mut messages = pubsub.into_on_message();
        if messages.next().await.is_some() {
            *seen.lock().unwrap() = Some(Instant::now());
        }
    });

    // 16 readers and 16 writers until writes have worked again for a while after the switch.
    let stop = Arc::new(AtomicBool::new(false));
    let read_failures = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let write_failures = Arc::new(AtomicU64::new(0));
    let slowest_failed_write = Arc::new(AtomicU64::new(0));
    let write_successes: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let (client, stop, failures, reads) = (
            client.clone(),
            stop.clone(),
            read_failures.clone(),
            reads.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = t;
            while !stop.load(Ordering::Relaxed) {
                let k = i % keys;
                match client.get::<_, Option<String>>(format!("k{k}")).await {
                    Ok(v) => assert_eq!(v.as_deref(), Some(format!("v{k}").as_str())),
                    Err(e) => {
                        eprintln!("read failed: {e}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                reads.fetch_add(1, Ordering::Relaxed);
                i += 7;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    for t in 0..16u64 {
        let (client, stop, failures, slowest, successes) = (
            client.clone(),
            stop.clone(),
            write_failures.clone(),
            slowest_failed_write.clone(),
            write_successes.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match client.set(format!("w{t}:{n}"), n).await {
                    Ok(()) => successes.lock().unwrap().push(Instant::now()),
                    Err(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        let took = started.elapsed().as_micros() as u64;
                        slowest.fetch_max(took, Ordering::Relaxed);
                    }
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut events = client.events();
    shard.primary.kill();
    let killed = Instant::now();
    let event = wait_event(&mut events, Duration::from_secs(30), |e| {
        matches!(e, Event::SentinelSwitched { .. })
    })
    .await
    .expect("the client follows the failover");
    let repointed = Instant::now();
    match event {
        Event::SentinelSwitched { shard, primary, .. } => {
            assert_eq!(shard, MASTER);
            assert_eq!(primary, new);
        }
        _ => unreachable!(),
    }
    // Writes work again: keep the load on a little longer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("no reader saw a wrong value");
    }

    let switch = switched
        .lock()
        .unwrap()
        .expect("a sentinel published +switch-master");
    let successes = std::mem::take(&mut *write_successes.lock().unwrap());
    let first_write = successes
        .iter()
        .filter(|t| **t >= switch)
        .min()
        .copied()
        .expect("writes resume after +switch-master");
    let failed_writes = write_failures.load(Ordering::Relaxed);
    println!(
        "sentinel failover: {} reads, {} failed; election {:?} (kill to +switch-master); \
         +switch-master to table {:?}; +switch-master to first successful write {:?}; \
         {} writes failed during the election, slowest failure {} ms",
        reads.load(Ordering::Relaxed),
        read_failures.load(Ordering::Relaxed),
        switch - killed,
        repointed.saturating_duration_since(switch),
        first_write.saturating_duration_since(switch),
        failed_writes,
        slowest_failed_write.load(Ordering::Relaxed) / 1000,
    );
    assert_eq!(
        read_failures.load(Ordering::Relaxed),
        0,
        "no read failed (old primary {old}, new {new})"
    );
    assert!(failed_writes > 0, "writes failed during the election");
    // Failing fast: no failed write waited for the election (seconds) to end.
    assert!(
        slowest_failed_write.load(Ordering::Relaxed) < 1_000_000,
        "a failed write took {} ms",
        slowest_failed_write.load(Ordering::Relaxed) / 1000
    );
    assert!(successes.iter().any(|t| *t > repointed));

    // The new primary has the writes, and the old one, back, is followed as its replica.
    let status = client.status().await;
    assert_eq!(status[0].endpoints[0].endpoint, new);
    let sentinel = status[0].sentinel.as_ref().expect("sentinel status");
    assert_eq!(sentinel.primary.as_deref(), Some(new.as_str()));
    shard.primary.restart().expect("the old primary restarts");
    let followed = eventually(Duration::from_secs(30), || async {
        let status = client.status().await;
        status[0].endpoints.iter().any(|e| {
            e.endpoint == old
                && e.role == Role::Replica
                && e.health == Health::Up
                && e.server_role.as_deref() == Some("slave")
        })
    })
    .await;
    assert!(
        followed,
        "the old primary rejoins as a replica: {:?}",
        client.status().await
    );
    // Reads keep working with it in the table.
    for i in 0..keys {
        let v: Option<String> = client.get(format!("k{i}")).await.unwrap();
        assert_eq!(v, Some(format!("v{i}")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_sentinel_is_skipped_and_a_missed_switch_is_found_by_asking_again() {
    let shard = replicated(1).await;
    let mut sentinels = sentinels(&shard);
    // The first sentinel listed is down: the second answers.
    sentinels[0].kill();
    let client = client(&sentinels).await;
    let status = client.status().await;
    let sentinel = status[0].sentinel.clone().expect("sentinel status");
    assert_eq!(sentinel.master, MASTER);
    assert_eq!(
        sentinel.answered_by.as_deref(),
        Some(format!("127.0.0.1:{}", sentinels[1].port()).as_str())
    );
    let old = format!("127.0.0.1:{}", shard.primary.port());
    assert_eq!(sentinel.primary.as_deref(), Some(old.as_str()));

    // Move the master behind the client's back: no failover, hence no +switch-master. The
    // replica becomes the primary, the old primary its replica, and the sentinels are told
    // to monitor the new one.
    let new_port = shard.replicas[0].port();
    common::promote(&shard.replicas[0]).await;
    let mut primary = common::direct(&shard.primary).await;
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(new_port)
        .query_async(&mut primary)
        .await
        .unwrap();
    let mut events = client.events();
    for s in &sentinels[1..] {
        monitor_instead(s, MASTER, new_port).await;
    }
    let new = format!("127.0.0.1:{new_port}");
    let event = wait_event(&mut events, Duration::from_secs(10), |e| {
        matches!(e, Event::SentinelSwitched { .. })
    })
    .await
    .expect("the moved master is found by asking again");
    assert!(matches!(event, Event::SentinelSwitched { primary, .. } if primary == new));
    client.set("after-move", "x").await.unwrap();
    let mut new_primary = common::direct(&shard.replicas[0]).await;
    let v: Option<String> = redis::cmd("GET")
        .arg("after-move")
        .query_async(&mut new_primary)
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("x"), "the write went to the new primary");
    let status = client.status().await;
    assert_eq!(status[0].endpoints[0].endpoint, new);
    assert_eq!(
        status[0].sentinel.as_ref().and_then(|s| s.primary.clone()),
        Some(new)
    );
}

#[tokio::test]
async fn promote_replica_is_refused_for_a_sentinel_shard() {
    let err = Client::builder()
        .shard_spec(ShardSpec::sentinel(
            MASTER,
            SentinelSpec::new(MASTER, ["redis://127.0.0.1:1"]),
        ))
        .on_primary_down(OnPrimaryDown::PromoteReplica)
        .build()
        .await
        .expect_err("refused");
    assert_eq!(
        err.config(),
        Some(&ConfigError::SentinelPromote {
            shard: MASTER.into()
        }),
        "{err}"
    );
    // The config file says the same.
    let text = r#"
        [routing]
        on_primary_down = "promote_replica"
        [[shards]]
        name = "cache-a"
        sentinel = { master = "cache-a", addrs = ["redis://127.0.0.1:1"] }
    "#;
    let config = shardis::Config::from_toml_str(text).expect("the file itself is valid");
    let err = Client::builder()
        .config(config)
        .build()
        .await
        .expect_err("refused");
    assert!(matches!(
        err.config(),
        Some(ConfigError::SentinelPromote { .. })
    ));
}

#[tokio::test]
async fn a_sentinel_shard_lists_no_primary_and_hides_the_sentinel_password() {
    let text = r#"
        [[shards]]
        name = "cache-a"
        primary = "redis://127.0.0.1:7001"
        sentinel = { master = "cache-a", addrs = ["redis://127.0.0.1:26379"] }
    "#;
    let err = shardis::Config::from_toml_str(text).expect_err("refused");
    assert!(err.to_string().contains("sentinel"), "{err}");
    let spec = ShardSpec::sentinel(
        MASTER,
        SentinelSpec::new(MASTER, ["redis://:s3ntinel-pw@127.0.0.1:26379"]),
    );
    let shown = format!("{spec:?}");
    assert!(!shown.contains("s3ntinel-pw"), "{shown}");
    let topology = shardis::Topology::new(vec![spec]).unwrap();
    let shown = format!("{topology:?}");
    assert!(!shown.contains("s3ntinel-pw"), "{shown}");
    assert!(topology.shards()[0].primary().is_none());
    assert_eq!(topology.shards()[0].sentinel_master(), Some(MASTER));
}

/// Sets the password of `sentinel`'s default user to `to` (authenticated with `from`).
async fn set_sentinel_password(sentinel: &RedisSentinel, from: &str, to: &str) {
    let url = format!("redis://:{from}@127.0.0.1:{}", sentinel.port());
    let mut con = common::connect(&url).await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("resetpass")
        .arg(format!(">{to}"))
        .query_async(&mut con)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_watcher_follows_the_sentinels_password_file() {
    let shard = replicated(0).await;
    let watched = [Monitored::new(MASTER, shard.primary.port())];
    let sentinel =
        RedisSentinel::start_with(&template(), &watched, &["--requirepass", "sentinel-pass-1"])
            .unwrap_or_else(|e| panic!("cannot start redis-sentinel: {e}"));
    let password_file = common::write_file("sentinel-pass-1\n");
    let config = common::write_file(&format!(
        r#"
        [health]
        interval_ms = 100
        [[shards]]
        name = "{MASTER}"
        sentinel = {{ master = "{MASTER}", addrs = ["redis://127.0.0.1:{}"], password_file = "{}", refresh_ms = 100 }}
        "#,
        sentinel.port(),
        password_file.path().display()
    ));
    let client = Client::from_config_file(config.path())
        .await
        .expect("the sentinel answers with the password of the file");
    client.set("k", "v").await.unwrap();
    let _watch = client.watch_config(config.path(), Duration::from_millis(50));
    let sentinel_error = |client: &Client| {
        let client = client.clone();
        async move {
            let status = client.status().await;
            status[0].sentinel.as_ref().and_then(|s| s.error.clone())
        }
    };

    // Rotate the sentinel's password: the periodic question now fails to authenticate...
    set_sentinel_password(&sentinel, "sentinel-pass-1", "sentinel-pass-2").await;
    assert!(
        common::eventually(Duration::from_secs(10), || async {
            sentinel_error(&client).await.is_some()
        })
        .await,
        "the old password stopped working"
    );
    let error = sentinel_error(&client).await.unwrap_or_default();
    assert!(!error.contains("sentinel-pass"), "{error}");
    // ... until the file has the new one: the config file is unchanged, the watcher sees the
    // password file change and reloads.
    std::fs::write(password_file.path(), "sentinel-pass-2\n").unwrap();
    assert!(
        common::eventually(Duration::from_secs(10), || async {
            sentinel_error(&client).await.is_none()
        })
        .await,
        "the sentinel answers again with the new password: {:?}",
        sentinel_error(&client).await
    );
    let status = client.status().await;
    let known = status[0].sentinel.clone().expect("sentinel status");
    assert_eq!(
        known.answered_by,
        Some(format!("127.0.0.1:{}", sentinel.port()))
    );
    assert_eq!(
        client
            .get::<_, Option<String>>("k")
            .await
            .unwrap()
            .as_deref(),
        Some("v")
    );
}
