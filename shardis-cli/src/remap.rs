//! `shardis remap`: how evenly each algorithm spreads keys, how many move when shards are added
//! or removed, and what a lookup and a table build cost — on this machine, before resizing a
//! fleet.

use std::hint::black_box;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::json;
use shardis::placement::{
    Algorithm, KeyHash, Placement, PlacementNode, PlacementSpec, RendezvousTable,
};
use shardis::ConfigError;

use crate::error::Error;

use crate::output;
use crate::Format;

/// The `remap` arguments.
#[derive(clap::Args, Debug)]
pub struct RemapArgs {
    /// Algorithms to compare: `all`, or a comma-separated list. Defaults to the default
    /// algorithm alone.
    #[arg(long, value_delimiter = ',')]
    algorithms: Vec<String>,
    /// Shards before the change, named `shard-0`, `shard-1`, ...
    #[arg(long, default_value_t = 10)]
    shards: usize,
    /// Add this many shards (the default change is `--add 1`).
    #[arg(long, conflicts_with_all = ["remove", "remove_index"])]
    add: Option<usize>,
    /// Remove the shard of this name.
    #[arg(long, conflicts_with = "remove_index")]
    remove: Option<String>,
    /// Remove the shard at this index (0-based).
    #[arg(long)]
    remove_index: Option<usize>,
    /// Weights of the shards, comma-separated: the first `--shards` apply before the change,
    /// any extra ones to added shards (which default to 1).
    #[arg(long, value_delimiter = ',')]
    weights: Vec<u32>,
    /// Ring points per unit of weight.
    #[arg(long, default_value_t = shardis::placement::ring::DEFAULT_VNODES)]
    vnodes: u32,
    /// rendezvous_table arc count exponent.
    #[arg(long, default_value_t = shardis::placement::rendezvous_table::DEFAULT_ARC_BITS)]
    arc_bits: u32,
    /// Maglev table size (a prime).
    #[arg(long, default_value_t = shardis::placement::maglev::DEFAULT_TABLE_SIZE)]
    table_size: u32,
    /// ketama key hash (a twemproxy hash name).
    #[arg(long, default_value = "fnv1a_64")]
    hash: KeyHash,
    /// Keys sampled for load, moves and lookup timing.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Take load and moved figures from each shard's exact share of the hash space where the
    /// algorithm allows it (others are sampled).
    #[arg(long)]
    exact: bool,
    /// Write an SVG plot of per-shard load and moved fraction to this file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<std::path::PathBuf>,
}

/// One algorithm's figures; the JSON output is an array of these.
#[derive(Debug, Serialize)]
pub struct Row {
    algorithm: String,
    moved_fraction: f64,
    min_fraction: f64,
    moved_ratio: f64,
    moved_between_survivors: f64,
    peak_to_mean_before: f64,
    peak_to_mean_after: f64,
    rsd_before: f64,
    rsd_after: f64,
    lookup_ns: f64,
    build_ms: f64,
    update_ms: Option<f64>,
    memory_bytes: usize,
    exact: bool,
    #[serde(skip)]
    load_after: Vec<f64>,
}

struct Change {
    before: Vec<(String, u32)>,
    after: Vec<(String, u32)>,
    min_fraction: f64,
}

pub fn run(format: Format, args: RemapArgs) -> Result<(), Error> {
    let algorithms = algorithms(&args.algorithms)?;
    let change = change(&args)?;
    let mut rows = Vec::new();
    for algorithm in algorithms {
        let spec = match algorithm {
            Algorithm::Ring => PlacementSpec::Ring {
                vnodes: args.vnodes,
            },
            Algorithm::RendezvousTable => PlacementSpec::RendezvousTable {
                arc_bits: args.arc_bits,
            },
            Algorithm::Maglev => PlacementSpec::Maglev {
                table_size: args.table_size,
            },
            Algorithm::Ketama => PlacementSpec::Ketama { hash: args.hash },
            other => other.default_spec(),
        };
        match measure(spec, &change, &args) {
            Ok(row) => rows.push(row),
            // One algorithm that cannot take these shards (jump with weights) does not stop
            // the comparison.
            Err(e) => eprintln!("{algorithm}: skipped: {e}"),
        }
    }
    if let Some(path) = &args.plot {
        plot(path, &rows, &change)?;
    }
    match format {
        Format::Json => output::json(&json!(rows)),
        Format::Table => print_table(&rows, &change, &args),
    }
    Ok(())
}

