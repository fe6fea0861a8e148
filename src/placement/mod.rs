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

use crate::config::Options;
use crate::error::ConfigError;
use crate::topology::{ShardName, Topology};

mod hrw;
pub mod jump;
pub mod ketama;
pub mod keyhash;
pub mod maglev;
pub mod rendezvous;
pub mod rendezvous_table;
pub mod ring;

pub use jump::Jump;
pub use ketama::Ketama;
pub use keyhash::KeyHash;
pub use maglev::Maglev;
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

/// The exact division of a hash space among shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Contiguous segments of a space of `2^bits` hashes: `(first hash, shard index)`, sorted,
    /// the first starting at 0; each runs to the next start (the last to the end of the space).
    Segments {
        /// The size of the hash space, as a power of two.
        bits: u32,
        /// The segments.
        segments: Vec<(u64, u32)>,
    },
    /// Equal cells, in hash order: cell `i` is owned by shard `cells[i]`.
    Cells(Vec<u32>),
}

impl Ownership {
    /// Each shard's exact share of the hash space, for `shards` shards.
    pub fn shares(&self, shards: usize) -> Vec<f64> {
        let mut out = vec![0.0; shards];
        match self {
            Ownership::Segments { bits, segments } => {
                let space = 1u128 << bits;
                for (i, (start, owner)) in segments.iter().enumerate() {
                    let end = segments.get(i + 1).map_or(space, |s| u128::from(s.0));
                    out[*owner as usize] += (end - u128::from(*start)) as f64 / space as f64;
                }
            }
            Ownership::Cells(cells) => {
                let each = 1.0 / cells.len() as f64;
                for c in cells {
                    out[*c as usize] += each;
                }
            }
        }
        out
    }

    /// The exact fraction of the hash space whose owner differs between `self` (shards named
    /// `names`) and `after` (shards named `after_names`), and the part of it that moved between
    /// two shards present in both. `None` when the two divide different spaces.
    pub fn moved(
        &self,
        names: &[&str],
        after: &Ownership,
        after_names: &[&str],
    ) -> Option<(f64, f64)> {
        let survives = |name: &str| names.contains(&name) && after_names.contains(&name);
        let mut moved = 0.0;
        let mut between = 0.0;
        let mut count = |before: &str, now: &str, share: f64| {
            if before != now {
                moved += share;
                if survives(before) && survives(now) {
                    between += share;
                }
            }
        };
        match (self, after) {
            (Ownership::Cells(a), Ownership::Cells(b)) if a.len() == b.len() => {
                let each = 1.0 / a.len() as f64;
                for (x, y) in a.iter().zip(b) {
                    count(names[*x as usize], after_names[*y as usize], each);
                }
            }
            (
                Ownership::Segments { bits, segments: a },
                Ownership::Segments {
                    bits: bits_b,
                    segments: b,
                },
            ) if bits == bits_b => {
                let space = 1u128 << bits;
                // Sweep the union of both boundary sets.
                let (mut i, mut j, mut pos) = (0usize, 0usize, 0u128);
                while pos < space {
                    let end_a = a.get(i + 1).map_or(space, |s| u128::from(s.0));
                    let end_b = b.get(j + 1).map_or(space, |s| u128::from(s.0));
                    let end = end_a.min(end_b);
                    count(
                        names[a[i].1 as usize],
                        after_names[b[j].1 as usize],
                        (end - pos) as f64 / space as f64,
                    );
                    pos = end;
                    if end == end_a {
                        i += 1;
                    }
                    if end == end_b {
                        j += 1;
                    }
                }
            }
            _ => return None,
        }
        Some((moved, between))
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

/// Key → shard without connections: the shard names, the hash tag and the placement table.
///
/// The routing table routes with one; the CLI's `locate` and offline tools use one alone.
///
/// ```
/// use shardis::{placement::Locator, Options, ShardSpec, Topology};
/// let topology = Topology::new(vec![
///     ShardSpec::new("a", "redis://127.0.0.1:7001"),
///     ShardSpec::new("b", "redis://127.0.0.1:7002"),
/// ])
/// .unwrap();
/// let mut options = Options::default();
/// options.hash_tag = Some(shardis::HashTag::parse("{}").unwrap());
/// let locator = Locator::new(&topology, &options).unwrap();
/// assert_eq!(locator.locate(b"{user:1}:cart"), locator.locate(b"{user:1}:name"));
/// ```
#[derive(Debug)]
pub struct Locator {
    names: Vec<ShardName>,
    hash_tag: Option<HashTag>,
    spec: PlacementSpec,
    placement: Box<dyn Placement>,
}

fn placement_nodes(topology: &Topology) -> Vec<PlacementNode<'_>> {
    topology
        .shards()
        .iter()
        .map(|s| PlacementNode {
            name: s.name().as_str(),
            weight: s.weight(),
        })
        .collect()
}

impl Locator {
    /// Builds the placement table of `topology` as `options` say.
    pub fn new(topology: &Topology, options: &Options) -> Result<Locator, ConfigError> {
        Ok(Locator {
            placement: options.placement.build(&placement_nodes(topology))?,
            names: topology.shards().iter().map(|s| s.name().clone()).collect(),
            hash_tag: options.hash_tag,
            spec: options.placement,
        })
    }

