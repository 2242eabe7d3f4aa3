//! TURN ChannelData framing (RFC 8656 §12.4), telling it apart from STUN on
//! a shared port, and cutting both out of a byte stream (TCP, TLS).

use super::Error;
use super::header::{HEADER_LEN, MAGIC_COOKIE};

/// The lowest channel number a client may bind.
pub const CHANNEL_MIN: u16 = 0x4000;
/// The highest channel number (RFC 5766; RFC 8656 narrows clients to 0x4FFF,
/// but servers still accept the old range).
pub const CHANNEL_MAX: u16 = 0x7FFF;

const CHANNEL_HEADER_LEN: usize = 4;

/// One ChannelData message, borrowing its payload from the received bytes so
/// relaying it copies nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    /// The channel number, 0x4000–0x7FFF.
    pub channel: u16,
    /// The application data.
    pub data: &'a [u8],
}

impl<'a> ChannelData<'a> {
    /// Decodes one ChannelData message. Up to 3 bytes of padding after the
    /// data are allowed (required on streams, optional on UDP).
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] for fewer bytes than the header or the length
    /// says, [`Error::BadChannel`] outside the channel range, and
    /// [`Error::LengthMismatch`] for more bytes than the padding explains.
    pub fn decode(bytes: &'a [u8]) -> Result<ChannelData<'a>, Error> {
        let Some(&[c0, c1, l0, l1]) = bytes.get(..CHANNEL_HEADER_LEN) else {
            return Err(Error::Truncated {
                len: bytes.len(),
                need: CHANNEL_HEADER_LEN,
            });
        };
        let channel = u16::from_be_bytes([c0, c1]);
        if !(CHANNEL_MIN..=CHANNEL_MAX).contains(&channel) {
            return Err(Error::BadChannel(channel));
        }
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        let actual = bytes.len() - CHANNEL_HEADER_LEN;
        let Some(data) = bytes.get(CHANNEL_HEADER_LEN..CHANNEL_HEADER_LEN + len) else {
            return Err(Error::Truncated {
                len: bytes.len(),
                need: CHANNEL_HEADER_LEN + len,
            });
        };
        if actual > len.next_multiple_of(4) {
            return Err(Error::LengthMismatch { header: len, actual });
        }
        Ok(ChannelData { channel, data })
    }

    /// Encodes the message; `pad` adds the zero padding stream transports need.
    ///
    /// # Errors
    ///
    /// [`Error::BadChannel`] outside the channel range, [`Error::ValueTooLong`]
    /// for more than 65535 bytes of data.
    pub fn encode(&self, pad: bool) -> Result<Vec<u8>, Error> {
        if !(CHANNEL_MIN..=CHANNEL_MAX).contains(&self.channel) {
            return Err(Error::BadChannel(self.channel));
        }
        let too_long = Error::ValueTooLong {
            kind: self.channel,
            len: self.data.len(),
            max: 0xFFFF,
        };
        let len = u16::try_from(self.data.len()).map_err(|_| too_long)?;
        let total = CHANNEL_HEADER_LEN
            + if pad {
                self.data.len().next_multiple_of(4)
            } else {
                self.data.len()
            };
        let mut out = Vec::with_capacity(total);
        out.extend(self.channel.to_be_bytes());
        out.extend(len.to_be_bytes());
        out.extend_from_slice(self.data);
        out.resize(total, 0);
        Ok(out)
    }
}

/// What a received datagram is, judged by its first bytes (RFC 7983).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram {
    /// A STUN message: top two bits zero and the magic cookie in place.
    Stun,
    /// TURN ChannelData: first byte 0x40–0x7F.
    ChannelData,
    /// Anything else (DTLS, RTP, noise): not for the TURN server.
    Other,
}

/// Classifies a datagram without decoding it.
#[must_use]
pub fn classify(bytes: &[u8]) -> Datagram {
    match bytes {
        [b0, _, _, _, c0, c1, c2, c3, ..]
            if b0 & 0xC0 == 0
                && bytes.len() >= HEADER_LEN
                && u32::from_be_bytes([*c0, *c1, *c2, *c3]) == MAGIC_COOKIE =>
        {
            Datagram::Stun
        }
        [0x40..=0x7F, _, _, _, ..] => Datagram::ChannelData,
        _ => Datagram::Other,
    }
}

