//! Warm resharding on the request path (feature `warm`): the small steps the request path
//! takes for a key whose owner changed in the open warm window (see `control/warm.rs`).
//!
//! - A read that misses on the new owner moves the key over from its previous owner (`move_key`)
//!   and is sent once more to the new owner.
//! - A write or delete first removes the key from its previous owner (`SET` and `DEL`, which
//!   replace the value whole), or moves it over (any other write through `query`, e.g.
//!   `INCRBY`, `HSET`, `PEXPIRE`, which build on the value), and only then runs.
//!
//! Moving one key, with `old` its previous owner and `new` its owner:
//! 1. at `old`, by the read policy: `DUMP` and `PTTL` in one script (nothing there: done);
//! 2. at `new`: `RESTORE key ttl payload` without `REPLACE`: a value written at `new` in the
//!    meantime is never overwritten (`BUSYKEY`);
//! 3. at `old`'s primary: delete the key only if its `DUMP` still equals the payload copied;
//! 4. if it did not (the key was written or deleted at `old` after step 1, or `old` cannot be
//!    reached), delete the copy at `new` if it is still the payload copied.
//!
//! Since writers delete at `old` before they write or delete at `new`, a value deleted during
//! the window cannot come back: either the writer's delete at `old` came before step 1 (nothing
//! is copied), or between steps 1 and 3 (step 4 takes the copy back), or after step 3 (then its
//! delete at `new` comes after the copy and removes it).

use std::sync::{Arc, LazyLock};

use futures_util::future::{join_all, BoxFuture};
use futures_util::FutureExt;
use redis::{Cmd, Script, Value};

use super::exec::Access;
use super::Client;
use crate::control::Window;
use crate::error::{Error, ErrorKind, Result};
use crate::node::Request;
use crate::router::{RoutingTable, ShardRoute};

/// `DUMP` and `PTTL` of one key, atomically: `nil` when it does not exist.
static FETCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local p = redis.call('DUMP', KEYS[1]) \
         if not p then return false end \
         return {p, redis.call('PTTL', KEYS[1])}",
    )
});

/// Deletes a key only if its `DUMP` equals `ARGV[1]`: 1 if it did.
static DELETE_IF_SAME: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('DUMP', KEYS[1]) == ARGV[1] then \
         return redis.call('DEL', KEYS[1]) end \
         return 0",
    )
});

/// A moved key's other owner in the open window.
#[derive(Debug)]
pub(crate) struct Previous {
    /// The table in which `shard` is found (the window's `from` table, or for a request in
    /// flight across the change, the current one).
    pub(crate) table: Arc<RoutingTable>,
    pub(crate) shard: usize,
    pub(crate) window: Arc<Window>,
    /// False for a request on a table older than the change: it may delete at the other
    /// owner, but it does not read through it.
    reads: bool,
}

impl Previous {
    /// `shard` of `table` as the previous owner in `window`, read through.
    pub(super) fn new(table: Arc<RoutingTable>, shard: usize, window: Arc<Window>) -> Previous {
        Previous {
            table,
            shard,
            window,
            reads: true,
        }
    }

    fn route(&self) -> &ShardRoute {
        &self.table.shards()[self.shard]
    }
}

/// What moving one key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MoveOutcome {
    /// The previous owner did not have it (never there, moved already, expired or deleted).
    Absent,
    /// Copied to the new owner with its remaining TTL, and removed from the previous owner.
    Moved,
    /// The new owner had a value already (written since the change); the previous owner's
    /// copy was removed if unchanged.
    Newer,
    /// A write or delete at the previous owner raced the move; the copy was taken back.
    Undone,
    /// An owner failed to answer; nothing is known to have moved.
    Failed,
}

impl Client {
    /// The other owner of `key` (owned by `route` in `table`) in the open warm window, if the
    /// change moved it and that owner was not found unreachable in the window.
    #[inline]
    pub(super) fn previous_owner(
        &self,
        table: &RoutingTable,
        route: &ShardRoute,
        key: &[u8],
    ) -> Option<Previous> {
        let window = self.shared.warm.current()?;
        let (other, reads) = if table.version() >= window.to_version {
            (window.from.clone(), true)
        } else {
            (self.shared.router.load(), false)
        };
        let shard = other.shard_index(key)?;
        let name = &other.shards()[shard].name;
        if *name == route.name || window.is_down(name) {
            return None;
        }
        Some(Previous {
            table: other,
            shard,
            window,
            reads,
        })
    }

