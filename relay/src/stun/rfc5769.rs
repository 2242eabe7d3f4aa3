//! The test vectors of RFC 5769 ("Test Vectors for STUN", April 2010), and the
//! ways a decoder must refuse a damaged copy of them.
//!
//! The vectors pad SOFTWARE and USERNAME with spaces, not zeros, on purpose:
//! a receiver must ignore padding, and checksums cover it as sent.

use std::net::SocketAddr;

use super::*;

/// Hex as the RFC prints it (spaces and line breaks anywhere) to bytes.
pub(super) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// §2.1: Binding request, short-term credentials, with FINGERPRINT.
pub(super) const REQUEST: &str = "
    00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
    00 24 00 04 6e 00 01 ff
    80 29 00 08 93 2f f9 b1 51 26 3b 36
    00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
    00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
    80 28 00 04 e5 7a 3b cf";

/// §2.2: Binding success response, XOR-MAPPED-ADDRESS 192.0.2.1:32853.
pub(super) const IPV4_RESPONSE: &str = "
    01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 08 00 01 a1 47 e1 12 a6 43
    00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
    80 28 00 04 c0 7d 4c 96";

/// §2.3: the same over IPv6.
pub(super) const IPV6_RESPONSE: &str = "
    01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
    00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
    80 28 00 04 c8 fb 0b 4c";

/// §2.4: Binding request with long-term credentials, no FINGERPRINT.
pub(super) const LONG_TERM_REQUEST: &str = "
    00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
    00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
    00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
    00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
    00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66";

const PASSWORD: &str = "VOkJxbRl1RmTxUk/WvJxBt";
const TID: [u8; 12] = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];

/// The MESSAGE-INTEGRITY and FINGERPRINT values at the end of `bytes`,
/// recomputed from scratch over the bytes before each, length as sent.
fn recompute_tail(bytes: &[u8], key: &Key) -> ([u8; 20], u32) {
    let mi_at = bytes.len() - 8 - 24;
    let mut covered = bytes[..mi_at].to_vec();
    covered[2..4].copy_from_slice(&u16::try_from(mi_at + 24 - 20).unwrap().to_be_bytes());
    let mac = key.sign(&covered);
    let crc = integrity::fingerprint(&bytes[..bytes.len() - 8]);
    (mac, crc)
}

#[test]
fn sample_request() {
    let bytes = hex(REQUEST);
    let msg = decode(&bytes).unwrap();
    assert_eq!((msg.method, msg.class), (Method::BINDING, Class::Request));
    assert_eq!(msg.transaction_id, TransactionId(TID));
    assert_eq!(
        msg.get(kind::SOFTWARE),
        Some(&Attribute::Software("STUN test client".into()))
    );
    assert_eq!(msg.username(), Some("evtj:h6vY"));
    // PRIORITY is ICE's, unknown to a TURN server and comprehension-required;
    // ICE-CONTROLLED is optional and kept raw.
    assert_eq!(msg.unknown_comprehension_required(), [0x0024]);
    assert_eq!(
        msg.get(0x8029),
        Some(&Attribute::Other {
            kind: 0x8029,
            value: hex("93 2f f9 b1 51 26 3b 36")
        })
    );
    assert!(msg.has_fingerprint());
    assert_eq!(msg.verify_integrity(&Key::short_term(PASSWORD)), Ok(()));
    assert_eq!(
        msg.verify_integrity(&Key::short_term("VOkJxbRl1RmTxUk/WvJxBT")),
        Err(Error::IntegrityMismatch)
    );

    let (mac, crc) = recompute_tail(&bytes, &Key::short_term(PASSWORD));
    assert_eq!(
        msg.get(kind::MESSAGE_INTEGRITY),
        Some(&Attribute::MessageIntegrity(mac))
    );
    assert_eq!(crc, 0xe57a_3bcf);
}

#[test]
fn sample_ipv4_response() {
    let bytes = hex(IPV4_RESPONSE);
    let msg = decode(&bytes).unwrap();
    assert_eq!((msg.method, msg.class), (Method::BINDING, Class::Success));
    assert_eq!(
        msg.get(kind::SOFTWARE),
        Some(&Attribute::Software("test vector".into()))
    );
    assert_eq!(
        msg.xor_mapped_address(),
        Some("192.0.2.1:32853".parse::<SocketAddr>().unwrap())
    );
    assert_eq!(msg.verify_integrity(&Key::short_term(PASSWORD)), Ok(()));
    let (mac, crc) = recompute_tail(&bytes, &Key::short_term(PASSWORD));
    assert_eq!(mac[..4], [0x2b, 0x91, 0xf5, 0x99]);
    assert_eq!(crc, 0xc07d_4c96);
}

#[test]
fn sample_ipv6_response() {
    let bytes = hex(IPV6_RESPONSE);
    let msg = decode(&bytes).unwrap();
    let expected: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853".parse().unwrap();
    assert_eq!(msg.xor_mapped_address(), Some(expected));
    assert_eq!(msg.verify_integrity(&Key::short_term(PASSWORD)), Ok(()));
    let (mac, crc) = recompute_tail(&bytes, &Key::short_term(PASSWORD));
    assert_eq!(mac[..4], [0xa3, 0x82, 0x95, 0x4e]);
    assert_eq!(crc, 0xc8fb_0b4c);
}

