//! The public client: one cheap-to-clone handle that a whole service shares.
//!
//! Every command takes the same path, one function deep: load the routing table once, hash the
//! key to a shard, pick the shard's node, run the command on a pooled multiplexed connection.
//! Multi-key commands are split per shard, sent to all shards at once, and reassembled in the
//! caller's order; they are never routed by their first key.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use std::ops::Range;

use redis::{Cmd, FromRedisValue, RedisWrite, ToRedisArgs, Value};
use tracing::Instrument;

use crate::config::{check_health, check_pool, Config, Options};
use crate::control::{unavailable, ConfigWatch, ShardStatus, Shared};
use crate::error::{ConfigError, Error, ErrorKind, Result};
use crate::health::{Event, HealthOptions};
use crate::node::Node;
use crate::placement::{HashTag, PlacementSpec};
use crate::router::{OnPrimaryDown, ReadFrom, RoutingTable, ShardRoute};
use crate::topology::{ShardName, ShardSpec, Topology};

/// A sharded Redis client.
///
/// `Client` is `Clone + Send + Sync`; clones share the routing table and the connection pools.
///
/// ```no_run
/// # async fn run() -> shardis::Result<()> {
/// use std::time::Duration;
/// let client = shardis::Client::builder()
///     .shard("cache-a", "redis://127.0.0.1:7001")
///     .shard("cache-b", "redis://127.0.0.1:7002")
///     .build()
///     .await?;
/// client.set("user:1", "alice").await?;
/// client.set_ex("session:9", b"\x00bytes", Duration::from_secs(60)).await?;
/// let v: Option<String> = client.get("user:1").await?;
/// assert_eq!(v.as_deref(), Some("alice"));
/// let vals: Vec<Option<String>> = client.mget(&["a", "b", "c"]).await?;
/// client.mset(&[("a", "1"), ("b", "2")]).await?;
/// let n: usize = client.del_many(&["a", "b"]).await?;
/// println!("user:1 lives on {}", client.locate("user:1"));
/// let mut incr = redis::cmd("INCR");
/// incr.arg("counter");
/// let r: i64 = client.query("counter", &incr).await?;
/// # let _ = (vals, n, r);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let table = self.shared.router.load();
        f.debug_struct("Client")
            .field("version", &table.version)
            .field("placement", &table.options.placement.algorithm())
            .field("shards", &table.topology)
            .finish()
    }
}

/// Whether a command only reads (and may go to a replica under the read policy) or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

/// The remaining time to live of a key, as answered by `PTTL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// The key does not exist.
    Missing,
    /// The key exists and has no expiry.
    Persistent,
    /// The key expires after this long.
    ExpiresIn(Duration),
}

/// Builds a [`Client`].
///
/// Defaults: `rendezvous_table` placement, no hash tag, 1 connection per endpoint, 500 ms
/// connect and response timeouts, health probes every 250 ms, reads from primaries, fail fast
/// when a primary is down, and a connection check of every primary at [`build`](Self::build).
#[derive(Debug, Default)]
#[must_use]
pub struct ClientBuilder {
    shards: Vec<ShardSpec>,
    options: Options,
    hash_tag: Option<String>,
    lazy: bool,
}

impl ClientBuilder {
    /// Adds a shard with weight 1 and no replica.
    pub fn shard(mut self, name: impl Into<String>, primary_url: impl Into<String>) -> Self {
        self.shards.push(ShardSpec::new(name, primary_url));
        self
    }

    /// Takes the shards and every setting from a parsed config file, replacing what was set
    /// before.
    pub fn config(mut self, config: Config) -> Self {
        let (topology, options) = config.into_parts();
        self.shards = topology
            .shards()
            .iter()
            .map(|s| {
                let mut spec =
                    ShardSpec::new(s.name().as_str(), s.primary().secret_url()).weight(s.weight());
                for r in s.replicas() {
                    spec = spec.replica(r.secret_url());
                }
                spec
            })
            .collect();
        self.hash_tag = options.hash_tag.map(|t| t.to_string());
        self.options = options;
        self
    }

