//! Read coalescing (`coalesce_reads`) against real redis-servers: merged reads stay correct
//! under many concurrent callers, a lone read is sent at once, each merged caller gets its own
//! answer or its own error, and `query` is never merged.

use crate::common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use common::*;
use redis::Value;
use shardis::{Client, ErrorKind};
use shardis_testkit::RedisServer;

/// A server that logs every command with its arguments in its slow log.
fn logging_server() -> RedisServer {
    RedisServer::start_with(&[
        "--slowlog-log-slower-than",
        "0",
        "--slowlog-max-len",
        "100000",
    ])
    .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"))
}

/// Every `MGET` the server ran, oldest first, as its arguments after `MGET`.
async fn mgets_logged(server: &RedisServer) -> Vec<Vec<String>> {
    let mut conn = direct(server).await;
    let log: Vec<Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(-1)
        .query_async(&mut conn)
        .await
        .expect("SLOWLOG GET");
    let mut out = Vec::new();
    for entry in log.into_iter().rev() {
        let Value::Array(fields) = entry else {
            continue;
        };
        let Some(Value::Array(args)) = fields.get(3) else {
            continue;
        };
        let args: Vec<String> = args
            .iter()
            .map(|a| match a {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                other => format!("{other:?}"),
            })
            .collect();
        if args.first().map(|a| a.eq_ignore_ascii_case("MGET")) == Some(true) {
            out.push(args[1..].to_vec());
        }
    }
    out
}

/// A client of one server for the ordering tests: reads merged, a long response timeout (the
/// server is stopped on purpose) and no probe during the test (a probe of the stopped server
/// would be beside the point).
async fn ordering_client(server: &RedisServer, response: Duration, conns: u32) -> Client {
    let mut health = patient_health();
    health.interval = Duration::from_secs(3600);
    Client::builder()
        .shard("shard-0", server.url())
        .health(health)
        .coalesce_reads(true)
        .connections_per_endpoint(conns)
        .response_timeout(response)
        .build()
        .await
        .expect("client builds")
}

/// Lets every task spawned so far on this thread run until it waits on I/O or a channel.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_reads_are_correct_under_256_concurrent_callers_with_overlapping_keys() {
    let servers = servers(3);
    let client = builder(&servers)
        .coalesce_reads(true)
        .build()
        .await
        .expect("client builds");
    const KEYS: u64 = 300;
    let key = |i: u64| format!("k:{i}");
    // Even keys hold a value naming the key; odd ones are missing.
    let items: Vec<(String, String)> = (0..KEYS)
        .step_by(2)
        .map(|i| (key(i), format!("v:{i}")))
        .collect();
    client.mset(&items).await.unwrap();
    let expect = |i: u64| i.is_multiple_of(2).then(|| format!("v:{i}"));
    let shard_of: HashMap<u64, String> = (0..KEYS)
        .map(|i| (i, client.locate(key(i).as_str()).to_string()))
        .collect();
    let mget_before: u64 = servers.iter().map(|s| calls(s, "mget")).sum();

    let tasks: Vec<_> = (0..256u64)
        .map(|t| {
            let client = client.clone();
            let shard_of = shard_of.clone();
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(t);
                let mut parts = 0u64;
                for _ in 0..20 {
                    if rng.bool() {
                        let i = rng.u64(0..KEYS);
                        let v: Option<String> = client.get(key(i).as_str()).await.unwrap();
                        assert_eq!(v, expect(i), "get of key {i}");
                        parts += 1;
                    } else {
                        // Random keys, duplicates and misses included, overlapping other
                        // callers' keys.
                        let n = rng.usize(1..=12);
                        let ids: Vec<u64> = (0..n).map(|_| rng.u64(0..KEYS)).collect();
                        let keys: Vec<String> = ids.iter().map(|i| key(*i)).collect();
                        let vs: Vec<Option<String>> = client.mget(&keys).await.unwrap();
                        let want: Vec<Option<String>> = ids.iter().map(|i| expect(*i)).collect();
                        assert_eq!(vs, want, "mget of {ids:?}");
                        parts += ids
                            .iter()
                            .map(|i| &shard_of[i])
                            .collect::<BTreeSet<_>>()
                            .len() as u64;
                    }
                }
                parts
            })
        })
        .collect();
    let mut parts = 0;
    for t in tasks {
        parts += t.await.expect("a reader panicked");
    }
    let sent: u64 = servers.iter().map(|s| calls(s, "mget")).sum::<u64>() - mget_before;
    // Every read went as MGET (none as GET), and many rode together.
    let gets: u64 = servers.iter().map(|s| calls(s, "get")).sum();
    assert_eq!(gets, 0, "a get was sent as GET");
    assert!(
        sent < parts,
        "{parts} reads (gets and mget parts) went as {sent} MGETs: nothing was merged"
    );
    eprintln!("{parts} reads went as {sent} MGETs");
}

