//! A decoded STUN message and the decoder that produces it.
//!
//! Decoding is total: any byte string yields a message or an [`Error`], never
//! a panic, so it can face the network and a fuzzer alike.

use std::net::SocketAddr;

use super::Error;
use super::attr::{Attribute, ErrorCode, kind};
use super::builder::Builder;
use super::header::{self, Class, HEADER_LEN, MAGIC_COOKIE, MAX_MESSAGE_LEN, Method, TransactionId};
use super::integrity::{self, Key};

/// A STUN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The method.
    pub method: Method,
    /// The class.
    pub class: Class,
    /// The transaction id.
    pub transaction_id: TransactionId,
    /// The attributes in wire order. Attributes that followed
    /// MESSAGE-INTEGRITY (other than FINGERPRINT and MESSAGE-INTEGRITY-SHA256)
    /// are dropped while decoding: RFC 8489 §14.5 says to ignore them, and
    /// keeping them would let unauthenticated values pass for checked ones.
    pub attributes: Vec<Attribute>,
    /// What MESSAGE-INTEGRITY covered, kept from decoding to check it later.
    signed: Option<Signed>,
}

/// The bytes MESSAGE-INTEGRITY covers and the value received.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Signed {
    /// The message up to the attribute, its length field already set to end
    /// just after MESSAGE-INTEGRITY, as the sender computed it.
    covered: Vec<u8>,
    mac: [u8; 20],
}

impl Message {
    /// A message with no attributes yet.
    #[must_use]
    pub fn new(method: Method, class: Class, transaction_id: TransactionId) -> Message {
        Message {
            method,
            class,
            transaction_id,
            attributes: Vec::new(),
            signed: None,
        }
    }

    /// Decodes one whole STUN message (exactly one datagram, or one frame
    /// cut from a stream with [`super::frame_len`]).
    ///
    /// FINGERPRINT, when present, is checked here; MESSAGE-INTEGRITY needs a
    /// key and is checked by [`Message::verify_integrity`].
    ///
    /// # Errors
    ///
    /// Any [`Error`] about framing, attribute layout or attribute values.
    pub fn decode(bytes: &[u8]) -> Result<Message, Error> {
        let len = bytes.len();
        if len < HEADER_LEN {
            return Err(Error::Truncated {
                len,
                need: HEADER_LEN,
            });
        }
        if len > MAX_MESSAGE_LEN {
            return Err(Error::TooLong {
                len,
                max: MAX_MESSAGE_LEN,
            });
        }
        let typ = u16::from_be_bytes([bytes[0], bytes[1]]);
        if typ & 0xC000 != 0 {
            return Err(Error::NotStun);
        }
        let body = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        if !body.is_multiple_of(4) {
            return Err(Error::UnalignedLength(body));
        }
        let cookie = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        if cookie != MAGIC_COOKIE {
            return Err(Error::BadCookie(cookie));
        }
        if HEADER_LEN + body != len {
            return Err(Error::LengthMismatch {
                header: body,
                actual: len - HEADER_LEN,
            });
        }
        let (method, class) = header::split_type(typ);
        let mut tid = [0; 12];
        tid.copy_from_slice(&bytes[8..HEADER_LEN]);
        let mut message = Message::new(method, class, TransactionId(tid));
        message.decode_attributes(bytes)?;
        Ok(message)
    }

    fn decode_attributes(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let mut offset = HEADER_LEN;
        // After MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and
        // FINGERPRINT count; after MESSAGE-INTEGRITY-SHA256 only FINGERPRINT.
        let (mut after_sha1, mut after_sha256, mut after_fingerprint) = (false, false, false);
        while offset < bytes.len() {
            let Some(&[k0, k1, l0, l1]) = bytes.get(offset..offset + 4) else {
                // Unreachable with a 4-aligned length, but decoding never panics.
                return Err(Error::AttributeOverrun { kind: 0, offset });
            };
            let kind = u16::from_be_bytes([k0, k1]);
            let vlen = usize::from(u16::from_be_bytes([l0, l1]));
            let start = offset + 4;
            let next = start + vlen.next_multiple_of(4);
            let Some(value) = bytes.get(start..start + vlen).filter(|_| next <= bytes.len()) else {
                return Err(Error::AttributeOverrun { kind, offset });
            };
            if after_fingerprint {
                return Err(Error::AfterFingerprint { kind });
            }
            let counts = match kind {
                kind::FINGERPRINT => true,
                kind::MESSAGE_INTEGRITY_SHA256 => !after_sha256,
                // A second MESSAGE-INTEGRITY is ignored like anything else.
                _ => !after_sha1 && !after_sha256,
            };
            if counts {
                let attribute = Attribute::decode(kind, value, &self.transaction_id)?;
                match &attribute {
                    Attribute::Fingerprint(received) => {
                        let computed = integrity::fingerprint(&with_length(&bytes[..offset], next));
                        if *received != computed {
                            return Err(Error::BadFingerprint {
                                received: *received,
                                computed,
                            });
                        }
                        after_fingerprint = true;
                    }
                    Attribute::MessageIntegrity(mac) => {
                        self.signed = Some(Signed {
                            covered: with_length(&bytes[..offset], next),
                            mac: *mac,
                        });
                        after_sha1 = true;
                    }
                    Attribute::MessageIntegritySha256(_) => after_sha256 = true,
                    _ => {}
                }
                self.attributes.push(attribute);
            }
            offset = next;
        }
        Ok(())
    }

