//! A rejected config is rejected early and briefly: errors quote user text at most 80
//! characters long, validation is linear in the number of shards, loopback names count as one
//! host, and a topology the placement refuses opens no connection.

use std::fmt::Write as _;
use std::io::ErrorKind as IoErrorKind;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use shardis::{Client, Config, ConfigError, ErrorKind, ShardSpec, Topology};

/// The longest message any rejected config below may give.
const MESSAGE_LIMIT: usize = 600;

fn assert_brief(err: &ConfigError, long: &str) {
    let shown = format!("{err}");
    let debug = format!("{err:?}");
    assert!(shown.chars().count() < MESSAGE_LIMIT, "{shown}");
    assert!(debug.chars().count() < MESSAGE_LIMIT, "{debug}");
    assert!(!shown.contains(long) && !debug.contains(long));
}

#[test]
fn long_user_text_is_quoted_short_with_its_length() {
    let long = "n".repeat(100_000);
    // A shard name (too long to be valid, and echoed as much as any name is).
    let err = Topology::new(vec![ShardSpec::new(long.as_str(), "redis://h:1")]).unwrap_err();
    assert_eq!(err, ConfigError::InvalidShardName(long.clone()));
    assert_brief(&err, &long);
    assert!(err.to_string().contains("(100000 characters)"), "{err}");

    // A URL, a host, a field named after a shard, a hash tag, an unknown key.
    let name_128 = "w".repeat(128);
    for (specs, what) in [
        (
            vec![ShardSpec::new("a", format!("redis://{long}:1/x"))],
            "url",
        ),
        (
            vec![
                ShardSpec::new("a", format!("redis://{long}:1")),
                ShardSpec::new("b", format!("redis://{long}:1")),
            ],
            "duplicate endpoint",
        ),
        (
            vec![ShardSpec::new(name_128.as_str(), "redis://h:1").weight(20_000)],
            "weight",
        ),
    ] {
        let err = Topology::new(specs).unwrap_err();
        assert_brief(&err, if what == "weight" { &name_128 } else { &long });
    }
    for text in [
        format!("[placement]\nhash_tag = \"{long}\"\n"),
        format!("[placement]\n{long} = 1\n"),
        format!("[placement]\nalgorithm = \"{long}\"\n"),
        format!("[[shards]]\nname = \"{long}\"\nprimary = \"redis://h:1\"\n"),
    ] {
        let err = Config::from_toml_str(&text).unwrap_err();
        assert_brief(&err, &long);
    }
    #[cfg(feature = "twemproxy")]
    for yaml in [
        format!("p:\n  redis: true\n  servers:\n   - {long}\n"),
        format!("p:\n  redis: true\n  hash: {long}\n  servers:\n   - h:1:1\n"),
        format!("{long}:\n  redis: 3\n"),
        format!("a:\n  redis: 3\n{long}:\n  redis: true\n"),
    ] {
        let err = shardis::twemproxy::import_str(&yaml, None).unwrap_err();
        assert_brief(&err, &long);
    }
}

#[test]
fn localhost_and_loopback_addresses_are_one_endpoint() {
    for (a, b) in [
        ("localhost", "127.0.0.1"),
        ("127.0.0.1", "[::1]"),
        ("LocalHost", "[::1]"),
    ] {
        let text = format!(
            "[[shards]]\nname = \"a\"\nprimary = \"redis://{a}:6379\"\n\
             [[shards]]\nname = \"b\"\nprimary = \"redis://{b}:6379\"\n"
        );
        match Config::from_toml_str(&text) {
            Err(ConfigError::DuplicateEndpoint { first, second, .. }) => {
                assert_eq!((first.as_str(), second.as_str()), ("a", "b"));
            }
            other => panic!("{a} beside {b}: {other:?}"),
        }
    }
    // Another loopback address, another port or another db is another endpoint.
    for b in [
        "redis://127.0.0.2:6379",
        "redis://localhost:6380",
        "redis://localhost:6379/1",
    ] {
        let text = format!(
            "[[shards]]\nname = \"a\"\nprimary = \"redis://127.0.0.1:6379\"\n\
             [[shards]]\nname = \"b\"\nprimary = \"{b}\"\n"
        );
        assert!(Config::from_toml_str(&text).is_ok(), "{b}");
    }
}

/// `n` valid shards, all on one unreachable loopback port, then `last`.
fn many_shards(n: usize, last: &str) -> String {
    let mut text = String::new();
    for i in 0..n {
        write!(
            text,
            "[[shards]]\nname = \"s{i}\"\nprimary = \"redis://127.0.0.1:1/{i}\"\n"
        )
        .unwrap();
    }
    text.push_str(last);
    text
}

#[test]
fn a_2000_shard_config_with_one_bad_shard_at_the_end_is_rejected() {
    for (last, check) in [
        (
            "[[shards]]\nname = \"bad\"\nprimary = \"redis://:Sup3r/Secr@t:pw@127.0.0.1:2\"\n",
            (|e| matches!(e, ConfigError::InvalidUrl { shard, .. } if shard == "bad"))
                as fn(&ConfigError) -> bool,
        ),
        (
            "[[shards]]\nname = \"bad\"\nprimary = \"redis://localhost:1/0\"\n",
            |e| matches!(e, ConfigError::DuplicateEndpoint { first, second, .. } if first == "s0" && second == "bad"),
        ),
        (
            "[[shards]]\nname = \"s7\"\nprimary = \"redis://127.0.0.1:2\"\n",
            |e| *e == ConfigError::DuplicateShardName("s7".into()),
        ),
    ] {
        let text = many_shards(2_000, last);
        let start = Instant::now();
        let err = Config::from_toml_str(&text).unwrap_err();
        println!("2000 shards rejected in {:?}: {err}", start.elapsed());
        assert!(check(&err), "{err:?}");
    }
}

#[tokio::test]
async fn a_topology_the_placement_rejects_opens_no_connection() {
    // Every shard points at this listener (one db each), so any connection would show here.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut text = String::from("[placement]\nalgorithm = \"maglev\"\ntable_size = 1009\n");
    for i in 0..2_000 {
        write!(
            text,
            "[[shards]]\nname = \"s{i}\"\nprimary = \"redis://127.0.0.1:{port}/{i}\"\n"
        )
        .unwrap();
    }
    let config = Config::from_toml_str(&text).unwrap();
    let start = Instant::now();
    let err = Client::builder()
        .config(config)
        .lazy_connect(true)
        .build()
        .await
        .unwrap_err();
    println!("placement rejected in {:?}: {err}", start.elapsed());
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(
        matches!(err.config(), Some(ConfigError::InvalidValue { field, .. }) if field == "placement.table_size"),
        "{err:?}"
    );
    // Pools connect in the background: give them the time to try.
    tokio::time::sleep(Duration::from_millis(300)).await;
    match listener.accept() {
        Err(e) if e.kind() == IoErrorKind::WouldBlock => {}
        other => panic!("a rejected topology connected: {other:?}"),
    }
}
