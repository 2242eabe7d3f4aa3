//! Address attribute values: plain (MAPPED-ADDRESS, ALTERNATE-SERVER) and
//! XOR-ed with the magic cookie and transaction id (XOR-MAPPED-ADDRESS and
//! TURN's XOR-PEER-ADDRESS and XOR-RELAYED-ADDRESS).
//!
//! The XOR exists so that NATs rewriting addresses they find in payloads
//! leave these alone (RFC 8489 §14.2).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::Error;
use super::header::{MAGIC_COOKIE, TransactionId};

const FAMILY_V4: u8 = 0x01;
const FAMILY_V6: u8 = 0x02;

/// The 16 bytes an address is XOR-ed with: the cookie, then the transaction id.
fn mask(tid: &TransactionId) -> [u8; 16] {
    let mut m = [0; 16];
    m[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    m[4..].copy_from_slice(tid.as_bytes());
    m
}

/// Reads `0, family, port, address`, with the port and address XOR-ed with
/// `mask` (all zeros for a plain address).
fn read(kind: u16, v: &[u8], mask: &[u8; 16]) -> Result<SocketAddr, Error> {
    let bad_len = || Error::AttributeLength { kind, len: v.len() };
    let [_, family, p0, p1, rest @ ..] = v else {
        return Err(bad_len());
    };
    let port = u16::from_be_bytes([p0 ^ mask[0], p1 ^ mask[1]]);
    let ip = match *family {
        FAMILY_V4 => {
            let raw: [u8; 4] = rest.try_into().map_err(|_| bad_len())?;
            IpAddr::V4(Ipv4Addr::from(std::array::from_fn::<u8, 4, _>(|i| {
                raw[i] ^ mask[i]
            })))
        }
        FAMILY_V6 => {
            let raw: [u8; 16] = rest.try_into().map_err(|_| bad_len())?;
            IpAddr::V6(Ipv6Addr::from(std::array::from_fn::<u8, 16, _>(|i| {
                raw[i] ^ mask[i]
            })))
        }
        family => return Err(Error::AddressFamily { kind, family }),
    };
    Ok(SocketAddr::new(ip, port))
}

fn write(addr: SocketAddr, mask: &[u8; 16], out: &mut Vec<u8>) {
    let port = addr.port().to_be_bytes();
    let (family, octets): (u8, Vec<u8>) = match addr.ip() {
        IpAddr::V4(ip) => (FAMILY_V4, ip.octets().to_vec()),
        IpAddr::V6(ip) => (FAMILY_V6, ip.octets().to_vec()),
    };
    out.extend_from_slice(&[0, family, port[0] ^ mask[0], port[1] ^ mask[1]]);
    out.extend(octets.iter().zip(mask).map(|(b, m)| b ^ m));
}

/// Decodes a plain address value.
///
/// # Errors
///
/// [`Error::AttributeLength`] or [`Error::AddressFamily`] for a malformed value.
pub(crate) fn decode_plain(kind: u16, v: &[u8]) -> Result<SocketAddr, Error> {
    read(kind, v, &[0; 16])
}

/// Decodes an XOR-ed address value.
///
/// # Errors
///
/// [`Error::AttributeLength`] or [`Error::AddressFamily`] for a malformed value.
pub(crate) fn decode_xor(kind: u16, v: &[u8], tid: &TransactionId) -> Result<SocketAddr, Error> {
    read(kind, v, &mask(tid))
}

/// Appends a plain address value.
pub(crate) fn encode_plain(addr: SocketAddr, out: &mut Vec<u8>) {
    write(addr, &[0; 16], out);
}

/// Appends an XOR-ed address value.
pub(crate) fn encode_xor(addr: SocketAddr, tid: &TransactionId, out: &mut Vec<u8>) {
    write(addr, &mask(tid), out);
}

#[cfg(test)]
mod tests {
    use super::*;

    const TID: TransactionId = TransactionId([
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ]);

    #[test]
    fn xor_values_match_rfc_5769() {
        let v4: SocketAddr = "192.0.2.1:32853".parse().unwrap();
        let mut out = Vec::new();
        encode_xor(v4, &TID, &mut out);
        assert_eq!(out, [0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43]);
        assert_eq!(decode_xor(0x20, &out, &TID), Ok(v4));

        let v6: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853".parse().unwrap();
        out.clear();
        encode_xor(v6, &TID, &mut out);
        assert_eq!(&out[..4], [0x00, 0x02, 0xa1, 0x47]);
        assert_eq!(&out[4..8], [0x01, 0x13, 0xa9, 0xfa]);
        assert_eq!(decode_xor(0x20, &out, &TID), Ok(v6));
    }

    #[test]
    fn plain_round_trips_and_rejects_garbage() {
        let a: SocketAddr = "[::1]:3478".parse().unwrap();
        let mut out = Vec::new();
        encode_plain(a, &mut out);
        assert_eq!(out.len(), 20);
        assert_eq!(decode_plain(1, &out), Ok(a));
        assert_eq!(
            decode_plain(1, &out[..7]),
            Err(Error::AttributeLength { kind: 1, len: 7 })
        );
        assert_eq!(
            decode_plain(1, &[0, 3, 0, 0, 1, 2, 3, 4]),
            Err(Error::AddressFamily { kind: 1, family: 3 })
        );
        assert!(decode_plain(1, &[0, 1, 0, 0, 1, 2, 3, 4, 5]).is_err());
    }
}
