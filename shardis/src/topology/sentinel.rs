//! Sentinel-managed shards (feature `sentinel`): the `sentinel = { master, addrs }` of a
//! `[[shards]]` table, and its validated form.
//!
//! Only data lives here: asking the sentinels and following their failovers is `control`'s.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::endpoint::{redact_url, Endpoint};
use super::secret::read_secret;
use crate::error::ConfigError;

/// How often a Sentinel shard's sentinels are asked again, in case a `+switch-master`
/// message was missed, unless `refresh_ms` says otherwise.
pub const DEFAULT_SENTINEL_REFRESH: Duration = Duration::from_secs(5);

/// The Sentinel side of a shard: the master's name as the sentinels know it and where they
/// listen. This is the `sentinel = { ... }` of a `[[shards]]` table.
///
/// ```
/// use shardis::{SentinelSpec, ShardSpec};
/// let spec = ShardSpec::sentinel(
///     "cache-a",
///     SentinelSpec::new("cache-a", ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379"]),
/// );
/// assert_eq!(spec.sentinel.as_ref().unwrap().master, "cache-a");
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SentinelSpec {
    /// The master's name in the sentinels' configuration (`sentinel monitor <name> ...`).
    pub master: String,
    /// The sentinels' URLs (`redis://[user:password@]host:26379`), asked in this order.
    pub addrs: Vec<String>,
    /// An environment variable holding the sentinels' password (`requirepass` of the
    /// sentinels), for each URL that has none. Defaults to none.
    #[serde(default)]
    pub password_env: Option<String>,
    /// A file holding that password (one line). Defaults to none.
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
    /// The ACL user of the shard's data endpoints (the primary and replicas the sentinels
    /// name); their password is the shard's `password_env`/`password_file`. Defaults to the
    /// default user.
    #[serde(default)]
    pub username: Option<String>,
    /// How often the sentinels are asked again even without a `+switch-master`, in
    /// milliseconds. Defaults to 5000.
    #[serde(default)]
    pub refresh_ms: Option<u64>,
    /// Whether the primary and replicas the sentinels name are reached over TLS
    /// (`rediss://`, with the `[tls]` settings). Sentinels answer with a host and port, not a
    /// scheme, so the config says it. Defaults to the sentinels' own scheme: true when every
    /// `addrs` URL is `rediss://`, false when none is; with a mix it must be given.
    #[serde(default)]
    pub tls: Option<bool>,
}

impl SentinelSpec {
    /// The master `master` as known to the sentinels at `addrs`.
    pub fn new<I, S>(master: impl Into<String>, addrs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        SentinelSpec {
            master: master.into(),
            addrs: addrs.into_iter().map(Into::into).collect(),
            password_env: None,
            password_file: None,
            username: None,
            refresh_ms: None,
            tls: None,
        }
    }

    /// Reaches the primary and replicas the sentinels name over TLS (`true`) or plain TCP
    /// (`false`), whatever the sentinels' own scheme.
    ///
    /// ```
    /// use shardis::SentinelSpec;
    /// // Plain sentinels, TLS data endpoints.
    /// let spec = SentinelSpec::new("cache-a", ["redis://127.0.0.1:26379"]).tls(true);
    /// assert_eq!(spec.tls, Some(true));
    /// ```
    #[must_use]
    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Asks the sentinels again every `every` even without a `+switch-master`.
    #[must_use]
    pub fn refresh(mut self, every: Duration) -> Self {
        self.refresh_ms = Some(every.as_millis().try_into().unwrap_or(u64::MAX));
        self
    }

    /// Reads the sentinels' password from the environment variable `name`.
    #[must_use]
    pub fn password_env(mut self, name: impl Into<String>) -> Self {
        self.password_env = Some(name.into());
        self
    }
}

impl fmt::Debug for SentinelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addrs: Vec<String> = self.addrs.iter().map(|a| redact_url(a)).collect();
        f.debug_struct("SentinelSpec")
            .field("master", &self.master)
            .field("addrs", &addrs)
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .field("username", &self.username)
            .field("refresh_ms", &self.refresh_ms)
            .field("tls", &self.tls)
            .finish()
    }
}

