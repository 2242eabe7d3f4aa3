//! Test certificates made on the spot with rcgen: a CA, server certificates
//! it signs (valid, expired, or for another key), bundles in restund's
//! layout, and a client configuration that trusts the CA.

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, date_time_ymd};

/// The name server certificates are made for.
pub const SERVER_NAME: &str = "turn.lab.example";

/// Validity years of a certificate that is valid now.
pub const CURRENT: (i32, i32) = (2020, 2090);
/// Validity years of a certificate that has expired.
pub const EXPIRED: (i32, i32) = (2019, 2020);

pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

pub struct Leaf {
    pub pem: String,
    pub der: Vec<u8>,
    pub key_pem: String,
}

fn params(name: &str, years: (i32, i32)) -> CertificateParams {
    let mut p = CertificateParams::new(vec![name.to_owned()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.not_before = date_time_ymd(years.0, 1, 1);
    p.not_after = date_time_ymd(years.1, 1, 1);
    p
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut p = params(name, CURRENT);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let pem = p.self_signed(&key).unwrap().pem();
        Ca {
            issuer: Issuer::new(p, key),
            pem,
        }
    }

    /// A server certificate for [`SERVER_NAME`] valid over `years`.
    pub fn leaf(&self, years: (i32, i32)) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let cert = params(SERVER_NAME, years).signed_by(&key, &self.issuer).unwrap();
        Leaf {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A client configuration trusting only this CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(self.pem.as_bytes()).unwrap();
        roots.add(der).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

impl Leaf {
    /// restund's layout: the chain, server certificate first, then the key.
    pub fn bundle(&self, ca: &Ca) -> String {
        format!("{}{}{}", self.pem, ca.pem, self.key_pem)
    }

    /// The fingerprint relayd reports for this certificate.
    pub fn fingerprint(&self) -> String {
        relay::pem::fingerprint(&self.der)
    }
}

/// Replaces `path` the way deployments do: a new file renamed over it.
pub fn install(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
