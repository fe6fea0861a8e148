//! Recipes from the caching guides, built on scripts: a single-shard lock with fencing tokens
//! (feature `lock`) and a GCRA rate limiter (feature `rate-limit`). Each is one file; both
//! route by their key like any command.

#[cfg(feature = "lock")]
pub(crate) mod lock;
#[cfg(feature = "rate-limit")]
pub(crate) mod rate_limit;