    /// Adds a fully described shard (weight, replicas).
    pub fn shard_spec(mut self, spec: ShardSpec) -> Self {
        self.shards.push(spec);
        self
    }

    /// Hashes only the part of a key between the two tag characters, e.g. `"{}"`.
    /// Defaults to none.
    pub fn hash_tag(mut self, tag: impl Into<String>) -> Self {
        self.hash_tag = Some(tag.into());
        self
    }

    /// The placement algorithm. Defaults to `rendezvous_table` with 2^21 arcs.
    pub fn placement(mut self, spec: PlacementSpec) -> Self {
        self.options.placement = spec;
        self
    }

    /// Multiplexed connections per endpoint. Defaults to 1.
    pub fn connections_per_endpoint(mut self, n: u32) -> Self {
        self.options.pool.connections_per_endpoint = n;
        self
    }

    /// Connect (and connection wait) timeout. Defaults to 500 ms.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.pool.connect_timeout = timeout;
        self
    }

    /// Response timeout. Defaults to 500 ms.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.options.pool.response_timeout = timeout;
        self
    }

    /// Health monitoring settings. Defaults to [`HealthOptions::default`].
    pub fn health(mut self, health: HealthOptions) -> Self {
        self.options.health = health;
        self
    }

    /// Where reads go. Defaults to [`ReadFrom::Primary`].
    pub fn read_from(mut self, policy: ReadFrom) -> Self {
        self.options.routing.read_from = policy;
        self
    }

    /// What a shard with a down primary does. Defaults to [`OnPrimaryDown::FailFast`].
    pub fn on_primary_down(mut self, policy: OnPrimaryDown) -> Self {
        self.options.routing.on_primary_down = policy;
        self
    }

    /// With [`OnPrimaryDown::Eject`], empty a shard (`FLUSHDB`) before it rejoins. Defaults to
    /// false.
    pub fn flush_on_rejoin(mut self, flush: bool) -> Self {
        self.options.routing.flush_on_rejoin = flush;
        self
    }

    /// The largest key accepted, in bytes. Defaults to 512 MiB, Redis's own limit.
    pub fn max_key_bytes(mut self, n: usize) -> Self {
        self.options.max_key_bytes = n;
        self
    }

    /// Skips the connection check at [`build`](Self::build): pools connect in the background
    /// and an unreachable shard fails its own requests only. Defaults to false.
    pub fn lazy_connect(mut self, lazy: bool) -> Self {
        self.lazy = lazy;
        self
    }

    /// Validates the topology and options, opens the pools and, unless
    /// [`lazy_connect`](Self::lazy_connect), waits until every shard's primary accepts a
    /// connection (each bounded by the connect timeout).
    pub async fn build(mut self) -> Result<Client> {
        if let Some(tag) = &self.hash_tag {
            self.options.hash_tag = Some(HashTag::parse(tag)?);
        }
        if self.options.max_key_bytes == 0 {
            return Err(ConfigError::InvalidValue {
                field: "limits.max_key_bytes".into(),
                reason: "must be at least 1".into(),
            }
            .into());
        }
        check_pool(&self.options.pool)?;
        check_health(&self.options.health)?;
        let topology = Topology::new(self.shards)?;
        Client::start(topology, self.options, self.lazy).await
    }
}

impl Client {
    /// A builder with the defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client from a TOML config file (see [`Config`]).
    pub async fn from_config_file(path: impl AsRef<std::path::Path>) -> Result<Client> {
        Client::from_config(Config::from_file(path)?).await
    }

    /// A client from a parsed config.
    pub async fn from_config(config: Config) -> Result<Client> {
        let (topology, options) = config.into_parts();
        Client::start(topology, options, false).await
    }

