//! The cache layer under stampedes and faults, against real redis-servers: several client
//! processes on one cold key, cancelled and panicking leaders, a killed shard (SIGKILL), a
//! hung shard (SIGSTOP).
//!
//! The cross-process test spawns this test binary again as its client processes: each runs
//! the ignored test `cache_child_process`, configured through environment variables.
#![cfg(all(feature = "cache", feature = "metrics"))]

use crate::common;
use crate::support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use shardis::cache::Cache;
use shardis::metrics::*;
use shardis::{Client, ErrorKind};
use support::*;

/// The shared counter of loader calls, in Redis, for processes to add to.
const CALLS_KEY: &str = "test:loader-calls";

/// A client process of the cross-process test: builds a client over the shards named in
/// `SHARDIS_CHILD_URLS`, says `READY`, waits for a line on stdin, then runs
/// `SHARDIS_CHILD_TASKS` concurrent `get_or_load` calls of `SHARDIS_CHILD_KEY` whose loader
/// takes 200 ms and counts itself in Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of several_processes_hammering_one_expired_key_load_it_once"]
async fn cache_child_process() {
    let (Ok(urls), Ok(key), Ok(tasks)) = (
        std::env::var("SHARDIS_CHILD_URLS"),
        std::env::var("SHARDIS_CHILD_KEY"),
        std::env::var("SHARDIS_CHILD_TASKS"),
    ) else {
        panic!("run by the cross-process test, with SHARDIS_CHILD_* set");
    };
    let tasks: usize = tasks.parse().expect("SHARDIS_CHILD_TASKS");
    let client = urls
        .split(',')
        .enumerate()
        .fold(Client::builder(), |b, (i, url)| b.shard(shard_name(i), url))
        .health(patient_health())
        .build()
        .await
        .expect("client");
    let cache = Cache::builder(client.clone())
        .lock_timeout(Duration::from_secs(20))
        .build();
    println!("READY");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("go line");
    let calls: Vec<_> = (0..tasks)
        .map(|_| {
            let (cache, client, key) = (cache.clone(), client.clone(), key.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load(key, move || async move {
                        client.incr(CALLS_KEY, 1).await.expect("count the call");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Ok::<_, DbError>(user(42))
                    })
                    .await
            })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), user(42));
    }
    println!("DONE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_processes_hammering_one_expired_key_load_it_once() {
    let servers = servers(2);
    let client = client(&servers).await;
    let cache = Cache::builder(client.clone()).build();
    // The key was cached and has just expired.
    cache
        .set_with_ttl("hot", &user(1), Duration::from_millis(50))
        .await
        .unwrap();
    let urls: Vec<String> = servers.iter().map(|s| s.url()).collect();
    let exe = std::env::current_exe().expect("the test binary");
    let mut children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "cache_faults::cache_child_process",
                    "--exact",
                    "--include-ignored",
                ])
                .args(["--nocapture", "--test-threads", "1"])
                .env("SHARDIS_CHILD_URLS", urls.join(","))
                .env("SHARDIS_CHILD_KEY", "hot")
                .env("SHARDIS_CHILD_TASKS", "50")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", exe.display()))
        })
        .collect();
    let mut outputs = Vec::new();
    for child in &mut children {
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        loop {
            line.clear();
            let n = out.read_line(&mut line).expect("child output");
            assert!(n > 0, "a child process ended before it was ready");
            // libtest prints `test cache_child_process ... ` before the test's own output.
            if line.trim_end().ends_with("READY") {
                break;
            }
        }
        outputs.push(out);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Every process starts at once.
    for child in &mut children {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"go\n")
            .unwrap();
    }
    for (child, out) in children.iter_mut().zip(outputs) {
        let rest: Vec<String> = out.lines().map_while(Result::ok).collect();
        let status = child.wait().unwrap();
        assert!(status.success(), "a child process failed: {rest:?}");
        assert!(rest.iter().any(|l| l.contains("DONE")), "{rest:?}");
    }
    let calls: Option<u64> = client.get(CALLS_KEY).await.unwrap();
    assert_eq!(calls, Some(1), "4 processes x 50 tasks loaded the key once");
}

#[tokio::test]
async fn two_caches_share_the_redis_lock_the_second_waits_for_the_first_load() {
    let rec = Recorded::new();
    let _g = metrics::set_default_local_recorder(&rec);
    let servers = servers(1);
    let client = client(&servers).await;
    // Two caches have separate single-flights: between them only the Redis lock works.
    let a = Cache::builder(client.clone()).build();
    let b = Cache::builder(client.clone()).build();
    let calls = Calls::default();
    let load = |calls: Calls| {
        move || async move {
            calls.hit();
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok::<_, DbError>(user(3))
        }
    };
    let (ra, rb) = tokio::join!(
        a.get_or_load("k", load(calls.clone())),
        b.get_or_load("k", load(calls.clone()))
    );
    assert_eq!((ra.unwrap(), rb.unwrap()), (user(3), user(3)));
    assert_eq!(calls.get(), 1);
    assert_eq!(rec.counter(CACHE_WAITS_TOTAL, &[("source", "lock")]), 1);
    // The lock is released once the value is stored.
    assert!(!client.exists("shardis:lock:k").await.unwrap());
}

