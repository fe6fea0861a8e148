//! Commands addressed to a shard by name rather than by key, for work that visits every shard
//! (the cache layer's `SCAN` + `UNLINK` over each primary).

use redis::{Cmd, FromRedisValue};

use super::exec::Access;
use super::Client;
use crate::error::{Error, ErrorKind, Result};
use crate::node::Request;
use crate::topology::ShardName;

impl Client {
    /// The names of every shard of the routing table in force, ejected ones included.
    #[cfg_attr(not(feature = "cache"), allow(dead_code))]
    pub(crate) fn shard_names(&self) -> Vec<ShardName> {
        let table = self.shared.router.load();
        table.shards().iter().map(|r| r.name.clone()).collect()
    }

    /// Runs `cmd` on the primary of the shard called `shard` (a write: never on a replica,
    /// never retried), recorded as a `QUERY`. The command is not checked: callers send only
    /// commands that are safe on a shared connection.
    #[cfg_attr(not(feature = "cache"), allow(dead_code))]
    pub(crate) async fn run_on_shard<T: FromRedisValue>(
        &self,
        shard: &ShardName,
        cmd: &Cmd,
    ) -> Result<T> {
        let table = self.shared.router.load();
        let Some(route) = table.shard(shard) else {
            return Err(
                Error::new(ErrorKind::ShardUnavailable, "the shard left the topology")
                    .with_shard(shard.as_str()),
            );
        };
        let reply = self
            .exec(&table, route, "QUERY", Request::Cmd(cmd), Access::Write)
            .await?;
        T::from_redis_value(reply).map_err(|e| Error::conversion(e).with_shard(shard.as_str()))
    }
}