    async fn start(topology: Topology, options: Options, lazy: bool) -> Result<Client> {
        Ok(Client {
            shared: Shared::start(topology, options, lazy).await?,
        })
    }

    /// The name of the shard that owns `key` under the current topology.
    ///
    /// A key made of several arguments is located by their concatenation; commands reject
    /// such keys.
    ///
    /// While shards are ejected (`on_primary_down = "eject"`) their keys are located on their
    /// next owner; if every shard is ejected, the name of the key's owner with all shards in.
    pub fn locate<K: ToRedisArgs>(&self, key: K) -> ShardName {
        let table = self.shared.router.load();
        // A key of several arguments is located by their concatenation, as the sink writes them.
        let mut bytes = Vec::new();
        key.write_redis_args(&mut ArgSink::new(&mut bytes));
        match table.shard_index(&bytes) {
            Some(i) => table.shards[i].name.clone(),
            None => table
                .owner_without_ejections(&bytes)
                .unwrap_or(&table.shards[0].name)
                .clone(),
        }
    }

    /// The current topology, as configured (roles as written, ejected shards included).
    pub fn topology(&self) -> Topology {
        self.shared.router.load().topology.clone()
    }

    /// The version of the current routing table: 1 at start, raised by each change (topology
    /// swap, ejection, rejoin, promotion).
    pub fn topology_version(&self) -> u64 {
        self.shared.router.load().version
    }

