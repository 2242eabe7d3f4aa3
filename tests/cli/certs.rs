//! Certificates made in the tests with rcgen: roots, intermediates, and
//! leaves for given names and validity, written as bundles the way
//! operators get them from a CA.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, date_time_ymd};
use sha2::Digest;

/// Validity years of a certificate that is valid now.
pub const CURRENT: (i32, i32) = (2020, 2090);
/// Valid now, but ending before [`CURRENT`] does.
pub const SHORTER: (i32, i32) = (2020, 2080);
/// Ended before now.
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

fn params(cn: &str, names: &[&str], years: (i32, i32)) -> CertificateParams {
    let mut p = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.not_before = date_time_ymd(years.0, 1, 1);
    p.not_after = date_time_ymd(years.1, 1, 1);
    p
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = params(name, &[], CURRENT);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p
}

impl Ca {
    /// A self-signed root.
    pub fn root(name: &str) -> Ca {
        let p = ca_params(name);
        let key = KeyPair::generate().unwrap();
        let pem = p.self_signed(&key).unwrap().pem();
        Ca {
            issuer: Issuer::new(p, key),
            pem,
        }
    }

    /// An intermediate CA this one signs.
    pub fn intermediate(&self, name: &str) -> Ca {
        let p = ca_params(name);
        let key = KeyPair::generate().unwrap();
        let pem = p.signed_by(&key, &self.issuer).unwrap().pem();
        Ca {
            issuer: Issuer::new(p, key),
            pem,
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses; the
    /// first is also the common name), valid over `years`.
    pub fn leaf(&self, names: &[&str], years: (i32, i32)) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let cert = params(names[0], names, years)
            .signed_by(&key, &self.issuer)
            .unwrap();
        Leaf {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Ca {
    /// A server certificate for `names` that ends `days` from now.
    pub fn leaf_for_days(&self, names: &[&str], days: i64) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut p = params(names[0], names, CURRENT);
        p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Leaf {
    /// As `openssl x509 -fingerprint -sha256` prints it.
    pub fn fingerprint(&self) -> String {
        let d = sha2::Sha256::digest(&self.der);
        d.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
    }

    /// restund's layout: the leaf, its issuers (given, in order), the key.
    pub fn bundle(&self, issuers: &[&Ca]) -> String {
        let mut s = self.pem.clone();
        for ca in issuers {
            s.push_str(&ca.pem);
        }
        s.push_str(&self.key_pem);
        s
    }
}
