//! Helpers of the cache tests: a metrics recorder to read what the cache layer counts, a
//! loader-call counter, and a typed loader error.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};

/// What the library recorded (metrics-util's registry, read without draining).
pub struct Recorded {
    registry: Registry<Key, AtomicStorage>,
}

impl Recorded {
    pub fn new() -> Recorded {
        Recorded {
            registry: Registry::atomic(),
        }
    }

    /// The sum of the counters named `name` whose labels include every pair of `labels`.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.registry
            .get_counter_handles()
            .iter()
            .filter(|(k, _)| {
                k.name() == name
                    && labels
                        .iter()
                        .all(|(n, v)| k.labels().any(|l| l.key() == *n && l.value() == *v))
            })
            .map(|(_, c)| c.load(Ordering::SeqCst))
            .sum()
    }

    /// `shardis_cache_requests_total{result}`.
    pub fn lookups(&self, result: &str) -> u64 {
        self.counter(
            shardis::metrics::CACHE_REQUESTS_TOTAL,
            &[("result", result)],
        )
    }

    /// How many values the histograms named `name` hold.
    pub fn observations(&self, name: &str) -> usize {
        self.registry
            .get_histogram_handles()
            .iter()
            .filter(|(k, _)| k.name() == name)
            .map(|(_, h)| h.data().len())
            .sum()
    }
}

impl Recorder for Recorded {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.registry
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.registry
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.registry
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

/// Counts loader calls; clones share the count.
#[derive(Clone, Default)]
pub struct Calls(Arc<AtomicUsize>);

impl Calls {
    pub fn hit(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A loader's error, to check that callers get it back typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError(pub String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "database: {}", self.0)
    }
}

impl std::error::Error for DbError {}

/// A cached type.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub id: u64,
    pub name: String,
}

pub fn user(id: u64) -> User {
    User {
        id,
        name: format!("user {id}"),
    }
}
