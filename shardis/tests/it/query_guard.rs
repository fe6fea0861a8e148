//! What `query` and `query_read` refuse, against real redis-servers: commands that would
//! poison or block the shared connection, and multi-key commands whose keys span shards, are
//! refused with `InvalidInput` before anything is sent, and the shard keeps serving.

use crate::common;

use common::*;
use futures_util::future::join_all;
use redis::Cmd;
use shardis::{Client, ErrorKind};
use shardis_testkit::RedisServer;

fn cmd(args: &[&str]) -> Cmd {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd
}

/// The server of the shard that owns `key`.
fn owner<'a>(client: &Client, servers: &'a [RedisServer], key: &str) -> &'a RedisServer {
    let name = client.locate(key).to_string();
    let i: usize = name.trim_start_matches("shard-").parse().expect("shard-N");
    &servers[i]
}

/// Asserts that both `query` and `query_read` refuse `args` with `InvalidInput`.
async fn assert_refused(client: &Client, key: &str, args: &[&str]) {
    let c = cmd(args);
    let write = client.query::<_, redis::Value>(key, &c).await;
    let read = client.query_read::<_, redis::Value>(key, &c).await;
    for (how, result) in [("query", write), ("query_read", read)] {
        let err = result.expect_err(&format!("{how} {args:?} is refused"));
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{how} {args:?}: {err}");
    }
}

/// Every refused command, with arguments that would make the server run it.
const REFUSED: &[&[&str]] = &[
    &["SELECT", "1"],
    &["MULTI"],
    &["EXEC"],
    &["DISCARD"],
    &["WATCH", "k"],
    &["UNWATCH"],
    &["SUBSCRIBE", "ch"],
    &["PSUBSCRIBE", "ch*"],
    &["SSUBSCRIBE", "k"],
    &["UNSUBSCRIBE", "ch"],
    &["PUNSUBSCRIBE", "ch*"],
    &["SUNSUBSCRIBE", "k"],
    &["MONITOR"],
    &["CLIENT", "REPLY", "OFF"],
    &["CLIENT", "TRACKING", "ON"],
    &["CLIENT", "SETNAME", "poisoned"],
    &["CLIENT", "KILL", "TYPE", "normal"],
    &["CLIENT", "PAUSE", "5000"],
    &["CLIENT", "NO-EVICT", "ON"],
    &["HELLO", "3"],
    &["RESET"],
    &["QUIT"],
    &["AUTH", "nobody", "secret"],
    &["BLPOP", "k", "0"],
    &["BRPOP", "k", "0"],
    &["BLMOVE", "k", "k", "LEFT", "RIGHT", "0"],
    &["BRPOPLPUSH", "k", "k", "0"],
    &["BLMPOP", "0", "1", "k", "LEFT"],
    &["BZPOPMIN", "k", "0"],
    &["BZPOPMAX", "k", "0"],
    &["BZMPOP", "0", "1", "k", "MIN"],
    &["XREAD", "BLOCK", "0", "STREAMS", "k", "$"],
    &[
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "BLOCK",
        "0",
        "STREAMS",
        "k",
        ">",
    ],
    &["WAIT", "1", "0"],
    &["WAITAOF", "1", "0", "0"],
];

/// The `cmdstat_` name of a command as sent: `client|reply`, `xread`, ...
fn stat_name(args: &[&str]) -> String {
    let name = args[0].to_ascii_lowercase();
    match name.as_str() {
        "client" => format!("client|{}", args[1].to_ascii_lowercase()),
        _ => name,
    }
}

