//! Rendezvous table (`algorithm = "rendezvous_table"`), the default.
//!
//! The 64-bit key hash space is cut into `2^arc_bits` equal arcs; each arc belongs to the shard
//! with the highest weighted rendezvous score for that arc (see `hrw`). A lookup is one xxh3 hash
//! and one table read. Because each arc's owner is a rendezvous winner:
//!
//! - it is **monotone**: adding a shard moves only arcs it wins, to it; removing one moves only its
//!   own arcs; nothing ever moves between two surviving shards;
//! - it is **balanced**: each arc goes to shard `i` with probability `w_i / W`, so a shard's share
//!   deviates from its due by about `1 / sqrt(arcs × w_i / W)` (0.7% for 100 equal shards at the
//!   default 2^21 arcs);
//! - it is **weighted** exactly by integer weights, and independent of the order shards are listed.
//!
//! Building scores every shard on every arc (`arcs × shards` cheap integer mixes, spread over the
//! machine's cores); [`RendezvousTable::update`] derives a new table from an old one by scoring
//! only the shards that changed, which is what a topology swap does.

use super::hrw::{self, Contenders, Winner};
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
    seed: u64,
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
        let all = contenders(&members, |_| true);
        let owners = fill(arc_bits, cores(), |arc| all.winner(arc).index as u16);
        Ok(RendezvousTable {
            bits: arc_bits,
            owners: Owners::from_wide(owners, members.len()),
            members,
        })
    }

    /// The table for `nodes`, derived from this one: identical to [`RendezvousTable::new`] with
    /// the same arc count, but only shards added, removed or re-weighted are scored, so the cost
    /// is `arcs × changed shards` instead of `arcs × shards`.
    pub fn update(&self, nodes: &[PlacementNode<'_>]) -> Result<RendezvousTable, ConfigError> {
        let members = members(nodes, self.bits)?;
        // Old index -> new index, for shards kept with the same weight.
        let kept: Vec<Option<u16>> = self
            .members
            .iter()
            .map(|old| {
                members
                    .iter()
                    .position(|m| m.name == old.name && m.weight == old.weight)
                    .map(|i| i as u16)
            })
            .collect();
        let is_new = |i: usize| {
            !self
                .members
                .iter()
                .any(|old| old.name == members[i].name && old.weight == members[i].weight)
        };
        let all = contenders(&members, |_| true);
        let added = contenders(&members, is_new);
        // One thread: an update is cheap, and must not take every core from the requests
        // running beside a topology swap.
        let owners = fill(self.bits, 1, |arc| {
            match kept[self.owners.get(arc as usize)] {
                // The old owner left (or changed weight): score everyone.
                None => all.winner(arc).index as u16,
                // The old owner beat every other old shard and still does; only the new ones
                // can take the arc from it.
                Some(owner) if !added.is_empty() => {
                    let m = &members[owner as usize];
                    let current = Winner {
                        index: u32::from(owner),
                        score: hrw::score(m.seed, arc),
                        weight: m.weight,
                    };
                    current.better(added.winner(arc)).index as u16
                }
                Some(owner) => owner,
            }
        });
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
            seed: hrw::seed(n.name),
            weight: n.weight,
        })
        .collect())
}

fn contenders(members: &[Member], include: impl Fn(usize) -> bool) -> Contenders {
    Contenders::new(
        members
            .iter()
            .enumerate()
            .filter(|(i, _)| include(*i))
            .map(|(i, m)| (m.seed, m.weight, i as u32)),
    )
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 16)
}

