//! Endpoints: one Redis server address each, parsed from a URL, never showing its password.

use std::fmt;

use crate::error::quoted;

/// The default Redis port, used when an endpoint URL names none.
pub const DEFAULT_PORT: u16 = 6379;

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
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    tls: bool,
    host: String,
    port: u16,
    db: i64,
    username: Option<String>,
    password: Option<String>,
}

impl Endpoint {
    /// Parses an endpoint URL. The error is a human-readable reason that never quotes the
    /// input (it may hold a password); [`ConfigError::InvalidUrl`](crate::ConfigError) shows
    /// the URL redacted beside it.
    ///
    /// A password with `/`, `@`, `:`, `#`, `?` or `%` must be percent-encoded
    /// (`redis://:p%2Fw%40rd@host:6379`), as in any URL.
    pub fn parse(input: &str) -> Result<Endpoint, String> {
        Endpoint::parse_url(input).map_err(|reason| {
            // A raw `@` or `/` in a password cuts the URL in the wrong place; say so.
            if input.contains('@') {
                format!(
                    "{reason} (a password with `/`, `@`, `:`, `#`, `?` or `%` must be \
                     percent-encoded, e.g. `%2F` for `/`)"
                )
            } else {
                reason
            }
        })
    }

    fn parse_url(input: &str) -> Result<Endpoint, String> {
        // `url::ParseError`'s messages are fixed sentences: they never quote the input.
        let url = url::Url::parse(input.trim()).map_err(|e| e.to_string())?;
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => {
                return Err(format!(
                    "unsupported scheme {}, expected `redis` or `rediss`",
                    quoted(other)
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
        // The path is not quoted: with a raw `/` in a password, it holds the password's end.
        let db = match url.path().trim_matches('/') {
            "" => 0,
            p => p.parse::<i64>().ok().filter(|d| *d >= 0).ok_or_else(|| {
                "the database (the path after the port) is not a non-negative integer".to_owned()
            })?,
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

    /// This endpoint with `password` (read from `password_env` or `password_file`).
    pub(crate) fn with_password(mut self, password: &str) -> Endpoint {
        self.password = Some(password.to_owned());
        self
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

    /// The identity used to detect an endpoint listed twice: host, port, db. Hosts compare
    /// case-insensitively, and the loopback names `localhost`, `127.0.0.1` and `[::1]` are one
    /// host. No name is resolved (validation stays fast and deterministic), so other names of
    /// one machine are not caught.
    pub(crate) fn identity(&self) -> (String, u16, i64) {
        let host = self.host.to_ascii_lowercase();
        let host = match host.trim_end_matches('.') {
            "localhost" | "127.0.0.1" | "[::1]" | "::1" => "loopback".to_owned(),
            _ => host,
        };
        (host, self.port, self.db)
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

/// Redacts the user info of a URL-looking string, for messages about URLs that did not parse
/// (and `ShardSpec`'s `Debug`, whose URLs are not parsed yet).
///
/// The user info is everything between `://` and the *last* `@`, so a password with a raw
/// `/`, `@`, `:`, `#` or `?` is hidden whole. It becomes `user:***` when the user name is
/// plain (URL-safe characters only), else `***`. Without a valid `scheme://` prefix,
/// everything before the last `@` becomes `***`. A string with no `@` is returned as it is.
/// When the `@` is in a query or fragment instead, the host is redacted too: more, never less.
pub(crate) fn redact_url(raw: &str) -> String {
    let (scheme, rest) = match raw.find("://") {
        Some(i) if is_scheme(&raw[..i]) => (Some(&raw[..i]), &raw[i + 3..]),
        _ => (None, raw),
    };
    let Some(at) = rest.rfind('@') else {
        return raw.to_owned();
    };
    let (userinfo, host) = (&rest[..at], &rest[at + 1..]);
    let shown = match (scheme, userinfo.split_once(':')) {
        (None, _) => "***".to_owned(),
        (Some(_), Some((user, _))) if is_plain_user(user) => format!("{user}:***"),
        (Some(_), None) if !userinfo.is_empty() && is_plain_user(userinfo) => userinfo.to_owned(),
        (Some(_), _) => "***".to_owned(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{shown}@{host}"),
        None => format!("{shown}@{host}"),
    }
}

/// A URL scheme: an ASCII letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// A user name made of URL-safe characters only (unreserved, sub-delimiters, `%`), short
/// enough to show: anything else may be a mangled password.
fn is_plain_user(s: &str) -> bool {
    s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~%!$&'()*+,;=".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn redact_url_hides_password_only() {
        assert_eq!(redact_url("redis://u:pw@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
        assert_eq!(redact_url("redis://:pw@h"), "redis://:***@h");
        assert_eq!(redact_url("redis://app@h"), "redis://app@h");
        assert_eq!(redact_url("nonsense"), "nonsense");
    }

    #[test]
    fn redact_url_hides_passwords_with_url_delimiters() {
        for (raw, want) in [
            ("redis://:Sup3r/Secr@t:pw@h:1", "redis://:***@h:1"),
            ("redis://u:Sup3r/Secr@t:pw@h:1/2", "redis://u:***@h:1/2"),
            ("redis://:p@ss/w:rd#1?x@h:1", "redis://:***@h:1"),
            ("redis://u:p%40ss%2F@h", "redis://u:***@h"),
            // No colon, but a `/` or `@`: a mangled password, not a user name.
            ("redis://Sup3r/Secr@t@h", "redis://***@h"),
            // No scheme, or not a valid one: everything before the last `@` goes.
            (":Sup3r/Secr@t:pw@h:1", "***@h:1"),
            ("u:p@ss://x@h", "***@h"),
            (" redis://:pw@h", "***@h"),
            // An `@` in a query: the host goes too.
            ("redis://h:1/0?x=a@b", "redis://h:***@b"),
        ] {
            assert_eq!(redact_url(raw), want, "{raw}");
        }
    }

    #[test]
    fn parse_errors_never_quote_the_input() {
        for raw in [
            "redis://:Sup3r/Secr@t:pw@h:1",
            "redis://u:Sup3r/Secr@t:pw@h:1",
            "redis://u:1/Sup3r@h",
            "redis://:p@ss/w:rd#1?x@h:1",
            "Sup3r/Secr@t:pw",
        ] {
            let reason = Endpoint::parse(raw).unwrap_err();
            assert!(
                !reason.contains("Sup3r") && !reason.contains("ss/w"),
                "{raw}: {reason}"
            );
            assert!(reason.contains("percent-encoded"), "{reason}");
        }
    }

    #[test]
    fn loopback_names_are_one_host() {
        let id = |u: &str| Endpoint::parse(u).unwrap().identity();
        let one = id("redis://127.0.0.1:6379");
        for other in [
            "redis://localhost:6379",
            "redis://LOCALHOST.:6379",
            "redis://[::1]:6379",
        ] {
            assert_eq!(id(other), one, "{other}");
        }
        assert_ne!(id("redis://127.0.0.2:6379"), one);
        assert_ne!(id("redis://localhost:6380"), one);
    }
}
