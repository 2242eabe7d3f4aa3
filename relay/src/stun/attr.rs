//! STUN and TURN attributes as a typed enum, with their value encodings
//! (RFC 8489 §14, RFC 8656 §18).
//!
//! Attributes this crate does not know are kept raw in [`Attribute::Other`];
//! those in the comprehension-required range (below 0x8000) are what a server
//! lists in UNKNOWN-ATTRIBUTES when it answers 420.

use std::net::SocketAddr;

use super::Error;
use super::addr;
use super::header::TransactionId;

/// Attribute type numbers.
pub mod kind {
    /// MAPPED-ADDRESS (RFC 8489).
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// USERNAME (RFC 8489).
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY (RFC 8489).
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE (RFC 8489).
    pub const ERROR_CODE: u16 = 0x0009;
    /// UNKNOWN-ATTRIBUTES (RFC 8489).
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// CHANNEL-NUMBER (RFC 8656).
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    /// LIFETIME (RFC 8656).
    pub const LIFETIME: u16 = 0x000D;
    /// XOR-PEER-ADDRESS (RFC 8656).
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    /// DATA (RFC 8656).
    pub const DATA: u16 = 0x0013;
    /// REALM (RFC 8489).
    pub const REALM: u16 = 0x0014;
    /// NONCE (RFC 8489).
    pub const NONCE: u16 = 0x0015;
    /// XOR-RELAYED-ADDRESS (RFC 8656).
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    /// EVEN-PORT (RFC 8656).
    pub const EVEN_PORT: u16 = 0x0018;
    /// REQUESTED-TRANSPORT (RFC 8656).
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    /// DONT-FRAGMENT (RFC 8656).
    pub const DONT_FRAGMENT: u16 = 0x001A;
    /// MESSAGE-INTEGRITY-SHA256 (RFC 8489).
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    /// XOR-MAPPED-ADDRESS (RFC 8489).
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// RESERVATION-TOKEN (RFC 8656).
    pub const RESERVATION_TOKEN: u16 = 0x0022;
    /// SOFTWARE (RFC 8489).
    pub const SOFTWARE: u16 = 0x8022;
    /// ALTERNATE-SERVER (RFC 8489).
    pub const ALTERNATE_SERVER: u16 = 0x8023;
    /// FINGERPRINT (RFC 8489).
    pub const FINGERPRINT: u16 = 0x8028;
}

/// REQUESTED-TRANSPORT's protocol number for UDP, the only one RFC 8656 defines.
pub const TRANSPORT_UDP: u8 = 17;

/// USERNAME is limited to 512 bytes (RFC 5389; RFC 8489 lowers it to 508,
/// which is still accepted).
const MAX_USERNAME: usize = 512;
/// REALM, NONCE, SOFTWARE and the ERROR-CODE reason: fewer than 128
/// characters, at most 763 bytes.
const MAX_TEXT: usize = 763;

/// An ERROR-CODE value: a code from 300 to 699 and a reason phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCode {
    /// The code, 300–699.
    pub code: u16,
    /// The reason phrase, for people.
    pub reason: String,
}

impl ErrorCode {
    /// 300: the client should use the ALTERNATE-SERVER given.
    pub const TRY_ALTERNATE: u16 = 300;
    /// 400: malformed request.
    pub const BAD_REQUEST: u16 = 400;
    /// 401: missing or wrong credentials.
    pub const UNAUTHORIZED: u16 = 401;
    /// 403: forbidden, e.g. a peer address the relay refuses.
    pub const FORBIDDEN: u16 = 403;
    /// 420: comprehension-required attributes the server does not know.
    pub const UNKNOWN_ATTRIBUTE: u16 = 420;
    /// 437: the 5-tuple's allocation does not match the request.
    pub const ALLOCATION_MISMATCH: u16 = 437;
    /// 438: the nonce has expired.
    pub const STALE_NONCE: u16 = 438;
    /// 441: credentials differ from the allocation's.
    pub const WRONG_CREDENTIALS: u16 = 441;
    /// 442: the requested transport is not supported.
    pub const UNSUPPORTED_TRANSPORT: u16 = 442;
    /// 486: the user's allocation quota is reached.
    pub const ALLOCATION_QUOTA_REACHED: u16 = 486;
    /// 500: the server failed.
    pub const SERVER_ERROR: u16 = 500;
    /// 508: the server cannot allocate now (restund sends it while draining;
    /// relayd when it cannot bind a relayed socket).
    pub const INSUFFICIENT_CAPACITY: u16 = 508;

