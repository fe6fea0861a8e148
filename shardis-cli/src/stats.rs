//! `shardis stats`: what every server of the fleet says of itself. `INFO` and `DBSIZE` go to
//! every endpoint of the config at once, each bounded by the config's connect and response
//! timeouts; the report shows each shard and endpoint, then fleet totals and the balance of keys
//! and memory against the shards' weights. An endpoint that does not answer is a row that says
//! so. `--watch` repeats it, with rates over each interval instead of totals.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use serde::Serialize;
use shardis::Config;

use crate::error::Error;
use crate::Format;

mod table;

/// The `stats` arguments.
#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// Refresh every DURATION (e.g. `2s`) in place, with rates over each interval instead of
    /// totals. The first report comes after one interval.
    #[arg(long, value_name = "DURATION", value_parser = crate::parse::duration)]
    watch: Option<Duration>,
    /// With --watch: stop after this many reports (default: until interrupted).
    #[arg(long, value_name = "N", requires = "watch")]
    count: Option<u64>,
}

/// One endpoint of the config, and its connection while it answers.
struct Target {
    shard: usize,
    role: &'static str,
    label: String,
    info: Result<redis::ConnectionInfo, String>,
    conn: Option<MultiplexedConnection>,
}

/// What one endpoint said of itself.
#[derive(Clone)]
struct Info {
    fields: HashMap<String, String>,
    keys: u64,
}

impl Info {
    fn parse(text: &str, keys: u64) -> Info {
        let fields = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.trim_end().split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Info { fields, keys }
    }

    fn num(&self, field: &str) -> Option<u64> {
        self.fields.get(field)?.parse().ok()
    }

    fn text(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    fn is_master(&self) -> bool {
        self.text("role") == Some("master")
    }
}

/// One report, as printed (`--format json`: one document per report).
#[derive(Serialize)]
struct Report {
    time: f64,
    interval_s: Option<f64>,
    shards: Vec<ShardRow>,
    totals: Totals,
    balance: Balance,
}

#[derive(Serialize)]
struct ShardRow {
    name: String,
    weight: u32,
    keys: Option<u64>,
    used_memory: Option<u64>,
    endpoints: Vec<EndpointRow>,
}

#[derive(Serialize, Default)]
struct EndpointRow {
    endpoint: String,
    role: &'static str,
    up: bool,
    error: Option<String>,
    server_role: Option<String>,
    keys: Option<u64>,
    used_memory: Option<u64>,
    maxmemory: Option<u64>,
    evicted_keys: Option<u64>,
    expired_keys: Option<u64>,
    evicted_per_sec: Option<f64>,
    expired_per_sec: Option<f64>,
    hit_ratio: Option<f64>,
    ops_per_sec: Option<f64>,
    connected_clients: Option<u64>,
    replication_lag_bytes: Option<u64>,
    master_link_up: Option<bool>,
}

#[derive(Serialize)]
struct Totals {
    shards: usize,
    endpoints: usize,
    endpoints_down: usize,
    keys: u64,
    used_memory: u64,
    maxmemory: Option<u64>,
    evicted_keys: u64,
    expired_keys: u64,
    evicted_per_sec: Option<f64>,
    expired_per_sec: Option<f64>,
    hit_ratio: Option<f64>,
    ops_per_sec: f64,
    connected_clients: u64,
}

#[derive(Serialize)]
struct Balance {
    keys: Spread,
    memory: Spread,
}

/// How one quantity spreads over the shards, each shard's share of the total divided by its
/// weight's share (1.0 is exactly its due).
#[derive(Serialize)]
struct Spread {
    shards_counted: usize,
    peak_to_mean: Option<f64>,
    max_deviation: Option<f64>,
    shard: Option<String>,
}

pub async fn run(format: Format, config: Config, args: StatsArgs) -> Result<ExitCode, Error> {
    let pool = config.options().pool;
    let settings = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(pool.connect_timeout))
        .set_response_timeout(Some(pool.response_timeout));
    let bound = pool.connect_timeout + pool.response_timeout;
    let mut targets: Vec<Target> = Vec::new();
    for (i, shard) in config.topology().shards().iter().enumerate() {
        // A Sentinel-managed shard has no configured primary: its replicas are empty too.
        let endpoints = shard
            .primary()
            .into_iter()
            .map(|p| (p, "primary"))
            .chain(shard.replicas().iter().map(|r| (r, "replica")));
        for (endpoint, role) in endpoints {
            targets.push(Target {
                shard: i,
                role,
                label: endpoint.label(),
                info: endpoint.connection_info().map_err(|e| e.to_string()),
                conn: None,
            });
        }
    }
    let Some(every) = args.watch else {
        let samples = sample(&mut targets, &settings, bound).await;
        print(format, &report(&config, &targets, &samples, None), false);
        return Ok(ExitCode::SUCCESS);
    };
    let in_place = format == Format::Table && std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: Option<(Instant, Vec<Option<Info>>)> = None;
    let mut reports = 0;
    while args.count.is_none_or(|n| reports < n) {
        tick.tick().await;
        let at = Instant::now();
        let samples = sample(&mut targets, &settings, bound).await;
        if let Some((then, before)) = &previous {
            let interval = Some((at - *then, before.as_slice()));
            print(
                format,
                &report(&config, &targets, &samples, interval),
                in_place,
            );
            reports += 1;
        }
        previous = Some((at, samples.into_iter().map(Result::ok).collect()));
    }
    Ok(ExitCode::SUCCESS)
}

