//! `shardis stats` against real servers: a primary with its replica, a plain primary, a
//! SIGSTOPped one and a killed one. Its JSON fields are a contract for scripts.

#[path = "../../shardis/tests/it/common/mod.rs"]
mod common;
mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use shardis_testkit::RedisServer;
use support::shardis;

/// The fleet of these tests: `a` (primary and replica, 100 keys), `b` (weight 3, 50 keys),
/// `hung` (SIGSTOPped) and `dead` (killed).
struct Fleet {
    a: Replicated,
    b: RedisServer,
    hung: RedisServer,
    _dead: RedisServer,
    config: tempfile::NamedTempFile,
}

async fn fleet() -> Fleet {
    let a = replicated(1).await;
    let b = RedisServer::start().unwrap();
    let hung = RedisServer::start().unwrap();
    let mut dead = RedisServer::start().unwrap();
    for (server, n) in [(&a.primary, 100), (&b, 50)] {
        let mut conn = direct(server).await;
        for i in 0..n {
            let _: () = redis::cmd("SET")
                .arg(format!("k{i}"))
                .arg("v")
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        // Hits and misses for the ratio: 3 hits, 1 miss.
        for k in ["k0", "k1", "k2", "absent"] {
            let _: Option<String> = redis::cmd("GET")
                .arg(k)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
    wait_replicated(&a).await;
    dead.kill();
    hung.pause().unwrap();
    let mut config = tempfile::NamedTempFile::new().unwrap();
    write!(
        config,
        "[pool]\nconnect_timeout_ms = 300\nresponse_timeout_ms = 300\n\
         [[shards]]\nname = \"a\"\nprimary = \"{}\"\nreplicas = [\"{}\"]\n\
         [[shards]]\nname = \"b\"\nprimary = \"{}\"\nweight = 3\n\
         [[shards]]\nname = \"hung\"\nprimary = \"{}\"\n\
         [[shards]]\nname = \"dead\"\nprimary = \"{}\"\n",
        a.primary.url(),
        a.replicas[0].url(),
        b.url(),
        hung.url(),
        dead.url()
    )
    .unwrap();
    Fleet {
        a,
        b,
        hung,
        _dead: dead,
        config,
    }
}

fn endpoint(doc: &Value, shard: usize, i: usize) -> &Value {
    &doc["shards"][shard]["endpoints"][i]
}

#[tokio::test]
async fn stats_reports_every_endpoint_and_a_down_one_is_a_row_not_a_failure() {
    let f = fleet().await;
    let config = f.config.path().to_str().unwrap();
    let started = Instant::now();
    let (code, out, err) = shardis(&["--config", config, "--format", "json", "stats"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a hung endpoint held stats for {:?}",
        started.elapsed()
    );
    let doc: Value = serde_json::from_str(out.trim()).expect("one JSON document");
    assert!(doc["time"].as_f64().unwrap() > 1.7e9);
    assert_eq!(doc["interval_s"], Value::Null);

    let names: Vec<&str> = doc["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "hung", "dead"]);
    assert_eq!(doc["shards"][1]["weight"], 3);

    let primary = endpoint(&doc, 0, 0);
    assert_eq!(
        primary["endpoint"],
        format!("127.0.0.1:{}", f.a.primary.port())
    );
    assert_eq!(primary["role"], "primary");
    assert_eq!(primary["server_role"], "primary");
    assert_eq!(primary["up"], true);
    assert_eq!(primary["error"], Value::Null);
    assert_eq!(primary["keys"], 100);
    assert!(primary["used_memory"].as_u64().unwrap() > 100_000);
    assert_eq!(primary["maxmemory"], 0);
    assert_eq!(primary["evicted_keys"], 0);
    assert!(primary["expired_keys"].is_u64());
    assert_eq!(primary["evicted_per_sec"], Value::Null);
    assert_eq!(primary["hit_ratio"], 0.75);
    assert!(primary["ops_per_sec"].is_f64());
    // Replicas are not clients; this connection of stats is.
    assert!(primary["connected_clients"].as_u64().unwrap() >= 1);
    assert_eq!(primary["replication_lag_bytes"], Value::Null);
    assert_eq!(primary["master_link_up"], Value::Null);

    let replica = endpoint(&doc, 0, 1);
    assert_eq!(
        replica["endpoint"],
        format!("127.0.0.1:{}", f.a.replicas[0].port())
    );
    assert_eq!(
        (&replica["role"], &replica["server_role"]),
        (&"replica".into(), &"replica".into())
    );
    assert_eq!(replica["keys"], 100);
    assert_eq!(replica["master_link_up"], true);
    assert!(replica["replication_lag_bytes"].is_u64(), "{replica}");

    assert_eq!(endpoint(&doc, 1, 0)["keys"], 50);
    assert_eq!(
        endpoint(&doc, 1, 0)["endpoint"],
        format!("127.0.0.1:{}", f.b.port())
    );
    for (shard, port) in [(2, f.hung.port()), (3, f._dead.port())] {
        let down = endpoint(&doc, shard, 0);
        assert_eq!(down["endpoint"], format!("127.0.0.1:{port}"));
        assert_eq!(down["up"], false);
        assert!(!down["error"].as_str().unwrap().is_empty(), "{down}");
        assert_eq!(down["keys"], Value::Null);
        assert_eq!(doc["shards"][shard]["keys"], Value::Null);
    }

    let totals = &doc["totals"];
    assert_eq!(totals["shards"], 4);
    assert_eq!(totals["endpoints"], 5);
    assert_eq!(totals["endpoints_down"], 2);
    assert_eq!(
        totals["keys"], 150,
        "each shard counted once, from its primary"
    );
    assert_eq!(
        totals["maxmemory"],
        Value::Null,
        "no limit on these servers"
    );
    assert_eq!(totals["hit_ratio"], 0.75);
    for field in [
        "used_memory",
        "evicted_keys",
        "expired_keys",
        "connected_clients",
    ] {
        assert!(totals[field].is_u64(), "{field}");
    }
    assert!(totals["ops_per_sec"].is_f64());

    // a has 100 keys for weight 1, b 50 for weight 3: a holds 2/3 of the keys for a 1/4 share.
    let keys = &doc["balance"]["keys"];
    assert_eq!(keys["shards_counted"], 2);
    assert_eq!(keys["shard"], "a");
    let deviation = keys["max_deviation"].as_f64().unwrap();
    assert!(
        (deviation - (2.0 / 3.0 / 0.25 - 1.0)).abs() < 1e-9,
        "{deviation}"
    );
    let peak = keys["peak_to_mean"].as_f64().unwrap();
    let (la, lb) = (2.0 / 3.0 / 0.25, 1.0 / 3.0 / 0.75);
    assert!((peak - la / ((la + lb) / 2.0)).abs() < 1e-9, "{peak}");
    assert_eq!(doc["balance"]["memory"]["shards_counted"], 2);

    let (code, table, _) = shardis(&["--config", config, "stats"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("shard ") && lines[0].contains("keys") && lines[0].contains("lag"),
        "{table}"
    );
    let column = lines[0].find("keys").unwrap() + "keys".len();
    let row_of = |port: u16| {
        *lines
            .iter()
            .find(|l| l.contains(&format!(":{port} ")))
            .unwrap()
    };
    assert!(
        row_of(f.a.primary.port())[..column].ends_with("100"),
        "aligned: {table}"
    );
    assert!(
        row_of(f.b.port())[..column].ends_with(" 50"),
        "aligned: {table}"
    );
    assert!(row_of(f.hung.port()).contains("down: "), "{table}");
    assert!(row_of(f._dead.port()).contains("down: "), "{table}");
    assert!(
        table.contains("fleet: 4 shards, 5 endpoints (2 down); 150 keys"),
        "{table}"
    );
    assert!(table.contains("largest deviation +166.7% (a)"), "{table}");
}

#[tokio::test]
async fn stats_watch_prints_one_document_per_interval_with_rates() {
    let f = fleet().await;
    let config = f.config.path().to_str().unwrap();
    let args = [
        "--config", config, "--format", "json", "stats", "--watch", "400ms", "--count", "2",
    ];
    let (code, out, err) = shardis(&args);
    assert_eq!(code, 0, "{err}");
    let docs: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(docs.len(), 2, "{out}");
    for doc in &docs {
        let interval = doc["interval_s"].as_f64().unwrap();
        assert!(interval > 0.2 && interval < 5.0, "{interval}");
        let primary = endpoint(doc, 0, 0);
        assert_eq!(primary["evicted_per_sec"], 0.0);
        assert!(primary["expired_per_sec"].is_f64());
        // Our own INFO and DBSIZE are commands too.
        assert!(primary["ops_per_sec"].as_f64().unwrap() > 0.0, "{primary}");
        assert_eq!(
            primary["hit_ratio"],
            Value::Null,
            "no lookups in the interval"
        );
        assert_eq!(endpoint(doc, 3, 0)["up"], false);
        assert_eq!(doc["totals"]["evicted_per_sec"], 0.0);
    }
    assert!(docs[1]["time"].as_f64() > docs[0]["time"].as_f64());
}
