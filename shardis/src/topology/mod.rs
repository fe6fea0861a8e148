//! Shards, endpoints and their validation.
//!
//! A [`ShardSpec`] is what a user writes (a name, a weight, endpoint URLs); a [`Topology`] is a
//! list of them that passed validation, with every URL parsed into an [`Endpoint`]. The shard
//! *name* is the placement identity: replacing a host behind a name moves no key.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

use crate::error::ConfigError;

mod endpoint;

pub(crate) use endpoint::redact_url;
pub use endpoint::{Endpoint, DEFAULT_PORT};

/// The largest weight a shard may have. Weights multiply per-shard table sizes in some
/// placement algorithms, so they are bounded to keep tables small.
pub const MAX_WEIGHT: u32 = 10_000;

/// A shard's stable name: cheap to clone, compares with `&str`, implements `Display`.
///
/// ```
/// let name = shardis::ShardName::from("cache-a");
/// assert_eq!(name, "cache-a");
/// assert_eq!(name.to_string(), "cache-a");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardName(Arc<str>);

impl ShardName {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared string itself, for labels that must not copy it.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn shared(&self) -> &Arc<str> {
        &self.0
    }
}

impl From<&str> for ShardName {
    fn from(s: &str) -> Self {
        ShardName(Arc::from(s))
    }
}

impl AsRef<str> for ShardName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for ShardName {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for ShardName {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl fmt::Display for ShardName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ShardName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// A shard as a user describes it: stable name, weight, and endpoint URLs not yet parsed.
///
/// This is also the `[[shards]]` table of the config file.
///
/// ```
/// let spec = shardis::ShardSpec::new("cache-a", "redis://127.0.0.1:7001")
///     .weight(2)
///     .replica("redis://127.0.0.1:7101");
/// assert_eq!(spec.name, "cache-a");
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ShardSpec {
    /// The stable name: the placement identity, never the address.
    pub name: String,
    /// The primary endpoint URL.
    pub primary: String,
    /// Replica endpoint URLs, possibly none.
    #[serde(default)]
    pub replicas: Vec<String>,
    /// The relative share of keys, an integer from 1 to [`MAX_WEIGHT`]. Defaults to 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

impl ShardSpec {
    /// A shard with weight 1 and no replica.
    pub fn new(name: impl Into<String>, primary: impl Into<String>) -> Self {
        ShardSpec {
            name: name.into(),
            primary: primary.into(),
            replicas: Vec::new(),
            weight: 1,
        }
    }

    /// Sets the weight.
    #[must_use]
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Adds a replica endpoint URL.
    #[must_use]
    pub fn replica(mut self, url: impl Into<String>) -> Self {
        self.replicas.push(url.into());
        self
    }
}

impl fmt::Debug for ShardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let replicas: Vec<String> = self.replicas.iter().map(|r| redact_url(r)).collect();
        f.debug_struct("ShardSpec")
            .field("name", &self.name)
            .field("primary", &redact_url(&self.primary))
            .field("replicas", &replicas)
            .field("weight", &self.weight)
            .finish()
    }
}

/// A validated shard: its name, weight and parsed endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    name: ShardName,
    weight: u32,
    primary: Endpoint,
    replicas: Vec<Endpoint>,
}

impl Shard {
    /// The stable name.
    pub fn name(&self) -> &ShardName {
        &self.name
    }

    /// The weight, from 1 to [`MAX_WEIGHT`].
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// The primary endpoint.
    pub fn primary(&self) -> &Endpoint {
        &self.primary
    }

    /// The replica endpoints.
    pub fn replicas(&self) -> &[Endpoint] {
        &self.replicas
    }
}

/// A validated list of shards: non-empty, unique names, weights >= 1, parsable URLs, and no
/// endpoint used twice.
///
/// Two endpoints are the same when host, port and db are. Hosts compare case-insensitively,
/// and `localhost`, `127.0.0.1` and `[::1]` count as one loopback host, so
/// `redis://localhost:6379` beside `redis://127.0.0.1:6379` is a duplicate. Nothing is
/// resolved: validation never touches DNS (it stays fast and gives the same answer
/// everywhere), so two other names of one machine are not caught.
///
/// Validation takes time linear in the number of shards and endpoints, and stops at the
/// first problem; it opens no connection.
///
/// ```
/// use shardis::{ShardSpec, Topology};
/// let t = Topology::new(vec![
///     ShardSpec::new("a", "redis://127.0.0.1:7001"),
///     ShardSpec::new("b", "redis://127.0.0.1:7002").weight(2),
/// ])
/// .unwrap();
/// assert_eq!(t.shards().len(), 2);
///
/// let err = Topology::new(vec![ShardSpec::new("a", "redis://h:1"), ShardSpec::new("a", "redis://h:2")])
///     .unwrap_err();
/// assert_eq!(err, shardis::ConfigError::DuplicateShardName("a".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    shards: Vec<Shard>,
}

