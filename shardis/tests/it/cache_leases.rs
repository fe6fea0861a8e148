//! Load locks as leases, over real redis-servers: a write or an invalidation made while a
//! load is in flight wins over the older value that load brings back, for one key and for
//! batches; batches share the load locks across caches (as processes do) without waiting for
//! each other.
#![cfg(feature = "cache")]

use crate::common;
use crate::support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use shardis::cache::Cache;
use shardis::Client;
use support::*;
use tokio::sync::Notify;

/// What is done to the key while its load is in flight.
#[derive(Debug, Clone, Copy)]
enum Meanwhile {
    Invalidate,
    InvalidateTag,
    InvalidatePattern,
    Set,
}

/// Starts `get_or_load("k")` whose loader answers `user(1)` (the "old" value) after 300 ms,
/// does `meanwhile` once the loader runs, and checks what the cache holds afterwards.
async fn a_load_loses_to(meanwhile: Meanwhile) {
    let servers = servers(3);
    let client = client(&servers).await;
    let cache = Cache::builder(client.clone()).namespace("ns").build();
    // Tagged, then gone: `invalidate_tag` still lists the key.
    cache.set_tagged("k", &user(0), &["t"]).await.unwrap();
    cache.invalidate("k").await.unwrap();

    let started = Arc::new(Notify::new());
    let load = tokio::spawn({
        let (cache, started) = (cache.clone(), Arc::clone(&started));
        async move {
            cache
                .get_or_load("k", move || async move {
                    started.notify_one();
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, DbError>(user(1))
                })
                .await
        }
    });
    started.notified().await;
    match meanwhile {
        Meanwhile::Invalidate => assert!(!cache.invalidate("k").await.unwrap()),
        Meanwhile::InvalidateTag => assert_eq!(cache.invalidate_tag("t").await.unwrap(), 0),
        Meanwhile::InvalidatePattern => {
            assert_eq!(cache.invalidate_pattern("k*").await.unwrap(), 0)
        }
        Meanwhile::Set => cache.set("k", &user(2)).await.unwrap(),
    }
    // A caller that comes after the write or invalidation does not join the older load.
    let later: User = cache
        .get_or_load("k", || async { Ok::<_, DbError>(user(3)) })
        .await
        .unwrap();
    let expected_later = match meanwhile {
        Meanwhile::Set => user(2),
        _ => user(3),
    };
    assert_eq!(later, expected_later, "{meanwhile:?}: the later caller");
    // The older load is answered to its caller, but not stored.
    assert_eq!(load.await.unwrap().unwrap(), user(1), "{meanwhile:?}");
    let held: Option<User> = cache.get("k").await.unwrap();
    assert_eq!(
        held,
        Some(expected_later),
        "{meanwhile:?}: what the cache holds"
    );
    assert!(
        no_lock_left(&client, &cache, &["k".to_owned()]).await,
        "{meanwhile:?}: no lock is left"
    );
}

#[tokio::test]
async fn an_invalidation_during_a_load_wins_over_the_loaded_value() {
    a_load_loses_to(Meanwhile::Invalidate).await;
}

#[tokio::test]
async fn a_tag_invalidation_during_a_load_wins_over_the_loaded_value() {
    a_load_loses_to(Meanwhile::InvalidateTag).await;
}

#[tokio::test]
async fn a_pattern_invalidation_during_a_load_wins_over_the_loaded_value() {
    a_load_loses_to(Meanwhile::InvalidatePattern).await;
}

#[tokio::test]
async fn a_set_during_a_load_wins_over_the_loaded_value() {
    a_load_loses_to(Meanwhile::Set).await;
}

/// What [`batch_loader`]'s loader returns.
type BatchLoad = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<HashMap<String, User>, DbError>> + Send>,
>;

/// A batch loader of `user(id)` for keys `u:{id}`, counting its calls, after `delay`.
fn batch_loader(
    calls: Calls,
    delay: Duration,
    started: Option<Arc<Notify>>,
) -> impl FnOnce(Vec<String>) -> BatchLoad {
    move |missing: Vec<String>| {
        Box::pin(async move {
            calls.hit();
            if let Some(s) = started {
                s.notify_one();
            }
            tokio::time::sleep(delay).await;
            Ok(missing
                .into_iter()
                .map(|k| {
                    let id = k.trim_start_matches("u:").parse().unwrap_or(0);
                    (k, user(id))
                })
                .collect())
        })
    }
}

#[tokio::test]
async fn an_invalidation_during_a_batch_load_wins_over_the_loaded_value() {
    let servers = servers(3);
    let cache = Cache::builder(client(&servers).await).build();
    let keys: Vec<String> = (0..30).map(|i| format!("u:{i}")).collect();
    let started = Arc::new(Notify::new());
    let calls = Calls::default();
    let batch = tokio::spawn({
        let (cache, keys) = (cache.clone(), keys.clone());
        let loader = batch_loader(
            calls.clone(),
            Duration::from_millis(300),
            Some(started.clone()),
        );
        async move { cache.get_many_or_load(&keys, loader).await }
    });
    started.notified().await;
    cache.invalidate("u:3").await.unwrap();
    cache.set("u:4", &user(400)).await.unwrap();
    let got = batch.await.unwrap().unwrap();
    assert_eq!(got[3], Some(user(3)), "the loaded value is answered");
    assert_eq!(calls.get(), 1);
    assert_eq!(cache.get::<_, User>("u:3").await.unwrap(), None);
    assert_eq!(cache.get::<_, User>("u:4").await.unwrap(), Some(user(400)));
    for i in (0..30).filter(|&i| i != 3 && i != 4) {
        let key = format!("u:{i}");
        assert_eq!(
            cache.get::<_, User>(key.as_str()).await.unwrap(),
            Some(user(i))
        );
    }
}

