//! The `shardis` binary: its commands, flags and JSON fields are contracts for scripts.

#[path = "../../shardis/tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

fn shardis(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardis"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shardis");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn get_set_del_against_real_redis() {
    let servers = servers(2);
    let config = write(&format!(
        "[[shards]]\nname = \"a\"\nprimary = \"{}\"\n[[shards]]\nname = \"b\"\nprimary = \"{}\"\n",
        servers[0].url(),
        servers[1].url()
    ));
    let c = config.path().to_str().unwrap();
    assert_eq!(shardis(&["--config", c, "set", "k", "v1"], "").1, "OK\n");
    assert_eq!(shardis(&["--config", c, "get", "k"], "").1, "v1\n");
    let (code, out, _) = shardis(&["--config", c, "--format", "json", "get", "k"], "");
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["value"], "v1");
    assert!(v["shard"] == "a" || v["shard"] == "b");
    assert_eq!(shardis(&["--config", c, "del", "k"], "").1, "1\n");
    let (code, out, err) = shardis(&["--config", c, "get", "k"], "");
    assert_eq!((code, out.as_str(), err.trim()), (1, "", "(nil)"));
}

#[test]
fn errors_exit_2_with_a_typed_json_error() {
    let port = shardis_testkit::free_port().unwrap();
    let config = write(&format!(
        "[[shards]]\nname = \"a\"\nprimary = \"redis://127.0.0.1:{port}\"\n"
    ));
    let c = config.path().to_str().unwrap();
    let (code, out, err) = shardis(&["--config", c, "--format", "json", "get", "k"], "");
    assert_eq!(code, 2);
    assert!(err.starts_with("error: "), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["error"]["kind"], "connection");
    assert_eq!(v["error"]["shard"], "a");
    let bad = write("[[shards]]\nname = \"a\"\nprimary = \"redis://h:1\"\nweight = 0\n");
    let (code, _, err) = shardis(
        &["--config", bad.path().to_str().unwrap(), "locate", "k"],
        "",
    );
    assert_eq!(code, 2);
    assert!(err.contains("weight 0"), "{err}");
}

#[test]
fn locate_reads_stdin_and_agrees_with_the_library() {
    let text = "[[shards]]\nname = \"a\"\nprimary = \"redis://h:1\"\n[[shards]]\nname = \"b\"\nprimary = \"redis://h:2\"\n";
    let config = write(text);
    let keys: Vec<String> = (0..200).map(|i| format!("user:{i}")).collect();
    let (code, out, _) = shardis(
        &[
            "--config",
            config.path().to_str().unwrap(),
            "locate",
            "first",
            "-",
        ],
        &keys.join("\n"),
    );
    assert_eq!(code, 0);
    let parsed = shardis::Config::from_toml_str(text).unwrap();
    let locator = shardis::placement::Locator::new(
        parsed.topology(),
        &parsed.options().placement,
        parsed.options().hash_tag,
    )
    .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 201);
    assert_eq!(lines[0], format!("first\t{}", locator.locate(b"first")));
    for (line, key) in lines[1..].iter().zip(&keys) {
        assert_eq!(*line, format!("{key}\t{}", locator.locate(key.as_bytes())));
    }
}

#[test]
fn locate_twemproxy_prints_names_or_host_port() {
    let yaml = write(
        "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n  hash: fnv1a_64\n  servers:\n   - 127.0.0.1:7001:1\n   - 127.0.0.1:7002:1 named-b\n",
    );
    let keys: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
    let (code, out, _) = shardis(
        &["locate", "--twemproxy", yaml.path().to_str().unwrap(), "-"],
        &keys.join("\n"),
    );
    assert_eq!(code, 0);
    let shards: std::collections::HashSet<&str> =
        out.lines().map(|l| l.split('\t').nth(1).unwrap()).collect();
    assert_eq!(shards, ["127.0.0.1:7001", "named-b"].into_iter().collect());
    let (code, _, err) = shardis(
        &[
            "locate",
            "--twemproxy",
            yaml.path().to_str().unwrap(),
            "--pool",
            "beta",
            "k",
        ],
        "",
    );
    assert_eq!(code, 2);
    assert!(err.contains("beta"), "{err}");
}

