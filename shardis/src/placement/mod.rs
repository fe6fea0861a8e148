//! Placement: which shard owns a key.
//!
//! Every algorithm implements [`Placement`]: it is built from the shards' stable names and
//! weights (never their addresses) and answers, for the bytes to hash, the index of the owning
//! shard in the order the shards were given. Hash-tag extraction ([`HashTag`]) happens before, so
//! all algorithms share it.
//!
//! Algorithms, one file each:
//! - [`rendezvous_table`]: equal arcs of the hash space, each owned by its weighted rendezvous
//!   winner — balanced, monotone and O(1) at once (`algorithm = "rendezvous_table"`, the default).
//! - [`ring`]: weighted virtual-node ring on xxh3 (`"ring"`).
//! - [`ketama`]: twemproxy's ketama with its key hashes ([`keyhash`]), point for point (`"ketama"`).
//! - [`jump`]: jump consistent hash, unweighted (`"jump"`).
//! - [`rendezvous`]: weighted rendezvous (HRW), O(N) lookup (`"rendezvous"`).
//! - [`maglev`]: weighted Maglev table (`"maglev"`).
//!
//! Every algorithm is seeded explicitly and uses only integer and basic IEEE-754 arithmetic, so
//! a key maps to the same shard on every platform and Rust version.

use std::fmt;

use serde::Deserialize;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::error::ConfigError;

mod hashtag;
mod hrw;
pub mod jump;
pub mod ketama;
pub mod keyhash;
mod locator;
pub mod maglev;
mod ownership;
pub mod rendezvous;
pub mod rendezvous_table;
pub mod ring;

pub use hashtag::HashTag;
pub use jump::Jump;
pub use ketama::Ketama;
pub use keyhash::KeyHash;
pub use locator::{CustomPlacement, Locator, PlacementSource};
pub use maglev::Maglev;
pub use ownership::Ownership;
pub use rendezvous::Rendezvous;
pub use rendezvous_table::RendezvousTable;
pub use ring::Ring;

/// The seed of key hashes for every algorithm but ketama. Fixed forever: changing it would move
/// every key.
const KEY_SEED: u64 = 0x7368_6172_6469_7321; // "shardis!"

/// Hashes the bytes of a key (after hash-tag extraction) onto the 64-bit space with xxh3.
#[inline]
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64_with_seed(key, KEY_SEED)
}

/// A shard as placement sees it: its stable name and weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacementNode<'a> {
    /// The stable shard name, the placement identity.
    pub name: &'a str,
    /// The relative share of keys, >= 1.
    pub weight: u32,
}

/// A placement algorithm: maps the bytes to hash to a shard index.
///
/// Implementations are immutable once built and are shared across threads by the routing
/// table, so a lookup takes `&self` and must not allocate.
///
/// ```
/// use shardis::placement::{Placement, PlacementNode, Ring};
/// let nodes = [PlacementNode { name: "a", weight: 1 }, PlacementNode { name: "b", weight: 1 }];
/// let ring = Ring::new(&nodes, 160).unwrap(); // or any other algorithm
/// let i = ring.locate(b"user:1");
/// assert!(i < 2);
/// assert_eq!(i, ring.locate(b"user:1")); // deterministic
/// ```
pub trait Placement: Send + Sync + fmt::Debug {
    /// The algorithm's config name (e.g. `"ring"`).
    fn algorithm(&self) -> &'static str;

    /// The index, in the order the shards were given, of the shard owning `key`.
    fn locate(&self, key: &[u8]) -> usize;

    /// How many shards the table was built for.
    fn shard_count(&self) -> usize;

    /// Approximate heap memory held by the table, in bytes.
    fn memory_bytes(&self) -> usize;

