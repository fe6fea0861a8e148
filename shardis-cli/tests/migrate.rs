//! `shardis migrate --from OLD.toml --config NEW.toml`: moves what the change moved, reports
//! the documented JSON fields, and a rerun has nothing left to move. `shardis bench --resize`
//! with `--compare-cold --rounds`: the documented JSON fields, one row per mode, medians over
//! the rounds and each round's figures.

#[path = "../../shardis/tests/it/common/mod.rs"]
mod common;

use std::io::Write;
use std::process::Command;

use common::*;

fn config(servers: &[shardis_testkit::RedisServer]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    for (i, s) in servers.iter().enumerate() {
        writeln!(
            f,
            "[[shards]]\nname = \"{}\"\nprimary = \"{}\"",
            shard_name(i),
            s.url()
        )
        .unwrap();
    }
    f
}

fn migrate(old: &str, new: &str) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_shardis"))
        .args([
            "--config", new, "--format", "json", "migrate", "--from", old, "--batch", "50",
        ])
        .output()
        .expect("run shardis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout} {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), doc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_moves_the_keys_of_a_resize_and_a_rerun_has_nothing_left() {
    let all = servers(3);
    let old = config(&all[..2]);
    let new = config(&all);
    let before = shardis::Client::from_config_file(old.path()).await.unwrap();
    let items: Vec<(String, String)> = (0..300)
        .map(|i| (format!("k{i}"), format!("v{i}")))
        .collect();
    before.mset(&items).await.unwrap();
    let (old, new) = (old.path().to_str().unwrap(), new.path().to_str().unwrap());

    let (code, first) = migrate(old, new);
    assert_eq!(code, 0, "{first}");
    for field in [
        "scanned",
        "moved",
        "skipped_newer",
        "expired",
        "errors",
        "duration",
    ] {
        assert!(first.get(field).is_some(), "no {field} in {first}");
    }
    assert_eq!(first["scanned"], 300);
    assert_eq!(first["errors"], 0);
    let moved = first["moved"].as_u64().unwrap();
    assert!(moved > 50 && moved < 150, "{first}");
    assert_eq!(dbsize(&all[2]).await as u64, moved);

    let (code, second) = migrate(old, new);
    assert_eq!(code, 0, "{second}");
    assert_eq!(second["moved"], 0, "{second}");
    assert_eq!(second["scanned"].as_u64().unwrap(), 300 - moved);

    // A client of the new config, cold, finds every key.
    let after = shardis::Client::from_config_file(new).await.unwrap();
    let keys: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
    let got: Vec<Option<String>> = after.mget(&keys).await.unwrap();
    for ((_, v), g) in items.iter().zip(got) {
        assert_eq!(g.as_deref(), Some(v.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_resize_with_rounds_reports_the_documented_fields_per_mode_and_round() {
    let all = servers(3);
    let fleet = config(&all);
    let out = Command::new(env!("CARGO_BIN_EXE_shardis"))
        .args([
            "--config",
            fleet.path().to_str().unwrap(),
            "--format",
            "json",
            "bench",
            "--resize",
            "add",
            "--resize-at",
            "1s",
            "--duration",
            "2s",
            "--keys",
            "500",
            "--concurrency",
            "4",
            "--compare-cold",
            "--rounds",
            "2",
            "--key-distribution",
            "zipf",
        ])
        .output()
        .expect("run shardis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["resize"], "add");
    assert_eq!(doc["key_distribution"], "zipf");
    assert_eq!(doc["keys"], 500);
    assert_eq!(doc["rounds"], 2);
    let runs = doc["runs"].as_array().unwrap();
    let modes: Vec<&str> = runs.iter().map(|r| r["mode"].as_str().unwrap()).collect();
    assert_eq!(modes, ["cold", "warm"]);
    for run in runs {
        for field in [
            "hit_rate",
            "worst_window_hit_rate",
            "worst_window_at_s",
            "ops_per_s_steady",
            "ops_per_s_after_resize",
            "p99_ms_steady",
            "p99_ms_after_resize",
            "p99_ratio",
            "read_p99_ms_steady",
            "read_p99_ms_after_resize",
            "read_p99_ratio",
            "resize_ms",
        ] {
            assert!(run[field].as_f64().is_some(), "no {field} in {run}");
        }
        assert_eq!(run["errors"], 0, "{run}");
        assert_eq!(run["windows"].as_array().unwrap().len(), 21, "{run}");
        let rounds = run["per_round"].as_array().unwrap();
        assert_eq!(rounds.len(), 2, "{run}");
        // The median of two rounds is their mean.
        let each: Vec<f64> = rounds
            .iter()
            .map(|r| r["ops_per_s_steady"].as_f64().unwrap())
            .collect();
        let median = run["ops_per_s_steady"].as_f64().unwrap();
        assert!((median - (each[0] + each[1]) / 2.0).abs() < 1e-6, "{run}");
    }
    let warm = &runs[1];
    assert!(warm["migration_moved"].as_u64().is_some(), "{warm}");
    assert!(warm["hit_rate"].as_f64().unwrap() >= 0.99, "{warm}");
    assert!(runs[0]["migration_moved"].is_null());
}
