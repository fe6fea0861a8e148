//! What `bench --resize` prints and draws: each mode's figures (medians over the rounds), the
//! table or JSON report, and the hit-rate plot.

use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::json;
use shardis::ErrorKind;

use super::{KeyDistribution, Load, Resize, ResizeArgs, Run, WINDOW};
use crate::error::Error;
use crate::output;
use crate::Format;

fn rate(reads: u64, hits: u64) -> f64 {
    if reads == 0 {
        1.0
    } else {
        hits as f64 / reads as f64
    }
}

/// Every round's reads and hits, window by window.
pub(super) fn merged_windows(rounds: &[Run]) -> Vec<(u64, u64)> {
    let mut merged = vec![(0, 0); rounds.iter().map(|r| r.windows.len()).max().unwrap_or(0)];
    for r in rounds {
        for (m, w) in merged.iter_mut().zip(&r.windows) {
            m.0 += w.0;
            m.1 += w.1;
        }
    }
    merged
}

/// Overall hit rate, the worst window's from the resize on, and its time (s).
fn summary(windows: &[(u64, u64)], resize_at: Duration) -> (f64, f64, f64) {
    let (reads, hits) = windows.iter().fold((0, 0), |(r, h), w| (r + w.0, h + w.1));
    let first = (resize_at.as_millis() / WINDOW.as_millis()) as usize;
    let worst = windows
        .iter()
        .enumerate()
        .skip(first)
        .filter(|(_, w)| w.0 >= 20)
        .map(|(i, w)| (rate(w.0, w.1), i as f64 * WINDOW.as_secs_f64()))
        .fold((1.0f64, 0.0f64), |a, b| if b.0 < a.0 { b } else { a });
    (rate(reads, hits), worst.0, worst.1)
}

/// One run's figures (the JSON row without `windows`).
fn row(r: &Run, args: &ResizeArgs, load: Load) -> serde_json::Value {
    let (overall, worst, worst_at) = summary(&r.windows, args.resize_at);
    let p99 = |h: &Histogram<u64>| h.value_at_quantile(0.99) as f64 / 1000.0;
    let ratio = |a: &Histogram<u64>, b: &Histogram<u64>| p99(a) / p99(b).max(0.001);
    let t = &r.tally;
    json!({
        "mode": r.mode,
        "hit_rate": overall,
        "worst_window_hit_rate": worst,
        "worst_window_at_s": worst_at,
        "ops_per_s_steady": t.ops_steady as f64 / (load.duration.as_secs_f64() - 1.0).max(0.1),
        "ops_per_s_after_resize": t.ops_after as f64,
        "p99_ms_steady": p99(&t.steady),
        "p99_ms_after_resize": p99(&t.after),
        "p99_ratio": ratio(&t.after, &t.steady),
        "read_p99_ms_steady": p99(&t.read_steady),
        "read_p99_ms_after_resize": p99(&t.read_after),
        "read_p99_ratio": ratio(&t.read_after, &t.read_steady),
        "errors": t.errors,
        "resize_ms": r.resize_ms,
        "migration_moved": r.migration.map(|m| m.0),
        "migration_keys_per_s": r.migration.map(|m| if m.1 > 0.0 { m.0 as f64 / m.1 } else { 0.0 }),
    })
}

/// The median of `xs` (the mean of the middle two for an even count); `None` when empty.
fn median(mut xs: Vec<f64>) -> Option<f64> {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(xs[n / 2]),
        _ => Some((xs[n / 2 - 1] + xs[n / 2]) / 2.0),
    }
}

/// One mode's row over its rounds: each figure's median (ratios are the median of each
/// round's ratio), errors summed, the hit rate per window over every round's reads, and with
/// more than one round the rounds themselves (`per_round`).
fn combine(rounds: &[Run], args: &ResizeArgs, load: Load) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = rounds.iter().map(|r| row(r, args, load)).collect();
    let mut out = serde_json::Map::new();
    out.insert("mode".into(), json!(rounds.first().map_or("", |r| r.mode)));
    for field in [
        "hit_rate",
        "worst_window_hit_rate",
        "worst_window_at_s",
        "ops_per_s_steady",
        "ops_per_s_after_resize",
        "p99_ms_steady",
        "p99_ms_after_resize",
        "p99_ratio",
        "read_p99_ms_steady",
        "read_p99_ms_after_resize",
        "read_p99_ratio",
        "errors",
        "resize_ms",
        "migration_moved",
        "migration_keys_per_s",
    ] {
        let xs: Vec<f64> = rows.iter().filter_map(|r| r[field].as_f64()).collect();
        let v = match field {
            "errors" => json!(xs.iter().sum::<f64>() as u64),
            "migration_moved" => json!(median(xs).map(|m| m.round() as u64)),
            _ => json!(median(xs)),
        };
        out.insert(field.into(), v);
    }
    let windows = merged_windows(rounds);
    out.insert(
        "windows".into(),
        json!(windows.iter().map(|w| rate(w.0, w.1)).collect::<Vec<_>>()),
    );
    if rows.len() > 1 {
        out.insert("per_round".into(), json!(rows));
    }
    serde_json::Value::Object(out)
}