    /// Subscribes to health transitions, topology changes, ejections, promotions and rejected
    /// configs. A subscriber that falls more than 1024 events behind loses the oldest
    /// (`RecvError::Lagged`).
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.shared.subscribe()
    }

    /// Replaces the topology under load: the new routing table is built off to the side (pools
    /// of unchanged endpoints reused, new primaries connected and checked), then made current
    /// with one atomic store. Requests in flight finish on the table they started with; pools
    /// no longer used close once idle. An invalid topology, or a new primary that cannot be
    /// reached, is rejected with its typed error and the current one stays in force. Returns
    /// the new table's version.
    pub async fn update_topology(&self, topology: Topology) -> Result<u64> {
        self.shared.update(topology, None).await
    }

    /// Reads a config file and applies its topology and settings as
    /// [`update_topology`](Self::update_topology) does. Pool and health settings apply to
    /// endpoints opened after the change (changed settings reopen every endpoint's pool).
    pub async fn reload_config(&self, path: impl AsRef<std::path::Path>) -> Result<u64> {
        self.shared.reload(path.as_ref()).await
    }

    /// Reloads the config file whenever its content changes, checking every `every`. A
    /// rejected file is reported ([`Event::ConfigRejected`] and a log line) and the current
    /// topology stays. The watch stops when the returned handle is dropped.
    pub fn watch_config(
        &self,
        path: impl Into<std::path::PathBuf>,
        every: Duration,
    ) -> ConfigWatch {
        ConfigWatch::start(&self.shared, path.into(), every)
    }

    /// Every shard and endpoint with its role, health, and the role and replication offset its
    /// server reports.
    pub async fn status(&self) -> Vec<ShardStatus> {
        self.shared.status().await
    }

    /// `GET key`: `None`-able types (`Option<T>`) see a missing key as `None`.
    pub async fn get<K: ToRedisArgs, V: FromRedisValue>(&self, key: K) -> Result<V> {
        let key = self.key(&key)?;
        let mut cmd = redis::cmd("GET");
        cmd.arg(&key);
        self.run("GET", &key, &cmd, Access::Read).await
    }

    /// `SET key value`.
    pub async fn set<K: ToRedisArgs, V: ToRedisArgs>(&self, key: K, value: V) -> Result<()> {
        let key = self.key(&key)?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key).arg(single_value(&value)?);
        self.run("SET", &key, &cmd, Access::Write).await
    }

    /// `SET key value PX ttl`: the expiry has millisecond precision and must be at least 1 ms.
    pub async fn set_ex<K: ToRedisArgs, V: ToRedisArgs>(
        &self,
        key: K,
        value: V,
        ttl: Duration,
    ) -> Result<()> {
        let key = self.key(&key)?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key)
            .arg(single_value(&value)?)
            .arg("PX")
            .arg(millis(ttl)?);
        self.run("SET", &key, &cmd, Access::Write).await
    }

    /// `DEL key`: true if the key existed.
    pub async fn del<K: ToRedisArgs>(&self, key: K) -> Result<bool> {
        let key = self.key(&key)?;
        let mut cmd = redis::cmd("DEL");
        cmd.arg(&key);
        self.run::<u64>("DEL", &key, &cmd, Access::Write)
            .await
            .map(|n| n > 0)
    }

    /// `EXISTS key`.
    pub async fn exists<K: ToRedisArgs>(&self, key: K) -> Result<bool> {
        let key = self.key(&key)?;
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(&key);
        self.run::<u64>("EXISTS", &key, &cmd, Access::Read)
            .await
            .map(|n| n > 0)
    }

    /// `PEXPIRE key ttl`: true if the key exists and now expires.
    pub async fn expire<K: ToRedisArgs>(&self, key: K, ttl: Duration) -> Result<bool> {
        let key = self.key(&key)?;
        let mut cmd = redis::cmd("PEXPIRE");
        cmd.arg(&key).arg(millis(ttl)?);
        self.run::<u64>("PEXPIRE", &key, &cmd, Access::Write)
            .await
            .map(|n| n > 0)
    }

    /// `PTTL key`, as a [`Ttl`].
    pub async fn ttl<K: ToRedisArgs>(&self, key: K) -> Result<Ttl> {
        let key = self.key(&key)?;
        let mut cmd = redis::cmd("PTTL");
        cmd.arg(&key);
        let ms: i64 = self.run("PTTL", &key, &cmd, Access::Read).await?;
        Ok(match ms {
            -2 => Ttl::Missing,
            -1 => Ttl::Persistent,
            ms => Ttl::ExpiresIn(Duration::from_millis(ms.max(0) as u64)),
        })
    }

    /// `INCRBY key delta`: the new value.
    pub async fn incr<K: ToRedisArgs>(&self, key: K, delta: i64) -> Result<i64> {
        let key = self.key(&key)?;
        let mut cmd = redis::cmd("INCRBY");
        cmd.arg(&key).arg(delta);
        self.run("INCRBY", &key, &cmd, Access::Write).await
    }

    /// Runs any single-key command on the primary of the shard that owns `key`.
    ///
    /// The command is sent as built; `key` only routes it, so it must be the key the command
    /// operates on (or share its hash tag). It is treated as a write: never sent to a replica,
    /// never retried.
    pub async fn query<K: ToRedisArgs, T: FromRedisValue>(&self, key: K, cmd: &Cmd) -> Result<T> {
        let key = self.key(&key)?;
        self.run("QUERY", &key, cmd, Access::Write).await
    }

    /// Runs a read-only single-key command (e.g. `HGETALL`, `SMEMBERS`) on the shard that owns
    /// `key`, following the read policy: it may go to a replica, and may be retried on another
    /// endpoint of the shard after a connection error or timeout. Never use it for a command
    /// that writes.
    pub async fn query_read<K: ToRedisArgs, T: FromRedisValue>(
        &self,
        key: K,
        cmd: &Cmd,
    ) -> Result<T> {
        let key = self.key(&key)?;
        self.run("QUERY", &key, cmd, Access::Read).await
    }

    /// `MGET` over any number of keys, split per shard and sent concurrently; values come back
    /// in the order of `keys`, duplicates included. A shard that fails fails the call.
    pub async fn mget<K: ToRedisArgs, V: FromRedisValue>(&self, keys: &[K]) -> Result<Vec<V>> {
        let keys = self.keys(keys.iter())?;
        let mut out: Vec<Value> = vec![Value::Nil; keys.len()];
        let (order, replies) = self
            .fan_out("MGET", Access::Read, &keys, |cmd, i| {
                cmd.arg(keys.get(i));
            })
            .await?;
        for (range, reply) in replies {
            scatter(&mut out, &order[range], reply)?;
        }
        out.into_iter()
            .map(|v| V::from_redis_value(v).map_err(Error::conversion))
            .collect()
    }

    /// `MSET` over any number of pairs, split per shard and sent concurrently. Each shard's
    /// part is atomic; the whole is not: if one shard fails, others may have been written.
    pub async fn mset<K: ToRedisArgs, V: ToRedisArgs>(&self, items: &[(K, V)]) -> Result<()> {
        let keys = self.keys(items.iter().map(|(k, _)| k))?;
        let values = flatten(items.iter().map(|(_, v)| v), "a value", usize::MAX)?;
        self.fan_out("MSET", Access::Write, &keys, |cmd, i| {
            cmd.arg(keys.get(i)).arg(values.get(i));
        })
        .await
        .map(|_| ())
    }

    /// `DEL` over any number of keys, split per shard and sent concurrently: how many existed.
    pub async fn del_many<K: ToRedisArgs>(&self, keys: &[K]) -> Result<usize> {
        let keys = self.keys(keys.iter())?;
        let (_, replies) = self
            .fan_out("DEL", Access::Write, &keys, |cmd, i| {
                cmd.arg(keys.get(i));
            })
            .await?;
        replies.into_iter().try_fold(0usize, |sum, (_, reply)| {
            usize::from_redis_value(reply)
                .map(|n| sum + n)
                .map_err(Error::conversion)
        })
    }

    /// The request path of every single-key command.
    async fn run<T: FromRedisValue>(
        &self,
        name: &'static str,
        key: &[u8],
        cmd: &Cmd,
        access: Access,
    ) -> Result<T> {
        let table = self.shared.router.load();
        let route = table.route(key).ok_or_else(no_shard)?;
        let reply = self.exec(&table, route, name, cmd, access).await?;
        T::from_redis_value(reply).map_err(|e| Error::conversion(e).with_shard(route.name.as_str()))
    }

    /// Sends `cmd` to the endpoint of `route` that the policies choose; a read that fails with
    /// a connection error or timeout is sent once more, at once, to the fallback endpoint.
    async fn exec(
        &self,
        table: &RoutingTable,
        route: &ShardRoute,
        name: &'static str,
        cmd: &Cmd,
        access: Access,
    ) -> Result<Value> {
        let routing = &table.options.routing;
        let (first, fallback) = match access {
            Access::Read => route.read_targets(routing.read_from),
            Access::Write => (route.write_target(), None),
        };
        let node = first
            .ok_or_else(|| unavailable(route, access == Access::Write, routing.on_primary_down))?;
        match self.attempt(route, node, name, cmd).await {
            Err(e) if e.is_failover_candidate() => match fallback {
                Some(other) => self.attempt(route, other, name, cmd).await,
                None => Err(e),
            },
            result => result,
        }
    }

    /// One try on one endpoint, counted for its health.
    async fn attempt(
        &self,
        route: &ShardRoute,
        node: &Arc<Node>,
        name: &'static str,
        cmd: &Cmd,
    ) -> Result<Value> {
        let span = tracing::debug_span!(
            "shardis",
            cmd = name,
            shard = %route.name,
            endpoint = node.label()
        );
        let result = node.query(cmd).instrument(span).await;
        let health = node.health_state();
        let transition = match &result {
            Ok(_) => health.request_success(),
            Err(e) if e.is_failover_candidate() => health.failure(),
            Err(_) => None,
        };
        if let Some(t) = transition {
            self.shared.transition(route, node, t);
        }
        result.map_err(|e| e.with_shard(route.name.as_str()))
    }

    /// Groups `keys` by shard, builds one `name` command per shard with `add(cmd, index)` for
    /// each of its keys, and sends them all at once. Returns the key indices sorted by shard,
    /// and for each shard the range of that order its command covered, with its reply.
    async fn fan_out(
        &self,
        name: &'static str,
        access: Access,
        keys: &FlatArgs,
        mut add: impl FnMut(&mut Cmd, usize),
    ) -> Result<(Vec<usize>, Vec<(Range<usize>, Value)>)> {
        if keys.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let table = self.shared.router.load();
        let owners = (0..keys.len())
            .map(|i| table.shard_index(keys.get(i)).ok_or_else(no_shard))
            .collect::<Result<Vec<usize>>>()?;
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by_key(|i| owners[*i]);
        let mut groups: Vec<(usize, Range<usize>)> = Vec::new();
        for (at, &i) in order.iter().enumerate() {
            match groups.last_mut() {
                Some((shard, range)) if *shard == owners[i] => range.end = at + 1,
                _ => groups.push((owners[i], at..at + 1)),
            }
        }
        let table = &table;
        let requests: Vec<_> = groups
            .into_iter()
            .map(|(shard, range)| {
                let route = &table.shards[shard];
                let mut cmd =
                    Cmd::with_capacity(range.len() + 1, keys.bytes_in(&order[range.clone()]) + 16);
                cmd.arg(name);
                for &i in &order[range.clone()] {
                    add(&mut cmd, i);
                }
                async move {
                    let reply = self.exec(table, route, name, &cmd, access).await?;
                    Ok::<_, Error>((range, reply))
                }
            })
            .collect();
        // Collect every shard's outcome before returning, so no request is left half-read.
        let replies = join_all(requests)
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        Ok((order, replies))
    }

    /// The key as the single argument it must be, within the size limit.
    fn key<K: ToRedisArgs>(&self, key: &K) -> Result<Vec<u8>> {
        let limit = self.shared.max_key_bytes();
        let mut bytes = Vec::new();
        let mut sink = ArgSink::new(&mut bytes);
        key.write_redis_args(&mut sink);
        check_one("a key", sink.args, bytes.len(), limit)?;
        Ok(bytes)
    }

    /// Many keys, each a single argument within the size limit, in one buffer.
    fn keys<'k, K: ToRedisArgs + 'k>(&self, keys: impl Iterator<Item = &'k K>) -> Result<FlatArgs> {
        flatten(keys, "a key", self.shared.max_key_bytes())
    }
}