#[test]
fn remap_json_has_the_documented_fields() {
    let (code, out, err) = shardis(
        &[
            "remap",
            "--algorithms",
            "all",
            "--shards",
            "5",
            "--add",
            "1",
            "--keys",
            "20000",
            "--format",
            "json",
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["algorithm"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "rendezvous_table",
            "ring",
            "ketama",
            "jump",
            "rendezvous",
            "maglev"
        ]
    );
    for r in &rows {
        for field in [
            "moved_fraction",
            "min_fraction",
            "moved_ratio",
            "moved_between_survivors",
            "peak_to_mean_before",
            "peak_to_mean_after",
            "lookup_ns",
            "build_ms",
            "memory_bytes",
        ] {
            assert!(r[field].is_number(), "{field} missing in {r}");
        }
        assert!((r["min_fraction"].as_f64().unwrap() - 1.0 / 6.0).abs() < 1e-9);
    }
    // Default: the default algorithm alone; removal by name; weights; an SVG plot.
    let plot = tempfile::Builder::new().suffix(".svg").tempfile().unwrap();
    let (code, out, err) = shardis(
        &[
            "remap",
            "--shards",
            "4",
            "--remove",
            "shard-1",
            "--weights",
            "1,2,1,1",
            "--exact",
            "--keys",
            "1000",
            "--format",
            "json",
            "--plot",
            plot.path().to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["algorithm"], "rendezvous_table");
    assert_eq!(rows[0]["exact"], true);
    assert_eq!(rows[0]["moved_between_survivors"], 0.0);
    assert!((rows[0]["min_fraction"].as_f64().unwrap() - 0.4).abs() < 1e-9);
    let svg = std::fs::read_to_string(plot.path()).unwrap();
    assert!(svg.contains("<svg") && svg.contains("rendezvous_table"));
    // jump cannot take weights: skipped with a reason, the others still reported.
    let (code, out, err) = shardis(
        &[
            "remap",
            "--algorithms",
            "jump,ring",
            "--weights",
            "1,2",
            "--shards",
            "2",
            "--keys",
            "1000",
            "--format",
            "json",
        ],
        "",
    );
    assert_eq!(code, 0);
    assert!(err.contains("jump: skipped"), "{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.len(), 1);
}

#[test]
fn demo_runs_the_whole_story() {
    let (code, out, err) = shardis(&["demo", "--keys", "3000", "--format", "json"], "");
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["mismatches"], 0);
    assert_eq!(v["keys_read_back"], 3000);
    let shards = v["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 3);
    assert!(shards.iter().all(|s| s["keys"].as_u64().unwrap() > 500));
    assert_eq!(v["failover"]["reads_failed"], 0);
    assert_eq!(v["failover"]["write_error_kind"], "shard_unavailable");
    assert!(v["failover"]["marked_down_ms"].is_number());
    assert_eq!(v["cache_stampede"]["requests"], 1000);
    assert_eq!(v["cache_stampede"]["loader_calls"], 1);
    assert_eq!(v["added_shard"]["version"], 2);
    assert!(v["added_shard"]["new_keys_on_it"].as_u64().unwrap() > 300);
}

#[test]
fn status_shows_roles_health_and_offsets() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let shard = rt.block_on(replicated(1));
    let dead = shardis_testkit::free_port().unwrap();
    let config = write(&format!(
        "[health]\ninterval_ms = 50\n[[shards]]\nname = \"a\"\nprimary = \"{}\"\nreplicas = [\"{}\"]\n\
         [[shards]]\nname = \"gone\"\nprimary = \"redis://127.0.0.1:{dead}\"\n",
        shard.primary.url(),
        shard.replicas[0].url()
    ));
    let (code, out, err) = shardis(
        &[
            "--config",
            config.path().to_str().unwrap(),
            "--format",
            "json",
            "status",
        ],
        "",
    );
    assert_eq!(code, 1, "not all up: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], 1);
    let a = &v["shards"][0];
    assert_eq!(a["name"], "a");
    assert_eq!(a["placed"], true);
    let e = a["endpoints"].as_array().unwrap();
    assert_eq!(
        (
            e[0]["role"].as_str(),
            e[0]["health"].as_str(),
            e[0]["server_role"].as_str()
        ),
        (Some("primary"), Some("up"), Some("master"))
    );
    assert_eq!(
        (e[1]["role"].as_str(), e[1]["server_role"].as_str()),
        (Some("replica"), Some("slave"))
    );
    assert!(e[0]["replication_offset"].as_i64().unwrap() >= 0);
    let gone = &v["shards"][1]["endpoints"][0];
    assert_eq!(gone["health"], "down");
    assert!(gone["error"].as_str().unwrap().contains("refused"));
    let (_, table, _) = shardis(&["--config", config.path().to_str().unwrap(), "status"], "");
    assert!(
        table.contains("primary") && table.contains("master") && table.contains("down"),
        "{table}"
    );
}

#[test]
fn bench_reports_the_documented_fields_for_every_target() {
    let servers = servers(2);
    let lines: Vec<String> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| format!("127.0.0.1:{}:1 s{i}", s.port()))
        .collect();
    let proxy = shardis_testkit::Nutcracker::start(&lines, "hash: fnv1a_64").unwrap();
    let mut text = String::from("[placement]\nalgorithm = \"ketama\"\nhash = \"fnv1a_64\"\n");
    for (i, s) in servers.iter().enumerate() {
        text.push_str(&format!(
            "[[shards]]\nname = \"s{i}\"\nprimary = \"{}\"\n",
            s.url()
        ));
    }
    let config = write(&text);
    let c = config.path().to_str().unwrap();
    let url = proxy.url();
    for (target, extra) in [
        ("shardis", vec![]),
        ("direct", vec![]),
        ("proxy", vec!["--proxy", url.as_str()]),
        ("shardis", vec!["--mget-size", "10", "--read-ratio", "1"]),
        (
            "proxy",
            vec![
                "--proxy",
                url.as_str(),
                "--mget-size",
                "10",
                "--pipeline-depth",
                "4",
            ],
        ),
    ] {
        let mut args = vec![
            "--config",
            c,
            "--format",
            "json",
            "bench",
            "--target",
            target,
            "--duration",
            "300ms",
            "--concurrency",
            "8",
            "--keys",
            "2000",
        ];
        args.extend(extra.iter().copied());
        let (code, out, err) = shardis(&args, "");
        assert_eq!(code, 0, "{target}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["target"], target);
        assert!(v["ops_per_sec"].as_f64().unwrap() > 0.0, "{v}");
        for f in ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"] {
            assert!(v[f].is_u64(), "{f} in {v}");
        }
        assert!(v["p50_us"].as_u64() <= v["p99_us"].as_u64());
        assert_eq!(v["errors"], 0, "{v}");
        let per_shard = v["per_shard"].as_object().unwrap();
        assert_eq!(per_shard.len(), 2, "{v}");
    }
    // The key space was written through the target: both servers hold part of it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert!(rt.block_on(dbsize(&servers[0])) > 0 && rt.block_on(dbsize(&servers[1])) > 0);
    // Bad arguments are typed errors.
    let (code, _, err) = shardis(
        &[
            "--config",
            c,
            "bench",
            "--target",
            "proxy",
            "--duration",
            "100ms",
        ],
        "",
    );
    assert_eq!(code, 2);
    assert!(err.contains("--proxy"), "{err}");
    let (code, _, err) = shardis(&["--config", c, "bench", "--read-ratio", "1.5"], "");
    assert_eq!(code, 2);
    assert!(err.contains("--read-ratio"), "{err}");
}
