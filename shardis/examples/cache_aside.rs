//! Cache-aside over a shardis fleet in front of a slow database.
//!
//! ```text
//! cargo run -p shardis --example cache_aside -- redis://127.0.0.1:6379 [redis://...]
//! ```
//!
//! With no URL it starts two local redis-servers (needs `redis-server` on PATH). It shows a
//! stampede of 1 000 concurrent requests on one cold key calling the database once, hits
//! afterwards, a batch read-through, a cached "does not exist", and invalidation by tag.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shardis::cache::{Cache, Codec};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

#[derive(Debug)]
struct DbError(String);
impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "database: {}", self.0)
    }
}
impl std::error::Error for DbError {}

/// A fake database: 200 ms per query, counting its queries.
#[derive(Clone, Default)]
struct Db {
    queries: Arc<AtomicUsize>,
}

impl Db {
    async fn user(&self, id: u64) -> Result<Option<User>, DbError> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok((id < 1000).then(|| User {
            id,
            name: format!("user {id}"),
        }))
    }

    async fn users(&self, keys: &[String]) -> Result<HashMap<String, User>, DbError> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(keys
            .iter()
            .filter_map(|k| {
                let id: u64 = k.strip_prefix("user:")?.parse().ok()?;
                (id < 1000).then(|| {
                    let u = User {
                        id,
                        name: format!("user {id}"),
                    };
                    (k.clone(), u)
                })
            })
            .collect())
    }

    fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut urls: Vec<String> = std::env::args().skip(1).collect();
    let mut local = Vec::new();
    if urls.is_empty() {
        for _ in 0..2 {
            let server = shardis_testkit::RedisServer::start()?;
            urls.push(server.url());
            local.push(server);
        }
    }
    let client = urls
        .iter()
        .enumerate()
        .fold(shardis::Client::builder(), |b, (i, url)| {
            b.shard(format!("cache-{i}"), url)
        })
        .build()
        .await?;
    let cache = Cache::builder(client)
        .namespace("example:v1")
        .ttl(Duration::from_secs(600))
        .codec(Codec::MessagePack)
        .build();
    cache.invalidate_pattern("*").await?;
    let db = Db::default();

    // 1 000 concurrent requests on one cold key: one database query.
    let started = Instant::now();
    let requests: Vec<_> = (0..1000)
        .map(|_| {
            let (cache, db) = (cache.clone(), db.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load("user:7", move || async move { db.user(7).await })
                    .await
            })
        })
        .collect();
    for r in requests {
        r.await??;
    }
    println!(
        "stampede: 1000 requests on a cold key in {:?}, database queries: {}",
        started.elapsed(),
        db.queries()
    );

    let started = Instant::now();
    for _ in 0..100 {
        let db = db.clone();
        let _: Option<User> = cache
            .get_or_load("user:7", move || async move { db.user(7).await })
            .await?;
    }
    println!(
        "100 hits in {:?}, database queries: {}",
        started.elapsed(),
        db.queries()
    );

    // A batch: one MGET per shard, one database query for the missing keys.
    let keys: Vec<String> = (0..20).map(|i| format!("user:{i}")).collect();
    let users: Vec<Option<User>> = {
        let db = db.clone();
        cache
            .get_many_or_load(&keys, move |missing: Vec<String>| async move {
                db.users(&missing).await
            })
            .await?
    };
    println!(
        "batch of {}: {} found, database queries: {}",
        keys.len(),
        users.iter().flatten().count(),
        db.queries()
    );

    // "Does not exist" is cached too.
    for _ in 0..3 {
        let db = db.clone();
        let none: Option<User> = cache
            .get_or_load("user:5000", move || async move { db.user(5000).await })
            .await?;
        assert!(none.is_none());
    }
    println!(
        "3 lookups of a missing user, database queries: {}",
        db.queries()
    );

    // Tags: invalidate everything of a tenant, over every shard.
    for i in 0..10 {
        let key = format!("tenant:3:user:{i}");
        cache.set_tagged(key.as_str(), &i, &["tenant:3"]).await?;
    }
    println!(
        "tenant:3 invalidated: {} keys",
        cache.invalidate_tag("tenant:3").await?
    );
    drop(local);
    Ok(())
}