fn algorithms(names: &[String]) -> Result<Vec<Algorithm>, Error> {
    if names.is_empty() {
        return Ok(vec![Algorithm::default()]);
    }
    if names.iter().any(|n| n == "all") {
        return Ok(Algorithm::ALL.to_vec());
    }
    names
        .iter()
        .map(|n| {
            n.parse::<Algorithm>().map_err(|reason| {
                Error::from(ConfigError::InvalidValue {
                    field: "--algorithms".into(),
                    reason,
                })
            })
        })
        .collect()
}

fn change(args: &RemapArgs) -> Result<Change, Error> {
    let bad = |field: &str, reason: String| -> Error {
        ConfigError::InvalidValue {
            field: field.into(),
            reason,
        }
        .into()
    };
    if args.shards == 0 {
        return Err(bad("--shards", "at least one shard is needed".into()));
    }
    if args.keys == 0 {
        return Err(bad("--keys", "at least one key is needed".into()));
    }
    let weight = |i: usize| args.weights.get(i).copied().unwrap_or(1);
    let before: Vec<(String, u32)> = (0..args.shards)
        .map(|i| (format!("shard-{i}"), weight(i)))
        .collect();
    let total_before: u64 = before.iter().map(|s| u64::from(s.1)).sum();
    let (after, min_fraction) = match (&args.remove, args.remove_index) {
        (Some(name), _) => {
            let i = before
                .iter()
                .position(|(n, _)| n == name)
                .ok_or_else(|| bad("--remove", format!("no shard named `{name}`")))?;
            removal(&before, i, total_before)
        }
        (None, Some(i)) if i < before.len() => removal(&before, i, total_before),
        (None, Some(i)) => {
            return Err(bad(
                "--remove-index",
                format!("{i} is not below --shards {}", args.shards),
            ))
        }
        (None, None) => {
            let add = args.add.unwrap_or(1);
            let mut after = before.clone();
            after.extend((0..add).map(|k| {
                (
                    format!("shard-{}", args.shards + k),
                    weight(args.shards + k),
                )
            }));
            let added: u64 = after[args.shards..].iter().map(|s| u64::from(s.1)).sum();
            let total: u64 = after.iter().map(|s| u64::from(s.1)).sum();
            (after, added as f64 / total as f64)
        }
    };
    if after.is_empty() {
        return Err(bad(
            "--remove",
            "removing the only shard leaves nothing".into(),
        ));
    }
    Ok(Change {
        before,
        after,
        min_fraction,
    })
}

fn removal(before: &[(String, u32)], i: usize, total: u64) -> (Vec<(String, u32)>, f64) {
    let mut after = before.to_vec();
    let (_, w) = after.remove(i);
    (after, f64::from(w) / total as f64)
}

fn nodes(shards: &[(String, u32)]) -> Vec<PlacementNode<'_>> {
    shards
        .iter()
        .map(|(name, weight)| PlacementNode {
            name,
            weight: *weight,
        })
        .collect()
}