    /// Before a write of `key` through `name`: removes the key from its previous owner, or
    /// for a write that builds on the value, moves it over first. Returns how many keys were
    /// deleted at the previous owner.
    pub(super) async fn before_write(
        &self,
        table: &RoutingTable,
        route: &ShardRoute,
        previous: &Previous,
        name: &'static str,
        key: &[u8],
    ) -> u64 {
        if previous.reads && !matches!(name, "SET" | "DEL") {
            match self.move_key(table, route, previous, key).await {
                MoveOutcome::Failed => {}
                _ => return 0,
            }
        }
        let mut del = redis::cmd("DEL");
        del.arg(key);
        self.forget(previous, &del).await
    }

    /// After a read of `key` answered `reply`: if it looks like a miss, moves the key over
    /// from its previous owner. True when the new owner now has a value to read again.
    pub(super) async fn warmed(
        &self,
        table: &RoutingTable,
        route: &ShardRoute,
        previous: &Previous,
        name: &'static str,
        key: &[u8],
        reply: &Value,
    ) -> bool {
        previous.reads
            && looks_missing(name, reply)
            && matches!(
                self.move_key(table, route, previous, key).await,
                MoveOutcome::Moved | MoveOutcome::Newer
            )
    }

    /// The moved keys among `positions` of `keys` (a part of a multi-key command on
    /// `route`), with their index in the part.
    pub(super) fn previous_owners(
        &self,
        table: &RoutingTable,
        route: &ShardRoute,
        keys: &super::args::FlatArgs,
        positions: &[usize],
    ) -> Vec<(usize, Previous)> {
        if self.shared.warm.current().is_none() {
            return Vec::new();
        }
        positions
            .iter()
            .enumerate()
            .filter_map(|(j, &i)| Some((j, self.previous_owner(table, route, keys.get(i))?)))
            .collect()
    }

    /// Before a multi-key write: deletes the moved keys at their previous owners, one `DEL`
    /// per previous owner.
    pub(super) async fn before_write_many(
        &self,
        moved: &[(usize, Previous)],
        keys: &super::args::FlatArgs,
        positions: &[usize],
    ) {
        let mut groups: Vec<(&Previous, Cmd)> = Vec::new();
        for (j, p) in moved {
            let key = keys.get(positions[*j]);
            match groups
                .iter_mut()
                .find(|(q, _)| Arc::ptr_eq(&q.table, &p.table) && q.shard == p.shard)
            {
                Some((_, del)) => {
                    del.arg(key);
                }
                None => {
                    let mut del = redis::cmd("DEL");
                    del.arg(key);
                    groups.push((p, del));
                }
            }
        }
        join_all(groups.iter().map(|(p, del)| self.forget(p, del))).await;
    }

    /// After a part of an `MGET`: moves over the moved keys it missed and reads them again
    /// from the new owner.
    pub(super) async fn warmed_many(
        &self,
        table: &RoutingTable,
        route: &ShardRoute,
        moved: &[(usize, Previous)],
        keys: &super::args::FlatArgs,
        positions: &[usize],
        reply: Value,
    ) -> Result<Value> {
        let Value::Array(mut values) = reply else {
            return Ok(reply);
        };
        let refetched = join_all(
            moved
                .iter()
                .filter(|(j, _)| matches!(values.get(*j), Some(Value::Nil)))
                .map(|(j, p)| async move {
                    let key = keys.get(positions[*j]);
                    let mut get = redis::cmd("GET");
                    get.arg(key);
                    if !self.warmed(table, route, p, "GET", key, &Value::Nil).await {
                        return Ok(None);
                    }
                    let v =
                        Box::pin(self.exec(table, route, "GET", Request::Cmd(&get), Access::Read))
                            .await?;
                    Ok::<_, Error>(Some((*j, v)))
                }),
        )
        .await;
        for r in refetched {
            if let Some((j, v)) = r? {
                values[j] = v;
            }
        }
        Ok(Value::Array(values))
    }

