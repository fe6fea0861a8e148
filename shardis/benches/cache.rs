//! The cache layer's hit path against the bare client: `cache.get_or_load` of a cached key
//! (envelope, decode, XFetch check, metrics call, degraded-shard check) against `client.get`
//! of the same key plus `serde_json` decoding of the same payload. Both run against one local
//! redis-server over loopback, one request at a time, so the round trip dominates both; the
//! ratio is the layer's overhead.
//!
//! `cargo bench -p shardis --bench cache` (needs `redis-server` on PATH or `REDIS_SERVER_BIN`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use serde::{Deserialize, Serialize};
use shardis::cache::Cache;
use shardis_testkit::RedisServer;

#[derive(Debug, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    email: String,
    tags: Vec<String>,
}

#[derive(Debug)]
struct Never;
impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}
impl std::error::Error for Never {}

fn user() -> User {
    User {
        id: 42,
        name: "Ada Lovelace".into(),
        email: "ada@example.com".into(),
        tags: vec!["admin".into(), "beta".into()],
    }
}

fn hit_path(c: &mut Criterion) {
    let server = RedisServer::start().expect("redis-server");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (client, cache) = rt.block_on(async {
        let client = shardis::Client::builder()
            .shard("a", server.url())
            .build()
            .await
            .expect("client");
        let cache = Cache::builder(client.clone())
            .ttl(Duration::from_secs(3600))
            .build();
        cache.set("user:42", &user()).await.expect("set");
        client
            .set("plain:42", serde_json::to_vec(&user()).expect("json"))
            .await
            .expect("set");
        (client, cache)
    });
    let mut group = c.benchmark_group("hit");
    group.bench_function("client_get_and_decode", |b| {
        b.to_async(&rt).iter(|| async {
            let raw: Vec<u8> = client.get("plain:42").await.expect("get");
            let u: User = serde_json::from_slice(&raw).expect("decode");
            black_box(u)
        })
    });
    group.bench_function("cache_get_or_load", |b| {
        b.to_async(&rt).iter(|| async {
            let u: User = cache
                .get_or_load("user:42", || async { Err::<User, _>(Never) })
                .await
                .expect("hit");
            black_box(u)
        })
    });
    group.bench_function("cache_get", |b| {
        b.to_async(&rt).iter(|| async {
            let u: Option<User> = cache.get("user:42").await.expect("get");
            black_box(u)
        })
    });
    group.finish();
}

criterion_group!(benches, hit_path);
criterion_main!(benches);
