//! Encoding: a builder that writes attributes as they are added, then seals
//! the message with MESSAGE-INTEGRITY and FINGERPRINT.
//!
//! Both checksums cover the message as it stands before them, with the
//! header's length field already counting them (RFC 8489 §14.5, §14.7); the
//! builder patches the length before each one so callers cannot get it wrong.

use super::Error;
use super::attr::{Attribute, kind};
use super::header::{self, Class, HEADER_LEN, MAGIC_COOKIE, MAX_MESSAGE_LEN, Method, TransactionId};
use super::integrity::{self, Key};

/// Builds one STUN message.
///
/// ```
/// use relay::stun::{Attribute, Builder, Class, Key, Method, TransactionId};
///
/// let mut b = Builder::new(Method::BINDING, Class::Request, TransactionId([1; 12]));
/// b.add(&Attribute::Software("opsctl".into()))?;
/// b.message_integrity(&Key::short_term("secret"))?;
/// let bytes = b.fingerprint()?;
/// assert!(relay::stun::decode(&bytes)?.verify_integrity(&Key::short_term("secret")).is_ok());
/// # Ok::<(), relay::stun::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    buf: Vec<u8>,
    transaction_id: TransactionId,
    sealed: bool,
}

impl Builder {
    /// Starts a message: the header, with no attributes yet.
    #[must_use]
    pub fn new(method: Method, class: Class, transaction_id: TransactionId) -> Builder {
        let mut buf = Vec::with_capacity(128);
        buf.extend(header::message_type(method, class).to_be_bytes());
        buf.extend([0, 0]);
        buf.extend(MAGIC_COOKIE.to_be_bytes());
        buf.extend(transaction_id.as_bytes());
        Builder {
            buf,
            transaction_id,
            sealed: false,
        }
    }

    /// Appends an attribute, padded with zeros to 4 bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Computed`] for MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and
    /// FINGERPRINT (use the builder's methods), [`Error::AfterIntegrity`]
    /// after [`Builder::message_integrity`], and the value errors of
    /// [`Attribute`] encoding or [`Error::ValueTooLong`] past the message size.
    pub fn add(&mut self, attribute: &Attribute) -> Result<&mut Builder, Error> {
        let kind = attribute.kind();
        if matches!(
            kind,
            kind::MESSAGE_INTEGRITY | kind::MESSAGE_INTEGRITY_SHA256 | kind::FINGERPRINT
        ) {
            return Err(Error::Computed { kind });
        }
        if self.sealed {
            return Err(Error::AfterIntegrity { kind });
        }
        let mut value = Vec::new();
        attribute.encode_value(&self.transaction_id, &mut value)?;
        self.push(kind, &value)?;
        Ok(self)
    }

    /// Appends MESSAGE-INTEGRITY computed under `key`. Nothing but
    /// FINGERPRINT can follow it.
    ///
    /// # Errors
    ///
    /// [`Error::AfterIntegrity`] if the message already has one,
    /// [`Error::ValueTooLong`] if it does not fit.
    pub fn message_integrity(&mut self, key: &Key) -> Result<&mut Builder, Error> {
        if self.sealed {
            return Err(Error::AfterIntegrity {
                kind: kind::MESSAGE_INTEGRITY,
            });
        }
        self.set_length(self.buf.len() + 24)?;
        let mac = key.sign(&self.buf);
        self.push(kind::MESSAGE_INTEGRITY, &mac)?;
        self.sealed = true;
        Ok(self)
    }

    /// Appends FINGERPRINT and returns the finished message.
    ///
    /// # Errors
    ///
    /// [`Error::ValueTooLong`] if it does not fit.
    pub fn fingerprint(mut self) -> Result<Vec<u8>, Error> {
        self.set_length(self.buf.len() + 8)?;
        let crc = integrity::fingerprint(&self.buf);
        self.push(kind::FINGERPRINT, &crc.to_be_bytes())?;
        Ok(self.buf)
    }

    /// The finished message, without FINGERPRINT.
    #[must_use]
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    fn push(&mut self, kind: u16, value: &[u8]) -> Result<(), Error> {
        let padded = value.len().next_multiple_of(4);
        let too_long = || Error::ValueTooLong {
            kind,
            len: value.len(),
            max: MAX_MESSAGE_LEN,
        };
        let vlen = u16::try_from(value.len()).map_err(|_| too_long())?;
        self.set_length(self.buf.len() + 4 + padded)
            .map_err(|_| too_long())?;
        self.buf.extend(kind.to_be_bytes());
        self.buf.extend(vlen.to_be_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(self.buf.len() + padded - value.len(), 0);
        Ok(())
    }

    /// Sets the header's length so the message ends at `end`.
    fn set_length(&mut self, end: usize) -> Result<(), Error> {
        let len = end - HEADER_LEN;
        let field = u16::try_from(len)
            .ok()
            .filter(|_| end <= MAX_MESSAGE_LEN)
            .ok_or(Error::TooLong {
                len: end,
                max: MAX_MESSAGE_LEN,
            })?;
        self.buf[2..4].copy_from_slice(&field.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::decode;

    fn builder() -> Builder {
        Builder::new(Method::ALLOCATE, Class::Request, TransactionId([3; 12]))
    }

    #[test]
    fn pads_and_counts_length() {
        let mut b = builder();
        b.add(&Attribute::Username("abcde".into())).unwrap();
        let bytes = b.finish();
        assert_eq!(bytes.len(), 20 + 4 + 8);
        assert_eq!(&bytes[2..4], [0, 12]);
        assert_eq!(&bytes[24..32], b"abcde\0\0\0");
    }

    #[test]
    fn computed_attributes_and_late_ones_are_refused() {
        let mut b = builder();
        assert_eq!(
            b.add(&Attribute::Fingerprint(0)).unwrap_err(),
            Error::Computed { kind: 0x8028 }
        );
        b.message_integrity(&Key::short_term("k")).unwrap();
        assert!(matches!(
            b.add(&Attribute::Lifetime(1)),
            Err(Error::AfterIntegrity { .. })
        ));
        assert!(matches!(
            b.message_integrity(&Key::short_term("k")),
            Err(Error::AfterIntegrity { .. })
        ));
        let msg = decode(&b.fingerprint().unwrap()).unwrap();
        assert!(msg.has_fingerprint());
        assert_eq!(msg.verify_integrity(&Key::short_term("k")), Ok(()));
        assert_eq!(
            msg.verify_integrity(&Key::short_term("K")),
            Err(Error::IntegrityMismatch)
        );
    }

    #[test]
    fn oversized_messages_are_refused() {
        let mut b = builder();
        b.add(&Attribute::Data(vec![0; 60_000])).unwrap();
        assert!(matches!(
            b.add(&Attribute::Data(vec![0; 6_000])),
            Err(Error::ValueTooLong { .. })
        ));
        assert!(matches!(
            b.add(&Attribute::Data(vec![0; 70_000])),
            Err(Error::ValueTooLong { .. })
        ));
        // What did fit is still a valid message.
        assert!(decode(&b.finish()).is_ok());
    }
}
