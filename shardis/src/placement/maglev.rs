//! Maglev hashing (`algorithm = "maglev"`), after Eisenbud et al. (NSDI 2016).
//!
//! Each shard walks its own pseudo-random permutation of a prime-sized table and, in turns,
//! claims its next free slot; a shard of weight `w` takes `w` turns per round. The table is
//! nearly perfectly balanced and a lookup is one hash and one read, but it is **not monotone**:
//! a change of shards reshuffles some slots between surviving shards too (about half the
//! minimum again at 100 shards).

use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::{check_nodes, key_hash, Ownership, Placement, PlacementNode};
use crate::error::ConfigError;

/// Default table size: a prime.
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;
/// Largest accepted table size.
pub const MAX_TABLE_SIZE: u32 = 1 << 26;

const OFFSET_SEED: u64 = 0x6d61_676c_6576_6f66; // "maglevof"
const SKIP_SEED: u64 = 0x6d61_676c_6576_736b; // "maglevsk"

/// A Maglev lookup table.
#[derive(Debug, Clone)]
pub struct Maglev {
    table: Vec<u32>,
    shards: usize,
}

impl Maglev {
    /// Builds a table of `size` slots; `size` must be prime and at least the total weight.
    pub fn new(nodes: &[PlacementNode<'_>], size: u32) -> Result<Maglev, ConfigError> {
        check_nodes(nodes)?;
        let total: u64 = nodes.iter().map(|n| u64::from(n.weight)).sum();
        let bad = |reason: String| ConfigError::InvalidValue {
            field: "placement.table_size".into(),
            reason,
        };
        if size > MAX_TABLE_SIZE || !is_prime(size) {
            return Err(bad(format!(
                "{size} must be a prime no larger than {MAX_TABLE_SIZE}"
            )));
        }
        if u64::from(size) < total {
            return Err(bad(format!(
                "{size} is smaller than the total weight {total}; use a prime well above it"
            )));
        }
        let m = u64::from(size);
        // Fill in name order so the table does not depend on how shards were listed.
        let mut order: Vec<usize> = (0..nodes.len()).collect();
        order.sort_by(|a, b| nodes[*a].name.cmp(nodes[*b].name));
        let walk: Vec<(u64, u64)> = order
            .iter()
            .map(|&i| {
                let name = nodes[i].name.as_bytes();
                (
                    xxh3_64_with_seed(name, OFFSET_SEED) % m,
                    xxh3_64_with_seed(name, SKIP_SEED) % (m - 1) + 1,
                )
            })
            .collect();
        let mut next = vec![0u64; order.len()];
        let mut table = vec![u32::MAX; size as usize];
        let mut filled = 0u64;
        'fill: loop {
            for (slot_in_order, &i) in order.iter().enumerate() {
                for _ in 0..nodes[i].weight {
                    let (offset, skip) = walk[slot_in_order];
                    let mut c;
                    loop {
                        c = ((offset + next[slot_in_order] * skip) % m) as usize;
                        next[slot_in_order] += 1;
                        if table[c] == u32::MAX {
                            break;
                        }
                    }
                    table[c] = i as u32;
                    filled += 1;
                    if filled == m {
                        break 'fill;
                    }
                }
            }
        }
        Ok(Maglev {
            table,
            shards: nodes.len(),
        })
    }
}

fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u32;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

impl Placement for Maglev {
    fn algorithm(&self) -> &'static str {
        "maglev"
    }

    #[inline]
    fn locate(&self, key: &[u8]) -> usize {
        // Multiply-shift maps the hash onto the table without a division.
        let slot = ((u128::from(key_hash(key)) * self.table.len() as u128) >> 64) as usize;
        self.table[slot] as usize
    }

    fn shard_count(&self) -> usize {
        self.shards
    }

    fn memory_bytes(&self) -> usize {
        self.table.capacity() * 4
    }

    fn ownership(&self) -> Option<Ownership> {
        Some(Ownership::Cells(self.table.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_every_slot_evenly() {
        let names: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
        let nodes: Vec<PlacementNode<'_>> = names
            .iter()
            .map(|n| PlacementNode { name: n, weight: 1 })
            .collect();
        let m = Maglev::new(&nodes, 65_537).unwrap();
        let mut counts = [0usize; 10];
        for o in &m.table {
            counts[*o as usize] += 1;
        }
        let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(hi - lo <= 1, "{counts:?}");
    }

    #[test]
    fn rejects_bad_sizes() {
        let nodes = [PlacementNode {
            name: "a",
            weight: 1,
        }];
        assert!(Maglev::new(&nodes, 65_536).is_err());
        assert!(Maglev::new(&nodes, 1).is_err());
        let heavy = [PlacementNode {
            name: "a",
            weight: 100,
        }];
        assert!(Maglev::new(&heavy, 97).is_err());
    }
}