    /// An error code with a reason.
    #[must_use]
    pub fn new(code: u16, reason: &str) -> ErrorCode {
        ErrorCode {
            code,
            reason: reason.to_owned(),
        }
    }
}

/// One STUN or TURN attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attribute {
    /// MAPPED-ADDRESS: the client's address, not XOR-ed (RFC 3489 clients).
    MappedAddress(SocketAddr),
    /// XOR-MAPPED-ADDRESS: the client's reflexive address.
    XorMappedAddress(SocketAddr),
    /// XOR-PEER-ADDRESS: a peer's address; may repeat in CreatePermission.
    XorPeerAddress(SocketAddr),
    /// XOR-RELAYED-ADDRESS: the address the relay allocated.
    XorRelayedAddress(SocketAddr),
    /// USERNAME.
    Username(String),
    /// REALM.
    Realm(String),
    /// NONCE.
    Nonce(String),
    /// ERROR-CODE.
    ErrorCode(ErrorCode),
    /// UNKNOWN-ATTRIBUTES: the types a 420 response did not understand.
    UnknownAttributes(Vec<u16>),
    /// SOFTWARE: the agent's name and version.
    Software(String),
    /// MESSAGE-INTEGRITY: HMAC-SHA1 over the message before it.
    MessageIntegrity([u8; 20]),
    /// MESSAGE-INTEGRITY-SHA256: kept as received (16–32 bytes); this crate
    /// neither computes nor checks it.
    MessageIntegritySha256(Vec<u8>),
    /// FINGERPRINT: CRC-32 of the message before it, XOR 0x5354554e.
    Fingerprint(u32),
    /// LIFETIME: seconds an allocation should live.
    Lifetime(u32),
    /// REQUESTED-TRANSPORT: an IP protocol number ([`TRANSPORT_UDP`]).
    RequestedTransport(u8),
    /// DATA: the application data a Send or Data indication carries.
    Data(Vec<u8>),
    /// CHANNEL-NUMBER: the channel a ChannelBind binds.
    ChannelNumber(u16),
    /// ALTERNATE-SERVER: where a 300 response sends the client.
    AlternateServer(SocketAddr),
    /// DONT-FRAGMENT: set DF on the relayed packets.
    DontFragment,
    /// EVEN-PORT: ask for an even relayed port, reserving the next one if set.
    EvenPort {
        /// The R bit: also reserve the next-higher port.
        reserve: bool,
    },
    /// RESERVATION-TOKEN: names a port the server reserved.
    ReservationToken([u8; 8]),
    /// Any other attribute, kept as received.
    Other {
        /// The attribute's type.
        kind: u16,
        /// Its value, without padding.
        value: Vec<u8>,
    },
}

impl Attribute {
    /// The attribute's type number.
    #[must_use]
    pub fn kind(&self) -> u16 {
        match self {
            Attribute::MappedAddress(_) => kind::MAPPED_ADDRESS,
            Attribute::XorMappedAddress(_) => kind::XOR_MAPPED_ADDRESS,
            Attribute::XorPeerAddress(_) => kind::XOR_PEER_ADDRESS,
            Attribute::XorRelayedAddress(_) => kind::XOR_RELAYED_ADDRESS,
            Attribute::Username(_) => kind::USERNAME,
            Attribute::Realm(_) => kind::REALM,
            Attribute::Nonce(_) => kind::NONCE,
            Attribute::ErrorCode(_) => kind::ERROR_CODE,
            Attribute::UnknownAttributes(_) => kind::UNKNOWN_ATTRIBUTES,
            Attribute::Software(_) => kind::SOFTWARE,
            Attribute::MessageIntegrity(_) => kind::MESSAGE_INTEGRITY,
            Attribute::MessageIntegritySha256(_) => kind::MESSAGE_INTEGRITY_SHA256,
            Attribute::Fingerprint(_) => kind::FINGERPRINT,
            Attribute::Lifetime(_) => kind::LIFETIME,
            Attribute::RequestedTransport(_) => kind::REQUESTED_TRANSPORT,
            Attribute::Data(_) => kind::DATA,
            Attribute::ChannelNumber(_) => kind::CHANNEL_NUMBER,
            Attribute::AlternateServer(_) => kind::ALTERNATE_SERVER,
            Attribute::DontFragment => kind::DONT_FRAGMENT,
            Attribute::EvenPort { .. } => kind::EVEN_PORT,
            Attribute::ReservationToken(_) => kind::RESERVATION_TOKEN,
            Attribute::Other { kind, .. } => *kind,
        }
    }

