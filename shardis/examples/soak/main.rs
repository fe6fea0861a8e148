//! Soak benchmark (not run in CI): minutes of 80/20 GET/SET from many tasks over 3 shards, each
//! a primary with one replica, while a fault rotation runs every few seconds — SIGKILL of a
//! primary and its restart, SIGSTOP of a primary, a hot swap (a 4th shard in or out), a config
//! reload. It reports latency per phase, failed requests by kind, acknowledged writes lost (every
//! key's last acknowledged write read back from its owner's primary directly at the end), and
//! the growth of file descriptors and RSS.
//!
//! `benches/soak.sh [--minutes N] [--tasks T] [--fault-every SECS] [--keys K] [--json]`
//! (defaults 10, 64, 5, 100000; needs `redis-server`). It exits 1 when a loss is unexplained or
//! a read returned another key's value.
//!
//! The client: `read_from = primary_then_replica`, `on_primary_down = fail_fast`, a probe every
//! 100 ms with a 100 ms timeout, a response timeout of 300 ms (400 ms after every other reload).
//!
//! # Layout
//! - `load`: the request tasks, the phase clock, the value format.
//! - `chaos`: the servers and the fault rotation.
//! - `check`: the end check of acknowledged writes and the classes of loss.
//! - `report`: process figures, the table per phase, text and JSON output.

mod chaos;
mod check;
mod load;
mod report;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardis::Client;

use chaos::{Chaos, Fleet, BASE_SHARDS};
use load::{PhaseClock, PhaseStats, Rng, PHASES, VALUE_BYTES};
use report::{Process, Report};

const USAGE: &str =
    "usage: soak [--minutes N] [--tasks T] [--fault-every SECS] [--keys K] [--json]";
/// Load before the first process sample, with no fault.
const WARM_UP: Duration = Duration::from_secs(5);
/// Process figures are sampled this often.
const SAMPLE_EVERY: Duration = Duration::from_secs(60);
/// Load after the last fault, before the second process sample.
const DRAIN: Duration = Duration::from_secs(3);

struct Args {
    minutes: f64,
    tasks: u64,
    fault_every: f64,
    keys: u64,
    json: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        minutes: 10.0,
        tasks: 64,
        fault_every: 5.0,
        keys: 100_000,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--json" {
            args.json = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--minutes" => args.minutes = number(&flag, &value)?,
            "--tasks" => args.tasks = number(&flag, &value)?,
            "--fault-every" => args.fault_every = number(&flag, &value)?,
            "--keys" => args.keys = number(&flag, &value)?,
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if !(args.minutes > 0.0 && args.fault_every > 0.0 && args.tasks > 0 && args.keys > 0) {
        return Err("every number must be above 0".into());
    }
    Ok(args)
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: not a number: {value}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("soak: {e}\n{USAGE}");
        std::process::exit(2)
    });
    let fleet = Arc::new(Fleet::start(BASE_SHARDS + 1)?);
    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("soak.toml");
    std::fs::write(&config_path, fleet.config_toml(BASE_SHARDS, 300))?;
    let client = Client::from_config_file(&config_path).await?;

    let clock = Arc::new(PhaseClock::new());
    let stop_load = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..args.tasks)
        .map(|id| {
            let (client, clock, stop) = (client.clone(), clock.clone(), stop_load.clone());
            tokio::spawn(load::task(client, id, args.tasks, args.keys, clock, stop))
        })
        .collect();
    tokio::time::sleep(WARM_UP).await;
    let begun = Instant::now();
    let mut process = vec![Process::sample(Duration::ZERO)];

    let stop_chaos = Arc::new(AtomicBool::new(false));
    let chaos = Chaos {
        client: client.clone(),
        fleet: fleet.clone(),
        clock: clock.clone(),
        config_path,
        response_timeout_ms: 300,
        extra_in: false,
        rng: Rng::new(std::process::id().into()),
        log: Default::default(),
        restarted: Default::default(),
    };
    let every = Duration::from_secs_f64(args.fault_every);
    let chaos = tokio::spawn(chaos.run(every, stop_chaos.clone()));
    let run_for = Duration::from_secs_f64(args.minutes * 60.0);
    while begun.elapsed() < run_for {
        tokio::time::sleep(run_for.saturating_sub(begun.elapsed()).min(SAMPLE_EVERY)).await;
        process.push(Process::sample(begun.elapsed()));
    }
    stop_chaos.store(true, Ordering::Relaxed);
    let chaos = chaos.await?;
    tokio::time::sleep(DRAIN).await;
    process.push(Process::sample(begun.elapsed()));
    stop_load.store(true, Ordering::Relaxed);
    let spent = clock.spent();

    let mut stats: Vec<PhaseStats> = PHASES.iter().map(|_| PhaseStats::new()).collect();
    let mut keys = Vec::with_capacity(args.keys as usize);
    for task in tasks {
        let out = task.await?;
        for (all, mine) in stats.iter_mut().zip(&out.stats) {
            all.merge(mine);
        }
        keys.extend(out.keys);
    }
    let writes = check::check(&client, keys, &chaos.restarted, &fleet.primaries()).await?;
    let figures = report::figures(&stats, &spent);
    let report = Report {
        minutes: args.minutes,
        tasks: args.tasks,
        fault_every_s: args.fault_every,
        keys: args.keys,
        value_bytes: VALUE_BYTES,
        faults: chaos.log,
        phases: figures.phases,
        total: figures.total,
        outcome_unknown_writes: figures.all.unknown_outcome,
        wrong_values: figures.all.wrong_values,
        writes,
        process,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report::print_text(&report);
    }
    if report.writes.lost_unexplained > 0 || report.wrong_values > 0 {
        return Err("unexplained lost writes or wrong values (see above)".into());
    }
    Ok(())
}