#[tokio::test]
async fn a_cancelled_leader_hands_over_to_a_waiter_and_its_lock_is_released() {
    let rec = Recorded::new();
    let _g = metrics::set_default_local_recorder(&rec);
    let servers = servers(1);
    let cache = Cache::builder(client(&servers).await)
        .lock_timeout(Duration::from_secs(30))
        .build();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load("k", move || async move {
                    let _ = started_tx.send(());
                    std::future::pending::<Result<User, DbError>>().await
                })
                .await
        })
    };
    started_rx.await.unwrap();
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load("k", || async { Ok::<_, DbError>(user(2)) })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    leader.abort();
    let got = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .expect("the waiter took over before the lock expired");
    assert_eq!(got.unwrap().unwrap(), user(2));
    assert_eq!(
        rec.counter(CACHE_WAITS_TOTAL, &[("source", "in_process")]),
        1
    );
}

#[tokio::test]
async fn a_panicking_leader_does_not_strand_its_waiters() {
    let servers = servers(1);
    let cache = Cache::builder(client(&servers).await).build();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load("k", move || async move {
                    let _ = started_tx.send(());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    panic!("loader bug");
                    #[allow(unreachable_code)]
                    Ok::<User, DbError>(user(0))
                })
                .await
        })
    };
    started_rx.await.unwrap();
    let waiter = cache.get_or_load("k", || async { Ok::<_, DbError>(user(5)) });
    assert_eq!(waiter.await.unwrap(), user(5));
    assert!(leader.await.unwrap_err().is_panic());
}

#[tokio::test]
async fn a_killed_shard_degrades_loads_and_fails_get_and_set_with_its_error() {
    let rec = Recorded::new();
    let _g = metrics::set_default_local_recorder(&rec);
    let mut servers = servers(2);
    let client = builder(&servers)
        .health(fast_health())
        .build()
        .await
        .unwrap();
    let cache = Cache::builder(client.clone()).build();
    let dead = key_on(&client, "shard-1", "u");
    let alive = key_on(&client, "shard-0", "u");
    servers[1].kill();
    for _ in 0..20 {
        let v = cache
            .get_or_load(dead.as_str(), || async { Ok::<_, DbError>(user(1)) })
            .await
            .unwrap();
        assert_eq!(v, user(1));
    }
    let e = cache.get::<_, User>(dead.as_str()).await.unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::Connection | ErrorKind::ShardUnavailable | ErrorKind::Timeout
        ),
        "{e}"
    );
    assert_eq!(e.shard(), Some("shard-1"));
    let e = cache.set(dead.as_str(), &user(1)).await.unwrap_err();
    assert_eq!(e.shard(), Some("shard-1"));
    // The other shard caches as usual, and a batch over both answers every key.
    cache.set(alive.as_str(), &user(0)).await.unwrap();
    let got: Vec<Option<User>> = cache
        .get_many_or_load(
            &[alive.as_str(), dead.as_str()],
            |missing: Vec<String>| async move {
                Ok::<_, DbError>(
                    missing
                        .into_iter()
                        .map(|k| (k, user(1)))
                        .collect::<HashMap<_, _>>(),
                )
            },
        )
        .await
        .unwrap();
    assert_eq!(got, vec![Some(user(0)), Some(user(1))]);
    assert_eq!(rec.counter(CACHE_LOADS_TOTAL, &[("outcome", "ok")]), 21);
}

#[tokio::test]
async fn a_hung_shard_costs_one_timeout_then_is_skipped_by_loads() {
    let servers = servers(2);
    let client = builder(&servers)
        .response_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let cache = Cache::builder(client.clone()).build();
    let key = key_on(&client, "shard-1", "u");
    let rec = Recorded::new();
    let _g = metrics::set_default_local_recorder(&rec);
    servers[1].pause().unwrap();
    let calls = Calls::default();
    for _ in 0..20 {
        let c = calls.clone();
        let v = cache
            .get_or_load(key.as_str(), move || async move {
                c.hit();
                Ok::<_, DbError>(user(9))
            })
            .await
            .unwrap();
        assert_eq!(v, user(9));
    }
    servers[1].resume().unwrap();
    assert_eq!(calls.get(), 20);
    // One request reached the hung shard (and timed out); the later calls skipped it.
    let to_shard = rec.counter(REQUESTS_TOTAL, &[("shard", "shard-1")]);
    assert_eq!(to_shard, 1, "requests sent to the hung shard");
    assert_eq!(
        rec.counter(
            REQUESTS_TOTAL,
            &[("shard", "shard-1"), ("outcome", "timeout")]
        ),
        1
    );
}
