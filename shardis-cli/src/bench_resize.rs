//! `shardis bench --resize add|remove`: the live hit rate of a cache across a resize. The
//! key space is written first; then closed-loop tasks read (a miss is filled with `SET`, as a
//! cache-aside service would) and write keys drawn uniformly or by Zipf popularity, and at
//! `--resize-at` the last shard of `--config` is added (or removed). The read hit rate is
//! counted per 100 ms window; `--compare-cold` runs the same load without warm resharding first.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use serde_json::json;
use shardis::{Client, Config, ConfigError, ErrorKind, Topology};

use crate::error::Error;
use crate::output;
use crate::Format;

/// A change of the fleet during the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Resize {
    /// Start without the last shard of --config, add it at --resize-at.
    Add,
    /// Start with every shard of --config, remove the last at --resize-at.
    Remove,
}

/// Which keys are read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyDistribution {
    /// Every key equally often.
    Uniform,
    /// Zipf popularity, s = 0.99: a few keys are hot, as real caches see.
    Zipf,
}

/// The `--resize` flags of `bench`.
#[derive(clap::Args, Debug)]
pub struct ResizeArgs {
    /// Add or remove the last shard of --config during the run, and report the read hit rate
    /// per 100 ms window and overall.
    #[arg(long, value_enum)]
    pub resize: Option<Resize>,
    /// When the resize happens, from the start of the measured run.
    #[arg(long, default_value = "5s", value_parser = crate::parse::duration, requires = "resize")]
    pub resize_at: Duration,
    /// Draw the hit rate over time to this SVG file.
    #[arg(long, value_name = "FILE.svg", requires = "resize")]
    pub plot: Option<PathBuf>,
    /// Run the same load without warm resharding first, and report (and draw) both.
    #[arg(long, requires = "resize")]
    pub compare_cold: bool,
    /// Key popularity of reads and writes (with --resize).
    #[arg(long, value_enum, default_value_t = KeyDistribution::Uniform)]
    pub key_distribution: KeyDistribution,
}

/// The common load settings `bench` passes on.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub duration: Duration,
    pub concurrency: usize,
    pub read_ratio: f64,
    pub value_size: usize,
    pub keys: u64,
}

const WINDOW: Duration = Duration::from_millis(100);

/// One run's measurements.
struct Run {
    mode: &'static str,
    /// Per 100 ms window: reads, hits.
    windows: Vec<(u64, u64)>,
    steady: Histogram<u64>,
    after: Histogram<u64>,
    ops_steady: u64,
    ops_after: u64,
    errors: u64,
    resize_ms: f64,
    migration: Option<(u64, f64)>,
}

pub async fn run(
    format: Format,
    config: Config,
    load: Load,
    args: &ResizeArgs,
) -> Result<(), Error> {
    let resize = args
        .resize
        .ok_or_else(|| Error::new(ErrorKind::InvalidInput, "no --resize"))?;
    let (topology, options) = config.into_parts();
    let shards = topology.shards();
    if shards.len() < 2 {
        return Err(ConfigError::InvalidValue {
            field: "--resize".into(),
            reason: "needs at least two shards in --config (the last is added or removed)".into(),
        }
        .into());
    }
    if args.resize_at >= load.duration {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "--resize-at must be before the end of --duration",
        ));
    }
    let last = shards[shards.len() - 1].name().as_str().to_owned();
    let small = topology.without(&last)?;
    let (before, after) = match resize {
        Resize::Add => (small, topology.clone()),
        Resize::Remove => (topology.clone(), small),
    };
    let mut runs = Vec::new();
    let modes: &[bool] = if args.compare_cold {
        &[false, true]
    } else {
        &[true]
    };
    for &warm in modes {
        let mut o = options.clone();
        o.resharding.warm = warm;
        let client = Client::builder()
            .config(Config::new(before.clone(), o))
            .build()
            .await?;
        clear(&client, &before, &after, load.keys).await?;
        let run = measure(&client, &after, load, args, warm).await?;
        clear(&client, &after, &before, load.keys).await?;
        runs.push(run);
    }
    report(format, resize, args, load, &runs);
    if let Some(path) = &args.plot {
        plot(path, resize, args, &runs)?;
    }
    Ok(())
}