pub(super) fn report(
    format: Format,
    resize: Resize,
    args: &ResizeArgs,
    load: Load,
    runs: &[Vec<Run>],
) {
    let resize_s = match resize {
        Resize::Add => "add",
        Resize::Remove => "remove",
    };
    let dist = match args.key_distribution {
        KeyDistribution::Uniform => "uniform",
        KeyDistribution::Zipf => "zipf",
    };
    let steady_s = args.resize_at.as_secs_f64();
    let rows: Vec<_> = runs.iter().map(|r| combine(r, args, load)).collect();
    if format == Format::Json {
        output::json(&json!({
            "resize": resize_s,
            "resize_at_s": steady_s,
            "key_distribution": dist,
            "keys": load.keys,
            "rounds": args.rounds,
            "runs": rows,
        }));
        return;
    }
    println!(
        "resize {resize_s} at {steady_s:.1}s, {} keys, {dist}, {} tasks, read ratio {}{}",
        load.keys,
        load.concurrency,
        load.read_ratio,
        if args.rounds > 1 {
            format!(
                ", medians of {} rounds (cold/warm alternating)",
                args.rounds
            )
        } else {
            String::new()
        }
    );
    println!("mode   hit rate   worst 100ms (at)   ops/s steady   ops/s 1s after   p99 ms steady   p99 ms 1s after (x)   read p99 ms steady / 1s after (x)   errors   migration");
    for r in &rows {
        let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
        println!(
            "{:<6} {:>7.3}%   {:>7.2}% ({:>4.1}s)   {:>12.0}   {:>14.0}   {:>13.3}   {:>11.3} ({:>4.2})   {:>13.3} / {:>6.3} ({:>4.2})   {:>6}   {}",
            r["mode"].as_str().unwrap_or(""),
            f("hit_rate") * 100.0,
            f("worst_window_hit_rate") * 100.0,
            f("worst_window_at_s"),
            f("ops_per_s_steady"),
            f("ops_per_s_after_resize"),
            f("p99_ms_steady"),
            f("p99_ms_after_resize"),
            f("p99_ratio"),
            f("read_p99_ms_steady"),
            f("read_p99_ms_after_resize"),
            f("read_p99_ratio"),
            r["errors"],
            match r["migration_keys_per_s"].as_f64() {
                Some(v) => format!("{} keys left, {v:.0} keys/s", r["migration_moved"]),
                None => "-".into(),
            }
        );
    }
}

/// Draws each mode's hit rate per window (`(mode, windows)`, every round's reads merged).
pub(super) fn plot(
    path: &Path,
    resize: Resize,
    args: &ResizeArgs,
    runs: &[(&str, Vec<(u64, u64)>)],
) -> Result<(), Error> {
    use plotters::prelude::*;
    let fail = |e: &dyn std::fmt::Display| {
        Error::new(
            ErrorKind::Io,
            format!("cannot draw {}: {e}", path.display()),
        )
    };
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let end = runs.iter().map(|r| r.1.len()).max().unwrap_or(1) as f64 * WINDOW.as_secs_f64();
    let lowest = runs
        .iter()
        .flat_map(|r| r.1.iter().filter(|w| w.0 > 0).map(|w| rate(w.0, w.1)))
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
                r.1.iter()
                    .enumerate()
                    .filter(|(_, w)| w.0 > 0)
                    .map(|(i, w)| (i as f64 * WINDOW.as_secs_f64(), rate(w.0, w.1))),
                color.stroke_width(2),
            ))
            .map_err(|e| fail(&e))?
            .label(r.0)
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
