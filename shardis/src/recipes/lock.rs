//! A lock on one shard (feature `lock`): `SET NX PX` with a random token, a fencing token from
//! a counter beside it, token-checked extend and release, a bounded wait.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use tokio::time::Instant;

use crate::client::Client;
use crate::error::{Error, ErrorKind, Result};

/// Takes the lock if it is free, and then raises the name's fencing counter: to at least the
/// server's clock in microseconds, so the token keeps growing even if the counter was lost
/// (a flushed or replaced shard). KEYS: lock, fence; ARGV: token, ttl ms.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return false
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local fence = tonumber(redis.call('GET', KEYS[2]) or '0') + 1
if fence < now then fence = now end
redis.call('SET', KEYS[2], string.format('%d', fence))
return fence
",
    )
});

/// Extends the lock if this holder still holds it. KEYS: lock; ARGV: token, ttl ms.
static EXTEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
",
    )
});

/// Releases the lock if this holder still holds it. KEYS: lock; ARGV: token.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// A lock named `n` is the key `shardis:lock:` + `n`; its fencing counter is the key
/// `shardis:fence:` + `n`, kept on the lock key's shard (whatever its own placement).
const LOCK_PREFIX: &str = "shardis:lock:";
const FENCE_PREFIX: &str = "shardis:fence:";

/// Shortest and longest pause between two tries while waiting for a lock.
const MIN_PAUSE: Duration = Duration::from_millis(5);
const MAX_PAUSE: Duration = Duration::from_millis(100);

/// How to take a lock: from [`Client::lock`].
#[derive(Debug, Clone)]
#[must_use = "call acquire() or try_acquire()"]
pub struct LockBuilder {
    client: Client,
    name: String,
    ttl: Duration,
    wait: Duration,
}

impl Client {
    /// A lock named `name` on the shard that owns it: at most one holder at a time while its
    /// shard's primary serves, released by its holder or expiring after its TTL.
    ///
    /// ```no_run
    /// # async fn run(client: shardis::Client) -> shardis::Result<()> {
    /// use std::time::Duration;
    /// let lock = client
    ///     .lock("jobs:nightly")
    ///     .ttl(Duration::from_secs(30))
    ///     .wait(Duration::from_secs(5))
    ///     .acquire()
    ///     .await?;
    /// let fence: u64 = lock.fencing_token(); // pass it to the storage the lock protects
    /// lock.extend(Duration::from_secs(30)).await?;
    /// lock.release().await?; // dropping the guard releases it in the background
    /// # let _ = fence; Ok(()) }
    /// ```
    ///
    /// **What it guarantees.** Taking the lock is one `SET key token NX PX ttl` on the
    /// primary of the name's shard, with a random 128-bit token; extend and release are
    /// scripts that act only if the key still holds that token, so a holder whose lock
    /// expired can never release or extend another's. While the primary runs, at most one
    /// holder has the lock at any instant of the server's clock. Every successful acquire gets
    /// a **fencing token** that is larger than every earlier one of that name: a counter on
    /// the same shard, raised to at least the server clock in microseconds.
    ///
    /// **What it does not.** A holder that pauses (GC, SIGSTOP, a slow network) longer than
    /// the TTL loses the lock without knowing it, and another may take it: protect the
    /// resource with the fencing token (reject writes with a token lower than one already
    /// seen), and extend before the TTL ends. A single shard has no replication guarantee:
    /// if its primary dies and a replica is promoted (`on_primary_down = "promote_replica"`)
    /// or the shard is ejected or moved by a topology change, a lock written just before may
    /// be lost and taken twice; the fencing token still grows provided the servers' clocks
    /// are within a lock's lifetime of each other. This is deliberately not Redlock: Redlock
    /// needs independent masters per lock and still depends on timing assumptions, while a
    /// cache fleet's shards each own different keys; a lock that must survive failover
    /// belongs in a consensus system (etcd, ZooKeeper).
    #[cfg_attr(docsrs, doc(cfg(feature = "lock")))]
    pub fn lock(&self, name: impl Into<String>) -> LockBuilder {
        LockBuilder {
            client: self.clone(),
            name: name.into(),
            ttl: Duration::from_secs(30),
            wait: Duration::ZERO,
        }
    }
}

