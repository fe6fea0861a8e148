//! Sharded pipelines and single-shard transactions: `Client::query_pipeline`.
//!
//! A pipeline is planned first (`plan`: every command's keys found from the command tables,
//! each command given to the shard of its keys, split multi-key commands divided per shard),
//! then one sub-pipeline per shard is sent through the request path (`exec`: read policy,
//! failover of reads, health and metrics), all at once, and the replies are put back in the
//! pipeline's order. The caller's own `redis::Pipeline` then completes the call from those
//! replies, so `.ignore()`, `ignore_errors()` and reply conversion behave exactly as redis-rs's.

use futures_util::future::join_all;
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, Value};

use super::exec::{fail_fast, needed_role, no_shard, Access};
use super::guard::{command_keys, CommandKeys};
use super::Client;
use crate::error::{Error, ErrorKind, Result};
use crate::metrics;
use crate::node::Request;
use crate::router::RoutingTable;

pub(crate) mod plan;

use plan::{one_shard, sub_pipeline, Gathered, Part, Placement, Plan};

impl Client {
    /// Runs a `redis::Pipeline` over the shards: each command is routed by its keys, one
    /// sub-pipeline per shard is sent, all shards at once, and the replies come back in the
    /// pipeline's order, `.ignore()`d ones left out, converted to `T` as redis-rs does.
    ///
    /// ```no_run
    /// # async fn run(client: shardis::Client) -> shardis::Result<()> {
    /// let mut pipe = redis::pipe();
    /// pipe.get("user:1").set("user:2", "b").ignore().incr("hits:{user:1}", 1);
    /// let (a, hits): (Option<String>, i64) = client.query_pipeline(&pipe).await?;
    ///
    /// // A transaction: MULTI/EXEC on the one shard of its keys.
    /// let mut tx = redis::pipe();
    /// tx.atomic().incr("{user:1}:visits", 1).expire("{user:1}:visits", 60);
    /// let (visits, _): (i64, bool) = client.query_pipeline(&tx).await?;
    /// # let _ = (a, hits, visits); Ok(()) }
    /// ```
    ///
    /// - **Keys** are found as Redis defines them, from tables of the commands a cache uses
    ///   (the first argument of single-key commands, the `numkeys` of `EVAL`-like ones, the
    ///   `STREAMS` part of `XREAD`, ...). A command not in the tables, a keyless command
    ///   (`PING`, `INFO`: see [`on_every_shard`](Self::on_every_shard)) and what
    ///   [`query`](Self::query) refuses (`SELECT`, `MULTI`, blocking commands...) are
    ///   [`ErrorKind::InvalidInput`]; nothing is sent.
    /// - **Multi-key commands**: `MGET`, `MSET`, `DEL`, `UNLINK`, `EXISTS` and `TOUCH` are
    ///   split per shard like [`mget`](Self::mget) and their reply put back together (each
    ///   shard's part is atomic, the whole is not). Any other multi-key command whose keys
    ///   span shards is [`ErrorKind::CrossShard`], before anything is sent.
    /// - **Errors**: as with redis-rs, an error reply fails the call (unless the pipeline has
    ///   `ignore_errors()`); the error says which command and shard, and other commands (on
    ///   every shard) have run. A shard that is down fails the call only if the pipeline has a
    ///   command for it. A shard whose commands all read follows the read policy like
    ///   [`query_read`](Self::query_read) (it may be answered by a replica, and retried on the
    ///   other endpoint after a connection failure).
    /// - **Cost**: each shard's commands are copied into a pipeline of their own (redis-rs
    ///   sends only whole pipelines); a pipeline whose commands all go whole to one shard (keys
    ///   sharing a hash tag) is sent as it is, without the copy.
    /// - **Transactions** (`pipe.atomic()`): the keys of every command must be on one shard,
    ///   else [`ErrorKind::CrossShard`] names two keys and their shards before anything is
    ///   sent. The pipeline runs as `MULTI`/`EXEC` on that shard's primary, written as one
    ///   block on the connection so no other caller's command joins it. Keyless commands may
    ///   join a transaction that has a key. As in Redis, a command refused while queueing
    ///   (`EXECABORT`) runs nothing; an error while running does not undo the others.
    pub async fn query_pipeline<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T> {
        tokio::task::coop::consume_budget().await;
        let originals: Vec<&Cmd> = pipe.cmd_iter().collect();
        // A plain loop: each record is written into its slot once.
        let mut commands: Vec<CommandKeys<'_>> = Vec::with_capacity(originals.len());
        for (i, cmd) in originals.iter().enumerate() {
            match command_keys("query_pipeline", cmd) {
                Ok(keys) => commands.push(keys),
                Err(_) => {
                    // Again, with the command's index in the message: errors only.
                    let who = format!("query_pipeline (command {i})");
                    return Err(match command_keys(&who, cmd) {
                        Err(e) => e,
                        Ok(_) => Error::invalid_input(who),
                    });
                }
            }
        }
        if commands.is_empty() {
            return complete(pipe, empty_replies(pipe), &[], &|_| None, None);
        }
        let table = self.shared.router.load();
        let locate = |key: &[u8]| table.shard_index(key);
        let name = |shard: usize| table.shards()[shard].name.to_string();
        let at = Placement {
            locate: &locate,
            name: &name,
        };
        if pipe.is_transaction() {
            return self
                .transaction(&table, pipe, &commands, &originals, &at)
                .await;
        }
        let plan = match Plan::new(&commands, &at) {
            Err(e) if e.kind() == ErrorKind::ShardUnavailable => {
                return Err(self.nowhere(&table, "PIPELINE", Access::Write).await)
            }
            other => other?,
        };
        // A pipeline whose every command goes whole to one shard (keys sharing a hash tag, a
        // one-shard fleet) is sent as it is: no copy of its commands.
        let whole_to_one = plan.batches.len() == 1
            && plan.batches[0]
                .pieces
                .iter()
                .all(|(_, part)| *part == Part::Whole);
        let subs = if whole_to_one {
            Vec::new()
        } else {
            plan.batches
                .iter()
                .map(|b| sub_pipeline(b, &commands, &originals))
                .collect::<Result<Vec<_>>>()?
        };
        let table = &table;
        let sends = plan.batches.iter().enumerate().map(|(i, batch)| {
            let sub = subs.get(i).unwrap_or(pipe);
            let route = &table.shards()[batch.shard];
            let access = if batch.read {
                Access::Read
            } else {
                Access::Write
            };
            self.exec(table, route, "PIPELINE", Request::Pipeline(sub), access)
        });
        // Every shard's outcome is collected before returning: no request is left half-read.
        let replies = join_all(sends).await;
        let mut gathered = Gathered::new(&commands);
        for (batch, reply) in plan.batches.iter().zip(replies) {
            let shard = table.shards()[batch.shard].name.as_str();
            gathered
                .add(batch, reply?)
                .map_err(|e| e.with_shard(shard))?;
        }
        let shards = gathered.shards;
        let name = |i: usize| {
            let shard = *shards.get(i)?;
            Some(table.shards().get(shard).map_or("", |r| r.name.as_str()))
        };
        complete(pipe, gathered.replies, &commands, &name, None)
    }

