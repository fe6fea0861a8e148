//! Shards, endpoints and their validation.
//!
//! A [`ShardSpec`] is what a user writes (a name, a weight, endpoint URLs); a [`Topology`] is a
//! list of them that passed validation, with every URL parsed into an [`Endpoint`]. The shard
//! *name* is the placement identity: replacing a host behind a name moves no key.

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

use crate::error::ConfigError;

mod endpoint;
mod secret;
#[cfg(feature = "sentinel")]
mod sentinel;
mod validate;

pub(crate) use endpoint::redact_url;
pub use endpoint::{Endpoint, DEFAULT_PORT};
#[cfg(feature = "sentinel")]
pub(crate) use sentinel::SentinelSource;
#[cfg(feature = "sentinel")]
pub use sentinel::{SentinelSpec, DEFAULT_SENTINEL_REFRESH};

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
    /// The primary endpoint URL (empty for a Sentinel-managed shard).
    #[serde(default)]
    pub primary: String,
    /// Replica endpoint URLs, possibly none.
    #[serde(default)]
    pub replicas: Vec<String>,
    /// The relative share of keys, an integer from 1 to [`MAX_WEIGHT`]. Defaults to 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Lets the shard list `rediss://` (TLS) and `redis://` (plain) endpoints together.
    /// Defaults to false: a mix is refused, since it is usually a mistake that sends one
    /// endpoint's traffic (and password) in clear.
    #[serde(default)]
    pub allow_mixed_tls: bool,
    /// The name of an environment variable holding the password of every endpoint of the
    /// shard whose URL has none (the URL may still name the ACL user). Read when the topology
    /// is validated: at start and at every reload. Defaults to none.
    #[serde(default)]
    pub password_env: Option<String>,
    /// A file holding that password (one line; a trailing line break is dropped). Read like
    /// `password_env`. Defaults to none.
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
    /// True when `password_env`/`password_file` came from `[defaults]`: then an endpoint URL
    /// with its own password keeps it instead of being refused.
    #[serde(skip)]
    pub(crate) password_from_defaults: bool,
    /// The Sentinel master that names the shard's primary and replicas, instead of `primary`
    /// and `replicas` (feature `sentinel`). Defaults to none.
    #[cfg(feature = "sentinel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sentinel")))]
    #[serde(default)]
    pub sentinel: Option<SentinelSpec>,
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
            allow_mixed_tls: false,
            password_env: None,
            password_file: None,
            password_from_defaults: false,
            #[cfg(feature = "sentinel")]
            sentinel: None,
        }
    }

    /// A Sentinel-managed shard: its primary and replicas are whatever the sentinels of
    /// `sentinel` say, followed across failovers; the name (hence its keys) never changes.
    #[cfg(feature = "sentinel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sentinel")))]
    pub fn sentinel(name: impl Into<String>, sentinel: SentinelSpec) -> Self {
        let mut spec = ShardSpec::new(name, "");
        spec.sentinel = Some(sentinel);
        spec
    }

    /// Reads the password of the shard's endpoints from the environment variable `name` (see
    /// the field `password_env`).
    ///
    /// ```
    /// let spec = shardis::ShardSpec::new("cache-a", "redis://app@127.0.0.1:7001")
    ///     .password_env("CACHE_A_PASSWORD");
    /// assert_eq!(spec.password_env.as_deref(), Some("CACHE_A_PASSWORD"));
    /// ```
    #[must_use]
    pub fn password_env(mut self, name: impl Into<String>) -> Self {
        self.password_env = Some(name.into());
        self
    }

    /// Reads the password of the shard's endpoints from the file at `path` (see the field
    /// `password_file`).
    #[must_use]
    pub fn password_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.password_file = Some(path.into());
        self
    }

    /// Lets the shard mix `rediss://` and `redis://` endpoints.
    #[must_use]
    pub fn allow_mixed_tls(mut self, allow: bool) -> Self {
        self.allow_mixed_tls = allow;
        self
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
        let mut d = f.debug_struct("ShardSpec");
        d.field("name", &self.name)
            .field("primary", &redact_url(&self.primary))
            .field("replicas", &replicas)
            .field("weight", &self.weight)
            .field("allow_mixed_tls", &self.allow_mixed_tls)
            // The variable's name and the file's path, never the password.
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file);
        #[cfg(feature = "sentinel")]
        d.field("sentinel", &self.sentinel);
        d.finish()
    }
}

/// A validated shard: its name, weight and parsed endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    name: ShardName,
    weight: u32,
    /// `None` for a Sentinel-managed shard.
    primary: Option<Endpoint>,
    replicas: Vec<Endpoint>,
    #[cfg(feature = "sentinel")]
    sentinel: Option<SentinelSource>,
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

    /// The configured primary endpoint; `None` for a Sentinel-managed shard, whose primary
    /// is whatever its sentinels say (see [`Client::status`](crate::Client::status)).
    pub fn primary(&self) -> Option<&Endpoint> {
        self.primary.as_ref()
    }

    /// The Sentinel master's name of a Sentinel-managed shard.
    #[cfg(feature = "sentinel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sentinel")))]
    pub fn sentinel_master(&self) -> Option<&str> {
        self.sentinel.as_ref().map(|s| s.master.as_str())
    }

    /// The sentinels of a Sentinel-managed shard, `host:port`, in the order they are asked
    /// (empty for other shards).
    ///
    /// ```
    /// use shardis::{SentinelSpec, ShardSpec, Topology};
    /// let spec = ShardSpec::sentinel("a", SentinelSpec::new("a", ["redis://:pw@127.0.0.1:26379"]));
    /// let t = Topology::new(vec![spec]).unwrap();
    /// assert_eq!(t.shards()[0].sentinel_addresses(), ["127.0.0.1:26379"]);
    /// ```
    #[cfg(feature = "sentinel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sentinel")))]
    pub fn sentinel_addresses(&self) -> Vec<String> {
        self.sentinel
            .as_ref()
            .map(|s| s.sentinels.iter().map(Endpoint::address).collect())
            .unwrap_or_default()
    }

    /// The Sentinel source of a Sentinel-managed shard.
    #[cfg(feature = "sentinel")]
    pub(crate) fn sentinel(&self) -> Option<&SentinelSource> {
        self.sentinel.as_ref()
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
        validate::extend(Vec::new(), specs)
    }

    /// This topology with `specs` added after its shards, validated as a whole (names and
    /// endpoints stay unique). The shards already here are kept as they are.
    pub fn with_specs(&self, specs: Vec<ShardSpec>) -> Result<Topology, ConfigError> {
        validate::extend(self.shards.clone(), specs)
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
