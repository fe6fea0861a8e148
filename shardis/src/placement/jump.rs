//! Jump consistent hash (`algorithm = "jump"`), after Lamping and Veach (2014).
//!
//! No table at all: a key's bucket comes from a short loop over its hash. Perfectly balanced in
//! expectation and cheap, but **unweighted** (the algorithm has no notion of weight: a topology
//! with unequal weights is rejected rather than silently flattened) and **positional**: shards are
//! numbered in the order they are listed, so only adding or removing the *last* shard moves the
//! minimum; removing one in the middle renumbers those after it and moves about twice as much.

use super::{check_nodes, key_hash, Placement, PlacementNode};
use crate::error::ConfigError;

/// Jump consistent hash over the shards in listed order.
#[derive(Debug, Clone)]
pub struct Jump {
    shards: usize,
}

impl Jump {
    /// Builds a jump placement; every weight must be equal.
    pub fn new(nodes: &[PlacementNode<'_>]) -> Result<Jump, ConfigError> {
        check_nodes(nodes)?;
        if nodes.iter().any(|n| n.weight != nodes[0].weight) {
            return Err(ConfigError::InvalidValue {
                field: "placement.algorithm".into(),
                reason: "jump cannot weight shards; give every shard the same weight or pick \
                         another algorithm"
                    .into(),
            });
        }
        if nodes.len() > i32::MAX as usize {
            return Err(ConfigError::InvalidValue {
                field: "shards".into(),
                reason: "too many shards for jump".into(),
            });
        }
        Ok(Jump {
            shards: nodes.len(),
        })
    }

    /// The bucket of a 64-bit key hash among `n` buckets.
    #[inline]
    pub fn bucket(mut hash: u64, n: usize) -> usize {
        let (mut b, mut j) = (0i64, 0i64);
        while j < n as i64 {
            b = j;
            hash = hash.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
            j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((hash >> 33) + 1) as f64)) as i64;
        }
        b as usize
    }
}

impl Placement for Jump {
    fn algorithm(&self) -> &'static str {
        "jump"
    }

    #[inline]
    fn locate(&self, key: &[u8]) -> usize {
        Jump::bucket(key_hash(key), self.shards)
    }

    fn shard_count(&self) -> usize {
        self.shards
    }

    fn memory_bytes(&self) -> usize {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_cases() {
        // Hash 0 jumps past every bucket after the first step; one bucket takes everything.
        assert_eq!(Jump::bucket(0, 1), 0);
        assert_eq!(Jump::bucket(0, 100), 0);
        assert_eq!(Jump::bucket(u64::MAX, 1), 0);
        assert!((0..1000u64).all(|h| Jump::bucket(h.wrapping_mul(0x9E37_79B9_7F4A_7C15), 7) < 7));
    }

    #[test]
    fn spreads_evenly() {
        let mut counts = [0usize; 10];
        for h in (0..100_000u64).map(|i| crate::placement::key_hash(&i.to_le_bytes())) {
            counts[Jump::bucket(h, 10)] += 1;
        }
        assert!(
            counts.iter().all(|c| (9_500..10_500).contains(c)),
            "{counts:?}"
        );
    }

    #[test]
    fn growing_moves_keys_only_to_the_new_bucket() {
        for h in (0..20_000u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)) {
            let (a, b) = (Jump::bucket(h, 10), Jump::bucket(h, 11));
            assert!(a == b || b == 10);
        }
    }

    #[test]
    fn rejects_unequal_weights() {
        let nodes = [
            PlacementNode {
                name: "a",
                weight: 1,
            },
            PlacementNode {
                name: "b",
                weight: 2,
            },
        ];
        assert!(Jump::new(&nodes).is_err());
    }
}
