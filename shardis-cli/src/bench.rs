//! `shardis bench`: a closed-loop load generator over the real client, and over the same
//! workload sent through a proxy (`--target proxy`) or routed by hand onto raw redis-rs
//! connections (`--target direct`), so the three can be compared on the same keys.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, IntoConnectionInfo, Value};
use serde_json::json;
use shardis::placement::Locator;
use shardis::{Client, Config, ConfigError, ErrorKind};

use crate::error::Error;

use crate::output;
use crate::Format;

/// What `bench` sends the load to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// The shardis client built from --config.
    Shardis,
    /// A proxy such as twemproxy at --proxy: every command, MGET and MSET included, goes there
    /// as one command; the proxy splits multi-key ones.
    Proxy,
    /// The same placement routed by hand onto raw redis-rs multiplexed connections: no pools,
    /// no health, no routing snapshot — the limit a client layer can reach.
    Direct,
}

impl Target {
    fn as_str(self) -> &'static str {
        match self {
            Target::Shardis => "shardis",
            Target::Proxy => "proxy",
            Target::Direct => "direct",
        }
    }
}

/// The `bench` arguments.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// How long to measure, e.g. `10s`, `500ms`.
    #[arg(long, default_value = "10s", value_parser = crate::parse::duration)]
    duration: Duration,
    /// Concurrent closed-loop tasks.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Fraction of operations that read (the rest write).
    #[arg(long, default_value_t = 0.8)]
    read_ratio: f64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 32, value_parser = crate::parse::size)]
    value_size: usize,
    /// Size of the key space, pre-populated before measuring.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Read with MGET of this many independent random keys instead of GET.
    #[arg(long)]
    mget_size: Option<usize>,
    /// Each operation is one pipeline of this many GET/SET commands (GET with probability
    /// --read-ratio) on random keys: `query_pipeline` for shardis, one pipeline through the
    /// proxy, hand-routed per-shard pipelines for direct.
    #[arg(long, conflicts_with = "mget_size")]
    pipeline_size: Option<usize>,
    /// Requests each task keeps in flight (pipelined over multiplexed connections).
    #[arg(long, default_value_t = 1)]
    pipeline_depth: usize,
    /// Where the load goes.
    #[arg(long, value_enum, default_value_t = Target::Shardis)]
    target: Target,
    /// The proxy's URL, with --target proxy.
    #[arg(long, value_name = "redis://HOST:PORT")]
    proxy: Option<String>,
    /// Threads of the load generator's async runtime: 1 (the default) runs every task on one
    /// thread, as redis-benchmark does; more spread them over a work-stealing runtime, worth it
    /// when the client has cores of its own.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Skip writing the key space first (it is already there from an earlier run).
    #[arg(long)]
    no_populate: bool,
    /// Connections to the proxy, with --target proxy (default: as many as shardis opens to
    /// the primaries: connections_per_endpoint × shards).
    #[arg(long)]
    proxy_connections: Option<usize>,
    /// Resize the fleet during the run (`--resize add|remove`) and measure the hit rate.
    #[command(flatten)]
    pub resize: crate::bench_resize::ResizeArgs,
    /// Serve the client's metrics on http://ADDR/metrics (Prometheus text format) while the
    /// run lasts, e.g. `127.0.0.1:9187`.
    #[arg(long, value_name = "ADDR")]
    prometheus: Option<std::net::SocketAddr>,
}

/// Sends one operation to the target.
struct Driver {
    /// The size of the key space.
    keys: u64,
    target: TargetDriver,
}

enum TargetDriver {
    Shardis(Client),
    Proxy {
        conns: Vec<MultiplexedConnection>,
        next: AtomicU64,
    },
    Direct {
        locator: Locator,
        /// Per shard, in topology order: its primary's connections.
        conns: Vec<Vec<MultiplexedConnection>>,
        next: AtomicU64,
    },
}

#[derive(Clone, Copy)]
enum Op {
    Get(u64),
    Set(u64),
    /// `n` independent random keys, drawn from `seed` (the same keys for every target).
    Mget {
        seed: u64,
        n: usize,
    },
    /// One pipeline of `n` commands drawn from `seed` (see `bench_pipeline`).
    Pipeline {
        seed: u64,
        n: usize,
        read_ratio: f64,
    },
}

/// The key numbers of an MGET.
fn mget_keys(seed: u64, n: usize, keys: u64) -> impl Iterator<Item = u64> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n).map(move |_| rng.u64(0..keys))
}

