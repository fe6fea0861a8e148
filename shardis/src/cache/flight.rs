//! Single-flight in the process: one load per key at a time; the other callers wait for its
//! outcome.
//!
//! The leader holds a [`Leader`]; the others hold a [`Waiter`] on a watch channel. The outcome
//! is shared untyped: a value travels as its envelope (each waiter decodes its own copy, so
//! cached types need not be `Clone`), an error as an `Arc` that each waiter downcasts to its
//! loader's error type. A leader dropped before landing (its future cancelled, its loader
//! panicked) closes the channel: the waiters wake up with nothing and one of them leads anew.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::error::ErrorKind;

/// What a load ended with.
#[derive(Debug)]
pub(crate) enum Landed {
    /// The envelope of the value (loaded, or stale served after a failed load).
    Value(Arc<[u8]>),
    /// The load failed.
    Failed(Failure),
}

/// Why a load failed, shareable by every waiter.
#[derive(Clone)]
pub(crate) enum Failure {
    /// The loader's error: the same allocation twice, to downcast and to display.
    Loader {
        any: Arc<dyn Any + Send + Sync>,
        error: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The cache refused the loaded value (it cannot be encoded).
    Cache { kind: ErrorKind, message: Arc<str> },
}

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Loader { error, .. } => write!(f, "Loader({error})"),
            Failure::Cache { kind, message } => write!(f, "Cache({kind}: {message})"),
        }
    }
}

impl Failure {
    pub(crate) fn loader<E: std::error::Error + Send + Sync + 'static>(e: Arc<E>) -> Failure {
        Failure::Loader {
            any: e.clone(),
            error: e,
        }
    }
}

type Outcome = Option<Arc<Landed>>;

struct Entry {
    id: u64,
    rx: watch::Receiver<Outcome>,
}

/// The loads in flight in this process, by full key.
#[derive(Default)]
pub(crate) struct Flights {
    /// A std mutex: held for a map lookup or insert only, never across an await.
    map: Mutex<HashMap<Vec<u8>, Entry>>,
    next: AtomicU64,
}

impl std::fmt::Debug for Flights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flights")
            .field("in_flight", &self.lock().len())
            .finish()
    }
}

/// Leading a key's load, or waiting for another's.
pub(crate) enum Joined {
    Lead(Leader),
    Wait(Waiter),
}

impl Flights {
    fn lock(&self) -> MutexGuard<'_, HashMap<Vec<u8>, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Leads the load of `key` if nobody in this process does, or waits for the one who does.
    pub(crate) fn join(self: &Arc<Self>, key: &[u8]) -> Joined {
        let mut map = self.lock();
        if let Some(entry) = map.get(key) {
            // A leader that dropped its sender without removing its entry yet: lead anew.
            if entry.rx.has_changed().is_ok() {
                return Joined::Wait(Waiter {
                    rx: entry.rx.clone(),
                });
            }
        }
        Joined::Lead(self.insert(&mut map, key))
    }

    /// A waiter on the load of `key` in this process, if there is one; never leads.
    pub(crate) fn waiter(&self, key: &[u8]) -> Option<Waiter> {
        let map = self.lock();
        map.get(key)
            .filter(|e| e.rx.has_changed().is_ok())
            .map(|e| Waiter { rx: e.rx.clone() })
    }

    /// Leads the load of `key` only if nobody in this process does.
    pub(crate) fn lead_if_idle(self: &Arc<Self>, key: &[u8]) -> Option<Leader> {
        match self.join(key) {
            Joined::Lead(leader) => Some(leader),
            Joined::Wait(_) => None,
        }
    }

    fn insert(self: &Arc<Self>, map: &mut HashMap<Vec<u8>, Entry>, key: &[u8]) -> Leader {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        map.insert(key.to_vec(), Entry { id, rx });
        Leader {
            flights: Arc::clone(self),
            key: key.to_vec(),
            id,
            tx: Some(tx),
            on_abandon: None,
        }
    }

    fn remove(&self, key: &[u8], id: u64) {
        let mut map = self.lock();
        if map.get(key).is_some_and(|e| e.id == id) {
            map.remove(key);
        }
    }
}

/// The one caller loading a key in this process.
pub(crate) struct Leader {
    flights: Arc<Flights>,
    key: Vec<u8>,
    id: u64,
    tx: Option<watch::Sender<Outcome>>,
    /// Run if the leader is dropped without landing (releases the Redis load lock).
    on_abandon: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for Leader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leader").field("id", &self.id).finish()
    }
}

impl Leader {
    /// Sets what to do if this leader is dropped before it lands.
    pub(crate) fn on_abandon(&mut self, f: impl FnOnce() + Send + 'static) {
        self.on_abandon = Some(Box::new(f));
    }

    /// Forgets the abandon action (the lock was released or never taken).
    pub(crate) fn clear_abandon(&mut self) {
        self.on_abandon = None;
    }

    /// Hands the outcome to every waiter and ends the flight.
    pub(crate) fn land(mut self, landed: Landed) {
        if let Some(tx) = self.tx.take() {
            tx.send_replace(Some(Arc::new(landed)));
        }
        self.on_abandon = None;
        self.flights.remove(&self.key, self.id);
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if self.tx.is_some() {
            // Abandoned: remove the entry first, so the woken waiters find no leader.
            self.flights.remove(&self.key, self.id);
            self.tx = None;
            if let Some(f) = self.on_abandon.take() {
                f();
            }
        }
    }
}

/// A caller waiting for another caller's load in this process.
pub(crate) struct Waiter {
    rx: watch::Receiver<Outcome>,
}

impl Waiter {
    /// The load's outcome, or `None` if its leader was dropped before landing.
    pub(crate) async fn wait(mut self) -> Option<Arc<Landed>> {
        match self.rx.wait_for(Option::is_some).await {
            Ok(landed) => landed.clone(),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_get_the_landed_value_and_the_key_is_free_again() {
        let flights = Arc::new(Flights::default());
        let Joined::Lead(leader) = flights.join(b"k") else {
            panic!("first caller leads")
        };
        let Joined::Wait(waiter) = flights.join(b"k") else {
            panic!("second caller waits")
        };
        assert!(flights.lead_if_idle(b"k").is_none());
        leader.land(Landed::Value(Arc::from(&b"v"[..])));
        match waiter.wait().await.as_deref() {
            Some(Landed::Value(v)) => assert_eq!(&v[..], b"v"),
            other => panic!("{other:?}"),
        }
        assert!(flights.lead_if_idle(b"k").is_some());
    }

    #[tokio::test]
    async fn a_dropped_leader_wakes_its_waiters_with_nothing_and_runs_its_abandon_action() {
        let flights = Arc::new(Flights::default());
        let Joined::Lead(mut leader) = flights.join(b"k") else {
            panic!()
        };
        let abandoned = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = abandoned.clone();
        leader.on_abandon(move || seen.store(true, Ordering::SeqCst));
        let Joined::Wait(waiter) = flights.join(b"k") else {
            panic!()
        };
        drop(leader);
        assert!(waiter.wait().await.is_none());
        assert!(abandoned.load(Ordering::SeqCst));
        assert!(matches!(flights.join(b"k"), Joined::Lead(_)));
    }
}
