//! Hedged reads (`pool.hedge_after_ms`): a read that may go to either endpoint of its shard,
//! still unanswered after the delay, is sent to the other endpoint too; the first answer wins
//! and the other attempt is dropped.
//!
//! The delay is fixed, or (`"adaptive"`) the first endpoint's observed p99 read latency, so
//! that about one read in a hundred is hedged on a healthy fleet. Either way a hedge takes a
//! token from the first endpoint's budget, which every read to it refills by 1/20 of a token
//! up to a burst of 10: at most 5% of reads are hedged over time, so a fleet that is slow
//! everywhere is not sent twice its load.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{select, Either};
use redis::Value;

use super::exec::Sending;
use super::Client;
use crate::error::Result;
use crate::metrics::{self, HedgeResult};
use crate::node::{Node, Request};
use crate::options::HedgeAfter;
use crate::router::ShardRoute;

impl Client {
    /// Reads on `first`, hedged on `other` after the delay `policy` gives. Returns the endpoint
    /// whose answer is returned, the answer, and whether both endpoints were tried (then the
    /// caller does not fail over again).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn hedged<'r>(
        &self,
        route: &ShardRoute,
        first: &'r Arc<Node>,
        other: &'r Arc<Node>,
        policy: HedgeAfter,
        name: &'static str,
        request: Request<'_>,
        how: Sending,
    ) -> (&'r Arc<Node>, Result<Value>, bool) {
        first.hedge_budget().earn();
        let delay = delay(policy, first);
        let mut a = pin!(self.attempt(route, first, name, request, how));
        let timer = pin!(tokio::time::sleep(delay));
        match select(a.as_mut(), timer).await {
            Either::Left((result, _)) => return (first, result, false),
            Either::Right(((), _)) => {}
        }
        if !first.hedge_budget().spend() {
            metrics::hedge(&route.name, HedgeResult::Capped);
            return (first, a.await, false);
        }
        let b = pin!(self.attempt(route, other, name, request, how));
        match select(a, b).await {
            Either::Left((Ok(v), _)) => {
                metrics::hedge(&route.name, HedgeResult::Lost);
                (first, Ok(v), true)
            }
            Either::Right((Ok(v), _)) => {
                metrics::hedge(&route.name, HedgeResult::Won);
                (other, Ok(v), true)
            }
            // One failed: the other's answer, whatever it is.
            Either::Left((Err(e), b)) => match b.await {
                Ok(v) => {
                    metrics::hedge(&route.name, HedgeResult::Won);
                    (other, Ok(v), true)
                }
                Err(_) => (first, Err(e), true),
            },
            Either::Right((Err(_), a)) => {
                metrics::hedge(&route.name, HedgeResult::Lost);
                (first, a.await, true)
            }
        }
    }
}

/// How long a read on `first` waits before it is hedged.
fn delay(policy: HedgeAfter, first: &Node) -> Duration {
    match policy {
        HedgeAfter::Fixed(d) => d,
        HedgeAfter::Adaptive => first
            .latency()
            .p99()
            .unwrap_or(HedgeAfter::ADAPTIVE_START)
            .max(HedgeAfter::ADAPTIVE_FLOOR),
        // Not called when off; were it, the read would simply not be hedged in practice.
        HedgeAfter::Off => Duration::from_secs(3600),
    }
}
