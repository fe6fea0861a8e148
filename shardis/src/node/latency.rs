//! What hedged reads need to know of one endpoint: its recent read latency (for
//! `hedge_after_ms = "adaptive"`) and its hedge budget.
//!
//! Both are a handful of relaxed atomics: reads record without a lock, and the p99 is worked
//! out by whichever read completes a window.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two of microseconds: bucket edges 19% apart.
const SUB: u32 = 4;
/// Buckets: up to 2^26 µs (67 s), beyond any response timeout worth having.
const BUCKETS: usize = 26 * SUB as usize;
/// Reads per window: the p99 is recomputed after this many, and the older counts halved.
const WINDOW: u32 = 1024;
/// Reads seen before the p99 is trusted.
const WARM: u64 = 200;

/// An endpoint's recent read latencies, as a log-bucketed histogram that forgets by halves.
pub(crate) struct Latency {
    buckets: [AtomicU32; BUCKETS],
    /// Reads recorded in this window.
    in_window: AtomicU32,
    /// Reads recorded ever (saturating in practice: 2^64).
    seen: AtomicU64,
    /// The last computed p99 in µs; 0 before the first window closed.
    p99_us: AtomicU64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            buckets: std::array::from_fn(|_| AtomicU32::new(0)),
            in_window: AtomicU32::new(0),
            seen: AtomicU64::new(0),
            p99_us: AtomicU64::new(0),
        }
    }
}

/// The bucket of `us` microseconds.
fn bucket(us: u64) -> usize {
    let us = us.max(1);
    let log = 63 - us.leading_zeros(); // floor(log2)
    let frac = if log >= 2 {
        (us >> (log - 2)) & 3
    } else {
        (us << (2 - log)) & 3
    };
    ((log * SUB) as usize + frac as usize).min(BUCKETS - 1)
}

/// The upper edge of bucket `b`, in µs.
fn upper(b: usize) -> u64 {
    let (log, frac) = ((b as u32) / SUB, (b as u32) % SUB);
    let base = 1u64 << log;
    base + ((base * u64::from(frac + 1)) >> 2)
}

impl Latency {
    /// Records one answered read.
    pub(crate) fn record(&self, took: Duration) {
        let us = took.as_micros().min(u128::from(u64::MAX)) as u64;
        self.buckets[bucket(us)].fetch_add(1, Ordering::Relaxed);
        self.seen.fetch_add(1, Ordering::Relaxed);
        if self.in_window.fetch_add(1, Ordering::Relaxed) + 1 == WINDOW {
            self.close_window();
        }
    }

    /// Computes the p99 over the counts (the new window and the halved older ones), then
    /// halves them.
    fn close_window(&self) {
        let counts: Vec<u32> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().map(|c| u64::from(*c)).sum();
        let want = total - total / 100;
        let mut acc = 0u64;
        for (b, c) in counts.iter().enumerate() {
            acc += u64::from(*c);
            if acc >= want && total > 0 {
                self.p99_us.store(upper(b), Ordering::Relaxed);
                break;
            }
        }
        for b in &self.buckets {
            // Not atomic as a whole: a read recorded in between may be halved early. Harmless.
            let _ = b.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| Some(c / 2));
        }
        self.in_window.store(0, Ordering::Relaxed);
    }

    /// The observed p99 of recent reads, once enough have been seen.
    pub(crate) fn p99(&self) -> Option<Duration> {
        let us = self.p99_us.load(Ordering::Relaxed);
        (us > 0 && self.seen.load(Ordering::Relaxed) >= WARM).then(|| Duration::from_micros(us))
    }
}

/// A token bucket that caps hedges at a share of reads: each read earns [`EARN`] thousandths
/// of a token, up to [`BURST`] tokens; a hedge spends one.
pub(crate) struct HedgeBudget {
    /// Thousandths of a token.
    milli: AtomicI64,
}

/// Each read earns 0.05 of a hedge: at most 5% of reads are hedged, over time.
pub(crate) const EARN: i64 = 50;
/// Tokens saved up at most (and at start): a burst of 10 hedges.
pub(crate) const BURST: i64 = 10;

impl Default for HedgeBudget {
    fn default() -> Self {
        HedgeBudget {
            milli: AtomicI64::new(BURST * 1000),
        }
    }
}

impl HedgeBudget {
    /// A read was sent: it earns its share of a hedge.
    #[inline]
    pub(crate) fn earn(&self) {
        if self.milli.load(Ordering::Relaxed) < BURST * 1000 {
            self.milli.fetch_add(EARN, Ordering::Relaxed);
        }
    }

    /// Takes one hedge's token; false when the budget is spent.
    pub(crate) fn spend(&self) -> bool {
        let before = self.milli.fetch_sub(1000, Ordering::Relaxed);
        if before < 1000 {
            self.milli.fetch_add(1000, Ordering::Relaxed);
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_their_edges_contain_their_values() {
        let mut last = 0;
        for us in 1..100_000u64 {
            let b = bucket(us);
            assert!(b >= last, "{us}");
            last = b;
            assert!(
                upper(b) >= us,
                "{us} in bucket {b} with upper edge {}",
                upper(b)
            );
            assert!(upper(b) <= us * 2 + 1, "{us}: edge {} too far", upper(b));
        }
    }

    #[test]
    fn p99_follows_the_slow_hundredth() {
        let l = Latency::default();
        assert_eq!(l.p99(), None);
        for i in 0..WINDOW * 2 {
            let us = if i % 200 == 0 { 5_000 } else { 200 };
            l.record(Duration::from_micros(us));
        }
        let p99 = l.p99().expect("warm").as_micros() as u64;
        assert!((200..=300).contains(&p99), "{p99}");
        // A slower endpoint moves it within a few windows.
        for _ in 0..WINDOW * 4 {
            l.record(Duration::from_millis(3));
        }
        let p99 = l.p99().expect("warm").as_micros() as u64;
        assert!((3_000..=3_600).contains(&p99), "{p99}");
    }

    #[test]
    fn the_budget_allows_a_burst_then_one_hedge_per_twenty_reads() {
        let b = HedgeBudget::default();
        let burst = (0..100).filter(|_| b.spend()).count();
        assert_eq!(burst as i64, BURST);
        let mut hedges = 0;
        for _ in 0..10_000 {
            b.earn();
            if b.spend() {
                hedges += 1;
            }
        }
        assert_eq!(hedges, 10_000 * EARN as usize / 1000);
    }
}
