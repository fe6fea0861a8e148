//! The report: process figures, the table per phase, errors by kind, losses; as text or JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::chaos::FaultLog;
use crate::check::Losses;
use crate::load::{PhaseStats, PHASES};

/// File descriptors, resident memory and threads of this process, and the machine's load, at
/// `at_s` seconds after the first sample.
#[derive(Clone, Copy, Serialize)]
pub struct Process {
    pub at_s: f64,
    pub fds: Option<u64>,
    pub rss_kib: Option<u64>,
    pub threads: Option<u64>,
    /// The 1-minute load average: other work on the machine shows here.
    pub load_1m: Option<f64>,
}

impl Process {
    pub fn sample(at: Duration) -> Process {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        };
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        Process {
            at_s: at.as_secs_f64().round(),
            // The directory handle read_dir holds is among the entries, at both samples.
            fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as u64),
            rss_kib: field("VmRSS:"),
            threads: field("Threads:"),
            load_1m: load.split_whitespace().next().and_then(|v| v.parse().ok()),
        }
    }
}

#[derive(Serialize)]
pub struct PhaseRow {
    pub phase: &'static str,
    pub seconds: f64,
    pub requests: u64,
    pub ops_per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub failed_reads: u64,
    pub failed_writes: u64,
    pub failed_reads_by_kind: BTreeMap<&'static str, u64>,
    pub failed_writes_by_kind: BTreeMap<&'static str, u64>,
}

impl PhaseRow {
    fn new(phase: &'static str, seconds: f64, s: &PhaseStats) -> PhaseRow {
        let requests = s.reads + s.writes;
        PhaseRow {
            phase,
            seconds,
            requests,
            ops_per_sec: if seconds > 0.0 {
                requests as f64 / seconds
            } else {
                0.0
            },
            p50_us: s.latency.value_at_quantile(0.5),
            p99_us: s.latency.value_at_quantile(0.99),
            max_us: s.latency.max(),
            failed_reads: s.read_errors.values().sum(),
            failed_writes: s.write_errors.values().sum(),
            failed_reads_by_kind: s.read_errors.clone(),
            failed_writes_by_kind: s.write_errors.clone(),
        }
    }
}

#[derive(Serialize)]
pub struct Report {
    pub minutes: f64,
    pub tasks: u64,
    pub fault_every_s: f64,
    pub keys: u64,
    pub value_bytes: usize,
    pub faults: FaultLog,
    pub phases: Vec<PhaseRow>,
    pub total: PhaseRow,
    pub outcome_unknown_writes: u64,
    /// Reads that returned another key's value (misrouting or corruption); must be 0.
    pub wrong_values: u64,
    pub writes: Losses,
    /// After the warm-up, every minute, and at the end (after the drain, load still running).
    pub process: Vec<Process>,
}

/// Everything but the run's settings and the losses, from the merged per-phase statistics.
pub struct Figures {
    pub phases: Vec<PhaseRow>,
    pub total: PhaseRow,
    pub all: PhaseStats,
}

pub fn figures(stats: &[PhaseStats], spent: &[Duration]) -> Figures {
    let mut all = PhaseStats::new();
    let phases = PHASES
        .iter()
        .zip(stats.iter().zip(spent))
        .map(|(name, (s, d))| {
            all.merge(s);
            PhaseRow::new(name, d.as_secs_f64(), s)
        })
        .collect();
    let total = PhaseRow::new("all", spent.iter().map(Duration::as_secs_f64).sum(), &all);
    Figures { phases, total, all }
}

pub fn print_text(r: &Report) {
    println!(
        "soak: {} min, {} tasks, 80/20 GET/SET over {} keys of {} bytes, a fault every {} s",
        r.minutes, r.tasks, r.keys, r.value_bytes, r.fault_every_s
    );
    let f = &r.faults;
    println!(
        "faults: {} SIGKILL+restart, {} SIGSTOP 2 s, {} hot swaps, {} config reloads; longest swap/reload {:.1} ms; {} fault actions failed",
        f.kills, f.stops, f.swaps, f.reloads, f.longest_swap_ms, f.failures.len()
    );
    for failure in &f.failures {
        println!("  {failure}");
    }
    println!(
        "\n| phase | seconds | requests | ops/s | p50 µs | p99 µs | max µs | failed reads | failed writes |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for p in r.phases.iter().chain([&r.total]) {
        println!(
            "| {} | {:.0} | {} | {:.0} | {} | {} | {} | {} | {} |",
            p.phase,
            p.seconds,
            p.requests,
            p.ops_per_sec,
            p.p50_us,
            p.p99_us,
            p.max_us,
            p.failed_reads,
            p.failed_writes
        );
    }
    let kinds = |m: &BTreeMap<&str, u64>| {
        if m.is_empty() {
            return "none".to_owned();
        }
        m.iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let t = &r.total;
    println!("\nfailed reads by kind: {}", kinds(&t.failed_reads_by_kind));
    println!(
        "failed writes by kind: {} ({} with an unknown outcome)",
        kinds(&t.failed_writes_by_kind),
        r.outcome_unknown_writes
    );
    for p in r
        .phases
        .iter()
        .filter(|p| p.failed_reads + p.failed_writes > 0)
    {
        println!(
            "  {}: reads {}; writes {}",
            p.phase,
            kinds(&p.failed_reads_by_kind),
            kinds(&p.failed_writes_by_kind)
        );
    }
    println!(
        "reads that returned another key's value: {}",
        r.wrong_values
    );
    let w = &r.writes;
    println!(
        "acknowledged writes: {} to {} keys; last write of each read back from its owner's primary: {} intact",
        w.acknowledged_writes, w.keys_checked, w.intact
    );
    println!(
        "lost: {} by primary restarted empty (expected), {} moved by a hot swap (expected: on the shard that acknowledged them), {} overwritten by a late unknown-outcome write, {} unexplained",
        w.lost_restart_empty, w.lost_moved_by_swap, w.lost_late_unknown_write, w.lost_unexplained
    );
    for e in &w.unexplained_examples {
        println!("  {e}");
    }
    let (Some(first), Some(last)) = (r.process.first(), r.process.last()) else {
        return;
    };
    let growth = |what: &str, a: Option<u64>, b: Option<u64>, unit: &str| match (a, b) {
        (Some(a), Some(b)) => {
            println!(
                "{what}: {a}{unit} -> {b}{unit} ({:+}{unit})",
                b as i64 - a as i64
            )
        }
        _ => println!("{what}: not available"),
    };
    growth("file descriptors", first.fds, last.fds, "");
    growth("RSS", first.rss_kib, last.rss_kib, " KiB");
    growth("threads", first.threads, last.threads, "");
    let series = |f: fn(&Process) -> Option<String>| {
        r.process
            .iter()
            .map(|p| f(p).unwrap_or_else(|| "?".into()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "by minute: RSS KiB {}; fds {}; load {}",
        series(|p| p.rss_kib.map(|v| v.to_string())),
        series(|p| p.fds.map(|v| v.to_string())),
        series(|p| p.load_1m.map(|v| v.to_string()))
    );
}
