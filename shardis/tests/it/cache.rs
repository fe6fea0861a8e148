//! The cache layer against real redis-servers: storage, codecs, single-flight, early refresh,
//! TTL jitter, negative caching, stale-if-error, corrupt values, batch read-through.
//!
//! Tests that read metrics install a recorder for their own thread (`#[tokio::test]` runs
//! everything on the test's thread), so tests running side by side do not mix their numbers.
#![cfg(all(feature = "cache", feature = "metrics"))]

use crate::common;
use crate::support;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use shardis::cache::{Cache, Codec};
use shardis::metrics::*;
use shardis::Ttl;
use support::*;

fn set_recorder(rec: &Recorded) -> metrics::LocalRecorderGuard<'_> {
    metrics::set_default_local_recorder(rec)
}

#[tokio::test]
async fn values_round_trip_under_the_namespace_in_both_codecs_compressed_or_not() {
    let servers = servers(2);
    let client = client(&servers).await;
    for codec in [Codec::Json, Codec::MessagePack] {
        let cache = Cache::builder(client.clone())
            .namespace("app:v1")
            .codec(codec)
            .compress_above(64)
            .build();
        let small = user(1);
        let big = User {
            id: 2,
            name: "x".repeat(4000),
        };
        cache.set("user:1", &small).await.unwrap();
        cache.set("user:2", &big).await.unwrap();
        assert_eq!(cache.get("user:1").await.unwrap(), Some(small.clone()));
        assert_eq!(cache.get("user:2").await.unwrap(), Some(big.clone()));
        assert_eq!(cache.get::<_, User>("user:3").await.unwrap(), None);
        // Stored under the namespace, in the envelope: magic, version, codec, compression.
        let raw: Vec<u8> = client.get("app:v1:user:2").await.unwrap();
        let codec_id = if codec == Codec::Json { 1 } else { 2 };
        assert_eq!(&raw[..5], &[b'S', b'C', 1, codec_id, 1]);
        assert!(
            raw.len() < 200,
            "4000 repeated bytes are compressed: {}",
            raw.len()
        );
        let raw: Vec<u8> = client.get("app:v1:user:1").await.unwrap();
        assert_eq!(raw[4], 0, "a small value is not compressed");
        // Byte keys and String keys name the same entry.
        let by_bytes: Option<User> = cache.get(&b"user:1"[..]).await.unwrap();
        let by_string: Option<User> = cache.get(String::from("user:1")).await.unwrap();
        assert_eq!(by_bytes, by_string);
    }
    // A cache reads values written with the other codec (the codec is in each value).
    let json = Cache::builder(client.clone()).codec(Codec::Json).build();
    let msgpack = Cache::builder(client.clone())
        .codec(Codec::MessagePack)
        .build();
    json.set("k", &user(9)).await.unwrap();
    assert_eq!(msgpack.get("k").await.unwrap(), Some(user(9)));
}

#[tokio::test]
async fn concurrent_callers_of_one_missing_key_run_the_loader_once() {
    let rec = Recorded::new();
    let _g = set_recorder(&rec);
    let servers = servers(2);
    let cache = Cache::builder(client(&servers).await).build();
    let calls = Calls::default();
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (cache, calls) = (cache.clone(), calls.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load("hot", move || async move {
                        calls.hit();
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok::<_, DbError>(user(1))
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), user(1));
    }
    assert_eq!(calls.get(), 1);
    assert_eq!(rec.counter(CACHE_LOADS_TOTAL, &[("outcome", "ok")]), 1);
    assert_eq!(rec.observations(CACHE_LOAD_DURATION_SECONDS, &[]), 1);
    assert!(rec.counter(CACHE_WAITS_TOTAL, &[("source", "in_process")]) >= 1);
    // Stored: the next caller hits.
    let v = cache
        .get_or_load("hot", || async {
            Err::<User, _>(DbError("not called".into()))
        })
        .await
        .unwrap();
    assert_eq!(v, user(1));
    assert!(rec.lookups("hit") >= 1);
}

