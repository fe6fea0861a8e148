//! `Client::migrate_moved_keys` (feature `warm`): moves every key the last topology change
//! moved from its previous owner to its new owner, in `SCAN` batches, with the same
//! per-key steps as a warm read (`warm::move_key`: never overwrites a newer value, deletes at
//! the previous owner only what it copied).

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use redis::{FromRedisValue, Value};

use super::exec::Access;
use super::warm::{MoveOutcome, Previous};
use super::Client;
use crate::error::{Error, Result};
use crate::node::Request;

/// What [`Client::migrate_moved_keys`] did (the CLI's `shardis migrate --format json` prints
/// these fields).
///
/// ```
/// let r = shardis::MigrationReport::default();
/// assert_eq!(r.moved + r.skipped_newer + r.expired + r.errors, 0);
/// assert!(!r.complete);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationReport {
    /// Keys on the previous owners when the migration started (`DBSIZE`), for progress.
    pub to_scan: u64,
    /// Keys the scans of the previous owners returned (moved or not).
    pub scanned: u64,
    /// Keys copied to their new owner (TTL kept) and removed from their previous owner.
    pub moved: u64,
    /// Keys whose new owner already had a value (written since the change): not copied, and
    /// the older copy removed from the previous owner.
    pub skipped_newer: u64,
    /// Keys scanned that had expired or been deleted before they could be moved.
    pub expired: u64,
    /// Keys (or whole previous owners, counted once) that could not be moved: an owner did
    /// not answer, or a write raced the move twice. Rerun to finish.
    pub errors: u64,
    /// How long the migration took.
    pub duration: Duration,
    /// True when every previous owner was scanned to the end with no error: the warm window
    /// of the change was closed early.
    pub complete: bool,
}

impl Client {
    /// Moves every key whose owner the last topology change changed to its new owner, in
    /// batches of 500 keys; see [`migrate_moved_keys_with`](Self::migrate_moved_keys_with).
    ///
    /// ```no_run
    /// # async fn run(client: shardis::Client, new: shardis::Topology) -> shardis::Result<()> {
    /// client.update_topology(new).await?; // with warm resharding on
    /// let report = client.migrate_moved_keys().await?;
    /// println!("{} moved, {} newer at their new owner", report.moved, report.skipped_newer);
    /// # Ok(()) }
    /// ```
    pub async fn migrate_moved_keys(&self) -> Result<MigrationReport> {
        self.migrate_moved_keys_with(500, |_| {}).await
    }

    /// Scans every previous owner of the open warm window (the shards of the topology before
    /// the last change, removed ones included) with `SCAN ... COUNT batch`, and moves each
    /// key whose owner changed: `DUMP`/`PTTL` at the previous owner, `RESTORE` without
    /// `REPLACE` at the new one (a newer value there is kept), then a delete at the previous
    /// owner only if the key there is still the value copied. `progress` sees the report
    /// after each batch.
    ///
    /// When it completes with no error the warm window ends early. Interrupting it (dropping
    /// the future) and running it again is safe: a key copied but not yet removed is found
    /// again, kept at its new owner and removed from its previous one. Without an open warm
    /// window (warm resharding off, no change, or the window over) there is nothing to move
    /// and the report is empty.
    pub async fn migrate_moved_keys_with(
        &self,
        batch: usize,
        mut progress: impl FnMut(&MigrationReport),
    ) -> Result<MigrationReport> {
        let started = Instant::now();
        let mut report = MigrationReport::default();
        let Some(window) = self.shared.warm.current() else {
            return Ok(report);
        };
        let from = window.from.clone();
        let batch = batch.clamp(1, 100_000);
        for shard in 0..from.shards().len() {
            let old = &from.shards()[shard];
            let dbsize = Box::pin(self.exec(
                &from,
                old,
                "DBSIZE",
                Request::Cmd(&redis::cmd("DBSIZE")),
                Access::Write,
            ))
            .await;
            if let Ok(Value::Int(n)) = dbsize {
                report.to_scan += n.max(0) as u64;
            }
        }
        progress(&report);
        for shard in 0..from.shards().len() {
            let previous = Previous::new(from.clone(), shard, window.clone());
            let moved = self.migrate_shard(&previous, batch, started, &mut report, &mut progress);
            if let Err(e) = moved.await {
                tracing::warn!(shard = %from.shards()[shard].name, "shardis: migration of a previous owner stopped: {e}");
                report.errors += 1;
            }
        }
        report.duration = started.elapsed();
        if report.errors == 0 {
            report.complete = true;
            self.shared.warm.end(window.to_version);
        }
        progress(&report);
        Ok(report)
    }

    /// Scans one previous owner to the end, moving its moved keys batch by batch.
    async fn migrate_shard(
        &self,
        previous: &Previous,
        batch: usize,
        started: Instant,
        report: &mut MigrationReport,
        progress: &mut impl FnMut(&MigrationReport),
    ) -> Result<()> {
        let (from, old) = (&previous.table, &previous.table.shards()[previous.shard]);
        if previous.window.is_down(&old.name) {
            return Err(Error::new(
                crate::ErrorKind::ShardUnavailable,
                "the previous owner was found unreachable in this warm window",
            ));
        }
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor).arg("COUNT").arg(batch);
            let reply =
                Box::pin(self.exec(from, old, "SCAN", Request::Cmd(&scan), Access::Write)).await?;
            let (next, keys) =
                <(u64, Vec<Vec<u8>>)>::from_redis_value(reply).map_err(Error::conversion)?;
            report.scanned += keys.len() as u64;
            let table = self.shared.router.load();
            let table = &table;
            let moves = keys.iter().filter_map(|key| {
                let route = table.route(key)?;
                (route.name != old.name).then_some(async move {
                    match self.move_key(table, route, previous, key).await {
                        // A write raced the move: once more, now that it is done.
                        MoveOutcome::Undone => self.move_key(table, route, previous, key).await,
                        done => done,
                    }
                })
            });
            for moved in join_all(moves).await {
                match moved {
                    MoveOutcome::Moved => report.moved += 1,
                    MoveOutcome::Newer => report.skipped_newer += 1,
                    MoveOutcome::Absent => report.expired += 1,
                    MoveOutcome::Undone | MoveOutcome::Failed => report.errors += 1,
                }
            }
            report.duration = started.elapsed();
            progress(report);
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}