fn key(i: u64) -> String {
    format!("bench:{i:010}")
}

/// The key of number `i`, for `bench_pipeline`.
pub(crate) fn bench_key(i: u64) -> String {
    key(i)
}

impl Driver {
    async fn new(args: &BenchArgs, config: &Config) -> Result<Driver, Error> {
        Ok(Driver {
            keys: args.keys,
            target: TargetDriver::new(args, config).await?,
        })
    }

    async fn run(&self, op: Op, value: &[u8]) -> Result<(), Error> {
        self.target.run(op, value, self.keys).await
    }

    /// Writes every key of the space, in batches.
    async fn populate(&self, keys: u64, value: &[u8], bar: &ProgressBar) -> Result<(), Error> {
        const BATCH: u64 = 500;
        let mut start = 0;
        while start < keys {
            let end = (start + BATCH).min(keys);
            let sets = (start..end).map(|i| self.run(Op::Set(i), value));
            for r in join_all(sets).await {
                r?;
            }
            bar.set_position(end);
            start = end;
        }
        Ok(())
    }
}

impl TargetDriver {
    async fn new(args: &BenchArgs, config: &Config) -> Result<TargetDriver, Error> {
        let pool = config.options().pool;
        let redis_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(pool.connect_timeout))
            .set_response_timeout(Some(pool.response_timeout));
        match args.target {
            Target::Shardis => Ok(TargetDriver::Shardis(
                Client::from_config(config.clone()).await?,
            )),
            Target::Proxy => {
                let url = args.proxy.as_deref().ok_or_else(|| {
                    Error::from(ConfigError::InvalidValue {
                        field: "--proxy".into(),
                        reason: "--target proxy needs --proxy redis://HOST:PORT".into(),
                    })
                })?;
                // twemproxy answers CLIENT SETINFO by closing the connection.
                let info = url.into_connection_info().map_err(redis_error)?;
                let settings = info.redis_settings().clone().set_skip_set_lib_name();
                let client =
                    redis::Client::open(info.set_redis_settings(settings)).map_err(redis_error)?;
                let n = args.proxy_connections.unwrap_or(
                    pool.connections_per_endpoint as usize * config.topology().shards().len(),
                );
                let mut conns = Vec::new();
                for _ in 0..n.max(1) {
                    conns.push(
                        client
                            .get_multiplexed_async_connection_with_config(&redis_config)
                            .await
                            .map_err(redis_error)?,
                    );
                }
                Ok(TargetDriver::Proxy {
                    conns,
                    next: AtomicU64::new(0),
                })
            }
            Target::Direct => {
                let locator = Locator::from_source(
                    config.topology(),
                    &config.options().placement_source(),
                    config.options().hash_tag,
                )?;
                let mut conns = Vec::new();
                for shard in config.topology().shards() {
                    let primary = shard.primary().ok_or_else(|| {
                        Error::new(
                            shardis::ErrorKind::Config,
                            format!(
                                "shard {} is Sentinel-managed: --direct needs primary URLs",
                                shard.name()
                            ),
                        )
                    })?;
                    let client =
                        redis::Client::open(primary.connection_info()?).map_err(redis_error)?;
                    let mut per = Vec::new();
                    for _ in 0..pool.connections_per_endpoint.max(1) {
                        per.push(
                            client
                                .get_multiplexed_async_connection_with_config(&redis_config)
                                .await
                                .map_err(redis_error)?,
                        );
                    }
                    conns.push(per);
                }
                Ok(TargetDriver::Direct {
                    locator,
                    conns,
                    next: AtomicU64::new(0),
                })
            }
        }
    }

    async fn run(&self, op: Op, value: &[u8], keys: u64) -> Result<(), Error> {
        match self {
            TargetDriver::Shardis(client) => {
                match op {
                    Op::Get(i) => {
                        client.get::<_, Option<Vec<u8>>>(key(i)).await?;
                    }
                    Op::Set(i) => client.set(key(i), value).await?,
                    Op::Mget { seed, n } => {
                        let keys: Vec<String> = mget_keys(seed, n, keys).map(key).collect();
                        client.mget::<_, Option<Vec<u8>>>(&keys).await?;
                    }
                    Op::Pipeline {
                        seed,
                        n,
                        read_ratio,
                    } => {
                        let pipe = crate::bench_pipeline::whole(seed, n, keys, read_ratio, value);
                        crate::bench_pipeline::shardis(client, &pipe).await?;
                    }
                }
                Ok(())
            }
            TargetDriver::Proxy { conns, next } => {
                let mut conn =
                    conns[next.fetch_add(1, Ordering::Relaxed) as usize % conns.len()].clone();
                if let Op::Pipeline {
                    seed,
                    n,
                    read_ratio,
                } = op
                {
                    let pipe = crate::bench_pipeline::whole(seed, n, keys, read_ratio, value);
                    return crate::bench_pipeline::proxy(&mut conn, &pipe).await;
                }
                let cmd = match op {
                    Op::Get(i) => redis::cmd("GET").arg(key(i)).to_owned(),
                    Op::Set(i) => redis::cmd("SET").arg(key(i)).arg(value).to_owned(),
                    // Sent above, as one pipeline.
                    Op::Pipeline { .. } => return Ok(()),
                    Op::Mget { seed, n } => {
                        let mut c = redis::cmd("MGET");
                        for k in mget_keys(seed, n, keys) {
                            c.arg(key(k));
                        }
                        c
                    }
                };
                match op {
                    Op::Mget { .. } | Op::Pipeline { .. } => {
                        into_values(cmd.query_async(&mut conn).await.map_err(redis_error)?)
                    }
                    _ => cmd
                        .query_async::<Value>(&mut conn)
                        .await
                        .map(|_| ())
                        .map_err(redis_error),
                }
            }
            TargetDriver::Direct {
                locator,
                conns,
                next,
            } => {
                let pick = |shard: usize| {
                    let per = &conns[shard];
                    per[next.fetch_add(1, Ordering::Relaxed) as usize % per.len()].clone()
                };
                match op {
                    Op::Pipeline {
                        seed,
                        n,
                        read_ratio,
                    } => {
                        crate::bench_pipeline::direct(
                            locator,
                            pick,
                            (seed, n, keys, read_ratio),
                            value,
                        )
                        .await
                    }
                    Op::Get(i) | Op::Set(i) => {
                        let k = key(i);
                        let mut conn = pick(locator.index(k.as_bytes()));
                        let mut cmd = redis::cmd(if matches!(op, Op::Get(_)) {
                            "GET"
                        } else {
                            "SET"
                        });
                        cmd.arg(&k);
                        if matches!(op, Op::Set(_)) {
                            cmd.arg(value);
                        }
                        cmd.query_async::<Value>(&mut conn)
                            .await
                            .map(|_| ())
                            .map_err(redis_error)
                    }
                    Op::Mget { seed, n } => {
                        // The same result as the client's: values in input order.
                        let mut groups: BTreeMap<usize, (redis::Cmd, Vec<usize>)> = BTreeMap::new();
                        for (j, k) in mget_keys(seed, n, keys).enumerate() {
                            let k = key(k);
                            let (cmd, positions) = groups
                                .entry(locator.index(k.as_bytes()))
                                .or_insert_with(|| (redis::cmd("MGET"), Vec::new()));
                            cmd.arg(k);
                            positions.push(j);
                        }
                        let sends =
                            groups.into_iter().map(|(shard, (cmd, positions))| {
                                let mut conn = pick(shard);
                                async move {
                                    (positions, cmd.query_async::<Vec<Value>>(&mut conn).await)
                                }
                            });
                        let mut out = vec![Value::Nil; n];
                        for (positions, reply) in join_all(sends).await {
                            for (i, v) in positions.into_iter().zip(reply.map_err(redis_error)?) {
                                out[i] = v;
                            }
                        }
                        into_values(out)
                    }
                }
            }
        }
    }
}

