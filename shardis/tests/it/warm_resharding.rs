//! Warm resharding over real redis-servers: moved keys stay warm across an added and a
//! removed shard, a flapping topology serves no stale value, TTLs survive the copies, deleted
//! keys are not resurrected, a removed shard that is down is cold (not an error), and the
//! migration can be interrupted and run again.
#![cfg(feature = "warm")]

use crate::common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use shardis::{Client, Ttl};
use shardis_testkit::RedisServer;

const WINDOW: Duration = Duration::from_secs(60);

async fn client_over(servers: &[RedisServer], warm: bool) -> Client {
    let b = builder(servers);
    let b = if warm { b.warm_resharding(WINDOW) } else { b };
    b.build().await.expect("client builds")
}

async fn flush(servers: &[RedisServer]) {
    for s in servers {
        let mut c = direct(s).await;
        let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
    }
}

/// Writes `n` keys over the first `from` servers, changes to the first `to`, and reads them all back (half with `get`,
/// half with `mget`): the share of keys found with their value.
async fn hit_rate(all: &[RedisServer], from: usize, to: usize, warm: bool) -> f64 {
    let client = client_over(&all[..from], warm).await;
    let n = 2000;
    let items: Vec<(String, String)> = (0..n).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
    client.mset(&items).await.unwrap();
    client.update_topology(topology(&all[..to])).await.unwrap();
    let mut found = 0;
    for (k, v) in &items[..n / 2] {
        let got: Option<String> = client.get(k.as_str()).await.unwrap();
        found += usize::from(got.as_deref() == Some(v.as_str()));
    }
    let keys: Vec<&str> = items[n / 2..].iter().map(|(k, _)| k.as_str()).collect();
    for chunk in keys.chunks(100) {
        let got: Vec<Option<String>> = client.mget(chunk).await.unwrap();
        for (k, g) in chunk.iter().zip(got) {
            found += usize::from(g.as_deref() == Some(&format!("v{}", &k[1..])[..]));
        }
    }
    found as f64 / n as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_mode_finds_moved_keys_after_adding_a_shard_and_cold_mode_does_not() {
    let all = servers(4);
    let cold = hit_rate(&all, 3, 4, false).await;
    flush(&all).await;
    let warm = hit_rate(&all, 3, 4, true).await;
    assert!(
        cold < 0.9,
        "cold mode should miss the ~25% moved keys, found {cold}"
    );
    assert!(warm >= 0.995, "warm mode found only {warm} of the keys");
    // The moved keys now live on the new shard, and nowhere else (the last copies finish off
    // the request path).
    settled(&all, 2000).await;
    assert!(dbsize(&all[3]).await > 300);
}

/// Waits until the servers hold `n` keys in all (the copies of moved keys that reads started
/// run off the request path), and fails if they do not within seconds.
async fn settled(all: &[RedisServer], n: usize) {
    let total = || async {
        futures_util::future::join_all(all.iter().map(dbsize))
            .await
            .into_iter()
            .sum::<usize>()
    };
    let once = eventually(Duration::from_secs(10), || async { total().await == n }).await;
    assert!(
        once,
        "{} keys stored, {n} expected: a key lives in more than one place",
        total().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_mode_finds_the_keys_of_a_removed_shard_while_it_is_up() {
    let all = servers(4);
    let cold = hit_rate(&all, 4, 3, false).await;
    flush(&all).await;
    let warm = hit_rate(&all, 4, 3, true).await;
    assert!(
        cold < 0.9,
        "cold mode should miss the removed shard's keys, found {cold}"
    );
    assert!(warm >= 0.995, "warm mode found only {warm} of the keys");
    settled(&all, 2000).await;
    assert_eq!(
        dbsize(&all[3]).await,
        0,
        "the removed shard was emptied by the reads"
    );
}

/// 64 tasks write (and sometimes delete) their own keys while the topology flaps between 3
/// and 4 shards; the flapping ends right after a swap back to 3. Returns how many keys then
/// answer something other than their last acknowledged write, and how many keys there are.
async fn flap(all: &[RedisServer], warm: bool) -> (usize, usize) {
    let three = topology(&all[..3]);
    let four = topology(all);
    let client = client_over(&all[..3], warm).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let mut last: HashMap<String, Option<u64>> = HashMap::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("t{t}:{}", i % 40);
                    let value = if i % 7 == 3 {
                        client.del(key.as_str()).await.unwrap();
                        None
                    } else {
                        client.set(key.as_str(), i).await.unwrap();
                        Some(i)
                    };
                    last.insert(key, value);
                    i += 1;
                }
                last
            })
        })
        .collect();
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(120)).await;
        let to = if round % 2 == 0 { &four } else { &three };
        client.update_topology(to.clone()).await.unwrap();
    }
    // Ends on 3 shards: stop writing at once, so that keys written at their 4-shard owner are
    // not all rewritten after the swap back.
    stop.store(true, Ordering::Relaxed);
    let mut last = HashMap::new();
    for t in tasks {
        last.extend(t.await.unwrap());
    }
    let mut stale = 0;
    for (key, want) in &last {
        let got: Option<u64> = client.get(key.as_str()).await.unwrap();
        stale += usize::from(got != *want);
    }
    (stale, last.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_3_4_3_under_concurrent_writers_serves_no_stale_value_in_warm_mode() {
    let all = servers(4);
    let (cold_stale, n) = flap(&all, false).await;
    flush(&all).await;
    let (warm_stale, m) = flap(&all, true).await;
    println!("cold: {cold_stale} of {n} keys stale; warm: {warm_stale} of {m}");
    assert!(
        cold_stale > 0,
        "the cold run shows the problem this test guards against"
    );
    assert_eq!(
        warm_stale, 0,
        "warm mode served {warm_stale} of {m} keys stale"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_copy_and_migration_keep_the_remaining_ttl() {
    let all = servers(4);
    let client = client_over(&all[..3], true).await;
    // Keys that will move to the new shard, with and without a TTL.
    let probe = client_over(&all, false).await;
    let moved: Vec<String> = (0..10_000)
        .map(|i| format!("ttl{i}"))
        .filter(|k| probe.locate(k.as_str()).as_str() == shard_name(3))
        .take(4)
        .collect();
    client
        .set_ex(moved[0].as_str(), "a", Duration::from_secs(30))
        .await
        .unwrap();
    client.set(moved[1].as_str(), "b").await.unwrap();
    client
        .set_ex(moved[2].as_str(), "c", Duration::from_secs(30))
        .await
        .unwrap();
    let mut hset = redis::cmd("HSET");
    hset.arg(&moved[3]).arg("f").arg("v");
    let _: i64 = client.query(moved[3].as_str(), &hset).await.unwrap();
    client.update_topology(topology(&all)).await.unwrap();

    // A warm read copies with the TTL, a warm `query_read` any data type.
    let got: Option<String> = client.get(moved[0].as_str()).await.unwrap();
    assert_eq!(got.as_deref(), Some("a"));
    let mut new_owner = direct(&all[3]).await;
    // The copy lands off the request path, just after the read answered.
    let copied = eventually(Duration::from_secs(10), || {
        let mut c = new_owner.clone();
        let key = moved[0].clone();
        async move {
            redis::cmd("EXISTS")
                .arg(&key)
                .query_async::<i64>(&mut c)
                .await
                == Ok(1)
        }
    })
    .await;
    assert!(copied, "the warm read's copy reached the new owner");
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&moved[0])
        .query_async(&mut new_owner)
        .await
        .unwrap();
    assert!((25_000..=30_000).contains(&pttl), "copied with PTTL {pttl}");
    assert_eq!(
        client.ttl(moved[1].as_str()).await.unwrap(),
        Ttl::Persistent
    );
    let mut hgetall = redis::cmd("HGETALL");
    hgetall.arg(&moved[3]);
    let h: HashMap<String, String> = client
        .query_read(moved[3].as_str(), &hgetall)
        .await
        .unwrap();
    assert_eq!(h.get("f").map(String::as_str), Some("v"));

    // The migration moves the rest with its TTL.
    let report = client.migrate_moved_keys().await.unwrap();
    assert!(report.complete && report.errors == 0, "{report:?}");
    assert!(report.moved >= 1, "{report:?}");
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&moved[2])
        .query_async(&mut new_owner)
        .await
        .unwrap();
    assert!(
        (25_000..=30_000).contains(&pttl),
        "migrated with PTTL {pttl}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_keys_are_not_resurrected_by_warm_reads_or_the_migration() {
    let all = servers(4);
    let client = client_over(&all[..3], true).await;
    let keys: Vec<String> = (0..600).map(|i| format!("r{i}")).collect();
    let items: Vec<(&str, u64)> = keys.iter().map(|k| (k.as_str(), 0)).collect();
    client.mset(&items).await.unwrap();
    client.update_topology(topology(&all)).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Readers hammer every key (warm reads move them), while each key's writer sets and
    // deletes it, and the migration runs.
    let readers: Vec<_> = (0..8)
        .map(|r| {
            let (client, stop, keys) = (client.clone(), stop.clone(), keys.clone());
            tokio::spawn(async move {
                let mut i = r;
                while !stop.load(Ordering::Relaxed) {
                    let _: Option<u64> = client.get(keys[i % keys.len()].as_str()).await.unwrap();
                    let part: Vec<&str> = (0..5)
                        .map(|j| keys[(i + j * 7) % keys.len()].as_str())
                        .collect();
                    let _: Vec<Option<u64>> = client.mget(&part).await.unwrap();
                    i += 3;
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let (client, keys) = (client.clone(), keys.clone());
            tokio::spawn(async move {
                let mut last = HashMap::new();
                for round in 0..6u64 {
                    for k in keys.iter().skip(w).step_by(16) {
                        let value = if (round + k.len() as u64) % 2 == 1 {
                            client.del(k.as_str()).await.unwrap();
                            None
                        } else {
                            client.set(k.as_str(), round + 1).await.unwrap();
                            Some(round + 1)
                        };
                        last.insert(k.clone(), value);
                    }
                }
                last
            })
        })
        .collect();
    let migration = client.migrate_moved_keys_with(20, |_| {}).await.unwrap();
    let mut last = HashMap::new();
    for w in writers {
        last.extend(w.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    let mut wrong = Vec::new();
    for (k, want) in &last {
        let got: Option<u64> = client.get(k.as_str()).await.unwrap();
        if got != *want {
            wrong.push((k.clone(), *want, got));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} keys wrong, e.g. {:?}; migration {migration:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    // Nothing deleted lingers anywhere.
    let deleted = last.iter().filter(|(_, v)| v.is_none()).count();
    let total: usize = futures_util::future::join_all(all.iter().map(dbsize))
        .await
        .into_iter()
        .sum();
    assert!(
        total <= keys.len() - deleted,
        "{total} keys stored, {} live",
        keys.len() - deleted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_shard_that_is_down_is_cold_not_an_error() {
    let mut all = servers(4);
    let client = client_over(&all, true).await;
    let keys: Vec<String> = (0..10_000)
        .map(|i| format!("d{i}"))
        .filter(|k| client.locate(k.as_str()).as_str() == shard_name(3))
        .take(20)
        .collect();
    for k in &keys {
        client.set(k.as_str(), "old").await.unwrap();
    }
    client.update_topology(topology(&all[..3])).await.unwrap();
    all[3].kill();
    for k in &keys {
        let got: Option<String> = client.get(k.as_str()).await.unwrap();
        assert_eq!(got, None, "a key of the dead removed shard is a miss");
        client.set(k.as_str(), "new").await.unwrap();
        let got: Option<String> = client.get(k.as_str()).await.unwrap();
        assert_eq!(got.as_deref(), Some("new"));
    }
    let got: Vec<Option<String>> = client.mget(&keys).await.unwrap();
    assert!(got.iter().all(|v| v.as_deref() == Some("new")));
    let report = client.migrate_moved_keys().await.unwrap();
    assert!(!report.complete && report.errors > 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_interrupted_and_rerun_moves_every_key_once() {
    let all = servers(4);
    let client = client_over(&all[..3], true).await;
    let n = 3000;
    let items: Vec<(String, String)> = (0..n).map(|i| (format!("m{i}"), format!("v{i}"))).collect();
    client.mset(&items).await.unwrap();
    client.update_topology(topology(&all)).await.unwrap();
    // Interrupted after its first batch.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut tx = Some(tx);
    let first = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .migrate_moved_keys_with(100, move |r| {
                    if r.moved > 0 {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(());
                        }
                    }
                })
                .await
        })
    };
    rx.await.unwrap();
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    let partly = dbsize(&all[3]).await;
    assert!(
        partly > 0 && partly < n / 4 + 200,
        "{partly} keys on the new shard after the interruption"
    );

    let report = client.migrate_moved_keys().await.unwrap();
    assert!(report.complete && report.errors == 0, "{report:?}");
    // The rerun scans what the interrupted run left on the old owners: the keys it did not
    // move, and any it copied without removing yet (kept at the new owner as "newer").
    assert_eq!(
        report.scanned as usize,
        n - partly + report.skipped_newer as usize,
        "{report:?}"
    );
    // Every key lives once, on its owner, with its value.
    let probe = client_over(&all, false).await;
    for (i, s) in all.iter().enumerate() {
        let mut c = direct(s).await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut c)
            .await
            .unwrap();
        for k in keys {
            assert_eq!(
                probe.locate(k.as_str()).as_str(),
                shard_name(i),
                "{k} left on shard {i}"
            );
        }
    }
    for (k, v) in &items {
        let got: Option<String> = probe.get(k.as_str()).await.unwrap();
        assert_eq!(got.as_deref(), Some(v.as_str()));
    }
    // The window is over: a stale value planted at a moved key's old owner is not read.
    let moved = items
        .iter()
        .map(|(k, _)| k)
        .find(|k| probe.locate(k.as_str()).as_str() == shard_name(3))
        .unwrap();
    client.del(moved.as_str()).await.unwrap();
    let before = client_over(&all[..3], false).await;
    let old: usize = before.locate(moved.as_str()).as_str()[6..].parse().unwrap();
    let mut c = direct(&all[old]).await;
    let _: () = redis::cmd("SET")
        .arg(moved)
        .arg("stale")
        .query_async(&mut c)
        .await
        .unwrap();
    let got: Option<String> = client.get(moved.as_str()).await.unwrap();
    assert_eq!(got, None, "the warm window ended with the migration");
}
