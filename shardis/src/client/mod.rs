//! The public client: one cheap-to-clone handle that a whole service shares.
//!
//! Every command takes the same path, one function deep: load the routing table once, hash the
//! key to a shard, pick the shard's node, run the command on a pooled multiplexed connection.
//! Multi-key commands are split per shard, sent to all shards at once, and reassembled in the
//! caller's order; they are never routed by their first key.
//!
//! - `builder`: [`ClientBuilder`].
//! - `commands`: the public commands.
//! - `exec`: the request path (route, policy, attempt, health record, fan-out).
//! - `fanout`: the pure per-shard plan of a multi-key command and the gathering of replies.
//! - `hedge`: hedged reads (`hedge_after_ms`): the race of a slow read against its shard's
//!   other endpoint. (Read coalescing, per endpoint, lives in `node`.)
//! - `args`: argument encoding and limits.
//! - `shardwise`: commands addressed to a shard by name (work that visits every shard).
//! - `guard`: what `query` refuses before sending (connection-state, blocking and cross-shard
//!   commands), and the keys of every command a pipeline may carry.
//! - `pipeline`: sharded pipelines and single-shard transactions (a pure plan, then one
//!   sub-pipeline per shard through `exec`).
//! - `scan`: `scan_match` and `on_every_shard`, the whole fleet.
//! - `script` (feature `scripts`): Lua scripts on the shard of their keys.
//! - `warm`, `migrate` (feature `warm`): the warm-resharding steps of the request path, and
//!   `migrate_moved_keys`.

use std::sync::Arc;
use std::time::Duration;

use redis::ToSingleRedisArg;

use crate::config::Config;
use crate::control::{ConfigWatch, ShardStatus, Shared};
use crate::error::Result;
use crate::health::Event;
use crate::options::Options;
use crate::topology::{ShardName, Topology};

mod args;
mod builder;
mod commands;
mod exec;
mod fanout;
mod guard;
mod hedge;
#[cfg(feature = "warm")]
mod migrate;
mod pipeline;
mod scan;
#[cfg(feature = "scripts")]
mod script;
mod shardwise;
#[cfg(feature = "warm")]
mod warm;

use args::ArgSink;
pub use builder::ClientBuilder;
#[cfg(feature = "warm")]
pub use migrate::MigrationReport;

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
            .field("version", &table.version())
            .field("placement", &table.options().placement_source().name())
            .field("shards", table.topology())
            .finish()
    }
}

/// The remaining time to live of a key, as answered by `PTTL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ttl {
    /// The key does not exist.
    Missing,
    /// The key exists and has no expiry.
    Persistent,
    /// The key expires after this long.
    ExpiresIn(Duration),
}

impl Client {
    /// A builder with the defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client from a TOML config file (see [`Config`]).
    pub async fn from_config_file(path: impl AsRef<std::path::Path>) -> Result<Client> {
        Client::from_config(Config::load(path).await?).await
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
    /// While shards are ejected (`on_primary_down = "eject"`) their keys are located on their
    /// next owner; if every shard is ejected, the name of the key's owner with all shards in.
    pub fn locate<K: ToSingleRedisArg>(&self, key: K) -> ShardName {
        let table = self.shared.router.load();
        let mut bytes = Vec::new();
        key.write_redis_args(&mut ArgSink::new(&mut bytes));
        match table.shard_index(&bytes) {
            Some(i) => table.shards()[i].name.clone(),
            None => table
                .owner_without_ejections(&bytes)
                .unwrap_or(&table.shards()[0].name)
                .clone(),
        }
    }

    /// The current topology, as configured (roles as written, ejected shards included).
    pub fn topology(&self) -> Topology {
        self.shared.router.load().topology().clone()
    }

    /// The version of the current routing table: 1 at start, raised by each change (topology
    /// swap, ejection, rejoin, promotion).
    pub fn topology_version(&self) -> u64 {
        self.shared.router.load().version()
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

    /// Applies a parsed config's topology and settings as
    /// [`reload_config`](Self::reload_config) does (for configs that do not come from a file
    /// the client can read).
    pub async fn apply_config(&self, config: Config) -> Result<u64> {
        let (topology, options) = config.into_parts();
        self.shared.update(topology, Some(options)).await
    }

    /// Reloads the config file whenever its content changes (or that of a `password_file`,
    /// a Sentinel shard's `sentinel.password_file`, or a `[tls]` file it names), checking
    /// every `every`. A rejected file is reported ([`Event::ConfigRejected`] and a log line) and the current
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
            let c = &c;
            spawnable(async move { c.get::<_, Option<String>>("k").await });
            spawnable(async move {
                let pipe = redis::pipe();
                c.query_pipeline::<redis::Value>(&pipe).await
            });
            spawnable(async move { c.on_every_shard::<String>(&redis::cmd("PING")).await });
            spawnable(async move {
                use futures_util::StreamExt;
                c.scan_match("*").next().await
            });
            #[cfg(feature = "scripts")]
            spawnable(async move {
                let script = redis::Script::new("return 1");
                c.invoke_script::<_, u8, i64>(&script, &["k"], &[]).await
            });
            #[cfg(feature = "lock")]
            spawnable(async move {
                let lock = c.lock("l").acquire().await?;
                lock.extend(Duration::from_secs(1)).await?;
                lock.release().await
            });
            #[cfg(feature = "rate-limit")]
            spawnable(async move {
                let limit = crate::RateLimit::per_second(1);
                c.rate_limit("k", limit).await
            });
        }
    }
}
