//! Measures the cache layer (figures for the README's "Cache layer" section):
//!
//! 1. stampede: N processes × M tasks on one cold key with a 200 ms loader: loader calls;
//! 2. a hot key expiring under steady load, early refresh on and off: loader calls per expiry,
//!    and the p50/p99/max of `get_or_load` over the whole run (expiries included) against a
//!    steady-state run on a key that never expires.
//!
//! ```text
//! cargo run --release -p shardis --example measure_cache -- [PROCESSES] [TASKS] [SECONDS]
//! ```
//! Defaults: 4 processes, 250 tasks each, 12 s per hot-key run. It starts two local
//! redis-servers (`redis-server` on PATH, or `REDIS_SERVER_BIN`) and re-runs itself as the
//! stampede's client processes.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shardis::cache::Cache;
use shardis::Client;

#[derive(Debug)]
struct Never;
impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}
impl std::error::Error for Never {}

const CALLS: &str = "measure:loader-calls";

async fn connect(urls: &[String]) -> Client {
    urls.iter()
        .enumerate()
        .fold(Client::builder(), |b, (i, u)| b.shard(format!("s{i}"), u))
        .build()
        .await
        .expect("client")
}

/// A stampede client process: READY, wait for a line, TASKS concurrent loads of `hot`.
async fn child(urls: Vec<String>, tasks: usize) {
    let client = connect(&urls).await;
    let cache = Cache::builder(client.clone())
        .lock_timeout(Duration::from_secs(10))
        .build();
    println!("READY");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("go");
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (cache, client) = (cache.clone(), client.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load("stampede", move || async move {
                        client.incr(CALLS, 1).await.expect("count");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Ok::<_, Never>(vec![7u8; 64])
                    })
                    .await
                    .expect("value")
            })
        })
        .collect();
    for h in handles {
        h.await.expect("task");
    }
}

async fn stampede(urls: &[String], processes: usize, tasks: usize) {
    let client = connect(urls).await;
    let exe = std::env::current_exe().expect("own path");
    let mut children: Vec<_> = (0..processes)
        .map(|_| {
            Command::new(&exe)
                .arg("--child")
                .arg(tasks.to_string())
                .args(urls)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn a client process")
        })
        .collect();
    for c in &mut children {
        let mut out = BufReader::new(c.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("READY");
    }
    let started = Instant::now();
    for c in &mut children {
        c.stdin
            .take()
            .expect("stdin")
            .write_all(b"go\n")
            .expect("go");
    }
    for c in &mut children {
        assert!(c.wait().expect("wait").success(), "a client process failed");
    }
    let calls: Option<u64> = client.get(CALLS).await.expect("calls");
    println!(
        "stampede: {processes} processes x {tasks} tasks on one cold key, 200 ms loader: \
         {} loader call(s), all answered in {:.0?}",
        calls.unwrap_or(0),
        started.elapsed()
    );
}

/// `tasks` callers reading one key for `secs`: returns (latency histogram µs, loader calls).
async fn hot_key(cache: &Cache, key: &str, tasks: usize, secs: u64) -> (Histogram<u64>, usize) {
    let calls = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (cache, calls, stop, key) =
                (cache.clone(), calls.clone(), stop.clone(), key.to_owned());
            tokio::spawn(async move {
                let mut h = Histogram::<u64>::new(3).expect("histogram");
                while !stop.load(Ordering::Relaxed) {
                    let calls = calls.clone();
                    let t = Instant::now();
                    let _: Vec<u8> = cache
                        .get_or_load(key.as_str(), move || async move {
                            calls.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            Ok::<_, Never>(vec![1u8; 256])
                        })
                        .await
                        .expect("value");
                    let _ = h.record(t.elapsed().as_micros() as u64);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                h
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    for h in handles {
        all.add(h.await.expect("task")).expect("merge");
    }
    (all, calls.load(Ordering::Relaxed))
}

fn line(what: &str, h: &Histogram<u64>, calls: usize, expiries: f64) {
    println!(
        "{what:<28} requests {:>7}  p50 {:>6} µs  p99 {:>6} µs  max {:>7} µs  loader calls {calls:>3} ({:.2} per expiry)",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max(),
        calls as f64 / expiries.max(1.0),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        let tasks = args[1].parse().expect("tasks");
        return child(args[2..].to_vec(), tasks).await;
    }
    let processes: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(4);
    let tasks: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(250);
    let secs: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(12);
    let servers: Vec<_> = (0..2)
        .map(|_| shardis_testkit::RedisServer::start().expect("redis-server"))
        .collect();
    let urls: Vec<String> = servers.iter().map(|s| s.url()).collect();
    stampede(&urls, processes, tasks).await;

    let client = connect(&urls).await;
    let ttl = Duration::from_secs(2);
    let expiries = secs as f64 / ttl.as_secs_f64();
    let steady = Cache::builder(client.clone())
        .ttl(Duration::from_secs(3600))
        .build();
    let (h, calls) = hot_key(&steady, "steady", 32, secs).await;
    line("steady state (no expiry)", &h, calls, 1.0);
    for (name, beta) in [
        ("expiring, early refresh on", 1.0),
        ("expiring, early refresh off", 0.0),
    ] {
        let cache = Cache::builder(client.clone())
            .ttl(ttl)
            .ttl_jitter(0.0)
            .early_refresh(beta)
            .build();
        let (h, calls) = hot_key(&cache, &format!("hot-{beta}"), 32, secs).await;
        line(name, &h, calls, expiries);
    }
}