/// Arguments written back to back into one buffer: no allocation per argument.
#[derive(Debug)]
struct FlatArgs {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl FlatArgs {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// Total bytes of the arguments at `indices`.
    fn bytes_in(&self, indices: &[usize]) -> usize {
        indices.iter().map(|&i| self.get(i).len()).sum()
    }
}

/// Writes each item (which must be exactly one argument of at most `limit` bytes) into one
/// buffer.
fn flatten<'a, T: ToRedisArgs + 'a>(
    items: impl Iterator<Item = &'a T>,
    what: &str,
    limit: usize,
) -> Result<FlatArgs> {
    let mut flat = FlatArgs {
        bytes: Vec::new(),
        ends: Vec::with_capacity(items.size_hint().0),
    };
    for item in items {
        let start = flat.bytes.len();
        let mut sink = ArgSink::new(&mut flat.bytes);
        item.write_redis_args(&mut sink);
        let args = sink.args;
        check_one(what, args, flat.bytes.len() - start, limit)?;
        flat.ends.push(flat.bytes.len());
    }
    Ok(flat)
}

fn check_one(what: &str, args: usize, len: usize, limit: usize) -> Result<()> {
    if args != 1 {
        return Err(Error::invalid_input(format!(
            "{what} must be exactly one argument, this one is {args}"
        )));
    }
    if len > limit {
        return Err(Error::invalid_input(format!(
            "{what} of {len} bytes is over the limit of {limit} bytes"
        )));
    }
    Ok(())
}

/// A `RedisWrite` that appends every argument to one buffer and counts them.
struct ArgSink<'a> {
    out: &'a mut Vec<u8>,
    args: usize,
}

