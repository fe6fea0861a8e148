//! `shardis demo --sentinel`: the deploy layout of `deploy/compose.yaml` with local processes —
//! three shards with a replica each, three `redis-sentinel`s started from
//! `deploy/sentinel/sentinel.conf` — then a primary killed under reads and writes while the
//! sentinels fail it over and the client follows `+switch-master`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use shardis::{Client, Event, ReadFrom, SentinelSpec, ShardSpec};
use shardis_testkit::{Monitored, RedisSentinel, RedisServer};

use crate::demo::wait_linked;
use crate::error::Error;
use crate::output;
use crate::Format;

const SHARDS: [&str; 3] = ["cache-a", "cache-b", "cache-c"];
/// The deploy template, as built into the binary (the demo runs from any directory).
const TEMPLATE: &str = include_str!("../../deploy/sentinel/sentinel.conf");

pub async fn run(format: Format, keys: usize) -> Result<ExitCode, Error> {
    let table = format == Format::Table;
    let say = |line: String| {
        if table {
            println!("{line}");
        }
    };
    say(
        "starting 3 primaries with a replica each, and 3 redis-sentinels from \
         deploy/sentinel/sentinel.conf (down-after 1 s)..."
            .into(),
    );
    let mut primaries = Vec::new();
    let mut replicas = Vec::new();
    for name in SHARDS {
        let primary = RedisServer::start()?;
        let port = primary.port().to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port])?;
        wait_linked(&replica)?;
        say(format!(
            "  {name:<8} primary {}  replica {}",
            primary.url(),
            replica.url()
        ));
        primaries.push(primary);
        replicas.push(replica);
    }
    let dir = tempfile::tempdir().map_err(|e| Error::new(shardis::ErrorKind::Io, e.to_string()))?;
    let template = dir.path().join("sentinel.conf");
    std::fs::write(&template, TEMPLATE)
        .map_err(|e| Error::new(shardis::ErrorKind::Io, e.to_string()))?;
    let watched: Vec<Monitored> = SHARDS
        .iter()
        .zip(&primaries)
        .map(|(name, p)| Monitored::new(name, p.port()))
        .collect();
    let mut sentinels = Vec::new();
    for _ in 0..3 {
        sentinels.push(RedisSentinel::start(&template, &watched)?);
    }
    for s in &sentinels {
        for name in SHARDS {
            s.wait_ready(name, 1, 2, Duration::from_secs(20))?;
        }
        say(format!("  sentinel {}", s.url()));
    }
    let addrs: Vec<String> = sentinels.iter().map(RedisSentinel::url).collect();
    let mut builder = Client::builder()
        .read_from(ReadFrom::PrimaryThenReplica)
        .response_timeout(Duration::from_millis(500));
    for name in SHARDS {
        let sentinel = SentinelSpec::new(name, addrs.clone()).refresh(Duration::from_secs(1));
        builder = builder.shard_spec(ShardSpec::sentinel(name, sentinel));
    }
    let client = builder.build().await?;
    for s in client.status().await {
        if let Some(st) = &s.sentinel {
            say(format!(
                "  {} -> primary {} (answered by sentinel {})",
                s.name,
                st.primary.as_deref().unwrap_or("?"),
                st.answered_by.as_deref().unwrap_or("?")
            ));
        }
    }

    say(format!("\nwriting {keys} keys..."));
    for i in 0..keys {
        client.set(format!("user:{i}"), i).await?;
    }
    replicas[0].wait_caught_up(&primaries[0], Duration::from_secs(10))?;

    say("killing cache-a's primary (SIGKILL) under 8 readers and 8 writers...".into());
    let stop = Arc::new(AtomicBool::new(false));
    let counters: Arc<[AtomicU64; 4]> = Arc::new(Default::default()); // reads, read failures, writes, write failures
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let (client, stop, counters) = (client.clone(), stop.clone(), counters.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = t;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("user:{}", i % keys.max(1) as u64);
                if t % 2 == 0 {
                    let ok = client.get::<_, Option<u64>>(key).await.is_ok();
                    counters[0].fetch_add(1, Ordering::Relaxed);
                    counters[1].fetch_add(u64::from(!ok), Ordering::Relaxed);
                } else {
                    let ok = client.set(key, i).await.is_ok();
                    counters[2].fetch_add(1, Ordering::Relaxed);
                    counters[3].fetch_add(u64::from(!ok), Ordering::Relaxed);
                }
                i += 16;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    let mut events = client.events();
    let killed = Instant::now();
    primaries[0].kill();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let moved = loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(Event::SentinelSwitched {
                shard,
                primary,
                sentinel,
            })) if shard == "cache-a" => break Some((primary, sentinel)),
            Ok(_) => continue,
            Err(_) => break None,
        }
    };
    let switched = killed.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let [reads, read_failures, writes, write_failures] =
        [0, 1, 2, 3].map(|i| counters[i].load(Ordering::Relaxed));
    let status = client.status().await;
    if table {
        match &moved {
            Some((primary, sentinel)) => println!(
                "  cache-a now at {primary} (sentinel {sentinel} answered), {switched:.1?} after the kill"
            ),
            None => println!("  cache-a was not failed over within 30 s"),
        }
        println!(
            "  reads: {reads}, failed {read_failures}; writes: {writes}, failed {write_failures} \
             (during the election, fast)"
        );
        println!("\nstopping the servers and sentinels.");
    } else {
        output::json(&json!({
            "failed_over": moved.as_ref().map(|(p, s)| json!({"primary": p, "sentinel": s})),
            "seconds_to_repoint": switched.as_secs_f64(),
            "reads": reads,
            "reads_failed": read_failures,
            "writes": writes,
            "writes_failed": write_failures,
            "shards": status.iter().map(|s| json!({
                "name": s.name.as_str(),
                "primary": s.sentinel.as_ref().and_then(|st| st.primary.clone()),
                "answered_by": s.sentinel.as_ref().and_then(|st| st.answered_by.clone()),
            })).collect::<Vec<_>>(),
        }));
    }
    drop(client);
    drop(sentinels);
    Ok(if moved.is_some() && read_failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
