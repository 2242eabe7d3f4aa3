//! A sans-IO TURN server core (RFC 5766/8656 over UDP and TCP transports).
//!
//! [`Server`] holds allocations, permissions, channels, credentials, nonces
//! and the drain switch. It is driven by `(now, from, bytes)`: the I/O layer
//! hands it what arrived on a TURN listener ([`Server::handle_client`]) or on
//! an allocation's relayed socket ([`Server::handle_peer`]), and collects
//! what to send ([`Server::poll_transmit`]), what to do with sockets
//! ([`Server::poll_event`]) and when to wake it next
//! ([`Server::poll_timeout`], [`Server::handle_timeout`]). It reads no clock
//! and owns no socket, so tests drive it with virtual time.

mod allocation;
mod auth;
mod config;
mod core;
mod counters;
mod nonce;
mod request;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;

pub use auth::{
    CredentialError, Credentials, Scheme, base64, coturn_password, coturn_username, wire_password,
    wire_username,
};
pub use config::{
    CHANNEL_LIFETIME, Config, DEFAULT_LIFETIME, MAX_LIFETIME, NONCE_LIFETIME, PERMISSION_LIFETIME,
};
pub use core::{AllocationInfo, Server};
pub use counters::Counters;

/// REQUESTED-ADDRESS-FAMILY (RFC 6156/8656); the codec keeps it raw.
pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;

/// The transport a client reached the server over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP: one message per datagram.
    Udp,
    /// TCP: messages framed on a stream; ChannelData padded to 4 bytes.
    Tcp,
    /// TLS over TCP (`turns:`): framed as over TCP.
    Tls,
}

impl Transport {
    /// Whether messages are framed on a stream (TCP or TLS) rather than
    /// sent one per datagram.
    #[must_use]
    pub fn is_stream(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        })
    }
}

/// The 5-tuple that names an allocation: client address, server address and
/// transport (the protocol is implied by the transport).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    /// The client's address as the server sees it.
    pub client: SocketAddr,
    /// The server's listening address the client reached.
    pub server: SocketAddr,
    /// UDP, TCP or TLS.
    pub transport: Transport,
}

impl fmt::Display for FiveTuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.transport, self.client, self.server)
    }
}

/// An address family for a relayed address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4, the default when a client does not ask (RFC 6156).
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of an address.
    #[must_use]
    pub fn of(addr: SocketAddr) -> Family {
        if addr.is_ipv4() { Family::V4 } else { Family::V6 }
    }
}

/// Names an allocation from its Allocate request until it is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AllocationId(pub u64);

/// Something to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// To a client, over the listener (UDP) or connection (TCP) of its 5-tuple.
    ToClient {
        /// Whose listener or connection.
        tuple: FiveTuple,
        /// One whole STUN or ChannelData message.
        bytes: Vec<u8>,
    },
    /// To a peer, from an allocation's relayed socket.
    ToPeer {
        /// The relayed address to send from.
        relayed: SocketAddr,
        /// The peer.
        peer: SocketAddr,
        /// The application data.
        bytes: Vec<u8>,
    },
}

/// Something the I/O layer must do with sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Bind a UDP socket for a new allocation, then report the address (or
    /// why not) with [`Server::relay_bound`].
    BindRelay {
        /// The allocation waiting for it.
        id: AllocationId,
        /// The family the client asked for.
        family: Family,
        /// Which port (EVEN-PORT, RESERVATION-TOKEN).
        port: Port,
    },
    /// A port reserved under `token` was not claimed in time: close it.
    Unreserve {
        /// The reservation.
        token: [u8; 8],
    },
    /// An allocation ended (released, expired or its connection closed):
    /// close its relayed socket.
    Released {
        /// The allocation.
        id: AllocationId,
        /// Its relayed address.
        relayed: SocketAddr,
    },
}

/// Which relayed port an Allocate asks for (RFC 8656 §7.2): an RTP and
/// RTCP pair is an even port and the one above it, the second claimed by a
/// later Allocate with the token the first was answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// Any port.
    Any,
    /// An even port (EVEN-PORT, R bit clear).
    Even,
    /// An even port, and the next one bound too and kept under `token`
    /// for a later Allocate (EVEN-PORT, R bit set).
    EvenReserving {
        /// The RESERVATION-TOKEN the client is answered with.
        token: [u8; 8],
    },
    /// The port kept under `token` (RESERVATION-TOKEN).
    Reserved {
        /// The token the reserving Allocate was answered with.
        token: [u8; 8],
    },
}

/// Why the I/O layer could not give an allocation a relayed socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BindFailure {
    /// The server has no relay address of that family: 440.
    FamilyUnsupported,
    /// No port could be bound: 508.
    NoCapacity,
}
