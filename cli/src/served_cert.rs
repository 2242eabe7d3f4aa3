//! The certificate a relay serves on its `turns:` port, read with a TLS
//! handshake from where opsctl runs.
//!
//! The handshake itself accepts whatever certificate it is shown (an expired
//! or wrongly named one is exactly what an operator wants to see) and sends
//! no data; it reports the chain as sent, the leaf's expiry and fingerprint.
//! [`crate::cert::Trust::verify`] then says what a client would make of it.

use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// What the relay served.
#[derive(Debug, Clone)]
pub struct Served {
    /// Seconds since the epoch when the leaf stops being valid.
    pub not_after: i64,
    /// Whole days from now until then (negative once expired).
    pub days_left: i64,
    /// SHA-256 of the leaf, as `openssl x509 -fingerprint -sha256` prints it.
    pub fingerprint: String,
    pub subject: String,
    /// The chain as the relay sent it, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
}

/// Accepts any certificate: we read it, we do not trust it.
#[derive(Debug)]
struct Look(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Look {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The leaf served at `hostport` (`host:port`), with `host` as the SNI name.
pub fn read(hostport: &str, timeout: Duration) -> anyhow::Result<Served> {
    let (host, _) = hostport
        .rsplit_once(':')
        .with_context(|| format!("`{hostport}` is not host:port"))?;
    let host = host.trim_matches(['[', ']']);
    let addr = hostport
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {hostport}"))?
        .next()
        .with_context(|| format!("{hostport} resolves to nothing"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Look(provider)))
        .with_no_client_auth();
    let name =
        ServerName::try_from(host.to_owned()).with_context(|| format!("`{host}` is not a server name"))?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name)?;
    let mut sock = std::net::TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot connect to {hostport}"))?;
    sock.set_read_timeout(Some(timeout))?;
    sock.set_write_timeout(Some(timeout))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)
            .with_context(|| format!("TLS handshake with {hostport}"))?;
    }
    let chain: Vec<CertificateDer<'static>> = conn
        .peer_certificates()
        .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
        .unwrap_or_default();
    let Some(leaf) = chain.first() else {
        bail!("{hostport} sent no certificate");
    };
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| anyhow::anyhow!("{hostport} sent a certificate that does not parse: {e}"))?;
    let not_after = cert.validity().not_after.timestamp();
    let now = crate::cert::now();
    Ok(Served {
        not_after,
        days_left: (not_after - now).div_euclid(86_400),
        fingerprint: relay::pem::fingerprint(leaf.as_ref()),
        subject: cert.subject().to_string(),
        chain: chain.clone(),
    })
}