/// `INFO` and `DBSIZE` from every endpoint at once, in one round trip each, each within
/// `bound`. A connection that failed is dropped and made again next time.
async fn sample(
    targets: &mut [Target],
    settings: &AsyncConnectionConfig,
    bound: Duration,
) -> Vec<Result<Info, String>> {
    join_all(targets.iter_mut().map(|t| async move {
        let asked = tokio::time::timeout(bound, ask(t, settings)).await;
        let result = asked.unwrap_or_else(|_| Err(format!("no answer within {bound:?}")));
        if result.is_err() {
            t.conn = None;
        }
        result
    }))
    .await
}

async fn ask(t: &mut Target, settings: &AsyncConnectionConfig) -> Result<Info, String> {
    if t.conn.is_none() {
        let info = t.info.clone()?;
        let client = redis::Client::open(info).map_err(|e| e.to_string())?;
        let conn = client
            .get_multiplexed_async_connection_with_config(settings)
            .await
            .map_err(|e| e.to_string())?;
        t.conn = Some(conn);
    }
    let conn = t.conn.as_mut().ok_or("no connection")?;
    let (info, keys): (String, u64) = redis::pipe()
        .cmd("INFO")
        .cmd("DBSIZE")
        .query_async(conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Info::parse(&info, keys))
}

/// The report of one sample; with `interval` (its length and the sample before), rates over it.
fn report(
    config: &Config,
    targets: &[Target],
    samples: &[Result<Info, String>],
    interval: Option<(Duration, &[Option<Info>])>,
) -> Report {
    let secs = interval.map(|(d, _)| d.as_secs_f64().max(1e-9));
    let before = |i: usize| interval.and_then(|(_, b)| b.get(i)?.as_ref());
    // Per second over the interval; `None` without one, or if the server restarted meanwhile.
    let rate = |i: usize, now: &Info, field: &str| -> Option<f64> {
        let delta = now.num(field)?.checked_sub(before(i)?.num(field)?)?;
        Some(delta as f64 / secs?)
    };
    let hits = |i: usize, now: &Info| -> (u64, u64) {
        let (h, m) = (now.num("keyspace_hits"), now.num("keyspace_misses"));
        let (h, m) = (h.unwrap_or(0), m.unwrap_or(0));
        match (interval, before(i)) {
            (Some(_), Some(b)) => {
                let (bh, bm) = (b.num("keyspace_hits"), b.num("keyspace_misses"));
                (
                    h.saturating_sub(bh.unwrap_or(0)),
                    m.saturating_sub(bm.unwrap_or(0)),
                )
            }
            (Some(_), None) => (0, 0),
            (None, _) => (h, m),
        }
    };
    let ratio = |(h, m): (u64, u64)| (h + m > 0).then(|| h as f64 / (h + m) as f64);
    let shards_config = config.topology().shards();
    let mut shards: Vec<ShardRow> = shards_config
        .iter()
        .map(|s| ShardRow {
            name: s.name().to_string(),
            weight: s.weight(),
            keys: None,
            used_memory: None,
            endpoints: Vec::new(),
        })
        .collect();
    let (mut all_hits, mut all_misses) = (0u64, 0u64);
    for (i, (t, sample)) in targets.iter().zip(samples).enumerate() {
        let mut row = EndpointRow {
            endpoint: t.label.clone(),
            role: t.role,
            ..EndpointRow::default()
        };
        match sample {
            Err(e) => row.error = Some(e.clone()),
            Ok(now) => {
                let (h, m) = hits(i, now);
                (all_hits, all_misses) = (all_hits + h, all_misses + m);
                row = EndpointRow {
                    up: true,
                    server_role: now.text("role").map(|r| server_role(r).to_owned()),
                    keys: Some(now.keys),
                    used_memory: now.num("used_memory"),
                    maxmemory: now.num("maxmemory"),
                    evicted_keys: now.num("evicted_keys"),
                    expired_keys: now.num("expired_keys"),
                    evicted_per_sec: rate(i, now, "evicted_keys"),
                    expired_per_sec: rate(i, now, "expired_keys"),
                    hit_ratio: ratio((h, m)),
                    ops_per_sec: match interval {
                        Some(_) => rate(i, now, "total_commands_processed"),
                        None => now.num("instantaneous_ops_per_sec").map(|n| n as f64),
                    },
                    connected_clients: now.num("connected_clients"),
                    master_link_up: now.text("master_link_status").map(|s| s == "up"),
                    ..row
                };
            }
        }
        shards[t.shard].endpoints.push(row);
    }
    // Replication lag: how far each replica's offset is behind the shard's master's.
    let mut by_shard: Vec<Vec<&Info>> = vec![Vec::new(); shards.len()];
    for (t, s) in targets.iter().zip(samples) {
        if let Ok(info) = s {
            by_shard[t.shard].push(info);
        }
    }
    for (shard, infos) in shards.iter_mut().zip(&by_shard) {
        let master = infos.iter().find(|i| i.is_master());
        let offset = master.and_then(|m| m.num("master_repl_offset"));
        let mut answered = infos.iter();
        for row in shard.endpoints.iter_mut().filter(|r| r.up) {
            let info = answered.next();
            if let (Some(info), Some(offset)) = (info, offset) {
                if !info.is_master() {
                    row.replication_lag_bytes = info
                        .num("slave_repl_offset")
                        .map(|o| offset.saturating_sub(o));
                }
            }
        }
        // The shard's data: its primary's numbers, else the first replica that answered.
        let source = shard
            .endpoints
            .iter()
            .find(|r| r.up && r.role == "primary")
            .or_else(|| shard.endpoints.iter().find(|r| r.up));
        shard.keys = source.and_then(|r| r.keys);
        shard.used_memory = source.and_then(|r| r.used_memory);
    }
    let rows = || shards.iter().flat_map(|s| &s.endpoints).filter(|r| r.up);
    let sum = |f: fn(&EndpointRow) -> Option<u64>| rows().filter_map(f).sum::<u64>();
    let sum_rate =
        |f: fn(&EndpointRow) -> Option<f64>| interval.map(|_| rows().filter_map(f).sum::<f64>());
    let endpoints = targets.len();
    let totals = Totals {
        shards: shards.len(),
        endpoints,
        endpoints_down: endpoints - rows().count(),
        keys: shards.iter().filter_map(|s| s.keys).sum(),
        used_memory: sum(|r| r.used_memory),
        maxmemory: rows()
            .map(|r| r.maxmemory.filter(|m| *m > 0))
            .sum::<Option<u64>>(),
        evicted_keys: sum(|r| r.evicted_keys),
        expired_keys: sum(|r| r.expired_keys),
        evicted_per_sec: sum_rate(|r| r.evicted_per_sec),
        expired_per_sec: sum_rate(|r| r.expired_per_sec),
        hit_ratio: ratio((all_hits, all_misses)),
        ops_per_sec: rows().filter_map(|r| r.ops_per_sec).sum(),
        connected_clients: sum(|r| r.connected_clients),
    };
    let balance = Balance {
        keys: spread(&shards, |s| s.keys),
        memory: spread(&shards, |s| s.used_memory),
    };
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    Report {
        time,
        interval_s: secs,
        shards,
        totals,
        balance,
    }
}