impl<'a> ArgSink<'a> {
    fn new(out: &'a mut Vec<u8>) -> ArgSink<'a> {
        ArgSink { out, args: 0 }
    }
}

impl RedisWrite for ArgSink<'_> {
    fn write_arg(&mut self, arg: &[u8]) {
        self.args += 1;
        self.out.extend_from_slice(arg);
    }

    fn write_arg_fmt(&mut self, arg: impl std::fmt::Display) {
        use std::io::Write;
        self.args += 1;
        // Writing into a Vec cannot fail.
        let _ = write!(self.out, "{arg}");
    }

    fn writer_for_next_arg(&mut self) -> impl std::io::Write + '_ {
        self.args += 1;
        &mut *self.out
    }
}

/// The error of a request when every shard is ejected.
fn no_shard() -> Error {
    Error::new(
        ErrorKind::ShardUnavailable,
        "every shard is ejected (its primary down); no shard can take the key",
    )
}

/// Puts a shard's `MGET` reply at its keys' positions.
fn scatter(out: &mut [Value], positions: &[usize], reply: Value) -> Result<()> {
    let Value::Array(values) = reply else {
        return Err(Error::new(
            ErrorKind::Type,
            format!("MGET answered {reply:?} instead of an array"),
        ));
    };
    if values.len() != positions.len() {
        return Err(Error::new(
            ErrorKind::Type,
            format!(
                "MGET answered {} values for {} keys",
                values.len(),
                positions.len()
            ),
        ));
    }
    for (&i, v) in positions.iter().zip(values) {
        out[i] = v;
    }
    Ok(())
}

