//! Long-term credentials: static users, and time-limited passwords derived
//! from shared secrets in the two formats deployments use.
//!
//! - coturn's `use-auth-secret` (the TURN REST API draft): the username is
//!   `<expiry>` or `<expiry>:<user>`, the password
//!   `base64(HMAC-SHA1(secret, username))`. coturn tries every configured
//!   secret, which is how its secrets rotate.
//! - Wire's (restund's `zrest` module, brig): the username is
//!   `d=<expiry>.v=1.k=<key index>.t=s.r=<random>`, the password
//!   `base64(HMAC-SHA512(secret, username))`; `k` names the secret, so old
//!   and new secrets can be served side by side while brig switches.
//!
//! Either way the MESSAGE-INTEGRITY key is the usual long-term one,
//! `MD5(username:realm:password)`, and a username whose expiry (Unix
//! seconds) has passed is refused.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::Sha512;

use crate::stun::Key;

/// Why a username has no key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// Not a static user and not a time-limited username.
    #[error("unknown user `{0}`")]
    UnknownUser(String),
    /// A time-limited username whose expiry has passed.
    #[error("credentials expired at {expiry} (unix seconds), it is now {now}")]
    Expired {
        /// The username's expiry.
        expiry: u64,
        /// The time it was checked.
        now: u64,
    },
    /// A Wire username naming a secret index that is not configured.
    #[error("no shared secret with key index {0}")]
    UnknownKeyIndex(u32),
    /// A time-limited username, but no shared secret is configured.
    #[error("time-limited username, but no shared secret is configured")]
    NoSecrets,
}

/// Which kind of credential a username is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// A configured user and password.
    Static,
    /// coturn's `use-auth-secret` format.
    Coturn,
    /// Wire's `d=…v=1.k=…` format.
    Wire,
}

/// A secret that never shows in `Debug` output.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The users and shared secrets a server accepts.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    users: HashMap<String, Secret>,
    secrets: BTreeMap<u32, Secret>,
}

impl Credentials {
    /// No users, no secrets: every request is refused with 401.
    #[must_use]
    pub fn new() -> Credentials {
        Credentials::default()
    }

    /// Adds (or replaces) a static user.
    pub fn add_user(&mut self, name: impl Into<String>, password: impl Into<String>) {
        self.users.insert(name.into(), Secret(password.into()));
    }

    /// Adds (or replaces) the shared secret with key index `index`. coturn
    /// usernames are checked against every secret; Wire usernames against
    /// the one their `k=` names.
    pub fn add_secret(&mut self, index: u32, secret: impl Into<String>) {
        self.secrets.insert(index, Secret(secret.into()));
    }

    /// Whether nothing is configured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.secrets.is_empty()
    }

    /// How many static users there are.
    #[must_use]
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// How many shared secrets there are.
    #[must_use]
    pub fn secrets(&self) -> usize {
        self.secrets.len()
    }

    /// How `username` would be checked.
    #[must_use]
    pub fn scheme(&self, username: &str) -> Option<Scheme> {
        if self.users.contains_key(username) {
            Some(Scheme::Static)
        } else if parse_wire(username).is_some() {
            Some(Scheme::Wire)
        } else if parse_coturn(username).is_some() {
            Some(Scheme::Coturn)
        } else {
            None
        }
    }

    /// The candidate MESSAGE-INTEGRITY keys for `username` in `realm` at
    /// `unix_now`: one for a static or Wire user, one per secret for a
    /// coturn username (the request's MESSAGE-INTEGRITY tells which is right).
    ///
    /// # Errors
    ///
    /// [`CredentialError`] when the user is unknown, the credentials have
    /// expired, or the secret they need is not configured.
    pub fn keys(&self, username: &str, realm: &str, unix_now: u64) -> Result<Vec<Key>, CredentialError> {
        let key = |password: &str| Key::long_term(username, realm, password);
        if let Some(password) = self.users.get(username) {
            return Ok(vec![key(&password.0)]);
        }
        let fresh = |expiry: u64| {
            if expiry < unix_now {
                Err(CredentialError::Expired {
                    expiry,
                    now: unix_now,
                })
            } else {
                Ok(())
            }
        };
        if let Some((expiry, index)) = parse_wire(username) {
            fresh(expiry)?;
            let secret = self
                .secrets
                .get(&index)
                .ok_or(CredentialError::UnknownKeyIndex(index))?;
            return Ok(vec![key(&wire_password(&secret.0, username))]);
        }
        if let Some(expiry) = parse_coturn(username) {
            fresh(expiry)?;
            if self.secrets.is_empty() {
                return Err(CredentialError::NoSecrets);
            }
            let keys = self.secrets.values();
            return Ok(keys.map(|s| key(&coturn_password(&s.0, username))).collect());
        }
        Err(CredentialError::UnknownUser(username.to_owned()))
    }
}

/// A coturn `use-auth-secret` username: `<expiry>` or `<expiry>:<user>`.
#[must_use]
pub fn coturn_username(expiry: u64, user: Option<&str>) -> String {
    match user {
        Some(user) => format!("{expiry}:{user}"),
        None => expiry.to_string(),
    }
}

/// The password for a coturn username: `base64(HMAC-SHA1(secret, username))`.
#[must_use]
pub fn coturn_password(secret: &str, username: &str) -> String {
    let mut mac =
        <Hmac<Sha1> as KeyInit>::new_from_slice(secret.as_bytes()).expect("hmac takes any key length");
    mac.update(username.as_bytes());
    base64(&mac.finalize().into_bytes())
}