/// Writes the 16-byte key number `i` (`key:` and 12 digits) into `buf`.
fn key(i: u64, buf: &mut [u8; 16]) {
    buf[..4].copy_from_slice(b"key:");
    let mut n = i;
    for d in (4..16).rev() {
        buf[d] = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

fn measure(spec: PlacementSpec, change: &Change, args: &RemapArgs) -> Result<Row, Error> {
    let (before_nodes, after_nodes) = (nodes(&change.before), nodes(&change.after));
    let before = spec.build(&before_nodes)?;
    let started = Instant::now();
    let after = spec.build(&after_nodes)?;
    let build_ms = started.elapsed().as_secs_f64() * 1e3;
    let update_ms = match spec {
        PlacementSpec::RendezvousTable { arc_bits } => {
            let old = RendezvousTable::new(&before_nodes, arc_bits)?;
            let started = Instant::now();
            black_box(old.update(&after_nodes)?);
            Some(started.elapsed().as_secs_f64() * 1e3)
        }
        _ => None,
    };
    let names_before: Vec<&str> = change.before.iter().map(|s| s.0.as_str()).collect();
    let names_after: Vec<&str> = change.after.iter().map(|s| s.0.as_str()).collect();

    let exact = if args.exact {
        match (before.ownership(), after.ownership()) {
            (Some(b), Some(a)) => b.moved(&names_before, &a, &names_after).map(|moved| {
                (
                    b.shares(change.before.len()),
                    a.shares(change.after.len()),
                    moved,
                )
            }),
            _ => None,
        }
    } else {
        None
    };
    let is_exact = exact.is_some();
    let (load_before, load_after, (moved, between)) = match exact {
        Some(figures) => figures,
        None => sample(spec, before.as_ref(), after.as_ref(), change, args.keys),
    };
    let (peak_before, rsd_before) = balance(&load_before, &change.before);
    let (peak_after, rsd_after) = balance(&load_after, &change.after);
    Ok(Row {
        algorithm: spec.algorithm().as_str().to_owned(),
        moved_fraction: moved,
        min_fraction: change.min_fraction,
        moved_ratio: moved / change.min_fraction,
        moved_between_survivors: between,
        peak_to_mean_before: peak_before,
        peak_to_mean_after: peak_after,
        rsd_before,
        rsd_after,
        lookup_ns: lookup_ns(after.as_ref(), args.keys.min(1_000_000)),
        build_ms,
        update_ms,
        memory_bytes: after.memory_bytes(),
        exact: is_exact,
        load_after,
    })
}

/// Loads and moves over `keys` sampled keys.
fn sample(
    spec: PlacementSpec,
    before: &dyn Placement,
    after: &dyn Placement,
    change: &Change,
    keys: u64,
) -> (Vec<f64>, Vec<f64>, (f64, f64)) {
    let bar = ProgressBar::new(keys).with_style(
        ProgressStyle::with_template("{msg:>16} [{bar:40}] {percent:>3}% {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(spec.algorithm().as_str());
    // Shards present before and after, by index in each.
    let after_index: Vec<Option<usize>> = change
        .before
        .iter()
        .map(|(n, _)| change.after.iter().position(|(m, _)| m == n))
        .collect();
    let mut load_before = vec![0u64; change.before.len()];
    let mut load_after = vec![0u64; change.after.len()];
    let (mut moved, mut between) = (0u64, 0u64);
    let survivor_after: Vec<bool> = change
        .after
        .iter()
        .map(|(n, _)| change.before.iter().any(|(m, _)| m == n))
        .collect();
    let mut buf = [0u8; 16];
    for i in 0..keys {
        key(i, &mut buf);
        let (b, a) = (before.locate(&buf), after.locate(&buf));
        load_before[b] += 1;
        load_after[a] += 1;
        if after_index[b] != Some(a) {
            moved += 1;
            if after_index[b].is_some() && survivor_after[a] {
                between += 1;
            }
        }
        if i % 65_536 == 0 {
            bar.set_position(i);
        }
    }
    bar.finish_and_clear();
    let share = |v: Vec<u64>| v.into_iter().map(|c| c as f64 / keys as f64).collect();
    (
        share(load_before),
        share(load_after),
        (moved as f64 / keys as f64, between as f64 / keys as f64),
    )
}

/// Peak-to-mean and relative standard deviation of load, each shard's share divided by its due
/// (weight / total weight).
fn balance(shares: &[f64], shards: &[(String, u32)]) -> (f64, f64) {
    let total: f64 = shards.iter().map(|s| f64::from(s.1)).sum();
    let ratios: Vec<f64> = shares
        .iter()
        .zip(shards)
        .map(|(share, s)| share / (f64::from(s.1) / total))
        .collect();
    let n = ratios.len() as f64;
    let mean = ratios.iter().sum::<f64>() / n;
    let peak = ratios.iter().cloned().fold(f64::MIN, f64::max);
    let var = ratios.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n;
    (peak / mean, var.sqrt() / mean)
}

/// Nanoseconds per lookup (hash included) of 16-byte keys, the best of three passes.
fn lookup_ns(placement: &dyn Placement, keys: u64) -> f64 {
    let keys: Vec<[u8; 16]> = (0..keys.max(1))
        .map(|i| {
            let mut k = [0u8; 16];
            key(
                i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 1_000_000_000_000,
                &mut k,
            );
            k
        })
        .collect();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let mut sum = 0usize;
        for k in &keys {
            sum = sum.wrapping_add(placement.locate(black_box(k)));
        }
        black_box(sum);
        best = best.min(started.elapsed().as_nanos() as f64 / keys.len() as f64);
    }
    best
}

fn print_table(rows: &[Row], change: &Change, args: &RemapArgs) {
    let what = if change.after.len() > change.before.len() {
        format!(
            "{} -> {} shards (add)",
            change.before.len(),
            change.after.len()
        )
    } else {
        format!(
            "{} -> {} shards (remove)",
            change.before.len(),
            change.after.len()
        )
    };
    let how = if args.exact {
        "exact shares where available, else ".to_owned() + &args.keys.to_string() + " keys"
    } else {
        format!("{} keys", args.keys)
    };
    println!("{what}; {how}; minimum moved {:.4}", change.min_fraction);
    println!(
        "{:<17} {:>8} {:>7} {:>9} {:>7} {:>7} {:>8} {:>9} {:>9} {:>9} {:>11}",
        "algorithm",
        "moved",
        "ratio",
        "between",
        "p/m",
        "p/m'",
        "rsd'",
        "lookup ns",
        "build ms",
        "update ms",
        "memory"
    );
    for r in rows {
        println!(
            "{:<17} {:>8.4} {:>7.3} {:>9.5} {:>7.3} {:>7.3} {:>8.4} {:>9.1} {:>9.2} {:>9} {:>11}{}",
            r.algorithm,
            r.moved_fraction,
            r.moved_ratio,
            r.moved_between_survivors,
            r.peak_to_mean_before,
            r.peak_to_mean_after,
            r.rsd_after,
            r.lookup_ns,
            r.build_ms,
            r.update_ms.map_or("-".to_owned(), |u| format!("{u:.2}")),
            r.memory_bytes,
            if r.exact {
                ""
            } else if args.exact {
                " (sampled)"
            } else {
                ""
            }
        );
    }
}

fn plot(path: &std::path::Path, rows: &[Row], change: &Change) -> Result<(), Error> {
    use plotters::prelude::*;
    let fail = |e: &dyn std::fmt::Display| {
        Error::new(
            shardis::ErrorKind::Io,
            format!("cannot draw {}: {e}", path.display()),
        )
    };
    let root = SVGBackend::new(path, (1360, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let (left, right) = root.split_horizontally(740);
    let total: f64 = change.after.iter().map(|s| f64::from(s.1)).sum();
    let ratio = |r: &Row, i: usize| r.load_after[i] / (f64::from(change.after[i].1) / total);
    let (lo, hi) = rows
        .iter()
        .flat_map(|r| (0..r.load_after.len()).map(move |i| ratio(r, i)))
        .fold((1.0f64, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let mut chart = ChartBuilder::on(&left)
        .caption("load after the change (share / due)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0usize..change.after.len(), (lo - 0.02)..(hi + 0.02))
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("shard")
        .draw()
        .map_err(|e| fail(&e))?;
    for (k, r) in rows.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        chart
            .draw_series(LineSeries::new(
                (0..r.load_after.len()).map(|i| (i, ratio(r, i))),
                color.stroke_width(2),
            ))
            .map_err(|e| fail(&e))?
            .label(r.algorithm.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(&e))?;
    let top = rows.iter().map(|r| r.moved_ratio).fold(1.0f64, f64::max) * 1.15;
    let mut bars = ChartBuilder::on(&right)
        .caption("keys moved ÷ minimum", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d((0usize..rows.len()).into_segmented(), 0.0..top)
        .map_err(|e| fail(&e))?;
    bars.configure_mesh()
        .x_labels(rows.len())
        .x_label_style(("sans-serif", 11))
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => rows
                .get(*i)
                .map(|r| r.algorithm.clone())
                .unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(|e| fail(&e))?;
    bars.draw_series(rows.iter().enumerate().map(|(k, r)| {
        let mut bar = Rectangle::new(
            [
                (SegmentValue::Exact(k), 0.0),
                (SegmentValue::Exact(k + 1), r.moved_ratio),
            ],
            Palette99::pick(k).filled(),
        );
        bar.set_margin(0, 0, 6, 6);
        bar
    }))
    .map_err(|e| fail(&e))?;
    // The minimum any algorithm must move.
    bars.draw_series(std::iter::once(PathElement::new(
        vec![
            (SegmentValue::Exact(0), 1.0),
            (SegmentValue::Exact(rows.len()), 1.0),
        ],
        BLACK.stroke_width(1),
    )))
    .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}
