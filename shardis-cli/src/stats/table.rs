//! The table of `shardis stats`: aligned columns, sizes written as Redis writes them (`1.21M`),
//! then one line of fleet totals and one of balance.

use super::{EndpointRow, Report, Spread};

pub(super) fn print(report: &Report) {
    let watch = report.interval_s.is_some();
    let (evicted, expired) = if watch {
        ("evicted/s", "expired/s")
    } else {
        ("evicted", "expired")
    };
    let header = [
        "shard",
        "endpoint",
        "role",
        "keys",
        "memory",
        "maxmemory",
        evicted,
        expired,
        "hit%",
        "ops/s",
        "clients",
        "lag",
        "note",
    ];
    // Text columns left, numbers right.
    let right = |col: usize| (3..=11).contains(&col);
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for shard in &report.shards {
        for (i, e) in shard.endpoints.iter().enumerate() {
            let name = if i == 0 { shard.name.as_str() } else { "" };
            rows.push(row(name, e, watch));
        }
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    if let Some(secs) = report.interval_s {
        println!("rates over the last {secs:.2} s");
    }
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, cell)| match right(c) {
                true => format!("{cell:>w$}", w = widths[c]),
                false => format!("{cell:<w$}", w = widths[c]),
            })
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
    let t = &report.totals;
    let (evicted, expired) = match (t.evicted_per_sec, t.expired_per_sec) {
        (Some(ev), Some(ex)) => (format!("{ev:.1}/s"), format!("{ex:.1}/s")),
        _ => (t.evicted_keys.to_string(), t.expired_keys.to_string()),
    };
    println!();
    println!(
        "fleet: {} shards, {} endpoints ({} down); {} keys; memory {} (max {}); evicted {evicted}, expired {expired}; hit ratio {}; {:.0} ops/s; {} clients",
        t.shards,
        t.endpoints,
        t.endpoints_down,
        t.keys,
        bytes(t.used_memory),
        t.maxmemory.map_or("none".to_owned(), bytes),
        percent(t.hit_ratio),
        t.ops_per_sec,
        t.connected_clients
    );
    println!(
        "balance (share / weight share): keys {}; memory {}",
        spread(&report.balance.keys),
        spread(&report.balance.memory)
    );
}

fn row(shard: &str, e: &EndpointRow, watch: bool) -> Vec<String> {
    let mut cells = vec![shard.to_owned(), e.endpoint.clone(), e.role.to_owned()];
    if !e.up {
        cells.extend(std::iter::repeat_n("-".to_owned(), 9));
        cells.push(format!(
            "down: {}",
            e.error.as_deref().unwrap_or("no answer")
        ));
        return cells;
    }
    let num = |n: Option<u64>| n.map_or("-".to_owned(), |n| n.to_string());
    let rate = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{r:.1}"));
    let (evicted, expired) = if watch {
        (rate(e.evicted_per_sec), rate(e.expired_per_sec))
    } else {
        (num(e.evicted_keys), num(e.expired_keys))
    };
    let mut notes = Vec::new();
    if let Some(found) = e.server_role.as_deref().filter(|r| *r != e.role) {
        notes.push(format!("server says {found}"));
    }
    if e.master_link_up == Some(false) {
        notes.push("replication link down".to_owned());
    }
    cells.extend([
        num(e.keys),
        e.used_memory.map_or("-".to_owned(), bytes),
        match e.maxmemory {
            Some(0) => "none".to_owned(),
            m => m.map_or("-".to_owned(), bytes),
        },
        evicted,
        expired,
        percent(e.hit_ratio),
        e.ops_per_sec.map_or("-".to_owned(), |r| format!("{r:.0}")),
        num(e.connected_clients),
        e.replication_lag_bytes.map_or("-".to_owned(), bytes),
        notes.join("; "),
    ]);
    cells
}

/// A size as Redis's `*_human` fields write it: `512B`, `1.21K`, `3.40M`, `2.00G`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2}{}", UNITS[unit])
}

fn percent(r: Option<f64>) -> String {
    r.map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

fn spread(s: &Spread) -> String {
    match (s.peak_to_mean, s.max_deviation, &s.shard) {
        (Some(p), Some(d), Some(shard)) => format!(
            "peak/mean {p:.3}, largest deviation {:+.1}% ({shard})",
            d * 100.0
        ),
        _ => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_redis() {
        assert_eq!(bytes(0), "0B");
        assert_eq!(bytes(1023), "1023B");
        assert_eq!(bytes(1024), "1.00K");
        assert_eq!(bytes(1_268_000), "1.21M");
        assert_eq!(bytes(3 << 30), "3.00G");
    }
}
