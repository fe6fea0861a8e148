//! The TOML config file and the options it sets.
//!
//! ```toml
//! [placement]
//! algorithm = "rendezvous_table"  # optional, the default; or ring, ketama, jump, rendezvous, maglev
//! arc_bits = 21               # rendezvous_table only: 2^arc_bits arcs
//! # vnodes = 160              # ring only: points per unit of weight
//! # hash = "fnv1a_64"         # ketama only: a twemproxy key hash
//! # table_size = 65537        # maglev only: a prime
//! hash_tag = "{}"             # optional: only the part inside the first {...} is hashed
//!
//! [pool]
//! connections_per_endpoint = 1
//! connect_timeout_ms = 500
//! response_timeout_ms = 500
//! coalesce_reads = true      # merge concurrent reads per endpoint into one MGET
//! # hedge_after_ms = 5       # or "adaptive"; absent: no hedged reads
//!
//! [limits]
//! max_key_bytes = 536870912   # optional
//!
//! [health]
//! interval_ms = 250
//! probe_timeout_ms = 100
//! failure_threshold = 2
//! recovery_probes = 2
//!
//! [routing]
//! read_from = "primary"           # or prefer_replica, primary_then_replica
//! on_primary_down = "fail_fast"   # or eject, promote_replica
//! flush_on_rejoin = false         # eject only
//!
//! [tls]                           # for rediss:// endpoints
//! ca_file = "/etc/shardis/ca.pem"            # trust roots; system roots when absent
//! client_cert_file = "/etc/shardis/client.pem"   # optional, for mutual TLS
//! client_key_file = "/etc/shardis/client.key"
//! insecure_skip_verify = false    # loud warning when true
//!
//! [defaults]                      # for every shard that sets neither itself
//! password_env = "SHARDIS_PASSWORD"   # or password_file = "/run/secrets/redis"
//! [resharding]
//! warm = false                    # after a topology change, read a moved key's previous owner on a miss
//! warm_window_s = 600             # how long the previous owner is consulted
//!
//! [[shards]]
//! name = "cache-a"
//! primary = "redis://127.0.0.1:7001"   # or redis://user@host:port with an ACL user
//! replicas = ["redis://127.0.0.1:7101"]
//! weight = 1
//! # password_env / password_file: this shard's password, read at start and on every reload
//! # allow_mixed_tls = false       # true lets rediss:// and redis:// endpoints share a shard
//!
//! [[shards]]                      # Sentinel-managed (feature `sentinel`): no primary/replicas
//! name = "cache-b"
//! sentinel = { master = "cache-b", addrs = ["redis://127.0.0.1:26379", "redis://127.0.0.1:26380"] }
//! # inside the braces, optional: refresh_ms = 5000, password_env / password_file (the
//! # sentinels' password), username (the ACL user of the data endpoints)
//! ```
//!
//! Unknown keys anywhere are an error, so a typo never silently falls back to a default.
//!
//! A rejected file's error ([`ConfigError::Parse`]) gives the line, column and key path and
//! the parser's reason, never the source line: the TOML parser's own message quotes the line,
//! and a line may hold a password.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{ConfigError, Error, ErrorKind, QUOTE_LIMIT};
use crate::options::{
    HealthOptions, HedgeAfter, OnPrimaryDown, Options, PoolOptions, ReadFrom, ReshardingOptions,
    RoutingOptions,
};
use crate::placement::{Algorithm, HashTag, KeyHash, PlacementSpec};
use crate::tls::TlsOptions;
use crate::topology::{ShardSpec, Topology};

/// A parsed and validated config file: the topology and the options.
///
/// ```
/// let config = shardis::Config::from_toml_str(r#"
///     [placement]
///     hash_tag = "{}"
///     [[shards]]
///     name = "cache-a"
///     primary = "redis://127.0.0.1:7001"
/// "#).unwrap();
/// assert_eq!(config.topology().shards()[0].name(), "cache-a");
///
/// let err = shardis::Config::from_toml_str("[pool]\nconections_per_endpoint = 2").unwrap_err();
/// assert!(err.to_string().contains("conections_per_endpoint"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    topology: Topology,
    options: Options,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    placement: RawPlacement,
    #[serde(default)]
    pool: RawPool,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    health: RawHealth,
    #[serde(default)]
    routing: RawRouting,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    resharding: RawResharding,
    #[serde(default)]
    shards: Vec<ShardSpec>,
}

