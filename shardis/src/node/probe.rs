//! Probing one endpoint on a connection of its own.
//!
//! Probes never share the request connections: a big request (a million-key `MGET`, a 100 MiB
//! `SET`) must not make a healthy endpoint look dead, and a request connection that went silent
//! must not keep the probes failing. The probe connection is dropped after any connection
//! failure or timeout and opened again by the next probe.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Cmd, Value};

use crate::error::{is_connection_failure, Error, ErrorKind, Result};
use crate::pool::{connect_checked, explain_connect_failure};

/// The name (`CLIENT SETNAME`) of every probe connection, as `CLIENT LIST` shows it.
pub(crate) const PROBE_CONNECTION_NAME: &str = "shardis-probe";

/// What a server says it is (`ROLE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServerRole {
    /// A primary (`master`).
    Primary,
    /// A replica of `host:port`, as the replica names its primary.
    Replica {
        /// The primary's host, as configured on the replica.
        host: String,
        /// The primary's port.
        port: u16,
    },
    /// Anything else (`sentinel`, or a role this version does not know).
    Other(String),
}

/// The probe connection of one endpoint.
pub(crate) struct Prober {
    client: redis::Client,
    /// `host` and `port`, to explain a connect failure.
    address: (String, u16),
    connect_timeout: Duration,
    config: AsyncConnectionConfig,
    probe_timeout: Duration,
    /// One probe at a time per endpoint; `None` until connected, and after a failure.
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    /// Probes timed out in a row.
    timeouts: AtomicU32,
}

impl Prober {
    pub(crate) fn new(
        client: redis::Client,
        address: (String, u16),
        connect_timeout: Duration,
        probe_timeout: Duration,
    ) -> Prober {
        // The whole probe (connect included) is bounded by the caller's timeout.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(None);
        Prober {
            client,
            address,
            connect_timeout,
            config,
            probe_timeout,
            conn: tokio::sync::Mutex::new(None),
            timeouts: AtomicU32::new(0),
        }
    }

    /// The probe timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.probe_timeout
    }

    /// `ROLE`, within the probe timeout.
    pub(crate) async fn role(&self) -> Result<ServerRole> {
        let reply = self.run(&redis::cmd("ROLE"), self.probe_timeout).await?;
        parse_role(reply)
    }

    /// `INFO replication` within `timeout`: the role (`master` or `slave`) and the
    /// replication offset.
    pub(crate) async fn replication(&self, timeout: Duration) -> Result<(String, i64)> {
        let reply = self
            .run(redis::cmd("INFO").arg("replication"), timeout)
            .await?;
        let text = match reply {
            Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            Value::VerbatimString { text, .. } => text,
            Value::SimpleString(s) => s,
            other => {
                return Err(Error::new(
                    ErrorKind::Type,
                    format!("INFO answered {}", brief(&other)),
                ))
            }
        };
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')))
                .map(|v| v.trim().to_owned())
        };
        let role = field("role").unwrap_or_default();
        let offset = if role == "master" {
            field("master_repl_offset")
        } else {
            field("slave_repl_offset")
        };
        Ok((role, offset.and_then(|o| o.parse().ok()).unwrap_or(-1)))
    }

    /// Runs `cmd` on the probe connection (connecting first if needed), all within `timeout`.
    async fn run(&self, cmd: &Cmd, timeout: Duration) -> Result<Value> {
        let attempt = async {
            let mut slot = self.conn.lock().await;
            let result = match slot.as_mut() {
                Some(conn) => match cmd.query_async::<Value>(conn).await {
                    // The probe connection itself was closed (a `CLIENT KILL`, the server's
                    // idle `timeout`, a restart): that alone says nothing about the server, so
                    // ask again on a fresh connection before reporting a failure. (A fresh
                    // connection that fails is not retried: that is the server's answer.)
                    Err(e) if is_connection_failure(&e) => {
                        *slot = None;
                        self.connect_and_run(&mut slot, cmd).await
                    }
                    result => result,
                },
                None => self.connect_and_run(&mut slot, cmd).await,
            };
            if let Err(e) = &result {
                if is_connection_failure(e) || e.is_timeout() {
                    *slot = None;
                }
            }
            result.map_err(Error::from_redis)
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => {
                if result.is_ok() {
                    self.timeouts.store(0, Ordering::Relaxed);
                }
                result
            }
            Err(_) => {
                // Twice silent in a row, the probe connection may be stuck (half-open): replace
                // it. Once is not enough: reconnecting costs round trips a busy host may not
                // fit in a probe timeout. If another probe holds it, that one decides.
                let silent = self.timeouts.fetch_add(1, Ordering::Relaxed) + 1;
                if silent >= 2 {
                    if let Ok(mut slot) = self.conn.try_lock() {
                        *slot = None;
                    }
                }
                Err(Error::timeout("health probe", timeout))
            }
        }
    }

    /// Opens the probe connection into `slot` and runs `cmd` on it.
    async fn connect_and_run(
        &self,
        slot: &mut Option<MultiplexedConnection>,
        cmd: &Cmd,
    ) -> redis::RedisResult<Value> {
        match connect_checked(&self.client, &self.config).await {
            Ok(mut conn) => {
                // Named so operators can tell it apart in `CLIENT LIST`. Best effort: an ACL
                // user may not be allowed `CLIENT SETNAME`.
                let _ = redis::cmd("CLIENT")
                    .arg("SETNAME")
                    .arg(PROBE_CONNECTION_NAME)
                    .query_async::<()>(&mut conn)
                    .await;
                cmd.query_async::<Value>(slot.insert(conn)).await
            }
            Err(e) => {
                let (host, port) = (&self.address.0, self.address.1);
                Err(explain_connect_failure(e, host, port, self.connect_timeout).await)
            }
        }
    }
}