fn key(i: u64) -> String {
    format!("bench:resize:{i}")
}

/// Deletes the bench's key space under both topologies (every place a key may be).
async fn clear(client: &Client, now: &Topology, other: &Topology, keys: u64) -> Result<(), Error> {
    let all: Vec<String> = (0..keys).map(key).collect();
    for t in [other, now] {
        client.update_topology(t.clone()).await?;
        for chunk in all.chunks(1000) {
            client.del_many(chunk).await?;
        }
    }
    Ok(())
}

async fn measure(
    client: &Client,
    after: &Topology,
    load: Load,
    args: &ResizeArgs,
    warm: bool,
) -> Result<Run, Error> {
    let value = vec![b'v'; load.value_size];
    let all: Vec<String> = (0..load.keys).map(key).collect();
    for chunk in all.chunks(1000) {
        let items: Vec<(&str, &[u8])> = chunk.iter().map(|k| (k.as_str(), &value[..])).collect();
        client.mset(&items).await?;
    }
    let n_windows = (load.duration.as_millis() / WINDOW.as_millis()) as usize + 1;
    let windows = Arc::new(Mutex::new(vec![(0u64, 0u64); n_windows]));
    let hist = || {
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
            .map_err(|e| Error::new(ErrorKind::Io, e.to_string()))
    };
    let lat = Arc::new(Mutex::new((hist()?, hist()?, 0u64, 0u64, 0u64)));
    let stop = Arc::new(AtomicBool::new(false));
    let resized = Arc::new(Mutex::new(None::<Instant>));
    let start = Instant::now();
    let zipf = Zipf::new(load.keys as f64, 0.99)
        .map_err(|e| Error::new(ErrorKind::InvalidInput, e.to_string()))?;
    let tasks: Vec<_> = (0..load.concurrency)
        .map(|t| {
            let (client, windows, lat, stop, resized, value) = (
                client.clone(),
                windows.clone(),
                lat.clone(),
                stop.clone(),
                resized.clone(),
                value.clone(),
            );
            let dist = args.key_distribution;
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(t as u64);
                let mut local = vec![(0u64, 0u64); windows.lock().map(|w| w.len()).unwrap_or(0)];
                let (mut steady, mut after) =
                    (Histogram::<u64>::new(3).ok(), Histogram::<u64>::new(3).ok());
                let (mut ops_steady, mut ops_after, mut errors) = (0u64, 0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let i = match dist {
                        KeyDistribution::Uniform => rng.random_range(0..load.keys),
                        KeyDistribution::Zipf => (zipf.sample(&mut rng) as u64)
                            .saturating_sub(1)
                            .min(load.keys - 1),
                    };
                    let k = key(i);
                    let t0 = Instant::now();
                    let read = rng.random_bool(load.read_ratio);
                    let ok = if read {
                        match client.get::<_, Option<Vec<u8>>>(k.as_str()).await {
                            Ok(v) => {
                                let w = (t0.duration_since(start).as_millis() / WINDOW.as_millis())
                                    as usize;
                                if let Some(slot) = local.get_mut(w) {
                                    slot.0 += 1;
                                    slot.1 += u64::from(v.is_some());
                                }
                                // A miss is filled, as a cache-aside service does.
                                v.is_some() || client.set(k.as_str(), &value[..]).await.is_ok()
                            }
                            Err(_) => false,
                        }
                    } else {
                        client.set(k.as_str(), &value[..]).await.is_ok()
                    };
                    let us = t0.elapsed().as_micros() as u64;
                    errors += u64::from(!ok);
                    let in_after = resized
                        .lock()
                        .ok()
                        .and_then(|r| *r)
                        .is_some_and(|r| t0 >= r && t0 < r + Duration::from_secs(1));
                    let h = if in_after {
                        ops_after += 1;
                        &mut after
                    } else {
                        ops_steady += 1;
                        &mut steady
                    };
                    if let Some(h) = h {
                        let _ = h.record(us.max(1));
                    }
                }
                if let Ok(mut w) = windows.lock() {
                    for (slot, l) in w.iter_mut().zip(&local) {
                        slot.0 += l.0;
                        slot.1 += l.1;
                    }
                }
                if let Ok(mut l) = lat.lock() {
                    if let Some(h) = &steady {
                        let _ = l.0.add(h);
                    }
                    if let Some(h) = &after {
                        let _ = l.1.add(h);
                    }
                    l.2 += ops_steady;
                    l.3 += ops_after;
                    l.4 += errors;
                }
            })
        })
        .collect();
    tokio::time::sleep(args.resize_at).await;
    let t = Instant::now();
    client.update_topology(after.clone()).await?;
    let resize_ms = t.elapsed().as_secs_f64() * 1000.0;
    if let Ok(mut r) = resized.lock() {
        *r = Some(t);
    }
    tokio::time::sleep(load.duration.saturating_sub(start.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await
            .map_err(|e| Error::new(ErrorKind::Io, format!("a load task failed: {e}")))?;
    }
    // Migration speed (warm only): moves what the reads did not.
    let migration = if warm {
        let r = client.migrate_moved_keys().await?;
        Some((r.moved, r.duration.as_secs_f64()))
    } else {
        None
    };
    let windows = windows.lock().map(|w| w.clone()).unwrap_or_default();
    let (steady, after_h, ops_steady, ops_after, errors) = match lat.lock() {
        Ok(l) => (l.0.clone(), l.1.clone(), l.2, l.3, l.4),
        Err(_) => (hist()?, hist()?, 0, 0, 0),
    };
    Ok(Run {
        mode: if warm { "warm" } else { "cold" },
        windows,
        steady,
        after: after_h,
        ops_steady,
        ops_after,
        errors,
        resize_ms,
        migration,
    })
}

