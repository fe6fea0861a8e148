//! `shardis bench --resize add|remove`: the live hit rate of a cache across a resize. The
//! key space is written first; then closed-loop tasks read (a miss is filled with `SET`, as a
//! cache-aside service would) and write keys drawn uniformly or by Zipf popularity, and at
//! `--resize-at` the last shard of `--config` is added (or removed). The read hit rate is
//! counted per 100 ms window; `--compare-cold` runs the same load without warm resharding first.
//! With `--rounds N` the runs are repeated N times, cold and warm alternating (ABBA), and each
//! figure is reported as its median over the rounds, so that the two modes share the machine's
//! state and are compared as ratios.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use shardis::{Client, Config, ConfigError, ErrorKind, Topology};

use crate::error::Error;
use crate::Format;

mod report;
use report::{merged_windows, plot, report};

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
    /// Repeat the runs this many times (with --compare-cold, cold and warm alternating) and
    /// report each figure's median over the rounds.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=99), requires = "resize")]
    pub rounds: u32,
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
    tally: Tally,
    resize_ms: f64,
    migration: Option<(u64, f64)>,
}

/// Latencies (µs) and counts of operations, outside and in the second after the resize; the
/// `read` histograms count reads alone (a miss's fill included).
struct Tally {
    steady: Histogram<u64>,
    after: Histogram<u64>,
    read_steady: Histogram<u64>,
    read_after: Histogram<u64>,
    ops_steady: u64,
    ops_after: u64,
    errors: u64,
}

impl Tally {
    fn new() -> Result<Tally, Error> {
        let hist = || {
            Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                .map_err(|e| Error::new(ErrorKind::Io, e.to_string()))
        };
        Ok(Tally {
            steady: hist()?,
            after: hist()?,
            read_steady: hist()?,
            read_after: hist()?,
            ops_steady: 0,
            ops_after: 0,
            errors: 0,
        })
    }

    fn record(&mut self, us: u64, read: bool, in_after: bool, ok: bool) {
        self.errors += u64::from(!ok);
        let us = us.max(1);
        let (all, reads) = if in_after {
            self.ops_after += 1;
            (&mut self.after, &mut self.read_after)
        } else {
            self.ops_steady += 1;
            (&mut self.steady, &mut self.read_steady)
        };
        let _ = all.record(us);
        if read {
            let _ = reads.record(us);
        }
    }

    fn add(&mut self, other: &Tally) {
        let _ = self.steady.add(&other.steady);
        let _ = self.after.add(&other.after);
        let _ = self.read_steady.add(&other.read_steady);
        let _ = self.read_after.add(&other.read_after);
        self.ops_steady += other.ops_steady;
        self.ops_after += other.ops_after;
        self.errors += other.errors;
    }
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
    let modes: &[bool] = if args.compare_cold {
        &[false, true]
    } else {
        &[true]
    };
    // runs[mode][round]; odd rounds run the modes in reverse order (cold warm warm cold ...).
    let mut runs: Vec<Vec<Run>> = modes.iter().map(|_| Vec::new()).collect();
    for round in 0..args.rounds {
        let mut order: Vec<usize> = (0..modes.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for m in order {
            let warm = modes[m];
            let mut o = options.clone();
            o.resharding.warm = warm;
            let client = Client::builder()
                .config(Config::new(before.clone(), o))
                .build()
                .await?;
            clear(&client, &before, &after, load.keys).await?;
            let run = measure(&client, &after, load, args, warm).await?;
            clear(&client, &after, &before, load.keys).await?;
            runs[m].push(run);
        }
    }
    report(format, resize, args, load, &runs);
    if let Some(path) = &args.plot {
        let merged: Vec<(&str, Vec<(u64, u64)>)> = runs
            .iter()
            .filter_map(|r| Some((r.first()?.mode, merged_windows(r))))
            .collect();
        plot(path, resize, args, &merged)?;
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
    let lat = Arc::new(Mutex::new(Tally::new()?));
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
                let mut tally = Tally::new().ok();
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
                    let in_after = resized
                        .lock()
                        .ok()
                        .and_then(|r| *r)
                        .is_some_and(|r| t0 >= r && t0 < r + Duration::from_secs(1));
                    if let Some(t) = &mut tally {
                        t.record(us, read, in_after, ok);
                    }
                }
                if let Ok(mut w) = windows.lock() {
                    for (slot, l) in w.iter_mut().zip(&local) {
                        slot.0 += l.0;
                        slot.1 += l.1;
                    }
                }
                if let (Ok(mut l), Some(t)) = (lat.lock(), &tally) {
                    l.add(t);
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
    let mut tally = Tally::new()?;
    if let Ok(l) = lat.lock() {
        tally.add(&l);
    }
    Ok(Run {
        mode: if warm { "warm" } else { "cold" },
        windows,
        tally,
        resize_ms,
        migration,
    })
}
