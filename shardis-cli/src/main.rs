//! `shardis`: the operators' command line.
//!
//! ```text
//! shardis --config FILE get KEY
//! shardis --config FILE set KEY VALUE
//! shardis --config FILE del KEY
//! shardis --config FILE locate KEY...     (`-` reads keys from stdin, one per line)
//! shardis --config FILE stats [--watch 2s]
//! shardis --config FILE invalidate [--namespace NS] KEY... | --tag TAG | --pattern PAT
//! shardis --config FILE scan PATTERN [--count]
//! shardis --config FILE run-all CMD ARGS...
//! shardis --config NEW.toml migrate --from OLD.toml [--batch 500]
//! shardis demo
//! ```
//! Every command takes `--format table|json`. Exit status: 0 on success, 1 when `get` finds
//! no key, 2 on an error.

// The load generator's task (every workload of `bench` in one spawned future) nests deep
// futures; the default limit (128) is too low to check that it is `Send`.
#![recursion_limit = "256"]

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod bench;
mod bench_pipeline;
mod bench_resize;
mod commands;
mod demo;
mod demo_cache;
mod demo_sentinel;
mod error;
mod fleet;
mod invalidate;
mod migrate;
mod output;
mod parse;
mod remap;
mod stats;
mod status;

/// Client-side sharding over plain Redis hosts.
#[derive(Parser, Debug)]
#[command(name = "shardis", version, about)]
struct Cli {
    /// The TOML config file (see README: "Config file").
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    format: Format,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Human-readable text.
    Table,
    /// One JSON document on stdout.
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// GET a key from its shard.
    Get {
        /// The key (any bytes).
        key: OsString,
    },
    /// SET a key on its shard.
    Set {
        /// The key (any bytes).
        key: OsString,
        /// The value (any bytes).
        value: OsString,
        /// Expire the key after this many milliseconds.
        #[arg(long, value_name = "MS")]
        ttl_ms: Option<u64>,
    },
    /// DEL a key on its shard.
    Del {
        /// The key (any bytes).
        key: OsString,
    },
    /// Print which shard owns each key (no connection is made). `-` reads keys from stdin.
    Locate {
        /// Place keys as this twemproxy (nutcracker) YAML config does, instead of --config.
        #[arg(long, value_name = "FILE", conflicts_with = "config")]
        twemproxy: Option<PathBuf>,
        /// The twemproxy pool, when the file has several.
        #[arg(long, requires = "twemproxy")]
        pool: Option<String>,
        /// Keys, or `-` for one key per line on stdin.
        #[arg(required = true)]
        keys: Vec<OsString>,
    },
    /// Show each shard and endpoint with its health, role and replication offset.
    Status,
    /// Ask every endpoint for INFO and DBSIZE at once: keys, memory, evictions, hit ratio,
    /// ops/s, clients and replication lag per endpoint, fleet totals, and balance against the
    /// weights. A down endpoint is a row that says so.
    Stats(stats::StatsArgs),
    /// Delete cache keys (as `shardis::cache` stores them): by key, by tag over every shard, or
    /// by pattern with SCAN on every shard's primary.
    Invalidate(invalidate::InvalidateArgs),
    /// Every key matching a glob PATTERN (as SCAN ... MATCH), from every shard's primary,
    /// scanned concurrently: one key a line, or with --count only their number.
    Scan {
        /// The pattern (Redis glob syntax: `user:*`, `session:?`, `[ab]*`).
        pattern: OsString,
        /// Print only how many keys match.
        #[arg(long)]
        count: bool,
    },
    /// Run one keyless command (INFO, DBSIZE, PING, SCRIPT FLUSH, CONFIG GET ...) on every
    /// shard's primary at once; print each shard's reply. Exit 1 if a shard failed.
    RunAll {
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// Move the keys a topology change moved (from the shards of --from OLD.toml to their
    /// owners under --config NEW.toml), with warm resharding's safe per-key steps: a newer
    /// value at the new owner is kept, TTLs are kept, an interrupted run can be rerun. Exit 1
    /// if some keys could not be moved (rerun).
    Migrate(migrate::MigrateArgs),
    /// Closed-loop load benchmark of the client (or a proxy, or hand-routed redis-rs).
    Bench(bench::BenchArgs),
    /// Compare placement algorithms: balance, keys moved on a resize, lookup and build cost.
    Remap(remap::RemapArgs),
    /// Start local redis-servers (three primaries with a replica each), write keys through the
    /// client, show how they spread, read them back, kill a primary and keep reading from its
    /// replica, add a shard live, and stop the servers; on the way, 1 000 concurrent cache
    /// requests on one cold key call their loader once.
    Demo {
        /// How many keys to write.
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
        /// Instead: the Sentinel layout of deploy/compose.yaml (three shards with a replica
        /// each, three redis-sentinels from deploy/sentinel/sentinel.conf) with local
        /// processes, and a primary killed while the client follows the failover.
        #[arg(long)]
        sentinel: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHARDIS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // `bench` chooses its load generator's threads; everything else gets the default runtime.
    let mut builder = match &cli.command {
        Command::Bench(args) if args.threads <= 1 => tokio::runtime::Builder::new_current_thread(),
        Command::Bench(args) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(args.threads);
            b
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let format = cli.format;
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            output::error(format, &e);
            ExitCode::from(2)
        }
    }
}
