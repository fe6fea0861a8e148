//! `shardis invalidate`: by key, tag and pattern, against real redis-servers, with the JSON
//! fields scripts read (`removed`, `keys[].key`, `keys[].removed`, `tag`, `pattern`,
//! `elapsed_ms`).

#[path = "../../shardis/tests/it/common/mod.rs"]
mod common;
mod support;

use std::io::Write;

use common::*;
use shardis::cache::Cache;
use support::shardis;

fn json(args: &[&str]) -> serde_json::Value {
    let (code, out, err) = shardis(args);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_by_pattern_tag_and_keys_over_every_shard() {
    let servers = servers(3);
    let mut config = tempfile::NamedTempFile::new().unwrap();
    for (i, s) in servers.iter().enumerate() {
        writeln!(
            config,
            "[[shards]]\nname = \"shard-{i}\"\nprimary = \"{}\"",
            s.url()
        )
        .unwrap();
    }
    // The names `common::client` gives, so that both place keys alike.
    let c = config.path().to_str().unwrap().to_owned();
    let cache = Cache::builder(client(&servers).await)
        .namespace("app")
        .build();
    for i in 0..300 {
        cache.set(format!("user:{i}").as_str(), &i).await.unwrap();
        let tags: &[&str] = if i < 40 { &["t"] } else { &[] };
        cache
            .set_tagged(format!("order:{i}").as_str(), &i, tags)
            .await
            .unwrap();
    }

    let c = c.as_str();
    let base = [
        "--config",
        c,
        "--format",
        "json",
        "invalidate",
        "--namespace",
        "app",
    ];
    let v = json(&[&base[..], &["--pattern", "user:*"]].concat());
    assert_eq!(
        (v["pattern"].as_str(), v["removed"].as_u64()),
        (Some("user:*"), Some(300))
    );
    assert!(v["elapsed_ms"].is_u64());
    assert_eq!(cache.get::<_, i32>("user:7").await.unwrap(), None);

    let v = json(&[&base[..], &["--tag", "t"]].concat());
    assert_eq!(
        (v["tag"].as_str(), v["removed"].as_u64()),
        (Some("t"), Some(40))
    );
    assert_eq!(cache.get::<_, i32>("order:7").await.unwrap(), None);
    assert_eq!(cache.get::<_, i32>("order:70").await.unwrap(), Some(70));

    let v = json(&[&base[..], &["order:70", "order:71", "nope"]].concat());
    assert_eq!(v["removed"], 2);
    assert_eq!(v["keys"][0]["key"], "order:70");
    assert_eq!(v["keys"][0]["removed"], true);
    assert_eq!(v["keys"][2]["removed"], false);

    // Table output; without a namespace nothing of `app:` matches.
    let (code, out, _) = shardis(&["--config", c, "invalidate", "--pattern", "order:*"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("0 keys removed in"), "{out}");
    let (code, out, _) = shardis(&[
        "--config",
        c,
        "invalidate",
        "--namespace",
        "app",
        "--pattern",
        "*",
    ]);
    assert_eq!(code, 0);
    assert!(out.starts_with("258 keys removed in"), "{out}");
    // Keys and --tag together are refused.
    let (code, _, err) = shardis(&["--config", c, "invalidate", "k", "--tag", "t"]);
    assert_eq!(code, 2, "{err}");
}
