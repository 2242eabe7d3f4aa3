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
    /// The file is far larger than any certificate bundle.
    #[error(
        "{} is {size} bytes; a certificate bundle is a few kilobytes (at most {MAX_FILE}): is this the right file?",
        path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },
    /// The file is not PEM as relays read it: text outside the blocks, a
    /// block that never ends, or one that does not decode.
    #[error("{}:{line}: {why}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// 1-based line where the problem is.
        line: usize,
        /// What is wrong and what to change.
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
    /// Certificate `index` is not signed by the next one's key, though it names it.
    #[error(
        "{}: certificate {index} ({subject}) names {issuer} as its issuer, but its signature does not verify with certificate {}'s key; \
         put the certificate that really issued it after it",
        path.display(),
        index + 1
    )]
    Signature {
        /// The file.
        path: PathBuf,
        /// 1 for the first certificate.
        index: usize,
        /// Its subject.
        subject: String,
        /// Its issuer.
        issuer: String,
    },
    /// An RSA key too short to be trusted.
    #[error(
        "{}: the certificate ({subject}) has a {bits}-bit RSA key; relays and clients need at least 2048 bits: issue a new certificate with a longer key",
        path.display()
    )]
    WeakKey {
        /// The file.
        path: PathBuf,
        /// The certificate's subject.
        subject: String,
        /// The key's size.
        bits: usize,
    },
    /// Clients connecting to `name` would refuse the certificate.
    #[error(
        "{}: clients connecting to {name} would refuse the certificate ({subject}): {verdict}; \
         fix the certificate (its names, or the intermediates after it), or the names given with --tls-name",
        path.display()
    )]
    NotForClients {
        /// The file.
        path: PathBuf,
        /// The certificate's subject.
        subject: String,
        /// The name clients use.
        name: String,
        /// What a client makes of it: name mismatch, chain incomplete, ...
        verdict: String,
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
    /// The names the server certificate is valid for (its subjectAltName
    /// DNS names and IP addresses), as written in it.
    pub names: Vec<String>,
    /// The subjects of the issuers in the file, in order after the server's.
    pub issuers: Vec<String>,
    /// The server key, in words: `EC P-256`, `RSA 2048`, `Ed25519`.
    pub key: String,
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
    /// The chain as served, server certificate first.
    #[must_use]
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.key.cert
    }

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

/// The largest file read as a certificate or key: a chain of a few
/// certificates is a few kilobytes, so anything near this is the wrong file.
pub const MAX_FILE: u64 = 1 << 20;

/// Reads and checks the certificate `source` names, as valid at `now`
/// (Unix seconds), with rustls's ring provider.
///
/// # Errors
///
/// Any [`Error`]: the first problem found, naming its file.
pub fn load(source: &Source, now: i64) -> Result<Certificate, Error> {
    match source {
        Source::Bundle(path) => parse(source, &read(path)?, None, now),
        Source::Pair { chain, key } => parse(source, &read(chain)?, Some(&read(key)?), now),
    }
}

/// Checks a certificate already read: `chain` is the bundle's (or the chain
/// file's) bytes, `key` the key file's for a [`Source::Pair`]. Errors name
/// the files of `source`.
///
/// # Errors
///
/// Any [`Error`]: the first problem found, naming its file.
pub fn parse(source: &Source, chain: &[u8], key: Option<&[u8]>, now: i64) -> Result<Certificate, Error> {
    let (chain_path, key_path) = match source {
        Source::Bundle(path) => (path.as_path(), path.as_path()),
        Source::Pair { chain, key } => (chain.as_path(), key.as_path()),
    };
    for (path, bytes) in std::iter::once((chain_path, chain)).chain(key.map(|k| (key_path, k))) {
        if bytes.len() as u64 > MAX_FILE {
            return Err(Error::TooLarge {
                path: path.to_owned(),
                size: bytes.len() as u64,
            });
        }
    }
    let mut parts = Parts::read(chain_path, chain)?;
    if let Some(k) = key {
        let pair = Parts::read(key_path, k)?;
        parts.keys.extend(pair.keys);
    }
    let (chain, key) = parts.checked(chain_path, key_path)?;
    let summary = check_chain(chain_path, &chain, now)?;
    let provider = rustls::crypto::ring::default_provider();
    let key = certified_key(key_path, chain, key, &provider, &summary.subject)?;
    Ok(Certificate {
        key: Arc::new(key),
        summary,
    })
}

