//! Everything opsctl knows about relays: the kinds it operates (restund, coturn,
//! rtpengine, relayd), what each one offers by default (service unit, stats
//! interface, certificate layout, drain support), how their stats replies are
//! parsed, and relayd itself.
//!
//! relayd is cut by protocol layer: [`stun`] is the codec, [`turn`] the
//! sans-IO TURN server core, [`status`] the restund-compatible status port,
//! [`server`] the thin tokio layer that owns sockets and timers, and
//! [`daemon`] the program (config file and flags) behind the `relayd` binary. [`client`] speaks STUN and
//! TURN to any relay, for health checks and the lab's call simulator.
//! [`ng`] speaks rtpengine's ng control protocol (bencode over UDP), for
//! the lab's calls and checks; [`rtpengine`] reads its CLI's call lists and
//! finds the holes in its Redis redundancy.
//! [`pem`] reads and checks certificate bundles, for relayd's TLS and for
//! opsctl's certificate checks.
//! Parsers, codecs and protocol cores are pure functions of bytes and time;
//! reading sockets is the caller's business.

pub mod client;
pub mod daemon;
pub mod kind;
pub mod metrics;
pub mod ng;
pub mod pem;
mod random;
pub mod rtpengine;
pub mod server;
pub mod stats;
pub mod status;
pub mod stun;
pub mod trust;
pub mod turn;

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