/// A value as the single argument it must be.
fn single_value<V: ToRedisArgs>(value: &V) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut sink = ArgSink::new(&mut bytes);
    value.write_redis_args(&mut sink);
    check_one("a value", sink.args, 0, usize::MAX)?;
    Ok(bytes)
}

/// An expiry in whole milliseconds, at least 1.
fn millis(ttl: Duration) -> Result<u64> {
    let ms = ttl.as_millis();
    if ms == 0 {
        return Err(Error::invalid_input(format!(
            "an expiry must be at least 1 ms, got {ttl:?}"
        )));
    }
    u64::try_from(ms)
        .ok()
        .filter(|ms| *ms <= i64::MAX as u64)
        .ok_or_else(|| Error::invalid_input(format!("expiry {ttl:?} is too long")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_by_a_whole_service<T: Clone + Send + Sync + 'static>() {}

    #[test]
    fn client_is_clone_send_sync() {
        shared_by_a_whole_service::<Client>();
        // The futures of its methods can be spawned on a multi-threaded runtime.
        fn spawnable<F: std::future::Future + Send>(_: F) {}
        let c: Option<Client> = None;
        if let Some(c) = c {
            spawnable(async move { c.get::<_, Option<String>>("k").await });
        }
    }

    #[test]
    fn flat_args_count_and_bound_arguments() {
        let keys = flatten([&"a", &"bcd", &""].into_iter(), "a key", 3).unwrap();
        assert_eq!(
            (keys.len(), keys.get(0), keys.get(1), keys.get(2)),
            (3, &b"a"[..], &b"bcd"[..], &b""[..])
        );
        assert_eq!(keys.bytes_in(&[0, 1]), 4);
        let too_long = flatten([&"abcd"].into_iter(), "a key", 3).unwrap_err();
        assert_eq!(too_long.kind(), ErrorKind::InvalidInput);
        let two = flatten([&vec!["x", "y"]].into_iter(), "a key", 10).unwrap_err();
        assert!(two.to_string().contains("exactly one argument"), "{two}");
        let number = flatten([&42i64].into_iter(), "a key", 10).unwrap();
        assert_eq!(number.get(0), b"42");
    }
}
