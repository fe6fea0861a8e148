//! The recording helpers without the feature `metrics`: the same calls, each empty and
//! inlined, so the call sites stay unconditional and compile to nothing.

use std::sync::Arc;

use super::*;
use crate::health::Role;
use crate::topology::ShardName;

#[derive(Debug)]
pub(crate) struct RouteMetrics;

impl RouteMetrics {
    #[inline(always)]
    pub(crate) fn new(_: &ShardName) -> RouteMetrics {
        RouteMetrics
    }

    #[inline(always)]
    pub(crate) fn coalesced(&self, _: usize) {}
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Started;

impl Started {
    #[inline(always)]
    pub(crate) fn now() -> Started {
        Started
    }

    #[inline(always)]
    pub(crate) fn finish(self, _: &RouteMetrics, _: Role, _: &'static str, _: RequestOutcome) {}
}

#[inline(always)]
pub(crate) fn unavailable(_: Option<&ShardName>, _: Role, _: &'static str) {}

#[inline(always)]
pub(crate) fn hedge(_: &ShardName, _: HedgeResult) {}

#[inline(always)]
pub(crate) fn failover(_: &ShardName, _: FailoverKind) {}

#[inline(always)]
pub(crate) fn endpoint_up(_: &ShardName, _: &Arc<str>, _: Role, _: bool) {}

#[inline(always)]
pub(crate) fn pool_connections(_: &ShardName, _: &Arc<str>, _: u32) {}

#[inline(always)]
pub(crate) fn table_version(_: u64) {}

#[inline(always)]
#[cfg_attr(not(feature = "cache"), allow(dead_code))]
pub(crate) fn cache_request(_: &'static str) {}

#[inline(always)]
#[cfg_attr(not(feature = "cache"), allow(dead_code))]
pub(crate) fn cache_load(_: bool, _: f64) {}

#[inline(always)]
#[cfg_attr(not(feature = "cache"), allow(dead_code))]
pub(crate) fn cache_wait(_: &'static str) {}

#[inline(always)]
#[cfg_attr(not(feature = "cache"), allow(dead_code))]
pub(crate) fn cache_early_refresh() {}

#[inline(always)]
pub(crate) fn describe_all() {}