    /// The table for `nodes`, derived from this one faster than a fresh build, where the
    /// algorithm has such a path (`rendezvous_table`); the result must equal a fresh build.
    fn update(
        &self,
        nodes: &[PlacementNode<'_>],
    ) -> Option<Result<Box<dyn Placement>, ConfigError>> {
        let _ = nodes;
        None
    }

    /// Who owns which part of the hash space, exactly, where the algorithm allows it
    /// (`None` for algorithms that compute an owner per key, such as jump and rendezvous).
    fn ownership(&self) -> Option<Ownership> {
        None
    }
}

/// The placement algorithms, by config name (`[placement] algorithm = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Algorithm {
    /// Equal arcs owned by weighted rendezvous winners: balanced, monotone, O(1). The default.
    #[default]
    RendezvousTable,
    /// Weighted virtual-node ring on xxh3.
    Ring,
    /// twemproxy's ketama.
    Ketama,
    /// Jump consistent hash (unweighted).
    Jump,
    /// Weighted rendezvous hashing, O(N).
    Rendezvous,
    /// Weighted Maglev.
    Maglev,
}

impl Algorithm {
    /// Every algorithm, the default first.
    pub const ALL: [Algorithm; 6] = [
        Algorithm::RendezvousTable,
        Algorithm::Ring,
        Algorithm::Ketama,
        Algorithm::Jump,
        Algorithm::Rendezvous,
        Algorithm::Maglev,
    ];

    /// The config name of the algorithm.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RendezvousTable => "rendezvous_table",
            Algorithm::Ring => "ring",
            Algorithm::Ketama => "ketama",
            Algorithm::Jump => "jump",
            Algorithm::Rendezvous => "rendezvous",
            Algorithm::Maglev => "maglev",
        }
    }

    /// The algorithm with its default parameters.
    pub fn default_spec(self) -> PlacementSpec {
        match self {
            Algorithm::RendezvousTable => PlacementSpec::RendezvousTable {
                arc_bits: rendezvous_table::DEFAULT_ARC_BITS,
            },
            Algorithm::Ring => PlacementSpec::Ring {
                vnodes: ring::DEFAULT_VNODES,
            },
            Algorithm::Ketama => PlacementSpec::Ketama {
                hash: KeyHash::default(),
            },
            Algorithm::Jump => PlacementSpec::Jump,
            Algorithm::Rendezvous => PlacementSpec::Rendezvous,
            Algorithm::Maglev => PlacementSpec::Maglev {
                table_size: maglev::DEFAULT_TABLE_SIZE,
            },
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Algorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .iter()
            .copied()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Algorithm::ALL.iter().map(|a| a.as_str()).collect();
                format!(
                    "unknown algorithm `{s}`; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// A fully parameterised algorithm choice, ready to build tables from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlacementSpec {
    /// `2^arc_bits` arcs owned by weighted rendezvous winners.
    RendezvousTable {
        /// The arc count exponent.
        arc_bits: u32,
    },
    /// A virtual-node ring with `vnodes` points per unit of weight.
    Ring {
        /// Points per unit of weight.
        vnodes: u32,
    },
    /// twemproxy's ketama with a twemproxy key hash.
    Ketama {
        /// The key hash.
        hash: KeyHash,
    },
    /// Jump consistent hash.
    Jump,
    /// Weighted rendezvous hashing.
    Rendezvous,
    /// Weighted Maglev with a prime table size.
    Maglev {
        /// The table size, a prime.
        table_size: u32,
    },
}

impl Default for PlacementSpec {
    fn default() -> Self {
        Algorithm::default().default_spec()
    }
}

impl PlacementSpec {
    /// Builds the table for `nodes`.
    pub fn build(&self, nodes: &[PlacementNode<'_>]) -> Result<Box<dyn Placement>, ConfigError> {
        Ok(match *self {
            PlacementSpec::RendezvousTable { arc_bits } => {
                Box::new(RendezvousTable::new(nodes, arc_bits)?)
            }
            PlacementSpec::Ring { vnodes } => Box::new(Ring::new(nodes, vnodes)?),
            PlacementSpec::Ketama { hash } => Box::new(Ketama::new(nodes, hash)?),
            PlacementSpec::Jump => Box::new(Jump::new(nodes)?),
            PlacementSpec::Rendezvous => Box::new(Rendezvous::new(nodes)?),
            PlacementSpec::Maglev { table_size } => Box::new(Maglev::new(nodes, table_size)?),
        })
    }

    /// Checks the parameters' ranges (what can be checked without the shards: maglev's table
    /// size must also be prime and above the total weight, checked when built).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let range = |field: &str, v: u32, lo: u32, hi: u32| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError::InvalidValue {
                    field: format!("placement.{field}"),
                    reason: format!("{v} is outside {lo}..={hi}"),
                })
            }
        };
        match *self {
            PlacementSpec::Ring { vnodes } => range("vnodes", vnodes, 1, ring::MAX_VNODES),
            PlacementSpec::RendezvousTable { arc_bits } => range(
                "arc_bits",
                arc_bits,
                rendezvous_table::MIN_ARC_BITS,
                rendezvous_table::MAX_ARC_BITS,
            ),
            PlacementSpec::Maglev { table_size } => {
                range("table_size", table_size, 2, maglev::MAX_TABLE_SIZE)
            }
            PlacementSpec::Ketama { .. } | PlacementSpec::Jump | PlacementSpec::Rendezvous => {
                Ok(())
            }
        }
    }

    /// The algorithm this spec builds.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            PlacementSpec::RendezvousTable { .. } => Algorithm::RendezvousTable,
            PlacementSpec::Ring { .. } => Algorithm::Ring,
            PlacementSpec::Ketama { .. } => Algorithm::Ketama,
            PlacementSpec::Jump => Algorithm::Jump,
            PlacementSpec::Rendezvous => Algorithm::Rendezvous,
            PlacementSpec::Maglev { .. } => Algorithm::Maglev,
        }
    }
}

