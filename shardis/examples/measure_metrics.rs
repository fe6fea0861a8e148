//! Measures the hot-path cost of metrics inside one process, where the machine's drift cannot
//! favour either side: short blocks of requests alternate between no recorder and a Prometheus
//! recorder (the exporter's, configured as `serve_prometheus` configures it, set as the thread's
//! recorder for the block). 64 requests in flight, 80% GET / 20% SET, on one thread, against 3
//! local redis-servers.
//!
//! `cargo run --release --features prometheus --example measure_metrics [ROUNDS] [BLOCK_MS]`
//! (defaults 40 and 250; needs `redis-server`).

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use shardis::Client;
use shardis_testkit::RedisServer;

const KEYS: u64 = 10_000;
const IN_FLIGHT: usize = 64;

/// Runs the workload for `length`; returns how many requests completed.
async fn block(client: &Client, length: Duration, seed: u64) -> u64 {
    let deadline = Instant::now() + length;
    let loops = (0..IN_FLIGHT as u64).map(|t| async move {
        // xorshift64: the same keys and mix on both sides of a round.
        let mut x = (seed * 1000 + t) | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut done = 0u64;
        while Instant::now() < deadline {
            let key = format!("bench:{:010}", next() % KEYS);
            if next() % 10 < 8 {
                let _: Option<Vec<u8>> = client.get(key.as_str()).await.expect("GET");
            } else {
                client
                    .set(key.as_str(), "0123456789abcdef0123456789abcdef")
                    .await
                    .expect("SET");
            }
            done += 1;
        }
        done
    });
    join_all(loops).await.into_iter().sum()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(Ok(40), |a| a.parse())?;
    let length = Duration::from_millis(args.next().map_or(Ok(250), |a| a.parse())?);
    let servers: Vec<RedisServer> = (0..3)
        .map(|_| RedisServer::start())
        .collect::<Result<_, _>>()?;
    let client = servers
        .iter()
        .enumerate()
        .fold(Client::builder(), |b, (i, s)| {
            b.shard(format!("cache-{i}"), s.url())
        })
        .build()
        .await?;
    for i in 0..KEYS {
        client.set(format!("bench:{i:010}").as_str(), "v").await?;
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[
                0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                0.25, 0.5, 1.0, 2.5, 5.0,
            ],
        )?
        .build_recorder();
    let handle = recorder.handle();
    // Warm up both sides once.
    block(&client, length, 0).await;
    {
        let _on = metrics::set_default_local_recorder(&recorder);
        block(&client, length, 0).await;
    }
    let (mut off, mut on) = ((0u64, 0f64), (0u64, 0f64));
    let mut ratios = Vec::new();
    for round in 1..=rounds as u64 {
        let t = Instant::now();
        let n_off = block(&client, length, round).await;
        let rate_off = n_off as f64 / t.elapsed().as_secs_f64();
        off = (off.0 + n_off, off.1 + t.elapsed().as_secs_f64());
        let t = Instant::now();
        let n_on = {
            let _on = metrics::set_default_local_recorder(&recorder);
            block(&client, length, round).await
        };
        let rate_on = n_on as f64 / t.elapsed().as_secs_f64();
        on = (on.0 + n_on, on.1 + t.elapsed().as_secs_f64());
        // The exporter drains histogram samples every 5 s; once per block is as often.
        handle.run_upkeep();
        ratios.push(rate_on / rate_off);
    }
    ratios.sort_by(|a, b| a.total_cmp(b));
    let scraped = handle.render();
    let series = scraped
        .lines()
        .filter(|l| l.starts_with("shardis_"))
        .count();
    println!(
        "{rounds} rounds of {} ms per side, alternating; {IN_FLIGHT} requests in flight, 80% GET / 20% SET, 3 redis-servers, 1 thread",
        length.as_millis()
    );
    println!("no recorder          {:>10.0} ops/s", off.0 as f64 / off.1);
    println!(
        "Prometheus recorder  {:>10.0} ops/s ({series} shardis_ sample lines rendered)",
        on.0 as f64 / on.1
    );
    println!(
        "with / without: {:.4} overall, {:.4} median of the per-round ratios",
        (on.0 as f64 / on.1) / (off.0 as f64 / off.1),
        ratios[ratios.len() / 2]
    );
    Ok(())
}
