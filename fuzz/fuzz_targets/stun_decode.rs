//! Whatever arrives on a TURN port: the classifier, the stream framer, the
//! ChannelData and STUN decoders must never panic, must agree with each
//! other, and what they decode must survive re-encoding.

#![no_main]

use libfuzzer_sys::fuzz_target;
use relay::stun::{
    self, Attribute, CHANNEL_MAX, CHANNEL_MIN, ChannelData, Datagram, Key, MAX_MESSAGE_LEN, classify,
    frame_len,
};

fuzz_target!(|bytes: &[u8]| {
    let class = classify(bytes);
    let frame = frame_len(bytes);

    if let Ok(cd) = ChannelData::decode(bytes) {
        assert!((CHANNEL_MIN..=CHANNEL_MAX).contains(&cd.channel));
        assert_eq!(class, Datagram::ChannelData);
        // A padded frame is exactly what the stream framer cuts.
        let padded = cd.encode(true).expect("a decoded ChannelData encodes");
        assert_eq!(frame_len(&padded), Ok(Some(padded.len())));
        assert_eq!(ChannelData::decode(&padded), Ok(cd));
        let plain = cd.encode(false).expect("a decoded ChannelData encodes");
        assert_eq!(ChannelData::decode(&plain), Ok(cd));
    }

    let Ok(msg) = stun::decode(bytes) else {
        return;
    };
    assert_eq!(class, Datagram::Stun);
    assert_eq!(frame, Ok(Some(bytes.len())));
    let _ = msg.verify_integrity(&Key::short_term("fuzz"));
    let _ = msg.unknown_comprehension_required();
    let _ = (
        msg.username(),
        msg.realm(),
        msg.nonce(),
        msg.error_code(),
        msg.lifetime(),
    );
    let _ = (msg.xor_mapped_address(), msg.xor_peer_addresses());

    // Re-encoded (padding zeroed, checksums recomputed or dropped), the
    // message decodes to the same attributes, the checksums aside.
    let computed = |a: &&Attribute| {
        matches!(
            a,
            Attribute::MessageIntegrity(_) | Attribute::MessageIntegritySha256(_) | Attribute::Fingerprint(_)
        )
    };
    let kept: Vec<&Attribute> = msg.attributes.iter().filter(|a| !computed(a)).collect();
    let key = Key::long_term("user", "realm", "password");
    let Ok(sealed) = msg.encode(Some(&key), true) else {
        // Only when MESSAGE-INTEGRITY and FINGERPRINT (32 bytes) no longer fit.
        assert!(bytes.len() + 32 > MAX_MESSAGE_LEN, "a decoded message encodes");
        return;
    };
    let again = stun::decode(&sealed).expect("a re-encoded message decodes");
    assert_eq!(
        (again.method, again.class, again.transaction_id),
        (msg.method, msg.class, msg.transaction_id)
    );
    assert_eq!(
        again
            .attributes
            .iter()
            .filter(|a| !computed(a))
            .collect::<Vec<_>>(),
        kept
    );
    assert!(again.has_fingerprint());
    assert_eq!(again.verify_integrity(&key), Ok(()));
});