/// How many bytes the next STUN or ChannelData frame at the start of a
/// stream takes, padding included; `Ok(None)` until 4 bytes have arrived.
///
/// # Errors
///
/// [`Error::NotStun`] when the stream holds neither (the connection should be
/// closed: framing is lost), [`Error::UnalignedLength`] for a STUN length
/// that is not a multiple of 4.
pub fn frame_len(stream: &[u8]) -> Result<Option<usize>, Error> {
    let Some(&[b0, _, l0, l1]) = stream.get(..4) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    match b0 {
        0x00..=0x3F => {
            if !len.is_multiple_of(4) {
                return Err(Error::UnalignedLength(len));
            }
            Ok(Some(HEADER_LEN + len))
        }
        0x40..=0x7F => Ok(Some(CHANNEL_HEADER_LEN + len.next_multiple_of(4))),
        _ => Err(Error::NotStun),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_and_without_padding() {
        let msg = ChannelData {
            channel: 0x4001,
            data: b"hello",
        };
        let plain = msg.encode(false).unwrap();
        assert_eq!(plain, b"\x40\x01\x00\x05hello");
        assert_eq!(ChannelData::decode(&plain), Ok(msg));
        let padded = msg.encode(true).unwrap();
        assert_eq!(padded.len(), 12);
        assert_eq!(ChannelData::decode(&padded), Ok(msg));
        assert_eq!(frame_len(&padded), Ok(Some(12)));
    }

    #[test]
    fn rejects_bad_channels_and_lengths() {
        assert_eq!(
            ChannelData {
                channel: 0x3FFF,
                data: b""
            }
            .encode(false),
            Err(Error::BadChannel(0x3FFF))
        );
        assert_eq!(
            ChannelData::decode(b"\x80\x00\x00\x00"),
            Err(Error::BadChannel(0x8000))
        );
        assert_eq!(
            ChannelData::decode(b"\x40\x00\x00"),
            Err(Error::Truncated { len: 3, need: 4 })
        );
        assert_eq!(
            ChannelData::decode(b"\x40\x00\x00\x05abc"),
            Err(Error::Truncated { len: 7, need: 9 })
        );
        assert_eq!(
            ChannelData::decode(b"\x40\x00\x00\x01abcdefgh"),
            Err(Error::LengthMismatch { header: 1, actual: 8 })
        );
        let big = vec![0; 0x1_0000];
        assert!(matches!(
            ChannelData {
                channel: 0x4000,
                data: &big
            }
            .encode(true),
            Err(Error::ValueTooLong { .. })
        ));
    }

    #[test]
    fn classifies_by_first_bytes() {
        let mut stun = vec![0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42];
        stun.extend([0; 12]);
        assert_eq!(classify(&stun), Datagram::Stun);
        assert_eq!(classify(&stun[..19]), Datagram::Other);
        stun[4] = 0;
        assert_eq!(classify(&stun), Datagram::Other);
        assert_eq!(classify(b"\x40\x00\x00\x00"), Datagram::ChannelData);
        assert_eq!(classify(b"\x7f\xff\x00\x00"), Datagram::ChannelData);
        assert_eq!(classify(b"\x80\x00\x00\x00"), Datagram::Other);
        assert_eq!(classify(b"\x16\xfe\xfd\x00"), Datagram::Other);
        assert_eq!(classify(b""), Datagram::Other);
    }

    #[test]
    fn frames_a_stream() {
        assert_eq!(frame_len(b"\x00\x01\x00"), Ok(None));
        assert_eq!(frame_len(b"\x00\x01\x00\x08"), Ok(Some(28)));
        assert_eq!(frame_len(b"\x00\x01\x00\x06"), Err(Error::UnalignedLength(6)));
        assert_eq!(frame_len(b"\x40\x01\x00\x05"), Ok(Some(12)));
        assert_eq!(frame_len(b"\xc0\x01\x00\x05"), Err(Error::NotStun));
    }
}
