//! The warm read of `GET` and `MGET` (see the parent module's doc): a moved key that misses on
//! its new owner is answered from its previous owner after one round trip, the value read in
//! the same script as its `DUMP`, and moved over off the request path.

use std::sync::Arc;

use futures_util::future::join_all;
use redis::Value;

use super::{Fetched, MoveOutcome, Previous, Warmed};
use crate::client::args::FlatArgs;
use crate::client::exec::Access;
use crate::client::Client;
use crate::control::CopyGuard;
use crate::error::{Error, Result};
use crate::node::Request;
use crate::router::{RoutingTable, ShardRoute};

/// A key to move off the request path: its claim, name, and what step 1 found.
type Background = (CopyGuard, Vec<u8>, Fetched);

impl Client {
    /// A `GET` of `key` that missed on `route`, its new owner.
    pub(super) async fn warm_get(
        &self,
        table: &Arc<RoutingTable>,
        route: &ShardRoute,
        previous: &Previous,
        key: &[u8],
    ) -> Warmed {
        // Claimed before step 1: a write of this key in this process from now on waits for
        // the move, and a write before has deleted at the previous owner already.
        let claim = self.shared.warm.copies.begin_background(key);
        let fetched = match self.fetch(previous, &[key], true).await {
            Ok(mut f) => f.pop().flatten(),
            Err(e) => {
                self.unreachable(previous, &e);
                return Warmed::Miss;
            }
        };
        match (fetched, claim) {
            (Some(mut f), claim) if f.value.is_some() => {
                let value = Value::BulkString(f.value.take().unwrap_or_default());
                if let Ok(claim) = claim {
                    self.copy_in_background(table, previous, vec![(claim, key.to_vec(), f)]);
                }
                Warmed::Value(value)
            }
            // Not a string: the new owner answers `GET` (an error) once the key is there.
            (Some(_), claim) => {
                drop(claim);
                match self.move_key(table, route, previous, key).await {
                    MoveOutcome::Moved | MoveOutcome::Newer => Warmed::Reread,
                    _ => Warmed::Miss,
                }
            }
            // Not at the previous owner: a move (by this process, awaited, or another one) may
            // have taken it to the new owner since it missed there.
            (None, claim) => {
                if let Err(Some(done)) = claim {
                    let _ = done.await;
                }
                Warmed::Reread
            }
        }
    }

    /// After a part of an `MGET` on `route`: answers the moved keys it missed from their
    /// previous owners, one script per previous owner, and moves them over off the request
    /// path.
    pub(crate) async fn warmed_many(
        &self,
        table: &Arc<RoutingTable>,
        route: &ShardRoute,
        moved: &[(usize, Previous)],
        keys: &FlatArgs,
        positions: &[usize],
        reply: Value,
    ) -> Result<Value> {
        let Value::Array(mut values) = reply else {
            return Ok(reply);
        };
        let mut groups: Vec<Vec<(usize, &Previous)>> = Vec::new();
        for (j, p) in moved {
            if !p.reads || !matches!(values.get(*j), Some(Value::Nil)) {
                continue;
            }
            match groups
                .iter_mut()
                .find(|g| Arc::ptr_eq(&g[0].1.table, &p.table) && g[0].1.shard == p.shard)
            {
                Some(g) => g.push((*j, p)),
                None => groups.push(vec![(*j, p)]),
            }
        }
        let answers = join_all(
            groups
                .iter()
                .map(|g| self.warm_group(table, route, g, keys, positions)),
        )
        .await;
        for answer in answers {
            for (j, v) in answer? {
                values[j] = v;
            }
        }
        Ok(Value::Array(values))
    }

    /// The missed moved keys of one `MGET` part that share a previous owner: their answers
    /// by index in the part (an `MGET` answers nil for a key that is not a string).
    async fn warm_group(
        &self,
        table: &Arc<RoutingTable>,
        route: &ShardRoute,
        group: &[(usize, &Previous)],
        keys: &FlatArgs,
        positions: &[usize],
    ) -> Result<Vec<(usize, Value)>> {
        let Some(&(_, previous)) = group.first() else {
            return Ok(Vec::new());
        };
        let names: Vec<&[u8]> = group.iter().map(|(j, _)| keys.get(positions[*j])).collect();
        let copies = &self.shared.warm.copies;
        let claims: Vec<_> = names.iter().map(|k| copies.begin_background(k)).collect();
        let fetched = match self.fetch(previous, &names, true).await {
            Ok(f) => f,
            Err(e) => {
                self.unreachable(previous, &e);
                return Ok(Vec::new());
            }
        };
        let (mut answers, mut background, mut pending) = (Vec::new(), Vec::new(), Vec::new());
        for (((j, _), key), (claim, f)) in group
            .iter()
            .zip(&names)
            .zip(claims.into_iter().zip(fetched))
        {
            match (f, claim) {
                (Some(mut f), claim) => {
                    answers.push((*j, f.value.take().map_or(Value::Nil, Value::BulkString)));
                    if let Ok(claim) = claim {
                        background.push((claim, key.to_vec(), f));
                    }
                }
                (None, claim) => pending.push((*j, *key, claim.err().flatten())),
            }
        }
        self.copy_in_background(table, previous, background);
        // Keys not at the previous owner: a move (by this process, awaited, or another one) may
        // have taken them to the new owner since they missed there.
        let reread = join_all(pending.into_iter().map(|(j, key, done)| async move {
            if let Some(done) = done {
                let _ = done.await;
            }
            let mut get = redis::cmd("GET");
            get.arg(key);
            let v =
                Box::pin(self.exec(table, route, "GET", Request::Cmd(&get), Access::Read)).await?;
            Ok::<_, Error>((j, v))
        }))
        .await;
        for r in reread {
            answers.push(r?);
        }
        Ok(answers)
    }

    /// Steps 2 to 4 for `keys` (claimed) in a task of their own: the reads that found them
    /// have answered already.
    fn copy_in_background(
        &self,
        table: &Arc<RoutingTable>,
        previous: &Previous,
        keys: Vec<Background>,
    ) {
        if keys.is_empty() {
            return;
        }
        let (client, table, previous) = (self.clone(), table.clone(), previous.clone());
        tokio::spawn(async move {
            let (client, table, previous) = (&client, &table, &previous);
            join_all(keys.into_iter().map(|(claim, key, f)| async move {
                if let Some(route) = table.route(&key) {
                    client
                        .copy_tail(table, route, previous, &key, &f.payload, f.pttl)
                        .await;
                }
                drop(claim);
            }))
            .await;
        });
    }
}
