//! Rendezvous table (`algorithm = "rendezvous_table"`), the default.
//!
//! The 64-bit key hash space is cut into `2^arc_bits` equal arcs; each arc belongs to the shard
//! with the best weighted rendezvous score for that arc. A lookup is one xxh3 hash and one table
//! read. Because each arc's owner is the winner of a per-arc contest between all shards, scored
//! independently of the others:
//!
//! - it is **monotone**: adding a shard moves only arcs it wins, to it; removing one moves only its
//!   own arcs; nothing ever moves between two surviving shards;
//! - it is **balanced**: each arc goes to shard `i` with probability `w_i / W` (a shard's share
//!   deviates from its due by about `0.7 / sqrt(arcs × w_i / W)`: about 0.5% for 100 equal
//!   shards at the default 2^21 arcs);
//! - it is **weighted** exactly by integer weights, and independent of the order shards are listed;
//! - it is **deterministic** everywhere: integer arithmetic, and IEEE-754 `+ - * /` for weights.
//!
//! The score (module `score`) makes each shard's ranking of the arcs a keyed permutation, so the
//! arcs a shard ranks best can be listed directly: building a table costs `arcs × O(log shards)`
//! (module `build`), not `arcs × shards`. [`RendezvousTable::update`] derives a table from an
//! old one, scoring only the shards that changed, which is what a topology swap does; it gives
//! exactly what a fresh build gives.
//!
//! # Upgrading from shardis 0.1
//!
//! This score replaced 0.1's (every shard hashed on every arc), so the same shards map keys
//! differently: after an upgrade about `(N - 1) / N` of the keys of an `N`-shard cache land on
//! another shard than before, once (the properties above hold from then on). Upgrade every client
//! of a cache together, since clients of both versions would disagree on owners, and either
//! accept a cold start (misses until the cache refills) or move keys with a warm reshard: run the
//! new table beside the old one and copy or re-read each key from its old owner on a miss.

#[macro_use]
mod simd;
mod build;
mod score;

use std::collections::HashMap;

use self::build::Plan;
use self::score::{Layout, Scored};
use super::hrw;
use super::{check_nodes, key_hash, Ownership, Placement, PlacementNode};
use crate::error::ConfigError;

/// Default arc count exponent: 2^21 arcs.
pub const DEFAULT_ARC_BITS: u32 = 21;
/// Smallest accepted `arc_bits`.
pub const MIN_ARC_BITS: u32 = 8;
/// Largest accepted `arc_bits`.
pub const MAX_ARC_BITS: u32 = 26;
/// The most shards a table can hold (owners are stored in 16 bits).
pub const MAX_SHARDS: usize = u16::MAX as usize;

/// Arc owners, one byte each while there are at most 256 shards.
#[derive(Debug, Clone)]
enum Owners {
    Small(Vec<u8>),
    Large(Vec<u16>),
}

impl Owners {
    #[inline]
    fn get(&self, arc: usize) -> usize {
        match self {
            Owners::Small(v) => v[arc] as usize,
            Owners::Large(v) => v[arc] as usize,
        }
    }

    fn len(&self) -> usize {
        match self {
            Owners::Small(v) => v.len(),
            Owners::Large(v) => v.len(),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Owners::Small(v) => v.capacity(),
            Owners::Large(v) => v.capacity() * 2,
        }
    }

    fn from_wide(wide: Vec<u16>, shards: usize) -> Owners {
        if shards <= 256 {
            Owners::Small(wide.into_iter().map(|o| o as u8).collect())
        } else {
            Owners::Large(wide)
        }
    }
}

#[derive(Debug, Clone)]
struct Member {
    name: String,
    weight: u32,
}

/// A rendezvous table.
#[derive(Debug, Clone)]
pub struct RendezvousTable {
    bits: u32,
    owners: Owners,
    members: Vec<Member>,
}

