//! Every command of the API against real redis-servers: binary safety, multi-key order and
//! misses, expiry, counters, the generic escape hatch, and input errors.

use crate::common;

use std::time::Duration;

use common::*;
use shardis::{ErrorKind, Ttl};

#[tokio::test]
async fn binary_and_non_utf8_keys_and_values_round_trip() {
    let servers = servers(3);
    let client = client(&servers).await;
    let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"\xff\xfe\x00key".to_vec(), b"\x00\x01\x02\xff".to_vec()),
        (vec![0u8; 1], vec![]),
        (
            "ключ-🔑".as_bytes().to_vec(),
            "значение".as_bytes().to_vec(),
        ),
        ((0..=255u8).collect(), (0..=255u8).rev().collect()),
        (b"\r\n*3\r\n$3\r\nDEL".to_vec(), b"\r\n".to_vec()),
    ];
    for (k, v) in &cases {
        client.set(k.as_slice(), v.as_slice()).await.unwrap();
    }
    for (k, v) in &cases {
        let got: Option<Vec<u8>> = client.get(k.as_slice()).await.unwrap();
        assert_eq!(got.as_ref(), Some(v), "key {k:?}");
    }
    let keys: Vec<&[u8]> = cases.iter().map(|(k, _)| k.as_slice()).collect();
    let got: Vec<Option<Vec<u8>>> = client.mget(&keys).await.unwrap();
    let want: Vec<Option<Vec<u8>>> = cases.iter().map(|(_, v)| Some(v.clone())).collect();
    assert_eq!(got, want);
    client
        .set_ex(b"\x80ttl".as_slice(), b"\x00bytes", Duration::from_secs(60))
        .await
        .unwrap();
    let got: Vec<u8> = client.get(b"\x80ttl".as_slice()).await.unwrap();
    assert_eq!(got, b"\x00bytes");
}

#[tokio::test]
async fn mget_mset_del_many_keep_input_order_across_shards() {
    let servers = servers(3);
    let client = client(&servers).await;
    let pairs: Vec<(String, String)> = (0..200)
        .map(|i| (format!("k{i}"), format!("v{i}")))
        .collect();
    client.mset(&pairs).await.unwrap();
    let owners: std::collections::HashSet<String> = pairs
        .iter()
        .map(|(k, _)| client.locate(k.as_str()).to_string())
        .collect();
    assert_eq!(owners.len(), 3, "the test needs keys on every shard");

    // Reversed, interleaved with misses and a duplicate.
    let mut keys: Vec<String> = Vec::new();
    for i in (0..200).rev() {
        keys.push(format!("k{i}"));
        if i % 10 == 0 {
            keys.push(format!("missing{i}"));
        }
    }
    keys.push("k5".into());
    let got: Vec<Option<String>> = client.mget(&keys).await.unwrap();
    assert_eq!(got.len(), keys.len());
    for (k, v) in keys.iter().zip(&got) {
        match k.strip_prefix('k') {
            Some(i) => assert_eq!(v.as_deref(), Some(format!("v{i}").as_str()), "{k}"),
            None => assert_eq!(v, &None, "{k}"),
        }
    }

    let mut del: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
    del.push("missing".into());
    assert_eq!(client.del_many(&del).await.unwrap(), 100);
    assert_eq!(client.del_many(&del).await.unwrap(), 0);
    let left: usize =
        dbsize(&servers[0]).await + dbsize(&servers[1]).await + dbsize(&servers[2]).await;
    assert_eq!(left, 100);

    let empty: Vec<Option<String>> = client.mget::<&str, _>(&[]).await.unwrap();
    assert!(empty.is_empty());
    client.mset::<&str, &str>(&[]).await.unwrap();
    assert_eq!(client.del_many::<&str>(&[]).await.unwrap(), 0);
}

#[tokio::test]
async fn single_key_commands_behave_like_redis() {
    let servers = servers(2);
    let client = client(&servers).await;
    assert!(!client.exists("a").await.unwrap());
    assert_eq!(client.ttl("a").await.unwrap(), Ttl::Missing);
    client.set("a", 1).await.unwrap();
    assert!(client.exists("a").await.unwrap());
    assert_eq!(client.ttl("a").await.unwrap(), Ttl::Persistent);
    assert!(client.expire("a", Duration::from_secs(100)).await.unwrap());
    match client.ttl("a").await.unwrap() {
        Ttl::ExpiresIn(d) => assert!(d > Duration::from_secs(90) && d <= Duration::from_secs(100)),
        other => panic!("{other:?}"),
    }
    assert!(!client.expire("nope", Duration::from_secs(1)).await.unwrap());
    assert_eq!(client.incr("n", 5).await.unwrap(), 5);
    assert_eq!(client.incr("n", -7).await.unwrap(), -2);
    assert!(client.del("n").await.unwrap());
    assert!(!client.del("n").await.unwrap());

    client
        .set_ex("short", "x", Duration::from_millis(50))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            !client.exists("short").await.unwrap()
        })
        .await,
        "a key set with a 50 ms expiry never expired"
    );

    // The escape hatch: any single-key command, routed by its key.
    let mut incr = redis::cmd("INCR");
    incr.arg("counter");
    let r: i64 = client.query("counter", &incr).await.unwrap();
    assert_eq!(r, 1);
    let mut hset = redis::cmd("HSET");
    hset.arg("{h}").arg("f").arg("v");
    let _: i64 = client.query("{h}", &hset).await.unwrap();
    let owner = client.locate("{h}").to_string();
    let idx: usize = owner.trim_start_matches("shard-").parse().unwrap();
    let mut conn = direct(&servers[idx]).await;
    let v: String = redis::cmd("HGET")
        .arg("{h}")
        .arg("f")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(v, "v");
}

#[tokio::test]
async fn server_and_type_errors_are_typed() {
    let servers = servers(1);
    // Without read coalescing `get` sends GET, which answers WRONGTYPE for a hash (merged into
    // MGET it would read as nil: tests/it/coalesce.rs).
    let client = client_with_hash_h(&servers, false).await;
    let err = client.get::<_, Option<String>>("h").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server);
    assert_eq!(err.server_code(), Some("WRONGTYPE"));
    assert_eq!(err.shard(), Some("shard-0"));
    client.set("s", "not a number").await.unwrap();
    let err = client.get::<_, i64>("s").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Type);
    let err = client.incr("s", 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server);
}

#[tokio::test]
async fn bad_input_is_rejected_before_sending() {
    let servers = servers(1);
    let client = builder(&servers).max_key_bytes(16).build().await.unwrap();
    let long = "k".repeat(17);
    for err in [
        client
            .get::<_, Option<String>>(long.as_str())
            .await
            .unwrap_err(),
        client.set(long.as_str(), "v").await.unwrap_err(),
        client
            .mset(&[("ok", "v"), (long.as_str(), "v")])
            .await
            .unwrap_err(),
        client.set("k", &["two", "values"][..]).await.unwrap_err(),
        client.set_ex("k", "v", Duration::ZERO).await.unwrap_err(),
        client
            .set_ex("k", "v", Duration::from_micros(999))
            .await
            .unwrap_err(),
        client.expire("k", Duration::ZERO).await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    }
    // A key of two arguments does not compile (the `compile_fail` doctest on `Client::get`).
    // Nothing was written by the rejected calls, not even the valid half of the MSET.
    assert_eq!(dbsize(&servers[0]).await, 0);
    client.set("k".repeat(16).as_str(), "v").await.unwrap();
}
