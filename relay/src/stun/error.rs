//! Why a STUN or ChannelData message was refused, decoding or encoding.

/// Errors from the STUN codec.
///
/// Decoding reports the first fault it meets; a server answers any of them
/// with 400 Bad Request, or drops the datagram (RFC 8489 §6.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Fewer bytes than the fixed header (20 for STUN, 4 for ChannelData).
    #[error("message is {len} bytes, shorter than its {need}-byte header")]
    Truncated {
        /// Bytes received.
        len: usize,
        /// Bytes the header needs.
        need: usize,
    },
    /// More bytes than a STUN message can hold.
    #[error("message is {len} bytes, more than the {max} a STUN message can hold")]
    TooLong {
        /// Bytes received.
        len: usize,
        /// The most a message can hold.
        max: usize,
    },
    /// The two top bits of the message type are not zero: not STUN.
    #[error("first two bits are not zero: not a STUN message")]
    NotStun,
    /// The magic cookie is not 0x2112A442 (an RFC 3489 peer, or not STUN).
    #[error("magic cookie is {0:#010x}, not 0x2112a442")]
    BadCookie(u32),
    /// The header's length is not a multiple of 4.
    #[error("message length {0} is not a multiple of 4")]
    UnalignedLength(usize),
    /// The header's length disagrees with the bytes received.
    #[error("header says {header} bytes follow it, but {actual} do")]
    LengthMismatch {
        /// Bytes after the header, as the header says.
        header: usize,
        /// Bytes after the header, as received.
        actual: usize,
    },
    /// An attribute runs past the end of the message.
    #[error("attribute {kind:#06x} at byte {offset} runs past the end of the message")]
    AttributeOverrun {
        /// The attribute's type.
        kind: u16,
        /// Where its header starts.
        offset: usize,
    },
    /// A known attribute whose value has the wrong length.
    #[error("attribute {kind:#06x} has a {len}-byte value, which its definition does not allow")]
    AttributeLength {
        /// The attribute's type.
        kind: u16,
        /// The value's length.
        len: usize,
    },
    /// A text attribute that is not UTF-8.
    #[error("attribute {kind:#06x} is not UTF-8 text")]
    NotUtf8 {
        /// The attribute's type.
        kind: u16,
    },
    /// An address attribute with a family other than IPv4 (1) or IPv6 (2).
    #[error("attribute {kind:#06x} has address family {family:#04x}")]
    AddressFamily {
        /// The attribute's type.
        kind: u16,
        /// The family byte.
        family: u8,
    },
    /// An ERROR-CODE outside 300–699, or a number above 99.
    #[error("error code class {class} number {number} is not a STUN error code")]
    BadErrorCode {
        /// The hundreds digit.
        class: u8,
        /// The last two digits.
        number: u8,
    },
    /// An attribute follows FINGERPRINT, which must be last.
    #[error("attribute {kind:#06x} follows FINGERPRINT, which must be last")]
    AfterFingerprint {
        /// The attribute's type.
        kind: u16,
    },
    /// FINGERPRINT does not match the message's CRC-32.
    #[error("fingerprint is {received:#010x}, the message's is {computed:#010x}")]
    BadFingerprint {
        /// The value in the message.
        received: u32,
        /// The value computed over the message.
        computed: u32,
    },
    /// The message carries no MESSAGE-INTEGRITY to check.
    #[error("message has no MESSAGE-INTEGRITY")]
    NoIntegrity,
    /// MESSAGE-INTEGRITY does not match under the given key.
    #[error("MESSAGE-INTEGRITY does not match the key")]
    IntegrityMismatch,
    /// The builder computes this attribute itself; it cannot be added.
    #[error("attribute {kind:#06x} is computed when the message is built; it cannot be added")]
    Computed {
        /// The attribute's type.
        kind: u16,
    },
    /// An attribute was added after MESSAGE-INTEGRITY, where receivers ignore it.
    #[error("attribute {kind:#06x} added after MESSAGE-INTEGRITY would be ignored")]
    AfterIntegrity {
        /// The attribute's type.
        kind: u16,
    },
    /// A value too long for its attribute or for the message.
    #[error("attribute {kind:#06x} value of {len} bytes is over its limit of {max}")]
    ValueTooLong {
        /// The attribute's type.
        kind: u16,
        /// The value's length.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// A ChannelData channel number outside 0x4000–0x7FFF.
    #[error("channel number {0:#06x} is outside 0x4000-0x7fff")]
    BadChannel(u16),
}
