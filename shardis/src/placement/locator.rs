//! Key → shard without connections: hash tag, placement table and shard names together.

use std::fmt;
use std::sync::Arc;

use super::{HashTag, Placement, PlacementNode, PlacementSpec};
use crate::error::ConfigError;
use crate::topology::{ShardName, Topology};

/// The signature of a user-supplied placement builder.
type BuildFn =
    dyn Fn(&[PlacementNode<'_>]) -> Result<Box<dyn Placement>, ConfigError> + Send + Sync;

/// A placement algorithm of your own, for [`ClientBuilder::custom_placement`](crate::ClientBuilder::custom_placement).
///
/// It wraps a function that builds a [`Placement`] table for a list of shards; shardis calls it
/// at start and on every topology change (off the request path, on a blocking thread). The
/// table must be a pure function of the shards' names and weights, so that every process of
/// a service places keys alike.
///
/// ```
/// use shardis::placement::{CustomPlacement, Placement, PlacementNode};
///
/// /// Every key on the first shard: a silly but valid algorithm.
/// #[derive(Debug)]
/// struct First(usize);
/// impl Placement for First {
///     fn algorithm(&self) -> &'static str { "first" }
///     fn locate(&self, _key: &[u8]) -> usize { 0 }
///     fn shard_count(&self) -> usize { self.0 }
///     fn memory_bytes(&self) -> usize { 0 }
/// }
/// let custom = CustomPlacement::new("first", |nodes: &[PlacementNode<'_>]| {
///     Ok(Box::new(First(nodes.len())) as Box<dyn Placement>)
/// });
/// assert_eq!(custom.name(), "first");
/// ```
#[derive(Clone)]
pub struct CustomPlacement {
    name: &'static str,
    build: Arc<BuildFn>,
}

impl CustomPlacement {
    /// A custom algorithm called `name` (shown by `Debug` and `status`), built by `build`.
    pub fn new<F>(name: &'static str, build: F) -> CustomPlacement
    where
        F: Fn(&[PlacementNode<'_>]) -> Result<Box<dyn Placement>, ConfigError>
            + Send
            + Sync
            + 'static,
    {
        CustomPlacement {
            name,
            build: Arc::new(build),
        }
    }

    /// The name given at creation.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Builds the table for `nodes`, checking that it answers for exactly those shards.
    pub fn build(&self, nodes: &[PlacementNode<'_>]) -> Result<Box<dyn Placement>, ConfigError> {
        super::check_nodes(nodes)?;
        let table = (self.build)(nodes)?;
        if table.shard_count() != nodes.len() {
            return Err(ConfigError::InvalidValue {
                field: "placement".into(),
                reason: format!(
                    "custom placement `{}` built a table for {} shards, not {}",
                    self.name,
                    table.shard_count(),
                    nodes.len()
                ),
            });
        }
        Ok(table)
    }
}

impl PartialEq for CustomPlacement {
    /// Two custom placements are the same when they are clones of one another.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.build, &other.build)
    }
}

impl Eq for CustomPlacement {}

impl fmt::Debug for CustomPlacement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CustomPlacement({})", self.name)
    }
}

/// Where a placement table comes from: a built-in algorithm or a custom one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlacementSource {
    /// One of the built-in algorithms.
    Spec(PlacementSpec),
    /// A user-supplied algorithm.
    Custom(CustomPlacement),
}

impl PlacementSource {
    /// Builds the table for `nodes`.
    pub fn build(&self, nodes: &[PlacementNode<'_>]) -> Result<Box<dyn Placement>, ConfigError> {
        match self {
            PlacementSource::Spec(spec) => spec.build(nodes),
            PlacementSource::Custom(custom) => custom.build(nodes),
        }
    }

    /// The algorithm's name (`"rendezvous_table"`, or a custom placement's name).
    pub fn name(&self) -> &'static str {
        match self {
            PlacementSource::Spec(spec) => spec.algorithm().as_str(),
            PlacementSource::Custom(custom) => custom.name(),
        }
    }
}

impl From<PlacementSpec> for PlacementSource {
    fn from(spec: PlacementSpec) -> Self {
        PlacementSource::Spec(spec)
    }
}

/// Key → shard without connections: the shard names, the hash tag and the placement table.
///
/// The routing table routes with one; the CLI's `locate` and offline tools use one alone.
///
/// ```
/// use shardis::placement::{Locator, PlacementSpec};
/// use shardis::{HashTag, ShardSpec, Topology};
/// let topology = Topology::new(vec![
///     ShardSpec::new("a", "redis://127.0.0.1:7001"),
///     ShardSpec::new("b", "redis://127.0.0.1:7002"),
/// ])
/// .unwrap();
/// let tag = HashTag::parse("{}").unwrap();
/// let locator = Locator::new(&topology, &PlacementSpec::default(), Some(tag)).unwrap();
/// assert_eq!(locator.locate(b"{user:1}:cart"), locator.locate(b"{user:1}:name"));
/// ```
#[derive(Debug)]
pub struct Locator {
    names: Vec<ShardName>,
    hash_tag: Option<HashTag>,
    source: PlacementSource,
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
    /// Builds the placement table of `topology` with a built-in algorithm.
    pub fn new(
        topology: &Topology,
        spec: &PlacementSpec,
        hash_tag: Option<HashTag>,
    ) -> Result<Locator, ConfigError> {
        Locator::from_source(topology, &PlacementSource::Spec(*spec), hash_tag)
    }

    /// Builds the placement table of `topology` from any source, built-in or custom.
    pub fn from_source(
        topology: &Topology,
        source: &PlacementSource,
        hash_tag: Option<HashTag>,
    ) -> Result<Locator, ConfigError> {
        Ok(Locator {
            placement: source.build(&placement_nodes(topology))?,
            names: topology.shards().iter().map(|s| s.name().clone()).collect(),
            hash_tag,
            source: source.clone(),
        })
    }

    /// The locator of `topology` under `source` and `hash_tag`, derived from this one through
    /// the algorithm's update path when the placement is unchanged (the result equals a fresh
    /// [`Locator::from_source`]).
    pub fn derive(
        &self,
        topology: &Topology,
        source: &PlacementSource,
        hash_tag: Option<HashTag>,
    ) -> Result<Locator, ConfigError> {
        if *source != self.source {
            return Locator::from_source(topology, source, hash_tag);
        }
        let nodes = placement_nodes(topology);
        let placement = match self.placement.update(&nodes) {
            Some(updated) => updated?,
            None => source.build(&nodes)?,
        };
        Ok(Locator {
            placement,
            names: topology.shards().iter().map(|s| s.name().clone()).collect(),
            hash_tag,
            source: source.clone(),
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

    /// Where the table came from.
    pub fn source(&self) -> &PlacementSource {
        &self.source
    }

    /// The hash tag applied before hashing.
    pub fn hash_tag(&self) -> Option<HashTag> {
        self.hash_tag
    }

    /// The shard names in topology order.
    pub fn names(&self) -> &[ShardName] {
        &self.names
    }
}
