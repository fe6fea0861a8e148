//! Weighted rendezvous hashing, HRW (`algorithm = "rendezvous"`).
//!
//! Every shard scores the key; the best weighted score wins (see `hrw`). Balanced, exactly
//! weighted, monotone, and needs no table — but a lookup scores every shard, so it costs O(N):
//! fine for a handful of shards, slow at hundreds. `rendezvous_table` precomputes the same
//! scores per arc to make the lookup O(1).

use super::hrw::{self, Contenders};
use super::{check_nodes, key_hash, Placement, PlacementNode};
use crate::error::ConfigError;

/// Weighted rendezvous hashing.
#[derive(Debug, Clone)]
pub struct Rendezvous {
    contenders: Contenders,
    shards: usize,
}

impl Rendezvous {
    /// Builds the contender list.
    pub fn new(nodes: &[PlacementNode<'_>]) -> Result<Rendezvous, ConfigError> {
        check_nodes(nodes)?;
        Ok(Rendezvous {
            contenders: Contenders::new(
                nodes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (hrw::seed(n.name), n.weight, i as u32)),
            ),
            shards: nodes.len(),
        })
    }
}

impl Placement for Rendezvous {
    fn algorithm(&self) -> &'static str {
        "rendezvous"
    }

    #[inline]
    fn locate(&self, key: &[u8]) -> usize {
        self.contenders.winner(key_hash(key)).index as usize
    }

    fn shard_count(&self) -> usize {
        self.shards
    }

    fn memory_bytes(&self) -> usize {
        self.shards * 12
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_a_shard_moves_only_its_keys() {
        let names: Vec<String> = (0..8).map(|i| format!("s{i}")).collect();
        let all: Vec<PlacementNode<'_>> = names
            .iter()
            .map(|n| PlacementNode { name: n, weight: 1 })
            .collect();
        let mut fewer = all.clone();
        fewer.remove(2);
        let (a, b) = (
            Rendezvous::new(&all).unwrap(),
            Rendezvous::new(&fewer).unwrap(),
        );
        for i in 0..20_000 {
            let k = format!("k{i}");
            let before = all[a.locate(k.as_bytes())].name;
            let after = fewer[b.locate(k.as_bytes())].name;
            assert!(before == after || before == "s2");
        }
    }
}
