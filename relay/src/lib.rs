//! Everything opsctl knows about relays: the kinds it operates (restund, coturn,
//! rtpengine, relayd), what each one offers by default (service unit, stats
//! interface, certificate layout, drain support), and how their stats are read.
//!
//! The stats readers, the certificate bundle checks and `relayd` itself grow here;
//! opsctl's inventory and plan only ask this crate what a kind means.

pub mod kind;
pub mod stats;

pub use kind::{CertLayout, Kind, RelayDrain};
pub use stats::Source as StatsSource;

/// Errors from this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A relay kind name that is not one of the known kinds.
    #[error("unknown relay kind `{0}`")]
    UnknownKind(String),
}