#[tokio::test]
async fn a_second_cache_waits_for_a_batch_another_cache_is_loading() {
    let servers = servers(3);
    let client = client(&servers).await;
    // Two caches have separate single-flights: between them only the Redis locks work.
    let a = Cache::builder(client.clone()).build();
    let b = Cache::builder(client.clone()).build();
    let keys: Vec<String> = (0..40).map(|i| format!("u:{i}")).collect();
    let (calls_a, calls_b) = (Calls::default(), Calls::default());
    let started = Arc::new(Notify::new());
    let first = tokio::spawn({
        let (a, keys) = (a.clone(), keys.clone());
        let loader = batch_loader(
            calls_a.clone(),
            Duration::from_millis(300),
            Some(started.clone()),
        );
        async move { a.get_many_or_load(&keys, loader).await }
    });
    started.notified().await;
    let second = b
        .get_many_or_load(&keys, batch_loader(calls_b.clone(), Duration::ZERO, None))
        .await
        .unwrap();
    let first = first.await.unwrap().unwrap();
    let expected: Vec<Option<User>> = (0..40).map(|i| Some(user(i))).collect();
    assert_eq!(first, expected);
    assert_eq!(second, expected);
    assert_eq!((calls_a.get(), calls_b.get()), (1, 0), "loaded once");
    assert_no_locks_left(&client, &a, &keys).await;
}

#[tokio::test]
async fn a_batch_holding_some_locks_loads_every_key_without_waiting_and_stores_only_its_own() {
    let servers = servers(3);
    let client = client(&servers).await;
    // A lock timeout far beyond the test's bound: waiting for it would fail the test.
    let cache = Cache::builder(client.clone())
        .lock_timeout(Duration::from_secs(60))
        .build();
    // Another holder (say, another process's batch) has u:1's lock.
    let foreign = [b"shardis:lock:".as_slice(), &cache.redis_key("u:1")].concat();
    let mut set = redis::cmd("SET");
    set.arg(&foreign).arg("someone-else").arg("PX").arg(60_000);
    let _: () = client
        .query(cache.redis_key("u:1").as_slice(), &set)
        .await
        .unwrap();
    let keys = ["u:0", "u:1", "u:2"];
    let calls = Calls::default();
    let got = tokio::time::timeout(
        Duration::from_secs(20),
        cache.get_many_or_load(&keys, |missing: Vec<String>| {
            let calls = calls.clone();
            async move {
                calls.hit();
                assert_eq!(missing, ["u:0", "u:1", "u:2"]);
                Ok::<_, DbError>(
                    missing
                        .into_iter()
                        .enumerate()
                        .map(|(i, k)| (k, user(i as u64)))
                        .collect::<HashMap<_, _>>(),
                )
            }
        }),
    )
    .await
    .expect("a batch holding locks never waits for another holder")
    .unwrap();
    assert_eq!(got, vec![Some(user(0)), Some(user(1)), Some(user(2))]);
    assert_eq!(calls.get(), 1);
    assert_eq!(cache.get::<_, User>("u:0").await.unwrap(), Some(user(0)));
    assert_eq!(
        cache.get::<_, User>("u:1").await.unwrap(),
        None,
        "not ours to store"
    );
    assert_eq!(cache.get::<_, User>("u:2").await.unwrap(), Some(user(2)));
    let holder: Option<String> = client
        .query(
            cache.redis_key("u:1").as_slice(),
            redis::cmd("GET").arg(&foreign),
        )
        .await
        .unwrap();
    assert_eq!(
        holder.as_deref(),
        Some("someone-else"),
        "a foreign lock is left alone"
    );
}

#[tokio::test]
async fn a_failed_or_dropped_batch_releases_its_locks() {
    let servers = servers(2);
    let client = client(&servers).await;
    let cache = Cache::builder(client.clone()).build();
    let keys: Vec<String> = (0..10).map(|i| format!("u:{i}")).collect();
    let failed = cache
        .get_many_or_load(&keys, |_: Vec<String>| async {
            Err::<HashMap<String, User>, _>(DbError("down".into()))
        })
        .await;
    assert!(failed.is_err());
    assert!(
        eventually(Duration::from_secs(5), || no_lock_left(
            &client, &cache, &keys
        ))
        .await,
        "the failed batch's locks are released"
    );
    // Dropped mid-load: the locks are released by a task of their own.
    let started = Arc::new(Notify::new());
    let dropped = tokio::spawn({
        let (cache, keys) = (cache.clone(), keys.clone());
        let loader = batch_loader(
            Calls::default(),
            Duration::from_secs(30),
            Some(started.clone()),
        );
        async move { cache.get_many_or_load(&keys, loader).await }
    });
    started.notified().await;
    dropped.abort();
    let _ = dropped.await;
    assert!(
        eventually(Duration::from_secs(5), || no_lock_left(
            &client, &cache, &keys
        ))
        .await,
        "the dropped batch's locks are released"
    );
}

async fn no_lock_left(client: &Client, cache: &Cache, keys: &[String]) -> bool {
    for k in keys {
        let full = cache.redis_key(k.as_str());
        let lock = [b"shardis:lock:".as_slice(), &full].concat();
        // Routed by the cached key: the lock lives on its shard.
        let mut get = redis::cmd("GET");
        get.arg(&lock);
        let held: Option<String> = client.query(full.as_slice(), &get).await.unwrap();
        if held.is_some() {
            return false;
        }
    }
    true
}

async fn assert_no_locks_left(client: &Client, cache: &Cache, keys: &[String]) {
    assert!(
        no_lock_left(client, cache, keys).await,
        "every lock is released"
    );
}
