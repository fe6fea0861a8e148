//! Lua scripts on the shard of their keys: `Client::invoke_script` (feature `scripts`).

use redis::{FromRedisValue, ToRedisArgs, ToSingleRedisArg};

use super::exec::Access;
use super::pipeline::plan::{one_shard, Placement};
use super::Client;
use crate::error::{Error, ErrorKind, Result};
use crate::node::Request;
use crate::router::{RoutingTable, ShardRoute};

impl Client {
    /// Runs a Lua script on the shard of its keys: `EVALSHA`, and when the server answers
    /// `NOSCRIPT` (a restarted or flushed server, a new shard) `SCRIPT LOAD` and the call
    /// once more, on the same connection's endpoint.
    ///
    /// ```no_run
    /// # async fn run(client: shardis::Client) -> shardis::Result<()> {
    /// let script = redis::Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    /// let n: i64 = client.invoke_script(&script, &["counter:{a}"], &[5]).await?;
    /// # let _ = n; Ok(()) }
    /// ```
    ///
    /// Every key must be on one shard (give them one hash tag), else
    /// [`ErrorKind::CrossShard`] names two keys and their shards before anything is sent. A
    /// script needs at least one key to have a shard ([`ErrorKind::InvalidInput`] otherwise;
    /// run a keyless script everywhere with [`on_every_shard`](Self::on_every_shard)). Keys
    /// must be passed as keys, not as arguments: a script that touches a key it was not given
    /// may touch the wrong shard. The script runs on the primary, is treated as a write and
    /// never retried elsewhere; an error raised by the script is an
    /// [`ErrorKind::Server`] error.
    #[cfg_attr(docsrs, doc(cfg(feature = "scripts")))]
    pub async fn invoke_script<K: ToSingleRedisArg, A: ToRedisArgs, T: FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[K],
        args: &[A],
    ) -> Result<T> {
        tokio::task::coop::consume_budget().await;
        let flat = self.keys(keys.iter())?;
        let table = self.shared.router.load();
        let locate = |key: &[u8]| table.shard_index(key);
        let name = |shard: usize| table.shards()[shard].name.to_string();
        let at = Placement {
            locate: &locate,
            name: &name,
        };
        let shard = one_shard(
            &|| "invoke_script: the script".into(),
            (0..flat.len()).map(|i| flat.get(i)),
            &at,
        );
        let shard =
            match shard {
                Ok(Some(shard)) => shard,
                Ok(None) => return Err(Error::invalid_input(
                    "invoke_script: the script has no key, so no shard to run on; pass the keys \
                     it touches as keys, or use on_every_shard",
                )),
                Err(e) if e.kind() == ErrorKind::ShardUnavailable => {
                    return Err(self.nowhere(&table, "EVALSHA", Access::Write).await)
                }
                Err(e) => return Err(e),
            };
        let mut call = script.prepare_invoke();
        for i in 0..flat.len() {
            call.key(flat.get(i));
        }
        for a in args {
            call.arg(a);
        }
        self.script_on(&table, &table.shards()[shard], &call).await
    }

    /// Runs a prepared script on the shard that owns `route_key`, whatever its keys: for the
    /// recipes, whose extra keys (a fencing counter) live on the shard of their main key.
    #[allow(dead_code)] // used by the recipe features
    pub(crate) async fn run_script<T: FromRedisValue>(
        &self,
        route_key: &[u8],
        call: &redis::ScriptInvocation<'_>,
    ) -> Result<T> {
        tokio::task::coop::consume_budget().await;
        let table = self.shared.router.load();
        let Some(route) = table.route(route_key) else {
            return Err(self.nowhere(&table, "EVALSHA", Access::Write).await);
        };
        self.script_on(&table, route, call).await
    }

    async fn script_on<T: FromRedisValue>(
        &self,
        table: &RoutingTable,
        route: &ShardRoute,
        call: &redis::ScriptInvocation<'_>,
    ) -> Result<T> {
        // Boxed: a script call's future (EVALSHA, SCRIPT LOAD on NOSCRIPT, the retry) nested in
        // the request path's and then in a caller's (the lock's retry loop, a task per worker)
        // can exceed the compiler's layout depth limit in the caller's crate.
        let reply = Box::pin(self.exec(
            table,
            route,
            "EVALSHA",
            Request::Script(call),
            Access::Write,
        ))
        .await?;
        T::from_redis_value(reply).map_err(|e| Error::conversion(e).with_shard(route.name.as_str()))
    }
}