/// `[defaults]`: shard settings for every shard that sets none of its own.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    password_env: Option<String>,
    password_file: Option<std::path::PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: Option<std::path::PathBuf>,
    client_cert_file: Option<std::path::PathBuf>,
    client_key_file: Option<std::path::PathBuf>,
    insecure_skip_verify: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawResharding {
    warm: Option<bool>,
    warm_window_s: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    interval_ms: Option<u64>,
    probe_timeout_ms: Option<u64>,
    failure_threshold: Option<u32>,
    recovery_probes: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRouting {
    read_from: Option<ReadFrom>,
    on_primary_down: Option<OnPrimaryDown>,
    flush_on_rejoin: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPlacement {
    algorithm: Option<Algorithm>,
    hash_tag: Option<String>,
    vnodes: Option<u32>,
    hash: Option<KeyHash>,
    table_size: Option<u32>,
    arc_bits: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPool {
    connections_per_endpoint: Option<u32>,
    connect_timeout_ms: Option<u64>,
    response_timeout_ms: Option<u64>,
    coalesce_reads: Option<bool>,
    hedge_after_ms: Option<RawHedge>,
}

/// `hedge_after_ms`: a number of milliseconds, `"adaptive"` or `"off"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawHedge {
    Millis(u64),
    Word(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_key_bytes: Option<usize>,
}

impl Config {
    /// Parses and validates a config from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        let defaults = &raw.defaults;
        if defaults.password_env.is_some() || defaults.password_file.is_some() {
            for spec in &mut raw.shards {
                if spec.password_env.is_none() && spec.password_file.is_none() {
                    spec.password_env = defaults.password_env.clone();
                    spec.password_file = defaults.password_file.clone();
                    spec.password_from_defaults = true;
                }
            }
        }
        let options = Options {
            placement: placement_spec(&raw.placement)?,
            hash_tag: raw
                .placement
                .hash_tag
                .as_deref()
                .map(HashTag::parse)
                .transpose()?,
            pool: pool_options(&raw.pool)?,
            health: health_options(&raw.health),
            routing: RoutingOptions {
                read_from: raw.routing.read_from.unwrap_or_default(),
                on_primary_down: raw.routing.on_primary_down.unwrap_or_default(),
                flush_on_rejoin: raw.routing.flush_on_rejoin.unwrap_or(false),
            },
            custom_placement: None,
            max_key_bytes: raw
                .limits
                .max_key_bytes
                .unwrap_or(Options::DEFAULT_MAX_KEY_BYTES),
            tls: TlsOptions {
                ca_file: raw.tls.ca_file,
                client_cert_file: raw.tls.client_cert_file,
                client_key_file: raw.tls.client_key_file,
                insecure_skip_verify: raw.tls.insecure_skip_verify.unwrap_or(false),
            },
            resharding: ReshardingOptions {
                warm: raw.resharding.warm.unwrap_or(false),
                warm_window: raw.resharding.warm_window_s.map_or(
                    ReshardingOptions::DEFAULT_WARM_WINDOW,
                    // Saturating: an absurd value is rejected by `validate`, not wrapped.
                    |s| Duration::from_millis(s.saturating_mul(1000)),
                ),
            },
        };
        options.validate()?;
        let topology = Topology::new(raw.shards)?;
        Ok(Config { topology, options })
    }

    /// Reads, parses and validates a config file (blocking; from async code use
    /// [`Config::load`]).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| read_error(path, e))?;
        Ok(Config::from_toml_str(&text)?)
    }

    /// Reads, parses and validates a config file without blocking the async runtime.
    pub async fn load(path: impl AsRef<Path>) -> Result<Config, Error> {
        let path = path.as_ref();
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| read_error(path, e))?;
        Ok(Config::from_toml_str(&text)?)
    }

    /// Assembles a config from parts already validated.
    pub fn new(topology: Topology, options: Options) -> Config {
        Config { topology, options }
    }

    /// The shards.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Placement, pool and limit options.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Splits the config into its parts.
    pub fn into_parts(self) -> (Topology, Options) {
        (self.topology, self.options)
    }
}

