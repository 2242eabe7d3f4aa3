//! Everything opsctl knows about relays: the kinds it operates (restund, coturn,
//! rtpengine, relayd), what each one offers by default (service unit, stats
//! interface, certificate layout, drain support), how their stats replies are
//! parsed, and the STUN codec `relayd` and the health checks speak.
//!
//! The certificate bundle checks and `relayd` itself grow here; opsctl's
//! inventory and plan only ask this crate what a kind means. Parsers and codecs
//! are pure functions of bytes; reading sockets is the caller's business.

pub mod kind;
pub mod stats;
pub mod stun;

pub use kind::{CertLayout, Kind, RelayDrain};
pub use stats::{ParseError as StatsParseError, Source as StatsSource, SourceKind as StatsSourceKind, Stats};

/// Errors from this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A relay kind name that is not one of the known kinds.
    #[error("unknown relay kind `{0}`")]
    UnknownKind(String),
    /// A relay's stats reply that could not be understood.
    #[error("cannot read relay stats")]
    Stats(#[from] stats::ParseError),
    /// A STUN or ChannelData message that could not be decoded or encoded.
    #[error("bad STUN message")]
    Stun(#[from] stun::Error),
}
