//! Migration from twemproxy (nutcracker): load one pool of its YAML config as a shardis
//! [`Config`] with `ketama` placement, the same key hash and the same hash tag, so every key
//! stays on the server twemproxy put it on.
//!
//! ```
//! let yaml = r#"
//! alpha:
//!   listen: 127.0.0.1:22121
//!   hash: fnv1a_64
//!   distribution: ketama
//!   redis: true
//!   hash_tag: "{}"
//!   servers:
//!    - 127.0.0.1:6379:1
//!    - 127.0.0.1:6380:1 cache-b
//! "#;
//! let import = shardis::twemproxy::import_str(yaml, None).unwrap();
//! let names: Vec<&str> = import.config.topology().shards().iter().map(|s| s.name().as_str()).collect();
//! assert_eq!(names, ["127.0.0.1:6379", "cache-b"]);
//! ```
//!
//! | twemproxy key | shardis |
//! |---|---|
//! | `servers` (`host:port:weight [name]`) | one shard each: name = the server's name, else `host:port` (`host` alone on port 11211, as twemproxy hashes it); weight kept |
//! | `distribution: ketama` | `algorithm = "ketama"`; `modula` and `random` are rejected (their placement cannot be kept) |
//! | `hash` | ketama's key hash (default `fnv1a_64`) |
//! | `hash_tag` | the hash tag |
//! | `redis: true` | required: a memcached pool is rejected |
//! | `redis_auth` | the password of every endpoint URL |
//! | `redis_db` | the db of every endpoint URL |
//! | `timeout` | connect and response timeouts |
//! | `server_connections` | `connections_per_endpoint` |
//! | `preconnect` | noted: shardis checks every primary when the client starts |
//! | `auto_eject_hosts`, `server_failure_limit`, `server_retry_timeout` | noted: shardis keeps a dead host's keys on it and fails their requests fast rather than remapping them |
//! | `listen`, `backlog`, `client_connections` | noted: proxy settings with no client-side meaning |

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_norway::Value;

use crate::config::{is_word, parser_message, Config};
use crate::error::{quoted, ConfigError, Error, ErrorKind};
use crate::options::Options;
use crate::placement::keyhash::ALL;
use crate::placement::{HashTag, KeyHash, PlacementSpec};
use crate::topology::{ShardSpec, Topology};

/// A twemproxy pool loaded as a shardis config.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Import {
    /// The pool's name.
    pub pool: String,
    /// The equivalent shardis config.
    pub config: Config,
    /// What was mapped approximately or ignored, one sentence each.
    pub notes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "pool")]
struct RawPool {
    listen: Option<String>,
    hash: Option<String>,
    hash_tag: Option<String>,
    distribution: Option<String>,
    timeout: Option<u64>,
    backlog: Option<u64>,
    client_connections: Option<u64>,
    redis: Option<bool>,
    redis_auth: Option<String>,
    redis_db: Option<i64>,
    preconnect: Option<bool>,
    auto_eject_hosts: Option<bool>,
    server_connections: Option<u32>,
    server_retry_timeout: Option<u64>,
    server_failure_limit: Option<u64>,
    servers: Option<Vec<String>>,
}

/// Loads pool `pool` (or the only pool) of a twemproxy YAML config file.
pub fn import(path: impl AsRef<Path>, pool: Option<&str>) -> Result<Import, Error> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot read twemproxy config {}: {e}", path.display()),
        )
    })?;
    Ok(import_str(&text, pool)?)
}

