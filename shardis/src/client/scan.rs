//! The whole fleet: `scan_match` (SCAN on every shard's primary, as one stream) and
//! `on_every_shard` (one keyless command on every shard).

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::future::join_all;
use futures_util::stream::{self, BoxStream, Stream, StreamExt, TryStreamExt};
use redis::{Cmd, FromRedisValue, ToSingleRedisArg, Value};

use super::args::ArgSink;
use super::exec::Access;
use super::guard::command_keys;
use super::Client;
use crate::error::{Error, ErrorKind, Result};
use crate::node::Request;
use crate::router::RoutingTable;
use crate::topology::ShardName;

/// The `COUNT` hint of every `SCAN` call: how many slots of its keyspace a server walks per
/// call. Larger means fewer round trips and longer single calls on the server.
pub(crate) const SCAN_COUNT: usize = 1000;

impl Client {
    /// Every key matching `pattern` (Redis glob syntax, as `SCAN ... MATCH`), from every
    /// shard's primary, as a stream: shards are scanned concurrently with `SCAN cursor MATCH
    /// pattern COUNT 1000`, one batch at a time per shard, so the keyspace is never held in
    /// memory.
    ///
    /// ```no_run
    /// # async fn run(client: shardis::Client) -> shardis::Result<()> {
    /// use futures_util::TryStreamExt;
    /// let keys: Vec<String> = client.scan_match("user:*").try_collect().await?;
    /// # let _ = keys; Ok(()) }
    /// ```
    ///
    /// Redis's `SCAN` guarantees apply per shard: a key present for the whole scan is
    /// returned, at least once; a key the server sees again while it resizes its table may
    /// come back twice, and keys written or deleted during the scan may or may not appear.
    /// Each shard is one server, so on a fleet whose keys are where the placement puts them
    /// each key comes from one shard only.
    ///
    /// **Topology changes during a scan.** The shards of the routing table in force when the
    /// scan starts are scanned to the end, even if a swap removes one meanwhile (its
    /// connections stay open until its scan ends); shards added by a swap during the scan are
    /// scanned after them. A swap moves no data, so a key may be seen on its old owner and,
    /// once rewritten there, on its new one: deduplicate if that matters.
    ///
    /// A key that is not UTF-8 ends the stream with an [`ErrorKind::Type`] error; use
    /// [`scan_match_bytes`](Self::scan_match_bytes) for binary keys. An error of one shard
    /// (down, timed out) is an item of the stream; the other shards' keys keep coming.
    pub fn scan_match<P: ToSingleRedisArg>(
        &self,
        pattern: P,
    ) -> impl Stream<Item = Result<String>> + Send + Unpin + 'static {
        self.scan_match_bytes(pattern)
            .and_then(|key| async move {
                String::from_utf8(key).map_err(|_| {
                    Error::new(
                        ErrorKind::Type,
                        "scan_match: a key is not UTF-8; use scan_match_bytes",
                    )
                })
            })
            .boxed()
    }

    /// [`scan_match`](Self::scan_match) with keys as bytes: binary keys included.
    pub fn scan_match_bytes<P: ToSingleRedisArg>(
        &self,
        pattern: P,
    ) -> impl Stream<Item = Result<Vec<u8>>> + Send + Unpin + 'static {
        let mut bytes = Vec::new();
        pattern.write_redis_args(&mut ArgSink::new(&mut bytes));
        let pattern: Arc<[u8]> = bytes.into();
        let table = self.shared.router.load();
        let first: Vec<ShardName> = table.shards().iter().map(|r| r.name.clone()).collect();
        let now = self.scan_shards(table, first.clone(), pattern.clone());
        // Shards a swap added while the first ones were scanned, from the table then current.
        let client = self.clone();
        let later = stream::once(async move {
            let table = client.shared.router.load();
            let seen: HashSet<&ShardName> = first.iter().collect();
            let added: Vec<ShardName> = table
                .shards()
                .iter()
                .map(|r| r.name.clone())
                .filter(|n| !seen.contains(n))
                .collect();
            client.scan_shards(table, added, pattern)
        })
        .flatten();
        now.chain(later).boxed()
    }

    /// Scans the named shards of `table` concurrently, as one stream of keys.
    fn scan_shards(
        &self,
        table: Arc<RoutingTable>,
        shards: Vec<ShardName>,
        pattern: Arc<[u8]>,
    ) -> BoxStream<'static, Result<Vec<u8>>> {
        let client = self.clone();
        stream::iter(shards)
            .map(move |name| client.scan_shard(table.clone(), name, pattern.clone()))
            .flatten_unordered(None)
            .boxed()
    }

    /// One shard's keys: `SCAN` calls on its primary until the cursor comes back to 0.
    fn scan_shard(
        &self,
        table: Arc<RoutingTable>,
        shard: ShardName,
        pattern: Arc<[u8]>,
    ) -> BoxStream<'static, Result<Vec<u8>>> {
        let client = self.clone();
        let batches = stream::try_unfold(Some(0u64), move |cursor| {
            let (client, table, shard, pattern) = (
                client.clone(),
                table.clone(),
                shard.clone(),
                pattern.clone(),
            );
            async move {
                let Some(cursor) = cursor else {
                    return Ok::<_, Error>(None);
                };
                let Some(route) = table.shard(&shard) else {
                    return Ok(None);
                };
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(&*pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT);
                let reply = client
                    .exec(&table, route, "SCAN", Request::Cmd(&cmd), Access::Write)
                    .await?;
                let (next, keys): (u64, Vec<Vec<u8>>) = FromRedisValue::from_redis_value(reply)
                    .map_err(|e| Error::conversion(e).with_shard(shard.as_str()))?;
                Ok(Some((keys, (next != 0).then_some(next))))
            }
        });
        batches
            .map_ok(|keys| stream::iter(keys.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    /// Runs one keyless command (`INFO`, `DBSIZE`, `PING`, `SCRIPT FLUSH`, `CONFIG GET`...) on
    /// every shard's primary at once: one result per shard, in topology order.
    ///
    /// ```no_run
    /// # async fn run(client: shardis::Client) {
    /// use shardis::ShardName;
    /// let info: Vec<(ShardName, shardis::Result<String>)> =
    ///     client.on_every_shard(&redis::cmd("INFO")).await;
    /// # let _ = info; }
    /// ```
    ///
    /// A command with keys, and what [`query`](Self::query) refuses (`SELECT`, `MULTI`,
    /// blocking commands...), are [`ErrorKind::InvalidInput`] for every shard; nothing is
    /// sent. A shard that is down has its own error; the others answer.
    pub async fn on_every_shard<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
    ) -> Vec<(ShardName, Result<T>)> {
        tokio::task::coop::consume_budget().await;
        let table = self.shared.router.load();
        let refused = refusal(cmd).is_some();
        let table = &table;
        let sends = table.shards().iter().map(|route| async move {
            let result = match refused.then(|| refusal(cmd)).flatten() {
                Some(e) => Err(e),
                None => self
                    .exec(table, route, "QUERY", Request::Cmd(cmd), Access::Write)
                    .await
                    .and_then(|reply: Value| {
                        T::from_redis_value(reply)
                            .map_err(|e| Error::conversion(e).with_shard(route.name.as_str()))
                    }),
            };
            (route.name.clone(), result)
        });
        join_all(sends).await
    }
}

/// Why `on_every_shard` refuses `cmd`, if it does: it has keys, or `query` refuses it. A
/// command the key tables do not know is allowed: it may be keyless (`ACL LIST`).
fn refusal(cmd: &Cmd) -> Option<Error> {
    match command_keys("on_every_shard", cmd) {
        Ok(keys) if !keys.positions.is_empty() => Some(Error::invalid_input(format!(
            "on_every_shard: {} has keys; route it by its key with query, or use \
             query_pipeline",
            keys.shown()
        ))),
        Ok(_) => None,
        Err(e) if e.to_string().contains("does not know where the keys") => None,
        Err(e) => Some(e),
    }
}
