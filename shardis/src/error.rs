//! The one error type of shardis and its kinds.
//!
//! Every error says which shard and endpoint it concerns (never a password), and answers the
//! question a caller of a sharded cache asks most: may this request be retried elsewhere?

use std::fmt;
use std::time::Duration;

/// What went wrong, in a form a program can branch on.
///
/// New kinds may be added in minor releases, so match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration or topology is invalid (see [`Error::config`] for the culprit).
    Config,
    /// An argument given to the client cannot be sent: a key that is not exactly one
    /// argument, an oversized key, a zero expiry, an empty multi-key call where one is needed.
    InvalidInput,
    /// The endpoint could not be reached, refused the connection, or the connection broke.
    Connection,
    /// The endpoint did not answer in time (connect, checkout or response timeout).
    Timeout,
    /// Redis answered with an error reply (`-ERR ...`, `-WRONGTYPE ...`).
    Server,
    /// Redis answered, but the reply could not be converted to the requested Rust type.
    Type,
    /// The shard cannot serve the request under the current routing policy.
    ShardUnavailable,
    /// An I/O error outside a Redis connection (reading a config file, spawning a process).
    Io,
    /// A transaction (atomic pipeline) or a script has keys on more than one shard: refused
    /// before anything is sent. The message names two of the keys and their shards.
    CrossShard,
    /// A lock is held by someone else and was not released within the wait.
    LockNotAcquired,
    /// A lock's extend or release found it no longer held by this holder: it expired (and
    /// may have been taken by another).
    LockLost,
    /// TLS failed: the server's certificate is not trusted (another CA, expired, issued for
    /// another host name), the endpoint does not speak TLS behind `rediss://` (or only TLS
    /// behind `redis://`), or a `[tls]` file is missing, unreadable or not valid PEM. Not a
    /// failover candidate: the settings or the certificates need fixing.
    Tls,
}

impl ErrorKind {
    /// A short stable name for the kind, as used in logs and in the CLI's JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Connection => "connection",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Server => "server",
            ErrorKind::Type => "type",
            ErrorKind::ShardUnavailable => "shard_unavailable",
            ErrorKind::Io => "io",
            ErrorKind::CrossShard => "cross_shard",
            ErrorKind::LockNotAcquired => "lock_not_acquired",
            ErrorKind::LockLost => "lock_lost",
            ErrorKind::Tls => "tls",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a configuration or topology was rejected. Each variant names the culprit.
///
/// The fields keep the user's text in full, for programs; `Display` and `Debug` quote at
/// most 80 characters of it (with control characters escaped) and say how long it was, so a
/// 100 000-character shard name makes a one-line message. No variant ever holds a password:
/// URLs are redacted before they are stored, and [`ConfigError::Parse`] never quotes the
/// source text.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The topology has no shard.
    EmptyTopology,
    /// Two shards share a name; names are the placement identity and must be unique.
    DuplicateShardName(String),
    /// A shard name is empty or has characters outside the allowed set.
    InvalidShardName(String),
    /// A shard has weight 0; weights are integers >= 1.
    ZeroWeight {
        /// The shard.
        shard: String,
    },
    /// An endpoint URL could not be parsed; the reason says why (the URL is shown redacted).
    InvalidUrl {
        /// The shard the URL belongs to.
        shard: String,
        /// The URL with everything before its last `@` (user and password) replaced by
        /// `***`, keeping only a plain user name.
        url: String,
        /// What is wrong with it. It never quotes the URL.
        reason: String,
    },
    /// The same endpoint (host, port and db) appears twice in the topology. Hosts compare
    /// case-insensitively, and `localhost`, `127.0.0.1` and `[::1]` are one host (no name is
    /// resolved: other names of one machine are not detected).
    DuplicateEndpoint {
        /// The endpoint, redacted.
        endpoint: String,
        /// The shard of its first use.
        first: String,
        /// The shard of its second use.
        second: String,
    },
    /// `on_primary_down = "promote_replica"` with a Sentinel-managed shard: Sentinel decides
    /// that shard's failovers, and two controllers would fight.
    SentinelPromote {
        /// The Sentinel-managed shard.
        shard: String,
    },
    /// A setting has a value outside its range.
    InvalidValue {
        /// The setting, as named in the config file (e.g. `pool.connections_per_endpoint`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The config file is not valid TOML (or YAML, for a twemproxy import), or has unknown or
    /// mistyped keys.
    ///
    /// The message gives the line and column, the key path when the parser knows it, and the
    /// parser's reason. It never quotes the source text, which may hold a password: a value
    /// is named by its type only (`invalid type: string (not shown), expected a sequence`),
    /// and a quoted word (an unknown key, an unknown variant) is shown only when it looks like
    /// an identifier (ASCII letters, digits, `_`, `-`, `.`, `+`) of at most 80 characters.
    Parse(String),
}

/// The most characters of a user's text (a shard name, a URL, a setting, a line of a file)
/// that an error message quotes. Longer text is cut, and its length given.
pub(crate) const QUOTE_LIMIT: usize = 80;

/// The most characters of a reason or parser message an error shows: a backstop, since
/// reasons quote user text only through [`quoted`].
const REASON_LIMIT: usize = 480;

/// User text for an error message: in backticks, at most [`QUOTE_LIMIT`] characters, control
/// characters escaped, and when cut, its length: `` `aaaa…` (100000 characters) ``.
pub(crate) fn quoted(text: &str) -> Excerpt<'_> {
    Excerpt {
        text,
        limit: QUOTE_LIMIT,
        ticks: true,
    }
}

