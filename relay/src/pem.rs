//! Certificates the way relays keep them: one PEM file holding the whole
//! chain (the server's own certificate first, then each issuer) followed by
//! the private key, which is restund's layout, or the chain and the key in
//! two files, which is coturn's.
//!
//! [`load`] reads a certificate and checks it before anything serves it:
//! every PEM section decodes, there is exactly one private key and it
//! belongs to the first certificate, each certificate is issued by the one
//! after it, and the first is valid at the given time. Errors name the file
//! and say what to change. [`Certificate::summary`] is what logs and
//! operators compare: names, validity and the SHA-256 fingerprint of the
//! server's certificate (as `openssl x509 -fingerprint -sha256` prints it).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{ASN1Time, FromDer, X509Certificate};

/// Where a certificate and its key are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// One file: the chain, server certificate first, then the private key.
    Bundle(PathBuf),
    /// The chain in one file, the private key in another.
    Pair {
        /// The chain, server certificate first.
        chain: PathBuf,
        /// The private key.
        key: PathBuf,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Bundle(path) => write!(f, "{}", path.display()),
            Source::Pair { chain, key } => write!(f, "{} and {}", chain.display(), key.display()),
        }
    }
}

/// Why a certificate cannot be served. Each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file cannot be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error, in the message (not a `source`, so
        /// that chained reports do not print it twice).
        error: io::Error,
    },
    /// A PEM section does not decode.
    #[error("{} is not valid PEM: {why}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        why: String,
    },
    /// No `CERTIFICATE` section.
    #[error(
        "{} holds no certificate; expected `-----BEGIN CERTIFICATE-----` sections, the server's certificate first",
        path.display()
    )]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// No private key section.
    #[error(
        "{} holds no private key; a bundle ends with the server's `-----BEGIN PRIVATE KEY-----` section",
        path.display()
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// More than one private key.
    #[error("{} holds {count} private keys; keep only the server certificate's own", path.display())]
    ManyKeys {
        /// The file.
        path: PathBuf,
        /// How many.
        count: usize,
    },
    /// A certificate that is not X.509 DER.
    #[error("{}: certificate {index} cannot be read: {why}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// 1 for the first certificate in the file.
        index: usize,
        /// What the X.509 reader said.
        why: String,
    },
    /// A private key of a kind or form TLS cannot sign with.
    #[error("{}: the private key cannot be used: {why}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        why: String,
    },
    /// The key is not the first certificate's.
    #[error(
        "the private key in {} does not belong to the first certificate ({subject}); \
         the server's own certificate comes first, then its issuers",
        path.display()
    )]
    KeyMismatch {
        /// The key's file.
        path: PathBuf,
        /// The first certificate's subject.
        subject: String,
    },
    /// Certificate `index` is not issued by the next one.
    #[error(
        "{}: certificate {index} ({subject}) is issued by {issuer}, but certificate {} is {next}; \
         order the chain: the server's certificate, then each issuer",
        path.display(),
        index + 1
    )]
    Order {
        /// The file.
        path: PathBuf,
        /// 1 for the first certificate.
        index: usize,
        /// Its subject.
        subject: String,
        /// Its issuer.
        issuer: String,
        /// The next certificate's subject.
        next: String,
    },
    /// The server's certificate has expired.
    #[error("{}: the certificate ({subject}) expired on {not_after}", path.display())]
    Expired {
        /// The file.
        path: PathBuf,
        /// Its subject.
        subject: String,
        /// When it ended, as printed by X.509 tools.
        not_after: String,
    },
    /// The server's certificate is not valid yet.
    #[error("{}: the certificate ({subject}) is not valid before {not_before}", path.display())]
    NotYetValid {
        /// The file.
        path: PathBuf,
        /// Its subject.
        subject: String,
        /// When it starts.
        not_before: String,
    },
}

/// What identifies a certificate to people: names, validity, fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The server certificate's subject, e.g. `CN=turn.example.org`.
    pub subject: String,
    /// Its issuer.
    pub issuer: String,
    /// Start of validity, seconds since the Unix epoch.
    pub not_before: i64,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
    /// SHA-256 of the server certificate's DER, upper-case hex pairs joined by `:`.
    pub fingerprint: String,
    /// How many certificates the chain has, the server's included.
    pub chain_len: usize,
}

impl Summary {
    /// Whole days from `now` (Unix seconds) to the end of validity;
    /// negative once expired.
    #[must_use]
    pub fn days_left(&self, now: i64) -> i64 {
        (self.not_after - now).div_euclid(86_400)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As X.509 tools print it (every time x509-parser reads converts back).
        let until = ASN1Time::from_timestamp(self.not_after)
            .map_or_else(|_| format!("Unix time {}", self.not_after), |t| t.to_string());
        write!(
            f,
            "{}, issued by {}, valid until {until}, chain of {}, sha256 {}",
            self.subject, self.issuer, self.chain_len, self.fingerprint
        )
    }
}