#[tokio::test(flavor = "current_thread")]
async fn a_lone_read_is_sent_at_once_and_reads_arriving_meanwhile_ride_together() {
    let server = logging_server();
    let client = ordering_client(&server, Duration::from_secs(30), 1).await;
    client.set("c1", "x").await.unwrap();
    server.pause().unwrap();
    let a = tokio::spawn({
        let client = client.clone();
        async move { client.get::<_, Option<String>>("a").await }
    });
    // `a` runs until it waits for its reply: no other caller exists, and none is waited for.
    settle().await;
    let b = tokio::spawn({
        let client = client.clone();
        async move { client.get::<_, Option<String>>("b").await }
    });
    let c = tokio::spawn({
        let client = client.clone();
        async move { client.mget::<_, Option<String>>(&["c1", "c2"]).await }
    });
    settle().await;
    server.resume().unwrap();
    assert_eq!(a.await.unwrap().unwrap(), None);
    assert_eq!(b.await.unwrap().unwrap(), None);
    assert_eq!(c.await.unwrap().unwrap(), vec![Some("x".to_owned()), None]);
    // Had `a` waited for company (a timer, a minimum batch), `b` and `c`, which came
    // microseconds later, would be in its MGET.
    assert_eq!(
        mgets_logged(&server).await,
        vec![vec!["a"], vec!["b", "c1", "c2"]],
        "a went alone, at once; b and c were merged behind it"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_failing_endpoint_fails_each_merged_caller_with_its_own_error() {
    let server = logging_server();
    // Two connections: the merged batch goes on the second while the first is retired.
    let client = ordering_client(&server, Duration::from_millis(300), 2).await;
    let both_open = eventually(Duration::from_secs(10), || async {
        client.status().await[0].endpoints[0].connections == 2
    })
    .await;
    assert!(both_open, "the pool never opened its second connection");
    server.pause().unwrap();
    let spawn_get = |k: &'static str| {
        let client = client.clone();
        tokio::spawn(async move { client.get::<_, Option<String>>(k).await.map(|_| ()) })
    };
    let a = spawn_get("a");
    settle().await;
    let riders = vec![
        spawn_get("b"),
        tokio::spawn({
            let client = client.clone();
            async move {
                client
                    .mget::<_, Option<String>>(&["c1", "c2"])
                    .await
                    .map(|_| ())
            }
        }),
        spawn_get("d"),
    ];
    settle().await;
    let a = a
        .await
        .unwrap()
        .expect_err("the stopped server cannot answer a");
    assert_eq!(a.kind(), ErrorKind::Timeout);
    let mut errors = Vec::new();
    for r in riders {
        errors.push(
            r.await
                .unwrap()
                .expect_err("the stopped server cannot answer"),
        );
    }
    for e in &errors {
        assert!(
            matches!(e.kind(), ErrorKind::Timeout | ErrorKind::Connection),
            "{e}"
        );
        assert_eq!(e.shard(), Some("shard-0"), "{e}");
        assert_eq!(
            e.endpoint(),
            Some(format!("127.0.0.1:{}", server.port()).as_str()),
            "{e}"
        );
        assert!(
            e.is_outcome_unknown() || e.kind() == ErrorKind::Connection,
            "{e}"
        );
    }
    server.resume().unwrap();
    // The three riders went as one MGET (run by the server once it resumed).
    let logged = mgets_logged(&server).await;
    assert_eq!(logged, vec![vec!["a"], vec!["b", "c1", "c2", "d"]]);
    // And the endpoint serves again.
    let v: Option<String> = client.get("a").await.unwrap();
    assert_eq!(v, None);
}

#[tokio::test]
async fn a_non_string_key_reads_as_nil_when_merged_and_query_is_never_merged() {
    let servers = servers(1);
    let client = client_with_hash_h(&servers, true).await;
    // Inside MGET a hash reads as nil: with coalescing, `get` is always an MGET.
    let v: Option<String> = client.get("h").await.unwrap();
    assert_eq!(v, None);
    let vs: Vec<Option<String>> = client.mget(&["h", "h"]).await.unwrap();
    assert_eq!(vs, vec![None, None]);
    // `query_read` and `query` send the command as built: GET on a hash is WRONGTYPE.
    let mut get = redis::cmd("GET");
    get.arg("h");
    let e = client
        .query_read::<_, Option<String>>("h", &get)
        .await
        .unwrap_err();
    assert_eq!(e.server_code(), Some("WRONGTYPE"));
    let e = client
        .query::<_, Option<String>>("h", &get)
        .await
        .unwrap_err();
    assert_eq!(e.server_code(), Some("WRONGTYPE"));
    assert_eq!(
        calls(&servers[0], "get"),
        2,
        "query and query_read sent GET"
    );
    // Without coalescing, `get` is a GET.
    let plain = builder(&servers)
        .coalesce_reads(false)
        .build()
        .await
        .unwrap();
    let e = plain.get::<_, Option<String>>("h").await.unwrap_err();
    assert_eq!(e.server_code(), Some("WRONGTYPE"));
}

#[tokio::test(flavor = "current_thread")]
async fn a_reader_dropped_while_leading_does_not_strand_its_riders() {
    let server = logging_server();
    let client = ordering_client(&server, Duration::from_secs(30), 1).await;
    client.set("b", "vb").await.unwrap();
    server.pause().unwrap();
    let a = tokio::spawn({
        let client = client.clone();
        async move { client.get::<_, Option<String>>("a").await }
    });
    settle().await;
    let b = tokio::spawn({
        let client = client.clone();
        async move { client.get::<_, Option<String>>("b").await }
    });
    settle().await;
    // `b` is queued behind `a`'s batch; `a`'s caller gives up.
    a.abort();
    settle().await;
    server.resume().unwrap();
    assert_eq!(b.await.unwrap().unwrap(), Some("vb".to_owned()));
}
