//! What can go wrong talking to a relay; every variant names the server.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::stun::{self, Method};

/// Errors from the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A socket operation failed.
    #[error("cannot {what} {server}")]
    Io {
        /// What was being done (`connect to`, `send to`, ...).
        what: &'static str,
        /// The server.
        server: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// No answer in time.
    #[error("no answer to {method} from {server} within {after:?}")]
    Timeout {
        /// The request, or `Data` for [`Client::recv`](super::Client::recv).
        method: Method,
        /// The server.
        server: SocketAddr,
        /// How long the client waited.
        after: Duration,
    },
    /// The server answered with an error.
    #[error("{server} refused {method}: {code} {reason}")]
    Rejected {
        /// The request.
        method: Method,
        /// The server.
        server: SocketAddr,
        /// The ERROR-CODE number.
        code: u16,
        /// The reason phrase.
        reason: String,
        /// ALTERNATE-SERVER, sent with 300 Try Alternate (a draining relay).
        alternate: Option<SocketAddr>,
    },
    /// A success response without an attribute it must carry.
    #[error("{server} answered {method} without {attribute}")]
    MissingAttribute {
        /// The request.
        method: Method,
        /// The server.
        server: SocketAddr,
        /// The attribute's name.
        attribute: &'static str,
    },
    /// A response whose MESSAGE-INTEGRITY does not match the credentials.
    #[error("{server} answered {method} with a MESSAGE-INTEGRITY that does not match the credentials")]
    BadIntegrity {
        /// The request.
        method: Method,
        /// The server.
        server: SocketAddr,
    },
    /// A TURN request before [`Client::allocate`](super::Client::allocate).
    #[error("{what} needs an allocation; call `allocate` first")]
    NoAllocation {
        /// What was asked.
        what: &'static str,
    },
    /// No TCP connection, or no finished TLS handshake, in time.
    #[error("cannot {what} {server}: no answer within {after:?}")]
    Unanswered {
        /// What was being done (`connect to`, `finish a TLS handshake with`).
        what: &'static str,
        /// The server.
        server: SocketAddr,
        /// How long the client waited.
        after: Duration,
    },
    /// The TCP connection closed.
    #[error("the connection to {server} closed")]
    Closed {
        /// The server.
        server: SocketAddr,
    },
    /// A request could not be encoded (an over-long value).
    #[error("cannot encode the request")]
    Encode(#[source] stun::Error),
}