/// `text` cut to `limit` characters (control characters escaped), without backticks.
pub(crate) fn bounded(text: &str, limit: usize) -> Excerpt<'_> {
    Excerpt {
        text,
        limit,
        ticks: false,
    }
}

/// A bounded excerpt of user text; see [`quoted`] and [`bounded`].
#[derive(Clone, Copy)]
pub(crate) struct Excerpt<'a> {
    text: &'a str,
    limit: usize,
    ticks: bool,
}

impl fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        if self.ticks {
            f.write_char('`')?;
        }
        let mut shown = 0;
        for c in self.text.chars().take(self.limit) {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
            shown += 1;
        }
        let cut = shown == self.limit && self.text.chars().nth(self.limit).is_some();
        if cut {
            f.write_char('…')?;
        }
        if self.ticks {
            f.write_char('`')?;
        }
        if cut {
            write!(f, " ({} characters)", self.text.chars().count())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head: String = self.text.chars().take(self.limit).collect();
        if head.len() == self.text.len() {
            fmt::Debug::fmt(self.text, f)
        } else {
            let head = format!("{head}…");
            write!(f, "{head:?} ({} characters)", self.text.chars().count())
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::EmptyTopology => f.write_str("the topology has no shard"),
            ConfigError::DuplicateShardName(n) => write!(f, "duplicate shard name {}", quoted(n)),
            ConfigError::InvalidShardName(n) => write!(
                f,
                "invalid shard name {}: use 1 to 128 characters, none of them whitespace or control characters",
                quoted(n)
            ),
            ConfigError::ZeroWeight { shard } => write!(
                f,
                "shard {} has weight 0; weights are integers >= 1",
                quoted(shard)
            ),
            ConfigError::InvalidUrl { shard, url, reason } => write!(
                f,
                "shard {}: invalid endpoint URL {}: {}",
                quoted(shard),
                quoted(url),
                bounded(reason, REASON_LIMIT)
            ),
            ConfigError::DuplicateEndpoint {
                endpoint,
                first,
                second,
            } => write!(
                f,
                "endpoint {} is used twice: by shard {} and by shard {}",
                bounded(endpoint, QUOTE_LIMIT),
                quoted(first),
                quoted(second)
            ),
            ConfigError::SentinelPromote { shard } => write!(
                f,
                "shard {} is Sentinel-managed: on_primary_down = \"promote_replica\" is refused \
                 (Sentinel decides its failovers); use \"fail_fast\"",
                quoted(shard)
            ),
            ConfigError::InvalidValue { field, reason } => write!(
                f,
                "{}: {}",
                quoted(field),
                bounded(reason, REASON_LIMIT)
            ),
            ConfigError::Parse(msg) => {
                write!(f, "invalid config: {}", bounded(msg, REASON_LIMIT))
            }
        }
    }
}