/// Loads pool `pool` (or the only pool) of a twemproxy YAML config.
///
/// Errors never quote the file's values (`redis_auth` is a password): a malformed document
/// gives its line and column, a mistyped key its pool and key, and a bad `servers` line is
/// quoted only up to 80 characters and only if it has no `@`.
pub fn import_str(yaml: &str, pool: Option<&str>) -> Result<Import, ConfigError> {
    let mut pools = parse_pools(yaml)?;
    let name = match pool {
        Some(p) => p.to_owned(),
        None if pools.len() == 1 => pools.keys().next().cloned().unwrap_or_default(),
        None if pools.is_empty() => return Err(parse("it has no pool".into())),
        None => {
            return Err(parse(format!(
                "it has {} pools ({}); choose one with --pool",
                pools.len(),
                list_names(pools.keys())
            )))
        }
    };
    let raw = pools.remove(&name).ok_or_else(|| {
        parse(format!(
            "no pool {} (pools: {})",
            quoted(&name),
            list_names(pools.keys())
        ))
    })?;
    let bad = |field: &str, reason: String| ConfigError::InvalidValue {
        field: format!("{name}.{field}"),
        reason,
    };
    let mut notes = Vec::new();

    match raw.distribution.as_deref().unwrap_or("ketama") {
        "ketama" => {}
        other => {
            return Err(bad(
                "distribution",
                format!(
                    "{} is not supported: only ketama placement can be reproduced",
                    shown_name(other)
                ),
            ))
        }
    }
    if raw.redis != Some(true) {
        return Err(bad(
            "redis",
            "the pool is a memcached pool (`redis: true` is missing); shardis speaks Redis".into(),
        ));
    }
    let hash: KeyHash = match &raw.hash {
        Some(h) => h.parse().map_err(|_: String| {
            let names: Vec<&str> = ALL.iter().map(|(_, n)| *n).collect();
            bad(
                "hash",
                format!(
                    "unknown hash {}; expected one of {}",
                    shown_name(h),
                    names.join(", ")
                ),
            )
        })?,
        None => KeyHash::Fnv1a64,
    };
    let hash_tag = match &raw.hash_tag {
        Some(t) => Some(HashTag::parse(t).map_err(|e| match e {
            ConfigError::InvalidValue { reason, .. } => bad("hash_tag", reason),
            other => other,
        })?),
        None => None,
    };
    let db = raw.redis_db.unwrap_or(0);
    if db < 0 {
        return Err(bad("redis_db", format!("{db} is negative")));
    }

    let mut options = Options {
        placement: PlacementSpec::Ketama { hash },
        hash_tag,
        ..Options::default()
    };
    if let Some(ms) = raw.timeout {
        if ms == 0 {
            return Err(bad("timeout", "must be at least 1 ms".into()));
        }
        options.pool.connect_timeout = Duration::from_millis(ms);
        options.pool.response_timeout = Duration::from_millis(ms);
    } else {
        notes.push(format!(
            "timeout: twemproxy waits forever by default; shardis uses {} ms connect and response timeouts",
            options.pool.response_timeout.as_millis()
        ));
    }
    if let Some(n) = raw.server_connections {
        options.pool.connections_per_endpoint = n;
        options.pool.validate()?;
    }
    if raw.preconnect.is_some() {
        notes.push("preconnect: shardis connects to every primary when the client starts".into());
    }
    if raw.auto_eject_hosts == Some(true)
        || raw.server_failure_limit.is_some()
        || raw.server_retry_timeout.is_some()
    {
        notes.push(
            "auto_eject_hosts, server_failure_limit, server_retry_timeout: not applied; shardis \
             never remaps a dead host's keys to other hosts, their requests fail fast instead"
                .into(),
        );
    }
    for (key, set) in [
        ("listen", raw.listen.is_some()),
        ("backlog", raw.backlog.is_some()),
        ("client_connections", raw.client_connections.is_some()),
    ] {
        if set {
            notes.push(format!(
                "{key}: a proxy setting with no meaning for a client; ignored"
            ));
        }
    }

    let servers = raw.servers.unwrap_or_default();
    let mut specs = Vec::with_capacity(servers.len());
    for line in &servers {
        specs.push(
            server(line, raw.redis_auth.as_deref(), db)
                .map_err(|reason| bad("servers", format!("{}: {reason}", server_line(line))))?,
        );
    }
    let topology = Topology::new(specs)?;
    // Fail now, not when a client starts, if ketama cannot take these names.
    crate::placement::Locator::new(&topology, &options.placement, options.hash_tag)?;
    Ok(Import {
        pool: name,
        config: Config::new(topology, options),
        notes,
    })
}

fn parse(message: String) -> ConfigError {
    ConfigError::Parse(format!("twemproxy config: {message}"))
}

/// The pools of a twemproxy YAML document, each checked against the keys twemproxy knows.
fn parse_pools(yaml: &str) -> Result<BTreeMap<String, RawPool>, ConfigError> {
    serde_norway::from_str(yaml).map_err(|e| yaml_error(yaml, &e))
}

/// Every key of a [`RawPool`], as twemproxy names them.
const POOL_KEYS: [&str; 16] = [
    "listen",
    "hash",
    "hash_tag",
    "distribution",
    "timeout",
    "backlog",
    "client_connections",
    "redis",
    "redis_auth",
    "redis_db",
    "preconnect",
    "auto_eject_hosts",
    "server_connections",
    "server_retry_timeout",
    "server_failure_limit",
    "servers",
];

/// The phrases serde and `serde_norway` open a message about a value with.
const MESSAGE_STARTS: [&str; 9] = [
    "invalid type",
    "invalid value",
    "invalid length",
    "unknown field",
    "unknown variant",
    "missing field",
    "duplicate field",
    "duplicate entry",
    "EOF while parsing",
];