/// `primary` or `replica` for Redis's `master` and `slave`.
fn server_role(role: &str) -> &str {
    match role {
        "master" => "primary",
        "slave" => "replica",
        other => other,
    }
}

/// The spread of `value` over the shards that report it, against their weights.
fn spread(shards: &[ShardRow], value: fn(&ShardRow) -> Option<u64>) -> Spread {
    let known: Vec<(&ShardRow, u64)> = shards
        .iter()
        .filter_map(|s| value(s).map(|v| (s, v)))
        .collect();
    let total: u64 = known.iter().map(|(_, v)| v).sum();
    let weights: u64 = known.iter().map(|(s, _)| u64::from(s.weight)).sum();
    let mut spread = Spread {
        shards_counted: known.len(),
        peak_to_mean: None,
        max_deviation: None,
        shard: None,
    };
    if total == 0 || weights == 0 {
        return spread;
    }
    // Each shard's load: its share of the total over its weight's share.
    let loads: Vec<(&ShardRow, f64)> = known
        .iter()
        .map(|(s, v)| {
            let due = f64::from(s.weight) / weights as f64;
            (*s, *v as f64 / total as f64 / due)
        })
        .collect();
    let mean = loads.iter().map(|(_, l)| l).sum::<f64>() / loads.len() as f64;
    let peak = loads.iter().map(|(_, l)| *l).fold(0.0, f64::max);
    spread.peak_to_mean = Some(peak / mean);
    if let Some((s, l)) = loads
        .iter()
        .max_by(|a, b| (a.1 - 1.0).abs().total_cmp(&(b.1 - 1.0).abs()))
    {
        spread.max_deviation = Some(l - 1.0);
        spread.shard = Some(s.name.clone());
    }
    spread
}

fn print(format: Format, report: &Report, in_place: bool) {
    if format == Format::Json {
        // Straight from the structs, so the fields keep their documented order.
        match serde_json::to_string(report) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("error: cannot encode the report: {e}"),
        }
        return;
    }
    if in_place {
        // Home the cursor and clear the screen: the new report replaces the last.
        print!("\x1b[H\x1b[2J");
    }
    table::print(report);
}
