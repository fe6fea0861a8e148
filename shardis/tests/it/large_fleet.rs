//! A fleet of a thousand shards, for real: one redis-server with a thousand databases, each
//! database a shard (`redis://127.0.0.1:PORT/N` is its own endpoint). Every shard gets its pool
//! and its probe connection; keys land where `locate` says; removing a shard moves only its
//! keys; `status` answers for all of them.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use shardis::{Client, ShardSpec, Topology};
use shardis_testkit::RedisServer;

const SHARDS: usize = 1000;

/// Probes of a thousand endpoints in a debug build on a busy machine: not what is tested here.
fn calm_health() -> shardis::HealthOptions {
    let mut h = patient_health();
    h.interval = Duration::from_secs(1);
    h.probe_timeout = Duration::from_secs(5);
    h
}

fn topology(server: &RedisServer, skip: Option<usize>) -> Topology {
    Topology::new(
        (0..SHARDS)
            .filter(|i| Some(*i) != skip)
            .map(|i| ShardSpec::new(format!("shard-{i}"), format!("{}/{i}", server.url())))
            .collect(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_shard_fleet_routes_reshards_and_reports() {
    // Two sockets per endpoint (pool and probes), plus the server's side of each.
    shardis_testkit::raise_fd_limit(8 * SHARDS as u64).unwrap();
    let server = RedisServer::start_with(&["--databases", &(SHARDS + 1).to_string()]).unwrap();
    let started = Instant::now();
    let client = Client::builder()
        .config(shardis::Config::new(
            topology(&server, None),
            shardis::Options::default(),
        ))
        .health(calm_health())
        // Two thousand handshakes at once with one server, on a busy test machine.
        .connect_timeout(Duration::from_secs(5))
        .response_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    println!(
        "{SHARDS} shards: client built and every endpoint probed in {:?}",
        started.elapsed()
    );

    let keys: Vec<String> = (0..5000).map(|i| format!("key:{i}")).collect();
    let pairs: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), k.as_str())).collect();
    client.mset(&pairs).await.unwrap();
    let back: Vec<Option<String>> = client.mget(&keys).await.unwrap();
    assert!(back
        .iter()
        .zip(&keys)
        .all(|(v, k)| v.as_deref() == Some(k.as_str())));

    // Each key is in the database of the shard `locate` names, asked directly.
    let mut conn = direct(&server).await;
    let owners: Vec<String> = keys
        .iter()
        .map(|k| client.locate(k.as_str()).to_string())
        .collect();
    let used: std::collections::BTreeSet<&String> = owners.iter().collect();
    assert!(
        used.len() > 900,
        "5000 keys spread over only {} shards",
        used.len()
    );
    for (k, owner) in keys.iter().zip(&owners).step_by(97) {
        let db: i64 = owner.trim_start_matches("shard-").parse().unwrap();
        let _: () = redis::cmd("SELECT")
            .arg(db)
            .query_async(&mut conn)
            .await
            .unwrap();
        let v: Option<String> = redis::cmd("GET")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some(k.as_str()), "{k} not in db {db}");
    }

    // Removing one shard moves its keys only.
    let started = Instant::now();
    client
        .update_topology(topology(&server, Some(500)))
        .await
        .unwrap();
    println!(
        "{SHARDS} -> {} shards swapped in {:?}",
        SHARDS - 1,
        started.elapsed()
    );
    for (k, before) in keys.iter().zip(&owners) {
        let now = client.locate(k.as_str());
        if before != "shard-500" {
            assert_eq!(now.as_str(), before, "{k} moved between survivors");
        } else {
            assert_ne!(now, "shard-500");
        }
    }

    let started = Instant::now();
    let status = client.status().await;
    println!(
        "status of {} shards in {:?}",
        status.len(),
        started.elapsed()
    );
    assert_eq!(status.len(), SHARDS - 1);
    assert!(status
        .iter()
        .all(|s| s.endpoints[0].health == shardis::Health::Up && s.endpoints[0].error.is_none()));
}