/// The files a config file's client depends on besides itself: every `password_file` (of a
/// shard or of `[defaults]`) and every `[tls]` file. The config watcher reloads when one of
/// them changes, so a rotated password or certificate is picked up. A text that does not
/// parse names none (its reload is rejected anyway).
pub(crate) fn watched_files(text: &str) -> Vec<std::path::PathBuf> {
    let Ok(raw) = toml::from_str::<RawConfig>(text) else {
        return Vec::new();
    };
    let mut files: Vec<std::path::PathBuf> = raw
        .shards
        .into_iter()
        .flat_map(|s| {
            // A Sentinel shard's sentinels have a password of their own.
            #[cfg(feature = "sentinel")]
            let sentinel = s.sentinel.and_then(|t| t.password_file);
            #[cfg(not(feature = "sentinel"))]
            let sentinel = None;
            s.password_file.into_iter().chain(sentinel)
        })
        .chain(raw.defaults.password_file)
        .chain(raw.tls.ca_file)
        .chain(raw.tls.client_cert_file)
        .chain(raw.tls.client_key_file)
        .collect();
    files.sort();
    files.dedup();
    files
}

fn read_error(path: &Path, e: std::io::Error) -> Error {
    Error::new(
        ErrorKind::Io,
        format!("cannot read config file {}: {e}", path.display()),
    )
    .with_source(e)
}

/// A TOML error as a [`ConfigError::Parse`] that quotes nothing of `text`: `line L, column C
/// (`key.path`): reason`, the reason passed through [`parser_message`].
fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let mut out = String::new();
    if let Some(span) = e.span() {
        let (line, column) = line_column(text, span.start);
        out.push_str(&format!("line {line}, column {column}"));
    }
    if let Some(keys) = toml_key_path(e).filter(|k| is_word(k)) {
        out.push_str(&format!(" (`{keys}`)"));
    }
    if !out.is_empty() {
        out.push_str(": ");
    }
    out.push_str(&parser_message(e.message()));
    ConfigError::Parse(out)
}

/// The dotted key path a TOML error concerns, when the parser recorded one. `toml` shows it
/// only in its `Display`, and only when it has no source to quote.
fn toml_key_path(e: &toml::de::Error) -> Option<String> {
    let mut bare = e.clone();
    bare.set_input(None);
    let shown = bare.to_string();
    let rest = shown.strip_prefix(e.message())?.trim();
    let keys = rest.strip_prefix("in `")?.strip_suffix('`')?;
    (!keys.is_empty()).then(|| keys.to_owned())
}

/// The 1-based line and column (in characters) of byte offset `at` of `text`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.bytes().filter(|b| *b == b'\n').count() + 1;
    (line, before[line_start..].chars().count() + 1)
}

/// A parser's message (TOML's, YAML's, serde's) made safe to show: every quoted piece of it
/// (`` `…` `` or `"…"`, where parsers put text from the input) is kept only when it is a word
/// (see [`is_word`]) in closed backticks, or one or two punctuation characters (an expected token
/// such as `` `=` ``); anything else, and every double-quoted string (a value from the
/// file), becomes `(not shown)`. Control characters are escaped.
///
/// The unquoted rest of a parser's message is its own fixed wording.
pub(crate) fn parser_message(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(512));
    let mut rest = msg;
    while let Some(i) = rest.find(['`', '"']) {
        push_escaped(&mut out, &rest[..i]);
        let delim = if rest[i..].starts_with('`') { '`' } else { '"' };
        let after = &rest[i + 1..];
        let (inner, next, closed) = match closing(after, delim) {
            Some(j) => (&after[..j], &after[j + 1..], true),
            None => (after, "", false),
        };
        let token = !inner.is_empty()
            && inner.chars().count() <= 2
            && inner.chars().all(|c| c.is_ascii_punctuation() && c != '@');
        if closed && delim == '`' && (is_word(inner) || token) {
            out.push('`');
            out.push_str(inner);
            out.push('`');
        } else {
            out.push_str("(not shown)");
        }
        rest = next;
    }
    push_escaped(&mut out, rest);
    out
}

/// The byte offset of the delimiter closing a piece opened by `delim` (a `"` preceded by a
/// backslash escape does not close).
fn closing(s: &str, delim: char) -> Option<usize> {
    if delim == '`' {
        return s.find('`');
    }
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
}

/// True for text shown as it is in a message: 1 to [`QUOTE_LIMIT`] ASCII letters, digits,
/// `_`, `-`, `.` or `+`, like a key, a variant or a number. A URL, a password with any other
/// character, or a long string is never a word.
pub(crate) fn is_word(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= QUOTE_LIMIT
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'))
}

