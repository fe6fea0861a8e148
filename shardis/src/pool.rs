//! Our bb8 connection manager over redis-rs multiplexed connections.
//!
//! bb8-redis's manager cannot set connect or response timeouts and never reports a broken
//! connection (`has_broken` is always false), so a dead socket would stay pooled forever. This
//! manager applies both timeouts and carries a broken flag per connection: a request that sees a
//! connection-level failure sets it, and the pool drops the connection the next time it passes
//! through a checkout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

/// A pooled connection: a multiplexed redis-rs connection and its shared broken flag.
///
/// Cloning is cheap and shares the socket: the request path clones the pooled connection and
/// returns the pool slot at once, so one socket carries many concurrent requests.
#[derive(Clone)]
pub(crate) struct Conn {
    pub(crate) inner: MultiplexedConnection,
    broken: Arc<AtomicBool>,
}

impl Conn {
    /// Marks the socket dead: the pool discards it at its next checkout.
    pub(crate) fn mark_broken(&self) {
        self.broken.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }

    /// True if both are the same socket.
    pub(crate) fn same(&self, other: &Conn) -> bool {
        Arc::ptr_eq(&self.broken, &other.broken)
    }
}

/// Creates connections to one endpoint.
pub(crate) struct Manager {
    client: redis::Client,
    config: AsyncConnectionConfig,
    connect_timeout: Duration,
    /// The last connect failure, so a checkout that times out can say why.
    /// A std mutex: held for a clone or a store, never across an await.
    last_error: Arc<Mutex<Option<String>>>,
}

impl Manager {
    pub(crate) fn new(
        client: redis::Client,
        connect_timeout: Duration,
        response_timeout: Duration,
        last_error: Arc<Mutex<Option<String>>>,
    ) -> Manager {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout));
        Manager {
            client,
            config,
            connect_timeout,
            last_error,
        }
    }

    fn record(&self, error: Option<String>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = error;
        }
    }
}

impl bb8::ManageConnection for Manager {
    type Connection = Conn;
    type Error = redis::RedisError;

    async fn connect(&self) -> Result<Conn, redis::RedisError> {
        // redis-rs applies the connection timeout to the TCP connect; the outer timeout also
        // bounds the handshake (AUTH, SELECT) against a server that accepts and then hangs.
        let attempt = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config);
        let result = match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "connect and handshake took longer than {} ms",
                    self.connect_timeout.as_millis()
                ),
            ))),
        };
        match result {
            Ok(inner) => {
                self.record(None);
                Ok(Conn {
                    inner,
                    broken: Arc::new(AtomicBool::new(false)),
                })
            }
            Err(e) => {
                self.record(Some(e.to_string()));
                Err(e)
            }
        }
    }

    async fn is_valid(&self, conn: &mut Conn) -> Result<(), redis::RedisError> {
        redis::cmd("PING").query_async::<()>(&mut conn.inner).await
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.is_broken()
    }
}