#[tokio::test]
async fn refused_commands_never_reach_the_server_in_any_case() {
    let servers = servers(3);
    let client = client(&servers).await;
    client.set("k", "v").await.unwrap();
    reset_stats(&servers).await;
    for args in REFUSED {
        assert_refused(&client, "k", args).await;
        let lower: Vec<String> = args.iter().map(|a| a.to_ascii_lowercase()).collect();
        let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
        assert_refused(&client, "k", &lower).await;
    }
    for server in &servers {
        let run = commands_run(server, &[]).await;
        for args in REFUSED {
            let name = stat_name(args);
            assert!(!run.contains(&name), "{name} reached the server: {run:?}");
        }
    }
    let v: Option<String> = client.get("k").await.unwrap();
    assert_eq!(v.as_deref(), Some("v"));
    // The statistics do see what is sent (a `get` goes as `MGET` with read coalescing on).
    let run = commands_run(owner(&client, &servers, "k"), &[]).await;
    assert!(run.iter().any(|r| r == "get" || r == "mget"), "{run:?}");
}

#[tokio::test]
async fn refused_select_leaves_every_write_in_db_0() {
    let servers = servers(3);
    let client = client(&servers).await;
    assert_refused(&client, "k", &["SELECT", "1"]).await;
    assert_refused(&client, "k", &["select", "1"]).await;
    for i in 0..50 {
        let key = format!("k{i}");
        client.set(key.as_str(), i).await.unwrap();
        let v: Option<i64> = client.get(key.as_str()).await.unwrap();
        assert_eq!(v, Some(i), "{key}");
    }
    let mut in_db_0 = 0;
    for server in &servers {
        in_db_0 += dbsize(server).await;
        let mut db_1 = connect(&format!("{}/1", server.url())).await;
        let n: usize = redis::cmd("DBSIZE").query_async(&mut db_1).await.unwrap();
        assert_eq!(n, 0, "db 1 of {} has keys", server.url());
    }
    assert_eq!(in_db_0, 50);
}