impl Topology {
    /// Validates `specs` into a topology. The first problem found is returned, with any
    /// password in a URL redacted and user text quoted at most 80 characters long.
    pub fn new(specs: Vec<ShardSpec>) -> Result<Topology, ConfigError> {
        Topology::extend(Vec::new(), specs)
    }

    /// This topology with `specs` added after its shards, validated as a whole (names and
    /// endpoints stay unique). The shards already here are kept as they are.
    pub fn with_specs(&self, specs: Vec<ShardSpec>) -> Result<Topology, ConfigError> {
        Topology::extend(self.shards.clone(), specs)
    }

    /// Validates `specs` and appends them to `shards` (already valid).
    fn extend(mut shards: Vec<Shard>, specs: Vec<ShardSpec>) -> Result<Topology, ConfigError> {
        if shards.is_empty() && specs.is_empty() {
            return Err(ConfigError::EmptyTopology);
        }
        let mut names: HashSet<String> = shards.iter().map(|s| s.name.to_string()).collect();
        let mut endpoints: HashMap<(String, u16, i64), String> = shards
            .iter()
            .flat_map(|s| {
                std::iter::once(&s.primary)
                    .chain(&s.replicas)
                    .map(|ep| (ep.identity(), s.name.to_string()))
            })
            .collect();
        shards.reserve(specs.len());
        for spec in specs {
            validate_name(&spec.name)?;
            if !names.insert(spec.name.clone()) {
                return Err(ConfigError::DuplicateShardName(spec.name));
            }
            if spec.weight == 0 {
                return Err(ConfigError::ZeroWeight { shard: spec.name });
            }
            if spec.weight > MAX_WEIGHT {
                return Err(ConfigError::InvalidValue {
                    field: format!("shards.{}.weight", spec.name),
                    reason: format!("{} is above the maximum of {MAX_WEIGHT}", spec.weight),
                });
            }
            let parse = |raw: &str| {
                Endpoint::parse(raw).map_err(|reason| ConfigError::InvalidUrl {
                    shard: spec.name.clone(),
                    url: redact_url(raw),
                    reason,
                })
            };
            let primary = parse(&spec.primary)?;
            let replicas = spec
                .replicas
                .iter()
                .map(|r| parse(r))
                .collect::<Result<Vec<_>, _>>()?;
            for ep in std::iter::once(&primary).chain(replicas.iter()) {
                if let Some(first) = endpoints.insert(ep.identity(), spec.name.clone()) {
                    return Err(ConfigError::DuplicateEndpoint {
                        endpoint: ep.label(),
                        first,
                        second: spec.name.clone(),
                    });
                }
            }
            shards.push(Shard {
                name: ShardName::from(spec.name.as_str()),
                weight: spec.weight,
                primary,
                replicas,
            });
        }
        Ok(Topology { shards })
    }

    /// The shards, in the order they were given.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// The shards `keep` accepts, in order; `None` if it keeps none.
    pub(crate) fn filter(&self, keep: impl Fn(&Shard) -> bool) -> Option<Topology> {
        let shards: Vec<Shard> = self.shards.iter().filter(|s| keep(s)).cloned().collect();
        (!shards.is_empty()).then_some(Topology { shards })
    }

    /// This topology without the shard called `name` (to plan a removal); the others are
    /// kept as they are. [`ConfigError::EmptyTopology`] if no shard would be left.
    ///
    /// ```
    /// use shardis::{ShardSpec, Topology};
    /// let t = Topology::new(vec![
    ///     ShardSpec::new("a", "redis://127.0.0.1:7001"),
    ///     ShardSpec::new("b", "redis://127.0.0.1:7002"),
    /// ]).unwrap();
    /// assert_eq!(t.without("b").unwrap().shards().len(), 1);
    /// assert!(t.without("b").unwrap().without("a").is_err());
    /// ```
    pub fn without(&self, name: &str) -> Result<Topology, ConfigError> {
        self.filter(|s| s.name != name)
            .ok_or(ConfigError::EmptyTopology)
    }

