//! `shardis demo`: the whole story over real local redis-servers, in a few seconds — keys spread
//! by name, read back, a primary killed while reads go on from its replica, and a shard added
//! live.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::json;
use shardis::{Client, ErrorKind, Event, Health, ReadFrom, ShardSpec, Topology};
use shardis_testkit::RedisServer;

use crate::error::Error;

use crate::output;
use crate::Format;

const SHARDS: [&str; 3] = ["cache-a", "cache-b", "cache-c"];
const ADDED: &str = "cache-d";
const BATCH: usize = 500;

struct Pair {
    name: &'static str,
    primary: RedisServer,
    replica: Option<RedisServer>,
}

pub async fn run(format: Format, keys: usize) -> Result<ExitCode, Error> {
    let table = format == Format::Table;
    let say = |line: String| {
        if table {
            println!("{line}");
        }
    };
    say(format!(
        "starting {} local redis-server primaries, each with a replica (--replicaof)...",
        SHARDS.len()
    ));
    let mut pairs = Vec::new();
    for name in SHARDS {
        let primary = RedisServer::start()?;
        let port = primary.port().to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port])?;
        say(format!(
            "  {name:<8} primary {}  replica {}",
            primary.url(),
            replica.url()
        ));
        wait_linked(&replica)?;
        pairs.push(Pair {
            name,
            primary,
            replica: Some(replica),
        });
    }
    let topology = |pairs: &[Pair]| {
        Topology::new(
            pairs
                .iter()
                .map(|p| {
                    let spec = ShardSpec::new(p.name, p.primary.url());
                    match &p.replica {
                        Some(r) => spec.replica(r.url()),
                        None => spec,
                    }
                })
                .collect(),
        )
    };
    let mut builder = Client::builder()
        .hash_tag("{}")
        .read_from(ReadFrom::PrimaryThenReplica);
    for spec in topology(&pairs)?.shards() {
        let primary = spec.primary().map(|p| p.to_string()).unwrap_or_default();
        let mut s = ShardSpec::new(spec.name().as_str(), primary);
        for r in spec.replicas() {
            s = s.replica(r.to_string());
        }
        builder = builder.shard_spec(s);
    }
    let client = builder.build().await?;
    let mut events = client.events();

    // 1. Write, count where keys landed (asking each server directly), read back.
    say(format!(
        "\nwriting {keys} keys with MSET in batches of {BATCH} (each batch split per shard)..."
    ));
    let all: Vec<(String, String)> = (0..keys)
        .map(|i| (format!("user:{i}"), format!("value-{i}")))
        .collect();
    for chunk in all.chunks(BATCH) {
        client.mset(chunk).await?;
    }
    for p in &pairs {
        if let Some(replica) = &p.replica {
            replica.wait_caught_up(&p.primary, Duration::from_secs(10))?;
        }
    }
    let spread = spread(&pairs, keys).await?;
    let mismatches = read_back(&client, &all).await?;
    if table {
        print_spread(&spread);
        println!(
            "read back {keys} keys with MGET: {} correct, {mismatches} wrong",
            keys - mismatches
        );
    }
    let tagged = ["{user:42}:profile", "{user:42}:cart", "{user:42}:sessions"];
    let tagged_shards: Vec<String> = tagged
        .iter()
        .map(|k| client.locate(*k).to_string())
        .collect();
    say("hash tag {} keeps related keys together:".into());
    for (k, s) in tagged.iter().zip(&tagged_shards) {
        say(format!("  {k:<20} -> {s}"));
    }

    // Cache layer: a stampede on one cold key loads it once.
    say(format!(
        "\n{} concurrent cache requests (get_or_load) on one cold key, 200 ms loader...",
        crate::demo_cache::REQUESTS
    ));
    let (loader_calls, stampede_ms) = crate::demo_cache::stampede(&client).await?;
    say(format!(
        "  all answered in {stampede_ms:.0} ms; the loader ran {loader_calls} time(s)"
    ));

    // 2. Kill a primary: reads go on from its replica; writes to it fail fast once it is down.
    say(format!(
        "\nkilling {}'s primary (SIGKILL) and reading every key again...",
        pairs[0].name
    ));
    let killed_at = Instant::now();
    pairs[0].primary.kill();
    let failed_before = read_back(&client, &all).await?;
    let reread_ms = killed_at.elapsed().as_secs_f64() * 1e3;
    let down_ms = loop {
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Ok(Event::Health {
                to: Health::Down,
                shard,
                ..
            })) if shard == pairs[0].name => break Some(killed_at.elapsed().as_secs_f64() * 1e3),
            Ok(Ok(_)) => continue,
            _ => break None,
        }
    };
    let write = (0..10_000)
        .map(|i| format!("w:{i}"))
        .find(|k| client.locate(k.as_str()) == pairs[0].name)
        .unwrap_or_default();
    let write_error = client.set(write.as_str(), 1).await.err();
    if table {
        println!(
            "read back {keys} keys in {reread_ms:.0} ms: {} correct, {failed_before} wrong ({}'s from its replica)",
            keys - failed_before,
            pairs[0].name
        );
        match down_ms {
            Some(ms) => println!(
                "{}'s primary marked down {ms:.0} ms after the kill",
                pairs[0].name
            ),
            None => println!("{}'s primary was not marked down within 5 s", pairs[0].name),
        }
        if let Some(e) = &write_error {
            println!("a write to {} now fails fast: {e}", pairs[0].name);
        }
    }

    // 3. Add a shard live.
    say(format!("\nadding shard {ADDED} live (update_topology)..."));
    let primary = RedisServer::start()?;
    say(format!("  {ADDED:<8} primary {}", primary.url()));
    pairs.push(Pair {
        name: ADDED,
        primary,
        replica: None,
    });
    let started = Instant::now();
    let version = client.update_topology(topology(&pairs)?).await?;
    let swap_ms = started.elapsed().as_secs_f64() * 1e3;
    let more: Vec<(String, String)> = (0..keys)
        .map(|i| (format!("new:{i}"), format!("value-{i}")))
        .collect();
    for chunk in more.chunks(BATCH) {
        // cache-a's primary is down: its share of new keys fails fast, the rest is written.
        let live: Vec<&(String, String)> = chunk
            .iter()
            .filter(|(k, _)| client.locate(k.as_str()) != pairs[0].name)
            .collect();
        let live: Vec<(&str, &str)> = live.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        client.mset(&live).await?;
    }
    let added_keys = dbsize(&pairs[3].primary)?;
    if table {
        println!(
            "routing table version {version} in force after {swap_ms:.0} ms; {added_keys} of {keys} new keys \
             ({:.1}%) landed on {ADDED}",
            100.0 * added_keys as f64 / keys.max(1) as f64
        );
        println!("stopping the servers.");
    } else {
        output::json(&json!({
            "keys_written": keys,
            "keys_read_back": keys - mismatches,
            "mismatches": mismatches,
            "shards": spread.iter().map(|(n, url, count, share)| json!({
                "name": n, "endpoint": url, "keys": count, "share": share,
            })).collect::<Vec<_>>(),
            "hash_tag": tagged.iter().zip(&tagged_shards)
                .map(|(k, s)| json!({"key": k, "shard": s})).collect::<Vec<_>>(),
            "failover": {
                "killed": pairs[0].name,
                "reads_ok": keys - failed_before,
                "reads_failed": failed_before,
                "marked_down_ms": down_ms,
                "write_error_kind": write_error.as_ref().map(|e| e.kind().as_str()),
            },
            "cache_stampede": {
                "requests": crate::demo_cache::REQUESTS,
                "loader_calls": loader_calls,
                "ms": stampede_ms,
            },
            "added_shard": {
                "name": ADDED,
                "version": version,
                "swap_ms": swap_ms,
                "new_keys_on_it": added_keys,
            },
        }));
    }
    drop(client);
    drop(pairs);
    let stored: usize = spread.iter().map(|r| r.2).sum();
    if mismatches > 0 || stored != keys || failed_before > 0 {
        return Err(Error::new(
            ErrorKind::Server,
            format!(
                "demo check failed: {stored} keys stored, {mismatches} read back wrong, \
                 {failed_before} wrong after the failover"
            ),
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// Each shard's name, primary URL, key count (asked directly) and share.
async fn spread(pairs: &[Pair], keys: usize) -> Result<Vec<(String, String, usize, f64)>, Error> {
    let mut rows = Vec::new();
    for p in pairs {
        let count = dbsize(&p.primary)?;
        rows.push((
            p.name.to_owned(),
            p.primary.url(),
            count,
            count as f64 / keys.max(1) as f64,
        ));
    }
    Ok(rows)
}

fn print_spread(rows: &[(String, String, usize, f64)]) {
    println!();
    println!(
        "{:<8}  {:<24}  {:>8}  {:>6}",
        "shard", "primary", "keys", "share"
    );
    for (name, url, count, share) in rows {
        println!("{name:<8}  {url:<24}  {count:>8}  {:>5.1}%", share * 100.0);
    }
    println!();
}

/// How many of `all` do not read back as written.
async fn read_back(client: &Client, all: &[(String, String)]) -> Result<usize, Error> {
    let mut wrong = 0;
    for chunk in all.chunks(BATCH) {
        let names: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
        let values: Vec<Option<String>> = client.mget(&names).await?;
        wrong += chunk
            .iter()
            .zip(&values)
            .filter(|((_, want), got)| got.as_deref() != Some(want.as_str()))
            .count();
    }
    Ok(wrong)
}

/// How many keys db 0 of `server` holds, asked directly.
fn dbsize(server: &RedisServer) -> Result<usize, Error> {
    // INFO keyspace: "db0:keys=3429,expires=0,avg_ttl=0"; no line when empty.
    Ok(server
        .info_field("keyspace", "db0")?
        .and_then(|v| {
            v.split(',')
                .find_map(|kv| kv.strip_prefix("keys="))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0))
}

/// Waits until a replica's link to its primary is up.
pub(crate) fn wait_linked(replica: &RedisServer) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while replica
        .info_field("replication", "master_link_status")?
        .as_deref()
        != Some("up")
    {
        if Instant::now() > deadline {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "replica {} did not link to its primary in 10 s",
                    replica.url()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