impl RendezvousTable {
    /// Builds a table of `2^arc_bits` arcs.
    pub fn new(nodes: &[PlacementNode<'_>], arc_bits: u32) -> Result<RendezvousTable, ConfigError> {
        let members = members(nodes, arc_bits)?;
        let owners = plan(&members, arc_bits, true).build(cores());
        Ok(RendezvousTable {
            bits: arc_bits,
            owners: Owners::from_wide(owners, members.len()),
            members,
        })
    }

    /// The table for `nodes`, derived from this one: identical to [`RendezvousTable::new`] with
    /// the same arc count, but only the shards added, removed or re-weighted are scored, so it
    /// costs `arcs × (1 + added shards)` cheap evaluations (on one thread, so as not to take every
    /// core from the requests running beside a topology swap).
    pub fn update(&self, nodes: &[PlacementNode<'_>]) -> Result<RendezvousTable, ConfigError> {
        let members = members(nodes, self.bits)?;
        let old: HashMap<(&str, u32), usize> = (self.members.iter().enumerate())
            .map(|(i, m)| ((m.name.as_str(), m.weight), i))
            .collect();
        // Old index -> new index, for shards kept with the same weight; the others are added.
        let mut kept: Vec<Option<u16>> = vec![None; self.members.len()];
        let mut added = Vec::new();
        for (i, m) in members.iter().enumerate() {
            match old.get(&(m.name.as_str(), m.weight)) {
                Some(o) if kept[*o].is_none() => kept[*o] = Some(i as u16),
                _ => added.push(i),
            }
        }
        let owners = plan(&members, self.bits, false).update(|a| self.owners.get(a), &kept, &added);
        Ok(RendezvousTable {
            bits: self.bits,
            owners: Owners::from_wide(owners, members.len()),
            members,
        })
    }

    /// The owning shard of the key hash `hash`.
    #[inline]
    pub fn locate_hash(&self, hash: u64) -> usize {
        self.owners.get((hash >> (64 - self.bits)) as usize)
    }

    /// The number of arcs.
    pub fn arcs(&self) -> usize {
        self.owners.len()
    }
}

fn plan(members: &[Member], bits: u32, propose: bool) -> Plan {
    let shards = members
        .iter()
        .map(|m| Scored::new(hrw::seed(&m.name), m.weight))
        .collect();
    Plan::new(Layout::new(bits), shards, propose)
}

fn members(nodes: &[PlacementNode<'_>], arc_bits: u32) -> Result<Vec<Member>, ConfigError> {
    check_nodes(nodes)?;
    if !(MIN_ARC_BITS..=MAX_ARC_BITS).contains(&arc_bits) {
        return Err(ConfigError::InvalidValue {
            field: "placement.arc_bits".into(),
            reason: format!("{arc_bits} is outside {MIN_ARC_BITS}..={MAX_ARC_BITS}"),
        });
    }
    if nodes.len() > MAX_SHARDS {
        return Err(ConfigError::InvalidValue {
            field: "shards".into(),
            reason: format!(
                "{} shards is more than rendezvous_table holds ({MAX_SHARDS})",
                nodes.len()
            ),
        });
    }
    Ok(nodes
        .iter()
        .map(|n| Member {
            name: n.name.to_owned(),
            weight: n.weight,
        })
        .collect())
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 16)
}

impl Placement for RendezvousTable {
    fn algorithm(&self) -> &'static str {
        "rendezvous_table"
    }

    #[inline]
    fn locate(&self, key: &[u8]) -> usize {
        self.locate_hash(key_hash(key))
    }

    fn shard_count(&self) -> usize {
        self.members.len()
    }

    fn memory_bytes(&self) -> usize {
        self.owners.bytes()
            + self
                .members
                .iter()
                .map(|m| m.name.capacity() + 24)
                .sum::<usize>()
    }

    fn ownership(&self) -> Option<Ownership> {
        Some(Ownership::Cells(
            (0..self.owners.len())
                .map(|a| self.owners.get(a) as u32)
                .collect(),
        ))
    }

    fn update(
        &self,
        nodes: &[PlacementNode<'_>],
    ) -> Option<Result<Box<dyn Placement>, ConfigError>> {
        Some(RendezvousTable::update(self, nodes).map(|t| Box::new(t) as Box<dyn Placement>))
    }
}

#[cfg(test)]
mod tests;