/// A Wire username, as brig hands them out: `random` should be lowercase
/// letters or digits (restund's parser accepts nothing else).
#[must_use]
pub fn wire_username(expiry: u64, index: u32, random: &str) -> String {
    format!("d={expiry}.v=1.k={index}.t=s.r={random}")
}

/// The password for a Wire username: `base64(HMAC-SHA512(secret, username))`.
#[must_use]
pub fn wire_password(secret: &str, username: &str) -> String {
    let mut mac =
        <Hmac<Sha512> as KeyInit>::new_from_slice(secret.as_bytes()).expect("hmac takes any key length");
    mac.update(username.as_bytes());
    base64(&mac.finalize().into_bytes())
}

/// Expiry and key index of a Wire username.
fn parse_wire(username: &str) -> Option<(u64, u32)> {
    let mut parts = username.split('.');
    let expiry = digits(parts.next()?.strip_prefix("d=")?)?;
    if parts.next()? != "v=1" {
        return None;
    }
    let index = u32::try_from(digits(parts.next()?.strip_prefix("k=")?)?).ok()?;
    if parts.next()? != "t=s" {
        return None;
    }
    let random = parts.next()?.strip_prefix("r=")?;
    let plain = random
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (plain && parts.next().is_none()).then_some((expiry, index))
}

/// Expiry of a coturn username.
fn parse_coturn(username: &str) -> Option<u64> {
    let expiry = username.split_once(':').map_or(username, |(e, _)| e);
    digits(expiry)
}

fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Standard base64 with padding (RFC 4648 §4), as both password formats use.
#[must_use]
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn passwords_match_openssl() {
        // printf '1700000000:alice' | openssl dgst -sha1 -hmac s3cret -binary | base64
        assert_eq!(
            coturn_password("s3cret", "1700000000:alice"),
            "TtElzSjT0GdnTQ9xdcRNxx96yQs="
        );
        // printf 'd=1700000000.v=1.k=0.t=s.r=abc' | openssl dgst -sha512 -hmac s3cret -binary | base64 -w0
        assert_eq!(
            wire_password("s3cret", "d=1700000000.v=1.k=0.t=s.r=abc"),
            "wTwHu+BwLzip894WhoNGXs9Nh41TlzpvvoChfCkor8dEERn37GwF9g2gpC7IBlo7EpDNHHzVL2Eq7u8ffMSBGA=="
        );
    }

    #[test]
    fn usernames_parse_strictly() {
        assert_eq!(parse_wire("d=17.v=1.k=2.t=s.r=ab9"), Some((17, 2)));
        for bad in [
            "d=17.v=2.k=2.t=s.r=ab",
            "d=17.v=1.k=2.t=s.r=AB",
            "d=17.v=1.k=2.t=s",
            "d=x.v=1.k=2.t=s.r=ab",
            "d=17.v=1.k=2.t=s.r=ab.x=1",
        ] {
            assert_eq!(parse_wire(bad), None, "{bad}");
        }
        assert_eq!(parse_coturn("17"), Some(17));
        assert_eq!(parse_coturn("17:alice"), Some(17));
        assert_eq!(parse_coturn("alice:17"), None);
        assert_eq!(parse_coturn(""), None);
        assert_eq!(wire_username(5, 1, "xyz"), "d=5.v=1.k=1.t=s.r=xyz");
        assert_eq!(coturn_username(5, Some("bob")), "5:bob");
        assert_eq!(coturn_username(5, None), "5");
    }

    #[test]
    fn keys_for_each_scheme() {
        let mut c = Credentials::new();
        c.add_user("alice", "pw");
        c.add_secret(0, "old");
        c.add_secret(1, "new");
        assert_eq!(
            c.keys("alice", "r", 0).unwrap(),
            vec![Key::long_term("alice", "r", "pw")]
        );
        assert_eq!(c.scheme("alice"), Some(Scheme::Static));

        let user = wire_username(100, 1, "r4nd");
        assert_eq!(c.scheme(&user), Some(Scheme::Wire));
        let want = Key::long_term(&user, "r", &wire_password("new", &user));
        assert_eq!(c.keys(&user, "r", 100).unwrap(), vec![want]);
        assert_eq!(
            c.keys(&user, "r", 101),
            Err(CredentialError::Expired {
                expiry: 100,
                now: 101
            })
        );
        let unknown = wire_username(100, 7, "r4nd");
        assert_eq!(c.keys(&unknown, "r", 0), Err(CredentialError::UnknownKeyIndex(7)));

        let user = coturn_username(100, Some("bob"));
        assert_eq!(c.scheme(&user), Some(Scheme::Coturn));
        let keys = c.keys(&user, "r", 50).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys.contains(&Key::long_term(&user, "r", &coturn_password("old", &user))));
        assert!(matches!(
            c.keys(&user, "r", 101),
            Err(CredentialError::Expired { .. })
        ));

        assert_eq!(
            c.keys("mallory", "r", 0),
            Err(CredentialError::UnknownUser("mallory".into()))
        );
        assert_eq!(
            Credentials::new().keys("100", "r", 0),
            Err(CredentialError::NoSecrets)
        );
        assert!(!format!("{c:?}").contains("pw"));
    }
}