/// A checked certificate chain and its key, ready to serve.
#[derive(Debug, Clone)]
pub struct Certificate {
    key: Arc<CertifiedKey>,
    summary: Summary,
}

impl Certificate {
    /// The chain and signing key as rustls serves them.
    #[must_use]
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.key.clone()
    }

    /// Names, validity and fingerprint of the server's certificate.
    #[must_use]
    pub fn summary(&self) -> &Summary {
        &self.summary
    }
}

/// The SHA-256 fingerprint of DER bytes, as `openssl x509 -fingerprint` prints it.
#[must_use]
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// Reads and checks the certificate `source` names, as valid at `now`
/// (Unix seconds), with rustls's ring provider.
///
/// # Errors
///
/// Any [`Error`]: the first problem found, naming its file.
pub fn load(source: &Source, now: i64) -> Result<Certificate, Error> {
    let (chain_path, key_path) = match source {
        Source::Bundle(path) => (path.as_path(), path.as_path()),
        Source::Pair { chain, key } => (chain.as_path(), key.as_path()),
    };
    let chain_file = read(chain_path)?;
    let (chain, mut keys) = sections(chain_path, &chain_file)?;
    if let Source::Pair { .. } = source {
        let (_, pair_keys) = sections(key_path, &read(key_path)?)?;
        keys.extend(pair_keys);
    }
    if chain.is_empty() {
        return Err(Error::NoCertificate {
            path: chain_path.to_owned(),
        });
    }
    let key = match keys.len() {
        0 => {
            return Err(Error::NoKey {
                path: key_path.to_owned(),
            });
        }
        1 => keys.remove(0),
        count => {
            return Err(Error::ManyKeys {
                path: key_path.to_owned(),
                count,
            });
        }
    };
    let summary = check_chain(chain_path, &chain, now)?;
    let provider = rustls::crypto::ring::default_provider();
    let key = certified_key(key_path, chain, key, &provider, &summary.subject)?;
    Ok(Certificate {
        key: Arc::new(key),
        summary,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|error| Error::Read {
        path: path.to_owned(),
        error,
    })
}

type Sections = (Vec<CertificateDer<'static>>, Vec<PrivateKeyDer<'static>>);

/// The certificates and private keys in a PEM file, in order; other
/// sections (parameters, requests) are skipped.
fn sections(path: &Path, bytes: &[u8]) -> Result<Sections, Error> {
    let mut chain = Vec::new();
    let mut keys = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes) {
        let (kind, der) = section.map_err(|e| Error::Pem {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
        match kind {
            SectionKind::Certificate => chain.push(CertificateDer::from(der)),
            SectionKind::PrivateKey => keys.push(PrivateKeyDer::Pkcs8(der.into())),
            SectionKind::RsaPrivateKey => keys.push(PrivateKeyDer::Pkcs1(der.into())),
            SectionKind::EcPrivateKey => keys.push(PrivateKeyDer::Sec1(der.into())),
            _ => {}
        }
    }
    Ok((chain, keys))
}

/// Checks that each certificate reads, is issued by the next, and that the
/// first is valid at `now`; returns the first one's summary.
fn check_chain(path: &Path, chain: &[CertificateDer<'_>], now: i64) -> Result<Summary, Error> {
    let mut parsed = Vec::with_capacity(chain.len());
    for (i, der) in chain.iter().enumerate() {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| Error::Certificate {
            path: path.to_owned(),
            index: i + 1,
            why: e.to_string(),
        })?;
        parsed.push(cert);
    }
    for (i, pair) in parsed.windows(2).enumerate() {
        if pair[0].issuer() != pair[1].subject() {
            return Err(Error::Order {
                path: path.to_owned(),
                index: i + 1,
                subject: pair[0].subject().to_string(),
                issuer: pair[0].issuer().to_string(),
                next: pair[1].subject().to_string(),
            });
        }
    }
    let leaf = &parsed[0];
    let validity = leaf.validity();
    let subject = leaf.subject().to_string();
    if validity.not_after.timestamp() < now {
        return Err(Error::Expired {
            path: path.to_owned(),
            subject,
            not_after: validity.not_after.to_string(),
        });
    }
    if validity.not_before.timestamp() > now {
        return Err(Error::NotYetValid {
            path: path.to_owned(),
            subject,
            not_before: validity.not_before.to_string(),
        });
    }
    Ok(Summary {
        subject,
        issuer: leaf.issuer().to_string(),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        fingerprint: fingerprint(&chain[0]),
        chain_len: chain.len(),
    })
}

fn certified_key(
    path: &Path,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
    subject: &str,
) -> Result<CertifiedKey, Error> {
    match CertifiedKey::from_der(chain, key, provider) {
        Ok(key) => Ok(key),
        Err(rustls::Error::InconsistentKeys(_)) => Err(Error::KeyMismatch {
            path: path.to_owned(),
            subject: subject.to_owned(),
        }),
        Err(e) => Err(Error::Key {
            path: path.to_owned(),
            why: e.to_string(),
        }),
    }
}
