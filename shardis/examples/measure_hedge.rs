//! Measures hedged reads: the read latency of 32 readers while a primary hangs (SIGSTOP), and
//! the extra reads hedging sends in steady state, without hedging, with `hedge_after_ms = 5`
//! and with `"adaptive"`. Settings as in the acceptance runs: `primary_then_replica`, a 300 ms
//! response timeout, default probes (every 250 ms, 100 ms timeout, down after 2 failures).
//!
//! `cargo run --release --example measure_hedge [ROUNDS]` (needs `redis-server`).
//!
//! Extra reads are counted by the servers: every key read is one keyspace hit or miss in
//! `INFO stats`, merged or not, so (hits + misses on primary and replica) / (reads the client
//! made) − 1 is the share of reads sent twice.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shardis::{Client, HedgeAfter, ReadFrom, ShardSpec};
use shardis_testkit::RedisServer;

const READERS: usize = 32;
const KEYS: usize = 1000;
const STEADY: Duration = Duration::from_secs(3);
const HANG: Duration = Duration::from_secs(2);

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// One run: steady-state extra share, hang p50, p99 and max (µs), failed reads in the hang.
type Run = (f64, u64, u64, u64, u64);

#[tokio::main]
async fn main() -> Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let variants = [
        ("off", HedgeAfter::Off),
        ("5 ms", HedgeAfter::from(5)),
        ("adaptive", HedgeAfter::Adaptive),
    ];
    println!(
        "{READERS} readers (GET of random keys), primary_then_replica, response timeout 300 ms, default probes; {rounds} rounds per variant, interleaved"
    );
    let mut rows: Vec<Vec<Run>> = vec![Vec::new(); variants.len()];
    for _ in 0..rounds {
        for (i, (_, hedge)) in variants.iter().enumerate() {
            rows[i].push(one(*hedge).await?);
        }
    }
    println!(
        "{:<10} {:>14} {:>16} {:>16} {:>15} {:>9}",
        "hedge", "steady extra", "hang p50 us", "hang p99 us", "hang max us", "errors"
    );
    for ((name, _), runs) in variants.iter().zip(&mut rows) {
        let med = |f: &dyn Fn(&Run) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        println!(
            "{name:<10} {:>13.2}% {:>16.0} {:>16.0} {:>15.0} {:>9.0}",
            med(&|r| r.0 * 100.0),
            med(&|r| r.1 as f64),
            med(&|r| r.2 as f64),
            med(&|r| r.3 as f64),
            med(&|r| r.4 as f64),
        );
    }
    println!("(medians over the rounds; latencies of the reads that started during the hang)");
    Ok(())
}

/// `keyspace_hits + keyspace_misses` of a server.
fn key_reads(s: &RedisServer) -> Result<u64> {
    let n = |f| -> Result<u64> {
        Ok(s.info_field("stats", f)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    };
    Ok(n("keyspace_hits")? + n("keyspace_misses")?)
}

/// One fresh primary and replica. Returns (steady extra share, hang p50, p99, max in µs,
/// failed reads during the hang).
async fn one(hedge: HedgeAfter) -> Result<Run> {
    let primary = RedisServer::start()?;
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
        .response_timeout(Duration::from_millis(300))
        .hedge_after_ms(hedge)
        .build()
        .await?;
    let items: Vec<(String, String)> = (0..KEYS)
        .map(|i| (format!("k{i}"), "v".repeat(32)))
        .collect();
    client.mset(&items).await?;
    replica.wait_caught_up(&primary, Duration::from_secs(10))?;

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    // Reads that start after this instant (µs since `t0`) are timed into the hang histogram.
    let t0 = Instant::now();
    let hang_from = Arc::new(AtomicU64::new(u64::MAX));
    let hang_to = Arc::new(AtomicU64::new(u64::MAX));
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let tasks: Vec<_> = (0..READERS)
        .map(|t| {
            let (client, stop, reads, errors, hang_from, hang_to, hist) = (
                client.clone(),
                stop.clone(),
                reads.clone(),
                errors.clone(),
                hang_from.clone(),
                hang_to.clone(),
                hist.clone(),
            );
            tokio::spawn(async move {
                let mut rng = t as u64 * 7919 + 1;
                let mut local = Histogram::<u64>::new(3).expect("histogram");
                while !stop.load(Ordering::Relaxed) {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let key = format!("k{}", rng % KEYS as u64);
                    let start = t0.elapsed().as_micros() as u64;
                    let r = client.get::<_, Option<String>>(key.as_str()).await;
                    let took = t0.elapsed().as_micros() as u64 - start;
                    reads.fetch_add(1, Ordering::Relaxed);
                    let in_hang = start >= hang_from.load(Ordering::Relaxed)
                        && start < hang_to.load(Ordering::Relaxed);
                    if in_hang {
                        let _ = local.record(took.max(1));
                        if r.is_err() {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                hist.lock()
                    .expect("histogram")
                    .add(&local)
                    .expect("same bounds");
            })
        })
        .collect();

    // Steady state: extra reads the servers see.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (r0, k0) = (
        reads.load(Ordering::Relaxed),
        key_reads(&primary)? + key_reads(&replica)?,
    );
    tokio::time::sleep(STEADY).await;
    let (r1, k1) = (
        reads.load(Ordering::Relaxed),
        key_reads(&primary)? + key_reads(&replica)?,
    );
    // The two counters are read a moment apart: a share a hair below zero is that gap, shown as 0.
    let extra = ((k1 - k0) as f64 / (r1 - r0).max(1) as f64 - 1.0).max(0.0);

    // The hang.
    primary.pause()?;
    hang_from.store(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
    tokio::time::sleep(HANG).await;
    hang_to.store(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
    primary.resume()?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let h = hist.lock().expect("histogram");
    Ok((
        extra,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max(),
        errors.load(Ordering::Relaxed),
    ))
}
