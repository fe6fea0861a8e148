//! # shardis-testkit
//!
//! Real Redis processes on free loopback ports, for shardis's tests, demo and benchmarks, and for
//! services that want to test their own use of shardis against real servers instead of mocks.
//!
//! Each [`RedisServer`] is an isolated process with persistence off (`--save ""`, no AOF), no
//! delay before a replica's first sync, its own directory and log file. It is killed when
//! dropped, and its log is printed if that happens while a thread panics (a failing test).
//! [`Nutcracker`] runs a local twemproxy in front of servers, for placement and speed
//! comparisons.
//!
//! Binaries come from `PATH` (Debian: `apt-get install redis-server nutcracker`), or from the
//! paths in `SHARDIS_REDIS_SERVER` and `SHARDIS_NUTCRACKER`. A missing binary is an error that
//! says how to install it: tests built on this crate fail loudly, they never skip.
//!
//! Every process listens on 127.0.0.1 only.
//!
//! # Layout
//! - `redis_server`: [`RedisServer`] — start, kill (SIGKILL), pause (SIGSTOP), resume, restart,
//!   `INFO` fields, replica catch-up.
//! - `sentinel`: [`RedisSentinel`] — a `redis-sentinel` started from the deploy template
//!   (`deploy/sentinel/sentinel.conf`) monitoring local primaries ([`Monitored`]).
//! - `nutcracker`: [`Nutcracker`] — a twemproxy pool over given servers.
//! - [`tls`]: a test certificate authority issuing server and client certificates (valid,
//!   expired, for another host), and the TLS side of a `redis-server`
//!   ([`RedisServer::start_tls`]).
//! - `process`: spawning, readiness, [`free_port`].
//! - `proxy`: network faults on loopback: [`TcpProxy`] (freeze open connections) and
//!   [`SilentListener`] (accepts, never answers).

#![deny(missing_docs, missing_debug_implementations, unsafe_code)]

mod nutcracker;
mod process;
mod proxy;
mod redis_server;
mod sentinel;
pub mod tls;

pub use nutcracker::{nutcracker_binary, Nutcracker, NUTCRACKER_ENV};
pub use process::{free_port, raise_fd_limit};
pub use proxy::{SilentListener, TcpProxy};
pub use redis_server::{redis_server_binary, RedisServer, REDIS_SERVER_ENV};
pub use sentinel::{redis_sentinel_binary, Monitored, RedisSentinel, REDIS_SENTINEL_ENV};

use std::fmt;

/// What went wrong while running a local server process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A process could not be started, signalled or read; a file could not be written.
    Io,
    /// A process did not become ready, or a condition was not reached, in time.
    Timeout,
    /// A server answered something unexpected.
    Protocol,
    /// A setting was rejected.
    Config,
}

/// The error of every fallible testkit call: a kind and a message that says what to do.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<std::io::Error>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(mut self, source: std::io::Error) -> Error {
        self.source = Some(source);
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// `Result<T, shardis_testkit::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