#[test]
fn sample_request_with_long_term_authentication() {
    let bytes = hex(LONG_TERM_REQUEST);
    let msg = decode(&bytes).unwrap();
    assert_eq!(
        msg.username(),
        Some("\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}")
    );
    assert_eq!(msg.nonce(), Some("f//499k954d6OL34oL9FSTvy64sA"));
    assert_eq!(msg.realm(), Some("example.org"));
    assert!(!msg.has_fingerprint());
    // The RFC's password is "TheM\u{00AA}tr\u{2168}"; SASLprep makes it "TheMatrIX".
    let key = Key::long_term(msg.username().unwrap(), "example.org", "TheMatrIX");
    assert_eq!(msg.verify_integrity(&key), Ok(()));
    assert_eq!(
        msg.verify_integrity(&Key::long_term("\u{30DE}", "example.org", "TheMatrIX")),
        Err(Error::IntegrityMismatch)
    );
    // Zero padding throughout, so the builder reproduces it byte for byte.
    assert_eq!(msg.encode(Some(&key), false).unwrap(), bytes);
}

#[test]
fn encode_then_decode_keeps_everything() {
    let tid = TransactionId([9; 12]);
    let mut msg = Message::new(Method::ALLOCATE, Class::Error, tid);
    msg.attributes = vec![
        Attribute::ErrorCode(ErrorCode::new(ErrorCode::INSUFFICIENT_CAPACITY, "Draining")),
        Attribute::XorRelayedAddress("[2001:db8::7]:50000".parse().unwrap()),
        Attribute::Realm("wire.example".into()),
        Attribute::Nonce("n".into()),
    ];
    let key = Key::long_term("u", "wire.example", "p");
    let bytes = msg.encode(Some(&key), true).unwrap();
    let back = decode(&bytes).unwrap();
    assert_eq!(back.verify_integrity(&key), Ok(()));
    assert_eq!(back.error_code().map(|e| e.code), Some(508));
    assert_eq!(back.attributes[..4], msg.attributes[..]);
    assert!(matches!(back.attributes[4], Attribute::MessageIntegrity(_)));
    assert!(matches!(back.attributes[5], Attribute::Fingerprint(_)));
    // And encoding the decoded message again gives the same bytes.
    assert_eq!(back.encode(Some(&key), true).unwrap(), bytes);
}

#[test]
fn every_truncation_is_refused() {
    for vector in [REQUEST, IPV4_RESPONSE, IPV6_RESPONSE, LONG_TERM_REQUEST] {
        let bytes = hex(vector);
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "{n} bytes of {vector}");
        }
    }
    assert_eq!(decode(&[0; 19]), Err(Error::Truncated { len: 19, need: 20 }));
}

#[test]
fn damaged_headers_are_refused() {
    let good = hex(IPV4_RESPONSE);
    let damaged = |at: usize, byte: u8| {
        let mut b = good.clone();
        b[at] = byte;
        decode(&b).unwrap_err()
    };
    assert_eq!(damaged(0, 0x81), Error::NotStun);
    assert_eq!(damaged(4, 0x22), Error::BadCookie(0x2212_a442));
    assert_eq!(damaged(3, 0x3e), Error::UnalignedLength(0x3e));
    assert_eq!(
        damaged(3, 0x40),
        Error::LengthMismatch {
            header: 0x40,
            actual: 0x3c
        }
    );
    let mut long = good.clone();
    long.extend([0; 4]);
    assert_eq!(
        decode(&long),
        Err(Error::LengthMismatch {
            header: 0x3c,
            actual: 0x40
        })
    );
    let huge = vec![0; MAX_MESSAGE_LEN + 1];
    assert_eq!(
        decode(&huge),
        Err(Error::TooLong {
            len: MAX_MESSAGE_LEN + 1,
            max: MAX_MESSAGE_LEN
        })
    );
}

#[test]
fn damaged_attributes_are_refused() {
    let good = hex(IPV4_RESPONSE);
    // A flipped bit in SOFTWARE no longer matches FINGERPRINT.
    let mut b = good.clone();
    b[24] ^= 0x01;
    assert!(matches!(
        decode(&b),
        Err(Error::BadFingerprint {
            received: 0xc07d_4c96,
            ..
        })
    ));
    // SOFTWARE claiming more bytes than the message holds.
    let mut b = good.clone();
    b[23] = 0xff;
    assert_eq!(
        decode(&b),
        Err(Error::AttributeOverrun {
            kind: 0x8022,
            offset: 20
        })
    );
    // Anything after FINGERPRINT.
    let mut b = good.clone();
    b.extend([0x80, 0x22, 0, 0]);
    b[3] += 4;
    assert_eq!(decode(&b), Err(Error::AfterFingerprint { kind: 0x8022 }));
    // A malformed known attribute: XOR-MAPPED-ADDRESS with family 3.
    let mut b = hex(LONG_TERM_REQUEST);
    b.truncate(b.len() - 24);
    b.extend(hex("00 20 00 08 00 03 a1 47 e1 12 a6 43"));
    b[3] = u8::try_from(b.len() - 20).unwrap();
    assert_eq!(
        decode(&b),
        Err(Error::AddressFamily {
            kind: 0x20,
            family: 3
        })
    );
}

#[test]
fn attributes_after_integrity_are_ignored() {
    let key = Key::short_term("k");
    let mut b = Builder::new(Method::REFRESH, Class::Request, TransactionId([1; 12]));
    b.add(&Attribute::Lifetime(600)).unwrap();
    b.message_integrity(&key).unwrap();
    let mut bytes = b.finish();
    // An on-path attacker appends LIFETIME 0 after the signed part.
    bytes.extend(hex("00 0d 00 04 00 00 00 00"));
    bytes[3] += 8;
    let msg = decode(&bytes).unwrap();
    assert_eq!(msg.verify_integrity(&key), Ok(()));
    assert_eq!(msg.lifetime(), Some(600));
    assert_eq!(msg.attributes.len(), 2);
}
