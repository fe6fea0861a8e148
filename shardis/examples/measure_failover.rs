//! Measures, at the default settings, the time from a primary's SIGKILL to the first read
//! served by its replica and to the shard being marked down — with a reader running, and
//! idle (probes only).
//!
//! `cargo run --release --example measure_failover` (needs `redis-server`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use shardis::{Client, Event, Health, ReadFrom, ShardSpec};
use shardis_testkit::RedisServer;

const ROUNDS: usize = 10;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut busy = (Vec::new(), Vec::new());
    let mut idle = Vec::new();
    for round in 0..ROUNDS * 2 {
        let with_reader = round % 2 == 0;
        let (first_read, down) = one(with_reader).await?;
        if with_reader {
            busy.0.push(first_read.unwrap_or(f64::NAN));
            busy.1.push(down);
        } else {
            idle.push(down);
        }
    }
    println!("{ROUNDS} rounds each, default health settings (probe every 250 ms, timeout 100 ms, down after 2 failures)");
    println!("{:<52} {:>9} {:>9}", "", "median", "max");
    let row = |what: &str, v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{what:<52} {:>6.1} ms {:>6.1} ms",
            v[v.len() / 2],
            v[v.len() - 1]
        );
    };
    row(
        "reader running: kill -> first read from the replica",
        &mut busy.0,
    );
    row(
        "reader running: kill -> shard's primary marked down",
        &mut busy.1,
    );
    row("idle (probes only): kill -> primary marked down", &mut idle);
    Ok(())
}

/// One primary with one replica; returns (ms to the first replica read, ms to marked down).
async fn one(with_reader: bool) -> Result<(Option<f64>, f64), Box<dyn std::error::Error>> {
    let mut primary = RedisServer::start()?;
    let port = primary.port().to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port])?;
    while replica
        .info_field("replication", "master_link_status")?
        .as_deref()
        != Some("up")
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let client = Client::builder()
        .shard_spec(ShardSpec::new("a", primary.url()).replica(replica.url()))
        .read_from(ReadFrom::PrimaryThenReplica)
        .build()
        .await?;
    client.set("k", "v").await?;
    replica.wait_caught_up(&primary, Duration::from_secs(10))?;
    let mut events = client.events();
    // Let the probe cycle run to a random phase, as it would in production.
    tokio::time::sleep(Duration::from_millis(100 + fastrand() % 250)).await;

    let killed = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The reader keeps reading until the shard is marked down; it reports when its first read
    // issued after the kill succeeded (the primary being dead, that read came from the replica).
    let reader = with_reader.then(|| {
        let (client, killed, stop) = (client.clone(), killed.clone(), stop.clone());
        tokio::spawn(async move {
            let mut first = None;
            let give_up = Instant::now() + Duration::from_secs(10);
            // Until the shard is marked down and a read issued after the kill has succeeded.
            while !(stop.load(std::sync::atomic::Ordering::Relaxed) && first.is_some())
                && Instant::now() < give_up
            {
                let started = Instant::now();
                let ok = client.get::<_, Option<String>>("k").await.is_ok();
                let at = *killed.lock().unwrap();
                if let Some(at) = at {
                    if ok && started >= at && first.is_none() {
                        first = Some(at.elapsed().as_secs_f64() * 1e3);
                    }
                }
            }
            first
        })
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let at = Instant::now();
    *killed.lock().unwrap() = Some(at);
    primary.kill();
    let down = loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Ok(Event::Health {
                to: Health::Down, ..
            })) => break at.elapsed().as_secs_f64() * 1e3,
            Ok(Ok(_)) => continue,
            _ => break f64::NAN,
        }
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let first_read = match reader {
        Some(r) => r.await.ok().flatten(),
        None => None,
    };
    Ok((first_read, down))
}

/// A little jitter without a dependency.
fn fastrand() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0)
}
