//! Mutual TLS for the gRPC API on TCP: the PEM files (`[control] tls_cert`,
//! `tls_key`, `tls_client_ca` for dpvsd; `--tls-cert`, `--tls-key`, `--tls-ca`
//! for dpvsctl) read and checked, and tonic's rustls configurations built from
//! them.
//!
//! Every file is checked here before rustls sees it, because rustls skips a CA
//! certificate it cannot parse and reports a key that does not match the
//! certificate without naming either file. Errors are one line naming the key
//! (or option) and the file. Nothing here opens a socket.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// A TLS handshake that takes longer is dropped (a client that connects and
/// stays silent must not hold a task forever).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// PEM files are small; a larger file is not one (and `/dev/zero` must not
/// hang dpvsd).
const MAX_PEM_BYTES: u64 = 1 << 20;

/// One side's files of a mutual TLS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Own certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// The leaf certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificate(s) (PEM) the peer's certificate must chain to.
    pub ca: PathBuf,
}

/// What errors call the three files: config keys or command-line options.
#[derive(Debug, Clone, Copy)]
pub struct Names {
    pub cert: &'static str,
    pub key: &'static str,
    pub ca: &'static str,
}

/// dpvsd's `[control]` keys.
pub const CONFIG_NAMES: Names = Names {
    cert: "control.tls_cert",
    key: "control.tls_key",
    ca: "control.tls_client_ca",
};

/// dpvsctl's options.
pub const CTL_NAMES: Names = Names {
    cert: "--tls-cert",
    key: "--tls-key",
    ca: "--tls-ca",
};

/// The three files read and checked: the certificates parse, the key is the
/// leaf certificate's, and the CA certificates are usable trust anchors.
#[derive(Clone)]
pub struct TlsPem {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
}

impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("TlsPem").finish_non_exhaustive()
    }
}

impl TlsFiles {
    /// Reads and checks the files; errors are `NAME: FILE: problem`.
    pub fn load(&self, names: &Names) -> Result<TlsPem, String> {
        let (cert, chain) = read_certs(names.cert, &self.cert)?;
        let key = read(names.key, &self.key)?;
        let key_der = PrivateKeyDer::from_pem_slice(&key).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => format!(
                "{}: {}: no PEM private key in it (-----BEGIN PRIVATE KEY-----)",
                names.key,
                self.key.display()
            ),
            e => format!(
                "{}: {}: not a PEM private key file ({})",
                names.key,
                self.key.display(),
                pem_error(&e)
            ),
        })?;
        let (ca, anchors) = read_certs(names.ca, &self.ca)?;
        let mut roots = rustls::RootCertStore::empty();
        for (i, c) in anchors.into_iter().enumerate() {
            roots.add(c).map_err(|e| {
                format!(
                    "{}: {}: certificate {}: {e}",
                    names.ca,
                    self.ca.display(),
                    i + 1
                )
            })?;
        }
        let provider = rustls::crypto::ring::default_provider();
        match rustls::sign::CertifiedKey::from_der(chain, key_der, &provider) {
            Ok(_) => {}
            Err(rustls::Error::InconsistentKeys(_)) => {
                return Err(format!(
                    "{}: {} is not the key of the certificate in {} ({})",
                    names.key,
                    self.key.display(),
                    self.cert.display(),
                    names.cert
                ))
            }
            Err(e @ rustls::Error::InvalidCertificate(_)) => {
                return Err(format!("{}: {}: {e}", names.cert, self.cert.display()))
            }
            Err(e) => return Err(format!("{}: {}: {e}", names.key, self.key.display())),
        }
        Ok(TlsPem { cert, key, ca })
    }
}

impl TlsPem {
    /// dpvsd's side: its certificate, and client certificates required and
    /// checked against the CA.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .client_ca_root(Certificate::from_pem(&self.ca))
            .client_auth_optional(false)
            .timeout(HANDSHAKE_TIMEOUT)
    }

    /// dpvsctl's side: its certificate, and the server's checked against the
    /// CA (and its name against the host in `https://HOST:PORT`).
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .ca_certificate(Certificate::from_pem(&self.ca))
            .timeout(HANDSHAKE_TIMEOUT)
    }
}

fn read(name: &str, path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let mut f = std::fs::File::open(path).map_err(|e| format!("{name}: {shown}: {e}"))?;
    if f.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(format!("{name}: {shown}: is a directory, not a PEM file"));
    }
    let mut buf = Vec::new();
    (&mut f)
        .take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{name}: {shown}: {e}"))?;
    if buf.len() as u64 > MAX_PEM_BYTES {
        return Err(format!(
            "{name}: {shown}: larger than {MAX_PEM_BYTES} bytes, not a PEM file"
        ));
    }
    Ok(buf)
}

/// A PEM file of certificates: its text and the certificates, at least one.
fn read_certs(name: &str, path: &Path) -> Result<(Vec<u8>, Vec<CertificateDer<'static>>), String> {
    let text = read(name, path)?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "{name}: {}: not a PEM certificate file ({})",
                path.display(),
                pem_error(&e)
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "{name}: {}: no PEM certificate in it (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok((text, certs))
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    e.to_string().replace('\n', " ")
}
