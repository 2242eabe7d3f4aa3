//! Certificates as clients see them: a new bundle checked against the relays
//! it is for and the trust store clients use, and a served chain verified
//! the same way.
//!
//! [`relay::pem`] checks a bundle on its own (strict PEM, one key that is
//! the leaf's, each certificate signed by the next, all valid, RSA of 2048
//! bits or more). This adds what depends on where it is served: the leaf's
//! names cover every selected relay's `turns:` host (RFC 6125, as rustls's
//! verifier matches them), and the chain ends at a trust anchor, so that a
//! missing intermediate is found here, not by a client failing with "unable
//! to get local issuer certificate".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, X509Certificate};

pub use relay::trust::{Trust, Verdict};

/// Under this many days left, a new certificate is worth a warning.
pub const WARN_DAYS: i64 = 30;

/// What identifies a certificate to people, as the plan shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertInfo {
    pub subject: String,
    /// subjectAltName DNS names and IP addresses.
    pub names: Vec<String>,
    /// Subjects of the issuers in the file, in order.
    pub issuers: Vec<String>,
    /// Validity, seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// SHA-256 of the leaf's DER, as `openssl x509 -fingerprint -sha256` prints it.
    pub fingerprint: String,
    /// `RSA 2048`, `EC P-256`, ...
    pub key: String,
}

impl From<&relay::pem::Summary> for CertInfo {
    fn from(s: &relay::pem::Summary) -> Self {
        CertInfo {
            subject: s.subject.clone(),
            names: s.names.clone(),
            issuers: s.issuers.clone(),
            not_before: s.not_before,
            not_after: s.not_after,
            fingerprint: s.fingerprint.clone(),
            key: s.key.clone(),
        }
    }
}

/// The leaf a relay serves now, as read from here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedNow {
    pub subject: String,
    pub not_after: i64,
    pub fingerprint: String,
}

/// A Unix time as X.509 tools print it.
pub fn date(t: i64) -> String {
    x509_parser::time::ASN1Time::from_timestamp(t)
        .map_or_else(|_| format!("Unix time {t}"), |t| t.to_string())
}

/// Seconds since the Unix epoch, now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The host of a `host:port` address (brackets of an IPv6 address dropped).
pub fn host_of(hostport: &str) -> &str {
    hostport
        .rsplit_once(':')
        .map_or(hostport, |(h, _)| h)
        .trim_matches(['[', ']'])
}

/// A new certificate, read and checked for the relays it is for.
pub struct Bundle {
    pub info: CertInfo,
    /// What the relays' files receive: the whole bundle, or the chain and
    /// the key when they come from two files.
    pub chain: relay::pem::Certificate,
}

/// The bytes of a new certificate: the bundle's, and the key file's when
/// the key is in a file of its own.
pub struct Files {
    pub bundle: (PathBuf, Vec<u8>),
    pub key: Option<(PathBuf, Vec<u8>)>,
}

impl Files {
    /// Reads the files, refusing any larger than a certificate file can be.
    pub fn read(bundle: &Path, key: Option<&Path>) -> anyhow::Result<Files> {
        let one = |p: &Path| -> anyhow::Result<(PathBuf, Vec<u8>)> {
            let size = std::fs::metadata(p)
                .with_context(|| format!("cannot read {}", p.display()))?
                .len();
            if size > relay::pem::MAX_FILE {
                return Err(relay::pem::Error::TooLarge {
                    path: p.to_owned(),
                    size,
                }
                .into());
            }
            let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            Ok((p.to_owned(), bytes))
        };
        Ok(Files {
            bundle: one(bundle)?,
            key: key.map(one).transpose()?,
        })
    }
}

/// Checks the new certificate as clients of every relay in `hosts` (relay
/// name to its `turns:` host) will: every refusal names the file, the
/// certificate and what to change.
pub fn check_bundle(
    files: &Files,
    trust: &Trust,
    hosts: &BTreeMap<String, String>,
    now: i64,
) -> anyhow::Result<Bundle> {
    let bundle = files.bundle.0.as_path();
    let source = match &files.key {
        Some((k, _)) => relay::pem::Source::Pair {
            chain: bundle.to_owned(),
            key: k.clone(),
        },
        None => relay::pem::Source::Bundle(bundle.to_owned()),
    };
    let cert = relay::pem::parse(
        &source,
        &files.bundle.1,
        files.key.as_ref().map(|(_, k)| k.as_slice()),
        now,
    )?;
    let info = CertInfo::from(cert.summary());
    let file = bundle.display();
    let chain = cert.chain();
    let parsed: Vec<X509Certificate<'_>> = chain
        .iter()
        .filter_map(|d| X509Certificate::from_der(d).ok().map(|(_, c)| c))
        .collect();
    let last = parsed.last().context("the bundle has no certificate")?;
    let n = parsed.len();
    if last.subject() == last.issuer() {
        if !trust.is_anchor(last) {
            bail!(
                "{file}: the chain ends at the root {} (certificate {n}), which is not in {}: clients will not trust it\nhelp: if clients trust this root, give it with `--ca FILE` (or `cert.ca` in the inventory); otherwise get the certificate from a CA they trust",
                last.subject(),
                trust.described
            );
        }
    } else if !trust.knows(last.issuer().as_raw()) {
        bail!(
            "{file}: the chain is incomplete: certificate {n} ({}) is issued by {}, which is neither in {file} nor in {}; clients would fail with \"unable to get local issuer certificate\"\nhelp: append the certificate of {} (the intermediate the CA sent with the certificate) after certificate {n}; for a private CA, give its root with `--ca FILE`",
            last.subject(),
            last.issuer(),
            trust.described,
            last.issuer()
        );
    }
    for (relay, host) in hosts {
        match trust.verify(chain, host, now) {
            Verdict::Trusted => {}
            Verdict::NameMismatch => bail!(
                "{file}: the certificate ({}) is valid for {}, which does not cover `{host}`, the `turns:` host of relay `{relay}`\nhelp: get a certificate that names {host} (a wildcard such as `*.example.com` covers exactly one label), or leave {relay} out",
                info.subject,
                if info.names.is_empty() {
                    "no name at all (it has no subjectAltName, and clients ignore the common name)".to_owned()
                } else {
                    info.names.join(", ")
                }
            ),
            other => bail!(
                "{file}: the chain of {} does not verify against {} for `{host}` (relay `{relay}`): {other}",
                info.subject,
                trust.described
            ),
        }
    }
    Ok(Bundle { info, chain: cert })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_come_out_of_host_port() {
        assert_eq!(host_of("turn.example.com:5349"), "turn.example.com");
        assert_eq!(host_of("[2001:db8::1]:5349"), "2001:db8::1");
        assert_eq!(host_of("127.0.0.1:5349"), "127.0.0.1");
    }

    #[test]
    fn verdicts_read_as_the_status_column_shows_them() {
        assert_eq!(Verdict::NameMismatch.to_string(), "name mismatch");
        assert_eq!(Verdict::ChainIncomplete.to_string(), "chain incomplete");
        assert_eq!(Verdict::Untrusted.to_string(), "untrusted");
    }
}
