//! The whole fleet and scripts, against real redis-servers: `scan_match` finds each key
//! exactly once over every shard (and at least once across a topology swap), `on_every_shard`
//! answers per shard, and scripts run on the shard of their keys, reloaded after `SCRIPT
//! FLUSH`.

mod common;

use std::collections::HashSet;

use common::*;
use futures_util::{StreamExt, TryStreamExt};
use redis::Value;
use shardis::{Client, ErrorKind, ShardName, ShardSpec, Topology};

/// Writes `n` keys `key:{i}` through the client, 1000 per MSET.
async fn fill(client: &Client, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let pairs: Vec<(String, usize)> = chunk.iter().map(|i| (format!("key:{i}"), *i)).collect();
        client.mset(&pairs).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_finds_each_of_100_000_keys_exactly_once_over_every_shard() {
    let servers = servers(3);
    let client = client(&servers).await;
    fill(&client, 100_000).await;
    client.set("other:1", "x").await.unwrap();
    // Two scans at once, each on its own.
    let (one, two) = tokio::join!(
        client.scan_match("key:*").try_collect::<Vec<String>>(),
        client.scan_match("key:*").try_collect::<Vec<String>>(),
    );
    for keys in [one.unwrap(), two.unwrap()] {
        assert_eq!(keys.len(), 100_000);
        let unique: HashSet<&String> = keys.iter().collect();
        assert_eq!(unique.len(), 100_000, "a key came twice");
        assert!(unique.contains(&"key:99999".to_string()));
    }
    let mut sizes = 0;
    for s in &servers {
        let n = dbsize(s).await;
        assert!(n > 20_000, "every shard holds keys");
        sizes += n;
    }
    assert_eq!(sizes, 100_001);
    // A pattern that matches nothing; binary keys through scan_match_bytes.
    let none: Vec<String> = client.scan_match("nothing:*").try_collect().await.unwrap();
    assert!(none.is_empty());
    client.set(b"bin:\xff".as_slice(), "x").await.unwrap();
    let bin: Vec<Vec<u8>> = client
        .scan_match_bytes("bin:*")
        .try_collect()
        .await
        .unwrap();
    assert_eq!(bin, vec![b"bin:\xff".to_vec()]);
    let e = client
        .scan_match("bin:*")
        .try_collect::<Vec<String>>()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Type);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_finds_every_key_at_least_once_across_topology_swaps() {
    let servers = servers(4);
    let spec = |i: usize| ShardSpec::new(shard_name(i), servers[i].url());
    let client = builder(&servers[..3]).build().await.unwrap();
    fill(&client, 30_000).await;
    // Remove a shard in the middle of a scan: its keys still come.
    let mut stream = Box::pin(client.scan_match("key:*"));
    let mut seen = HashSet::new();
    for _ in 0..5_000 {
        seen.insert(stream.next().await.unwrap().unwrap());
    }
    let two = Topology::new(vec![spec(0), spec(1)]).unwrap();
    client.update_topology(two).await.unwrap();
    while let Some(k) = stream.next().await {
        seen.insert(k.unwrap());
    }
    assert_eq!(seen.len(), 30_000, "every key at least once");

    // Add a shard in the middle of a scan: it is scanned too, after the others.
    client
        .update_topology(Topology::new(vec![spec(0), spec(1), spec(2)]).unwrap())
        .await
        .unwrap();
    let mut stream = Box::pin(client.scan_match("*"));
    let mut seen = HashSet::new();
    for _ in 0..100 {
        seen.insert(stream.next().await.unwrap().unwrap());
    }
    let mut direct4 = direct(&servers[3]).await;
    let () = redis::cmd("SET")
        .arg("added:only-here")
        .arg("1")
        .query_async(&mut direct4)
        .await
        .unwrap();
    let four = Topology::new(vec![spec(0), spec(1), spec(2), spec(3)]).unwrap();
    client.update_topology(four).await.unwrap();
    while let Some(k) = stream.next().await {
        seen.insert(k.unwrap());
    }
    assert!(
        seen.contains("added:only-here"),
        "the added shard was scanned"
    );
    assert!((0..30_000).all(|i| seen.contains(&format!("key:{i}"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_every_shard_answers_per_shard_and_refuses_keyed_commands() {
    let servers = servers(3);
    let client = client(&servers).await;
    fill(&client, 3_000).await;
    let sizes: Vec<(ShardName, shardis::Result<usize>)> =
        client.on_every_shard(&redis::cmd("DBSIZE")).await;
    assert_eq!(sizes.len(), 3);
    for (i, (name, n)) in sizes.into_iter().enumerate() {
        assert_eq!(name, shard_name(i).as_str());
        assert_eq!(n.unwrap(), dbsize(&servers[i]).await);
    }
    let info: Vec<(ShardName, shardis::Result<String>)> =
        client.on_every_shard(&redis::cmd("INFO")).await;
    assert!(info
        .iter()
        .all(|(_, r)| r.as_ref().unwrap().contains("redis_version")));
    let mut get = redis::cmd("GET");
    get.arg("key:1");
    for (_, r) in client.on_every_shard::<Value>(&get).await {
        assert_eq!(r.unwrap_err().kind(), ErrorKind::InvalidInput);
    }
    for (_, r) in client.on_every_shard::<Value>(&redis::cmd("MONITOR")).await {
        assert_eq!(r.unwrap_err().kind(), ErrorKind::InvalidInput);
    }
    // A dead shard has its own error; the others answer.
    let mut servers = servers;
    servers[1].kill();
    let pings: Vec<(ShardName, shardis::Result<String>)> =
        client.on_every_shard(&redis::cmd("PING")).await;
    assert_eq!(pings[0].1.as_deref().unwrap(), "PONG");
    assert!(pings[1].1.is_err());
    assert_eq!(pings[2].1.as_deref().unwrap(), "PONG");
}

#[cfg(feature = "scripts")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_run_on_their_keys_shard_and_reload_after_script_flush() {
    let servers = servers(3);
    let client = builder(&servers).hash_tag("{}").build().await.unwrap();
    let script = redis::Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    let n: i64 = client
        .invoke_script(&script, &["counter:{a}"], &[5])
        .await
        .unwrap();
    assert_eq!(n, 5);
    let owner: usize = client
        .locate("counter:{a}")
        .to_string()
        .trim_start_matches("shard-")
        .parse()
        .unwrap();
    let loads = |s: usize| {
        let server = &servers[s];
        async move {
            let mut conn = direct(server).await;
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(&mut conn)
                .await
                .unwrap();
            info.lines()
                .find_map(|l| l.strip_prefix("cmdstat_script|load:calls="))
                .and_then(|l| l.split(',').next())
                .map_or(0, |n| n.parse::<u64>().unwrap())
        }
    };
    let before = loads(owner).await;
    // SCRIPT FLUSH on every shard: the next call gets NOSCRIPT, loads and retries once.
    let mut flush = redis::cmd("SCRIPT");
    flush.arg("FLUSH");
    for (_, r) in client.on_every_shard::<()>(&flush).await {
        r.unwrap();
    }
    let n: i64 = client
        .invoke_script(&script, &["counter:{a}"], &[5])
        .await
        .unwrap();
    assert_eq!(n, 10);
    assert_eq!(
        loads(owner).await,
        before + 1,
        "reloaded once after NOSCRIPT"
    );
    // Keys on one shard through a hash tag; two shards are refused before sending.
    let two = redis::Script::new("return redis.call('MGET', KEYS[1], KEYS[2])");
    let v: Vec<Option<String>> = client
        .invoke_script(&two, &["x:{t}", "y:{t}"], &[0u8; 0])
        .await
        .unwrap();
    assert_eq!(v, [None, None]);
    let plain = client_without_tag(&servers).await;
    let a = key_on(&plain, "shard-0", "a");
    let b = key_on(&plain, "shard-1", "b");
    let e = plain
        .invoke_script::<_, u8, Value>(&two, &[&a, &b], &[])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CrossShard, "{e}");
    assert!(
        e.to_string().contains(&format!("`{a}` on `shard-0`")),
        "{e}"
    );
    let e = client
        .invoke_script::<&str, u8, Value>(&script, &[], &[])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    // An error raised by the script is a server error from its shard.
    let bad = redis::Script::new("return redis.error_reply('NOPE not today')");
    let e = client
        .invoke_script::<_, u8, Value>(&bad, &["k:{a}"], &[])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server, "{e}");
    assert_eq!(e.shard(), Some(shard_name(owner).as_str()));
}

#[cfg(feature = "scripts")]
async fn client_without_tag(servers: &[shardis_testkit::RedisServer]) -> Client {
    client(servers).await
}
