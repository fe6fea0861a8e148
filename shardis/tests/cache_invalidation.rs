//! Cache invalidation over real redis-servers: by key, by tag (keys spread over every shard),
//! by pattern (SCAN on every shard), namespaces kept apart.
#![cfg(feature = "cache")]

mod common;
#[path = "cache_support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use shardis::cache::Cache;
use support::*;

#[tokio::test]
async fn invalidate_deletes_one_key() {
    let servers = servers(2);
    let cache = Cache::builder(client(&servers).await)
        .namespace("n")
        .build();
    cache.set("user:1", &user(1)).await.unwrap();
    assert!(cache.invalidate("user:1").await.unwrap());
    assert!(!cache.invalidate("user:1").await.unwrap());
    assert_eq!(cache.get::<_, User>("user:1").await.unwrap(), None);
}

#[tokio::test]
async fn a_tag_reaches_its_keys_on_every_shard() {
    let servers = servers(3);
    let client = client(&servers).await;
    let cache = Cache::builder(client.clone()).namespace("app").build();
    let mut shards = HashSet::new();
    for i in 0..1200 {
        let key = format!("user:{i}");
        let tags: &[&str] = if i % 2 == 0 {
            &["tenant:7", "users"]
        } else {
            &["users"]
        };
        cache
            .set_tagged(key.as_str(), &user(i), tags)
            .await
            .unwrap();
        if i % 2 == 0 {
            shards.insert(client.locate(cache.redis_key(key.as_str()).as_slice()));
        }
    }
    assert_eq!(shards.len(), 3, "tenant:7's keys are on every shard");
    // More than one SPOP batch (500) of members.
    assert_eq!(cache.invalidate_tag("tenant:7").await.unwrap(), 600);
    for i in 0..1200u64 {
        let got: Option<User> = cache.get(format!("user:{i}").as_str()).await.unwrap();
        assert_eq!(got.is_some(), i % 2 == 1, "user:{i}");
    }
    // The set is gone; a second call finds nothing. Keys deleted meanwhile count as 0.
    assert_eq!(cache.invalidate_tag("tenant:7").await.unwrap(), 0);
    cache.invalidate("user:1").await.unwrap();
    assert_eq!(cache.invalidate_tag("users").await.unwrap(), 599);
    let left: usize = {
        let mut n = 0;
        for s in &servers {
            n += dbsize(s).await;
        }
        n
    };
    assert_eq!(left, 0, "values and tag sets are all gone");
}

#[tokio::test]
async fn a_tag_set_lives_as_long_as_its_longest_value() {
    let servers = servers(1);
    let client = client(&servers).await;
    let cache = Cache::builder(client.clone())
        .ttl(std::time::Duration::from_secs(100))
        .ttl_jitter(0.0)
        .build();
    cache.set_tagged("a", &1, &["t"]).await.unwrap();
    let ttl = client.ttl("shardis:tag:t").await.unwrap();
    assert!(
        matches!(ttl, shardis::Ttl::ExpiresIn(d) if d > std::time::Duration::from_secs(95)),
        "{ttl:?}"
    );
}

#[tokio::test]
async fn a_pattern_is_scanned_on_every_shard_within_the_namespace() {
    let servers = servers(3);
    let client = client(&servers).await;
    let cache = Cache::builder(client.clone()).namespace("app*[v1]").build();
    let other = Cache::builder(client.clone()).namespace("appX1").build();
    for i in 0..1500 {
        cache.set(format!("user:{i}").as_str(), &i).await.unwrap();
        if i < 20 {
            cache.set(format!("order:{i}").as_str(), &i).await.unwrap();
            other.set(format!("user:{i}").as_str(), &i).await.unwrap();
        }
    }
    for s in &servers {
        assert!(dbsize(s).await > 300, "keys on every shard");
    }
    let progress = AtomicUsize::new(0);
    let n = cache
        .invalidate_pattern_with_progress("user:*", &progress)
        .await
        .unwrap();
    assert_eq!(n, 1500);
    assert_eq!(progress.load(Ordering::Relaxed), 1500);
    assert_eq!(cache.get::<_, i32>("user:3").await.unwrap(), None);
    assert_eq!(cache.get::<_, i32>("order:3").await.unwrap(), Some(3));
    // Another namespace (and one that the escaped glob characters would have matched) stays.
    assert_eq!(other.get::<_, i32>("user:3").await.unwrap(), Some(3));
    assert_eq!(cache.invalidate_pattern("user:*").await.unwrap(), 0);
    assert_eq!(cache.invalidate_pattern("*").await.unwrap(), 20);
}