/// Computes every arc's owner, splitting the arcs over `threads` threads.
fn fill(bits: u32, threads: usize, owner: impl Fn(u64) -> u16 + Sync) -> Vec<u16> {
    let arcs = 1usize << bits;
    let mut out = vec![0u16; arcs];
    if threads <= 1 {
        for (arc, slot) in out.iter_mut().enumerate() {
            *slot = owner(arc as u64);
        }
        return out;
    }
    let chunk = arcs.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for (c, part) in out.chunks_mut(chunk).enumerate() {
            let owner = &owner;
            scope.spawn(move || {
                let base = (c * chunk) as u64;
                for (i, slot) in part.iter_mut().enumerate() {
                    *slot = owner(base + i as u64);
                }
            });
        }
    });
    out
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
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("shard-{i}")).collect()
    }

    fn nodes<'a>(names: &'a [String], weights: &[u32]) -> Vec<PlacementNode<'a>> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| PlacementNode {
                name: n,
                weight: weights.get(i).copied().unwrap_or(1),
            })
            .collect()
    }

    fn shares(t: &RendezvousTable) -> Vec<f64> {
        t.ownership().unwrap().shares(t.shard_count())
    }

    #[test]
    fn balanced_at_10_and_100_shards() {
        for n in [10, 100] {
            let ns = names(n);
            let t = RendezvousTable::new(&nodes(&ns, &[]), DEFAULT_ARC_BITS).unwrap();
            let peak = shares(&t).iter().cloned().fold(0.0, f64::max) * n as f64;
            assert!(peak <= 1.03, "{n} shards: peak/mean {peak}");
        }
    }

    #[test]
    fn update_equals_rebuild_and_is_monotone() {
        let ns = names(12);
        let before = RendezvousTable::new(&nodes(&ns[..10], &[]), 16).unwrap();
        // Add two, remove one in the middle, re-weight one.
        let mut after_names: Vec<String> = ns.clone();
        after_names.remove(3);
        let after_nodes = nodes(&after_names, &[1, 1, 1, 2]);
        let rebuilt = RendezvousTable::new(&after_nodes, 16).unwrap();
        let updated = before.update(&after_nodes).unwrap();
        for a in 0..rebuilt.arcs() {
            assert_eq!(rebuilt.owners.get(a), updated.owners.get(a), "arc {a}");
        }
    }

    #[test]
    fn the_trait_update_path_is_the_incremental_one() {
        let ns = names(11);
        let t = RendezvousTable::new(&nodes(&ns[..10], &[]), 14).unwrap();
        let via_trait = Placement::update(&t, &nodes(&ns, &[]))
            .expect("rendezvous_table has an update path")
            .unwrap();
        let rebuilt = RendezvousTable::new(&nodes(&ns, &[]), 14).unwrap();
        assert_eq!(via_trait.ownership(), rebuilt.ownership());
    }

    #[test]
    fn nothing_moves_between_survivors() {
        let ns = names(11);
        let t10 = RendezvousTable::new(&nodes(&ns[..10], &[]), 16).unwrap();
        let t11 = t10.update(&nodes(&ns, &[])).unwrap();
        for a in 0..t10.arcs() {
            let (x, y) = (t10.owners.get(a), t11.owners.get(a));
            assert!(x == y || y == 10, "arc {a} moved {x} -> {y}");
        }
        let mut rest = ns[..10].to_vec();
        rest.remove(4);
        let t9 = t10.update(&nodes(&rest, &[])).unwrap();
        for a in 0..t10.arcs() {
            let before = &ns[t10.owners.get(a)];
            let after = &rest[t9.owners.get(a)];
            assert!(
                before == after || before == "shard-4",
                "arc {a} moved {before} -> {after}"
            );
        }
    }

    #[test]
    fn weights_are_proportional() {
        let ns = names(4);
        let t = RendezvousTable::new(&nodes(&ns, &[1, 2, 3, 4]), 20).unwrap();
        for (i, s) in shares(&t).iter().enumerate() {
            let due = (i + 1) as f64 / 10.0;
            assert!((s / due - 1.0).abs() < 0.03, "shard {i}: {s} vs {due}");
        }
    }

    #[test]
    fn placement_is_pinned() {
        // If these change, every deployed cache would go cold on upgrade.
        let ns = names(3);
        let t = RendezvousTable::new(&nodes(&ns, &[]), DEFAULT_ARC_BITS).unwrap();
        let got: Vec<usize> = (0..8)
            .map(|i| t.locate(format!("user:{i}").as_bytes()))
            .collect();
        assert_eq!(got, PINNED);
    }
    const PINNED: [usize; 8] = [2, 2, 2, 2, 1, 0, 1, 1];

    #[test]
    fn rejects_bad_parameters() {
        let ns = names(2);
        assert!(RendezvousTable::new(&nodes(&ns, &[]), MIN_ARC_BITS - 1).is_err());
        assert!(RendezvousTable::new(&nodes(&ns, &[]), MAX_ARC_BITS + 1).is_err());
        assert!(RendezvousTable::new(&nodes(&ns, &[0]), 10).is_err());
    }
}
