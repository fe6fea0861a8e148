//! Shared helpers for the integration tests: isolated redis-servers and clients over them.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use shardis::local::RedisServer;
use shardis::{Client, ClientBuilder};

/// Starts `n` isolated redis-servers, failing the test with a clear message if
/// `redis-server` is missing (tests never skip silently).
pub fn servers(n: usize) -> Vec<RedisServer> {
    (0..n)
        .map(|_| RedisServer::start().unwrap_or_else(|e| panic!("cannot start redis-server: {e}")))
        .collect()
}

/// The shard name of the i-th server.
pub fn shard_name(i: usize) -> String {
    format!("shard-{i}")
}

/// A builder with one shard per server, named `shard-0`, `shard-1`, ...
pub fn builder(servers: &[RedisServer]) -> ClientBuilder {
    servers
        .iter()
        .enumerate()
        .fold(Client::builder(), |b, (i, s)| {
            b.shard(shard_name(i), s.url())
        })
}

/// A connected client with one shard per server.
pub async fn client(servers: &[RedisServer]) -> Client {
    builder(servers).build().await.expect("client builds")
}

/// A plain redis-rs connection straight to one server, bypassing shardis.
pub async fn direct(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("direct connection")
}

/// `DBSIZE` of a server, asked directly.
pub async fn dbsize(server: &RedisServer) -> usize {
    let mut conn = direct(server).await;
    redis::cmd("DBSIZE")
        .query_async(&mut conn)
        .await
        .expect("DBSIZE")
}

/// Polls `check` every 20 ms until it is true or `limit` passes; returns whether it became true.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
