//! `shardis status`: every shard and endpoint with its role and health, and for a
//! Sentinel-managed shard which sentinel answered and the master's current address.
//!
//! The client is built lazily, so an unreachable endpoint is a row, not a failure to start.
//! A Sentinel shard whose sentinels all fail to answer (down, wrong password) has no endpoint
//! to put in a routing table: it is left out of the client and reported as a row of its own,
//! with its sentinels and why they gave no answer.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};
use shardis::{Client, Config, Shard, ShardStatus};

use crate::error::Error;
use crate::output;
use crate::Format;

/// A Sentinel shard none of whose sentinels answered: the shard and why.
struct Unanswered {
    shard: Shard,
    error: String,
}

pub(crate) async fn run(config: Config, format: Format) -> Result<ExitCode, Error> {
    let health = config.options().health;
    let order: Vec<String> = config
        .topology()
        .shards()
        .iter()
        .map(|s| s.name().to_string())
        .collect();
    let (client, unanswered) = build(config).await?;
    let shards = match &client {
        Some(client) => {
            // Let the monitor probe every endpoint enough times to settle its health.
            let settle = health.interval * health.failure_threshold + health.probe_timeout * 2;
            tokio::time::sleep(settle.min(Duration::from_secs(3))).await;
            client.status().await
        }
        None => Vec::new(),
    };
    // Topology order, the unanswered shards in their place.
    let rows: Vec<Row<'_>> = order
        .iter()
        .filter_map(|name| {
            shards
                .iter()
                .find(|s| s.name.as_str() == name)
                .map(Row::Status)
                .or_else(|| {
                    unanswered
                        .iter()
                        .find(|u| u.shard.name().as_str() == name)
                        .map(Row::Unanswered)
                })
        })
        .collect();
    if format == Format::Json {
        let shards: Vec<Value> = rows.iter().map(Row::json).collect();
        let version = client.as_ref().map(Client::topology_version);
        output::json(&json!({"version": version, "shards": shards}));
    } else {
        println!(
            "{:<16} {:<24} {:<8} {:<13} {:<7} {:>12} {:>6}  note",
            "shard", "endpoint", "role", "health", "server", "offset", "conns"
        );
        for row in &rows {
            row.print();
        }
    }
    let all_up = unanswered.is_empty()
        && shards
            .iter()
            .all(|s| s.endpoints.iter().all(|e| e.health == shardis::Health::Up));
    Ok(if all_up {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Builds a lazy client; a Sentinel shard whose sentinels give no answer is taken out and
/// returned with the reason. `None` when no shard is left.
async fn build(config: Config) -> Result<(Option<Client>, Vec<Unanswered>), Error> {
    let (mut topology, options) = config.into_parts();
    let mut unanswered = Vec::new();
    loop {
        let built = Client::builder()
            .config(Config::new(topology.clone(), options.clone()))
            .lazy_connect(true)
            .build()
            .await;
        let e = match built {
            Ok(client) => return Ok((Some(client), unanswered)),
            Err(e) => e,
        };
        let Some(shard) = e
            .shard()
            .and_then(|name| topology.shard(name))
            .filter(|s| s.sentinel_master().is_some())
            .cloned()
        else {
            return Err(e.into());
        };
        let rest = topology.without(shard.name().as_str());
        unanswered.push(Unanswered {
            shard,
            error: e.to_string(),
        });
        match rest {
            Ok(rest) => topology = rest,
            Err(_) => return Ok((None, unanswered)),
        }
    }
}

enum Row<'a> {
    Status(&'a ShardStatus),
    Unanswered(&'a Unanswered),
}

impl Row<'_> {
    fn json(&self) -> Value {
        match self {
            Row::Status(s) => json!({
                "name": s.name.as_str(),
                "weight": s.weight,
                "placed": s.placed,
                // Sentinel-managed shards: which sentinel answered, and the master's current
                // address (null for other shards).
                "sentinel": s.sentinel.as_ref().map(|st| json!({
                    "master": st.master,
                    "sentinels": st.sentinels,
                    "answered_by": st.answered_by,
                    "primary": st.primary,
                    "error": st.error,
                })),
                "endpoints": s.endpoints.iter().map(|e| json!({
                    "endpoint": e.endpoint,
                    "role": e.role.as_str(),
                    "health": e.health.as_str(),
                    "server_role": e.server_role,
                    "replication_offset": e.replication_offset,
                    "connections": e.connections,
                    "target_connections": e.target_connections,
                    "error": e.error,
                })).collect::<Vec<_>>(),
            }),
            Row::Unanswered(u) => json!({
                "name": u.shard.name().as_str(),
                "weight": u.shard.weight(),
                "placed": true,
                "sentinel": {
                    "master": u.shard.sentinel_master(),
                    "sentinels": u.shard.sentinel_addresses(),
                    "answered_by": null,
                    "primary": null,
                    "error": u.error,
                },
                "endpoints": [],
            }),
        }
    }

    fn print(&self) {
        match self {
            Row::Unanswered(u) => println!(
                "{:<16} sentinel master {:?}: primary unknown (no sentinel answered: {})",
                u.shard.name().as_str(),
                u.shard.sentinel_master().unwrap_or_default(),
                u.error
            ),
            Row::Status(s) => print_status(s),
        }
    }
}

fn print_status(s: &ShardStatus) {
    if let Some(st) = &s.sentinel {
        println!(
            "{:<16} sentinel master {:?}: primary {} (answered by {}){}",
            s.name.as_str(),
            st.master,
            st.primary.as_deref().unwrap_or("unknown"),
            st.answered_by.as_deref().unwrap_or("no sentinel yet"),
            st.error
                .as_deref()
                .map_or(String::new(), |e| format!("; last ask failed: {e}")),
        );
    }
    for (i, e) in s.endpoints.iter().enumerate() {
        let name = if i == 0 { s.name.as_str() } else { "" };
        let note = match (&e.error, i == 0 && !s.placed) {
            (_, true) => "ejected from placement".to_owned(),
            (Some(err), _) => err.clone(),
            (None, _) => String::new(),
        };
        println!(
            "{:<16} {:<24} {:<8} {:<13} {:<7} {:>12} {:>6}  {}",
            name,
            e.endpoint,
            e.role.as_str(),
            e.health.as_str(),
            e.server_role.as_deref().unwrap_or("-"),
            e.replication_offset
                .map_or("-".to_owned(), |o| o.to_string()),
            format!("{}/{}", e.connections, e.target_connections),
            note
        );
    }
}
