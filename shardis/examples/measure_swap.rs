//! Measures topology swaps: the time of `update_topology` on a 100-shard topology (adding and
//! removing one shard), and request latency (p50, p99, p99.9) of 64 concurrent tasks in steady
//! state against requests that overlap a swap (the topology alternating between 100 and 101
//! shards every 100 ms).
//!
//! `cargo run --release --example measure_swap` (needs `redis-server`). The 101 endpoints are
//! databases 0..15 of 7 local redis-servers: distinct endpoints with their own pools.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shardis::{Client, ShardSpec, Topology};
use shardis_testkit::RedisServer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let servers: Vec<RedisServer> = (0..7)
        .map(|_| RedisServer::start())
        .collect::<Result<_, _>>()?;
    let specs: Vec<ShardSpec> = (0..101)
        .map(|i| {
            ShardSpec::new(
                format!("shard-{i}"),
                format!("{}/{}", servers[i % 7].url(), i / 7),
            )
        })
        .collect();
    let t100 = Topology::new(specs[..100].to_vec())?;
    let t101 = Topology::new(specs.clone())?;
    let mut without_50 = specs[..100].to_vec();
    without_50.remove(50);
    let t99 = Topology::new(without_50)?;
    let client = specs[..100]
        .iter()
        .fold(Client::builder(), |b, s| b.shard_spec(s.clone()))
        .build()
        .await?;

    let mut add = Vec::new();
    let mut remove = Vec::new();
    let mut middle = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        client.update_topology(t101.clone()).await?;
        add.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        client.update_topology(t100.clone()).await?;
        remove.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        client.update_topology(t99.clone()).await?;
        middle.push(t.elapsed().as_secs_f64() * 1e3);
        client.update_topology(t100.clone()).await?;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    println!(
        "update_topology on 100 shards (median of 10, new endpoint's pool opened and checked):"
    );
    println!(
        "  100 -> 101 (add):              {:>7.1} ms",
        median(&mut add)
    );
    println!(
        "  101 -> 100 (remove the last):  {:>7.1} ms",
        median(&mut remove)
    );
    println!(
        "  100 -> 99 (remove shard-50):   {:>7.1} ms",
        median(&mut middle)
    );

    for k in 0..10_000 {
        client.set(format!("k{k}").as_str(), k).await?;
    }
    let steady = load(&client, Duration::from_secs(3), None).await?;
    let swaps = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let swapping = load(
        &client,
        Duration::from_secs(3),
        Some((t100.clone(), t101.clone(), swaps.clone())),
    )
    .await?;
    let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "\nlatency of GET/SET from 64 tasks over 3 s, 100 shards; second row: the requests that overlapped one of {} swaps 100 <-> 101:",
        swaps.load(Ordering::Relaxed)
    );
    println!(
        "{:<16} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "", "requests", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for (name, h) in [("steady", &steady), ("during a swap", &swapping)] {
        println!(
            "{name:<16} {:>10} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            h.len(),
            us(h, 0.5),
            us(h, 0.99),
            us(h, 0.999),
            h.max() as f64 / 1000.0
        );
    }
    println!(
        "p99 during swaps / steady: {:.2}",
        us(&swapping, 0.99) / us(&steady, 0.99)
    );
    Ok(())
}

/// 64 tasks of GET/SET for `duration`; with `swap`, the topology alternates between the two
/// given ones all the while. Latencies in microseconds.
async fn load(
    client: &Client,
    duration: Duration,
    swap: Option<(Topology, Topology, Arc<std::sync::atomic::AtomicUsize>)>,
) -> Result<Histogram<u64>, Box<dyn std::error::Error>> {
    let stop = Arc::new(AtomicBool::new(false));
    let all = Arc::new(Mutex::new(Histogram::<u64>::new(3).expect("histogram")));
    let only_during_swaps = swap.is_some();
    // (start, end) of each swap; with swaps, only requests overlapping one are recorded.
    let windows: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let samples: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..64u64)
        .map(|t| {
            let (client, stop, all, samples) =
                (client.clone(), stop.clone(), all.clone(), samples.clone());
            tokio::spawn(async move {
                let mut h = Histogram::<u64>::new(3).expect("histogram");
                let mut mine = Vec::new();
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let k = format!("k{}", i % 10_000);
                    let started = Instant::now();
                    let r = if i % 5 == 0 {
                        client.set(k.as_str(), i).await
                    } else {
                        client.get::<_, Option<u64>>(k.as_str()).await.map(|_| ())
                    };
                    r.expect("no request may fail");
                    if only_during_swaps {
                        mine.push((started, Instant::now()));
                    } else {
                        h.record(started.elapsed().as_micros() as u64)
                            .expect("record");
                    }
                    i += 64;
                }
                all.lock().unwrap().add(&h).expect("merge");
                samples.lock().unwrap().extend(mine);
            })
        })
        .collect();
    let swapper = swap.map(|(a, b, count)| {
        let (client, stop, windows) = (client.clone(), stop.clone(), windows.clone());
        tokio::spawn(async move {
            let mut next = [b, a].into_iter().cycle();
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let started = Instant::now();
                client
                    .update_topology(next.next().expect("cycle"))
                    .await
                    .expect("swap");
                windows.lock().unwrap().push((started, Instant::now()));
                count.fetch_add(1, Ordering::Relaxed);
            }
        })
    });
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("task");
    }
    if let Some(s) = swapper {
        s.await.expect("swapper");
    }
    let mut h = all.lock().unwrap().clone();
    let windows = windows.lock().unwrap();
    for (start, end) in samples.lock().unwrap().iter() {
        if windows.iter().any(|(ws, we)| start < we && end > ws) {
            h.record(end.duration_since(*start).as_micros() as u64)
                .expect("record");
        }
    }
    Ok(h)
}
