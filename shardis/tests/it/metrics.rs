//! Metrics after real requests, real faults and real failovers, read back from a recorder.
//!
//! Each test installs its own recorder for its own thread (`#[tokio::test]` runs the client,
//! its monitor and every spawned task on the test's thread), so tests running side by side do
//! not see each other's numbers. The recorder is metrics-util's registry with atomic storage,
//! read without draining (metrics-util's `DebuggingRecorder` resets counters and gauges on
//! every snapshot, which polling a gauge cannot live with).
#![cfg(feature = "metrics")]

use crate::common;
use crate::support;

use std::time::Duration;

use common::*;
use shardis::metrics::*;
use shardis::{Client, ErrorKind, OnPrimaryDown, ReadFrom, ShardSpec};
use shardis_testkit::RedisServer;
use support::Recorded;

/// The labels of `shardis_requests_total`.
fn req<'a>(
    shard: &'a str,
    role: &'a str,
    cmd: &'a str,
    outcome: &'a str,
) -> [(&'a str, &'a str); 4] {
    [
        ("shard", shard),
        ("role", role),
        ("command", cmd),
        ("outcome", outcome),
    ]
}

/// Polls `check` on the recorder until it holds or 10 s pass.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let ok = eventually(Duration::from_secs(10), || {
        let v = check();
        async move { v }
    })
    .await;
    assert!(ok, "timed out waiting for: {what}");
}

#[tokio::test]
async fn requests_are_counted_by_shard_role_command_and_outcome() {
    let rec = Recorded::new();
    let _guard = metrics::set_default_local_recorder(&rec);
    let servers = servers(2);
    let client = client(&servers).await;
    let k0 = key_on(&client, "shard-0", "k");
    let k1 = key_on(&client, "shard-1", "k");

    client.set(k0.as_str(), "v").await.unwrap();
    client.set(k0.as_str(), "v").await.unwrap();
    let _: Option<String> = client.get(k1.as_str()).await.unwrap();
    let _: Vec<Option<String>> = client.mget(&[k0.as_str(), k1.as_str()]).await.unwrap();
    let mut cmd = redis::cmd("HSET");
    cmd.arg(&k1).arg("f").arg("1");
    let _: i64 = client.query(k1.as_str(), &cmd).await.unwrap();
    // INCRBY on a string that is not a number: an error reply.
    let e = client.incr(k0.as_str(), 1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server);

    let c = |labels: &[(&str, &str)]| rec.counter(REQUESTS_TOTAL, labels);
    assert_eq!(c(&req("shard-0", "primary", "SET", "ok")), 2);
    assert_eq!(c(&req("shard-1", "primary", "GET", "ok")), 1);
    // One MGET per shard part.
    assert_eq!(c(&req("shard-0", "primary", "MGET", "ok")), 1);
    assert_eq!(c(&req("shard-1", "primary", "MGET", "ok")), 1);
    // `query` is counted under one name, whatever the command.
    assert_eq!(c(&req("shard-1", "primary", "QUERY", "ok")), 1);
    assert_eq!(c(&req("shard-0", "primary", "INCRBY", "error")), 1);
    assert_eq!(c(&[("outcome", "timeout")]), 0);
    assert_eq!(c(&[]), 7);
    // Every attempt is timed, per shard and role.
    let timed = |shard| {
        rec.observations(
            REQUEST_DURATION_SECONDS,
            &[("shard", shard), ("role", "primary")],
        )
    };
    assert_eq!((timed("shard-0"), timed("shard-1")), (4, 3));
    assert_eq!(rec.counter(FAILOVERS_TOTAL, &[]), 0);

    // Gauges: both endpoints up with their connection, the first table in force.
    for s in &servers {
        let endpoint = format!("127.0.0.1:{}", s.port());
        let up = [("endpoint", endpoint.as_str()), ("role", "primary")];
        assert_eq!(rec.gauge(ENDPOINT_UP, &up), Some(1.0));
        until("a pool connection", || {
            rec.gauge(POOL_CONNECTIONS, &[("endpoint", endpoint.as_str())]) == Some(1.0)
        })
        .await;
    }
    assert_eq!(rec.gauge(ROUTING_TABLE_VERSION, &[]), Some(1.0));
}

