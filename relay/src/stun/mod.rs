//! A sans-IO STUN codec (RFC 5389/8489) with the TURN attributes and
//! ChannelData framing of RFC 5766/8656.
//!
//! Everything here is a pure function of bytes: [`decode`] turns a datagram
//! into a [`Message`] or an [`Error`] and never panics, [`Builder`] writes one
//! with MESSAGE-INTEGRITY and FINGERPRINT, [`ChannelData`] and [`classify`]
//! handle what else arrives on a TURN port. Sockets and timers live elsewhere.

mod addr;
mod attr;
mod builder;
mod channel;
mod error;
mod header;
mod integrity;
mod message;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod rfc5769;

pub use attr::{Attribute, ErrorCode, TRANSPORT_UDP, kind};
pub use builder::Builder;
pub use channel::{CHANNEL_MAX, CHANNEL_MIN, ChannelData, Datagram, classify, frame_len};
pub use error::Error;
pub use header::{Class, HEADER_LEN, MAGIC_COOKIE, MAX_MESSAGE_LEN, Method, TransactionId};
pub use integrity::Key;
pub use message::Message;

/// Decodes one whole STUN message; the entry point for fuzzing.
///
/// # Errors
///
/// Any [`Error`] about framing, attribute layout, attribute values or a
/// FINGERPRINT that does not match.
pub fn decode(bytes: &[u8]) -> Result<Message, Error> {
    Message::decode(bytes)
}
