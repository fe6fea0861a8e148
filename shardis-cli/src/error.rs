//! The CLI's error: a library error, a harness error, or one of the CLI's own (bad arguments,
//! a failed benchmark task, I/O), each with a kind from the library's vocabulary so that the
//! JSON output has one `kind` field for all of them.

use std::fmt;

use shardis::ErrorKind;

/// Why a command failed.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    /// The library error, when it is one: it knows the shard and endpoint.
    library: Option<shardis::Error>,
}

impl Error {
    /// One of the CLI's own errors.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            library: None,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The shard the error concerns, when it is a library error about one.
    pub fn shard(&self) -> Option<&str> {
        self.library.as_ref().and_then(|e| e.shard())
    }

    /// True when the request failed after it was sent: it may have run (see
    /// `shardis::Error::is_outcome_unknown`).
    pub fn is_outcome_unknown(&self) -> bool {
        self.library
            .as_ref()
            .is_some_and(shardis::Error::is_outcome_unknown)
    }

    /// The endpoint the error concerns, when it is a library error about one.
    pub fn endpoint(&self) -> Option<&str> {
        self.library.as_ref().and_then(|e| e.endpoint())
    }
}

impl From<shardis::Error> for Error {
    fn from(e: shardis::Error) -> Error {
        Error {
            kind: e.kind(),
            message: e.to_string(),
            library: Some(e),
        }
    }
}

impl From<shardis::ConfigError> for Error {
    fn from(e: shardis::ConfigError) -> Error {
        shardis::Error::from(e).into()
    }
}

impl From<shardis_testkit::Error> for Error {
    fn from(e: shardis_testkit::Error) -> Error {
        let kind = match e.kind() {
            shardis_testkit::ErrorKind::Timeout => ErrorKind::Timeout,
            shardis_testkit::ErrorKind::Protocol => ErrorKind::Type,
            shardis_testkit::ErrorKind::Config => ErrorKind::Config,
            _ => ErrorKind::Io,
        };
        Error::new(kind, e.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.library {
            // The library's message already says kind, shard and endpoint.
            Some(e) => write!(f, "{e}"),
            None => write!(f, "{}: {}", self.kind, self.message),
        }
    }
}

impl std::error::Error for Error {}
