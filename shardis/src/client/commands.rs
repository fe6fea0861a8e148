//! The public commands: single-key commands routed by their key, and multi-key commands split
//! per shard. Keys are `ToSingleRedisArg`, so a key made of several arguments does not compile.

use std::time::Duration;

use redis::{Cmd, FromRedisValue, ToRedisArgs, ToSingleRedisArg, Value};

use super::args::{flatten, millis, single_value, MAX_VALUE_BYTES};
use super::exec::{keyed_with, routing_key, Access};
use super::fanout::gather;
use super::guard;
use super::{Client, Ttl};
use crate::error::{Error, Result};

impl Client {
    /// `GET key`: `None`-able types (`Option<T>`) see a missing key as `None`.
    ///
    /// A key is one argument (`&str`, `String`, `&[u8]`, `Vec<u8>`, integers, and references
    /// to them); a key of several arguments is a compile error, not a runtime one:
    ///
    /// ```compile_fail
    /// # async fn run(client: shardis::Client) -> shardis::Result<()> {
    /// let v: Option<String> = client.get(&["two", "args"][..]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn get<K: ToSingleRedisArg, V: FromRedisValue>(&self, key: K) -> Result<V> {
        let cmd = self.keyed("GET", &key, 0, 0)?;
        self.run("GET", routing_key(&cmd), &cmd, Access::Read).await
    }

    /// `SET key value`.
    pub async fn set<K: ToSingleRedisArg, V: ToRedisArgs>(&self, key: K, value: V) -> Result<()> {
        let key_len = self.key_len(&key)?;
        let (value, len) = single_value(&value)?;
        let mut cmd = keyed_with("SET", &key, key_len, 1, len);
        cmd.arg(value);
        self.run("SET", routing_key(&cmd), &cmd, Access::Write)
            .await
    }

    /// `SET key value PX ttl`: the expiry has millisecond precision and must be at least 1 ms.
    pub async fn set_ex<K: ToSingleRedisArg, V: ToRedisArgs>(
        &self,
        key: K,
        value: V,
        ttl: Duration,
    ) -> Result<()> {
        let key_len = self.key_len(&key)?;
        let (value, len) = single_value(&value)?;
        let ms = millis(ttl)?;
        let mut cmd = keyed_with("SET", &key, key_len, 3, len + 22);
        cmd.arg(value).arg("PX").arg(ms);
        self.run("SET", routing_key(&cmd), &cmd, Access::Write)
            .await
    }

    /// `DEL key`: true if the key existed.
    pub async fn del<K: ToSingleRedisArg>(&self, key: K) -> Result<bool> {
        let cmd = self.keyed("DEL", &key, 0, 0)?;
        self.run::<u64>("DEL", routing_key(&cmd), &cmd, Access::Write)
            .await
            .map(|n| n > 0)
    }

    /// `EXISTS key`.
    pub async fn exists<K: ToSingleRedisArg>(&self, key: K) -> Result<bool> {
        let cmd = self.keyed("EXISTS", &key, 0, 0)?;
        self.run::<u64>("EXISTS", routing_key(&cmd), &cmd, Access::Read)
            .await
            .map(|n| n > 0)
    }

    /// `PEXPIRE key ttl`: true if the key exists and now expires.
    pub async fn expire<K: ToSingleRedisArg>(&self, key: K, ttl: Duration) -> Result<bool> {
        let key_len = self.key_len(&key)?;
        let ms = millis(ttl)?;
        let mut cmd = keyed_with("PEXPIRE", &key, key_len, 1, 20);
        cmd.arg(ms);
        self.run::<u64>("PEXPIRE", routing_key(&cmd), &cmd, Access::Write)
            .await
            .map(|n| n > 0)
    }

    /// `PTTL key`, as a [`Ttl`].
    pub async fn ttl<K: ToSingleRedisArg>(&self, key: K) -> Result<Ttl> {
        let cmd = self.keyed("PTTL", &key, 0, 0)?;
        let ms: i64 = self
            .run("PTTL", routing_key(&cmd), &cmd, Access::Read)
            .await?;
        Ok(match ms {
            -2 => Ttl::Missing,
            -1 => Ttl::Persistent,
            ms => Ttl::ExpiresIn(Duration::from_millis(ms.max(0) as u64)),
        })
    }

    /// `INCRBY key delta`: the new value.
    pub async fn incr<K: ToSingleRedisArg>(&self, key: K, delta: i64) -> Result<i64> {
        let mut cmd = self.keyed("INCRBY", &key, 1, 20)?;
        cmd.arg(delta);
        self.run("INCRBY", routing_key(&cmd), &cmd, Access::Write)
            .await
    }

    /// Runs any single-key command on the primary of the shard that owns `key`.
    ///
    /// The command is sent as built; `key` only routes it, so it must be the key the command
    /// operates on (or share its hash tag). It is treated as a write: never sent to a replica,
    /// never retried.
    ///
    /// The connection is shared by every clone of the client, so some commands are refused
    /// with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) before anything is
    /// sent: those that change the connection's state (`SELECT`, `MULTI`, `AUTH`, ...), turn
    /// it into a message stream (`SUBSCRIBE`, `MONITOR`, ...) or block it (`BLPOP`, `WAIT`,
    /// `XREAD ... BLOCK`, ...), `CLIENT` subcommands other than the read-only ones, and
    /// multi-key commands (`MGET`, `RENAME`, `EVAL` with keys, ...) with a key on another
    /// shard than `key`. Give such keys one hash tag, or use
    /// [`mget`](Self::mget)/[`mset`](Self::mset)/[`del_many`](Self::del_many).
    pub async fn query<K: ToSingleRedisArg, T: FromRedisValue>(
        &self,
        key: K,
        cmd: &Cmd,
    ) -> Result<T> {
        let key = self.key(&key)?;
        self.check_query(&key, cmd)?;
        self.run("QUERY", &key, cmd, Access::Write).await
    }

    /// Runs a read-only single-key command (e.g. `HGETALL`, `SMEMBERS`) on the shard that owns
    /// `key`, following the read policy: it may go to a replica, and may be retried on another
    /// endpoint of the shard after a connection error or timeout. Never use it for a command
    /// that writes. It refuses what [`query`](Self::query) refuses.
    pub async fn query_read<K: ToSingleRedisArg, T: FromRedisValue>(
        &self,
        key: K,
        cmd: &Cmd,
    ) -> Result<T> {
        let key = self.key(&key)?;
        self.check_query(&key, cmd)?;
        self.run("QUERY", &key, cmd, Access::Read).await
    }

    /// Refuses what `query` must not send (see [`guard`](super::guard)). The routing table is
    /// loaded only for a multi-key command with a key other than `key`; the request path loads
    /// it again. A topology change in between cannot split keys that share a hash tag (they
    /// hash alike under every table); keys on one shard by chance may be split by it, as they
    /// may between any two calls, so give multi-key commands' keys one hash tag.
    fn check_query(&self, key: &[u8], cmd: &Cmd) -> Result<()> {
        let table = std::cell::OnceCell::new();
        let locate = |k: &[u8]| {
            table
                .get_or_init(|| self.shared.router.load())
                .shard_index(k)
        };
        guard::check(cmd, key, &locate)
    }

    /// `MGET` over any number of keys, split per shard and sent concurrently; values come back
    /// in the order of `keys`, duplicates included. A shard that fails fails the call.
    pub async fn mget<K: ToSingleRedisArg, V: FromRedisValue>(&self, keys: &[K]) -> Result<Vec<V>> {
        let keys = self.keys(keys.iter())?;
        let mut out: Vec<Value> = vec![Value::Nil; keys.len()];
        let (plan, replies) = self
            .fan_out("MGET", Access::Read, &keys, |cmd, i| {
                cmd.arg(keys.get(i));
            })
            .await?;
        for (range, reply) in replies {
            gather(&mut out, plan.positions(&range), reply)?;
        }
        out.into_iter()
            .map(|v| V::from_redis_value(v).map_err(Error::conversion))
            .collect()
    }

    /// `MSET` over any number of pairs, split per shard and sent concurrently. Each shard's
    /// part is atomic; the whole is not: if one shard fails, others may have been written.
    pub async fn mset<K: ToSingleRedisArg, V: ToRedisArgs>(&self, items: &[(K, V)]) -> Result<()> {
        let keys = self.keys(items.iter().map(|(k, _)| k))?;
        let values = flatten(items.iter().map(|(_, v)| v), "a value", MAX_VALUE_BYTES)?;
        self.fan_out("MSET", Access::Write, &keys, |cmd, i| {
            cmd.arg(keys.get(i)).arg(values.get(i));
        })
        .await
        .map(|_| ())
    }

    /// `DEL` over any number of keys, split per shard and sent concurrently: how many existed.
    pub async fn del_many<K: ToSingleRedisArg>(&self, keys: &[K]) -> Result<usize> {
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
}