fn rate(reads: u64, hits: u64) -> f64 {
    if reads == 0 {
        1.0
    } else {
        hits as f64 / reads as f64
    }
}

/// Overall hit rate, the worst window's from the resize on, and its time (s).
fn summary(run: &Run, resize_at: Duration) -> (f64, f64, f64) {
    let (reads, hits) = run
        .windows
        .iter()
        .fold((0, 0), |(r, h), w| (r + w.0, h + w.1));
    let first = (resize_at.as_millis() / WINDOW.as_millis()) as usize;
    let worst = run
        .windows
        .iter()
        .enumerate()
        .skip(first)
        .filter(|(_, w)| w.0 >= 20)
        .map(|(i, w)| (rate(w.0, w.1), i as f64 * WINDOW.as_secs_f64()))
        .fold((1.0f64, 0.0f64), |a, b| if b.0 < a.0 { b } else { a });
    (rate(reads, hits), worst.0, worst.1)
}

fn report(format: Format, resize: Resize, args: &ResizeArgs, load: Load, runs: &[Run]) {
    let resize_s = match resize {
        Resize::Add => "add",
        Resize::Remove => "remove",
    };
    let dist = match args.key_distribution {
        KeyDistribution::Uniform => "uniform",
        KeyDistribution::Zipf => "zipf",
    };
    let steady_s = args.resize_at.as_secs_f64();
    let rows: Vec<_> = runs
        .iter()
        .map(|r| {
            let (overall, worst, worst_at) = summary(r, args.resize_at);
            let p99 = |h: &Histogram<u64>| h.value_at_quantile(0.99) as f64 / 1000.0;
            json!({
                "mode": r.mode,
                "hit_rate": overall,
                "worst_window_hit_rate": worst,
                "worst_window_at_s": worst_at,
                "ops_per_s_steady": r.ops_steady as f64 / (load.duration.as_secs_f64() - 1.0).max(0.1),
                "ops_per_s_after_resize": r.ops_after as f64,
                "p99_ms_steady": p99(&r.steady),
                "p99_ms_after_resize": p99(&r.after),
                "errors": r.errors,
                "resize_ms": r.resize_ms,
                "migration_moved": r.migration.map(|m| m.0),
                "migration_keys_per_s": r.migration.map(|m| if m.1 > 0.0 { m.0 as f64 / m.1 } else { 0.0 }),
                "windows": r.windows.iter().map(|w| rate(w.0, w.1)).collect::<Vec<_>>(),
            })
        })
        .collect();
    if format == Format::Json {
        output::json(
            &json!({"resize": resize_s, "resize_at_s": steady_s, "key_distribution": dist, "keys": load.keys, "runs": rows}),
        );
        return;
    }
    println!(
        "resize {resize_s} at {steady_s:.1}s, {} keys, {dist}, {} tasks, read ratio {}",
        load.keys, load.concurrency, load.read_ratio
    );
    println!("mode   hit rate   worst 100ms (at)   ops/s steady   ops/s 1s after   p99 ms steady   p99 ms 1s after   errors   migration");
    for r in &rows {
        println!(
            "{:<6} {:>7.3}%   {:>7.2}% ({:>4.1}s)   {:>12.0}   {:>14.0}   {:>13.3}   {:>15.3}   {:>6}   {}",
            r["mode"].as_str().unwrap_or(""),
            r["hit_rate"].as_f64().unwrap_or(0.0) * 100.0,
            r["worst_window_hit_rate"].as_f64().unwrap_or(0.0) * 100.0,
            r["worst_window_at_s"].as_f64().unwrap_or(0.0),
            r["ops_per_s_steady"].as_f64().unwrap_or(0.0),
            r["ops_per_s_after_resize"].as_f64().unwrap_or(0.0),
            r["p99_ms_steady"].as_f64().unwrap_or(0.0),
            r["p99_ms_after_resize"].as_f64().unwrap_or(0.0),
            r["errors"],
            match r["migration_keys_per_s"].as_f64() {
                Some(v) => format!("{} keys left, {v:.0} keys/s", r["migration_moved"]),
                None => "-".into(),
            }
        );
    }
}

