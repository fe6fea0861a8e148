//! TLS settings (`[tls]` in the config file) and, with the `tls` feature, what they are turned
//! into: the trust roots and client certificate read from their files, checked once per table
//! build, and the redis-rs client of a `rediss://` endpoint.
//!
//! The settings are parsed whether or not the feature is on, so a config file means the same
//! everywhere; without the feature a `rediss://` endpoint is refused with a config error.

use std::path::PathBuf;

use crate::error::ConfigError;

#[cfg(feature = "tls")]
mod material;

#[cfg(feature = "tls")]
pub(crate) use material::{client_hello, is_tls_failure, TlsMaterial};

/// How `rediss://` endpoints are reached (`[tls]` in the config file). Plain `redis://`
/// endpoints ignore it.
///
/// Paths are shown in errors and `Debug`; the contents of the files never are.
///
/// ```
/// let tls = shardis::TlsOptions::default()
///     .ca_file("/etc/shardis/ca.pem")
///     .client_cert("/etc/shardis/client.pem", "/etc/shardis/client.key");
/// assert!(!tls.insecure_skip_verify);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TlsOptions {
    /// PEM file of the certificates that may sign a server's certificate (`ca_file`). Defaults
    /// to none: the system's trust roots are used.
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate chain sent for mutual TLS (`client_cert_file`).
    /// Defaults to none. Needs `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (`client_key_file`). Defaults to none.
    pub client_key_file: Option<PathBuf>,
    /// Accept any server certificate, for any host name (`insecure_skip_verify`). Defaults to
    /// false. The connection is encrypted but not authenticated: anyone on the path can read
    /// and change the traffic. A warning is logged at every table build while it is on.
    pub insecure_skip_verify: bool,
}

impl TlsOptions {
    /// Sets `ca_file`.
    #[must_use]
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Sets `client_cert_file` and `client_key_file`, for mutual TLS.
    #[must_use]
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert_file = Some(cert.into());
        self.client_key_file = Some(key.into());
        self
    }

    /// Sets `insecure_skip_verify`.
    #[must_use]
    pub fn insecure_skip_verify(mut self, skip: bool) -> Self {
        self.insecure_skip_verify = skip;
        self
    }

    /// Checks that the client certificate and key are given together.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        match (&self.client_cert_file, &self.client_key_file) {
            (Some(_), None) => Err(ConfigError::InvalidValue {
                field: "tls.client_key_file".into(),
                reason: "`tls.client_cert_file` is set without a key file".into(),
            }),
            (None, Some(_)) => Err(ConfigError::InvalidValue {
                field: "tls.client_cert_file".into(),
                reason: "`tls.client_key_file` is set without a certificate file".into(),
            }),
            _ => Ok(()),
        }
    }
}

/// Without the `tls` feature: every `rediss://` endpoint is refused, saying why.
#[cfg(not(feature = "tls"))]
#[derive(Debug)]
pub(crate) struct TlsMaterial;

#[cfg(not(feature = "tls"))]
impl TlsMaterial {
    pub(crate) fn load(_: &TlsOptions) -> crate::Result<TlsMaterial> {
        Err(missing_feature())
    }

    pub(crate) fn fingerprint(&self) -> u64 {
        0
    }

    pub(crate) fn client(&self, _: &crate::Endpoint) -> crate::Result<redis::Client> {
        Err(missing_feature())
    }
}

#[cfg(not(feature = "tls"))]
fn missing_feature() -> crate::Error {
    crate::Error::new(
        crate::ErrorKind::Config,
        "rediss:// (TLS) endpoints need shardis's cargo feature `tls`, which this build lacks",
    )
}
