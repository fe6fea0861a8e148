//! A Sentinel shard whose primary and replica speak only TLS to clients that follow the
//! sentinels: the sentinels answer with a host and port, and `sentinel.tls` says the scheme.
#![cfg(all(feature = "sentinel", feature = "tls"))]

use crate::common;

use std::time::Duration;

use common::{eventually, wait_event};
use shardis::{Client, ErrorKind, Event, ReadFrom, SentinelSpec, ShardSpec, TlsOptions};
use shardis_testkit::tls::{CertAuthority, ServerTls};
use shardis_testkit::{free_port, Monitored, RedisSentinel, RedisServer};

const MASTER: &str = "cache-tls";

/// A primary and its replica, each with a TLS port that their replication also uses, and
/// three sentinels (listening in plain) that reach them over TLS.
struct Fleet {
    primary: RedisServer,
    replica: RedisServer,
    sentinels: Vec<RedisSentinel>,
}

fn fleet(ca: &CertAuthority) -> Fleet {
    let tls = ServerTls {
        server: ca.loopback_server("redis").unwrap(),
        ca_file: ca.ca_file().to_owned(),
        require_client_cert: false,
    };
    let primary = RedisServer::start_tls(&tls, &["--tls-replication", "yes"])
        .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"));
    let primary_tls = primary.tls_port().expect("a TLS port").to_string();
    let replica = RedisServer::start_tls(
        &tls,
        &[
            "--tls-replication",
            "yes",
            "--replicaof",
            "127.0.0.1",
            &primary_tls,
        ],
    )
    .unwrap_or_else(|e| panic!("cannot start replica: {e}"));
    let (cert, key) = (
        tls.server.cert_file.display().to_string(),
        tls.server.key_file.display().to_string(),
    );
    let ca_file = ca.ca_file().display().to_string();
    // The sentinels monitor the primary's TLS port: that is what they name to clients. With
    // `tls-replication` they reach the servers and each other over TLS (announcing their TLS
    // port), and clients reach them on their plain port.
    let watched = [Monitored::new(
        MASTER,
        primary.tls_port().expect("a TLS port"),
    )];
    let sentinels: Vec<RedisSentinel> = (0..3)
        .map(|_| {
            let tls_port = free_port().unwrap().to_string();
            let args = [
                "--tls-port",
                &tls_port,
                "--tls-replication",
                "yes",
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &ca_file,
                "--tls-auth-clients",
                "no",
            ];
            RedisSentinel::start_with(&crate::sentinel::template(), &watched, &args)
                .unwrap_or_else(|e| panic!("cannot start redis-sentinel: {e}"))
        })
        .collect();
    for s in &sentinels {
        s.wait_ready(MASTER, 1, 2, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    Fleet {
        primary,
        replica,
        sentinels,
    }
}

/// Frequent probes, with time for a TLS handshake on a loaded machine.
fn health() -> shardis::HealthOptions {
    let mut h = common::fast_health();
    h.interval = Duration::from_millis(100);
    h.probe_timeout = Duration::from_secs(1);
    h
}

async fn client(fleet: &Fleet, ca: &CertAuthority, tls: Option<bool>) -> shardis::Result<Client> {
    let mut sentinel = SentinelSpec::new(MASTER, fleet.sentinels.iter().map(|s| s.url()))
        .refresh(Duration::from_millis(500));
    if let Some(tls) = tls {
        sentinel = sentinel.tls(tls);
    }
    Client::builder()
        .shard_spec(ShardSpec::sentinel(MASTER, sentinel))
        .tls(TlsOptions::default().ca_file(ca.ca_file()))
        .health(health())
        .read_from(ReadFrom::PrimaryThenReplica)
        .connect_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(2))
        .build()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_named_endpoints_are_reached_over_tls_and_followed_across_a_failover() {
    let ca = CertAuthority::new("sentinel-ca").unwrap_or_else(|e| panic!("cannot make a CA: {e}"));
    let mut fleet = fleet(&ca);
    let old = format!("127.0.0.1:{}", fleet.primary.tls_port().unwrap());
    let new = format!("127.0.0.1:{}", fleet.replica.tls_port().unwrap());

    // The sentinels are plain, so without `tls = true` the named TLS port is reached in
    // plain: refused, with the setting to change named.
    let err = client(&fleet, &ca, None)
        .await
        .expect_err("plain to a TLS port");
    assert_eq!(err.kind(), ErrorKind::ShardUnavailable, "{err}");
    assert!(err.to_string().contains("sentinel.tls"), "{err}");

    let client = client(&fleet, &ca, Some(true))
        .await
        .expect("a client over TLS data endpoints builds");
    let status = client.status().await;
    assert_eq!(status[0].endpoints[0].endpoint, old);
    assert_eq!(
        status[0].sentinel.as_ref().and_then(|s| s.primary.clone()),
        Some(old.clone())
    );
    for i in 0..100 {
        client.set(format!("k{i}"), i).await.unwrap();
    }
    let replica_up = eventually(Duration::from_secs(10), || async {
        let status = client.status().await;
        status[0]
            .endpoints
            .iter()
            .any(|e| e.endpoint == new && e.server_role.as_deref() == Some("slave"))
    })
    .await;
    assert!(replica_up, "the replica is in the table, probed over TLS");

    // The sentinels fail the primary over to the replica: the client follows them and
    // reaches the new primary over TLS too.
    let mut events = client.events();
    fleet.primary.kill();
    let event = wait_event(&mut events, Duration::from_secs(30), |e| {
        matches!(e, Event::SentinelSwitched { .. })
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the client follows the failover\n{}",
            fleet.sentinels[0].log()
        )
    });
    assert!(
        matches!(&event, Event::SentinelSwitched { primary, .. } if *primary == new),
        "{event:?}"
    );
    let written = eventually(Duration::from_secs(5), || async {
        client.set("after", "tls").await.is_ok()
    })
    .await;
    assert!(written, "writes reach the new primary over TLS");
    let v: Option<String> = client.get("after").await.unwrap();
    assert_eq!(v.as_deref(), Some("tls"));
    let v: Option<i64> = client.get("k7").await.unwrap();
    assert_eq!(v, Some(7), "the replica had the data");
    assert_eq!(client.status().await[0].endpoints[0].endpoint, new);
}

#[test]
fn sentinels_that_mix_schemes_must_say_whether_the_data_endpoints_use_tls() {
    let mixed = SentinelSpec::new(
        MASTER,
        ["rediss://127.0.0.1:26379", "redis://127.0.0.1:26380"],
    );
    let err = shardis::Topology::new(vec![ShardSpec::sentinel(MASTER, mixed.clone())])
        .expect_err("a mix without `tls` is refused");
    assert!(
        err.to_string()
            .contains(&format!("shards.{MASTER}.sentinel.tls")),
        "{err}"
    );
    assert!(shardis::Topology::new(vec![ShardSpec::sentinel(MASTER, mixed.tls(false))]).is_ok());
    let text = format!(
        r#"
        [[shards]]
        name = "{MASTER}"
        sentinel = {{ master = "{MASTER}", addrs = ["redis://127.0.0.1:26379"], tls = true }}
        "#
    );
    shardis::Config::from_toml_str(&text).expect("`tls` is a sentinel key");
}