#[tokio::test]
async fn a_hung_server_counts_a_timeout_then_unavailable_and_goes_to_zero() {
    let rec = Recorded::new();
    let _guard = metrics::set_default_local_recorder(&rec);
    let server = RedisServer::start().unwrap();
    let client = fast_client("hung", server.url(), Duration::from_millis(300)).await;
    client.set("k", "v").await.unwrap();
    let endpoint = format!("127.0.0.1:{}", server.port());
    let up = [
        ("shard", "hung"),
        ("endpoint", endpoint.as_str()),
        ("role", "primary"),
    ];
    assert_eq!(rec.gauge(ENDPOINT_UP, &up), Some(1.0));

    server.pause().unwrap();
    let e = client.get::<_, Option<String>>("k").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(
        rec.counter(REQUESTS_TOTAL, &req("hung", "primary", "GET", "timeout")),
        1
    );
    until("endpoint_up 0", || rec.gauge(ENDPOINT_UP, &up) == Some(0.0)).await;
    let e = client.get::<_, Option<String>>("k").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ShardUnavailable, "{e}");
    let e = client.set("k", "w").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ShardUnavailable, "{e}");
    let unavailable =
        |cmd| rec.counter(REQUESTS_TOTAL, &req("hung", "primary", cmd, "unavailable"));
    assert_eq!((unavailable("GET"), unavailable("SET")), (1, 1));
    // Refused requests are not timed: the SET and the GET that timed out are.
    assert_eq!(
        rec.observations(REQUEST_DURATION_SECONDS, &[("shard", "hung")]),
        2
    );

    server.resume().unwrap();
    until("endpoint_up 1", || rec.gauge(ENDPOINT_UP, &up) == Some(1.0)).await;
}

#[tokio::test]
async fn a_killed_primary_counts_replica_reads_and_endpoint_up_returns_after_restart() {
    let rec = Recorded::new();
    let _guard = metrics::set_default_local_recorder(&rec);
    let mut s = replicated(1).await;
    let client = Client::builder()
        .shard_spec(ShardSpec::new("a", s.primary.url()).replica(s.replicas[0].url()))
        .read_from(ReadFrom::PrimaryThenReplica)
        .health(fast_health())
        .build()
        .await
        .unwrap();
    client.set("k", "v").await.unwrap();
    wait_replicated(&s).await;
    let primary = [("endpoint", format!("127.0.0.1:{}", s.primary.port()))];
    let primary = [
        ("shard", "a"),
        ("role", "primary"),
        (primary[0].0, primary[0].1.as_str()),
    ];
    let replica = format!("127.0.0.1:{}", s.replicas[0].port());
    let replica = [
        ("shard", "a"),
        ("role", "replica"),
        ("endpoint", replica.as_str()),
    ];
    assert_eq!(rec.gauge(ENDPOINT_UP, &primary), Some(1.0));
    assert_eq!(rec.gauge(ENDPOINT_UP, &replica), Some(1.0));

    s.primary.kill();
    for _ in 0..5 {
        let v: Option<String> = client.get("k").await.unwrap();
        assert_eq!(v.as_deref(), Some("v"));
    }
    let replica_reads = rec.counter(FAILOVERS_TOTAL, &[("shard", "a"), ("kind", "replica_read")]);
    assert_eq!(
        replica_reads, 5,
        "every read served by the replica is a failover read"
    );
    assert_eq!(
        rec.counter(REQUESTS_TOTAL, &req("a", "replica", "GET", "ok")),
        5
    );
    until("the killed primary at 0", || {
        rec.gauge(ENDPOINT_UP, &primary) == Some(0.0)
    })
    .await;
    assert_eq!(rec.gauge(ENDPOINT_UP, &replica), Some(1.0));
    let e = client.set("k", "w").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ShardUnavailable);
    assert_eq!(
        rec.counter(REQUESTS_TOTAL, &req("a", "primary", "SET", "unavailable")),
        1
    );

    s.primary.restart().unwrap();
    until("the restarted primary at 1", || {
        rec.gauge(ENDPOINT_UP, &primary) == Some(1.0)
    })
    .await;
    let v: Option<String> = client.get("k").await.unwrap();
    assert_eq!(v, None, "the restarted primary is empty and serves again");
    assert_eq!(rec.counter(FAILOVERS_TOTAL, &[("kind", "replica_read")]), 5);
}