/// A YAML error as a [`ConfigError::Parse`] that quotes nothing of the document.
///
/// `serde_norway` opens a message about a value with the path of mapping keys to it, unquoted
/// (`pool.servers[2]: invalid type: …`): the path is rebuilt here from the pool names of the
/// document and the keys of [`RawPool`], or dropped; the rest goes through
/// [`parser_message`]. A key given twice in one mapping gets our own words, since that
/// message quotes the key.
fn yaml_error(yaml: &str, e: &serde_norway::Error) -> ConfigError {
    let shown = e.to_string();
    let place = e.location().map(|l| (l.line(), l.column()));
    let suffix = place.map(|(line, column)| format!(" at line {line} column {column}"));
    let (prefix, body) = match (place, suffix.as_deref().and_then(|s| shown.strip_suffix(s))) {
        (Some((line, column)), Some(body)) => (format!("line {line}, column {column}: "), body),
        // A syntax error carries its own places; with no place, there is none to give.
        _ => (String::new(), shown.as_str()),
    };
    if body.contains("duplicate entry") {
        return parse(format!("{prefix}a mapping has the same key twice"));
    }
    let (context, message) = split_path(body, &pool_names(yaml));
    parse(format!("{prefix}{context}{}", parser_message(message)))
}

/// The top-level string keys of `yaml`, longest first; none if it is not a YAML mapping.
fn pool_names(yaml: &str) -> Vec<String> {
    let mut names: Vec<String> = match serde_norway::from_str::<Value>(yaml) {
        Ok(Value::Mapping(map)) => map
            .keys()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    names
}

/// Splits a `serde_norway` message into the place it names (`pool `p`, key `servers[2]`: `),
/// rebuilt from known names only, and the message after the path.
fn split_path<'m>(body: &'m str, pools: &[String]) -> (String, &'m str) {
    for pool in pools {
        let Some(after) = body.strip_prefix(pool.as_str()) else {
            continue;
        };
        if let Some(message) = after.strip_prefix(": ") {
            return (format!("pool {}: ", shown_name(pool)), message);
        }
        let Some(rest) = after.strip_prefix('.') else {
            continue;
        };
        for key in POOL_KEYS {
            let Some(rest) = rest.strip_prefix(key) else {
                continue;
            };
            let digits = rest
                .strip_prefix('[')
                .map(|r| r.bytes().take_while(u8::is_ascii_digit).count());
            let (index, rest) = match digits {
                Some(n) if n > 0 && rest[n + 1..].starts_with(']') => rest.split_at(n + 2),
                _ => ("", rest),
            };
            if let Some(message) = rest.strip_prefix(": ") {
                let place = format!("pool {}, key `{key}{index}`: ", shown_name(pool));
                return (place, message);
            }
        }
    }
    // An unknown path is dropped: the message starts at the first phrase serde opens with.
    match MESSAGE_STARTS.iter().filter_map(|p| body.find(p)).min() {
        Some(i) => (String::new(), &body[i..]),
        // No path is followed by anything but `: `; a message without one has no path.
        None if !body.contains(": ") => (String::new(), body),
        None => (
            String::new(),
            "the document does not have twemproxy's shape",
        ),
    }
}

/// A pool name, key or value as a message shows it: in backticks if it is a word, else
/// described by its length.
fn shown_name(name: &str) -> String {
    if is_word(name) {
        format!("`{name}`")
    } else {
        format!("({} characters, not shown)", name.chars().count())
    }
}

/// At most five names, each as [`shown_name`] shows it, then how many more.
fn list_names<'a>(names: impl ExactSizeIterator<Item = &'a String>) -> String {
    let total = names.len();
    let mut out: Vec<String> = names.take(5).map(|n| shown_name(n)).collect();
    if total > out.len() {
        out.push(format!("and {} more", total - out.len()));
    }
    out.join(", ")
}

/// A `servers` line for an error: quoted and bounded, unless it has an `@`, which no server
/// line needs and a misplaced password would.
fn server_line(line: &str) -> String {
    if line.contains('@') {
        format!(
            "a line of {} characters (not shown: it has an `@`)",
            line.chars().count()
        )
    } else {
        quoted(line).to_string()
    }
}

