//! Warm reads answered from the previous owner, with the copy to the new owner finished off
//! the request path: a task's own write or delete after such a read is never undone or
//! shadowed by the copy, concurrent readers of one moved key all answer it and it ends up in
//! one place, and an `MGET` of keys from several previous owners answers every one, moves
//! every data type and keeps TTLs.
#![cfg(feature = "warm")]

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use shardis::Client;
use shardis_testkit::RedisServer;

async fn warm_client(servers: &[RedisServer]) -> Client {
    builder(servers)
        .warm_resharding(Duration::from_secs(60))
        .build()
        .await
        .expect("client builds")
}

/// `n` keys `{prefix}{i}` that adding the fourth server moves to it.
async fn moved_keys(all: &[RedisServer], prefix: &str, n: usize) -> Vec<String> {
    let four = client(all).await;
    (0..100_000)
        .map(|i| format!("{prefix}{i}"))
        .filter(|k| four.locate(k.as_str()).as_str() == shard_name(3))
        .take(n)
        .collect()
}

/// Which servers hold `key`, asked directly.
async fn holders(all: &[RedisServer], key: &str) -> Vec<usize> {
    let mut at = Vec::new();
    for (i, s) in all.iter().enumerate() {
        let mut c = direct(s).await;
        let n: i64 = redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut c)
            .await
            .unwrap();
        if n == 1 {
            at.push(i);
        }
    }
    at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_or_delete_after_a_warm_read_is_never_undone_by_the_reads_copy() {
    let all = servers(4);
    let client = warm_client(&all[..3]).await;
    let keys = moved_keys(&all, "own", 800).await;
    let items: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "old")).collect();
    client.mset(&items).await.unwrap();
    client.update_topology(topology(&all)).await.unwrap();
    // 16 tasks, each on its own keys: read (answered from the previous owner, the copy left
    // running), then at once delete or overwrite, then read again.
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let (client, keys) = (client.clone(), keys.clone());
            tokio::spawn(async move {
                let mut wrong = Vec::new();
                for (i, k) in keys.iter().enumerate().skip(t).step_by(16) {
                    let got: Option<String> = client.get(k.as_str()).await.unwrap();
                    if got.as_deref() != Some("old") {
                        wrong.push((k.clone(), "warm read", got.clone()));
                    }
                    let want = if i % 2 == 0 {
                        client.del(k.as_str()).await.unwrap();
                        None
                    } else {
                        client.set(k.as_str(), "new").await.unwrap();
                        Some("new".to_owned())
                    };
                    let got: Option<String> = client.get(k.as_str()).await.unwrap();
                    if got != want {
                        wrong.push((k.clone(), "read after own write", got));
                    }
                }
                wrong
            })
        })
        .collect();
    let mut wrong = Vec::new();
    for t in tasks {
        wrong.extend(t.await.unwrap());
    }
    assert!(
        wrong.is_empty(),
        "{} wrong answers, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    // Once the copies are over: overwritten keys live once, on the new owner; deleted ones
    // nowhere.
    let live = keys.len() / 2;
    let total = || async {
        futures_util::future::join_all(all.iter().map(dbsize))
            .await
            .into_iter()
            .sum::<usize>()
    };
    assert!(
        eventually(Duration::from_secs(10), || async { total().await == live }).await,
        "{} keys stored, {live} live",
        total().await
    );
    assert_eq!(dbsize(&all[3]).await, live);
    for (i, k) in keys.iter().enumerate() {
        let got: Option<String> = client.get(k.as_str()).await.unwrap();
        let want = (i % 2 == 1).then(|| "new".to_owned());
        assert_eq!(got, want, "{k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_of_one_moved_key_all_answer_and_leave_it_in_one_place() {
    let all = servers(4);
    let client = warm_client(&all[..3]).await;
    let keys = moved_keys(&all, "hot", 20).await;
    for k in &keys {
        client.set(k.as_str(), format!("v-{k}")).await.unwrap();
    }
    client.update_topology(topology(&all)).await.unwrap();
    for k in &keys {
        let reads: Vec<_> = (0..64)
            .map(|r| {
                let (client, k) = (client.clone(), k.clone());
                tokio::spawn(async move {
                    if r % 4 == 0 {
                        let got: Vec<Option<String>> =
                            client.mget(&[k.as_str(), "other"]).await.unwrap();
                        got[0].clone()
                    } else {
                        client.get::<_, Option<String>>(k.as_str()).await.unwrap()
                    }
                })
            })
            .collect();
        for r in reads {
            assert_eq!(r.await.unwrap(), Some(format!("v-{k}")), "{k}");
        }
    }
    for k in &keys {
        let one = eventually(Duration::from_secs(10), || async {
            holders(&all, k).await == [3]
        })
        .await;
        assert!(one, "{k} is held by {:?}", holders(&all, k).await);
        let mut c = direct(&all[3]).await;
        let v: String = redis::cmd("GET").arg(k).query_async(&mut c).await.unwrap();
        assert_eq!(v, format!("v-{k}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mget_answers_moved_keys_of_every_previous_owner_and_moves_every_type() {
    let all = servers(4);
    let client = warm_client(&all[..3]).await;
    let keys = moved_keys(&all, "mg", 60).await;
    let three = warm_client(&all[..3]).await;
    let owners: std::collections::HashSet<String> = keys
        .iter()
        .map(|k| three.locate(k.as_str()).as_str().to_owned())
        .collect();
    assert!(
        owners.len() >= 2,
        "the moved keys come from several previous owners"
    );
    // Strings (one with a TTL), and a hash and a list, which `MGET` answers as nil.
    for k in &keys[2..] {
        client.set(k.as_str(), format!("v-{k}")).await.unwrap();
    }
    client
        .set_ex(keys[2].as_str(), "ttl", Duration::from_secs(30))
        .await
        .unwrap();
    let mut hset = redis::cmd("HSET");
    hset.arg(&keys[0]).arg("f").arg("v");
    let _: i64 = client.query(keys[0].as_str(), &hset).await.unwrap();
    let mut rpush = redis::cmd("RPUSH");
    rpush.arg(&keys[1]).arg("a").arg("b");
    let _: i64 = client.query(keys[1].as_str(), &rpush).await.unwrap();
    client.update_topology(topology(&all)).await.unwrap();

    let mut names: Vec<&str> = keys.iter().map(String::as_str).collect();
    names.push("never-written");
    let got: Vec<Option<String>> = client.mget(&names).await.unwrap();
    let want: Vec<Option<String>> = names
        .iter()
        .enumerate()
        .map(|(i, k)| match i {
            0 | 1 => None,
            2 => Some("ttl".to_owned()),
            _ if *k == "never-written" => None,
            _ => Some(format!("v-{k}")),
        })
        .collect();
    assert_eq!(got, want);

    // Every key moves over, whatever its type, with its TTL.
    for k in &keys {
        let one = eventually(Duration::from_secs(10), || async {
            holders(&all, k).await == [3]
        })
        .await;
        assert!(one, "{k} is held by {:?}", holders(&all, k).await);
    }
    let mut c = direct(&all[3]).await;
    let h: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(&keys[0])
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(h.get("f").map(String::as_str), Some("v"));
    let l: Vec<String> = redis::cmd("LRANGE")
        .arg(&keys[1])
        .arg(0)
        .arg(-1)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(l, ["a", "b"]);
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&keys[2])
        .query_async(&mut c)
        .await
        .unwrap();
    assert!((25_000..=30_000).contains(&pttl), "copied with PTTL {pttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_of_a_moved_key_that_is_not_a_string_answers_as_it_would_unmoved() {
    let all = servers(4);
    let client = warm_client(&all[..3]).await;
    let key = moved_keys(&all, "typed", 1).await.remove(0);
    let stays = (0..10_000)
        .map(|i| format!("stays{i}"))
        .find(|k| !key.is_empty() && client.locate(k.as_str()).as_str() != shard_name(3))
        .unwrap();
    for k in [&key, &stays] {
        let mut hset = redis::cmd("HSET");
        hset.arg(k).arg("f").arg("v");
        let _: i64 = client.query(k.as_str(), &hset).await.unwrap();
    }
    client.update_topology(topology(&all)).await.unwrap();
    assert_ne!(client.locate(stays.as_str()).as_str(), shard_name(3));
    // `GET` of a hash: `WRONGTYPE`, or nil where reads are coalesced into `MGET`.
    let answer =
        |r: shardis::Result<Option<String>>| r.map_err(|e| e.server_code().map(str::to_owned));
    let unmoved = answer(client.get(stays.as_str()).await);
    let moved = answer(client.get(key.as_str()).await);
    assert_eq!(moved, unmoved);
    // The read moved it, type and all.
    assert_eq!(holders(&all, &key).await, [3]);
    let mut c = direct(&all[3]).await;
    let t: String = redis::cmd("TYPE")
        .arg(&key)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(t, "hash");
}
