//! The files of [`TlsOptions`] read and checked, and the redis-rs clients made from them.
//!
//! Everything here runs on the table build's blocking thread: the files are small, read once
//! per build, and checked by building the rustls configuration the connections will use, so a
//! bad file fails the build (start, reload) with its reason instead of every connection later.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsOptions;
use crate::error::{Error, ErrorKind, Result};
use crate::topology::Endpoint;

/// The TLS files of one table build, read and checked.
pub(crate) struct TlsMaterial {
    certificates: redis::TlsCertificates,
    insecure: bool,
    /// A hash of the settings and the files' bytes: a node is reused by a new table only when
    /// it is unchanged, so a certificate rotated in place is picked up by a reload.
    fingerprint: u64,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `redis::TlsCertificates`'s own Debug redacts; the key never leaves this struct.
        f.debug_struct("TlsMaterial")
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl TlsMaterial {
    /// Reads the files named by `options` and checks that rustls accepts them together.
    /// Blocking: call it off the async workers.
    pub(crate) fn load(options: &TlsOptions) -> Result<TlsMaterial> {
        ensure_crypto_provider();
        let mut fingerprint = xxhash_rust::xxh3::Xxh3::new();
        fingerprint.update(&[u8::from(options.insecure_skip_verify)]);
        let mut read = |field: &str, path: &Path| -> Result<Vec<u8>> {
            let bytes = std::fs::read(path).map_err(|e| {
                tls_error(format!("cannot read tls.{field} {}: {e}", path.display()))
            })?;
            fingerprint.update(field.as_bytes());
            fingerprint.update(&bytes);
            Ok(bytes)
        };
        let root_cert = options
            .ca_file
            .as_deref()
            .map(|p| read("ca_file", p).map(|b| (p, b)))
            .transpose()?;
        let client = match (&options.client_cert_file, &options.client_key_file) {
            (Some(cert), Some(key)) => Some((
                cert,
                read("client_cert_file", cert)?,
                key,
                read("client_key_file", key)?,
            )),
            _ => None,
        };

        // Check the files as the connections will use them.
        let mut roots = rustls::RootCertStore::empty();
        if let Some((path, pem)) = &root_cert {
            let certs = parse_certs(pem, "ca_file", path)?;
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    tls_error(format!(
                        "tls.ca_file {} holds a certificate rustls cannot use as a trust root: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(format!("no TLS protocol version available: {e}")))?
        .with_root_certificates(roots);
        if let Some((cert_path, cert_pem, key_path, key_pem)) = &client {
            let chain = parse_certs(cert_pem, "client_cert_file", cert_path)?;
            // The key parser's error may quote nothing of the key; ours names only the file.
            let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| {
                tls_error(format!(
                    "tls.client_key_file {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                    key_path.display()
                ))
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                tls_error(format!(
                    "tls.client_cert_file {} and tls.client_key_file {} do not make a usable \
                     client certificate: {e}",
                    cert_path.display(),
                    key_path.display()
                ))
            })?;
        }
        if options.insecure_skip_verify {
            tracing::warn!(
                "tls.insecure_skip_verify is on: server certificates are NOT verified; the \
                 traffic to every rediss:// endpoint can be read and changed by anyone on the path"
            );
        }
        Ok(TlsMaterial {
            certificates: redis::TlsCertificates {
                client_tls: client.map(|(_, cert, _, key)| redis::ClientTlsConfig {
                    client_cert: cert,
                    client_key: key,
                }),
                root_cert: root_cert.map(|(_, pem)| pem),
            },
            insecure: options.insecure_skip_verify,
            fingerprint: fingerprint.digest(),
        })
    }

    /// See the field.
    pub(crate) fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The redis-rs client of a `rediss://` endpoint.
    pub(crate) fn client(&self, endpoint: &Endpoint) -> Result<redis::Client> {
        let mut url = endpoint.secret_url();
        if self.insecure {
            url.push_str("#insecure");
        }
        redis::Client::build_with_tls(url, self.certificates.clone()).map_err(|e| {
            // The redis-rs message may quote the URL; replace it with our own words.
            tls_error(format!(
                "redis-rs rejected the TLS settings: {:?}",
                e.kind()
            ))
        })
    }
}

fn tls_error(message: String) -> Error {
    Error::new(ErrorKind::Tls, message)
}

/// The certificates of a PEM file; at least one.
fn parse_certs(pem: &[u8], field: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            tls_error(format!(
                "tls.{field} {} is not valid PEM: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(tls_error(format!(
            "tls.{field} {} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
            path.display()
        )));
    }
    Ok(certs)
}

/// Installs `ring` as rustls's process-wide crypto provider unless the application installed
/// one. redis-rs builds its rustls configurations with the process default, and rustls cannot
/// pick one itself when more than one is compiled in.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may install one between the check and here: then this fails, and
        // theirs is used. Either way a provider is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// True when a connection failed in TLS: the handshake (an untrusted, expired or misnamed
/// certificate, a server that does not speak TLS) or a TLS-level alert.
pub(crate) fn is_tls_failure(e: &redis::RedisError) -> bool {
    use std::error::Error as _;
    let Some(source) = e.source() else {
        return false;
    };
    // redis-rs keeps its inner error behind an `Arc<dyn Error>`.
    let inner: &(dyn std::error::Error + 'static) =
        match source.downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>() {
            Some(arc) => &**arc,
            None => source,
        };
    if inner.downcast_ref::<rustls::Error>().is_some() {
        return true;
    }
    inner
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .is_some_and(|e| e.downcast_ref::<rustls::Error>().is_some())
}

/// The first bytes a TLS client sends (its hello), to ask a port whether it speaks TLS.
pub(crate) fn client_hello() -> Option<Vec<u8>> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("shardis.invalid").ok()?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).ok()?;
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).ok()?;
    Some(hello)
}
