//! Our bb8 connection manager over redis-rs multiplexed connections.
//!
//! bb8-redis's manager cannot set connect or response timeouts and never reports a broken
//! connection (`has_broken` is always false), so a dead socket would stay pooled forever. This
//! manager applies both timeouts and carries a broken flag per connection: a request that sees a
//! connection-level failure or a timeout sets it, and the pool drops the connection the next time
//! it passes through a checkout. A generation shared by an endpoint's connections retires them
//! all at once (a failed probe does), idle ones in the pool included.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

/// A pooled connection: a multiplexed redis-rs connection and its shared broken flag.
///
/// Cloning is cheap and shares the socket: the request path clones the pooled connection and
/// returns the pool slot at once, so one socket carries many concurrent requests.
#[derive(Clone)]
pub(crate) struct Conn {
    pub(crate) inner: MultiplexedConnection,
    broken: Arc<AtomicBool>,
    /// The endpoint's connection generation when this one was made.
    born: u64,
    /// The endpoint's current generation: raised to retire every connection made before.
    generation: Arc<AtomicU64>,
}

impl Conn {
    /// Marks the socket dead: the pool discards it at its next checkout.
    pub(crate) fn mark_broken(&self) {
        self.broken.store(true, Ordering::Relaxed);
    }

    /// Dead, or made before the endpoint's connections were last retired.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed) || self.born < self.generation.load(Ordering::Relaxed)
    }

    /// True if both are the same socket.
    pub(crate) fn same(&self, other: &Conn) -> bool {
        Arc::ptr_eq(&self.broken, &other.broken)
    }
}

/// Creates connections to one endpoint.
pub(crate) struct Manager {
    client: redis::Client,
    /// `host` and `port`, to look at what the server says when a connection fails after
    /// being accepted.
    address: (String, u16),
    config: AsyncConnectionConfig,
    connect_timeout: Duration,
    /// A `rediss://` endpoint: failures are explained as TLS ones.
    tls: bool,
    /// Raised to retire every connection made so far, pooled or not (see `Conn::is_broken`).
    generation: Arc<AtomicU64>,
    /// The last connect failure, so a checkout that times out can say why.
    /// A std mutex: held for a clone or a store, never across an await.
    last_error: Arc<Mutex<Option<String>>>,
}

impl Manager {
    pub(crate) fn new(
        client: redis::Client,
        address: (String, u16),
        tls: bool,
        connect_timeout: Duration,
        response_timeout: Duration,
        last_error: Arc<Mutex<Option<String>>>,
        generation: Arc<AtomicU64>,
    ) -> Manager {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout));
        Manager {
            client,
            address,
            tls,
            config,
            connect_timeout,
            last_error,
            generation,
        }
    }

    fn record(&self, error: Option<String>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = error;
        }
    }
}

impl bb8::ManageConnection for Manager {
    type Connection = Conn;
    type Error = redis::RedisError;

    async fn connect(&self) -> Result<Conn, redis::RedisError> {
        // Taken before connecting: a retirement during the connect retires this one too.
        let born = self.generation.load(Ordering::Relaxed);
        // redis-rs applies the connection timeout to the TCP connect; the outer timeout also
        // bounds the handshake (AUTH, SELECT) against a server that accepts and then hangs.
        let attempt = connect_checked(&self.client, &self.config);
        let result = match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "connect and handshake took longer than {} ms",
                    self.connect_timeout.as_millis()
                ),
            ))),
        };
        match result {
            Ok(inner) => {
                self.record(None);
                Ok(Conn {
                    inner,
                    broken: Arc::new(AtomicBool::new(false)),
                    born,
                    generation: self.generation.clone(),
                })
            }
            Err(e) => {
                let (host, port) = (&self.address.0, self.address.1);
                let e = if self.tls {
                    explain_tls_failure(e, host, port, self.connect_timeout).await
                } else {
                    explain_connect_failure(e, host, port, self.connect_timeout).await
                };
                self.record(Some(e.to_string()));
                Err(e)
            }
        }
    }

    async fn is_valid(&self, conn: &mut Conn) -> Result<(), redis::RedisError> {
        redis::cmd("PING").query_async::<()>(&mut conn.inner).await
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.is_broken()
    }
}

