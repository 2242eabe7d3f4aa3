//! The fixed 20-byte STUN header: message type (method and class), length,
//! magic cookie and transaction id (RFC 8489 §5).

use std::fmt;

/// The magic cookie every RFC 5389/8489 message carries in bytes 4–7.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;

/// Length of the STUN header in bytes.
pub const HEADER_LEN: usize = 20;

/// The longest message: the header plus the largest 4-aligned length.
pub const MAX_MESSAGE_LEN: usize = HEADER_LEN + 0xFFFC;

/// A STUN method: the 12-bit number shared by a request and its responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Method(u16);

impl Method {
    /// Binding (RFC 8489).
    pub const BINDING: Method = Method(0x001);
    /// Allocate (RFC 8656).
    pub const ALLOCATE: Method = Method(0x003);
    /// Refresh (RFC 8656).
    pub const REFRESH: Method = Method(0x004);
    /// Send, an indication only (RFC 8656).
    pub const SEND: Method = Method(0x006);
    /// Data, an indication only (RFC 8656).
    pub const DATA: Method = Method(0x007);
    /// CreatePermission (RFC 8656).
    pub const CREATE_PERMISSION: Method = Method(0x008);
    /// ChannelBind (RFC 8656).
    pub const CHANNEL_BIND: Method = Method(0x009);

    /// The method with this number, if it fits in 12 bits.
    #[must_use]
    pub const fn new(number: u16) -> Option<Method> {
        if number <= 0x0FFF {
            Some(Method(number))
        } else {
            None
        }
    }

    /// The method's 12-bit number.
    #[must_use]
    pub const fn number(self) -> u16 {
        self.0
    }

    /// The name the RFCs give the method, if it is one this crate knows.
    #[must_use]
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Method::BINDING => "Binding",
            Method::ALLOCATE => "Allocate",
            Method::REFRESH => "Refresh",
            Method::SEND => "Send",
            Method::DATA => "Data",
            Method::CREATE_PERMISSION => "CreatePermission",
            Method::CHANNEL_BIND => "ChannelBind",
            _ => return None,
        })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "method {:#05x}", self.0),
        }
    }
}

/// A STUN message class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// A request, answered by a success or error response.
    Request,
    /// An indication: no response.
    Indication,
    /// A success response.
    Success,
    /// An error response.
    Error,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::Success => 0b10,
            Class::Error => 0b11,
        }
    }

    fn from_bits(bits: u16) -> Class {
        match bits & 0b11 {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::Success,
            _ => Class::Error,
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Class::Request => "request",
            Class::Indication => "indication",
            Class::Success => "success response",
            Class::Error => "error response",
        })
    }
}

/// The 14-bit message type field: the class bits C1 and C0 sit at bits 8 and 4,
/// interleaved with the method's bits (RFC 8489 §5, figure 3).
#[must_use]
pub(crate) fn message_type(method: Method, class: Class) -> u16 {
    let m = method.0;
    let c = class.bits();
    (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 0b01) << 4) | ((c & 0b10) << 7)
}

/// Splits a message type whose two top bits are zero into method and class.
#[must_use]
pub(crate) fn split_type(t: u16) -> (Method, Class) {
    let method = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80);
    let class = ((t >> 4) & 0b01) | ((t >> 7) & 0b10);
    (Method(method), Class::from_bits(class))
}

/// The 96-bit transaction id that pairs a response with its request.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransactionId(pub [u8; 12]);

impl TransactionId {
    /// The id's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 12] {
        &self.0
    }
}

impl fmt::Debug for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransactionId({self})")
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_types_match_the_rfcs() {
        assert_eq!(message_type(Method::BINDING, Class::Request), 0x0001);
        assert_eq!(message_type(Method::BINDING, Class::Success), 0x0101);
        assert_eq!(message_type(Method::BINDING, Class::Error), 0x0111);
        assert_eq!(message_type(Method::ALLOCATE, Class::Error), 0x0113);
        assert_eq!(message_type(Method::SEND, Class::Indication), 0x0016);
        assert_eq!(message_type(Method::DATA, Class::Indication), 0x0017);
    }

    #[test]
    fn every_method_and_class_round_trips() {
        for number in 0..=0x0FFF {
            let method = Method::new(number).unwrap();
            for class in [Class::Request, Class::Indication, Class::Success, Class::Error] {
                let t = message_type(method, class);
                assert_eq!(t & 0xC000, 0);
                assert_eq!(split_type(t), (method, class));
            }
        }
        assert_eq!(Method::new(0x1000), None);
    }

    #[test]
    fn names_show_in_display() {
        assert_eq!(Method::CHANNEL_BIND.to_string(), "ChannelBind");
        assert_eq!(Method::new(0x0FF).unwrap().to_string(), "method 0x0ff");
        assert_eq!(TransactionId([0xab; 12]).to_string(), "ab".repeat(12));
    }
}
