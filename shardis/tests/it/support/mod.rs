//! Helpers of the metrics and cache tests: a metrics recorder to read what the library and its
//! cache layer record, a loader-call counter, and a typed loader error.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};

/// What the library recorded, readable at any time (metrics-util's registry with atomic
/// storage, read without draining), and the descriptions it gave.
pub struct Recorded {
    registry: Registry<Key, AtomicStorage>,
    descriptions: Mutex<HashMap<String, String>>,
}

impl Recorded {
    pub fn new() -> Recorded {
        Recorded {
            registry: Registry::atomic(),
            descriptions: Mutex::new(HashMap::new()),
        }
    }

    fn describe(&self, key: KeyName, description: SharedString) {
        let mut d = self.descriptions.lock().unwrap();
        d.insert(key.as_str().to_owned(), description.to_string());
    }

    /// Every description given so far, by metric name.
    pub fn descriptions(&self) -> HashMap<String, String> {
        self.descriptions.lock().unwrap().clone()
    }

    /// The sum of the counters named `name` whose labels include every pair of `labels`.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.registry
            .get_counter_handles()
            .iter()
            .filter(|(k, _)| matches(k, name, labels))
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

    /// The value of the one gauge named `name` with labels including `labels`.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<f64> = self
            .registry
            .get_gauge_handles()
            .iter()
            .filter(|(k, _)| matches(k, name, labels))
            .map(|(_, g)| f64::from_bits(g.load(Ordering::SeqCst)))
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?}: {found:?}");
        found.first().copied()
    }

    /// How many values the histograms named `name` with labels including `labels` hold.
    pub fn observations(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        self.registry
            .get_histogram_handles()
            .iter()
            .filter(|(k, _)| matches(k, name, labels))
            .map(|(_, h)| h.data().len())
            .sum()
    }

    /// Every label of every metric, rendered `name{key=value}`.
    pub fn rendered_labels(&self) -> Vec<String> {
        let keys = self
            .registry
            .get_counter_handles()
            .into_keys()
            .chain(self.registry.get_gauge_handles().into_keys())
            .chain(self.registry.get_histogram_handles().into_keys());
        keys.flat_map(|k| {
            k.labels()
                .map(|l| format!("{}{{{}={}}}", k.name(), l.key(), l.value()))
                .collect::<Vec<_>>()
        })
        .collect()
    }
}

/// Whether `key` is named `name` and its labels include every pair of `labels`.
fn matches(key: &Key, name: &str, labels: &[(&str, &str)]) -> bool {
    key.name() == name
        && labels
            .iter()
            .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
}

impl Recorder for Recorded {
    fn describe_counter(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(key, description);
    }
    fn describe_gauge(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(key, description);
    }
    fn describe_histogram(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(key, description);
    }
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