    /// Moves `key` from its previous owner to `route` (see the module doc). Its future is
    /// boxed and erased: it nests several request-path futures, and callers nest it again.
    pub(super) fn move_key<'a>(
        &'a self,
        table: &'a RoutingTable,
        route: &'a ShardRoute,
        previous: &'a Previous,
        key: &'a [u8],
    ) -> BoxFuture<'a, MoveOutcome> {
        self.move_key_now(table, route, previous, key).boxed()
    }

    async fn move_key_now(
        &self,
        table: &RoutingTable,
        route: &ShardRoute,
        previous: &Previous,
        key: &[u8],
    ) -> MoveOutcome {
        let (from, old) = (&previous.table, previous.route());
        let mut fetch = FETCH.prepare_invoke();
        fetch.key(key);
        let fetched =
            Box::pin(self.exec(from, old, "EVALSHA", Request::Script(&fetch), Access::Read)).await;
        let (payload, pttl) = match fetched {
            Ok(Value::Nil) => return MoveOutcome::Absent,
            Ok(Value::Array(v)) => match <[Value; 2]>::try_from(v) {
                Ok([Value::BulkString(p), Value::Int(t)]) => (p, t),
                _ => return MoveOutcome::Failed,
            },
            Ok(_) => return MoveOutcome::Failed,
            Err(e) => return self.unreachable(previous, &e),
        };
        // 0: expiring this very millisecond. -1: no expiry (`RESTORE` ttl 0).
        if pttl == 0 || pttl < -1 {
            return MoveOutcome::Absent;
        }
        let mut restore = redis::cmd("RESTORE");
        restore.arg(key).arg(pttl.max(0)).arg(&payload);
        let restored = match Box::pin(self.exec(
            table,
            route,
            "RESTORE",
            Request::Cmd(&restore),
            Access::Write,
        ))
        .await
        {
            Ok(_) => true,
            Err(e) if e.server_code() == Some("BUSYKEY") => false,
            Err(e) => {
                tracing::debug!(shard = %route.name, "shardis: warm copy failed: {e}");
                return MoveOutcome::Failed;
            }
        };
        let mut forget = DELETE_IF_SAME.prepare_invoke();
        forget.key(key).arg(&payload);
        let removed = Box::pin(self.exec(
            from,
            old,
            "EVALSHA",
            Request::Script(&forget),
            Access::Write,
        ))
        .await;
        match removed {
            _ if !restored => MoveOutcome::Newer,
            Ok(Value::Int(1)) => MoveOutcome::Moved,
            other => {
                if let Err(e) = &other {
                    self.unreachable(previous, e);
                }
                let mut undo = DELETE_IF_SAME.prepare_invoke();
                undo.key(key).arg(&payload);
                let undone = Box::pin(self.exec(
                    table,
                    route,
                    "EVALSHA",
                    Request::Script(&undo),
                    Access::Write,
                ))
                .await;
                if let Err(e) = undone {
                    tracing::warn!(shard = %route.name, "shardis: taking back a warm copy failed: {e}");
                }
                MoveOutcome::Undone
            }
        }
    }

    /// Runs `del` (a `DEL` of keys) at the previous owner: how many it deleted. A previous
    /// owner that cannot be reached is not consulted again in the window.
    async fn forget(&self, previous: &Previous, del: &Cmd) -> u64 {
        let (from, old) = (&previous.table, previous.route());
        match Box::pin(self.exec(from, old, "DEL", Request::Cmd(del), Access::Write)).await {
            Ok(Value::Int(n)) => n.max(0) as u64,
            Ok(_) => 0,
            Err(e) => {
                self.unreachable(previous, &e);
                0
            }
        }
    }

    /// Notes a failure at the previous owner: unreachable ones are marked down for the
    /// window, so their keys are cold from then on (not an error).
    fn unreachable(&self, previous: &Previous, e: &Error) -> MoveOutcome {
        let old = previous.route();
        if e.is_failover_candidate() || e.is_timeout() || e.kind() == ErrorKind::ShardUnavailable {
            previous.window.mark_down(&old.name);
        } else {
            tracing::debug!(shard = %old.name, "shardis: previous owner refused a warm step: {e}");
        }
        MoveOutcome::Failed
    }
}

/// Whether a read's reply may mean that the key is missing: `GET`'s nil, and for other reads
/// nil, an empty collection, 0, -2 (`PTTL`) or `none` (`TYPE`). A false positive costs one
/// round trip to the previous owner; the copy never overwrites a value.
fn looks_missing(name: &str, reply: &Value) -> bool {
    match reply {
        Value::Nil => true,
        _ if name == "GET" => false,
        Value::Array(v) | Value::Set(v) => v.is_empty(),
        Value::Map(m) => m.is_empty(),
        Value::Int(n) => *n == 0 || *n == -2,
        Value::SimpleString(s) => s == "none",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_by_command() {
        assert!(looks_missing("GET", &Value::Nil));
        assert!(!looks_missing("GET", &Value::Int(0)));
        assert!(looks_missing("QUERY", &Value::Array(vec![])));
        assert!(looks_missing("QUERY", &Value::Map(vec![])));
        assert!(looks_missing("EXISTS", &Value::Int(0)));
        assert!(looks_missing("PTTL", &Value::Int(-2)));
        assert!(!looks_missing("PTTL", &Value::Int(-1)));
        assert!(looks_missing("QUERY", &Value::SimpleString("none".into())));
        assert!(!looks_missing("QUERY", &Value::SimpleString("hash".into())));
        assert!(!looks_missing("QUERY", &Value::Array(vec![Value::Int(1)])));
    }
}