    /// An atomic pipeline: `MULTI`/`EXEC` on the one shard of its keys.
    async fn transaction<T: FromRedisValue>(
        &self,
        table: &RoutingTable,
        pipe: &Pipeline,
        commands: &[CommandKeys<'_>],
        originals: &[&Cmd],
        at: &Placement<'_>,
    ) -> Result<T> {
        let keys = commands.iter().flat_map(|c| c.keys());
        let shard = match one_shard(&|| "query_pipeline: the transaction".into(), keys, at) {
            Ok(Some(shard)) => shard,
            Ok(None) => {
                return Err(Error::invalid_input(
                    "query_pipeline: the transaction has no key, so no shard to run on; use \
                     on_every_shard for keyless commands",
                ))
            }
            Err(e) if e.kind() == ErrorKind::ShardUnavailable => {
                return Err(self.nowhere(table, "MULTI", Access::Write).await)
            }
            Err(e) => return Err(e),
        };
        let route = &table.shards()[shard];
        let mut tx = Pipeline::with_capacity(originals.len());
        for cmd in originals {
            tx.add_command((*cmd).clone());
        }
        tx.atomic().ignore_errors();
        let reply = self
            .exec(table, route, "MULTI", Request::Pipeline(&tx), Access::Write)
            .await?;
        let replies = match reply {
            // `EXEC` answered nil: the transaction was aborted.
            Value::Nil => vec![Value::Nil],
            items => vec![items],
        };
        let shard = route.name.as_str();
        complete(pipe, replies, commands, &|_| Some(shard), Some(shard))
    }

    /// The error of a request when no shard takes keys (every shard ejected).
    pub(super) async fn nowhere(
        &self,
        table: &RoutingTable,
        name: &'static str,
        access: Access,
    ) -> Error {
        let role = needed_role(access, table.options().routing.read_from);
        metrics::unavailable(None, role, name);
        fail_fast(no_shard()).await
    }
}

/// What an empty pipeline is answered.
fn empty_replies(pipe: &Pipeline) -> Vec<Value> {
    if pipe.is_transaction() {
        vec![Value::Array(Vec::new())]
    } else {
        Vec::new()
    }
}

/// Lets the caller's pipeline complete the call from `replies` (in its order; a transaction's
/// as the one `EXEC` reply), as redis-rs would from a connection: ignored commands left out,
/// error replies failing the call unless it has `ignore_errors()`, conversion to `T`. An error
/// reply is reported with its command's index and name and the shard that answered it
/// (`shard_of`, asked only then).
fn complete<'s, T: FromRedisValue>(
    pipe: &Pipeline,
    replies: Vec<Value>,
    commands: &[CommandKeys<'_>],
    shard_of: &dyn Fn(usize) -> Option<&'s str>,
    transaction_shard: Option<&str>,
) -> Result<T> {
    let mut replay = Replay(Some(replies));
    let result = futures_util::FutureExt::now_or_never(pipe.query_async::<T>(&mut replay));
    let Some(result) = result else {
        return Err(Error::new(
            ErrorKind::Type,
            "the pipeline did not complete from its replies",
        ));
    };
    result.map_err(|e| {
        let conversion = matches!(
            e.kind(),
            redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType
        );
        let first = if conversion {
            None
        } else {
            e.clone()
                .into_server_errors()
                .and_then(|errors| errors.first().cloned())
        };
        match first {
            Some((i, server)) => {
                let shard = shard_of(i).or(transaction_shard).unwrap_or("");
                let name = commands.get(i).map(|c| c.shown()).unwrap_or_default();
                Error::new(
                    ErrorKind::Server,
                    format!("pipeline command {i} ({name}) failed: {server}"),
                )
                .with_source(redis::RedisError::from(server))
                .with_shard(shard)
            }
            None => {
                let e = Error::from_redis(e);
                match transaction_shard {
                    Some(shard) => e.with_shard(shard),
                    None => e,
                }
            }
        }
    })
}

/// A stand-in connection holding a pipeline's replies, so that the caller's `Pipeline`
/// completes the call itself (its ignored commands are not public).
struct Replay(Option<Vec<Value>>);

impl redis::aio::ConnectionLike for Replay {
    fn req_packed_command<'a>(&'a mut self, _cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async {
            Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "a replay answers pipelines only",
            )))
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        _pipeline: &'a Pipeline,
        _offset: usize,
        _count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let replies = self.0.take().unwrap_or_default();
        Box::pin(async move { Ok(replies) })
    }

    fn get_db(&self) -> i64 {
        0
    }
}
