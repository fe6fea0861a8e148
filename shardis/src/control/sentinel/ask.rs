//! Asking a Sentinel shard's sentinels, in turn, for its primary and replicas, and checking
//! the primary with `ROLE` before believing them.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};

use crate::error::{Error, ErrorKind, Result};
use crate::node::client_for;
use crate::pool;
use crate::tls::TlsMaterial;
use crate::topology::{Endpoint, SentinelSource};

/// What one sentinel said, checked.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    /// The primary, which answered `ROLE` as `master`.
    pub(crate) primary: Endpoint,
    /// The replicas the sentinel sees up and linked to the primary, sorted by address.
    pub(crate) replicas: Vec<Endpoint>,
    /// The sentinel that answered, `host:port`.
    pub(crate) sentinel: String,
}

/// Asks each sentinel of `source` in turn (each within about three `timeout`s: connect,
/// two questions, and the primary's `ROLE`) until one names a primary that says it is one.
/// `tls` reaches the `rediss://` sentinels and data endpoints.
pub(crate) async fn ask(
    source: &SentinelSource,
    tls: Option<&TlsMaterial>,
    timeout: Duration,
) -> Result<Answer> {
    let mut reasons = Vec::with_capacity(source.sentinels.len());
    for sentinel in &source.sentinels {
        let limit = timeout * 4;
        match tokio::time::timeout(limit, ask_one(source, sentinel, tls, timeout)).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) => reasons.push(format!("{}: {e}", sentinel.label())),
            Err(_) => reasons.push(format!("{}: no answer within {limit:?}", sentinel.label())),
        }
    }
    Err(Error::new(
        ErrorKind::ShardUnavailable,
        format!(
            "no sentinel named a primary of master \"{}\" that answers ROLE as master ({})",
            source.master,
            reasons.join("; ")
        ),
    ))
}

/// One sentinel's answer, checked.
async fn ask_one(
    source: &SentinelSource,
    sentinel: &Endpoint,
    tls: Option<&TlsMaterial>,
    timeout: Duration,
) -> Result<Answer> {
    let mut con = connect(sentinel, tls, timeout).await?;
    let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(&source.master)
        .query_async(&mut con)
        .await
        .map_err(Error::from_redis)?;
    let Some((host, port)) = addr else {
        return Err(Error::new(
            ErrorKind::Config,
            format!("does not monitor a master named \"{}\"", source.master),
        ));
    };
    let primary = source
        .data_endpoint(&host, port)
        .map_err(|reason| Error::new(ErrorKind::Type, format!("named {host}:{port}: {reason}")))?;
    let listed: Vec<HashMap<String, String>> = redis::cmd("SENTINEL")
        .arg("replicas")
        .arg(&source.master)
        .query_async(&mut con)
        .await
        .map_err(Error::from_redis)?;
    let mut replicas = Vec::with_capacity(listed.len());
    for r in &listed {
        if !usable_replica(r) {
            continue;
        }
        let (Some(h), Some(p)) = (r.get("ip"), r.get("port").and_then(|p| p.parse().ok())) else {
            continue;
        };
        if let Ok(ep) = source.data_endpoint(h, p) {
            if ep.identity() != primary.identity() {
                replicas.push(ep);
            }
        }
    }
    replicas.sort_by_key(|e| e.identity());
    replicas.dedup_by_key(|e| e.identity());
    check_primary(&primary, tls, timeout).await.map_err(|e| {
        // A sentinel names a host and port, not a scheme: the config says it.
        let hint = match e.kind() == ErrorKind::Tls {
            true => " (whether the endpoints sentinels name use TLS is the shard's `sentinel.tls`)",
            false => "",
        };
        Error::new(
            e.kind(),
            format!("named {}, which {e}{hint}", primary.label()),
        )
    })?;
    Ok(Answer {
        primary,
        replicas,
        sentinel: sentinel.address(),
    })
}

/// A replica the sentinel sees up and linked to its primary: one that is down, disconnected
/// or still syncing would only be taken out again by the probes.
fn usable_replica(fields: &HashMap<String, String>) -> bool {
    let flags = fields.get("flags").map(String::as_str).unwrap_or("");
    let bad_flag = flags
        .split(',')
        .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"));
    let linked = fields.get("master-link-status").map(String::as_str) == Some("ok");
    !bad_flag && linked
}

/// Fails unless `primary` answers `ROLE` with `master`.
async fn check_primary(
    primary: &Endpoint,
    tls: Option<&TlsMaterial>,
    timeout: Duration,
) -> Result<()> {
    let mut con = connect(primary, tls, timeout).await?;
    let reply: Value = redis::cmd("ROLE")
        .query_async(&mut con)
        .await
        .map_err(Error::from_redis)?;
    let role = match &reply {
        Value::Array(items) => match items.first() {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Value::SimpleString(s)) => s.clone(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    if role == "master" {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::ShardUnavailable,
            format!("answers ROLE as \"{role}\", not master"),
        ))
    }
}

/// A connection to `ep`, connect and replies each bounded by `timeout`. A failure is
/// explained as the request path explains it (a TLS port reached in plain, or the reverse).
pub(super) async fn connect(
    ep: &Endpoint,
    tls: Option<&TlsMaterial>,
    timeout: Duration,
) -> Result<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let client = client_for(ep, tls)?;
    let attempt = client.get_multiplexed_async_connection_with_config(&config);
    let e = match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(con)) => return Ok(con),
        Ok(Err(e)) => e,
        Err(_) => redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("connect took longer than {} ms", timeout.as_millis()),
        )),
    };
    let (host, port) = (ep.host(), ep.port());
    let e = if ep.is_tls() {
        pool::explain_tls_failure(e, host, port, timeout).await
    } else {
        pool::explain_connect_failure(e, host, port, timeout).await
    };
    Err(Error::from_redis(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_linked_replicas_that_are_up_count() {
        let r = |flags: &str, link: &str| {
            HashMap::from([
                ("flags".to_owned(), flags.to_owned()),
                ("master-link-status".to_owned(), link.to_owned()),
            ])
        };
        assert!(usable_replica(&r("slave", "ok")));
        assert!(!usable_replica(&r("s_down,slave,disconnected", "err")));
        assert!(!usable_replica(&r("slave,s_down", "ok")));
        assert!(!usable_replica(&r("slave", "err")));
    }
}