#[tokio::test]
async fn ejection_rejoin_and_promotion_are_counted_and_the_version_follows() {
    let rec = Recorded::new();
    let _guard = metrics::set_default_local_recorder(&rec);
    let mut all = servers(2);
    let client = Client::builder()
        .shard("e0", all[0].url())
        .shard("e1", all[1].url())
        .on_primary_down(OnPrimaryDown::Eject)
        .health(fast_health())
        .build()
        .await
        .unwrap();
    let kind = |shard, kind| rec.counter(FAILOVERS_TOTAL, &[("shard", shard), ("kind", kind)]);
    let version = || Some(client.topology_version() as f64);
    all[0].kill();
    until("an ejection", || kind("e0", "eject") == 1).await;
    assert!(client.topology_version() >= 2);
    assert_eq!(rec.gauge(ROUTING_TABLE_VERSION, &[]), version());
    all[0].restart().unwrap();
    until("a rejoin", || kind("e0", "rejoin") == 1).await;
    assert_eq!(rec.gauge(ROUTING_TABLE_VERSION, &[]), version());
    drop(client);

    let mut s = replicated(1).await;
    let client = Client::builder()
        .shard_spec(ShardSpec::new("p", s.primary.url()).replica(s.replicas[0].url()))
        .on_primary_down(OnPrimaryDown::PromoteReplica)
        .health(fast_health())
        .build()
        .await
        .unwrap();
    s.primary.kill();
    until("a promotion", || kind("p", "promote") == 1).await;
    let written = eventually(Duration::from_secs(5), || async {
        client.set("after", "promotion").await.is_ok()
    })
    .await;
    assert!(written, "no write after the promotion");
    // The promoted replica is now the primary: its requests carry that role.
    let promoted = format!("127.0.0.1:{}", s.replicas[0].port());
    let labels = [
        ("shard", "p"),
        ("endpoint", promoted.as_str()),
        ("role", "primary"),
    ];
    until("the promoted endpoint up as primary", || {
        rec.gauge(ENDPOINT_UP, &labels) == Some(1.0)
    })
    .await;
    assert_eq!(
        rec.counter(REQUESTS_TOTAL, &req("p", "primary", "SET", "ok")),
        1
    );
    assert_eq!(rec.counter(FAILOVERS_TOTAL, &[("kind", "replica_read")]), 0);
}

#[tokio::test]
async fn routing_table_version_and_pool_gauges_follow_update_topology() {
    let rec = Recorded::new();
    let _guard = metrics::set_default_local_recorder(&rec);
    let all = servers(3);
    let client = client(&all[..2]).await;
    assert_eq!(rec.gauge(ROUTING_TABLE_VERSION, &[]), Some(1.0));
    let topology = shardis::Topology::new(
        all.iter()
            .enumerate()
            .map(|(i, s)| ShardSpec::new(shard_name(i), s.url()))
            .collect(),
    )
    .unwrap();
    let version = client.update_topology(topology).await.unwrap();
    assert_eq!(version, 2);
    assert_eq!(rec.gauge(ROUTING_TABLE_VERSION, &[]), Some(2.0));
    let added = format!("127.0.0.1:{}", all[2].port());
    until("the new endpoint's gauges", || {
        rec.gauge(
            POOL_CONNECTIONS,
            &[("shard", "shard-2"), ("endpoint", added.as_str())],
        ) == Some(1.0)
            && rec.gauge(ENDPOINT_UP, &[("shard", "shard-2")]) == Some(1.0)
    })
    .await;
}

#[tokio::test]
async fn no_label_carries_a_password_and_every_metric_is_described() {
    let rec = Recorded::new();
    let _guard = metrics::set_default_local_recorder(&rec);
    const PASSWORD: &str = "s3cr3t-PW";
    let server = RedisServer::start_with(&["--requirepass", PASSWORD]).unwrap();
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{}", server.port());
    let client = Client::builder()
        .shard("secret", url)
        .health(patient_health())
        .build()
        .await
        .unwrap();
    client.set("k", "v").await.unwrap();
    let _: Option<String> = client.get("k").await.unwrap();
    let _ = client.incr("k", 1).await.unwrap_err();
    let _ = client.status().await;
    let endpoint = format!("127.0.0.1:{}", server.port());
    until("a probe round", || {
        rec.gauge(POOL_CONNECTIONS, &[("endpoint", endpoint.as_str())])
            .is_some()
    })
    .await;

    let labels = rec.rendered_labels();
    assert!(labels.len() >= 10, "{labels:?}");
    for l in &labels {
        assert!(!l.contains(PASSWORD), "a label carries the password: {l}");
        assert!(!l.contains("redis://"), "a label carries a URL: {l}");
    }
    assert!(labels.contains(&format!("{ENDPOINT_UP}{{endpoint={endpoint}}}")));

    let described = rec.descriptions();
    for name in [
        REQUESTS_TOTAL,
        REQUEST_DURATION_SECONDS,
        ENDPOINT_UP,
        FAILOVERS_TOTAL,
        POOL_CONNECTIONS,
        ROUTING_TABLE_VERSION,
        COALESCED_BATCHES_TOTAL,
        COALESCED_READS_TOTAL,
        HEDGED_READS_TOTAL,
        CACHE_REQUESTS_TOTAL,
        CACHE_LOADS_TOTAL,
        CACHE_LOAD_DURATION_SECONDS,
        CACHE_WAITS_TOTAL,
        CACHE_EARLY_REFRESHES_TOTAL,
    ] {
        assert!(name.starts_with("shardis_"), "{name}");
        let d = described
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not described"));
        assert!(!d.is_empty());
    }
}

