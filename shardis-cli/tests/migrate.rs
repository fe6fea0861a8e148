//! `shardis migrate --from OLD.toml --config NEW.toml`: moves what the change moved, reports
//! the documented JSON fields, and a rerun has nothing left to move.

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
