//! Placement: which shard owns a key.
//!
//! Every algorithm implements [`Placement`]: it is built from the shards' stable names and
//! weights (never their addresses) and answers, for the bytes to hash, the index of the owning
//! shard in the order the shards were given. Hash-tag extraction ([`HashTag`]) happens before, so
//! all algorithms share it.
//!
//! Algorithms, one file each:
//! - [`ring`]: weighted virtual-node ring on xxh3 (`algorithm = "ring"`).

use std::fmt;

use serde::Deserialize;

use crate::config::Options;
use crate::error::ConfigError;
use crate::topology::{ShardName, Topology};

pub mod ring;

pub use ring::Ring;

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
/// let ring = Ring::new(&nodes, 160).unwrap();
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
}

/// Which algorithm to build, with its parameters: the `[placement]` table of the config file
/// less the hash tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Algorithm {
    /// Weighted virtual-node ring on xxh3.
    #[default]
    Ring,
}

impl Algorithm {
    /// The config name of the algorithm.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Ring => "ring",
        }
    }
}

/// A fully parameterised algorithm choice, ready to build tables from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlacementSpec {
    /// A virtual-node ring with `vnodes` points per unit of weight.
    Ring {
        /// Points per unit of weight.
        vnodes: u32,
    },
}

impl Default for PlacementSpec {
    fn default() -> Self {
        PlacementSpec::Ring {
            vnodes: ring::DEFAULT_VNODES,
        }
    }
}

impl PlacementSpec {
    /// Builds the table for `nodes`.
    pub fn build(&self, nodes: &[PlacementNode<'_>]) -> Result<Box<dyn Placement>, ConfigError> {
        match *self {
            PlacementSpec::Ring { vnodes } => Ok(Box::new(Ring::new(nodes, vnodes)?)),
        }
    }

    /// The algorithm this spec builds.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            PlacementSpec::Ring { .. } => Algorithm::Ring,
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
    placement: Box<dyn Placement>,
}

impl Locator {
    /// Builds the placement table of `topology` as `options` say.
    pub fn new(topology: &Topology, options: &Options) -> Result<Locator, ConfigError> {
        let nodes: Vec<PlacementNode<'_>> = topology
            .shards()
            .iter()
            .map(|s| PlacementNode {
                name: s.name().as_str(),
                weight: s.weight(),
            })
            .collect();
        Ok(Locator {
            placement: options.placement.build(&nodes)?,
            names: topology.shards().iter().map(|s| s.name().clone()).collect(),
            hash_tag: options.hash_tag,
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