    /// The locator of `topology`, derived from this one through the algorithm's update path
    /// when the placement settings are unchanged (the result equals [`Locator::new`]).
    pub fn derive(&self, topology: &Topology, options: &Options) -> Result<Locator, ConfigError> {
        if options.placement != self.spec {
            return Locator::new(topology, options);
        }
        let nodes = placement_nodes(topology);
        let placement = match self.placement.update(&nodes) {
            Some(updated) => updated?,
            None => options.placement.build(&nodes)?,
        };
        Ok(Locator {
            placement,
            names: topology.shards().iter().map(|s| s.name().clone()).collect(),
            hash_tag: options.hash_tag,
            spec: options.placement,
        })
    }

    /// The index, in topology order, of the shard owning `key`.
    #[inline]
    pub fn index(&self, key: &[u8]) -> usize {
        let hashed = match &self.hash_tag {
            Some(tag) => tag.extract(key),
            None => key,
        };
        self.placement.locate(hashed)
    }

    /// The name of the shard owning `key`.
    #[inline]
    pub fn locate(&self, key: &[u8]) -> &ShardName {
        &self.names[self.index(key)]
    }

    /// The placement table.
    pub fn placement(&self) -> &dyn Placement {
        self.placement.as_ref()
    }

    /// The shard names in topology order.
    pub fn names(&self) -> &[ShardName] {
        &self.names
    }
}

/// A hash tag: two delimiter bytes. When a key contains the opening byte and, after it, the
/// closing byte, with something between them, only that part is hashed, so related keys
/// (`{user:1}:name`, `{user:1}:cart`) land on one shard. This is twemproxy's and Redis
/// Cluster's rule.
///
/// ```
/// let tag = shardis::HashTag::parse("{}").unwrap();
/// assert_eq!(tag.extract(b"{user:1}:cart"), b"user:1");
/// assert_eq!(tag.extract(b"plain"), b"plain");
/// assert_eq!(tag.extract(b"{}empty"), b"{}empty"); // empty tag: the whole key
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashTag {
    open: u8,
    close: u8,
}

impl HashTag {
    /// Parses a two-character tag such as `"{}"`.
    pub fn parse(tag: &str) -> Result<HashTag, ConfigError> {
        match tag.as_bytes() {
            [open, close] if open.is_ascii() && close.is_ascii() => Ok(HashTag {
                open: *open,
                close: *close,
            }),
            _ => Err(ConfigError::InvalidValue {
                field: "placement.hash_tag".into(),
                reason: format!("`{tag}` must be exactly two ASCII characters, like \"{{}}\""),
            }),
        }
    }

    /// The part of `key` to hash.
    pub fn extract<'k>(&self, key: &'k [u8]) -> &'k [u8] {
        let Some(start) = key.iter().position(|b| *b == self.open) else {
            return key;
        };
        let rest = &key[start + 1..];
        match rest.iter().position(|b| *b == self.close) {
            Some(end) if end > 0 => &rest[..end],
            _ => key,
        }
    }
}

impl fmt::Display for HashTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.open as char, self.close as char)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tag_rules() {
        let t = HashTag::parse("{}").unwrap();
        assert_eq!(t.extract(b"a{b}c"), b"b");
        assert_eq!(t.extract(b"a{b"), b"a{b");
        assert_eq!(t.extract(b"a}b{c}"), b"c");
        assert_eq!(t.extract(b"{a}{b}"), b"a");
        assert_eq!(t.extract(b"{{a}}"), b"{a");
        assert_eq!(t.extract(b""), b"");
        let t = HashTag::parse("::").unwrap();
        assert_eq!(t.extract(b"x:y:z"), b"y");
        assert!(HashTag::parse("{").is_err());
        assert!(HashTag::parse("{}}").is_err());
        assert!(HashTag::parse("é").is_err());
    }

    #[test]
    fn derive_equals_a_fresh_locator_for_every_algorithm() {
        use crate::topology::ShardSpec;
        let specs: Vec<ShardSpec> = (0..6)
            .map(|i| ShardSpec::new(format!("s{i}"), format!("redis://h:{}", i + 1)))
            .collect();
        let before = Topology::new(specs[..5].to_vec()).unwrap();
        let mut changed = specs.clone();
        changed.remove(2);
        let after = Topology::new(changed).unwrap();
        for algorithm in Algorithm::ALL {
            let options = Options {
                placement: match algorithm.default_spec() {
                    PlacementSpec::RendezvousTable { .. } => {
                        PlacementSpec::RendezvousTable { arc_bits: 12 }
                    }
                    other => other,
                },
                ..Options::default()
            };
            let old = Locator::new(&before, &options).unwrap();
            let derived = old.derive(&after, &options).unwrap();
            let fresh = Locator::new(&after, &options).unwrap();
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