/// Converts MGET replies as the client does for its caller: `Vec<Option<Vec<u8>>>`.
fn into_values(values: Vec<Value>) -> Result<(), Error> {
    values
        .into_iter()
        .map(<Option<Vec<u8>> as redis::FromRedisValue>::from_redis_value)
        .collect::<Result<Vec<_>, _>>()
        .map(|_| ())
        .map_err(|e| Error::new(ErrorKind::Type, e.to_string()))
}

pub(crate) fn redis_error(e: redis::RedisError) -> Error {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        ErrorKind::Connection
    } else {
        ErrorKind::Server
    };
    Error::new(kind, e.to_string())
}

pub async fn run(format: Format, config: Config, args: BenchArgs) -> Result<(), Error> {
    let bad = |field: &str, reason: &str| -> Error {
        ConfigError::InvalidValue {
            field: field.into(),
            reason: reason.into(),
        }
        .into()
    };
    if args.concurrency == 0 {
        return Err(bad("--concurrency", "must be at least 1"));
    }
    if !(0.0..=1.0).contains(&args.read_ratio) {
        return Err(bad("--read-ratio", "must be between 0 and 1"));
    }
    if args.keys == 0 {
        return Err(bad("--keys", "must be at least 1"));
    }
    if args.pipeline_depth == 0 {
        return Err(bad("--pipeline-depth", "must be at least 1"));
    }
    if args.pipeline_size == Some(0) {
        return Err(bad("--pipeline-size", "must be at least 1"));
    }
    if args.mget_size == Some(0) || args.mget_size.is_some_and(|n| n as u64 > args.keys) {
        return Err(bad("--mget-size", "must be between 1 and --keys"));
    }
    if args.duration.is_zero() {
        return Err(bad("--duration", "must be longer than zero"));
    }
    if args.resize.resize.is_some() {
        let load = crate::bench_resize::Load {
            duration: args.duration,
            concurrency: args.concurrency,
            read_ratio: args.read_ratio,
            value_size: args.value_size,
            keys: args.keys,
        };
        return crate::bench_resize::run(format, config, load, &args.resize).await;
    }
    if let Some(addr) = args.prometheus {
        shardis::metrics::serve_prometheus(addr)?;
        eprintln!("serving metrics on http://{addr}/metrics");
    }
    let driver = Arc::new(Driver::new(&args, &config).await?);
    let locator = Arc::new(Locator::from_source(
        config.topology(),
        &config.options().placement_source(),
        config.options().hash_tag,
    )?);
    let shards = locator.names().len();
    let value: Arc<Vec<u8>> = Arc::new(
        (0..args.value_size)
            .map(|i| b'a' + (i % 26) as u8)
            .collect(),
    );

    let bar = ProgressBar::new(args.keys).with_style(
        ProgressStyle::with_template("populating {pos}/{len} keys [{bar:40}] {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if !args.no_populate {
        driver.populate(args.keys, &value, &bar).await?;
    }
    bar.finish_and_clear();

    let stop = Arc::new(AtomicBool::new(false));
    let done_ops = Arc::new(AtomicU64::new(0));
    let done_errors = Arc::new(AtomicU64::new(0));
    let results = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|t| {
            let (driver, value, stop, done_ops, done_errors, results, locator) = (
                driver.clone(),
                value.clone(),
                stop.clone(),
                done_ops.clone(),
                done_errors.clone(),
                results.clone(),
                locator.clone(),
            );
            let (keys, read_ratio, mget, depth, pipeline) = (
                args.keys,
                args.read_ratio,
                args.mget_size,
                args.pipeline_depth,
                args.pipeline_size,
            );
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(t as u64 + 1);
                let mut hist = Histogram::<u64>::new(3).expect("a 3-digit histogram");
                let mut errors: BTreeMap<&'static str, u64> = BTreeMap::new();
                let mut per_shard = vec![0u64; shards];
                let mut touched = vec![false; shards];
                let mut ops: Vec<Op> = Vec::with_capacity(depth);
                while !stop.load(Ordering::Relaxed) {
                    ops.clear();
                    for _ in 0..depth {
                        if let Some(n) = pipeline {
                            ops.push(Op::Pipeline {
                                seed: rng.u64(..),
                                n,
                                read_ratio,
                            });
                            continue;
                        }
                        ops.push(if rng.f64() < read_ratio {
                            match mget {
                                Some(n) => Op::Mget {
                                    seed: rng.u64(..),
                                    n,
                                },
                                None => Op::Get(rng.u64(0..keys)),
                            }
                        } else {
                            Op::Set(rng.u64(0..keys))
                        });
                    }
                    let outcomes = join_all(ops.iter().map(|op| {
                        let (driver, value) = (&driver, &value);
                        async move {
                            let t0 = Instant::now();
                            let r = driver.run(*op, value).await;
                            (t0.elapsed(), r)
                        }
                    }))
                    .await;
                    // Requests per shard, as the placement sends them: one per single-key
                    // operation, one per shard an MGET touches.
                    for op in &ops {
                        match *op {
                            Op::Get(i) | Op::Set(i) => {
                                per_shard[locator.index(key(i).as_bytes())] += 1
                            }
                            Op::Pipeline {
                                seed,
                                n,
                                read_ratio,
                            } => {
                                touched.iter_mut().for_each(|t| *t = false);
                                for (k, _) in
                                    crate::bench_pipeline::commands(seed, n, keys, read_ratio)
                                {
                                    touched[locator.index(key(k).as_bytes())] = true;
                                }
                                for (count, t) in per_shard.iter_mut().zip(&touched) {
                                    *count += u64::from(*t);
                                }
                            }
                            Op::Mget { seed, n } => {
                                touched.iter_mut().for_each(|t| *t = false);
                                for k in mget_keys(seed, n, keys) {
                                    touched[locator.index(key(k).as_bytes())] = true;
                                }
                                for (count, t) in per_shard.iter_mut().zip(&touched) {
                                    *count += u64::from(*t);
                                }
                            }
                        }
                    }
                    for (took, r) in outcomes {
                        let _ = hist.record((took.as_micros() as u64).max(1));
                        if let Err(e) = r {
                            *errors.entry(e.kind().as_str()).or_default() += 1;
                            done_errors.fetch_add(1, Ordering::Relaxed);
                        }
                        done_ops.fetch_add(1, Ordering::Relaxed);
                    }
                }
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((hist, errors, per_shard));
            })
        })
        .collect();

    let progress = ProgressBar::new(args.duration.as_millis() as u64).with_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.set_prefix(args.target.as_str());
    let mut last = (Instant::now(), 0u64);
    while started.elapsed() < args.duration {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let ops = done_ops.load(Ordering::Relaxed);
        let rate = (ops - last.1) as f64 / last.0.elapsed().as_secs_f64();
        last = (Instant::now(), ops);
        progress.set_position(started.elapsed().as_millis() as u64);
        progress.set_message(format!(
            "{rate:>9.0} ops/s, {} errors",
            done_errors.load(Ordering::Relaxed)
        ));
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await
            .map_err(|e| Error::new(ErrorKind::Io, format!("a load task failed: {e}")))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    progress.finish_and_clear();

    let mut hist = Histogram::<u64>::new(3).expect("a 3-digit histogram");
    let mut errors: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut per_shard: BTreeMap<String, u64> =
        locator.names().iter().map(|n| (n.to_string(), 0)).collect();
    for (h, e, counts) in results.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let _ = hist.add(h);
        for (k, v) in e {
            *errors.entry(k).or_default() += v;
        }
        for (name, count) in locator.names().iter().zip(counts) {
            *per_shard.entry(name.to_string()).or_default() += count;
        }
    }
    let total_ops = hist.len();
    let q = |p: f64| hist.value_at_quantile(p);
    let ops_per_sec = total_ops as f64 / elapsed;
    let error_total: u64 = errors.values().sum();
    match format {
        Format::Json => output::json(&json!({
            "target": args.target.as_str(),
            "ops_per_sec": ops_per_sec,
            "ops": total_ops,
            "duration_s": elapsed,
            "concurrency": args.concurrency,
            "threads": args.threads.max(1),
            "pipeline_depth": args.pipeline_depth,
            "read_ratio": args.read_ratio,
            "mget_size": args.mget_size,
            "pipeline_size": args.pipeline_size,
            "value_size": args.value_size,
            "keys": args.keys,
            "p50_us": q(0.5),
            "p90_us": q(0.9),
            "p99_us": q(0.99),
            "p999_us": q(0.999),
            "max_us": hist.max(),
            "errors": error_total,
            "errors_by_kind": errors,
            "per_shard": per_shard,
        })),
        Format::Table => {
            let workload = match (args.mget_size, args.pipeline_size) {
                (_, Some(n)) => format!(
                    "pipelines of {n} commands, {:.0}% GET, rest SET",
                    args.read_ratio * 100.0
                ),
                (Some(n), _) => {
                    format!("{:.0}% MGET of {n} keys, rest SET", args.read_ratio * 100.0)
                }
                (None, None) => format!("{:.0}% GET, rest SET", args.read_ratio * 100.0),
            };
            println!(
                "target {}: {workload}; {} tasks x {} in flight on {} thread(s); {}-byte values; {} keys; {elapsed:.1} s",
                args.target.as_str(),
                args.concurrency,
                args.pipeline_depth,
                args.threads.max(1),
                args.value_size,
                args.keys
            );
            println!("throughput  {ops_per_sec:>12.0} ops/s ({total_ops} ops)");
            println!(
                "latency us  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
                q(0.5),
                q(0.9),
                q(0.99),
                q(0.999),
                hist.max()
            );
            println!(
                "errors      {error_total}{}",
                if errors.is_empty() {
                    String::new()
                } else {
                    format!(" ({errors:?})")
                }
            );
            println!("per shard   {per_shard:?}");
        }
    }
    Ok(())
}
