//! A cheap, deterministic stand-in for a fuzzer: random bytes, truncated and
//! bit-flipped RFC 5769 vectors, and random attribute soup behind a valid
//! header. Nothing may panic, and whatever decodes must survive re-encoding.

use super::rfc5769::{IPV4_RESPONSE, IPV6_RESPONSE, LONG_TERM_REQUEST, REQUEST, hex};
use super::*;

/// Every typed attribute, two unknown ones and the checksums.
const KINDS: [u16; 24] = [
    0x0001, 0x0006, 0x0008, 0x0009, 0x000A, 0x000C, 0x000D, 0x0012, 0x0013, 0x0014, 0x0015, 0x0016, 0x0018,
    0x0019, 0x001A, 0x001C, 0x0020, 0x0022, 0x8022, 0x8023, 0x8028, 0x7FFF, 0xFFFF, 0x0024,
];

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next().to_le_bytes()[0]).collect()
    }
}

/// Runs every decoder over `bytes`; whether it was a STUN message.
fn probe(bytes: &[u8]) -> bool {
    let _ = classify(bytes);
    let _ = frame_len(bytes);
    let _ = ChannelData::decode(bytes);
    let Ok(msg) = decode(bytes) else { return false };
    let _ = msg.verify_integrity(&Key::short_term("k"));
    let _ = msg.unknown_comprehension_required();
    // What decoded re-encodes (padding zeroed) and decodes to the same attributes.
    let bytes = msg.encode(None, false).expect("a decoded message encodes");
    let again = decode(&bytes).expect("a re-encoded message decodes");
    let computed = |a: &Attribute| {
        matches!(
            a,
            Attribute::MessageIntegrity(_) | Attribute::MessageIntegritySha256(_) | Attribute::Fingerprint(_)
        )
    };
    let kept: Vec<_> = msg.attributes.iter().filter(|a| !computed(a)).collect();
    assert_eq!(again.attributes.iter().collect::<Vec<_>>(), kept);
    true
}

#[test]
fn no_input_panics() {
    let seeds: Vec<Vec<u8>> = [REQUEST, IPV4_RESPONSE, IPV6_RESPONSE, LONG_TERM_REQUEST]
        .map(hex)
        .to_vec();
    let mut rng = Rng(0x5EED_0F57_u64);
    let mut decoded = 0;
    for i in 0..40_000 {
        let seed = &seeds[i % seeds.len()];
        let input = match i % 4 {
            0 => {
                let n = rng.below(128);
                rng.bytes(n)
            }
            1 => seed[..rng.below(seed.len() + 1)].to_vec(),
            2 => {
                let mut b = seed.clone();
                for _ in 0..=rng.below(4) {
                    let at = rng.below(b.len());
                    b[at] ^= 1 << rng.below(8);
                }
                b
            }
            _ => {
                // A valid header and well-framed attributes of plausible
                // types and lengths, so the typed decoders get exercised.
                let mut b = hex("00 03 00 00 21 12 a4 42");
                b.extend(rng.bytes(12));
                for _ in 0..rng.below(8) {
                    let kind = KINDS[rng.below(KINDS.len())];
                    let len = [0, 1, 4, 8, 20, 32][rng.below(6)] + rng.below(2);
                    b.extend(kind.to_be_bytes());
                    b.extend(u16::try_from(len).unwrap().to_be_bytes());
                    b.extend(rng.bytes(len.next_multiple_of(4)));
                }
                let body = u16::try_from(b.len() - HEADER_LEN).unwrap();
                b[2..4].copy_from_slice(&body.to_be_bytes());
                b
            }
        };
        decoded += usize::from(probe(&input));
    }
    // Enough inputs got past framing for the typed decoders to be exercised.
    eprintln!("{decoded} of 40000 inputs decoded");
    assert!(decoded > 1_000, "only {decoded} inputs decoded");
}