    /// Checks MESSAGE-INTEGRITY under `key`.
    ///
    /// # Errors
    ///
    /// [`Error::NoIntegrity`] if the message carries none (a server answers
    /// 401 with a realm and nonce), [`Error::IntegrityMismatch`] if the key
    /// does not produce it (401, or 441 for a known allocation).
    pub fn verify_integrity(&self, key: &Key) -> Result<(), Error> {
        let signed = self.signed.as_ref().ok_or(Error::NoIntegrity)?;
        if key.verify(&signed.covered, &signed.mac) {
            Ok(())
        } else {
            Err(Error::IntegrityMismatch)
        }
    }

    /// Whether the message carried MESSAGE-INTEGRITY.
    #[must_use]
    pub fn has_integrity(&self) -> bool {
        self.signed.is_some()
    }

    /// Whether the message carried a (valid) FINGERPRINT.
    #[must_use]
    pub fn has_fingerprint(&self) -> bool {
        self.attributes
            .iter()
            .any(|a| matches!(a, Attribute::Fingerprint(_)))
    }

    /// Encodes the message with zero padding. MESSAGE-INTEGRITY,
    /// MESSAGE-INTEGRITY-SHA256 and FINGERPRINT in [`Message::attributes`] are
    /// skipped: MESSAGE-INTEGRITY is computed under `key` when one is given,
    /// and FINGERPRINT added last when `fingerprint` is set.
    ///
    /// # Errors
    ///
    /// [`Error::ValueTooLong`] or [`Error::BadErrorCode`] for an attribute
    /// that cannot be encoded, or for a message over [`MAX_MESSAGE_LEN`].
    pub fn encode(&self, key: Option<&Key>, fingerprint: bool) -> Result<Vec<u8>, Error> {
        let mut b = Builder::new(self.method, self.class, self.transaction_id);
        for a in &self.attributes {
            if !matches!(
                a,
                Attribute::MessageIntegrity(_)
                    | Attribute::MessageIntegritySha256(_)
                    | Attribute::Fingerprint(_)
            ) {
                b.add(a)?;
            }
        }
        if let Some(key) = key {
            b.message_integrity(key)?;
        }
        if fingerprint {
            b.fingerprint()
        } else {
            Ok(b.finish())
        }
    }

    /// The first attribute of this type.
    #[must_use]
    pub fn get(&self, kind: u16) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.kind() == kind)
    }

    /// Comprehension-required attribute types this crate does not know: a
    /// server answers a request carrying any with 420 and lists them in
    /// UNKNOWN-ATTRIBUTES.
    #[must_use]
    pub fn unknown_comprehension_required(&self) -> Vec<u16> {
        let mut kinds: Vec<u16> = self
            .attributes
            .iter()
            .filter(|a| matches!(a, Attribute::Other { .. }) && a.is_comprehension_required())
            .map(Attribute::kind)
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        kinds
    }

    /// USERNAME, if present.
    #[must_use]
    pub fn username(&self) -> Option<&str> {
        self.attributes.iter().find_map(|a| {
            if let Attribute::Username(s) = a {
                Some(s.as_str())
            } else {
                None
            }
        })
    }

    /// REALM, if present.
    #[must_use]
    pub fn realm(&self) -> Option<&str> {
        self.attributes.iter().find_map(|a| {
            if let Attribute::Realm(s) = a {
                Some(s.as_str())
            } else {
                None
            }
        })
    }

    /// NONCE, if present.
    #[must_use]
    pub fn nonce(&self) -> Option<&str> {
        self.attributes.iter().find_map(|a| {
            if let Attribute::Nonce(s) = a {
                Some(s.as_str())
            } else {
                None
            }
        })
    }

    /// ERROR-CODE, if present.
    #[must_use]
    pub fn error_code(&self) -> Option<&ErrorCode> {
        self.attributes.iter().find_map(|a| {
            if let Attribute::ErrorCode(e) = a {
                Some(e)
            } else {
                None
            }
        })
    }

    /// LIFETIME in seconds, if present.
    #[must_use]
    pub fn lifetime(&self) -> Option<u32> {
        self.attributes.iter().find_map(|a| {
            if let Attribute::Lifetime(s) = a {
                Some(*s)
            } else {
                None
            }
        })
    }

    /// XOR-MAPPED-ADDRESS, if present.
    #[must_use]
    pub fn xor_mapped_address(&self) -> Option<SocketAddr> {
        self.attributes.iter().find_map(|a| {
            if let Attribute::XorMappedAddress(s) = a {
                Some(*s)
            } else {
                None
            }
        })
    }

    /// XOR-RELAYED-ADDRESS, if present (an Allocate's answer).
    #[must_use]
    pub fn xor_relayed_address(&self) -> Option<SocketAddr> {
        self.attributes.iter().find_map(|a| {
            if let Attribute::XorRelayedAddress(s) = a {
                Some(*s)
            } else {
                None
            }
        })
    }

    /// Every XOR-PEER-ADDRESS, in order (CreatePermission may carry several).
    #[must_use]
    pub fn xor_peer_addresses(&self) -> Vec<SocketAddr> {
        let peers = self.attributes.iter();
        peers
            .filter_map(|a| {
                if let Attribute::XorPeerAddress(s) = a {
                    Some(*s)
                } else {
                    None
                }
            })
            .collect()
    }
}

/// `prefix` with its header length field set so the message ends at `end`.
fn with_length(prefix: &[u8], end: usize) -> Vec<u8> {
    let mut covered = prefix.to_vec();
    // `end` is at most MAX_MESSAGE_LEN, so the length fits in 16 bits.
    let len = u16::try_from(end - HEADER_LEN).unwrap_or(u16::MAX);
    covered[2..4].copy_from_slice(&len.to_be_bytes());
    covered
}
