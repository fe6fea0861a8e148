//! `shardis invalidate`: delete cache keys by key, by tag (over every shard) or by pattern
//! (`SCAN` on every shard's primary), inside a cache namespace, as `shardis::cache` does.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use shardis::cache::Cache;
use shardis::Client;

use crate::error::Error;
use crate::output::{self, bytes_field};
use crate::Format;

/// What to invalidate: keys, or `--tag`, or `--pattern`.
#[derive(clap::Args, Debug)]
pub struct InvalidateArgs {
    /// Cache keys to delete (inside `--namespace`).
    #[arg(required_unless_present_any = ["tag", "pattern"], conflicts_with_all = ["tag", "pattern"])]
    keys: Vec<OsString>,
    /// Delete every key tagged TAG (by `Cache::set_tagged`), over every shard, and the tag.
    #[arg(long, value_name = "TAG", conflicts_with = "pattern")]
    tag: Option<String>,
    /// Delete every key matching the glob PATTERN (`user:*`), scanning every shard's primary.
    #[arg(long, value_name = "PATTERN")]
    pattern: Option<String>,
    /// The cache's namespace (`Cache::builder(..).namespace(..)`); keys, tags and patterns
    /// are inside it. None by default.
    #[arg(long, value_name = "NS", default_value = "")]
    namespace: String,
}

pub async fn run(format: Format, client: Client, args: InvalidateArgs) -> Result<ExitCode, Error> {
    let cache = Cache::builder(client).namespace(&args.namespace).build();
    let started = Instant::now();
    if let Some(tag) = &args.tag {
        let removed = cache.invalidate_tag(tag).await?;
        report(
            format,
            json!({"tag": tag, "removed": removed}),
            removed,
            started,
        );
    } else if let Some(pattern) = &args.pattern {
        let removed = pattern_with_progress(&cache, pattern, format).await?;
        report(
            format,
            json!({"pattern": pattern, "removed": removed}),
            removed,
            started,
        );
    } else {
        let mut rows = Vec::new();
        let mut removed = 0;
        for key in &args.keys {
            let existed = cache.invalidate(key.as_bytes()).await?;
            removed += usize::from(existed);
            let mut obj = serde_json::Map::new();
            bytes_field(&mut obj, "key", key.as_bytes());
            obj.insert("removed".into(), json!(existed));
            rows.push(Value::Object(obj));
        }
        report(
            format,
            json!({"keys": rows, "removed": removed}),
            removed,
            started,
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the pattern's invalidation under a progress display (stderr, hidden when it is not a
/// terminal or the output is JSON).
async fn pattern_with_progress(
    cache: &Cache,
    pattern: &str,
    format: Format,
) -> Result<usize, Error> {
    let bar = if format == Format::Json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        )
    };
    let removed = AtomicUsize::new(0);
    let work = cache.invalidate_pattern_with_progress(pattern, &removed);
    tokio::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let result = loop {
        tokio::select! {
            r = &mut work => break r,
            _ = tick.tick() => {
                bar.set_message(format!("{} keys removed", removed.load(Ordering::Relaxed)));
                bar.tick();
            }
        }
    };
    bar.finish_and_clear();
    Ok(result?)
}

fn report(format: Format, mut doc: Value, removed: usize, started: Instant) {
    if format == Format::Json {
        doc["elapsed_ms"] = json!(started.elapsed().as_millis() as u64);
        output::json(&doc);
    } else {
        println!("{removed} keys removed in {:.2?}", started.elapsed());
    }
}
