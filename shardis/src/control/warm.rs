//! The warm window (feature `warm`): after a topology change that moves keys, the table it
//! replaced stays reachable, with its pools, for `warm_window_s`, so that the request path can
//! find a moved key's previous owner — removed shards included — and move the value over.
//!
//! The window is state of the routing table's history, so it lives here with the swaps that
//! open it; what a request does with it is in `client/warm/`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use futures_util::future::Shared as SharedFuture;
use futures_util::FutureExt;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Shared;
use crate::options::ReshardingOptions;
use crate::router::RoutingTable;
use crate::topology::ShardName;

/// One open window: the table before the change, the first table after it, and until when.
#[derive(Debug)]
pub(crate) struct Window {
    /// The table the change replaced, kept whole: a shard the change removed is still
    /// reachable through it (its pools stay open while the window does).
    pub(crate) from: Arc<RoutingTable>,
    /// The version of the table the change installed. A request on an older table is in
    /// flight across the change and does not read through the window.
    pub(crate) to_version: u64,
    until: Instant,
    /// Previous owners found unreachable in this window: their keys are cold from then on,
    /// so a dead removed shard costs one connect timeout, not one per key. A `std` mutex: no
    /// `.await` while it is held, and it is touched only after a failure or for moved keys.
    down: Mutex<Vec<ShardName>>,
}

impl Window {
    /// Whether `shard` was found unreachable in this window.
    pub(crate) fn is_down(&self, shard: &ShardName) -> bool {
        self.down.lock().map(|d| d.contains(shard)).unwrap_or(true)
    }

    /// Remembers that `shard` could not be reached: it is not consulted again in this window.
    pub(crate) fn mark_down(&self, shard: &ShardName) {
        if let Ok(mut d) = self.down.lock() {
            if !d.contains(shard) {
                tracing::warn!(%shard, "shardis: previous owner unreachable; its moved keys are cold for this warm window");
                d.push(shard.clone());
            }
        }
    }
}

/// The current warm window, if any.
#[derive(Debug, Default)]
pub(crate) struct Warm {
    window: ArcSwapOption<Window>,
    /// The copies of moved keys this process has in flight.
    pub(crate) copies: Arc<Copies>,
}

/// Resolves when a copy in flight is over (done, failed or dropped).
pub(crate) type CopyDone = SharedFuture<oneshot::Receiver<()>>;

/// The copies of moved keys in flight in this process, by key (see `client/warm/`): one
/// copy per key at a time, and a write of a key whose copy is in flight returns only once the
/// copy is over, so a copy that read the value before the write never outlives it. A `std`
/// mutex held for one map operation, never across an `.await`; only moved keys touch it.
#[derive(Default)]
pub(crate) struct Copies {
    inflight: Mutex<HashMap<Vec<u8>, CopyDone>>,
}

impl std::fmt::Debug for Copies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.inflight.lock().map_or(0, |m| m.len());
        f.debug_struct("Copies").field("in_flight", &n).finish()
    }
}

/// How many copies may run off the request path at once; past it, a read answers from the
/// previous owner and leaves the key there for a later read or the migration to move.
const MAX_BACKGROUND: usize = 4096;

impl Copies {
    /// Claims the copy of `key`, or returns the copy of it already in flight.
    pub(crate) fn begin(self: &Arc<Self>, key: &[u8]) -> Result<CopyGuard, Option<CopyDone>> {
        let Ok(mut inflight) = self.inflight.lock() else {
            return Err(None);
        };
        if let Some(done) = inflight.get(key) {
            return Err(Some(done.clone()));
        }
        let (tx, rx) = oneshot::channel();
        inflight.insert(key.to_vec(), rx.shared());
        Ok(CopyGuard {
            copies: self.clone(),
            key: key.to_vec(),
            _done: tx,
        })
    }

    /// Claims the copy of `key` for a copy off the request path, unless one is in flight
    /// (returned) or too many are.
    pub(crate) fn begin_background(
        self: &Arc<Self>,
        key: &[u8],
    ) -> Result<CopyGuard, Option<CopyDone>> {
        if self
            .inflight
            .lock()
            .map_or(true, |m| m.len() >= MAX_BACKGROUND)
        {
            return Err(self.pending(key));
        }
        self.begin(key)
    }

    /// The copy of `key` in flight, if any.
    pub(crate) fn pending(&self, key: &[u8]) -> Option<CopyDone> {
        self.inflight.lock().ok()?.get(key).cloned()
    }

    /// Waits until no copy of `key` that is in flight now is.
    pub(crate) async fn settled(&self, key: &[u8]) {
        if let Some(done) = self.pending(key) {
            let _ = done.await;
        }
    }
}

/// A claimed copy: when dropped (copy over, or its future dropped), it leaves the registry
/// and then wakes whoever waits for it.
#[derive(Debug)]
pub(crate) struct CopyGuard {
    copies: Arc<Copies>,
    key: Vec<u8>,
    // Dropped after `drop` has removed the entry: the waiters wake to an empty slot.
    _done: oneshot::Sender<()>,
}

impl Drop for CopyGuard {
    fn drop(&mut self) {
        if let Ok(mut inflight) = self.copies.inflight.lock() {
            inflight.remove(&self.key);
        }
    }
}

impl Warm {
    /// The open window; `None` outside one (one atomic load, then a clock read).
    #[inline]
    pub(crate) fn current(&self) -> Option<Arc<Window>> {
        let w = self.window.load_full()?;
        (Instant::now() < w.until).then_some(w)
    }

    /// Closes the window opened by the change that installed `to_version`, if it is still
    /// the open one (a later change opened its own).
    pub(crate) fn end(&self, to_version: u64) {
        let current = self.window.load_full();
        if current.as_ref().is_some_and(|w| w.to_version == to_version) {
            self.window.compare_and_swap(&current, None);
            tracing::info!(version = to_version, "shardis: warm window closed");
        }
    }
}

impl Shared {
    /// After a topology change installed `to` in place of `from`: opens a window when warm
    /// resharding is on and the placement changed, else closes any open one. The window is
    /// closed by a timer at its end (holding the client weakly), by the next change, or by a
    /// completed migration.
    pub(super) fn after_change(
        self: &Arc<Self>,
        from: Arc<RoutingTable>,
        to: &RoutingTable,
        resharding: &ReshardingOptions,
    ) {
        let moved = match (from.locator(), to.locator()) {
            (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
            _ => false,
        };
        if !resharding.warm || !moved {
            self.warm.window.store(None);
            return;
        }
        let to_version = to.version();
        let window = resharding.warm_window;
        self.warm.window.store(Some(Arc::new(Window {
            from,
            to_version,
            until: Instant::now() + window,
            down: Mutex::new(Vec::new()),
        })));
        tracing::info!(
            version = to_version,
            window_s = window.as_secs(),
            "shardis: warm window open"
        );
        let shared: Weak<Shared> = Arc::downgrade(self);
        tokio::spawn(close_after(shared, to_version, window));
    }
}

/// Closes the window of `to_version` after `window`, unless the client is gone by then.
async fn close_after(shared: Weak<Shared>, to_version: u64, window: Duration) {
    tokio::time::sleep(window).await;
    if let Some(shared) = shared.upgrade() {
        shared.warm.end(to_version);
    }
}
