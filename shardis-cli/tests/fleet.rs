//! `shardis scan` and `shardis run-all` against real redis-servers, and `bench
//! --pipeline-size` for every target but the proxy.

#[path = "../../shardis/tests/it/common/mod.rs"]
mod common;
mod support;

use std::collections::HashSet;
use std::io::Write;

use common::*;
use support::shardis;

fn config(servers: &[shardis_testkit::RedisServer]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    for (i, s) in servers.iter().enumerate() {
        writeln!(f, "[[shards]]\nname = \"s{i}\"\nprimary = \"{}\"", s.url()).unwrap();
    }
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_prints_every_matching_key_once_and_counts() {
    let servers = servers(3);
    let file = config(&servers);
    let c = file.path().to_str().unwrap();
    for i in 0..500 {
        let mut conn = direct(&servers[i % 3]).await;
        let () = redis::cmd("SET")
            .arg(format!("user:{i}"))
            .arg(i)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let mut conn = direct(&servers[0]).await;
    let () = redis::cmd("SET")
        .arg("other")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let (code, out, _) = shardis(&["--config", c, "scan", "user:*"]);
    assert_eq!(code, 0);
    let keys: Vec<&str> = out.lines().collect();
    assert_eq!(keys.len(), 500);
    assert_eq!(keys.iter().collect::<HashSet<_>>().len(), 500);
    assert_eq!(
        shardis(&["--config", c, "scan", "user:*", "--count"]).1,
        "500\n"
    );
    let (_, out, _) = shardis(&["--config", c, "--format", "json", "scan", "*", "--count"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["pattern"].as_str(), v["count"].as_u64()),
        (Some("*"), Some(501))
    );
    let (_, out, _) = shardis(&["--config", c, "--format", "json", "scan", "oth*"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["keys"], serde_json::json!(["other"]));
}

#[test]
fn run_all_answers_per_shard_and_exits_1_if_one_fails() {
    let mut servers = servers(3);
    let file = config(&servers);
    let c = file.path().to_str().unwrap();
    let (code, out, _) = shardis(&["--config", c, "run-all", "PING"]);
    assert_eq!(code, 0);
    assert_eq!(out, "s0\tPONG\ns1\tPONG\ns2\tPONG\n");
    let (code, out, _) = shardis(&[
        "--config", c, "--format", "json", "run-all", "CONFIG", "GET", "port",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for (i, row) in v.as_array().unwrap().iter().enumerate() {
        assert_eq!(row["shard"], format!("s{i}"));
        assert_eq!(row["ok"], true);
        assert_eq!(row["reply"][1], servers[i].port().to_string());
    }
    let (code, _, err) = shardis(&["--config", c, "run-all", "GET", "k"]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid_input"), "{err}");
    servers[2].kill();
    let (code, out, _) = shardis(&["--config", c, "--format", "json", "run-all", "DBSIZE"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    // The client needs every primary at start: a dead one is a start-up error (exit 2).
    assert!(
        code == 2 || (code == 1 && v[2]["ok"] == false),
        "{code} {out}"
    );
}

#[test]
fn bench_pipeline_size_runs_against_shardis_and_direct() {
    let servers = servers(2);
    let file = config(&servers);
    let c = file.path().to_str().unwrap();
    for target in ["shardis", "direct"] {
        let (code, out, err) = shardis(&[
            "--config",
            c,
            "--format",
            "json",
            "bench",
            "--target",
            target,
            "--duration",
            "300ms",
            "--keys",
            "1000",
            "--concurrency",
            "4",
            "--pipeline-size",
            "100",
        ]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["pipeline_size"], 100);
        assert_eq!(v["errors"], 0, "{out}");
        assert!(v["ops"].as_u64().unwrap() > 0);
    }
}
