//! Every bad configuration gives its typed error, through the builder and through a file; a
//! good file builds a working client.

use crate::common;

use std::io::Write;

use common::*;
use shardis::{Client, ConfigError, ErrorKind, ShardSpec};

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[tokio::test]
async fn builder_rejects_each_bad_topology_with_its_error() {
    type Check = fn(&ConfigError) -> bool;
    let cases: Vec<(shardis::ClientBuilder, Check)> = vec![
        (Client::builder(), |e| *e == ConfigError::EmptyTopology),
        (
            Client::builder()
                .shard("a", "redis://127.0.0.1:1")
                .shard("a", "redis://127.0.0.1:2"),
            |e| *e == ConfigError::DuplicateShardName("a".into()),
        ),
        (
            Client::builder().shard_spec(ShardSpec::new("a", "redis://127.0.0.1:1").weight(0)),
            |e| *e == ConfigError::ZeroWeight { shard: "a".into() },
        ),
        (
            Client::builder().shard("a", "redis://u:secret@127.0.0.1:notaport"),
            |e| matches!(e, ConfigError::InvalidUrl { shard, url, .. } if shard == "a" && !url.contains("secret")),
        ),
        (Client::builder().shard("a", "http://127.0.0.1:1"), |e| {
            matches!(e, ConfigError::InvalidUrl { .. })
        }),
        (
            Client::builder()
                .shard("a", "redis://127.0.0.1:1")
                .shard("b", "redis://127.0.0.1:1"),
            |e| matches!(e, ConfigError::DuplicateEndpoint { first, second, .. } if first == "a" && second == "b"),
        ),
        (
            Client::builder()
                .shard("a", "redis://127.0.0.1:1")
                .hash_tag("{"),
            |e| matches!(e, ConfigError::InvalidValue { field, .. } if field == "placement.hash_tag"),
        ),
        (
            Client::builder()
                .shard("a", "redis://127.0.0.1:1")
                .connections_per_endpoint(0),
            |e| matches!(e, ConfigError::InvalidValue { field, .. } if field == "pool.connections_per_endpoint"),
        ),
    ];
    for (i, (builder, check)) in cases.into_iter().enumerate() {
        let err = builder.build().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "case {i}: {err}");
        let cfg = err
            .config()
            .unwrap_or_else(|| panic!("case {i}: no ConfigError in {err}"));
        assert!(check(cfg), "case {i}: unexpected {cfg:?}");
        assert!(!err.to_string().contains("secret"), "case {i}: {err}");
    }
}

#[tokio::test]
async fn config_file_errors_are_typed() {
    let shard = "[[shards]]\nname = \"a\"\nprimary = \"redis://127.0.0.1:1\"\n";
    for (text, want) in [
        (String::new(), "EmptyTopology"),
        (format!("{shard}{shard}"), "DuplicateShardName"),
        (format!("{shard}weight = 0\n"), "ZeroWeight"),
        (
            "[[shards]]\nname = \"a\"\nprimary = \"redis//nope\"\n".to_string(),
            "InvalidUrl",
        ),
        (
            format!("[pool]\nconections_per_endpoint = 2\n{shard}"),
            "Parse",
        ),
        (format!("{shard}colour = \"blue\"\n"), "Parse"),
        // No primary (and no `sentinel`): a typed missing value naming the field.
        (
            "[[shards]]\nname = \"a\"\n".to_string(),
            "InvalidValue { field: \"shards.a.primary\"",
        ),
        ("not toml at all".to_string(), "Parse"),
    ] {
        let file = config_file(&text);
        let err = Client::from_config_file(file.path()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{text:?}: {err}");
        let got = format!("{:?}", err.config().unwrap());
        assert!(got.starts_with(want), "{text:?}: wanted {want}, got {got}");
    }
    let err = Client::from_config_file("/nonexistent/shardis.toml")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(err.to_string().contains("/nonexistent/shardis.toml"));
}

#[tokio::test]
async fn a_config_file_builds_a_working_client() {
    let servers = servers(2);
    let text = format!(
        r#"
        [placement]
        hash_tag = "{{}}"
        [pool]
        connections_per_endpoint = 2
        connect_timeout_ms = 500
        response_timeout_ms = 500
        [[shards]]
        name = "cache-a"
        primary = "{}"
        weight = 1
        [[shards]]
        name = "cache-b"
        primary = "{}"
        weight = 2
        "#,
        servers[0].url(),
        servers[1].url()
    );
    let file = config_file(&text);
    let client = Client::from_config_file(file.path()).await.unwrap();
    client.set("{t}:1", "one").await.unwrap();
    let v: Option<String> = client.get("{t}:1").await.unwrap();
    assert_eq!(v.as_deref(), Some("one"));
    assert_eq!(client.locate("{t}:1"), client.locate("{t}:2"));
    assert_eq!(client.topology().shards()[1].weight(), 2);
}