/// One `servers` line, `host:port:weight [name]`, parsed from the end as twemproxy does.
fn server(line: &str, auth: Option<&str>, db: i64) -> Result<ShardSpec, String> {
    let line = line.trim();
    if line.starts_with('/') {
        return Err("unix socket servers are not supported".into());
    }
    let (address, name) = match line.rsplit_once(' ') {
        Some((a, n)) if !n.is_empty() => (a.trim_end(), Some(n)),
        _ => (line, None),
    };
    let (host_port, weight) = address
        .rsplit_once(':')
        .ok_or("expected host:port:weight")?;
    let (host, port) = host_port
        .rsplit_once(':')
        .ok_or("expected host:port:weight")?;
    let weight: u32 = weight
        .parse()
        .map_err(|_| "the weight is not a positive integer".to_owned())?;
    let port_num: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| "the port is not a valid port".to_owned())?;
    if host.is_empty() {
        return Err("no host".into());
    }
    let identity = match name {
        Some(n) => n.to_owned(),
        // twemproxy hashes an unnamed server as it is written, without the port on 11211.
        None if port_num == 11211 => host.to_owned(),
        None => host_port.to_owned(),
    };
    let url_host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let userinfo = match auth {
        Some(a) => format!(
            ":{}@",
            percent_encoding::utf8_percent_encode(a, percent_encoding::NON_ALPHANUMERIC)
        ),
        None => String::new(),
    };
    let url = format!("redis://{userinfo}{url_host}:{port_num}/{db}");
    Ok(ShardSpec::new(identity, url).weight(weight))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "p:\n  redis: true\n  servers:\n";

    #[test]
    fn maps_every_setting() {
        let i = import_str(
            "p:\n  listen: 0.0.0.0:22121\n  hash: murmur\n  hash_tag: \"::\"\n  distribution: ketama\n  \
             timeout: 250\n  redis: true\n  redis_auth: s3cr:t\n  redis_db: 2\n  server_connections: 3\n  \
             auto_eject_hosts: true\n  server_retry_timeout: 2000\n  server_failure_limit: 1\n  servers:\n   \
             - 10.0.0.1:6379:1\n   - 10.0.0.2:6380:2 big\n   - 10.0.0.3:11211:1\n",
            None,
        )
        .unwrap();
        let o = i.config.options();
        assert_eq!(
            o.placement,
            PlacementSpec::Ketama {
                hash: KeyHash::Murmur
            }
        );
        assert_eq!(o.hash_tag, Some(HashTag::parse("::").unwrap()));
        assert_eq!(o.pool.response_timeout, Duration::from_millis(250));
        assert_eq!(o.pool.connections_per_endpoint, 3);
        let shards = i.config.topology().shards();
        let names: Vec<&str> = shards.iter().map(|s| s.name().as_str()).collect();
        assert_eq!(names, ["10.0.0.1:6379", "big", "10.0.0.3"]);
        assert_eq!(shards[1].weight(), 2);
        assert_eq!(shards[1].primary().unwrap().db(), 2);
        assert!(shards[1].primary().unwrap().has_password());
        assert_eq!(i.notes.len(), 2, "{:?}", i.notes);
        assert!(!format!("{:?}", i.config).contains("s3cr"));
    }

    #[test]
    fn rejects_what_cannot_be_kept() {
        for (yaml, field) in [
            (
                "p:\n  redis: true\n  distribution: modula\n  servers:\n   - h:1:1\n",
                "p.distribution",
            ),
            ("p:\n  servers:\n   - h:1:1\n", "p.redis"),
            (
                "p:\n  redis: true\n  hash: sha1\n  servers:\n   - h:1:1\n",
                "p.hash",
            ),
            (&format!("{BASE}   - h:1\n"), "p.servers"),
            (&format!("{BASE}   - /tmp/redis.sock:1\n"), "p.servers"),
        ] {
            match import_str(yaml, None) {
                Err(ConfigError::InvalidValue { field: f, .. }) => assert_eq!(f, field, "{yaml}"),
                other => panic!("{yaml}: {other:?}"),
            }
        }
        assert!(matches!(
            import_str("p:\n  redis: true\n  colour: blue\n", None),
            Err(ConfigError::Parse(_))
        ));
        assert!(matches!(
            import_str("a:\n  redis: true\nb:\n  redis: true\n", None),
            Err(ConfigError::Parse(_))
        ));
        assert_eq!(
            import_str(&format!("{BASE}   - h:1:0\n"), None).unwrap_err(),
            ConfigError::ZeroWeight {
                shard: "h:1".into()
            }
        );
        assert_eq!(
            import_str(&format!("{BASE}   - h:1:1 x\n   - h:2:1 x\n"), None).unwrap_err(),
            ConfigError::DuplicateShardName("x".into())
        );
    }

    #[test]
    fn picks_a_pool_by_name() {
        let yaml = "a:\n  redis: true\n  servers:\n   - h:1:1\nb:\n  redis: true\n  servers:\n   - h:2:1\n";
        assert_eq!(import_str(yaml, Some("b")).unwrap().pool, "b");
        assert!(import_str(yaml, Some("c")).is_err());
    }
}
