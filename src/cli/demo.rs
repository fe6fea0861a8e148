//! `shardis demo`: the whole path over real local redis-servers, in a few seconds.

use std::process::ExitCode;

use serde_json::json;
use shardis::local::RedisServer;
use shardis::{Client, Error, ErrorKind};

use crate::output;
use crate::Format;

const SHARDS: [&str; 3] = ["cache-a", "cache-b", "cache-c"];
const BATCH: usize = 500;

pub async fn run(format: Format, keys: usize) -> Result<ExitCode, Error> {
    let table = format == Format::Table;
    let say = |line: String| {
        if table {
            println!("{line}");
        }
    };
    say(format!("starting {} local redis-servers...", SHARDS.len()));
    let servers = SHARDS
        .iter()
        .map(|_| RedisServer::start())
        .collect::<Result<Vec<_>, _>>()?;
    let mut builder = Client::builder().hash_tag("{}");
    for (name, server) in SHARDS.iter().zip(&servers) {
        say(format!("  {name:<8} {}", server.url()));
        builder = builder.shard(*name, server.url());
    }
    let client = builder.build().await?;

    say(format!(
        "writing {keys} keys with MSET in batches of {BATCH} (each batch split per shard)..."
    ));
    let all: Vec<(String, String)> = (0..keys)
        .map(|i| (format!("user:{i}"), format!("value-{i}")))
        .collect();
    for chunk in all.chunks(BATCH) {
        client.mset(chunk).await?;
    }

    // Count what each server really holds, asking it directly rather than the client.
    let mut rows = Vec::new();
    for (name, server) in SHARDS.iter().zip(&servers) {
        let direct = redis::Client::open(server.url()).map_err(redis_error)?;
        let mut conn = direct
            .get_multiplexed_async_connection()
            .await
            .map_err(redis_error)?;
        let count: usize = redis::cmd("DBSIZE")
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        rows.push((name.to_string(), server.url(), count));
    }

    let mut mismatches = 0usize;
    for chunk in all.chunks(BATCH) {
        let names: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
        let values: Vec<Option<String>> = client.mget(&names).await?;
        mismatches += chunk
            .iter()
            .zip(&values)
            .filter(|((_, want), got)| got.as_deref() != Some(want.as_str()))
            .count();
    }

    let tagged = ["{user:42}:profile", "{user:42}:cart", "{user:42}:sessions"];
    let tagged_shards: Vec<String> = tagged
        .iter()
        .map(|k| client.locate(*k).to_string())
        .collect();

    if table {
        println!();
        println!(
            "{:<8}  {:<24}  {:>8}  {:>6}",
            "shard", "endpoint", "keys", "share"
        );
        for (name, url, count) in &rows {
            let share = 100.0 * *count as f64 / keys.max(1) as f64;
            println!("{name:<8}  {url:<24}  {count:>8}  {share:>5.1}%");
        }
        println!();
        println!(
            "read back {keys} keys with MGET: {} correct, {mismatches} wrong",
            keys - mismatches
        );
        println!("hash tag {{}} keeps related keys together:");
        for (k, s) in tagged.iter().zip(&tagged_shards) {
            println!("  {k:<20} -> {s}");
        }
        println!("stopping the servers.");
    } else {
        output::json(&json!({
            "keys_written": keys,
            "keys_read_back": keys - mismatches,
            "mismatches": mismatches,
            "shards": rows.iter().map(|(name, url, count)| json!({
                "name": name, "endpoint": url, "keys": count,
                "share": *count as f64 / keys.max(1) as f64,
            })).collect::<Vec<_>>(),
            "hash_tag": tagged.iter().zip(&tagged_shards)
                .map(|(k, s)| json!({"key": k, "shard": s})).collect::<Vec<_>>(),
        }));
    }
    drop(client);
    drop(servers);
    let stored: usize = rows.iter().map(|r| r.2).sum();
    if mismatches > 0 || stored != keys {
        return Err(Error::new(
            ErrorKind::Server,
            format!("demo check failed: {stored} keys stored, {mismatches} read back wrong"),
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn redis_error(e: redis::RedisError) -> Error {
    Error::new(ErrorKind::Connection, e.to_string())
}