/// A validated Sentinel source: the master's name, the sentinels (passwords applied), and
/// what the data endpoints the sentinels name are reached with.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SentinelSource {
    pub(crate) master: String,
    pub(crate) sentinels: Vec<Endpoint>,
    pub(crate) refresh: Duration,
    /// The data endpoints are `rediss://`.
    pub(crate) data_tls: bool,
    username: Option<String>,
    /// The data endpoints' password (the shard's `password_env`/`password_file`).
    password: Option<String>,
}

impl fmt::Debug for SentinelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelSource")
            .field("master", &self.master)
            .field("sentinels", &self.sentinels)
            .field("refresh", &self.refresh)
            .field("data_tls", &self.data_tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl SentinelSource {
    /// Validates the `sentinel` of shard `shard`; `password` is the shard's own.
    pub(super) fn new(
        shard: &str,
        spec: &SentinelSpec,
        password: Option<String>,
    ) -> Result<SentinelSource, ConfigError> {
        let bad = |key: &str, reason: String| ConfigError::InvalidValue {
            field: format!("shards.{shard}.sentinel.{key}"),
            reason,
        };
        if spec.master.is_empty() || spec.master.chars().any(|c| c.is_whitespace()) {
            return Err(bad(
                "master",
                "must be a non-empty name without spaces".into(),
            ));
        }
        if spec.addrs.is_empty() {
            return Err(bad("addrs", "lists no sentinel".into()));
        }
        let sentinel_password = read_secret(
            &format!("shards.{shard}.sentinel"),
            spec.password_env.as_deref(),
            spec.password_file.as_deref(),
        )?;
        let mut sentinels = Vec::with_capacity(spec.addrs.len());
        for raw in &spec.addrs {
            let ep = Endpoint::parse(raw).map_err(|reason| ConfigError::InvalidUrl {
                shard: shard.to_owned(),
                url: redact_url(raw),
                reason,
            })?;
            let ep = match &sentinel_password {
                Some(p) if !ep.has_password() => ep.with_password(p),
                _ => ep,
            };
            if sentinels
                .iter()
                .any(|s: &Endpoint| s.identity() == ep.identity())
            {
                return Err(bad("addrs", format!("lists {} twice", ep.label())));
            }
            sentinels.push(ep);
        }
        let refresh = match spec.refresh_ms {
            None => DEFAULT_SENTINEL_REFRESH,
            Some(0) => return Err(bad("refresh_ms", "must be at least 1".into())),
            Some(ms) => Duration::from_millis(ms),
        };
        let data_tls = match spec.tls {
            Some(tls) => tls,
            None if sentinels.iter().all(Endpoint::is_tls) => true,
            None if !sentinels.iter().any(Endpoint::is_tls) => false,
            None => {
                return Err(bad(
                    "tls",
                    "is needed: the sentinels mix rediss:// and redis://, so whether the \
                     primary and replicas they name use TLS must be said"
                        .into(),
                ))
            }
        };
        Ok(SentinelSource {
            master: spec.master.clone(),
            sentinels,
            refresh,
            data_tls,
            username: spec.username.clone(),
            password,
        })
    }

    /// True when a sentinel or the data endpoints are reached over TLS.
    pub(crate) fn uses_tls(&self) -> bool {
        self.data_tls || self.sentinels.iter().any(Endpoint::is_tls)
    }

    /// The data endpoint at `host:port` as a sentinel names it, with the shard's credentials
    /// and scheme.
    pub(crate) fn data_endpoint(&self, host: &str, port: u16) -> Result<Endpoint, String> {
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let user = self
            .username
            .as_deref()
            .map(|u| {
                let u =
                    percent_encoding::utf8_percent_encode(u, percent_encoding::NON_ALPHANUMERIC);
                format!("{u}@")
            })
            .unwrap_or_default();
        let scheme = if self.data_tls { "rediss" } else { "redis" };
        let ep = Endpoint::parse(&format!("{scheme}://{user}{host}:{port}"))?;
        Ok(match &self.password {
            Some(p) => ep.with_password(p),
            None => ep,
        })
    }
}