    /// The shard called `name`, if any.
    pub fn shard(&self, name: &str) -> Option<&Shard> {
        self.shards.iter().find(|s| s.name == name)
    }
}

fn validate_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.chars().count() <= 128
        && !name.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(ConfigError::InvalidShardName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, url: &str) -> ShardSpec {
        ShardSpec::new(name, url)
    }

    #[test]
    fn every_bad_topology_has_its_error() {
        assert_eq!(Topology::new(vec![]), Err(ConfigError::EmptyTopology));
        assert_eq!(
            Topology::new(vec![spec("a", "redis://h:1"), spec("a", "redis://h:2")]),
            Err(ConfigError::DuplicateShardName("a".into()))
        );
        assert_eq!(
            Topology::new(vec![spec("a", "redis://h:1").weight(0)]),
            Err(ConfigError::ZeroWeight { shard: "a".into() })
        );
        assert!(matches!(
            Topology::new(vec![spec("a", "redis://h:1").weight(MAX_WEIGHT + 1)]),
            Err(ConfigError::InvalidValue { .. })
        ));
        assert_eq!(
            Topology::new(vec![spec("", "redis://h:1")]),
            Err(ConfigError::InvalidShardName("".into()))
        );
        assert_eq!(
            Topology::new(vec![spec("a b", "redis://h:1")]),
            Err(ConfigError::InvalidShardName("a b".into()))
        );
        assert_eq!(
            Topology::new(vec![spec("a", "redis://h:1"), spec("b", "redis://H:1")]),
            Err(ConfigError::DuplicateEndpoint {
                endpoint: "H:1".into(),
                first: "a".into(),
                second: "b".into()
            })
        );
        assert!(matches!(
            Topology::new(vec![spec("a", "redis://h:1").replica("redis://h:1")]),
            Err(ConfigError::DuplicateEndpoint { .. })
        ));
        match Topology::new(vec![spec("a", "redis://u:hunter2@h:1/zz")]) {
            Err(ConfigError::InvalidUrl { shard, url, .. }) => {
                assert_eq!(shard, "a");
                assert!(!url.contains("hunter2"), "{url}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn same_host_other_db_is_another_endpoint() {
        assert!(
            Topology::new(vec![spec("a", "redis://h:1/0"), spec("b", "redis://h:1/1")]).is_ok()
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let s = spec("a", "redis://u:hunter2@h:1").replica("redis://:hunter3@h:2");
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("hunter3"),
            "{shown}"
        );
        let t = Topology::new(vec![s]).unwrap();
        let shown = format!("{t:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("hunter3"),
            "{shown}"
        );
    }

    #[test]
    fn loopback_names_are_one_host_for_duplicates() {
        for (a, b) in [
            ("localhost", "127.0.0.1"),
            ("[::1]", "localhost"),
            ("127.0.0.1", "[::1]"),
        ] {
            let t = Topology::new(vec![
                spec("a", &format!("redis://{a}:6379")),
                spec("b", &format!("redis://{b}:6379")),
            ]);
            assert!(
                matches!(&t, Err(ConfigError::DuplicateEndpoint { first, second, .. }) if first == "a" && second == "b"),
                "{a} {b}: {t:?}"
            );
        }
        assert!(Topology::new(vec![
            spec("a", "redis://localhost:6379"),
            spec("b", "redis://127.0.0.2:6379"),
        ])
        .is_ok());
    }

    #[test]
    fn passwords_with_url_delimiters_stay_hidden() {
        for pw in ["Sup3r/Secr@t:pw", "p@ss/w:rd#1?x"] {
            let s = spec("a", &format!("redis://u:{pw}@h:1")).replica(format!("redis://:{pw}@h:2"));
            let shown = format!("{s:?}");
            assert!(!shown.contains(pw), "{shown}");
            let err = Topology::new(vec![s]).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(pw), "{shown}");
            assert!(matches!(err, ConfigError::InvalidUrl { .. }), "{shown}");
        }
    }
}
