//! Shared helpers for the integration tests: isolated redis-servers and clients over them.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use shardis::{Client, ClientBuilder, ShardSpec, Topology};
use shardis_testkit::RedisServer;

/// Starts `n` isolated redis-servers, failing the test with a clear message if
/// `redis-server` is missing (tests never skip silently).
pub fn servers(n: usize) -> Vec<RedisServer> {
    (0..n)
        .map(|_| RedisServer::start().unwrap_or_else(|e| panic!("cannot start redis-server: {e}")))
        .collect()
}

/// The shard name of the i-th server.
pub fn shard_name(i: usize) -> String {
    format!("shard-{i}")
}

/// A builder with one shard per server, named `shard-0`, `shard-1`, ...
///
/// Its probes are patient (1 s), so that a test of something else does not see an endpoint
/// marked down because the machine was busy; tests of health set their own.
pub fn builder(servers: &[RedisServer]) -> ClientBuilder {
    servers
        .iter()
        .enumerate()
        .fold(Client::builder(), |b, (i, s)| {
            b.shard(shard_name(i), s.url())
        })
        .health(patient_health())
}

/// Health options for tests that are not about health: probes every 250 ms, 1 s to answer.
pub fn patient_health() -> shardis::HealthOptions {
    let mut h = shardis::HealthOptions::default();
    h.probe_timeout = Duration::from_secs(1);
    h
}

/// A connected client with one shard per server.
pub async fn client(servers: &[RedisServer]) -> Client {
    builder(servers).build().await.expect("client builds")
}

/// A client of one shard `name` at `url` with fast probes (`fast_health`) and a response
/// timeout of `response_timeout`.
pub async fn fast_client(name: &str, url: String, response_timeout: Duration) -> Client {
    Client::builder()
        .shard(name, url)
        .health(fast_health())
        .response_timeout(response_timeout)
        .build()
        .await
        .unwrap()
}

/// A client of `servers` with read coalescing as `coalesce_reads` says, after it stored a hash
/// at `h` (`HSET h f v`, sent with `query`).
pub async fn client_with_hash_h(servers: &[RedisServer], coalesce_reads: bool) -> Client {
    let client = builder(servers)
        .coalesce_reads(coalesce_reads)
        .build()
        .await
        .unwrap();
    let mut hset = redis::cmd("HSET");
    hset.arg("h").arg("f").arg("v");
    let _: i64 = client.query("h", &hset).await.unwrap();
    client
}

/// The topology of one shard per server, named as `builder` names them.
pub fn topology(servers: &[RedisServer]) -> Topology {
    Topology::new(
        servers
            .iter()
            .enumerate()
            .map(|(i, s)| ShardSpec::new(shard_name(i), s.url()))
            .collect(),
    )
    .unwrap()
}

/// The first key `{prefix}{i}` that `client` places on `shard`.
pub fn key_on(client: &Client, shard: &str, prefix: &str) -> String {
    (0..10_000)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| client.locate(k.as_str()) == shard)
        .expect("a key on the shard")
}

/// A plain redis-rs connection straight to one server, bypassing shardis.
pub async fn direct(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    connect(&server.url()).await
}

/// A plain redis-rs connection to `url` (a server with a password or user, a database, a
/// sentinel), bypassing shardis.
pub async fn connect(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("direct connection")
}

/// Makes a replica a primary by hand (`REPLICAOF NO ONE`), as an operator would.
pub async fn promote(server: &RedisServer) {
    let () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async(&mut direct(server).await)
        .await
        .expect("REPLICAOF NO ONE");
}

/// `DBSIZE` of a server, asked directly.
pub async fn dbsize(server: &RedisServer) -> usize {
    let mut conn = direct(server).await;
    redis::cmd("DBSIZE")
        .query_async(&mut conn)
        .await
        .expect("DBSIZE")
}

/// `calls` of one command in `INFO commandstats` (0 if never called).
pub fn calls(server: &RedisServer, command: &str) -> u64 {
    server
        .info_field("commandstats", &format!("cmdstat_{command}"))
        .expect("INFO commandstats")
        .and_then(|v| {
            v.split(',')
                .find_map(|f| f.strip_prefix("calls="))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// What a server runs that no test sends: the health probes (`PING`, `ROLE`) and the
/// commands of `commands_run` and `reset_stats` themselves.
pub const BACKGROUND_COMMANDS: &[&str] = &["role", "info", "config|resetstat", "ping"];

/// The `cmdstat_*` names (`get`, `client|reply`, ...) of the commands a server has run since
/// its last `CONFIG RESETSTAT`, but for those in `except`.
pub async fn commands_run(server: &RedisServer, except: &[&str]) -> Vec<String> {
    let mut conn = direct(server).await;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("INFO commandstats");
    info.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter_map(|l| l.split(':').next())
        .filter(|c| !except.contains(c))
        .map(str::to_owned)
        .collect()
}

/// `CONFIG RESETSTAT` on every server: `commands_run` starts over.
pub async fn reset_stats(servers: &[RedisServer]) {
    for s in servers {
        let mut conn = direct(s).await;
        let () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut conn)
            .await
            .expect("CONFIG RESETSTAT");
    }
}

/// Polls `check` every 20 ms until it is true or `limit` passes; returns whether it became true.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A primary and its replicas (started with `--replicaof`), replication link up.
pub struct Replicated {
    pub primary: RedisServer,
    pub replicas: Vec<RedisServer>,
}

/// Starts a primary with `n` replicas and waits until every replica's link is up.
pub async fn replicated(n: usize) -> Replicated {
    let primary = RedisServer::start().unwrap_or_else(|e| panic!("cannot start redis-server: {e}"));
    let port = primary.port().to_string();
    let replicas: Vec<RedisServer> = (0..n)
        .map(|_| {
            RedisServer::start_with(&["--replicaof", "127.0.0.1", &port])
                .unwrap_or_else(|e| panic!("cannot start replica: {e}"))
        })
        .collect();
    for r in &replicas {
        let up = eventually(Duration::from_secs(10), || async {
            r.info_field("replication", "master_link_status")
                .ok()
                .flatten()
                .as_deref()
                == Some("up")
        })
        .await;
        assert!(up, "replica {} never linked to its primary", r.url());
    }
    Replicated { primary, replicas }
}

/// Waits until every replica has replicated everything its primary holds.
pub async fn wait_replicated(shard: &Replicated) {
    for r in &shard.replicas {
        r.wait_caught_up(&shard.primary, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Health options that make tests fast: probes every 50 ms.
pub fn fast_health() -> shardis::HealthOptions {
    let mut h = shardis::HealthOptions::default();
    h.interval = Duration::from_millis(50);
    h.probe_timeout = Duration::from_millis(50);
    h
}

/// Waits for the first event matching `want`, up to `limit`.
pub async fn wait_event(
    events: &mut tokio::sync::broadcast::Receiver<shardis::Event>,
    limit: Duration,
    want: impl Fn(&shardis::Event) -> bool,
) -> Option<shardis::Event> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(e)) if want(&e) => return Some(e),
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
            _ => return None,
        }
    }
}

/// A temporary file holding `text` (a config file, a password file); removed when dropped.
pub fn write_file(text: &str) -> tempfile::NamedTempFile {
    use std::io::Write;
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}