#[tokio::test]
async fn merged_reads_and_hedges_are_counted() {
    let rec = Recorded::new();
    let _guard = metrics::set_default_local_recorder(&rec);
    let shard = replicated(1).await;
    let mut health = patient_health();
    health.interval = Duration::from_secs(3600);
    let client = Client::builder()
        .shard_spec(ShardSpec::new("s", shard.primary.url()).replica(shard.replicas[0].url()))
        .read_from(ReadFrom::PrimaryThenReplica)
        .coalesce_reads(true)
        .hedge_after_ms(5)
        .response_timeout(Duration::from_secs(30))
        .health(health)
        .build()
        .await
        .unwrap();
    client.set("k", "v").await.unwrap();
    wait_replicated(&shard).await;
    // Three reads at once: the first goes alone, the other two ride together behind it.
    let reads =
        futures_util::future::join_all((0..3).map(|_| client.get::<_, Option<String>>("k")));
    for r in reads.await {
        assert_eq!(r.unwrap().as_deref(), Some("v"));
    }
    assert!(rec.counter(COALESCED_BATCHES_TOTAL, &[("shard", "s")]) >= 1);
    assert!(rec.counter(COALESCED_READS_TOTAL, &[("shard", "s")]) >= 2);
    let won = || rec.counter(HEDGED_READS_TOTAL, &[("shard", "s"), ("result", "won")]);
    let before = won();
    shard.primary.pause().unwrap();
    let v: Option<String> = client.get("k").await.unwrap();
    assert_eq!(v.as_deref(), Some("v"));
    assert_eq!(won(), before + 1);
    // A hedge win is not a replica_read failover.
    assert_eq!(rec.counter(FAILOVERS_TOTAL, &[("kind", "replica_read")]), 0);
    shard.primary.resume().unwrap();
}

#[path = "metrics/prometheus.rs"]
#[cfg(feature = "prometheus")]
mod prometheus;

#[cfg(feature = "sentinel")]
#[tokio::test]
async fn a_sentinel_switch_is_counted() {
    use shardis::{SentinelSpec, ShardSpec};
    use shardis_testkit::{Monitored, RedisSentinel};
    let rec = Recorded::new();
    let _guard = metrics::set_default_local_recorder(&rec);
    let shard = replicated(1).await;
    let sentinel = RedisSentinel::start(
        &crate::sentinel::template(),
        &[Monitored::new("m", shard.primary.port())],
    )
    .unwrap_or_else(|e| panic!("cannot start redis-sentinel: {e}"));
    let client = Client::builder()
        .shard_spec(ShardSpec::sentinel(
            "m",
            SentinelSpec::new("m", [sentinel.url()]).refresh(Duration::from_millis(100)),
        ))
        .health(fast_health())
        .build()
        .await
        .expect("client over a Sentinel shard");
    client.set("k", "v").await.unwrap();
    let switches = || {
        rec.counter(
            FAILOVERS_TOTAL,
            &[("shard", "m"), ("kind", "sentinel_switch")],
        )
    };
    assert_eq!(switches(), 0);

    // The master moves to the replica and the sentinel is told so.
    let new_port = shard.replicas[0].port();
    promote(&shard.replicas[0]).await;
    crate::sentinel::monitor_instead(&sentinel, "m", new_port).await;
    until("the switch is counted", || switches() == 1).await;
    // Only the master moving counts: later answers naming the same primary add nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(switches(), 1);
}