/// Like a derived `Debug`, with every string bounded as `Display` bounds it.
impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn q(s: &str) -> Excerpt<'_> {
            bounded(s, QUOTE_LIMIT)
        }
        fn r(s: &str) -> Excerpt<'_> {
            bounded(s, REASON_LIMIT)
        }
        match self {
            ConfigError::EmptyTopology => f.write_str("EmptyTopology"),
            ConfigError::DuplicateShardName(n) => {
                f.debug_tuple("DuplicateShardName").field(&q(n)).finish()
            }
            ConfigError::InvalidShardName(n) => {
                f.debug_tuple("InvalidShardName").field(&q(n)).finish()
            }
            ConfigError::ZeroWeight { shard } => f
                .debug_struct("ZeroWeight")
                .field("shard", &q(shard))
                .finish(),
            ConfigError::InvalidUrl { shard, url, reason } => f
                .debug_struct("InvalidUrl")
                .field("shard", &q(shard))
                .field("url", &q(url))
                .field("reason", &r(reason))
                .finish(),
            ConfigError::DuplicateEndpoint {
                endpoint,
                first,
                second,
            } => f
                .debug_struct("DuplicateEndpoint")
                .field("endpoint", &q(endpoint))
                .field("first", &q(first))
                .field("second", &q(second))
                .finish(),
            ConfigError::SentinelPromote { shard } => f
                .debug_struct("SentinelPromote")
                .field("shard", &q(shard))
                .finish(),
            ConfigError::InvalidValue { field, reason } => f
                .debug_struct("InvalidValue")
                .field("field", &q(field))
                .field("reason", &r(reason))
                .finish(),
            ConfigError::Parse(msg) => f.debug_tuple("Parse").field(&r(msg)).finish(),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The error type of every fallible shardis call.
///
/// ```
/// use shardis::{Error, ErrorKind};
/// fn should_alert(e: &Error) -> bool {
///     matches!(e.kind(), ErrorKind::Connection | ErrorKind::Timeout | ErrorKind::ShardUnavailable)
/// }
/// # let _ = should_alert;
/// ```
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: String,
    shard: Option<String>,
    endpoint: Option<String>,
    config: Option<ConfigError>,
    /// The command was written to a connection (or may have been) before the failure.
    sent: bool,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// Builds an error of `kind` with a message.
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                shard: None,
                endpoint: None,
                config: None,
                sent: false,
                source: None,
            }),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The shard the error concerns, when it concerns one.
    pub fn shard(&self) -> Option<&str> {
        self.inner.shard.as_deref()
    }

    /// The endpoint the error concerns (`host:port/db`, never with a password).
    pub fn endpoint(&self) -> Option<&str> {
        self.inner.endpoint.as_deref()
    }

    /// The configuration error, for errors of kind [`ErrorKind::Config`].
    pub fn config(&self) -> Option<&ConfigError> {
        self.inner.config.as_ref()
    }

    /// True for a timeout.
    pub fn is_timeout(&self) -> bool {
        self.inner.kind == ErrorKind::Timeout
    }

    /// True when the endpoint is unreachable, broke the connection or did not answer in time:
    /// the failures after which the same request may be sent to a replica of the same shard
    /// (reads) without risk of it having run twice on different data.
    pub fn is_failover_candidate(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::Connection | ErrorKind::Timeout)
    }

    /// True when a request failed after it was sent (a response timeout, or the connection
    /// dropped while waiting for the reply): the server may or may not have run it. A write
    /// that failed this way may still be applied, e.g. when a hung server resumes; retrying
    /// it is safe only if it is idempotent. False when the request is known not to have run
    /// (refused before sending, no connection, an error reply).
    pub fn is_outcome_unknown(&self) -> bool {
        self.inner.sent && matches!(self.inner.kind, ErrorKind::Timeout | ErrorKind::Connection)
    }

    /// True for a server error reply that says "not now" rather than "no": `LOADING` (the
    /// server is loading its data set), `BUSY` (a script is running), `MASTERDOWN` (a replica
    /// lost its primary and serves no stale data), `TRYAGAIN`. A read that gets one is sent
    /// to the shard's other endpoint when the read policy has one.
    pub fn is_transient(&self) -> bool {
        self.inner.kind == ErrorKind::Server
            && matches!(
                self.server_code(),
                Some("LOADING" | "BUSY" | "MASTERDOWN" | "TRYAGAIN")
            )
    }

    /// The Redis error code of a server error reply (e.g. `WRONGTYPE`), when there is one.
    pub fn server_code(&self) -> Option<&str> {
        let source = self.inner.source.as_deref()?;
        source
            .downcast_ref::<redis::RedisError>()
            .and_then(|e| e.code())
    }

    /// A copy of this error for another caller (each caller of a merged read gets its own):
    /// kind, message, shard, endpoint and whether it was sent; a redis-rs source is kept
    /// (its `server_code` too), another source is not.
    pub(crate) fn duplicate(&self) -> Self {
        let i = &self.inner;
        let source = i
            .source
            .as_deref()
            .and_then(|s| s.downcast_ref::<redis::RedisError>())
            .map(|e| Box::new(e.clone()) as Box<dyn std::error::Error + Send + Sync>);
        Error {
            inner: Box::new(Inner {
                kind: i.kind,
                message: i.message.clone(),
                shard: i.shard.clone(),
                endpoint: i.endpoint.clone(),
                config: i.config.clone(),
                sent: i.sent,
                source,
            }),
        }
    }

    /// Marks the request as written to a connection before it failed.
    pub(crate) fn sent(mut self) -> Self {
        self.inner.sent = true;
        self
    }

    pub(crate) fn with_shard(mut self, shard: &str) -> Self {
        self.inner.shard = Some(shard.to_owned());
        self
    }

    pub(crate) fn with_endpoint(mut self, endpoint: &str) -> Self {
        self.inner.endpoint = Some(endpoint.to_owned());
        self
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.inner.source = Some(Box::new(source));
        self
    }

    pub(crate) fn from_redis(err: redis::RedisError) -> Self {
        let kind = if is_tls_failure(&err) {
            ErrorKind::Tls
        } else if err.is_timeout() {
            ErrorKind::Timeout
        } else if is_connection_failure(&err) {
            ErrorKind::Connection
        } else {
            match err.kind() {
                redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType => ErrorKind::Type,
                redis::ErrorKind::AuthenticationFailed => ErrorKind::Connection,
                // No credentials where the server needs some: an authentication failure too.
                _ if err.code() == Some("NOAUTH") => ErrorKind::Connection,
                redis::ErrorKind::InvalidClientConfig => ErrorKind::Config,
                _ => ErrorKind::Server,
            }
        };
        Error::new(kind, err.to_string()).with_source(err)
    }

    /// A reply that does not convert to the requested type.
    pub(crate) fn conversion(err: redis::ParsingError) -> Self {
        Error::new(ErrorKind::Type, err.to_string())
    }

    pub(crate) fn timeout(what: &str, after: Duration) -> Self {
        Error::new(
            ErrorKind::Timeout,
            format!("{what} timed out after {} ms", after.as_millis()),
        )
    }

    pub(crate) fn invalid_input(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, message)
    }
}