impl LockBuilder {
    /// How long the lock lives unless extended or released (default 30 s; at least 1 ms,
    /// millisecond precision).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long `acquire` waits for a held lock to be released before failing with
    /// [`ErrorKind::LockNotAcquired`] (default 0: one try). It polls with a growing pause
    /// (5 ms to 100 ms, with jitter).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Takes the lock, waiting up to the wait; [`ErrorKind::LockNotAcquired`] if another
    /// holds it all that time.
    pub async fn acquire(self) -> Result<Lock> {
        let deadline = Instant::now() + self.wait;
        let mut pause = MIN_PAUSE;
        loop {
            if let Some(lock) = self.try_once().await? {
                return Ok(lock);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::new(
                    ErrorKind::LockNotAcquired,
                    format!(
                        "lock {} is held by another holder (waited {} ms)",
                        crate::error::quoted(&self.name),
                        self.wait.as_millis()
                    ),
                ));
            }
            let jitter = pause.mul_f64(fastrand_unit());
            tokio::time::sleep((pause / 2 + jitter / 2).min(deadline - now)).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// One try: the lock, or `None` if another holds it.
    pub async fn try_acquire(self) -> Result<Option<Lock>> {
        self.try_once().await
    }

    async fn try_once(&self) -> Result<Option<Lock>> {
        let ttl = ttl_ms(self.ttl)?;
        let key = format!("{LOCK_PREFIX}{}", self.name);
        let token = random_token()?;
        let mut call = ACQUIRE.prepare_invoke();
        call.key(&key)
            .key(format!("{FENCE_PREFIX}{}", self.name))
            .arg(&token)
            .arg(ttl);
        let fence: Option<u64> = self.client.run_script(key.as_bytes(), &call).await?;
        Ok(fence.map(|fence| Lock {
            client: self.client.clone(),
            key,
            token,
            fence,
            released: false,
        }))
    }
}

/// A held lock: from [`LockBuilder::acquire`]. Dropping it without
/// [`release`](Lock::release) releases it in the background (on the current tokio runtime;
/// without one it expires after its TTL).
#[must_use = "dropping the lock releases it"]
pub struct Lock {
    client: Client,
    key: String,
    token: String,
    fence: u64,
    released: bool,
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a capability: never shown.
        f.debug_struct("Lock")
            .field("key", &self.key)
            .field("fencing_token", &self.fence)
            .finish_non_exhaustive()
    }
}

impl Lock {
    /// The fencing token of this acquisition: larger than that of every earlier acquisition
    /// of the same name (see [`Client::lock`] for when).
    pub fn fencing_token(&self) -> u64 {
        self.fence
    }

    /// Sets the lock to expire `ttl` from now, if it is still held by this holder;
    /// [`ErrorKind::LockLost`] if it expired (it may be held by another now).
    pub async fn extend(&self, ttl: Duration) -> Result<()> {
        let mut call = EXTEND.prepare_invoke();
        call.key(&self.key).arg(&self.token).arg(ttl_ms(ttl)?);
        self.checked(&call, "extend").await
    }

    /// Releases the lock, if it is still held by this holder; [`ErrorKind::LockLost`] if it
    /// had expired (and may have been taken by another, whose lock is left alone).
    pub async fn release(mut self) -> Result<()> {
        self.released = true;
        let mut call = RELEASE.prepare_invoke();
        call.key(&self.key).arg(&self.token);
        self.checked(&call, "release").await
    }

    async fn checked(&self, call: &redis::ScriptInvocation<'_>, what: &str) -> Result<()> {
        let done: i64 = self.client.run_script(self.key.as_bytes(), call).await?;
        if done == 1 {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::LockLost,
                format!(
                    "{what}: lock {} is no longer held by this holder (it expired)",
                    crate::error::quoted(&self.key)
                ),
            ))
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // no runtime: the lock expires after its TTL
        };
        let client = self.client.clone();
        let key = std::mem::take(&mut self.key);
        let token = std::mem::take(&mut self.token);
        runtime.spawn(async move {
            let mut call = RELEASE.prepare_invoke();
            call.key(&key).arg(&token);
            if let Err(e) = client.run_script::<i64>(key.as_bytes(), &call).await {
                tracing::debug!(error = %e, "background release of a dropped lock failed; it expires after its TTL");
            }
        });
    }
}

/// A TTL in whole milliseconds, at least 1.
fn ttl_ms(ttl: Duration) -> Result<u64> {
    let ms = ttl.as_millis();
    if ms == 0 {
        return Err(Error::invalid_input("a lock's TTL must be at least 1 ms"));
    }
    Ok(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// 128 random bits from the operating system, in hex.
fn random_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("no randomness for a lock token: {e}"),
        )
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A number in [0, 1) for jitter: from the token source, so no second generator.
fn fastrand_unit() -> f64 {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    f64::from(u16::from_le_bytes(b)) / 65536.0
}
