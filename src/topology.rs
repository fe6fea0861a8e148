//! Shards, endpoints and their validation.
//!
//! A [`ShardSpec`] is what a user writes (a name, a weight, endpoint URLs); a [`Topology`] is a
//! list of them that passed validation, with every URL parsed into an [`Endpoint`]. The shard
//! *name* is the placement identity: replacing a host behind a name moves no key.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

use crate::error::ConfigError;

/// The largest weight a shard may have. Weights multiply per-shard table sizes in some
/// placement algorithms, so they are bounded to keep tables small.
pub const MAX_WEIGHT: u32 = 10_000;

/// The default Redis port, used when an endpoint URL names none.
pub const DEFAULT_PORT: u16 = 6379;

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

/// One Redis server address, parsed from `redis://[user:password@]host:port[/db]`
/// (or `rediss://` for TLS).
///
/// `Display` and `Debug` never show the password.
///
/// ```
/// let e = shardis::Endpoint::parse("redis://app:s3cret@127.0.0.1:7001/2").unwrap();
/// assert_eq!((e.host(), e.port(), e.db()), ("127.0.0.1", 7001, 2));
/// assert_eq!(e.to_string(), "redis://app:***@127.0.0.1:7001/2");
/// assert!(!format!("{e:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    tls: bool,
    host: String,
    port: u16,
    db: i64,
    username: Option<String>,
    password: Option<String>,
}

impl Endpoint {
    /// Parses an endpoint URL. The error is a human-readable reason.
    pub fn parse(input: &str) -> Result<Endpoint, String> {
        let url = url::Url::parse(input.trim()).map_err(|e| e.to_string())?;
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => {
                return Err(format!(
                    "unsupported scheme `{other}`, expected `redis` or `rediss`"
                ))
            }
        };
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h.to_owned(),
            _ => return Err("no host".to_owned()),
        };
        let port = url.port().unwrap_or(DEFAULT_PORT);
        if port == 0 {
            return Err("port 0 is not a valid Redis port".to_owned());
        }
        let db = match url.path().trim_matches('/') {
            "" => 0,
            p => p
                .parse::<i64>()
                .ok()
                .filter(|d| *d >= 0)
                .ok_or_else(|| format!("database `{p}` is not a non-negative integer"))?,
        };
        if url.query().is_some() || url.fragment().is_some() {
            return Err("query strings and fragments are not supported".to_owned());
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| "user info is not valid UTF-8 after percent-decoding".to_owned())
        };
        let username = match url.username() {
            "" => None,
            u => Some(decode(u)?),
        };
        let password = match url.password() {
            None => None,
            Some(p) => Some(decode(p)?),
        };
        Ok(Endpoint {
            tls,
            host,
            port,
            db,
            username,
            password,
        })
    }

    /// The host name or IP address, as written (IPv6 in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The logical database selected after connecting.
    pub fn db(&self) -> i64 {
        self.db
    }

    /// True for `rediss://` URLs.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The ACL user name, if any.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// True when the URL carries a password (which is never shown).
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// `host:port`, as used in logs, errors and the CLI.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// A short label for logs and errors: `host:port`, plus `/db` when db is not 0.
    pub fn label(&self) -> String {
        if self.db == 0 {
            self.address()
        } else {
            format!("{}:{}/{}", self.host, self.port, self.db)
        }
    }

    /// The identity used to detect an endpoint listed twice: host (case-insensitive), port, db.
    pub(crate) fn identity(&self) -> (String, u16, i64) {
        (self.host.to_ascii_lowercase(), self.port, self.db)
    }

    /// Connection settings for redis-rs (whose `Debug` redacts the password), for code that
    /// talks to an endpoint directly, bypassing shardis.
    pub fn connection_info(&self) -> Result<redis::ConnectionInfo, crate::Error> {
        use redis::IntoConnectionInfo;
        self.secret_url().into_connection_info().map_err(|e| {
            crate::Error::new(
                crate::ErrorKind::Config,
                format!("redis-rs rejected the endpoint: {:?}", e.kind()),
            )
            .with_endpoint(&self.label())
        })
    }

    /// The full URL with the password, for handing to redis-rs only. Never log it.
    pub(crate) fn secret_url(&self) -> String {
        self.render(true)
    }

    fn render(&self, with_password: bool) -> String {
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let mut out = String::from(if self.tls { "rediss://" } else { "redis://" });
        match (&self.username, &self.password) {
            (None, None) => {}
            (user, pass) => {
                if let Some(u) = user {
                    out.push_str(&enc(u));
                }
                if let Some(p) = pass {
                    out.push(':');
                    if with_password {
                        out.push_str(&enc(p));
                    } else {
                        out.push_str("***");
                    }
                }
                out.push('@');
            }
        }
        out.push_str(&format!("{}:{}", self.host, self.port));
        if self.db != 0 {
            out.push_str(&format!("/{}", self.db));
        }
        out
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Endpoint({})", self.render(false))
    }
}

/// Replaces the password of a URL-looking string with `***`, for messages about URLs that did
/// not parse. Anything between `://` and the last `@` of the authority is user info.
pub(crate) fn redact_url(raw: &str) -> String {
    let Some(scheme_end) = raw.find("://") else {
        return raw.to_owned();
    };
    let rest = &raw[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let shown = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            format!("{}://{}@{}", &raw[..scheme_end], shown, &rest[at + 1..])
        }
        None => raw.to_owned(),
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
    /// Validates `specs` into a topology. The first problem found is returned.
    pub fn new(specs: Vec<ShardSpec>) -> Result<Topology, ConfigError> {
        if specs.is_empty() {
            return Err(ConfigError::EmptyTopology);
        }
        let mut names: HashMap<String, ()> = HashMap::with_capacity(specs.len());
        let mut endpoints: HashMap<(String, u16, i64), String> = HashMap::new();
        let mut shards = Vec::with_capacity(specs.len());
        for spec in specs {
            validate_name(&spec.name)?;
            if names.insert(spec.name.clone(), ()).is_some() {
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
    fn parses_full_url() {
        let e = Endpoint::parse("rediss://us%40er:p%3Ass@[::1]:7000/3").unwrap();
        assert!(e.is_tls());
        assert_eq!(e.host(), "[::1]");
        assert_eq!(e.port(), 7000);
        assert_eq!(e.db(), 3);
        assert_eq!(e.username(), Some("us@er"));
        assert!(e.has_password());
        assert_eq!(e.secret_url(), "rediss://us%40er:p%3Ass@[::1]:7000/3");
        assert_eq!(e.to_string(), "rediss://us%40er:***@[::1]:7000/3");
    }

    #[test]
    fn defaults_port_and_db() {
        let e = Endpoint::parse("redis://cache.local").unwrap();
        assert_eq!((e.port(), e.db()), (DEFAULT_PORT, 0));
        assert_eq!(e.label(), "cache.local:6379");
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "http://h:1",
            "redis://",
            "redis://h:1/x",
            "redis://h:1/-1",
            "redis://h:0",
            "h:1",
            "redis://h:1?x=1",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad} should not parse");
        }
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
    fn redact_url_hides_password_only() {
        assert_eq!(redact_url("redis://u:pw@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
        assert_eq!(redact_url("redis://:pw@h"), "redis://:***@h");
        assert_eq!(redact_url("nonsense"), "nonsense");
    }
}