#[tokio::test]
async fn shard_keeps_serving_after_refused_subscribe_monitor_and_client_reply_off() {
    let servers = servers(3);
    let client = client(&servers).await;
    let key = key_on(&client, "shard-1", "poison");
    let poisons: &[&[&str]] = &[
        &["SUBSCRIBE", "ch"],
        &["MONITOR"],
        &["CLIENT", "REPLY", "OFF"],
        &["BLPOP", &key, "30"],
    ];
    for args in poisons {
        assert_refused(&client, &key, args).await;
    }
    let keys: Vec<String> = (0..100)
        .map(|i| key_on(&client, "shard-1", &format!("live{i}-")))
        .collect();
    for (i, k) in keys.iter().enumerate() {
        client.set(k.as_str(), i).await.unwrap();
    }
    let gets = keys
        .iter()
        .map(|k| client.get::<_, Option<usize>>(k.as_str()));
    let got: Vec<Option<usize>> = join_all(gets)
        .await
        .into_iter()
        .collect::<shardis::Result<_>>()
        .unwrap();
    let want: Vec<Option<usize>> = (0..100).map(Some).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn cross_shard_mget_through_query_is_refused_and_not_sent() {
    let servers = servers(3);
    let client = client(&servers).await;
    let a = key_on(&client, "shard-0", "a");
    let b = key_on(&client, "shard-1", "b");
    let b2 = key_on(&client, "shard-1", "b2-");
    client
        .mset(&[(&a, "1"), (&b, "2"), (&b2, "3")])
        .await
        .unwrap();
    reset_stats(&servers).await;
    // Keys on two shards: one shard would answer `[value, nil]`.
    assert_refused(&client, &a, &["MGET", &a, &b]).await;
    assert_refused(&client, &a, &["mget", &b, &a]).await;
    // Keys together, but routed to another shard.
    assert_refused(&client, &a, &["MGET", &b, &b2]).await;
    assert_refused(&client, &a, &["DEL", &a, &b]).await;
    assert_refused(&client, &a, &["RENAME", &a, &b]).await;
    for server in &servers {
        let run = commands_run(server, &[]).await;
        for name in ["mget", "del", "rename"] {
            assert!(!run.iter().any(|r| r == name), "{name} was sent: {run:?}");
        }
    }
    // Routed by one of its keys, with every key on that shard, it runs.
    let got: Vec<Option<String>> = client.query(&b2, &cmd(&["MGET", &b, &b2])).await.unwrap();
    assert_eq!(got, [Some("2".to_owned()), Some("3".to_owned())]);
    let run = commands_run(owner(&client, &servers, &b), &[]).await;
    assert!(run.iter().any(|r| r == "mget"), "{run:?}");
}

#[tokio::test]
async fn same_shard_mget_with_one_hash_tag_runs_through_query() {
    let servers = servers(3);
    let client = builder(&servers).hash_tag("{}").build().await.unwrap();
    client
        .mset(&[("{user:7}:name", "ann"), ("{user:7}:mail", "ann@x")])
        .await
        .unwrap();
    let mget = cmd(&["MGET", "{user:7}:name", "{user:7}:mail", "{user:7}:none"]);
    let want = vec![Some("ann".to_owned()), Some("ann@x".to_owned()), None];
    let got: Vec<Option<String>> = client.query("{user:7}:name", &mget).await.unwrap();
    assert_eq!(got, want);
    // The routing key need not be one of the keys; it needs their shard.
    let got: Vec<Option<String>> = client.query_read("{user:7}", &mget).await.unwrap();
    assert_eq!(got, want);
    let mut eval = cmd(&["EVAL", "return redis.call('MGET', KEYS[1], KEYS[2])", "2"]);
    eval.arg("{user:7}:name").arg("{user:7}:mail");
    let got: Vec<String> = client.query("{user:7}:name", &eval).await.unwrap();
    assert_eq!(got, ["ann", "ann@x"]);
    let moved: i64 = client
        .query(
            "{user:7}:name",
            &cmd(&["RENAMENX", "{user:7}:name", "{user:7}:old"]),
        )
        .await
        .unwrap();
    assert_eq!(moved, 1);
}

#[tokio::test]
async fn eval_with_keys_across_shards_is_refused() {
    let servers = servers(3);
    let client = client(&servers).await;
    let a = key_on(&client, "shard-0", "a");
    let c = key_on(&client, "shard-2", "c");
    client.set(a.as_str(), "on a").await.unwrap();
    let script = "return redis.call('GET', KEYS[1])";
    assert_refused(&client, &a, &["EVAL", script, "2", &a, &c]).await;
    assert_refused(&client, &a, &["eval_ro", script, "1", &c]).await;
    assert_refused(&client, &a, &["FCALL", "f", "2", &a, &c]).await;
    // Bad key counts are refused before sending, never sent to be rejected by the server.
    for count in ["two", "-1", "3"] {
        assert_refused(&client, &a, &["EVAL", script, count, &a, &c]).await;
    }
    let got: String = client
        .query(&a, &cmd(&["EVAL", script, "1", &a, "an-arg-not-a-key"]))
        .await
        .unwrap();
    assert_eq!(got, "on a");
    let one: i64 = client
        .query(&c, &cmd(&["EVAL", "return 1", "0"]))
        .await
        .unwrap();
    assert_eq!(one, 1);
}

#[tokio::test]
async fn read_only_and_unlisted_commands_still_pass() {
    let servers = servers(3);
    let client = client(&servers).await;
    let id: i64 = client.query("k", &cmd(&["CLIENT", "ID"])).await.unwrap();
    assert!(id > 0);
    let _: String = client
        .query_read("k", &cmd(&["client", "info"]))
        .await
        .unwrap();
    let xadd = cmd(&["XADD", "s", "*", "f", "v"]);
    let _: String = client.query("s", &xadd).await.unwrap();
    let read: redis::Value = client
        .query_read("s", &cmd(&["XREAD", "COUNT", "1", "STREAMS", "s", "0"]))
        .await
        .unwrap();
    assert!(!matches!(read, redis::Value::Nil), "{read:?}");
    let hset = cmd(&["HSET", "h", "f", "v"]);
    let _: i64 = client.query("h", &hset).await.unwrap();
}
