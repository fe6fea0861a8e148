//! The end check: every key's last acknowledged write, read back directly (plain redis-rs, not
//! shardis) from the current primary of the shard that owns the key now, and every loss put in
//! the class that explains it. A key a hot swap moved is also read on the shard that
//! acknowledged its write, so that a loss there is not hidden by the move.

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;
use shardis::redis;
use shardis::{Client, ShardName};

use crate::load::{key, parse, KeyState};

/// How many keys go in one `MGET`.
const BATCH: usize = 1000;

#[derive(Default, Serialize)]
pub struct Losses {
    /// Acknowledged writes in all, over the run.
    pub acknowledged_writes: u64,
    /// Keys with at least one acknowledged write: each one's last is checked.
    pub keys_checked: u64,
    /// The owner holds that version or a later one.
    pub intact: u64,
    /// Acknowledged before its shard's primary was SIGKILLed and restarted: the process came
    /// back empty and its replica resynced from it. Expected (no persistence).
    pub lost_restart_empty: u64,
    /// Stale on the owner at the end, but held by the shard that acknowledged it before a hot
    /// swap moved the key: a swap moves keys, not values. Expected.
    pub lost_moved_by_swap: u64,
    /// Overwritten by an older write of the same key whose outcome was unknown (it timed out
    /// on a stopped server) and that the server applied after the acknowledged one.
    pub lost_late_unknown_write: u64,
    /// Not explained by any of the above.
    pub lost_unexplained: u64,
    /// The first few unexplained losses: key, shard, acknowledged and found versions.
    pub unexplained_examples: Vec<String>,
}

/// `primaries`: every shard's primary URL by name, those swapped out included.
pub async fn check(
    client: &Client,
    keys: Vec<(u64, KeyState)>,
    restarted: &HashMap<String, Instant>,
    primaries: &HashMap<String, String>,
) -> Result<Losses, Box<dyn std::error::Error>> {
    let mut losses = Losses::default();
    let mut by_owner: HashMap<ShardName, Vec<(u64, KeyState)>> = HashMap::new();
    for (k, state) in keys {
        losses.acknowledged_writes += state.acks;
        if state.acked > 0 {
            losses.keys_checked += 1;
            let owner = client.locate(key(k).as_str());
            by_owner.entry(owner).or_default().push((k, state));
        }
    }
    let topology = client.topology();
    // Stale on their owner, written (maybe) elsewhere: (key, state, version found on the owner).
    let mut elsewhere: Vec<(u64, KeyState, ShardName, u64)> = Vec::new();
    for (owner, keys) in by_owner {
        let shard = topology
            .shard(owner.as_str())
            .ok_or_else(|| format!("shard {owner} is not in the topology"))?;
        let url = shard
            .primary()
            .ok_or("soak needs primary URLs")?
            .connection_info()?;
        let numbers: Vec<u64> = keys.iter().map(|(k, _)| *k).collect();
        let found = versions(redis::Client::open(url)?, &numbers).await?;
        for ((k, state), found) in keys.into_iter().zip(found) {
            if found >= state.acked {
                losses.intact += 1;
            } else if state.owner.as_ref() == Some(&owner) && state.owner_after.is_none() {
                classify(&mut losses, &owner, k, &state, found, restarted);
            } else {
                elsewhere.push((k, state, owner.clone(), found));
            }
        }
    }
    // Read each such key on the shard(s) its write may have gone to, other than its owner.
    let mut to_read: HashMap<ShardName, Vec<u64>> = HashMap::new();
    for (k, state, owner, _) in &elsewhere {
        for shard in [&state.owner, &state.owner_after].into_iter().flatten() {
            if shard != owner {
                to_read.entry(shard.clone()).or_default().push(*k);
            }
        }
    }
    let mut found_on: HashMap<(u64, ShardName), u64> = HashMap::new();
    for (shard, keys) in to_read {
        let url = primaries
            .get(shard.as_str())
            .ok_or_else(|| format!("no primary known for {shard}"))?;
        let found = versions(redis::Client::open(url.as_str())?, &keys).await?;
        for (k, found) in keys.into_iter().zip(found) {
            found_on.insert((k, shard.clone()), found);
        }
    }
    for (k, state, owner, found_on_owner) in elsewhere {
        let candidates = [&state.owner, &state.owner_after];
        let found = |s: &ShardName| found_on.get(&(k, s.clone())).copied();
        if candidates
            .iter()
            .flat_map(|c| c.as_ref())
            .any(|c| found(c).is_some_and(|v| v >= state.acked))
        {
            losses.lost_moved_by_swap += 1;
        } else {
            // Not where it was written either: explained only as a loss on that shard.
            let shard = state.owner.clone().unwrap_or(owner.clone());
            let v = found(&shard).unwrap_or(found_on_owner);
            classify(&mut losses, &shard, k, &state, v, restarted);
        }
    }
    Ok(losses)
}

/// The version each key holds on `server`; 0 when missing, or when the value is another key's
/// (never written there by the soak).
async fn versions(server: redis::Client, keys: &[u64]) -> redis::RedisResult<Vec<u64>> {
    let conn = &mut server.get_multiplexed_async_connection().await?;
    let mut out = Vec::with_capacity(keys.len());
    for batch in keys.chunks(BATCH) {
        let mut mget = redis::cmd("MGET");
        for k in batch {
            mget.arg(key(*k));
        }
        let found: Vec<Option<Vec<u8>>> = mget.query_async(conn).await?;
        out.extend(batch.iter().zip(found).map(
            |(k, value)| match value.as_deref().and_then(parse) {
                Some((kk, version)) if kk == *k => version,
                _ => 0,
            },
        ));
    }
    Ok(out)
}

/// A key stale on `shard`, the shard its last acknowledged write went to.
fn classify(
    losses: &mut Losses,
    shard: &ShardName,
    k: u64,
    state: &KeyState,
    found: u64,
    restarted: &HashMap<String, Instant>,
) {
    let restarted_after = restarted
        .get(shard.as_str())
        .zip(state.acked_at)
        .is_some_and(|(restart, acked)| *restart > acked);
    if restarted_after {
        losses.lost_restart_empty += 1;
    } else if found > 0 && state.maybe.contains(&found) {
        losses.lost_late_unknown_write += 1;
    } else {
        losses.lost_unexplained += 1;
        if losses.unexplained_examples.len() < 10 {
            losses.unexplained_examples.push(format!(
                "{} on {shard}: acknowledged v{}, found v{found}",
                key(k),
                state.acked
            ));
        }
    }
}
