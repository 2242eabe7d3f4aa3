//! The certificates clients trust, and what a client makes of a chain a
//! relay serves: the system's trust store (SSL_CERT_FILE / SSL_CERT_DIR
//! honoured, as OpenSSL does), plus CA files, verified the way rustls's
//! client verifies (RFC 6125 names, the chain to an anchor). opsctl checks
//! a new certificate and what relays serve with it; relayd checks the
//! certificate it loads with it when it is told the names clients use.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, RootCertStore};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The certificates clients trust: the system's store, plus CA files given
/// on the command line or in the inventory.
pub struct Trust {
    store: Arc<RootCertStore>,
    /// Each anchor's subject and public key, as DER, to tell a missing
    /// intermediate from an untrusted root.
    anchors: Vec<(Vec<u8>, Vec<u8>)>,
    /// In words, for messages: "the system's trust store and lab-ca.pem".
    pub described: String,
}

impl Trust {
    /// The system's store and every certificate in `ca_files`.
    ///
    /// # Errors
    ///
    /// A CA file that cannot be read, is not PEM, or holds no certificate.
    pub fn load(ca_files: &[PathBuf]) -> anyhow::Result<Trust> {
        let mut store = RootCertStore::empty();
        let mut anchors = Vec::new();
        let system = rustls_native_certs::load_native_certs();
        let mut add = |der: CertificateDer<'static>, from: &str| -> anyhow::Result<()> {
            if let Ok((_, c)) = X509Certificate::from_der(&der) {
                anchors.push((c.subject().as_raw().to_vec(), c.public_key().raw.to_vec()));
            }
            store
                .add(der)
                .map_err(|e| anyhow::anyhow!("{from}: a certificate cannot be a trust anchor: {e}"))
        };
        for der in system.certs {
            // A system certificate rustls cannot use is no anchor; skip it.
            let _ = add(der, "the system's trust store");
        }
        for f in ca_files {
            let shown = f.display().to_string();
            let size = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
            if size > crate::pem::MAX_FILE {
                bail!("the CA file {shown} is {size} bytes: it is not a file of CA certificates");
            }
            let bytes = std::fs::read(f).with_context(|| format!("cannot read the CA file {shown}"))?;
            let mut n = 0;
            use rustls_pki_types::pem::PemObject;
            for der in CertificateDer::pem_slice_iter(&bytes) {
                let der = der.map_err(|e| anyhow::anyhow!("{shown} is not PEM: {e}"))?;
                add(der, &shown)?;
                n += 1;
            }
            if n == 0 {
                bail!(
                    "{shown} holds no certificate\nhelp: a CA file holds `-----BEGIN CERTIFICATE-----` blocks (the root, or the roots, clients trust)"
                );
            }
        }
        let described = if ca_files.is_empty() {
            "the system's trust store".to_owned()
        } else {
            format!(
                "the system's trust store and {}",
                ca_files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Ok(Trust {
            store: Arc::new(store),
            anchors,
            described,
        })
    }

    /// Whether `c` itself is a trust anchor (same subject and key).
    #[must_use]
    pub fn is_anchor(&self, c: &X509Certificate<'_>) -> bool {
        let (s, k) = (c.subject().as_raw(), c.public_key().raw);
        self.anchors.iter().any(|(a, b)| a == s && b == k)
    }

    /// Whether some anchor has this subject (DER of an X.509 name).
    #[must_use]
    pub fn knows(&self, issuer: &[u8]) -> bool {
        self.anchors.iter().any(|(a, _)| a == issuer)
    }

    /// How a client connecting to `name` sees `chain` (leaf first) at `now`.
    #[must_use]
    pub fn verify(&self, chain: &[CertificateDer<'_>], name: &str, now: i64) -> Verdict {
        let Some((leaf, rest)) = chain.split_first() else {
            return Verdict::Other("no certificate".into());
        };
        let Ok(server) = ServerName::try_from(name.to_owned()) else {
            return Verdict::Other(format!("`{name}` is not a host name or address"));
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = match WebPkiServerVerifier::builder_with_provider(self.store.clone(), provider).build()
        {
            Ok(v) => v,
            Err(e) => return Verdict::Other(format!("no trust anchors: {e}")),
        };
        let at = UnixTime::since_unix_epoch(Duration::from_secs(now.max(0) as u64));
        match verifier.verify_server_cert(leaf, rest, &server, &[], at) {
            Ok(_) => Verdict::Trusted,
            Err(rustls::Error::InvalidCertificate(e)) => match e {
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                    Verdict::NameMismatch
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => Verdict::Expired,
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    Verdict::NotYetValid
                }
                CertificateError::UnknownIssuer => {
                    // The last certificate sent: a root nobody trusts, or one
                    // whose issuer (an intermediate) was left out.
                    let last = chain
                        .last()
                        .and_then(|d| X509Certificate::from_der(d).ok())
                        .map(|(_, c)| c);
                    match last {
                        Some(c) if c.subject() != c.issuer() && !self.knows(c.issuer().as_raw()) => {
                            Verdict::ChainIncomplete
                        }
                        _ => Verdict::Untrusted,
                    }
                }
                other if format!("{other:?}").contains("CaUsedAsEndEntity") => Verdict::Other(
                    "the server's certificate is a CA certificate (basicConstraints CA:TRUE), which clients refuse as a server's".into(),
                ),
                other => Verdict::Other(format!("{other:?}")),
            },
            Err(e) => Verdict::Other(e.to_string()),
        }
    }
}

/// What a client would make of a certificate chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Trusted,
    NameMismatch,
    ChainIncomplete,
    Expired,
    NotYetValid,
    Untrusted,
    Other(String),
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Trusted => "trusted",
            Verdict::NameMismatch => "name mismatch",
            Verdict::ChainIncomplete => "chain incomplete",
            Verdict::Expired => "expired",
            Verdict::NotYetValid => "not yet valid",
            Verdict::Untrusted => "untrusted",
            Verdict::Other(why) => why,
        })
    }
}
