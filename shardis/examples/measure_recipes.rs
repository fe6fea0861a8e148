//! Measures the lock and the rate limiter on three local redis-servers: lock
//! acquire + release cycles per second (each task its own lock name, and all tasks on one
//! name), and rate-limit decisions per second (64 tasks on 1 000 keys).
//!
//! `cargo run --release --example measure_recipes [SECONDS]` (needs `redis-server`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardis::{Client, RateLimit};
use shardis_testkit::RedisServer;

const TASKS: u64 = 64;

async fn measure<F, Fut>(secs: u64, op: F) -> f64
where
    F: Fn(u64, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = shardis::Result<()>> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (op, stop, done) = (op.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    op(t, i).await.expect("operation");
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("task");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let servers: Vec<RedisServer> = (0..3)
        .map(|_| RedisServer::start())
        .collect::<Result<_, _>>()?;
    let client = servers
        .iter()
        .enumerate()
        .fold(Client::builder(), |b, (i, s)| {
            b.shard(format!("s{i}"), s.url())
        })
        .build()
        .await?;
    println!("3 redis-servers, {TASKS} tasks on one thread, {secs} s per measurement");
    let c = client.clone();
    let own = measure(secs, move |t, _| {
        let c = c.clone();
        async move {
            let lock = c.lock(format!("bench:{t}")).acquire().await?;
            lock.release().await
        }
    })
    .await;
    println!("lock acquire+release, one name per task:   {own:>9.0} cycles/s");
    let c = client.clone();
    let shared = measure(secs, move |_, _| {
        let c = c.clone();
        async move {
            let lock = c
                .lock("bench:shared")
                .wait(Duration::from_secs(60))
                .acquire()
                .await?;
            lock.release().await
        }
    })
    .await;
    println!("lock acquire+release, one name for all:   {shared:>9.0} cycles/s");
    let c = client.clone();
    let limit = RateLimit::per_second(1_000_000).burst(1000);
    let rate = measure(secs, move |t, i| {
        let c = c.clone();
        async move {
            c.rate_limit(format!("bench:rl:{}", (t * 7919 + i) % 1000), limit)
                .await
                .map(|_| ())
        }
    })
    .await;
    println!("rate-limit decisions, 1000 keys:           {rate:>9.0} decisions/s");
    let c = client.clone();
    let get = measure(secs, move |t, i| {
        let c = c.clone();
        async move {
            c.get::<_, Option<String>>(format!("bench:rl:{}", (t * 7919 + i) % 1000))
                .await
                .map(|_| ())
        }
    })
    .await;
    println!("for scale, GET on the same keys:           {get:>9.0} ops/s");
    Ok(())
}
