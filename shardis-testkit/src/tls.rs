//! Certificates made at test time, for TLS servers and clients: a certificate authority that
//! issues server and client certificates (valid, expired, or for another host name), written
//! as PEM files in a temporary directory.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::process::io_error;
use crate::{Error, ErrorKind, Result};

/// When an issued certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Validity {
    /// From a year ago to ten years from now.
    Current,
    /// From 2020-01-01 to 2021-01-01: expired.
    Expired,
}

/// What an issued certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Usage {
    /// A server's (TLS server authentication).
    Server,
    /// A client's, for mutual TLS (TLS client authentication).
    Client,
}

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert_file: PathBuf,
    /// The private key (PEM, PKCS#8).
    pub key_file: PathBuf,
}

/// A certificate authority whose certificate is a PEM file in a directory of its own (removed
/// when dropped).
///
/// ```no_run
/// use shardis_testkit::tls::{CertAuthority, Usage, Validity};
/// let ca = CertAuthority::new("test-ca").unwrap();
/// let server = ca.issue("server", &["localhost", "127.0.0.1"], Usage::Server, Validity::Current).unwrap();
/// println!("trust {} to reach the server using {}", ca.ca_file().display(), server.cert_file.display());
/// ```
pub struct CertAuthority {
    params: CertificateParams,
    key: KeyPair,
    ca_file: PathBuf,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority")
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

fn cert_error(what: &str, e: rcgen::Error) -> Error {
    Error::new(ErrorKind::Config, format!("{what}: {e}"))
}

impl CertAuthority {
    /// A new CA called `name`, its certificate written to `<dir>/<name>-ca.pem`.
    pub fn new(name: &str) -> Result<CertAuthority> {
        let dir = tempfile::Builder::new()
            .prefix("shardis-tls-")
            .tempdir()
            .map_err(|e| io_error("cannot create a directory for certificates", e))?;
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| cert_error("CA parameters", e))?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(2099, 1, 1);
        let key = KeyPair::generate().map_err(|e| cert_error("CA key", e))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| cert_error("CA certificate", e))?;
        let ca_file = dir.path().join(format!("{name}-ca.pem"));
        write(&ca_file, cert.pem().as_bytes())?;
        Ok(CertAuthority {
            params,
            key,
            ca_file,
            dir,
        })
    }

    /// The CA's certificate (PEM): the trust root to give clients and servers.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The directory the files are written to.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Issues a certificate for `hosts` (DNS names or IP addresses) signed by this CA, written
    /// to `<name>.pem` and `<name>.key`.
    pub fn issue(
        &self,
        name: &str,
        hosts: &[&str],
        usage: Usage,
        validity: Validity,
    ) -> Result<Issued> {
        let mut params =
            CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                .map_err(|e| cert_error("certificate parameters", e))?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![match usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        match validity {
            Validity::Current => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let year = 1970 + (now / 31_557_600) as i32;
                params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
                params.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
            }
            Validity::Expired => {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
        }
        let key = KeyPair::generate().map_err(|e| cert_error("key", e))?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| cert_error("certificate", e))?;
        let issued = Issued {
            cert_file: self.dir.path().join(format!("{name}.pem")),
            key_file: self.dir.path().join(format!("{name}.key")),
        };
        write(&issued.cert_file, cert.pem().as_bytes())?;
        write(&issued.key_file, key.serialize_pem().as_bytes())?;
        Ok(issued)
    }

    /// A server certificate for the loopback addresses (`localhost`, `127.0.0.1`, `::1`),
    /// valid now.
    pub fn loopback_server(&self, name: &str) -> Result<Issued> {
        self.issue(
            name,
            &["localhost", "127.0.0.1", "::1"],
            Usage::Server,
            Validity::Current,
        )
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes)
        .map_err(|e| io_error(&format!("cannot write {}", path.display()), e))
}

/// The TLS side of a `redis-server`: its certificate and key, the CA that client
/// certificates must chain to, and whether clients must present one.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The server's certificate and key.
    pub server: Issued,
    /// The CA file the server checks client certificates against (`--tls-ca-cert-file`).
    pub ca_file: PathBuf,
    /// `--tls-auth-clients yes` (mutual TLS) when true, `no` when false.
    pub require_client_cert: bool,
}

impl ServerTls {
    /// `redis-server` arguments for this TLS side, on `port`.
    pub(crate) fn args(&self, port: u16) -> Vec<String> {
        let path = |p: &Path| p.display().to_string();
        vec![
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            path(&self.server.cert_file),
            "--tls-key-file".into(),
            path(&self.server.key_file),
            "--tls-ca-cert-file".into(),
            path(&self.ca_file),
            "--tls-auth-clients".into(),
            if self.require_client_cert {
                "yes"
            } else {
                "no"
            }
            .into(),
        ]
    }
}