/// Parses a `ROLE` reply.
pub(crate) fn parse_role(reply: Value) -> Result<ServerRole> {
    let bad = |v: &Value| {
        Error::new(
            ErrorKind::Type,
            format!("ROLE answered {}, not a role", brief(v)),
        )
    };
    let Value::Array(items) = &reply else {
        return Err(bad(&reply));
    };
    let text = |v: Option<&Value>| match v {
        Some(Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        Some(Value::SimpleString(s)) => Some(s.clone()),
        _ => None,
    };
    match text(items.first()).as_deref() {
        Some("master") => Ok(ServerRole::Primary),
        Some("slave") | Some("replica") => {
            let host = text(items.get(1)).ok_or_else(|| bad(&reply))?;
            let port = match items.get(2) {
                Some(Value::Int(p)) => u16::try_from(*p).ok(),
                other => text(other).and_then(|p| p.parse().ok()),
            }
            .ok_or_else(|| bad(&reply))?;
            Ok(ServerRole::Replica { host, port })
        }
        Some(other) => Ok(ServerRole::Other(other.to_owned())),
        None => Err(bad(&reply)),
    }
}

/// A short description of a reply for error messages: its kind, never its full content.
fn brief(v: &Value) -> String {
    let shown = format!("{v:?}");
    if shown.len() <= 80 {
        shown
    } else {
        let cut = (0..=80)
            .rev()
            .find(|i| shown.is_char_boundary(*i))
            .unwrap_or(0);
        format!("{}… ({} characters)", &shown[..cut], shown.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_every_role_reply() {
        let primary = Value::Array(vec![bulk("master"), Value::Int(10), Value::Array(vec![])]);
        assert_eq!(parse_role(primary).unwrap(), ServerRole::Primary);
        let replica = Value::Array(vec![
            bulk("slave"),
            bulk("127.0.0.1"),
            Value::Int(7001),
            bulk("connected"),
            Value::Int(10),
        ]);
        assert_eq!(
            parse_role(replica).unwrap(),
            ServerRole::Replica {
                host: "127.0.0.1".into(),
                port: 7001
            }
        );
        let sentinel = Value::Array(vec![bulk("sentinel"), Value::Array(vec![])]);
        assert_eq!(
            parse_role(sentinel).unwrap(),
            ServerRole::Other("sentinel".into())
        );
        for bad in [
            Value::Nil,
            Value::Array(vec![]),
            Value::Array(vec![bulk("slave"), bulk("h"), Value::Int(70_000)]),
            Value::Array(vec![bulk("slave")]),
        ] {
            assert_eq!(parse_role(bad).unwrap_err().kind(), ErrorKind::Type);
        }
    }
}
