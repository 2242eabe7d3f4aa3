//! The two checksums a STUN message can carry: MESSAGE-INTEGRITY, an
//! HMAC-SHA1 keyed with the credentials, and FINGERPRINT, a CRC-32 that tells
//! STUN apart from other protocols sharing the port.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;

/// XOR-ed into the CRC so that a FINGERPRINT cannot match by accident in a
/// protocol that also carries a CRC-32 over the same bytes (RFC 8489 §14.7).
const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// A MESSAGE-INTEGRITY key.
///
/// Its `Debug` output never shows the bytes: keys are secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Vec<u8>);

impl Key {
    /// A short-term credential key: the password itself (RFC 8489 §9.1.1).
    ///
    /// The password must already be prepared (OpaqueString, RFC 8265); this
    /// crate does not apply it, so pass ASCII passwords or prepared ones.
    #[must_use]
    pub fn short_term(password: &str) -> Key {
        Key(password.as_bytes().to_vec())
    }

    /// A long-term credential key: `MD5(username ":" realm ":" password)`
    /// (RFC 8489 §9.2.2), with the same caveat on preparing the password.
    #[must_use]
    pub fn long_term(username: &str, realm: &str, password: &str) -> Key {
        let mut md5 = Md5::new();
        for (i, part) in [username, realm, password].into_iter().enumerate() {
            if i > 0 {
                md5.update(b":");
            }
            md5.update(part.as_bytes());
        }
        Key(md5.finalize().to_vec())
    }

    /// A key from raw bytes, e.g. a long-term key stored already hashed.
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Key {
        Key(bytes.to_vec())
    }

    /// The key's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn mac(&self) -> Hmac<Sha1> {
        // HMAC takes keys of any length, so this cannot fail.
        <Hmac<Sha1> as KeyInit>::new_from_slice(&self.0).expect("hmac accepts any key length")
    }

    /// The HMAC-SHA1 of `data` under this key.
    pub(crate) fn sign(&self, data: &[u8]) -> [u8; 20] {
        let mut mac = self.mac();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is the HMAC-SHA1 of `data`, compared in constant time.
    pub(crate) fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.mac();
        mac.update(data);
        mac.verify_slice(tag).is_ok()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// The FINGERPRINT value for the message bytes before the attribute.
pub(crate) fn fingerprint(data: &[u8]) -> u32 {
    crc32fast::hash(data) ^ FINGERPRINT_XOR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_term_key_is_md5_of_the_triple() {
        // MD5("user:realm:pass"), computed independently with md5sum(1).
        let key = Key::long_term("user", "realm", "pass");
        let hex: String = key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "8493fbc53ba582fb4c044c456bdc40eb");
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", Key::short_term("hunter2")), "Key(<redacted>)");
    }

    #[test]
    fn verify_accepts_its_own_tag_only() {
        let key = Key::short_term("k");
        let tag = key.sign(b"data");
        assert!(key.verify(b"data", &tag));
        assert!(!key.verify(b"datb", &tag));
        assert!(!Key::short_term("j").verify(b"data", &tag));
    }
}