/// Opens a multiplexed connection and checks it with a `PING`. redis-rs's handshake ignores
/// the replies to its `CLIENT SETINFO` commands, so a server that accepts and then turns the
/// connection away (Redis at `maxclients` writes an error and closes) would otherwise hand out
/// a connection that is already dead, and the first request on it would fail with a broken
/// pipe. Failures are not explained here (see [`explain_connect_failure`]).
pub(crate) async fn connect_checked(
    client: &redis::Client,
    config: &AsyncConnectionConfig,
) -> Result<MultiplexedConnection, redis::RedisError> {
    let mut conn = client
        .get_multiplexed_async_connection_with_config(config)
        .await?;
    redis::cmd("PING").query_async::<()>(&mut conn).await?;
    Ok(conn)
}

/// The start of the error for a server that answered and turned the connection away.
const TURNED_AWAY: &str = "the server refused the connection";

/// True for a connect failure where the server answered and turned the connection away (e.g.
/// at `maxclients`): the server is up, only full.
pub(crate) fn is_turned_away(message: &str) -> bool {
    message.contains(TURNED_AWAY)
}

/// The error of a `redis://` endpoint whose server speaks only TLS.
const TLS_MISMATCH: &str =
    "the endpoint answered in TLS: it is a TLS port, use a rediss:// URL (and [tls] settings)";

/// The error of a `rediss://` endpoint whose server speaks plain Redis.
const PLAIN_MISMATCH: &str =
    "the endpoint answered in plain Redis, not TLS: it is a plain port, use a redis:// URL";

/// True for a `redis://` endpoint found to be a TLS port, or a `rediss://` endpoint found to
/// be a plain one (see [`explain`] and [`explain_tls_failure`]).
pub(crate) fn is_tls_mismatch(err: &redis::RedisError) -> bool {
    err.is_io_error() && {
        let message = err.to_string();
        message.contains(TLS_MISMATCH) || message.contains(PLAIN_MISMATCH)
    }
}

/// A `rediss://` endpoint that did not complete its handshake in time: a plain Redis port
/// reads the TLS hello as a command and waits for the rest of the line, so the handshake
/// hangs until the timeout. When the port answers a plain `PING`, say so instead of "timed out".
pub(crate) async fn explain_tls_failure(
    e: redis::RedisError,
    host: &str,
    port: u16,
    timeout: Duration,
) -> redis::RedisError {
    if !e.is_timeout() {
        return e;
    }
    match tokio::time::timeout(timeout, first_bytes(host, port)).await {
        Ok(Some(bytes)) if matches!(bytes.first(), Some(b'+' | b'-')) => redis::RedisError::from(
            std::io::Error::new(std::io::ErrorKind::InvalidData, PLAIN_MISMATCH),
        ),
        _ => e,
    }
}

/// How many bytes of a non-Redis answer an error quotes.
const QUOTED_BYTES: usize = 48;

/// Replaces a connect failure that happened after the server accepted the connection (a broken
/// pipe, a reset, a reply that does not parse) with what the server actually says: Redis at
/// `maxclients` writes `-ERR max number of clients reached` and closes, which redis-rs reports
/// as a broken pipe; a listener that is not Redis (an HTTP server on the port) makes redis-rs
/// report a parse error. Other failures (refused, timed out, authentication) are returned as
/// they are. Runs only on the failure path: one extra short-lived connection.
pub(crate) async fn explain_connect_failure(
    e: redis::RedisError,
    host: &str,
    port: u16,
    timeout: Duration,
) -> redis::RedisError {
    let accepted_then_failed = !e.is_timeout()
        && !e.is_connection_refusal()
        && (e.is_io_error() || e.is_connection_dropped() || e.kind() == redis::ErrorKind::Parse);
    if !accepted_then_failed {
        return e;
    }
    match tokio::time::timeout(timeout, first_bytes(host, port)).await {
        Ok(Some(bytes)) => match explain(&bytes) {
            Some((kind, message)) => redis::RedisError::from(std::io::Error::new(kind, message)),
            None => e,
        },
        // Closed without a word: a TLS port closes on a plain `PING`, often without an alert.
        // Ask it in TLS.
        Ok(None) if e.is_connection_dropped() || e.is_io_error() => {
            match tokio::time::timeout(timeout, speaks_tls(host, port)).await {
                Ok(true) => redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    TLS_MISMATCH,
                )),
                _ => e,
            }
        }
        _ => e,
    }
}

