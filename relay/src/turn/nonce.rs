//! Stateless nonces with an expiry.
//!
//! A nonce is its own expiry (seconds since the server started, 8 hex
//! digits) followed by a MAC over that expiry and the client's address, so
//! the server keeps no table of issued nonces and a nonce copied to another
//! address is refused like a stale one (RFC 8489 §9.2: the server decides
//! what a nonce encodes).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::stun::Key;

/// Hex digits of MAC kept in a nonce: 64 bits is plenty against guessing
/// within a nonce's lifetime.
const MAC_HEX: usize = 16;

/// Issues and checks nonces.
#[derive(Debug, Clone)]
pub(crate) struct Nonces {
    key: Key,
    lifetime: Duration,
    epoch: Instant,
}

impl Nonces {
    pub(crate) fn new(key: Key, lifetime: Duration, epoch: Instant) -> Nonces {
        Nonces { key, lifetime, epoch }
    }

    /// A fresh nonce for `client`.
    pub(crate) fn issue(&self, now: Instant, client: SocketAddr) -> String {
        let expiry = self.secs(now).saturating_add(self.lifetime.as_secs().max(1));
        let expiry = u32::try_from(expiry).unwrap_or(u32::MAX);
        let mut nonce = format!("{expiry:08x}");
        nonce.push_str(&self.mac(expiry, client));
        nonce
    }

    /// Whether `nonce` was issued by this server to `client` and has not
    /// expired at `now`.
    pub(crate) fn is_fresh(&self, nonce: &str, now: Instant, client: SocketAddr) -> bool {
        let (Some(expiry), Some(mac)) = (nonce.get(..8), nonce.get(8..)) else {
            return false;
        };
        let Ok(expiry) = u32::from_str_radix(expiry, 16) else {
            return false;
        };
        // Not constant-time: the MAC only binds the nonce to an address,
        // and a forged one still needs the long-term key to be of any use.
        mac == self.mac(expiry, client) && self.secs(now) < u64::from(expiry)
    }

    fn secs(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs()
    }

    fn mac(&self, expiry: u32, client: SocketAddr) -> String {
        let mut data = expiry.to_be_bytes().to_vec();
        data.extend_from_slice(client.to_string().as_bytes());
        let mut hex = String::with_capacity(MAC_HEX);
        for b in &self.key.sign(&data)[..MAC_HEX / 2] {
            let _ = write!(hex, "{b:02x}");
        }
        hex
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_until_expiry_and_bound_to_the_client() {
        let t0 = Instant::now();
        let n = Nonces::new(Key::from_bytes(b"k"), Duration::from_secs(60), t0);
        let alice: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let bob: SocketAddr = "192.0.2.1:5001".parse().unwrap();
        let nonce = n.issue(t0 + Duration::from_secs(10), alice);
        assert_eq!(nonce.len(), 24);
        assert!(n.is_fresh(&nonce, t0 + Duration::from_secs(69), alice));
        assert!(!n.is_fresh(&nonce, t0 + Duration::from_secs(70), alice));
        assert!(!n.is_fresh(&nonce, t0, bob));
        let other = Nonces::new(Key::from_bytes(b"j"), Duration::from_secs(60), t0);
        assert!(!other.is_fresh(&nonce, t0, alice));
        for junk in ["", "0000", "zzzzzzzz0000000000000000", "é"] {
            assert!(!n.is_fresh(junk, t0, alice), "{junk}");
        }
    }
}
