//! The certificate relayd serves on its TLS listeners, and its reload.
//!
//! Every handshake asks [`Tls`] for the certificate in service at that
//! moment, so a reload changes what new connections are served and nothing
//! else: established connections keep their session and every allocation
//! keeps working. A reload reads the files again and swaps only when the new
//! certificate passes [`crate::pem::load`]'s checks; otherwise the old one
//! keeps serving and the log says why.

use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::pem::{self, Certificate, Source, Summary};

/// A certificate in service that can be replaced while serving.
pub struct Tls {
    source: Source,
    current: RwLock<Certificate>,
    expect: Option<Expect>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// What clients will check the certificate against: the names they connect
/// to, and the roots they trust. A certificate they would refuse is not
/// served (at start) or not swapped in (on reload).
pub struct Expect {
    pub names: Vec<String>,
    pub trust: Arc<crate::trust::Trust>,
}

/// Loads the certificate and, if `expect` says how, checks it as clients will.
fn checked(source: &Source, expect: Option<&Expect>) -> Result<Certificate, pem::Error> {
    let now = unix_now();
    let cert = pem::load(source, now)?;
    if let Some(e) = expect {
        for name in &e.names {
            let verdict = e.trust.verify(cert.chain(), name, now);
            if verdict != crate::trust::Verdict::Trusted {
                return Err(pem::Error::NotForClients {
                    path: match source {
                        Source::Bundle(p) | Source::Pair { chain: p, .. } => p.clone(),
                    },
                    subject: cert.summary().subject.clone(),
                    name: name.clone(),
                    verdict: verdict.to_string(),
                });
            }
        }
    }
    Ok(cert)
}

impl Tls {
    /// Loads the certificate `source` names to start serving it.
    ///
    /// # Errors
    ///
    /// The certificate fails [`pem::load`]'s checks.
    pub fn load(source: Source, expect: Option<Expect>) -> Result<Arc<Tls>, pem::Error> {
        let certificate = checked(&source, expect.as_ref())?;
        tracing::info!(from = %source, "serving certificate {}", certificate.summary());
        match &expect {
            Some(e) => tracing::info!("checked as clients of {} will", e.names.join(", ")),
            None => tracing::info!(
                "its names and chain are not checked against what clients connect to (no --tls-name)"
            ),
        }
        Ok(Arc::new(Tls {
            source,
            current: RwLock::new(certificate),
            expect,
        }))
    }

    /// Reads the files again and serves the new certificate if it passes
    /// every check; otherwise keeps the current one. Logs either way.
    ///
    /// # Errors
    ///
    /// Why the new certificate was refused; the old one is still served.
    pub fn reload(&self) -> Result<Summary, pem::Error> {
        match checked(&self.source, self.expect.as_ref()) {
            Ok(new) => {
                let summary = new.summary().clone();
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = new;
                tracing::info!(from = %self.source, "certificate reloaded: now serving {summary}");
                Ok(summary)
            }
            Err(e) => {
                tracing::warn!("certificate not reloaded: {e}; still serving {}", self.summary());
                Err(e)
            }
        }
    }

    /// What is being served.
    #[must_use]
    pub fn summary(&self) -> Summary {
        self.current().summary().clone()
    }

    /// Where the certificate is read from.
    #[must_use]
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// An acceptor whose handshakes serve whatever is current.
    pub(super) fn acceptor(self: &Arc<Tls>) -> TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        TlsAcceptor::from(Arc::new(config))
    }

    fn current(&self) -> std::sync::RwLockReadGuard<'_, Certificate> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl crate::status::Certificate for Tls {
    fn reload(&self) -> Result<String, String> {
        Tls::reload(self)
            .map(|serving| serving.to_string())
            .map_err(|e| format!("{e}; still serving {}", self.summary()))
    }

    fn describe(&self) -> String {
        self.summary().to_string()
    }
}

impl ResolvesServerCert for Tls {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().certified_key())
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
