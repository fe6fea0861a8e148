//! Real faults against real primaries with `--replicaof` replicas: SIGKILL, SIGSTOP, restart,
//! and each `on_primary_down` policy.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use shardis::{Client, ErrorKind, Event, Health, OnPrimaryDown, ReadFrom, Role, ShardSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_primary_fails_no_read_with_primary_then_replica() {
    let shards = [
        replicated(1).await,
        replicated(1).await,
        replicated(1).await,
    ];
    let mut builder = Client::builder()
        .read_from(ReadFrom::PrimaryThenReplica)
        .health(fast_health());
    for (i, s) in shards.iter().enumerate() {
        builder = builder.shard_spec(
            ShardSpec::new(format!("shard-{i}"), s.primary.url()).replica(s.replicas[0].url()),
        );
    }
    let client = builder.build().await.unwrap();
    let keys: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
    for k in &keys {
        client.set(k.as_str(), format!("v-{k}")).await.unwrap();
    }
    for s in &shards {
        wait_replicated(s).await;
    }
    let mut shards = shards;

    let reads = Arc::new(AtomicUsize::new(0));
    let read_failures = Arc::new(Mutex::new(Vec::new()));
    let write_failures = Arc::new(Mutex::new(Vec::new()));
    let writes_ok = Arc::new(AtomicUsize::new(0));
    let stop = Instant::now() + Duration::from_millis(1500);
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let (client, keys) = (client.clone(), keys.clone());
            let (reads, read_failures, write_failures, writes_ok) = (
                reads.clone(),
                read_failures.clone(),
                write_failures.clone(),
                writes_ok.clone(),
            );
            tokio::spawn(async move {
                let mut i = t;
                while Instant::now() < stop {
                    let k = &keys[i % keys.len()];
                    match client.get::<_, Option<String>>(k.as_str()).await {
                        Ok(v) if v.as_deref() == Some(format!("v-{k}").as_str()) => {
                            reads.fetch_add(1, Ordering::Relaxed);
                        }
                        other => read_failures
                            .lock()
                            .unwrap()
                            .push(format!("{k}: {other:?}")),
                    }
                    let w = format!("w:{t}:{i}");
                    match client.set(w.as_str(), 1).await {
                        Ok(()) => {
                            writes_ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => write_failures
                            .lock()
                            .unwrap()
                            .push((client.locate(w.as_str()).to_string(), e)),
                    }
                    i += 64;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    shards[0].primary.kill();
    for t in tasks {
        t.await.unwrap();
    }
    let read_failures = std::mem::take(&mut *read_failures.lock().unwrap());
    assert!(
        read_failures.is_empty(),
        "{} failed reads, e.g. {:?}",
        read_failures.len(),
        &read_failures[..read_failures.len().min(5)]
    );
    assert!(reads.load(Ordering::Relaxed) > 1000);
    // Writes follow fail_fast exactly: only the dead shard's fail, with a failover-class error;
    // every other shard's succeed.
    let write_failures = std::mem::take(&mut *write_failures.lock().unwrap());
    assert!(
        !write_failures.is_empty(),
        "no write reached the dead shard"
    );
    for (shard, e) in write_failures.iter() {
        assert_eq!(shard, "shard-0", "{e}");
        assert!(
            matches!(
                e.kind(),
                ErrorKind::ShardUnavailable | ErrorKind::Connection | ErrorKind::Timeout
            ),
            "{e}"
        );
    }
    assert!(writes_ok.load(Ordering::Relaxed) > 1000);
    // Once it is marked down, a write to it fails fast, naming the shard.
    let k = key_on(&client, "shard-0", "late");
    let err = client.set(k.as_str(), 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ShardUnavailable, "{err}");
    assert_eq!(err.shard(), Some("shard-0"));
}

#[tokio::test]
async fn sigstop_of_a_primary_fails_reads_over_within_the_response_timeout() {
    let s = replicated(1).await;
    let response = Duration::from_millis(300);
    let client = Client::builder()
        .shard_spec(ShardSpec::new("a", s.primary.url()).replica(s.replicas[0].url()))
        .read_from(ReadFrom::PrimaryThenReplica)
        .response_timeout(response)
        .build()
        .await
        .unwrap();
    client.set("k", "v").await.unwrap();
    wait_replicated(&s).await;
    s.primary.pause().unwrap();
    let start = Instant::now();
    let v: Option<String> = client.get("k").await.unwrap();
    let took = start.elapsed();
    assert_eq!(v.as_deref(), Some("v"));
    assert!(
        took < response + Duration::from_secs(2),
        "took {took:?}: a hang, not a failover"
    );
    // Writes cannot fail over: they time out, then fail fast once the primary is down.
    let err = client.set("k", "w").await.unwrap_err();
    assert!(
        err.is_failover_candidate() || err.kind() == ErrorKind::ShardUnavailable,
        "{err}"
    );
    s.primary.resume().unwrap();
}

#[tokio::test]
async fn a_down_endpoint_returns_only_after_its_recovery_probes() {
    let mut server = servers(1).pop().unwrap();
    let mut health = fast_health();
    health.recovery_probes = 3;
    let client = Client::builder()
        .shard("a", server.url())
        .health(health)
        .build()
        .await
        .unwrap();
    let mut events = client.events();
    server.kill();
    let down = wait_event(&mut events, Duration::from_secs(5), |e| {
        matches!(
            e,
            Event::Health {
                to: Health::Down,
                ..
            }
        )
    })
    .await;
    assert!(down.is_some(), "never marked down");
    server.restart().unwrap();
    let up = wait_event(&mut events, Duration::from_secs(5), |e| {
        matches!(e, Event::Health { to: Health::Up, .. })
    })
    .await;
    // It came back on probes, not on a timer: the restarted server had answered at least
    // `recovery_probes` probes (`ROLE`) when the client declared it up.
    let pings: u64 = server
        .info_field("commandstats", "cmdstat_role")
        .ok()
        .flatten()
        .and_then(|v| {
            v.split(',')
                .next()
                .and_then(|c| c.strip_prefix("calls="))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0);
    assert!(
        matches!(
            up,
            Some(Event::Health {
                role: Role::Primary,
                from: Health::Down,
                ..
            })
        ),
        "{up:?}"
    );
    assert!(pings >= 3, "declared up after {pings} probes");
    client.set("k", "v").await.unwrap();
}

#[tokio::test]
async fn transitions_are_reported_once_each() {
    let mut server = servers(1).pop().unwrap();
    let client = Client::builder()
        .shard("a", server.url())
        .health(fast_health())
        .build()
        .await
        .unwrap();
    let mut events = client.events();
    server.kill();
    tokio::time::sleep(Duration::from_millis(600)).await; // a dozen failing probe rounds
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let Event::Health { from, to, .. } = e {
            seen.push((from, to));
        }
    }
    assert_eq!(
        seen,
        [
            (Health::Up, Health::Suspect),
            (Health::Suspect, Health::Down)
        ]
    );
}

#[tokio::test]
async fn eject_remaps_while_down_and_rejoins_flushed_after_recovery() {
    let mut all = servers(3);
    let mut builder = Client::builder()
        .on_primary_down(OnPrimaryDown::Eject)
        .flush_on_rejoin(true)
        .health(fast_health());
    for (i, s) in all.iter().enumerate() {
        builder = builder.shard(format!("shard-{i}"), s.url());
    }
    let client = builder.build().await.unwrap();
    let mut events = client.events();
    let k = key_on(&client, "shard-0", "e");
    client.set(k.as_str(), "original").await.unwrap();
    let version = client.topology_version();

    all[0].kill();
    let ejected = wait_event(&mut events, Duration::from_secs(5), |e| {
        matches!(e, Event::Ejected { .. })
    })
    .await;
    assert!(
        matches!(ejected, Some(Event::Ejected { ref shard }) if shard == "shard-0"),
        "{ejected:?}"
    );
    assert!(client.topology_version() > version);
    let next_owner = client.locate(k.as_str()).to_string();
    assert_ne!(next_owner, "shard-0");
    client.set(k.as_str(), "elsewhere").await.unwrap();
    assert_eq!(
        client
            .get::<_, Option<String>>(k.as_str())
            .await
            .unwrap()
            .as_deref(),
        Some("elsewhere")
    );
    // Keys of the other shards never moved.
    for i in 0..500 {
        let other = format!("o{i}");
        let owner = client.locate(other.as_str());
        assert_ne!(owner, "shard-0");
    }

    all[0].restart().unwrap();
    // A stale copy lands on the restarted server before it rejoins; flush_on_rejoin must clear it.
    let mut direct0 = direct(&all[0]).await;
    let _: () = redis::cmd("SET")
        .arg(&k)
        .arg("stale")
        .query_async(&mut direct0)
        .await
        .unwrap();
    let rejoined = wait_event(&mut events, Duration::from_secs(5), |e| {
        matches!(e, Event::Rejoined { .. })
    })
    .await;
    assert!(rejoined.is_some(), "never rejoined");
    assert_eq!(client.locate(k.as_str()), "shard-0");
    assert_eq!(
        client.get::<_, Option<String>>(k.as_str()).await.unwrap(),
        None,
        "stale value served after rejoin"
    );
}

#[tokio::test]
async fn promote_replica_promotes_the_most_advanced_replica_and_writes_go_there() {
    let mut s = replicated(2).await;
    let client = Client::builder()
        .shard_spec(
            ShardSpec::new("a", s.primary.url())
                .replica(s.replicas[0].url())
                .replica(s.replicas[1].url()),
        )
        .on_primary_down(OnPrimaryDown::PromoteReplica)
        .health(fast_health())
        .build()
        .await
        .unwrap();
    let mut events = client.events();
    for i in 0..100 {
        client.set(format!("k{i}").as_str(), i).await.unwrap();
    }
    wait_replicated(&s).await;
    s.primary.kill();
    let promoted = wait_event(&mut events, Duration::from_secs(5), |e| {
        matches!(e, Event::Promoted { .. })
    })
    .await;
    let Some(Event::Promoted { endpoint, .. }) = promoted else {
        panic!("no promotion: {promoted:?}");
    };
    let (winner, other) = if endpoint == format!("127.0.0.1:{}", s.replicas[0].port()) {
        (&s.replicas[0], &s.replicas[1])
    } else {
        (&s.replicas[1], &s.replicas[0])
    };
    assert_eq!(
        winner
            .info_field("replication", "role")
            .ok()
            .flatten()
            .as_deref(),
        Some("master")
    );
    let repointed = eventually(Duration::from_secs(5), || async {
        other
            .info_field("replication", "master_port")
            .ok()
            .flatten()
            == Some(winner.port().to_string())
    })
    .await;
    assert!(
        repointed,
        "the other replica does not follow the new primary"
    );
    // Writes succeed on the new primary, and the data written before the failure is there.
    client.set("after", "promotion").await.unwrap();
    let mut conn = direct(winner).await;
    let v: Option<String> = redis::cmd("GET")
        .arg("after")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("promotion"));
    assert_eq!(client.get::<_, Option<i64>>("k42").await.unwrap(), Some(42));
    let status = client.status().await;
    assert_eq!(status[0].endpoints[0].endpoint, endpoint);
    assert_eq!(status[0].endpoints[0].role, Role::Primary);
    // The old primary comes back as a replica of the new one, not as a second primary.
    s.primary.restart().unwrap();
    let follows = eventually(Duration::from_secs(10), || async {
        s.primary
            .info_field("replication", "master_port")
            .ok()
            .flatten()
            == Some(winner.port().to_string())
    })
    .await;
    assert!(follows, "the returning old primary was not made a replica");
}

#[tokio::test]
async fn status_reports_roles_health_and_offsets() {
    let mut s = replicated(1).await;
    let client = Client::builder()
        .shard_spec(ShardSpec::new("a", s.primary.url()).replica(s.replicas[0].url()))
        .health(fast_health())
        .build()
        .await
        .unwrap();
    client.set("k", "v").await.unwrap();
    let status = client.status().await;
    let e = &status[0].endpoints;
    assert_eq!((e[0].role, e[1].role), (Role::Primary, Role::Replica));
    assert_eq!(e[0].server_role.as_deref(), Some("master"));
    assert_eq!(e[1].server_role.as_deref(), Some("slave"));
    assert!(e[0].replication_offset.unwrap() > 0);
    assert!(status[0].placed);
    s.replicas[0].kill();
    let down = eventually(Duration::from_secs(5), || async {
        let st = client.status().await;
        st[0].endpoints[1].health == Health::Down && st[0].endpoints[1].error.is_some()
    })
    .await;
    assert!(down, "a killed replica is not reported down");
}

#[tokio::test]
async fn with_every_shard_ejected_requests_fail_typed_and_locate_still_answers() {
    let mut all = servers(2);
    let client = builder(&all)
        .on_primary_down(OnPrimaryDown::Eject)
        .health(fast_health())
        .build()
        .await
        .unwrap();
    let mut events = client.events();
    let before: Vec<String> = (0..200)
        .map(|i| client.locate(format!("k{i}").as_str()).to_string())
        .collect();
    all[0].kill();
    all[1].kill();
    for _ in 0..2 {
        let e = wait_event(&mut events, Duration::from_secs(5), |e| {
            matches!(e, Event::Ejected { .. })
        })
        .await;
        assert!(e.is_some(), "a shard was not ejected");
    }
    let err = client.get::<_, Option<String>>("k1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ShardUnavailable, "{err}");
    let err = client
        .mget::<_, Option<String>>(&["k1", "k2"])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ShardUnavailable, "{err}");
    let after: Vec<String> = (0..200)
        .map(|i| client.locate(format!("k{i}").as_str()).to_string())
        .collect();
    assert_eq!(before, after, "locate answers as if no shard were ejected");
}