fn placement_spec(raw: &RawPlacement) -> Result<PlacementSpec, ConfigError> {
    let algorithm = raw.algorithm.unwrap_or_default();
    // A parameter of another algorithm is a mistake, not something to ignore.
    for (field, given, owner) in [
        ("vnodes", raw.vnodes.is_some(), Algorithm::Ring),
        ("hash", raw.hash.is_some(), Algorithm::Ketama),
        ("table_size", raw.table_size.is_some(), Algorithm::Maglev),
        (
            "arc_bits",
            raw.arc_bits.is_some(),
            Algorithm::RendezvousTable,
        ),
    ] {
        if given && algorithm != owner {
            return Err(ConfigError::InvalidValue {
                field: format!("placement.{field}"),
                reason: format!("applies to algorithm = \"{owner}\", not \"{algorithm}\""),
            });
        }
    }
    Ok(match algorithm.default_spec() {
        PlacementSpec::Ring { vnodes } => PlacementSpec::Ring {
            vnodes: raw.vnodes.unwrap_or(vnodes),
        },
        PlacementSpec::RendezvousTable { arc_bits } => PlacementSpec::RendezvousTable {
            arc_bits: raw.arc_bits.unwrap_or(arc_bits),
        },
        PlacementSpec::Ketama { hash } => PlacementSpec::Ketama {
            hash: raw.hash.unwrap_or(hash),
        },
        PlacementSpec::Maglev { table_size } => PlacementSpec::Maglev {
            table_size: raw.table_size.unwrap_or(table_size),
        },
        other => other,
    })
}

fn health_options(raw: &RawHealth) -> HealthOptions {
    let d = HealthOptions::default();
    HealthOptions {
        interval: raw
            .interval_ms
            .map(Duration::from_millis)
            .unwrap_or(d.interval),
        probe_timeout: raw
            .probe_timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(d.probe_timeout),
        failure_threshold: raw.failure_threshold.unwrap_or(d.failure_threshold),
        recovery_probes: raw.recovery_probes.unwrap_or(d.recovery_probes),
    }
}

