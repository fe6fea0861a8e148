//! The API tour over two local redis-servers started for the occasion.
//!
//! Run with `cargo run --example basic` (needs `redis-server` on PATH).

use std::time::Duration;

use shardis_testkit::RedisServer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = RedisServer::start()?;
    let b = RedisServer::start()?;
    let client = shardis::Client::builder()
        .shard("cache-a", a.url())
        .shard("cache-b", b.url())
        .hash_tag("{}")
        .build()
        .await?;

    client.set("user:1", "alice").await?;
    client
        .set_ex("session:9", b"\x00bytes", Duration::from_secs(60))
        .await?;
    let v: Option<String> = client.get("user:1").await?;
    println!("user:1 = {v:?} (on {})", client.locate("user:1"));

    client.mset(&[("a", "1"), ("b", "2"), ("c", "3")]).await?;
    let vals: Vec<Option<String>> = client.mget(&["a", "b", "missing", "c"]).await?;
    println!("mget = {vals:?}");

    let mut incr = redis::cmd("INCR");
    incr.arg("counter");
    let r: i64 = client.query("counter", &incr).await?;
    println!("counter = {r}");

    let n = client.del_many(&["a", "b", "c", "missing"]).await?;
    println!("deleted {n} keys");
    Ok(())
}