/// Checks what every algorithm needs of its input: at least one node, weights >= 1.
pub(crate) fn check_nodes(nodes: &[PlacementNode<'_>]) -> Result<(), ConfigError> {
    if nodes.is_empty() {
        return Err(ConfigError::EmptyTopology);
    }
    if let Some(n) = nodes.iter().find(|n| n.weight == 0) {
        return Err(ConfigError::ZeroWeight {
            shard: n.name.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_equals_a_fresh_locator_for_every_algorithm() {
        use crate::topology::{ShardSpec, Topology};
        let specs: Vec<ShardSpec> = (0..6)
            .map(|i| ShardSpec::new(format!("s{i}"), format!("redis://h:{}", i + 1)))
            .collect();
        let before = Topology::new(specs[..5].to_vec()).unwrap();
        let mut changed = specs.clone();
        changed.remove(2);
        let after = Topology::new(changed).unwrap();
        for algorithm in Algorithm::ALL {
            let spec = match algorithm.default_spec() {
                PlacementSpec::RendezvousTable { .. } => {
                    PlacementSpec::RendezvousTable { arc_bits: 12 }
                }
                other => other,
            };
            let source = PlacementSource::Spec(spec);
            let old = Locator::new(&before, &spec, None).unwrap();
            let derived = old.derive(&after, &source, None).unwrap();
            let fresh = Locator::new(&after, &spec, None).unwrap();
            for i in 0..2000 {
                let k = format!("k{i}");
                assert_eq!(
                    derived.locate(k.as_bytes()),
                    fresh.locate(k.as_bytes()),
                    "{algorithm}"
                );
            }
        }
    }

    #[test]
    fn build_rejects_empty_and_zero_weight() {
        let spec = PlacementSpec::default();
        assert_eq!(spec.build(&[]).unwrap_err(), ConfigError::EmptyTopology);
        assert!(matches!(
            spec.build(&[PlacementNode {
                name: "a",
                weight: 0
            }]),
            Err(ConfigError::ZeroWeight { .. })
        ));
    }
}
