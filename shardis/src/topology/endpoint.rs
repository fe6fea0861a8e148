//! Endpoints: one Redis server address each, parsed from a URL, never showing its password.

use std::fmt;

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
        assert_eq!(redact_url("nonsense"), "nonsense");
    }
}
