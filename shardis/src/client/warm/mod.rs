//! Warm resharding on the request path (feature `warm`): the small steps the request path
//! takes for a key whose owner changed in the open warm window (see `control/warm.rs`).
//!
//! - A `GET` or `MGET` that misses on the new owner reads the value, with its `DUMP` and
//!   `PTTL`, from the previous owner in one script (an `MGET` one per previous owner), answers
//!   with it, and moves the key over off the request path (`read.rs`).
//! - Any other read that looks like a miss moves the key over first (`move_key`) and is sent
//!   once more to the new owner.
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
//! delete at `new` comes after the copy and removes it). A read answered from step 1 is a read
//! of `old` at that moment, before any such delete: answering before steps 2 to 4 are done
//! changes nothing on either server.
//!
//! Within one process, a key has one move in flight at a time (`control::Copies`): readers
//! that miss while it runs read `old` themselves (one round trip, no wait), and wait for the
//! move only when `old` no longer has the key (it moved meanwhile). A write of a moved key
//! returns only once a move of it that was in flight is over, so between steps 2 and 4 a
//! copy that a write made stale is never visible to what the writer does next.

use std::sync::{Arc, LazyLock};

use futures_util::future::{join_all, BoxFuture};
use futures_util::FutureExt;
use redis::{Cmd, Script, Value};

use super::exec::Access;
use super::Client;
use crate::control::{CopyGuard, Window};
use crate::error::{Error, ErrorKind, Result};
use crate::node::Request;
use crate::router::{RoutingTable, ShardRoute};

mod read;

/// For each key: `DUMP`, `PTTL` and (with `ARGV[1]` = 1, for a string) the value, atomically;
/// false when the key does not exist.
static FETCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local out = {} \
         for i, k in ipairs(KEYS) do \
           local p = redis.call('DUMP', k) \
           if p then \
             local v = false \
             if ARGV[1] == '1' and redis.call('TYPE', k).ok == 'string' then \
               v = redis.call('GET', k) end \
             out[i] = {p, redis.call('PTTL', k), v} \
           else out[i] = false end \
         end \
         return out",
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

/// One key as step 1 found it at its previous owner.
#[derive(Debug)]
pub(crate) struct Fetched {
    payload: Vec<u8>,
    /// Remaining TTL in ms, or -1 for none.
    pttl: i64,
    /// The value, for a string key when asked for.
    value: Option<Vec<u8>>,
}

impl Fetched {
    /// One entry of `FETCH`'s reply: `Ok(None)` for a key that is not there (or expires this
    /// very millisecond).
    fn parse(entry: Value) -> Result<Option<Fetched>> {
        let bad = || {
            Error::new(
                ErrorKind::Server,
                "unexpected reply to the warm fetch script",
            )
        };
        let fields = match entry {
            Value::Nil | Value::Boolean(false) => return Ok(None),
            Value::Array(fields) => fields,
            _ => return Err(bad()),
        };
        let [payload, pttl, value] = <[Value; 3]>::try_from(fields).map_err(|_| bad())?;
        let (Value::BulkString(payload), Value::Int(pttl)) = (payload, pttl) else {
            return Err(bad());
        };
        let value = match value {
            Value::BulkString(v) => Some(v),
            Value::Nil | Value::Boolean(false) => None,
            _ => return Err(bad()),
        };
        // 0: expiring this very millisecond. -2: gone between the commands.
        if pttl == 0 || pttl < -1 {
            return Ok(None);
        }
        Ok(Some(Fetched {
            payload,
            pttl,
            value,
        }))
    }
}

/// What a read that looked like a miss on a moved key's new owner should answer.
#[derive(Debug)]
pub(crate) enum Warmed {
    /// The miss stands.
    Miss,
    /// The new owner now has a value: send the read to it once more.
    Reread,
    /// This reply, read at the previous owner.
    Value(Value),
}

/// A moved key's other owner in the open window.
#[derive(Debug, Clone)]
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

    /// After a write of `key` (a moved key): returns once a move of it that was in flight is
    /// over (see the module doc).
    pub(super) async fn after_write(&self, key: &[u8]) {
        self.shared.warm.copies.settled(key).await;
    }

    /// After a read of `key` answered `reply`: if it looks like a miss, reads the key's
    /// previous owner, and moves the key over (see the module doc).
    pub(super) async fn warmed(
        &self,
        table: &Arc<RoutingTable>,
        route: &ShardRoute,
        previous: &Previous,
        name: &'static str,
        key: &[u8],
        reply: &Value,
    ) -> Warmed {
        if !previous.reads || !looks_missing(name, reply) {
            return Warmed::Miss;
        }
        if name == "GET" {
            return self.warm_get(table, route, previous, key).await;
        }
        match self.move_key(table, route, previous, key).await {
            MoveOutcome::Moved | MoveOutcome::Newer => Warmed::Reread,
            _ => Warmed::Miss,
        }
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

    /// After a multi-key write: returns once the moves of its moved keys that were in flight
    /// are over.
    pub(super) async fn after_write_many(
        &self,
        moved: &[(usize, Previous)],
        keys: &super::args::FlatArgs,
        positions: &[usize],
    ) {
        for (j, _) in moved {
            self.after_write(keys.get(positions[*j])).await;
        }
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
        let _claim = self.claim(key).await;
        let fetched = match self.fetch(previous, &[key], false).await {
            Ok(mut f) => f.pop().flatten(),
            Err(e) => return self.unreachable(previous, &e),
        };
        match fetched {
            Some(f) => {
                self.copy_tail(table, route, previous, key, &f.payload, f.pttl)
                    .await
            }
            None => MoveOutcome::Absent,
        }
    }

    /// Claims the move of `key` in this process, once a move of it in flight is over.
    async fn claim(&self, key: &[u8]) -> Option<CopyGuard> {
        loop {
            match self.shared.warm.copies.begin(key) {
                Ok(claim) => return Some(claim),
                Err(Some(done)) => {
                    let _ = done.await;
                }
                Err(None) => return None,
            }
        }
    }

    /// Step 1 for `keys` at their previous owner: one entry per key, `None` where it is not
    /// there; with `values`, the value of each string key too.
    async fn fetch(
        &self,
        previous: &Previous,
        keys: &[&[u8]],
        values: bool,
    ) -> Result<Vec<Option<Fetched>>> {
        let (from, old) = (&previous.table, previous.route());
        let mut fetch = FETCH.prepare_invoke();
        for key in keys {
            fetch.key(*key);
        }
        fetch.arg(if values { "1" } else { "0" });
        let reply =
            Box::pin(self.exec(from, old, "EVALSHA", Request::Script(&fetch), Access::Read))
                .await?;
        match reply {
            Value::Array(entries) if entries.len() == keys.len() => {
                entries.into_iter().map(Fetched::parse).collect()
            }
            _ => Err(Error::new(
                ErrorKind::Server,
                "unexpected reply to the warm fetch script",
            )),
        }
    }

    /// Steps 2 to 4 of moving `key`, whose `DUMP` at the previous owner was `payload` with
    /// `pttl` left (see the module doc).
    async fn copy_tail(
        &self,
        table: &RoutingTable,
        route: &ShardRoute,
        previous: &Previous,
        key: &[u8],
        payload: &[u8],
        pttl: i64,
    ) -> MoveOutcome {
        let (from, old) = (&previous.table, previous.route());
        let mut restore = redis::cmd("RESTORE");
        restore.arg(key).arg(pttl.max(0)).arg(payload);
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
        forget.key(key).arg(payload);
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
                undo.key(key).arg(payload);
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