impl From<ConfigError> for Error {
    fn from(err: ConfigError) -> Self {
        let mut e = Error::new(ErrorKind::Config, err.to_string());
        e.inner.config = Some(err);
        e
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.inner.shard, &self.inner.endpoint) {
            (Some(s), Some(e)) => write!(f, "shard `{s}` ({e}): ")?,
            (Some(s), None) => write!(f, "shard `{s}`: ")?,
            (None, Some(e)) => write!(f, "{e}: ")?,
            (None, None) => {}
        }
        write!(f, "{}: {}", self.inner.kind, self.inner.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.inner.kind)
            .field("shard", &self.inner.shard)
            .field("endpoint", &self.inner.endpoint)
            .field("message", &self.inner.message)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.inner.source {
            Some(s) => Some(s.as_ref()),
            None => self
                .inner
                .config
                .as_ref()
                .map(|c| c as &(dyn std::error::Error + 'static)),
        }
    }
}

/// True when the socket itself failed (refused, reset, closed), as opposed to a timeout or an
/// error reply: the connection must be replaced.
pub(crate) fn is_connection_failure(err: &redis::RedisError) -> bool {
    !err.is_timeout()
        && (err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal())
}

/// True for a TLS handshake failure (see [`ErrorKind::Tls`]).
fn is_tls_failure(err: &redis::RedisError) -> bool {
    #[cfg(feature = "tls")]
    return crate::tls::is_tls_failure(err) || crate::pool::is_tls_mismatch(err);
    #[cfg(not(feature = "tls"))]
    return crate::pool::is_tls_mismatch(err);
}

/// `Result<T, shardis::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_shard_and_endpoint() {
        let e = Error::new(ErrorKind::Connection, "refused")
            .with_shard("cache-a")
            .with_endpoint("127.0.0.1:7001/0");
        assert_eq!(
            e.to_string(),
            "shard `cache-a` (127.0.0.1:7001/0): connection: refused"
        );
        assert!(e.is_failover_candidate());
    }

    #[test]
    fn quoting_is_bounded_and_says_the_length() {
        let long = "n".repeat(100_000);
        let e = ConfigError::DuplicateShardName(long.clone());
        let shown = e.to_string();
        assert!(shown.len() < 200, "{shown}");
        assert!(shown.contains("(100000 characters)"), "{shown}");
        let debug = format!("{e:?}");
        assert!(debug.len() < 200, "{debug}");
        assert!(debug.contains("(100000 characters)"), "{debug}");
        // Short text is quoted whole; control characters are escaped onto one line.
        assert_eq!(quoted("a\nb").to_string(), "`a\\nb`");
        assert_eq!(
            quoted(&"x".repeat(QUOTE_LIMIT)).to_string().len(),
            QUOTE_LIMIT + 2
        );
        assert_eq!(
            format!("{:?}", ConfigError::DuplicateShardName("a".into())),
            "DuplicateShardName(\"a\")"
        );
    }

    #[test]
    fn config_error_keeps_its_variant() {
        let e: Error = ConfigError::DuplicateShardName("a".into()).into();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert_eq!(
            e.config(),
            Some(&ConfigError::DuplicateShardName("a".into()))
        );
        assert!(!e.is_failover_candidate());
    }
}
