//! Defects found by an adversarial sweep, each reproduced on real processes: probes stuck behind
//! user traffic, connections that went silent, fail-fast loops that starve the runtime, roles
//! that do not match the config, transient server errors, and writes of unknown outcome.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use shardis::{Client, ErrorKind, Event, Health, ReadFrom, ShardSpec};
use shardis_testkit::{RedisServer, TcpProxy};

/// Collects every health transition of `events` until `stop` is set.
fn watch_health(
    mut events: tokio::sync::broadcast::Receiver<Event>,
) -> tokio::task::JoinHandle<Vec<(String, Health)>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            match events.recv().await {
                Ok(Event::Health { endpoint, to, .. }) => seen.push((endpoint, to)),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return seen,
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_slow_by_its_size_does_not_mark_a_healthy_endpoint_down() {
    let servers = servers(1);
    let mut health = fast_health();
    // Patient probes: what is tested is that the timed-out request itself is not counted.
    health.probe_timeout = Duration::from_secs(2);
    let client = builder(&servers)
        .health(health)
        .response_timeout(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let seen = watch_health(client.events());
    // A valid 64 MiB SET: longer to send than the 20 ms response timeout.
    let big = vec![b'x'; 64 << 20];
    let mut timeouts = 0;
    for _ in 0..3 {
        match client.set("big", &big[..]).await {
            Err(e) if e.is_timeout() => timeouts += 1,
            other => other.unwrap(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        timeouts > 0,
        "the big request never timed out: the test proves nothing"
    );
    // Small requests are served, on a fresh connection.
    let served = eventually(Duration::from_secs(5), || async {
        client.set("small", "v").await.is_ok()
            && client
                .get::<_, Option<String>>("small")
                .await
                .ok()
                .flatten()
                == Some("v".into())
    })
    .await;
    assert!(served, "small requests are not served after the big one");
    drop(client);
    let transitions = seen.await.unwrap();
    assert!(
        transitions.is_empty(),
        "a healthy endpoint changed health: {transitions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_went_silent_is_retired_and_replaced() {
    let server = RedisServer::start().unwrap();
    let proxy = TcpProxy::start(server.port()).unwrap();
    let client = fast_client("s", proxy.url(), Duration::from_millis(100)).await;
    client.set("k", "v").await.unwrap();
    // Every open connection (requests and probes) goes silent; the server is fine.
    proxy.freeze();
    let err = client.get::<_, Option<String>>("k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    // The next requests get a fresh connection and succeed; the endpoint is up again soon.
    let recovered = eventually(Duration::from_secs(5), || async {
        client.get::<_, Option<String>>("k").await.ok().flatten() == Some("v".into())
            && client.status().await[0].endpoints[0].health == Health::Up
    })
    .await;
    assert!(recovered, "the silent connection was never replaced");
}

#[test]
fn fail_fast_requests_yield_so_the_monitor_sees_recovery() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut server = RedisServer::start().unwrap();
    let mut health = fast_health();
    // Generous for a debug build on a loaded 2-core machine: what is tested is that the
    // monitor runs at all.
    health.probe_timeout = Duration::from_millis(500);
    let client = rt.block_on(async {
        Client::builder()
            .shard("s", server.url())
            .health(health)
            .build()
            .await
            .unwrap()
    });
    server.kill();
    rt.block_on(async {
        let down = eventually(Duration::from_secs(5), || async {
            client.status().await[0].endpoints[0].health == Health::Down
        })
        .await;
        assert!(down, "never marked down");
    });
    // 256 tight loops of requests that fail at once, on a 2-worker runtime.
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let recovered = Arc::new(AtomicBool::new(false));
    for _ in 0..256 {
        let (client, stop, failed, recovered) = (
            client.clone(),
            stop.clone(),
            failed.clone(),
            recovered.clone(),
        );
        rt.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.get::<_, Option<String>>("k").await {
                    Ok(_) => recovered.store(true, Ordering::Relaxed),
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    std::thread::sleep(Duration::from_millis(300));
    server.restart().unwrap();
    // Watched from outside the runtime: if the loops starve it, nothing inside can notice.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !recovered.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    assert!(
        failed.load(Ordering::Relaxed) > 1000,
        "the loops did not run hot: the test proves nothing"
    );
    assert!(
        recovered.load(Ordering::Relaxed),
        "the client never noticed the restarted server"
    );
    rt.shutdown_timeout(Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_does_not_replicate_the_primary_is_never_read() {
    let primary = RedisServer::start().unwrap();
    let impostor = RedisServer::start().unwrap(); // a standalone server, not a replica
    direct(&impostor)
        .await
        .send_packed_command(redis::cmd("SET").arg("k").arg("stale"))
        .await
        .unwrap();
    let client = Client::builder()
        .shard_spec(ShardSpec::new("s", primary.url()).replica(impostor.url()))
        .read_from(ReadFrom::PreferReplica)
        .health(fast_health())
        .build()
        .await
        .unwrap();
    let mut events = client.events();
    client.set("k", "fresh").await.unwrap();
    for _ in 0..500 {
        let v: Option<String> = client.get("k").await.unwrap();
        assert_eq!(v.as_deref(), Some("fresh"));
    }
    let status = client.status().await;
    assert_eq!(status[0].endpoints[1].health, Health::RoleMismatch);
    // The event is reported once, when found; a late subscriber sees it on the next change.
    drop(client);
    while let Ok(e) = events.try_recv() {
        assert!(
            !matches!(e, Event::RoleMismatch { .. }),
            "reported twice: {e:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_is_a_replica_fails_writes_fast_and_says_why() {
    let real = RedisServer::start().unwrap();
    let port = real.port().to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]).unwrap();
    let (client, mut events) = {
        let builder = Client::builder()
            .shard("s", replica.url())
            .health(fast_health());
        let client = builder.build().await.unwrap();
        let events = client.events();
        (client, events)
    };
    let status = client.status().await;
    assert_eq!(status[0].endpoints[0].health, Health::RoleMismatch);
    for _ in 0..50 {
        let err = client.set("k", "v").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ShardUnavailable, "{err}");
    }
    // Fixed by an operator: the endpoint comes back after its recovery probes.
    promote(&replica).await;
    let back = wait_event(&mut events, Duration::from_secs(5), |e| {
        matches!(e, Event::Health { to: Health::Up, .. })
    })
    .await;
    assert!(back.is_some(), "never came back in the right role");
    client.set("k", "v").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatch_event_names_expected_and_found_roles() {
    let primary = RedisServer::start().unwrap();
    let other = RedisServer::start().unwrap();
    let port = other.port().to_string();
    // A replica, but of another server.
    let wrong = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]).unwrap();
    let client = Client::builder()
        .shard_spec(ShardSpec::new("s", primary.url()).replica(wrong.url()))
        .health(fast_health())
        .lazy_connect(true)
        .build()
        .await
        .unwrap();
    let mut events = client.events();
    let found = wait_event(&mut events, Duration::from_secs(5), |e| {
        matches!(e, Event::RoleMismatch { .. })
    })
    .await;
    match found {
        Some(Event::RoleMismatch {
            expected, found, ..
        }) => {
            assert_eq!(expected, shardis::Role::Replica);
            assert_eq!(found, format!("replica of 127.0.0.1:{port}"));
        }
        other => panic!("no mismatch event: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_replica_sends_the_read_to_the_primary() {
    let primary = RedisServer::start().unwrap();
    let port = primary.port().to_string();
    let replica = RedisServer::start_with(&[
        "--replicaof",
        "127.0.0.1",
        &port,
        "--busy-reply-threshold",
        "20",
    ])
    .unwrap();
    let shard = Replicated {
        primary,
        replicas: vec![replica],
    };
    // Probes far apart: only the read path's own fallback can save these reads.
    let mut health = fast_health();
    health.interval = Duration::from_secs(30);
    let client = Client::builder()
        .shard_spec(ShardSpec::new("s", shard.primary.url()).replica(shard.replicas[0].url()))
        .read_from(ReadFrom::PreferReplica)
        .health(health)
        .build()
        .await
        .unwrap();
    client.set("k", "v").await.unwrap();
    wait_replicated(&shard).await;
    // A read-only script that never ends keeps the replica answering -BUSY.
    let mut blocker = direct(&shard.replicas[0]).await;
    let script = tokio::spawn(async move {
        let _ = redis::cmd("EVAL")
            .arg("local i = 0 while true do i = i + 1 end")
            .arg(0)
            .query_async::<redis::Value>(&mut blocker)
            .await;
    });
    let busy = eventually(Duration::from_secs(5), || async {
        let mut c = direct(&shard.replicas[0]).await;
        matches!(
            redis::cmd("GET").arg("k").query_async::<redis::Value>(&mut c).await,
            Err(e) if e.code() == Some("BUSY")
        )
    })
    .await;
    assert!(busy, "the replica never got busy: the test proves nothing");
    for _ in 0..100 {
        let v: Option<String> = client.get("k").await.unwrap();
        assert_eq!(v.as_deref(), Some("v"));
    }
    let mut killer = direct(&shard.replicas[0]).await;
    let _: redis::RedisResult<()> = redis::cmd("SCRIPT")
        .arg("KILL")
        .query_async(&mut killer)
        .await;
    let _ = script.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_write_has_an_unknown_outcome_and_may_still_apply() {
    let mut servers = servers(1);
    let client = builder(&servers)
        .health(fast_health())
        .response_timeout(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    client.set("warm", "up").await.unwrap();
    servers[0].pause().unwrap();
    let err = client.set("k", "written-while-hung").await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(err.is_outcome_unknown(), "{err:?}");
    servers[0].resume().unwrap();
    // The write was sent before the timeout: the resumed server applies it.
    let applied = eventually(Duration::from_secs(5), || async {
        client.get::<_, Option<String>>("k").await.ok().flatten()
            == Some("written-while-hung".into())
    })
    .await;
    assert!(applied, "the timed-out write was not applied after all");
    // A write that could not be sent at all has a known outcome: it did not run.
    servers[0].kill();
    let err = eventually_err(&client).await;
    assert!(!err.is_outcome_unknown(), "{err:?}");
}

/// The first error of a `set` on a killed server (refused, or shard unavailable).
async fn eventually_err(client: &Client) -> shardis::Error {
    for _ in 0..100 {
        if let Err(e) = client.set("k2", "v").await {
            if !e.is_outcome_unknown() || e.kind() == ErrorKind::ShardUnavailable {
                return e;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client.set("k2", "v").await.unwrap_err()
}