/// True when the port answers a TLS client hello in TLS (a server hello or an alert).
async fn speaks_tls(host: &str, port: u16) -> bool {
    #[cfg(feature = "tls")]
    let hello = crate::tls::client_hello();
    #[cfg(not(feature = "tls"))]
    let hello: Option<Vec<u8>> = None;
    let Some(hello) = hello else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let Ok(stream) = tokio::net::TcpStream::connect((host, port)).await else {
        return false;
    };
    if write_all(&stream, &hello).await.is_none() {
        return false;
    }
    let mut buf = [0u8; 8];
    match read_some(&stream, &mut buf).await {
        Some(n) if n >= 2 => matches!(buf[0], 0x15 | 0x16) && buf[1] == 3,
        _ => false,
    }
}

/// What the server at `host:port` sends first: unprompted (an error on accept), or in answer
/// to a `PING`.
async fn first_bytes(host: &str, port: u16) -> Option<Vec<u8>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let stream = tokio::net::TcpStream::connect((host, port)).await.ok()?;
    let mut buf = vec![0u8; 256];
    let n = match tokio::time::timeout(Duration::from_millis(100), read_some(&stream, &mut buf))
        .await
    {
        Ok(n) => n?,
        Err(_) => {
            write_all(&stream, b"PING\r\n").await?;
            read_some(&stream, &mut buf).await?
        }
    };
    buf.truncate(n);
    Some(buf)
}

/// Reads what is there (at least one byte); `None` when closed or failed.
async fn read_some(stream: &tokio::net::TcpStream, buf: &mut [u8]) -> Option<usize> {
    loop {
        stream.readable().await.ok()?;
        match stream.try_read(buf) {
            Ok(0) => return None,
            Ok(n) => return Some(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return None,
        }
    }
}

/// Writes all of `bytes`; `None` when the connection failed.
async fn write_all(stream: &tokio::net::TcpStream, mut bytes: &[u8]) -> Option<()> {
    while !bytes.is_empty() {
        stream.writable().await.ok()?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return None,
        }
    }
    Some(())
}

/// A clearer error for what a server sent, or `None` if it looks like a normal Redis answer.
fn explain(bytes: &[u8]) -> Option<(std::io::ErrorKind, String)> {
    match bytes.first()? {
        b'-' => {
            let line = bytes[1..].split(|b| *b == b'\r' || *b == b'\n').next()?;
            // Not `ConnectionRefused`: the server is up and answered; it is not a TCP refusal.
            Some((
                std::io::ErrorKind::Other,
                format!("{TURNED_AWAY}: {}", printable(line)),
            ))
        }
        b'+' | b':' | b'$' | b'*' | b'%' | b'_' | b'#' | b',' | b'(' | b'=' | b'~' | b'>'
        | b'|' | b'!' => None,
        // A TLS record (an alert, 0x15, or a handshake, 0x16, of version 3.x): a TLS port.
        0x15 | 0x16 if bytes.get(1) == Some(&3) => {
            Some((std::io::ErrorKind::InvalidData, TLS_MISMATCH.to_owned()))
        }
        _ => Some((
            std::io::ErrorKind::InvalidData,
            format!(
                "the endpoint did not answer like Redis; it sent \"{}\"",
                printable(bytes)
            ),
        )),
    }
}

/// Up to `QUOTED_BYTES` bytes as printable ASCII (others escaped), with `…` when cut.
fn printable(bytes: &[u8]) -> String {
    let mut out: String = bytes
        .iter()
        .take(QUOTED_BYTES)
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    if bytes.len() > QUOTED_BYTES {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_refusals_and_strangers_and_leaves_redis_alone() {
        let (kind, msg) = explain(b"-ERR max number of clients reached\r\n").unwrap();
        assert_eq!(kind, std::io::ErrorKind::Other);
        assert_eq!(
            msg,
            "the server refused the connection: ERR max number of clients reached"
        );
        let (kind, msg) =
            explain(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!(kind, std::io::ErrorKind::InvalidData);
        assert!(
            msg.starts_with(
                "the endpoint did not answer like Redis; it sent \"HTTP/1.1 400 Bad Request\\r\\n"
            ),
            "{msg}"
        );
        assert!(msg.len() < 160, "{msg}");
        assert!(explain(b"+PONG\r\n").is_none());
        assert!(explain(b"").is_none());
        let binary = explain(&[0xff, 0x00, b'x']).unwrap().1;
        assert!(binary.contains("\\xff\\x00x"), "{binary}");
    }
}