/// A bundle cut into coturn's two files: the chain's PEM blocks, and the
/// key's, each exactly as they stand in the bundle.
///
/// # Errors
///
/// The file is not strict PEM, or does not hold certificates and exactly one key.
pub fn split(path: &Path, bytes: &[u8]) -> Result<(String, String), Error> {
    let blocks = blocks(path, bytes)?;
    let mut chain = String::new();
    let mut key = String::new();
    for b in &blocks {
        match b.kind {
            Some(SectionKind::Certificate) => chain.push_str(&b.text),
            Some(SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey) => {
                key.push_str(&b.text);
            }
            _ => {}
        }
    }
    Parts::read(path, bytes)?.checked(path, path)?;
    Ok((chain, key))
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    let err = |error| Error::Read {
        path: path.to_owned(),
        error,
    };
    let file = std::fs::File::open(path).map_err(err)?;
    let size = file.metadata().map_err(err)?.len();
    if size > MAX_FILE {
        return Err(Error::TooLarge {
            path: path.to_owned(),
            size,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    use std::io::Read;
    file.take(MAX_FILE + 1).read_to_end(&mut bytes).map_err(err)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(Error::TooLarge {
            path: path.to_owned(),
            size: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

/// The certificates and private keys of a file, in order.
struct Parts {
    chain: Vec<CertificateDer<'static>>,
    keys: Vec<PrivateKeyDer<'static>>,
}

impl Parts {
    fn read(path: &Path, bytes: &[u8]) -> Result<Parts, Error> {
        let mut parts = Parts {
            chain: Vec::new(),
            keys: Vec::new(),
        };
        for b in blocks(path, bytes)? {
            match b.kind {
                Some(SectionKind::Certificate) => parts.chain.push(CertificateDer::from(b.der)),
                Some(SectionKind::PrivateKey) => parts.keys.push(PrivateKeyDer::Pkcs8(b.der.into())),
                Some(SectionKind::RsaPrivateKey) => parts.keys.push(PrivateKeyDer::Pkcs1(b.der.into())),
                Some(SectionKind::EcPrivateKey) => parts.keys.push(PrivateKeyDer::Sec1(b.der.into())),
                _ => {}
            }
        }
        Ok(parts)
    }

    /// The chain and the one key, or why there is not exactly that.
    fn checked(
        mut self,
        chain_path: &Path,
        key_path: &Path,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
        if self.chain.is_empty() {
            return Err(Error::NoCertificate {
                path: chain_path.to_owned(),
            });
        }
        match self.keys.len() {
            0 => Err(Error::NoKey {
                path: key_path.to_owned(),
            }),
            1 => Ok((self.chain, self.keys.remove(0))),
            count => Err(Error::ManyKeys {
                path: key_path.to_owned(),
                count,
            }),
        }
    }
}

/// One PEM block as it stands in the file.
struct Block {
    /// What the block holds, for the kinds rustls reads; `None` for others
    /// (`EC PARAMETERS`, which `openssl ecparam -genkey` writes, is harmless).
    kind: Option<SectionKind>,
    der: Vec<u8>,
    /// The block's lines, from its BEGIN line to its END line.
    text: String,
}

/// Every PEM block of the file, strictly: nothing but whitespace may stand
/// between blocks, every block ends with the END line of its own label, and
/// its body decodes. An encrypted key is refused: a relay cannot ask for its
/// passphrase.
fn blocks(path: &Path, bytes: &[u8]) -> Result<Vec<Block>, Error> {
    let at = |line: usize, why: String| Error::Pem {
        path: path.to_owned(),
        line,
        why,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
        at(
            line,
            "not text: a PEM file is plain ASCII (is this a DER or binary file? `openssl x509 -inform der` converts a DER certificate)".into(),
        )
    })?;
    let mut out = Vec::new();
    // The open block: its label, first line and text so far.
    let mut open: Option<(String, usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim_end_matches('\r');
        match &mut open {
            None => {
                if line.trim().is_empty() {
                    continue;
                }
                let Some(label) = line
                    .strip_prefix("-----BEGIN ")
                    .and_then(|l| l.strip_suffix("-----"))
                else {
                    let shown: String = line.chars().take(40).collect();
                    return Err(at(
                        n,
                        format!(
                            "`{shown}` stands outside any PEM block; a bundle holds only `-----BEGIN ...-----` blocks (the chain, then the key) with nothing else between them"
                        ),
                    ));
                };
                open = Some((label.to_owned(), n, format!("{line}\n")));
            }
            Some((label, first, body)) => {
                body.push_str(line);
                body.push('\n');
                if line.starts_with("-----BEGIN ") {
                    return Err(at(
                        n,
                        format!(
                            "a new block begins before the `{label}` block of line {first} ends: that block is cut short"
                        ),
                    ));
                }
                if let Some(end) = line
                    .strip_prefix("-----END ")
                    .and_then(|l| l.strip_suffix("-----"))
                {
                    if end != label {
                        return Err(at(
                            n,
                            format!("`END {end}` closes the `BEGIN {label}` block of line {first}"),
                        ));
                    }
                    if body.contains("Proc-Type:") || label == "ENCRYPTED PRIVATE KEY" {
                        return Err(at(
                            *first,
                            "the private key is encrypted, and a relay cannot ask for its passphrase; decrypt it (`openssl pkey -in KEY -out KEY.plain`) and keep the file mode 0600".into(),
                        ));
                    }
                    let (kind, der) = <(SectionKind, Vec<u8>)>::from_pem_slice(body.as_bytes())
                        .map(|(k, d)| (Some(k), d))
                        .or_else(|e| match e {
                            // A label rustls does not read: kept out of the chain.
                            rustls_pki_types::pem::Error::NoItemsFound => Ok((None, Vec::new())),
                            e => Err(at(*first, format!("the `{label}` block does not decode: {e}"))),
                        })?;
                    out.push(Block {
                        kind,
                        der,
                        text: std::mem::take(body),
                    });
                    open = None;
                }
            }
        }
    }
    if let Some((label, first, _)) = open {
        return Err(at(
            first,
            format!("the `{label}` block never ends (no `-----END {label}-----`): the file is truncated"),
        ));
    }
    Ok(out)
}

/// Checks that each certificate reads, is issued and signed by the next,
/// and is valid at `now`, and that an RSA server key has 2048 bits or more;
/// returns the first one's summary.
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
        if pair[0].verify_signature(Some(pair[1].public_key())).is_err() {
            return Err(Error::Signature {
                path: path.to_owned(),
                index: i + 1,
                subject: pair[0].subject().to_string(),
                issuer: pair[0].issuer().to_string(),
            });
        }
    }
    for cert in &parsed {
        let validity = cert.validity();
        let subject = cert.subject().to_string();
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
    }
    let leaf = &parsed[0];
    let subject = leaf.subject().to_string();
    let key = key_words(leaf);
    if let Some(bits) = key.strip_prefix("RSA ").and_then(|b| b.parse::<usize>().ok())
        && bits < 2048
    {
        return Err(Error::WeakKey {
            path: path.to_owned(),
            subject,
            bits,
        });
    }
    let validity = leaf.validity();
    Ok(Summary {
        subject,
        issuer: leaf.issuer().to_string(),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        fingerprint: fingerprint(&chain[0]),
        chain_len: chain.len(),
        names: names(leaf),
        issuers: parsed[1..].iter().map(|c| c.subject().to_string()).collect(),
        key,
    })
}

/// The subjectAltName DNS names and IP addresses of a certificate.
#[must_use]
pub fn names(cert: &X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some((*d).to_owned()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).ok()?).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// A certificate's key in words: `RSA 2048`, `EC P-256`, `Ed25519`.
fn key_words(cert: &X509Certificate<'_>) -> String {
    use x509_parser::public_key::PublicKey;
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(PublicKey::EC(point)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| match oid.to_id_string().as_str() {
                    "1.2.840.10045.3.1.7" => "P-256".to_owned(),
                    "1.3.132.0.34" => "P-384".to_owned(),
                    "1.3.132.0.35" => "P-521".to_owned(),
                    other => other.to_owned(),
                })
                .unwrap_or_else(|| format!("{} bits", point.key_size()));
            format!("EC {curve}")
        }
        Ok(PublicKey::Unknown(_)) if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => {
            "Ed25519".into()
        }
        _ => spki.algorithm.algorithm.to_id_string(),
    }
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
