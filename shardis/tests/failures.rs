//! Unreachable, dead and hung endpoints give typed errors within their timeouts, never a hang,
//! and a client recovers when a server comes back.

mod common;

use std::time::{Duration, Instant};

use common::*;
use shardis::{Client, ErrorKind};

const CONNECT: Duration = Duration::from_millis(300);
/// Generous slack for a loaded CI machine; a hang would exceed it by far.
const SLACK: Duration = Duration::from_secs(2);

#[tokio::test]
async fn unreachable_shard_fails_build_with_a_connection_error_in_time() {
    let servers = servers(1);
    let dead_port = shardis_testkit::free_port().unwrap();
    let start = Instant::now();
    let err = builder(&servers)
        .shard("dead", format!("redis://127.0.0.1:{dead_port}"))
        .connect_timeout(CONNECT)
        .build()
        .await
        .unwrap_err();
    assert!(
        start.elapsed() < CONNECT + SLACK,
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    assert_eq!(err.shard(), Some("dead"));
    assert_eq!(
        err.endpoint(),
        Some(format!("127.0.0.1:{dead_port}").as_str())
    );
}

#[tokio::test]
async fn unreachable_shard_fails_only_its_own_requests_when_lazy() {
    let servers = servers(1);
    let dead_port = shardis_testkit::free_port().unwrap();
    let client = builder(&servers)
        .shard("dead", format!("redis://127.0.0.1:{dead_port}"))
        .connect_timeout(CONNECT)
        .lazy_connect(true)
        .build()
        .await
        .unwrap();
    let (dead_key, live_key) = (
        key_on(&client, "dead", "k"),
        key_on(&client, "shard-0", "k"),
    );
    let start = Instant::now();
    let err = client
        .get::<_, Option<String>>(dead_key.as_str())
        .await
        .unwrap_err();
    assert!(
        start.elapsed() < CONNECT + SLACK,
        "took {:?}",
        start.elapsed()
    );
    assert!(err.is_failover_candidate(), "{err}");
    assert_eq!(err.shard(), Some("dead"));
    client.set(live_key.as_str(), "fine").await.unwrap();
    // A multi-key call touching the dead shard fails, naming it.
    let err = client
        .mget::<_, Option<String>>(&[live_key.as_str(), dead_key.as_str()])
        .await
        .unwrap_err();
    assert_eq!(err.shard(), Some("dead"));
}

#[tokio::test]
async fn hung_server_times_out_instead_of_hanging() {
    let servers = servers(1);
    let client = builder(&servers)
        .connect_timeout(CONNECT)
        .response_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    client.set("k", "v").await.unwrap();
    servers[0].pause().unwrap();
    let start = Instant::now();
    let err = client.get::<_, Option<String>>("k").await.unwrap_err();
    let took = start.elapsed();
    servers[0].resume().unwrap();
    assert!(took < Duration::from_millis(300) + SLACK, "took {took:?}");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.is_failover_candidate());
    // Once resumed (and, if the monitor marked it down meanwhile, after its recovery probes),
    // the same client serves again.
    let back = eventually(Duration::from_secs(5), || async {
        client
            .get::<_, Option<String>>("k")
            .await
            .ok()
            .flatten()
            .as_deref()
            == Some("v")
    })
    .await;
    assert!(back, "the client never served again after SIGCONT");
}

#[tokio::test]
async fn hung_server_at_connect_fails_within_the_connect_timeout() {
    let servers = servers(1);
    servers[0].pause().unwrap();
    let start = Instant::now();
    let err = builder(&servers)
        .connect_timeout(CONNECT)
        .build()
        .await
        .unwrap_err();
    let took = start.elapsed();
    servers[0].resume().unwrap();
    assert!(took < CONNECT + SLACK, "took {took:?}");
    assert!(err.is_failover_candidate(), "{err}");
}

#[tokio::test]
async fn client_recovers_after_a_server_is_killed_and_restarted() {
    let mut servers = servers(2);
    let client: Client = builder(&servers)
        .connect_timeout(CONNECT)
        .build()
        .await
        .unwrap();
    let key = key_on(&client, "shard-0", "k");
    client.set(key.as_str(), "before").await.unwrap();
    servers[0].kill();
    let err = client
        .get::<_, Option<String>>(key.as_str())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    assert_eq!(err.shard(), Some("shard-0"));
    servers[0].restart().unwrap();
    // The dead pooled connections are dropped and replaced: the shard serves writes and reads
    // again (the data is gone, as persistence is off). A write may get through while a failure
    // seen before the restart (a probe of the dead server) still counts, so the endpoint may
    // be marked down and come back once more: recovery is waited for, reads included.
    let back = eventually(Duration::from_secs(10), || async {
        client.set(key.as_str(), "after").await.is_ok()
            && client
                .get::<_, Option<String>>(key.as_str())
                .await
                .is_ok_and(|v| v.as_deref() == Some("after"))
    })
    .await;
    assert!(
        back,
        "the client never recovered after the server came back"
    );
}

#[tokio::test]
async fn a_refused_connection_fails_at_once_with_its_cause() {
    // bb8 alone would wait out the whole connect timeout and report only "timed out".
    let servers = servers(1);
    let dead_port = shardis_testkit::free_port().unwrap();
    let long = Duration::from_secs(10);
    let client = builder(&servers)
        .shard("dead", format!("redis://127.0.0.1:{dead_port}"))
        .connect_timeout(long)
        .lazy_connect(true)
        .build()
        .await
        .unwrap();
    let key = key_on(&client, "dead", "k");
    let start = Instant::now();
    let err = client
        .get::<_, Option<String>>(key.as_str())
        .await
        .unwrap_err();
    assert!(start.elapsed() < long / 2, "took {:?}", start.elapsed());
    assert_eq!(err.kind(), ErrorKind::Connection);
    assert!(err.to_string().contains("refused"), "{err}");
}

#[tokio::test]
async fn password_protected_servers_work_and_a_wrong_password_is_typed_and_hidden() {
    let server = shardis_testkit::RedisServer::start_with(&["--requirepass", "s3cret-pw"]).unwrap();
    let url = |pw: &str| format!("redis://:{pw}@127.0.0.1:{}", server.port());
    let client = Client::builder()
        .shard("a", url("s3cret-pw"))
        .build()
        .await
        .unwrap();
    client.set("k", "v").await.unwrap();
    assert_eq!(
        client
            .get::<_, Option<String>>("k")
            .await
            .unwrap()
            .as_deref(),
        Some("v")
    );
    assert!(!format!("{client:?}").contains("s3cret"));

    let err = Client::builder()
        .shard("a", url("wrong-pw"))
        .connect_timeout(CONNECT)
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    assert_eq!(err.shard(), Some("a"));
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains("wrong-pw") && !shown.contains("s3cret"),
        "{shown}"
    );
}