fn pool_options(raw: &RawPool) -> Result<PoolOptions, ConfigError> {
    let d = PoolOptions::default();
    let hedge_after = match &raw.hedge_after_ms {
        None => d.hedge_after,
        Some(RawHedge::Millis(ms)) => HedgeAfter::from(*ms),
        Some(RawHedge::Word(w)) if w == "adaptive" => HedgeAfter::Adaptive,
        Some(RawHedge::Word(w)) if w == "off" => HedgeAfter::Off,
        Some(RawHedge::Word(w)) => {
            return Err(ConfigError::InvalidValue {
                field: "pool.hedge_after_ms".into(),
                reason: format!(
                    "{} is neither a number of milliseconds nor \"adaptive\" or \"off\"",
                    crate::error::quoted(w)
                ),
            })
        }
    };
    Ok(PoolOptions {
        connections_per_endpoint: raw
            .connections_per_endpoint
            .unwrap_or(d.connections_per_endpoint),
        connect_timeout: raw
            .connect_timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(d.connect_timeout),
        response_timeout: raw
            .response_timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(d.response_timeout),
        coalesce_reads: raw.coalesce_reads.unwrap_or(d.coalesce_reads),
        hedge_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHARD: &str = "[[shards]]\nname = \"a\"\nprimary = \"redis://127.0.0.1:7001\"\n";

    #[test]
    fn full_example_parses() {
        let c = Config::from_toml_str(
            r#"
            [placement]
            algorithm = "ring"
            hash_tag = "{}"
            vnodes = 40
            [pool]
            connections_per_endpoint = 3
            connect_timeout_ms = 250
            response_timeout_ms = 750
            [limits]
            max_key_bytes = 1024
            [health]
            interval_ms = 50
            probe_timeout_ms = 20
            failure_threshold = 3
            recovery_probes = 4
            [routing]
            read_from = "primary_then_replica"
            on_primary_down = "eject"
            flush_on_rejoin = true
            [[shards]]
            name = "cache-a"
            primary = "redis://127.0.0.1:7001"
            replicas = ["redis://127.0.0.1:7101"]
            weight = 2
            "#,
        )
        .unwrap();
        let o = c.options();
        assert_eq!(o.placement, PlacementSpec::Ring { vnodes: 40 });
        assert_eq!(o.hash_tag, Some(HashTag::parse("{}").unwrap()));
        assert_eq!(o.pool.connections_per_endpoint, 3);
        assert_eq!(o.pool.connect_timeout, Duration::from_millis(250));
        assert_eq!(o.pool.response_timeout, Duration::from_millis(750));
        assert_eq!(o.max_key_bytes, 1024);
        assert_eq!(o.health.interval, Duration::from_millis(50));
        assert_eq!(o.health.probe_timeout, Duration::from_millis(20));
        assert_eq!(
            (o.health.failure_threshold, o.health.recovery_probes),
            (3, 4)
        );
        assert_eq!(o.routing.read_from, ReadFrom::PrimaryThenReplica);
        assert_eq!(o.routing.on_primary_down, OnPrimaryDown::Eject);
        assert!(o.routing.flush_on_rejoin);
        let s = &c.topology().shards()[0];
        assert_eq!((s.weight(), s.replicas().len()), (2, 1));
    }

    #[test]
    fn coalescing_and_hedging_parse_and_are_checked() {
        let parse = |pool: &str, routing: &str| {
            Config::from_toml_str(&format!("[pool]\n{pool}\n[routing]\n{routing}\n{SHARD}"))
        };
        let replicas = "read_from = \"primary_then_replica\"";
        let o = parse("", "").unwrap();
        assert_eq!(
            o.options().pool.coalesce_reads,
            PoolOptions::DEFAULT_COALESCE_READS
        );
        assert_eq!(o.options().pool.hedge_after, HedgeAfter::Off);
        let o = parse("coalesce_reads = false\nhedge_after_ms = 5", replicas).unwrap();
        assert!(!o.options().pool.coalesce_reads);
        assert_eq!(
            o.options().pool.hedge_after,
            HedgeAfter::Fixed(Duration::from_millis(5))
        );
        let o = parse("hedge_after_ms = \"adaptive\"", replicas).unwrap();
        assert_eq!(o.options().pool.hedge_after, HedgeAfter::Adaptive);
        let o = parse("hedge_after_ms = \"off\"", "").unwrap();
        assert_eq!(o.options().pool.hedge_after, HedgeAfter::Off);
        for (pool, routing) in [
            ("hedge_after_ms = \"soon\"", replicas),
            ("hedge_after_ms = 0", replicas),
            ("hedge_after_ms = 500", replicas),
            ("hedge_after_ms = 5", ""),
            ("hedge_after_ms = \"adaptive\"", "read_from = \"primary\""),
        ] {
            let e = parse(pool, routing).unwrap_err();
            assert!(e.to_string().contains("pool.hedge_after_ms"), "{pool}: {e}");
        }
    }

    #[test]
    fn every_algorithm_parses_with_its_parameters() {
        for (text, want) in [
            (
                "algorithm = \"rendezvous_table\"\narc_bits = 16",
                PlacementSpec::RendezvousTable { arc_bits: 16 },
            ),
            (
                "algorithm = \"ring\"\nvnodes = 100",
                PlacementSpec::Ring { vnodes: 100 },
            ),
            (
                "algorithm = \"ketama\"\nhash = \"murmur\"",
                PlacementSpec::Ketama {
                    hash: KeyHash::Murmur,
                },
            ),
            (
                "algorithm = \"ketama\"",
                PlacementSpec::Ketama {
                    hash: KeyHash::Fnv1a64,
                },
            ),
            ("algorithm = \"jump\"", PlacementSpec::Jump),
            ("algorithm = \"rendezvous\"", PlacementSpec::Rendezvous),
            (
                "algorithm = \"maglev\"\ntable_size = 131071",
                PlacementSpec::Maglev {
                    table_size: 131_071,
                },
            ),
        ] {
            let c = Config::from_toml_str(&format!("[placement]\n{text}\n{SHARD}")).unwrap();
            assert_eq!(c.options().placement, want, "{text}");
        }
    }

    #[test]
    fn defaults_apply() {
        let c = Config::from_toml_str(SHARD).unwrap();
        assert_eq!(c.options(), &Options::default());
    }

    #[test]
    fn unknown_keys_are_errors() {
        for text in [
            format!("[pool]\nconnections = 2\n{SHARD}"),
            format!("[placement]\nhashtag = \"{{}}\"\n{SHARD}"),
            format!("{SHARD}wieght = 2\n"),
            format!("[pools]\n{SHARD}"),
            format!("[routing]\nread_from = \"replica\"\n{SHARD}"),
            format!("[routing]\non_primary_down = \"panic\"\n{SHARD}"),
            format!("[health]\ninterval = 5\n{SHARD}"),
            format!("[placement]\nalgorithm = \"magic\"\n{SHARD}"),
            format!("[placement]\nalgorithm = \"ketama\"\nhash = \"sha1\"\n{SHARD}"),
        ] {
            assert!(
                matches!(Config::from_toml_str(&text), Err(ConfigError::Parse(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_values_are_errors() {
        for (text, field) in [
            (
                format!("[pool]\nconnections_per_endpoint = 0\n{SHARD}"),
                "pool.connections_per_endpoint",
            ),
            (
                format!("[pool]\nconnect_timeout_ms = 0\n{SHARD}"),
                "pool.connect_timeout_ms",
            ),
            (
                format!("[pool]\nresponse_timeout_ms = 0\n{SHARD}"),
                "pool.response_timeout_ms",
            ),
            (
                format!("[placement]\nhash_tag = \"{{\"\n{SHARD}"),
                "placement.hash_tag",
            ),
            (
                format!("[placement]\nvnodes = 0\n{SHARD}"),
                "placement.vnodes",
            ),
            (
                format!("[limits]\nmax_key_bytes = 0\n{SHARD}"),
                "limits.max_key_bytes",
            ),
        ] {
            let err = Config::from_toml_str(&text).unwrap_err();
            match err {
                ConfigError::InvalidValue { field: f, .. } => assert_eq!(f, field),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn parse_errors_name_the_place_and_never_quote_the_source() {
        let pw = "Sup3r/Secr@t:pw";
        for (text, want) in [
            (
                format!("{SHARD}replicas = \"redis://:{pw}@h:1\"\n"),
                "line 4, column 12 (`shards.replicas`): invalid type: string (not shown), \
                 expected a sequence",
            ),
            (
                format!("{SHARD}weight = \"redis://:{pw}@h:1\"\n"),
                "line 4, column 10 (`shards.weight`): invalid type: string (not shown), \
                 expected u32",
            ),
            (
                format!("{SHARD}\"redis://:{pw}@h:1\" = 1\n"),
                "line 4, column 1 (`shards`): unknown field (not shown), expected one of \
                 `name`, `primary`, `replicas`, `weight`",
            ),
            (
                format!("[[shards]]\nname = \"a\"\nprimary = redis://:{pw}@h:1\n"),
                "line 3, column 11: string values must be quoted, expected literal string",
            ),
            (
                format!("[[shards]]\nname = \"a\"\nprimary = \"redis://:{pw}@h:1\n"),
                "line 3, column 40: invalid basic string, expected `\"`",
            ),
            (
                format!("[placement]\nalgorithm = \"{pw}\"\n{SHARD}"),
                "line 2, column 13 (`placement.algorithm`): unknown variant (not shown), \
                 expected one of `rendezvous_table`, `ring`, `ketama`, `jump`, `rendezvous`, \
                 `maglev`",
            ),
        ] {
            let err = Config::from_toml_str(&text).unwrap_err();
            // The list of a shard's fields grows with the features built in (`tls`,
            // `sentinel`): the first four are always there.
            match &err {
                ConfigError::Parse(got) if want.ends_with("`weight`") => {
                    assert!(got.starts_with(want), "{text}: {got}")
                }
                _ => assert_eq!(err, ConfigError::Parse(want.into()), "{text}"),
            }
            let shown = format!("{err} {err:?} {}", Error::from(err.clone()));
            assert!(!shown.contains(pw) && !shown.contains("Secr"), "{shown}");
        }
    }

    #[test]
    fn parser_messages_keep_words_and_tokens_only() {
        for (msg, want) in [
            ("unknown field `vnode`", "unknown field `vnode`"),
            (
                "invalid value: integer `-3`, expected u32",
                "invalid value: integer `-3`, expected u32",
            ),
            ("expected `=`, `]]`", "expected `=`, `]]`"),
            ("string \"a\\\"b\" then `x`", "string (not shown) then `x`"),
            ("unterminated `abc", "unterminated (not shown)"),
            ("`a b` `a@b` `@`", "(not shown) (not shown) (not shown)"),
            ("two\nlines", "two\\nlines"),
        ] {
            assert_eq!(parser_message(msg), want, "{msg}");
        }
        assert_eq!(
            parser_message(&format!("`{}`", "x".repeat(81))),
            "(not shown)"
        );
    }

    #[test]
    fn no_shards_is_an_empty_topology() {
        assert_eq!(Config::from_toml_str(""), Err(ConfigError::EmptyTopology));
    }
}