fn plot(path: &Path, resize: Resize, args: &ResizeArgs, runs: &[Run]) -> Result<(), Error> {
    use plotters::prelude::*;
    let fail = |e: &dyn std::fmt::Display| {
        Error::new(
            ErrorKind::Io,
            format!("cannot draw {}: {e}", path.display()),
        )
    };
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let end = runs.iter().map(|r| r.windows.len()).max().unwrap_or(1) as f64 * WINDOW.as_secs_f64();
    let lowest = runs
        .iter()
        .flat_map(|r| r.windows.iter().filter(|w| w.0 > 0).map(|w| rate(w.0, w.1)))
        .fold(1.0f64, f64::min);
    let what = match resize {
        Resize::Add => "adding a shard",
        Resize::Remove => "removing a shard",
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "read hit rate per 100 ms, {what} at {:.1} s",
                args.resize_at.as_secs_f64()
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end, (lowest - 0.02).max(0.0)..1.005)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("hit rate")
        .draw()
        .map_err(|e| fail(&e))?;
    for (k, r) in runs.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        chart
            .draw_series(LineSeries::new(
                r.windows
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| w.0 > 0)
                    .map(|(i, w)| (i as f64 * WINDOW.as_secs_f64(), rate(w.0, w.1))),
                color.stroke_width(2),
            ))
            .map_err(|e| fail(&e))?
            .label(r.mode)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}