#[tokio::test]
async fn a_failed_load_gives_every_waiter_the_typed_loader_error_and_caches_nothing() {
    let servers = servers(1);
    let cache = Cache::builder(client(&servers).await).build();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_load("k", || async {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Err::<User, _>(DbError("down".into()))
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        let e = t.await.unwrap().unwrap_err();
        assert_eq!(e.loader_error(), Some(&DbError("down".into())));
        let source = std::error::Error::source(&e).expect("the loader error is the source");
        assert_eq!(source.to_string(), "database: down");
    }
    assert_eq!(cache.get::<_, User>("k").await.unwrap(), None);
}

#[tokio::test]
async fn a_hot_key_is_refreshed_before_it_expires_and_no_caller_waits_for_the_loader() {
    let rec = Recorded::new();
    let _g = set_recorder(&rec);
    let servers = servers(1);
    let cache = Cache::builder(client(&servers).await)
        .ttl(Duration::from_millis(1500))
        .ttl_jitter(0.0)
        .early_refresh(4.0)
        .build();
    let calls = Calls::default();
    let load = |calls: Calls| {
        move || async move {
            let n = calls.hit();
            tokio::time::sleep(Duration::from_millis(80)).await;
            Ok::<_, DbError>(n)
        }
    };
    assert_eq!(
        cache.get_or_load("hot", load(calls.clone())).await.unwrap(),
        1
    );
    // Steady reads for three TTLs: the value is reloaded in the background before each
    // expiry, so every read after the first is a hit.
    let until = tokio::time::Instant::now() + Duration::from_millis(4500);
    let mut newest = 1;
    while tokio::time::Instant::now() < until {
        let v = cache.get_or_load("hot", load(calls.clone())).await.unwrap();
        assert!(v >= newest, "values only move forward");
        newest = v;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let a refresh in flight finish (no reads now, so none starts).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rec.lookups("miss"), 1, "only the first read missed");
    assert!(
        calls.get() >= 3,
        "reloaded before each expiry: {} loads",
        calls.get()
    );
    assert!(newest >= 3, "readers saw the refreshed values: {newest}");
    assert_eq!(
        rec.counter(CACHE_EARLY_REFRESHES_TOTAL, &[]) as usize,
        calls.get() - 1
    );
}

#[tokio::test]
async fn early_refresh_off_reloads_only_after_expiry() {
    let rec = Recorded::new();
    let _g = set_recorder(&rec);
    let servers = servers(1);
    let cache = Cache::builder(client(&servers).await)
        .ttl(Duration::from_millis(300))
        .ttl_jitter(0.0)
        .early_refresh(0.0)
        .build();
    let calls = Calls::default();
    for _ in 0..40 {
        let c = calls.clone();
        let _: usize = cache
            .get_or_load("k", move || async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, DbError>(c.hit())
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rec.counter(CACHE_EARLY_REFRESHES_TOTAL, &[]), 0);
    assert!(rec.lookups("miss") >= 2, "expired values were missed");
    assert_eq!(rec.lookups("miss") as usize, calls.get());
}

#[tokio::test]
async fn ttls_are_jittered_within_the_bounds() {
    let servers = servers(1);
    let client = client(&servers).await;
    let cache = Cache::builder(client.clone())
        .ttl(Duration::from_secs(100))
        .ttl_jitter(0.2)
        .build();
    let mut ttls = Vec::new();
    for i in 0..40 {
        let key = format!("k{i}");
        cache.set(key.as_str(), &i).await.unwrap();
        let Ttl::ExpiresIn(t) = client.ttl(key.as_str()).await.unwrap() else {
            panic!("no TTL on {key}")
        };
        assert!(
            t >= Duration::from_secs(79) && t <= Duration::from_secs(120),
            "{t:?}"
        );
        ttls.push(t.as_secs());
    }
    ttls.sort_unstable();
    ttls.dedup();
    assert!(ttls.len() >= 10, "TTLs spread over many seconds: {ttls:?}");
    // Without jitter, every TTL is the configured one; explicit TTLs are exact.
    let exact = Cache::builder(client.clone())
        .ttl(Duration::from_secs(100))
        .ttl_jitter(0.0)
        .build();
    exact.set("e", &1).await.unwrap();
    exact
        .set_with_ttl("f", &1, Duration::from_secs(7))
        .await
        .unwrap();
    let secs = |t: Ttl| match t {
        Ttl::ExpiresIn(d) => d.as_secs_f64(),
        other => panic!("{other:?}"),
    };
    assert!((secs(client.ttl("e").await.unwrap()) - 100.0).abs() < 2.0);
    assert!((secs(client.ttl("f").await.unwrap()) - 7.0).abs() < 2.0);
}

#[tokio::test]
async fn a_loaded_none_is_cached_for_the_negative_ttl() {
    let rec = Recorded::new();
    let _g = set_recorder(&rec);
    let servers = servers(1);
    let client = client(&servers).await;
    let cache = Cache::builder(client.clone())
        .ttl(Duration::from_secs(3600))
        .negative_ttl(Duration::from_secs(30))
        .build();
    let calls = Calls::default();
    for _ in 0..3 {
        let c = calls.clone();
        let v: Option<User> = cache
            .get_or_load("ghost", move || async move {
                c.hit();
                Ok::<_, DbError>(None)
            })
            .await
            .unwrap();
        assert_eq!(v, None);
    }
    assert_eq!(calls.get(), 1);
    assert_eq!(rec.lookups("negative"), 2);
    let Ttl::ExpiresIn(t) = client.ttl("ghost").await.unwrap() else {
        panic!("no TTL")
    };
    assert!(
        t <= Duration::from_secs(33) && t >= Duration::from_secs(25),
        "{t:?}"
    );
    // `get` sees a cached "does not exist" as none.
    assert_eq!(cache.get::<_, User>("ghost").await.unwrap(), None);
}

#[tokio::test]
async fn a_failed_reload_serves_the_expired_value_within_stale_if_error() {
    let rec = Recorded::new();
    let _g = set_recorder(&rec);
    let servers = servers(1);
    let client = client(&servers).await;
    let failing = || async { Err::<User, _>(DbError("down".into())) };

    let stale = Cache::builder(client.clone())
        .stale_if_error(Duration::from_secs(30))
        .build();
    stale
        .set_with_ttl("a", &user(1), Duration::from_millis(100))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        stale.get::<_, User>("a").await.unwrap(),
        None,
        "expired for get"
    );
    assert_eq!(stale.get_or_load("a", failing).await.unwrap(), user(1));
    assert_eq!(rec.lookups("stale"), 1);
    // Kept in Redis for the window beyond its TTL.
    assert!(
        matches!(client.ttl("a").await.unwrap(), Ttl::ExpiresIn(t) if t > Duration::from_secs(25))
    );

    // Without the window, the loader's error.
    let strict = Cache::builder(client.clone()).build();
    strict
        .set_with_ttl("b", &user(2), Duration::from_millis(100))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let e = strict.get_or_load("b", failing).await.unwrap_err();
    assert_eq!(e.loader_error(), Some(&DbError("down".into())));
}

#[tokio::test]
async fn corrupt_and_foreign_values_are_counted_misses_and_reloaded() {
    let rec = Recorded::new();
    let _g = set_recorder(&rec);
    let servers = servers(1);
    let client = client(&servers).await;
    let cache = Cache::builder(client.clone()).build();
    let mut older = b"SC\x02".to_vec(); // a future envelope version
    older.extend_from_slice(&[0; 20]);
    let mut truncated = Vec::new();
    cache.set("t", &user(5)).await.unwrap();
    let full: Vec<u8> = client.get("t").await.unwrap();
    truncated.extend_from_slice(&full[..full.len() - 3]);
    for (i, raw) in [b"garbage".to_vec(), older, truncated]
        .into_iter()
        .enumerate()
    {
        let key = format!("bad{i}");
        client.set(key.as_str(), raw.as_slice()).await.unwrap();
        assert_eq!(cache.get::<_, User>(key.as_str()).await.unwrap(), None);
        let v = cache
            .get_or_load(key.as_str(), move || async move {
                Ok::<_, DbError>(user(i as u64))
            })
            .await
            .unwrap();
        assert_eq!(v, user(i as u64));
        assert_eq!(cache.get(key.as_str()).await.unwrap(), Some(user(i as u64)));
    }
    // An older schema: the stored value does not fit the type asked for.
    cache.set("schema", &"a plain string").await.unwrap();
    assert_eq!(cache.get::<_, User>("schema").await.unwrap(), None);
    assert_eq!(rec.lookups("decode_error"), 3 * 2 + 1);
}

#[tokio::test]
async fn batch_reads_once_per_shard_and_loads_exactly_the_missing_keys_in_input_order() {
    let rec = Recorded::new();
    let _g = set_recorder(&rec);
    let servers = servers(3);
    let client = client(&servers).await;
    let cache = Cache::builder(client.clone()).namespace("b").build();
    cache.set("u2", &user(2)).await.unwrap();
    cache.set("u4", &user(4)).await.unwrap();
    let keys = ["u1", "u2", "u3", "u4", "u5", "u1", "u6"];
    let shards: std::collections::HashSet<_> = keys
        .iter()
        .map(|k| client.locate(format!("b:{k}").as_str()))
        .collect();
    let mgets = |rec: &Recorded| rec.counter(REQUESTS_TOTAL, &[("command", "MGET")]);
    let before = mgets(&rec);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let got: Vec<Option<User>> = cache
        .get_many_or_load(&keys, move |missing: Vec<String>| async move {
            s2.lock().unwrap().push(missing.clone());
            // The database has no u5.
            Ok::<_, DbError>(
                missing
                    .iter()
                    .filter(|k| *k != "u5")
                    .map(|k| (k.clone(), user(k[1..].parse().unwrap())))
                    .collect::<HashMap<_, _>>(),
            )
        })
        .await
        .unwrap();
    assert_eq!(
        mgets(&rec) - before,
        shards.len() as u64,
        "one MGET per shard"
    );
    assert_eq!(*seen.lock().unwrap(), vec![vec!["u1", "u3", "u5", "u6"]]);
    let want = [Some(1), Some(2), Some(3), Some(4), None, Some(1), Some(6)];
    assert_eq!(got, want.map(|o| o.map(user)).to_vec());
    // Stored (u5 as "does not exist"): a second batch calls no loader.
    let again: Vec<Option<User>> = cache
        .get_many_or_load(&keys, |_missing: Vec<String>| async {
            Err::<HashMap<String, User>, _>(DbError("must not be called".into()))
        })
        .await
        .unwrap();
    assert_eq!(again, got);
    assert_eq!(rec.lookups("negative"), 1);
}

#[tokio::test]
async fn a_batch_awaits_a_key_loading_elsewhere_in_the_process_instead_of_loading_it() {
    let servers = servers(2);
    let cache = Cache::builder(client(&servers).await).build();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let single = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load("slow", move || async move {
                    let _ = started_tx.send(());
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, DbError>(user(7))
                })
                .await
        })
    };
    started_rx.await.unwrap();
    let got: Vec<Option<User>> = cache
        .get_many_or_load(&["slow", "other"], |missing: Vec<String>| async move {
            assert_eq!(missing, vec!["other".to_string()]);
            Ok::<_, DbError>(HashMap::from([("other".to_string(), user(8))]))
        })
        .await
        .unwrap();
    assert_eq!(got, vec![Some(user(7)), Some(user(8))]);
    assert_eq!(single.await.unwrap().unwrap(), user(7));
}