    /// Whether an agent that does not know this attribute must refuse the
    /// message (types 0x0000–0x7FFF).
    #[must_use]
    pub fn is_comprehension_required(&self) -> bool {
        self.kind() < 0x8000
    }

    /// Decodes one attribute value (without padding).
    ///
    /// # Errors
    ///
    /// [`Error`] when a known attribute's value is malformed.
    pub(crate) fn decode(kind: u16, v: &[u8], tid: &TransactionId) -> Result<Attribute, Error> {
        let bad_len = || Error::AttributeLength { kind, len: v.len() };
        let fixed = |n: usize| if v.len() == n { Ok(v) } else { Err(bad_len()) };
        let u32_at = |v: &[u8]| u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
        Ok(match kind {
            kind::MAPPED_ADDRESS => Attribute::MappedAddress(addr::decode_plain(kind, v)?),
            kind::ALTERNATE_SERVER => Attribute::AlternateServer(addr::decode_plain(kind, v)?),
            kind::XOR_MAPPED_ADDRESS => Attribute::XorMappedAddress(addr::decode_xor(kind, v, tid)?),
            kind::XOR_PEER_ADDRESS => Attribute::XorPeerAddress(addr::decode_xor(kind, v, tid)?),
            kind::XOR_RELAYED_ADDRESS => Attribute::XorRelayedAddress(addr::decode_xor(kind, v, tid)?),
            kind::USERNAME => Attribute::Username(text(kind, v, MAX_USERNAME)?),
            kind::REALM => Attribute::Realm(text(kind, v, MAX_TEXT)?),
            kind::NONCE => Attribute::Nonce(text(kind, v, MAX_TEXT)?),
            kind::SOFTWARE => Attribute::Software(text(kind, v, MAX_TEXT)?),
            kind::ERROR_CODE => {
                let [_, _, class, number, reason @ ..] = v else {
                    return Err(bad_len());
                };
                // The 21 bits before the class are reserved: ignored on receipt.
                let (class, number) = (class & 0x07, *number);
                if !(3..=6).contains(&class) || number > 99 {
                    return Err(Error::BadErrorCode { class, number });
                }
                let reason = text(kind, reason, MAX_TEXT)?;
                Attribute::ErrorCode(ErrorCode {
                    code: u16::from(class) * 100 + u16::from(number),
                    reason,
                })
            }
            kind::UNKNOWN_ATTRIBUTES => {
                if !v.len().is_multiple_of(2) {
                    return Err(bad_len());
                }
                Attribute::UnknownAttributes(
                    v.chunks_exact(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect(),
                )
            }
            kind::MESSAGE_INTEGRITY => {
                Attribute::MessageIntegrity(fixed(20)?.try_into().map_err(|_| bad_len())?)
            }
            kind::MESSAGE_INTEGRITY_SHA256 => {
                // RFC 8489 §14.6: 16 to 32 bytes, in steps of 4 (truncated HMACs).
                if !(16..=32).contains(&v.len()) || !v.len().is_multiple_of(4) {
                    return Err(bad_len());
                }
                Attribute::MessageIntegritySha256(v.to_vec())
            }
            kind::FINGERPRINT => Attribute::Fingerprint(u32_at(fixed(4)?)),
            kind::LIFETIME => Attribute::Lifetime(u32_at(fixed(4)?)),
            // The three bytes after the protocol are reserved for future use.
            kind::REQUESTED_TRANSPORT => Attribute::RequestedTransport(fixed(4)?[0]),
            kind::DATA => Attribute::Data(v.to_vec()),
            kind::CHANNEL_NUMBER => {
                let v = fixed(4)?;
                Attribute::ChannelNumber(u16::from_be_bytes([v[0], v[1]]))
            }
            kind::DONT_FRAGMENT => {
                fixed(0)?;
                Attribute::DontFragment
            }
            kind::EVEN_PORT => Attribute::EvenPort {
                reserve: fixed(1)?[0] & 0x80 != 0,
            },
            kind::RESERVATION_TOKEN => {
                Attribute::ReservationToken(fixed(8)?.try_into().map_err(|_| bad_len())?)
            }
            _ => Attribute::Other {
                kind,
                value: v.to_vec(),
            },
        })
    }

    /// Appends this attribute's value (without header or padding).
    ///
    /// # Errors
    ///
    /// [`Error::ValueTooLong`] for text over its limit, [`Error::BadErrorCode`]
    /// for a code outside 300–699.
    pub(crate) fn encode_value(&self, tid: &TransactionId, out: &mut Vec<u8>) -> Result<(), Error> {
        let kind = self.kind();
        let limited = |s: &str, max: usize| {
            if s.len() > max {
                Err(Error::ValueTooLong {
                    kind,
                    len: s.len(),
                    max,
                })
            } else {
                Ok(())
            }
        };
        match self {
            Attribute::MappedAddress(a) | Attribute::AlternateServer(a) => addr::encode_plain(*a, out),
            Attribute::XorMappedAddress(a)
            | Attribute::XorPeerAddress(a)
            | Attribute::XorRelayedAddress(a) => {
                addr::encode_xor(*a, tid, out);
            }
            Attribute::Username(s) => {
                limited(s, MAX_USERNAME)?;
                out.extend_from_slice(s.as_bytes());
            }
            Attribute::Realm(s) | Attribute::Nonce(s) | Attribute::Software(s) => {
                limited(s, MAX_TEXT)?;
                out.extend_from_slice(s.as_bytes());
            }
            Attribute::ErrorCode(e) => {
                limited(&e.reason, MAX_TEXT)?;
                if !(300..700).contains(&e.code) {
                    let class = u8::try_from(e.code / 100).unwrap_or(u8::MAX);
                    return Err(Error::BadErrorCode {
                        class,
                        number: (e.code % 100) as u8,
                    });
                }
                out.extend_from_slice(&[0, 0, (e.code / 100) as u8, (e.code % 100) as u8]);
                out.extend_from_slice(e.reason.as_bytes());
            }
            Attribute::UnknownAttributes(kinds) => kinds.iter().for_each(|k| out.extend(k.to_be_bytes())),
            Attribute::MessageIntegrity(mac) => out.extend_from_slice(mac),
            Attribute::MessageIntegritySha256(mac) => out.extend_from_slice(mac),
            Attribute::Fingerprint(n) | Attribute::Lifetime(n) => out.extend(n.to_be_bytes()),
            Attribute::RequestedTransport(p) => out.extend_from_slice(&[*p, 0, 0, 0]),
            Attribute::Data(d) => out.extend_from_slice(d),
            Attribute::ChannelNumber(c) => {
                out.extend(c.to_be_bytes());
                out.extend([0, 0]);
            }
            Attribute::DontFragment => {}
            Attribute::EvenPort { reserve } => out.push(if *reserve { 0x80 } else { 0 }),
            Attribute::ReservationToken(t) => out.extend_from_slice(t),
            Attribute::Other { value, .. } => out.extend_from_slice(value),
        }
        Ok(())
    }
}

fn text(kind: u16, v: &[u8], max: usize) -> Result<String, Error> {
    if v.len() > max {
        return Err(Error::ValueTooLong {
            kind,
            len: v.len(),
            max,
        });
    }
    String::from_utf8(v.to_vec()).map_err(|_| Error::NotUtf8 { kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TID: TransactionId = TransactionId([7; 12]);

    fn round_trip(a: Attribute) {
        let mut v = Vec::new();
        a.encode_value(&TID, &mut v).unwrap();
        assert_eq!(Attribute::decode(a.kind(), &v, &TID).unwrap(), a);
    }

    #[test]
    fn every_typed_attribute_round_trips() {
        let addr: SocketAddr = "203.0.113.9:49152".parse().unwrap();
        for a in [
            Attribute::MappedAddress(addr),
            Attribute::XorMappedAddress(addr),
            Attribute::XorPeerAddress("[2001:db8::1]:9".parse().unwrap()),
            Attribute::XorRelayedAddress(addr),
            Attribute::Username("alice".into()),
            Attribute::Realm("example.org".into()),
            Attribute::Nonce("abc".into()),
            Attribute::ErrorCode(ErrorCode::new(ErrorCode::INSUFFICIENT_CAPACITY, "Draining")),
            Attribute::UnknownAttributes(vec![0x0024, 0x7fff]),
            Attribute::Software("relayd".into()),
            Attribute::MessageIntegrity([9; 20]),
            Attribute::MessageIntegritySha256(vec![1; 32]),
            Attribute::Fingerprint(0xdead_beef),
            Attribute::Lifetime(600),
            Attribute::RequestedTransport(TRANSPORT_UDP),
            Attribute::Data(b"payload".to_vec()),
            Attribute::ChannelNumber(0x4001),
            Attribute::AlternateServer(addr),
            Attribute::DontFragment,
            Attribute::EvenPort { reserve: true },
            Attribute::ReservationToken(*b"token!!!"),
            Attribute::Other {
                kind: 0x8029,
                value: vec![1, 2, 3],
            },
        ] {
            round_trip(a);
        }
    }

    #[test]
    fn error_code_bits() {
        let mut v = Vec::new();
        Attribute::ErrorCode(ErrorCode::new(438, "Stale Nonce"))
            .encode_value(&TID, &mut v)
            .unwrap();
        assert_eq!(&v[..4], [0, 0, 4, 38]);
        assert_eq!(
            Attribute::decode(kind::ERROR_CODE, &[0, 0, 2, 0], &TID),
            Err(Error::BadErrorCode { class: 2, number: 0 })
        );
        assert_eq!(
            Attribute::decode(kind::ERROR_CODE, &[0, 0, 4, 100], &TID),
            Err(Error::BadErrorCode {
                class: 4,
                number: 100
            })
        );
        let err = Attribute::ErrorCode(ErrorCode::new(200, "OK")).encode_value(&TID, &mut v);
        assert!(matches!(err, Err(Error::BadErrorCode { .. })));
    }

    #[test]
    fn malformed_values_are_refused() {
        let refused = |kind: u16, v: &[u8]| Attribute::decode(kind, v, &TID).unwrap_err();
        assert!(matches!(
            refused(kind::LIFETIME, &[0; 3]),
            Error::AttributeLength { .. }
        ));
        assert!(matches!(
            refused(kind::DONT_FRAGMENT, &[0]),
            Error::AttributeLength { .. }
        ));
        assert!(matches!(
            refused(kind::UNKNOWN_ATTRIBUTES, &[0; 3]),
            Error::AttributeLength { .. }
        ));
        assert!(matches!(
            refused(kind::MESSAGE_INTEGRITY_SHA256, &[0; 18]),
            Error::AttributeLength { .. }
        ));
        assert!(matches!(
            refused(kind::USERNAME, &[0xff, 0xfe]),
            Error::NotUtf8 { .. }
        ));
        assert!(matches!(
            refused(kind::USERNAME, &[b'a'; 513]),
            Error::ValueTooLong { .. }
        ));
        assert!(matches!(
            refused(kind::REALM, &[b'a'; 764]),
            Error::ValueTooLong { .. }
        ));
    }

    #[test]
    fn comprehension_range() {
        assert!(
            Attribute::Other {
                kind: 0x7fff,
                value: vec![]
            }
            .is_comprehension_required()
        );
        assert!(!Attribute::Software(String::new()).is_comprehension_required());
    }
}
