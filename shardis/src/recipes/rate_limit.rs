//! A rate limiter (feature `rate-limit`): GCRA, the algorithm of redis-cell, in one script
//! call on the key's shard.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{Script, ToSingleRedisArg};

use crate::client::Client;
use crate::error::{Error, Result};

/// GCRA with the server's clock, in microseconds. KEYS: the key (its theoretical arrival
/// time); ARGV: emission interval, delay variation tolerance, increment. Returns allowed (0 or
/// 1), remaining, retry after (-1: none), reset after.
static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local increment = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + increment
local diff = now - (new_tat - tolerance)
local allowed, ttl, retry = 1, new_tat - now, -1
if diff < 0 then
  allowed, ttl = 0, tat - now
  if increment <= tolerance then retry = -diff end
else
  redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.max(1, math.ceil(ttl / 1000)))
end
local remaining = 0
local next = tolerance - ttl
if next > 0 then remaining = math.floor(next / interval) end
return {allowed, remaining, retry, ttl}
",
    )
});

/// A rate: `count` requests per `period`, with bursts, as redis-cell's `CL.THROTTLE key
/// max_burst count period quantity`.
///
/// ```
/// use std::time::Duration;
/// use shardis::RateLimit;
/// let api = RateLimit::per_second(100).burst(20);
/// let logins = RateLimit::per(5, Duration::from_secs(300)).cost(1);
/// # let _ = (api, logins);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    count: u64,
    period: Duration,
    burst: u64,
    cost: u64,
}

impl RateLimit {
    /// `count` requests per `period`: one every `period / count` on average, no burst.
    pub fn per(count: u64, period: Duration) -> RateLimit {
        RateLimit {
            count,
            period,
            burst: 0,
            cost: 1,
        }
    }

    /// `count` requests per second.
    pub fn per_second(count: u64) -> RateLimit {
        RateLimit::per(count, Duration::from_secs(1))
    }

    /// `count` requests per minute.
    pub fn per_minute(count: u64) -> RateLimit {
        RateLimit::per(count, Duration::from_secs(60))
    }

    /// `count` requests per hour.
    pub fn per_hour(count: u64) -> RateLimit {
        RateLimit::per(count, Duration::from_secs(3600))
    }

    /// Up to `burst` requests beyond the steady rate may come at once (redis-cell's
    /// `max_burst`): a key at rest lets `burst + 1` requests through back to back, then one
    /// per `period / count`. Default 0.
    pub fn burst(mut self, burst: u64) -> RateLimit {
        self.burst = burst;
        self
    }

    /// How many requests one decision counts for (redis-cell's `quantity`; default 1).
    pub fn cost(mut self, cost: u64) -> RateLimit {
        self.cost = cost;
        self
    }

    /// The emission interval, tolerance and increment in microseconds.
    fn parameters(&self) -> Result<(u64, u64, u64)> {
        let period = u64::try_from(self.period.as_micros()).unwrap_or(u64::MAX);
        if self.count == 0 || period / self.count.max(1) == 0 {
            return Err(Error::invalid_input(
                "rate_limit: the rate needs count >= 1 and period / count >= 1 µs",
            ));
        }
        let interval = period / self.count;
        let tolerance = self
            .burst
            .checked_add(1)
            .and_then(|n| n.checked_mul(interval));
        let increment = self.cost.checked_mul(interval);
        // Lua numbers are doubles: exact up to 2^53.
        const LIMIT: u64 = 1 << 52;
        match (tolerance, increment) {
            (Some(t), Some(i)) if t < LIMIT && i < LIMIT => Ok((interval, t, i)),
            _ => Err(Error::invalid_input(
                "rate_limit: burst or cost too large for the period",
            )),
        }
    }
}

/// The answer of one [`Client::rate_limit`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitDecision {
    /// The request may go ahead (and was counted).
    pub allowed: bool,
    /// How many more requests would be allowed right now.
    pub remaining: u64,
    /// When refused: how long until the same request would be allowed. `None` when allowed,
    /// or when it never can be (its cost exceeds the burst).
    pub retry_after: Option<Duration>,
    /// How long until the key is back at rest (the full burst available again).
    pub reset_after: Duration,
}

impl Client {
    /// Decides whether a request counted against `key` may go ahead under `limit`, with the
    /// GCRA algorithm of redis-cell, in one script call on the key's shard.
    ///
    /// ```no_run
    /// # async fn run(client: shardis::Client) -> shardis::Result<()> {
    /// use shardis::RateLimit;
    /// let d = client.rate_limit("api:user:42", RateLimit::per_second(100).burst(20)).await?;
    /// if !d.allowed {
    ///     println!("slow down: retry in {:?}", d.retry_after);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// **Guarantees.** A decision is one script run on the key's shard, with the server's
    /// clock: decisions on one key are serialised by the server, so any number of callers in
    /// any number of processes are allowed exactly what GCRA allows (a key at rest lets
    /// `burst + 1` through at once, then one every `period / count`), whatever the clocks of
    /// the callers. The key holds only the theoretical arrival time, and expires once at rest.
    /// If the shard's primary is lost (restart without persistence, failover to a lagging
    /// replica, a topology change moving the key), the key's state is lost and it starts
    /// again at rest: the limiter fails open by up to one burst. If the shard is down, the
    /// call fails; choosing to allow or refuse then is the caller's decision.
    #[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
    pub async fn rate_limit<K: ToSingleRedisArg>(
        &self,
        key: K,
        limit: RateLimit,
    ) -> Result<RateLimitDecision> {
        let (interval, tolerance, increment) = limit.parameters()?;
        let key = self.key(&key)?;
        let mut call = GCRA.prepare_invoke();
        call.key(&key).arg(interval).arg(tolerance).arg(increment);
        let (allowed, remaining, retry, reset): (i64, i64, i64, i64) =
            self.run_script(&key, &call).await?;
        let micros = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0));
        Ok(RateLimitDecision {
            allowed: allowed == 1,
            remaining: u64::try_from(remaining).unwrap_or(0),
            retry_after: (retry >= 0).then(|| micros(retry)),
            reset_after: micros(reset),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_follow_redis_cell() {
        let (interval, tolerance, increment) =
            RateLimit::per_second(100).burst(20).parameters().unwrap();
        assert_eq!((interval, tolerance, increment), (10_000, 210_000, 10_000));
        assert!(RateLimit::per_second(0).parameters().is_err());
        assert!(RateLimit::per(2_000_000, Duration::from_secs(1))
            .parameters()
            .is_err());
        assert!(RateLimit::per_second(1)
            .burst(u64::MAX)
            .parameters()
            .is_err());
    }
}
