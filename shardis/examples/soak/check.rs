//! The end check: every key's last acknowledged write, read back directly (plain redis-rs, not
//! shardis) from the current primary of the shard that owns the key now, and every loss put in
//! the class that explains it. A key a hot swap moved is also read on the shard that
//! acknowledged its write, so that a loss there is not hidden by the move.

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;
use shardis::redis::{self, aio::MultiplexedConnection};
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
    /// swap moved the key (a swap moves keys, not values), or written while the routing table
    /// changed. Expected.
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
    let mut moved: HashMap<ShardName, Vec<(u64, KeyState)>> = HashMap::new();
    for (owner, keys) in by_owner {
        let shard = topology
            .shard(owner.as_str())
            .ok_or_else(|| format!("shard {owner} is not in the topology"))?;
        let client = redis::Client::open(shard.primary().connection_info()?)?;
        let found = versions(&mut client.get_multiplexed_async_connection().await?, &keys).await?;
        for ((k, state), found) in keys.into_iter().zip(found) {
            match &state.owner {
                _ if found >= state.acked => losses.intact += 1,
                Some(o) if *o == owner => classify(&mut losses, o, k, &state, found, restarted),
                Some(o) => moved.entry(o.clone()).or_default().push((k, state)),
                None => losses.lost_moved_by_swap += 1,
            }
        }
    }
    for (written_to, keys) in moved {
        let url = primaries
            .get(written_to.as_str())
            .ok_or_else(|| format!("no primary known for {written_to}"))?;
        let client = redis::Client::open(url.as_str())?;
        let found = versions(&mut client.get_multiplexed_async_connection().await?, &keys).await?;
        for ((k, state), found) in keys.into_iter().zip(found) {
            if found >= state.acked {
                losses.lost_moved_by_swap += 1;
            } else {
                classify(&mut losses, &written_to, k, &state, found, restarted);
            }
        }
    }
    Ok(losses)
}

/// The version each key holds on `conn`'s server; 0 when missing, or when the value is another
/// key's (never written there by the soak).
async fn versions(
    conn: &mut MultiplexedConnection,
    keys: &[(u64, KeyState)],
) -> redis::RedisResult<Vec<u64>> {
    let mut out = Vec::with_capacity(keys.len());
    for batch in keys.chunks(BATCH) {
        let mut mget = redis::cmd("MGET");
        for (k, _) in batch {
            mget.arg(key(*k));
        }
        let found: Vec<Option<Vec<u8>>> = mget.query_async(conn).await?;
        out.extend(batch.iter().zip(found).map(|((k, _), value)| {
            match value.as_deref().and_then(parse) {
                Some((kk, version)) if kk == *k => version,
                _ => 0,
            }
        }));
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
