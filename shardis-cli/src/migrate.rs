//! `shardis migrate --from OLD.toml --config NEW.toml`: moves the keys whose owner differs
//! between the two configs, with `Client::migrate_moved_keys` (warm resharding's per-key
//! steps: `DUMP`/`PTTL`, `RESTORE` without `REPLACE`, delete at the old owner only if
//! unchanged), under a progress bar.

use std::path::PathBuf;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use shardis::{Client, Config, MigrationReport};

use crate::error::Error;
use crate::output;
use crate::Format;

/// Where the keys come from, and the batch size.
#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// The config in force before the change: its shards are scanned (removed ones included).
    #[arg(long, value_name = "OLD.toml")]
    from: PathBuf,
    /// Keys per `SCAN` batch (moved concurrently).
    #[arg(long, default_value_t = 500)]
    batch: usize,
}

pub async fn run(format: Format, new: Config, args: MigrateArgs) -> Result<ExitCode, Error> {
    let (old_topology, mut old_options) = Config::from_file(&args.from)?.into_parts();
    old_options.resharding.warm = true;
    let client = Client::builder()
        .config(Config::new(old_topology, old_options))
        .build()
        .await?;
    let (topology, mut options) = new.into_parts();
    options.resharding.warm = true;
    client.apply_config(Config::new(topology, options)).await?;

    let bar = if format == Format::Json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0).with_style(
            ProgressStyle::with_template(
                "{bar:40} {pos}/{len} keys scanned [{elapsed}, {eta} left] {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
    };
    let report = client
        .migrate_moved_keys_with(args.batch, |r| {
            bar.set_length(r.to_scan.max(r.scanned));
            bar.set_position(r.scanned);
            bar.set_message(format!(
                "{} moved, {} newer kept, {} errors",
                r.moved, r.skipped_newer, r.errors
            ));
        })
        .await?;
    bar.finish_and_clear();
    print(format, &report);
    Ok(if report.complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print(format: Format, r: &MigrationReport) {
    let secs = r.duration.as_secs_f64();
    if format == Format::Json {
        output::json(&json!({
            "scanned": r.scanned,
            "moved": r.moved,
            "skipped_newer": r.skipped_newer,
            "expired": r.expired,
            "errors": r.errors,
            "duration": secs,
            "complete": r.complete,
        }));
    } else {
        let rate = if secs > 0.0 {
            r.moved as f64 / secs
        } else {
            0.0
        };
        println!(
            "scanned {}, moved {}, kept newer {}, expired {}, errors {} in {:.2?} ({rate:.0} keys/s){}",
            r.scanned,
            r.moved,
            r.skipped_newer,
            r.expired,
            r.errors,
            r.duration,
            if r.complete { "" } else { "; incomplete: run it again" }
        );
    }
}
