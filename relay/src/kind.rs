//! Relay kinds and what each offers by default.
//!
//! These defaults are what an operator gets when the inventory says only
//! `kind: restund`; every one of them can be overridden per node.

use std::fmt;
use std::str::FromStr;

use crate::stats::Source;

/// A relay implementation opsctl knows how to operate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Wire's restund TURN server.
    Restund,
    /// coturn TURN server.
    Coturn,
    /// Sipwise rtpengine media relay.
    Rtpengine,
    /// This crate's own STUN/TURN relay.
    Relayd,
}

/// How a relay expects its TLS certificate on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertLayout {
    /// One file: the whole chain followed by the private key (restund, relayd).
    Bundle {
        /// Path of the bundle on the node.
        path: String,
    },
    /// Separate certificate-chain and private-key files (coturn's `cert` and `pkey`).
    Split {
        /// Path of the certificate chain on the node.
        cert: String,
        /// Path of the private key on the node.
        key: String,
    },
}

/// What the relay's own drain mode does, if it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayDrain {
    /// No drain mode the relay offers.
    Unsupported,
    /// restund's drain module: new allocations refused, and every refresh with a
    /// non-zero lifetime too, so calls lose their allocation within its lifetime.
    RefusesRefresh,
    /// New allocations refused while existing ones keep refreshing (relayd).
    KeepsExisting,
    /// coturn's, since [`COTURN_DRAIN_SINCE`]: SIGUSR1 (or its admin CLI's
    /// `drain`) refuses new allocations while existing ones keep
    /// refreshing, and the process exits once none are left. It cannot be
    /// switched off: it ends with the process.
    EndsInExit,
}

/// The first coturn with a drain mode. An older coturn has no handler for
/// SIGUSR1, so the signal ends it at once, dropping every allocation.
pub const COTURN_DRAIN_SINCE: &str = "4.6.3";

/// Whether the version `text` reports (`4.6.3`, `Coturn-4.6.3 'Gorst'`,
/// `4.5.0.8`) is at least `min`; `None` when it holds no version number.
#[must_use]
pub fn version_at_least(text: &str, min: &str) -> Option<bool> {
    fn numbers(s: &str) -> Option<Vec<u64>> {
        let start = s.find(|c: char| c.is_ascii_digit())?;
        let rest = &s[start..];
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let parts: Option<Vec<u64>> = rest[..end]
            .trim_end_matches('.')
            .split('.')
            .map(|p| p.parse().ok())
            .collect();
        parts.filter(|p| p.len() >= 2)
    }
    let (have, want) = (numbers(text)?, numbers(min)?);
    Some(have >= want)
}

impl Kind {
    /// Every kind, in the order they are documented.
    pub const ALL: [Kind; 4] = [Kind::Restund, Kind::Coturn, Kind::Rtpengine, Kind::Relayd];

    /// The name used in inventories and output.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Kind::Restund => "restund",
            Kind::Coturn => "coturn",
            Kind::Rtpengine => "rtpengine",
            Kind::Relayd => "relayd",
        }
    }

    /// The systemd unit a distribution package installs.
    #[must_use]
    pub fn default_unit(self) -> &'static str {
        match self {
            Kind::Restund => "restund",
            Kind::Coturn => "coturn",
            // Debian's rtpengine-daemon package; `rtpengine.service` is an alias.
            Kind::Rtpengine => "rtpengine-daemon",
            Kind::Relayd => "relayd",
        }
    }

    /// Where the relay's stats are read by default.
    #[must_use]
    pub fn default_stats(self) -> Source {
        match self {
            Kind::Restund | Kind::Relayd => Source::Turnstats {
                addr: "127.0.0.1:33000".into(),
            },
            Kind::Coturn => Source::CoturnCli {
                addr: "127.0.0.1:5766".into(),
            },
            Kind::Rtpengine => Source::RtpengineCtl {
                command: vec!["rtpengine-ctl".into(), "list".into(), "numsessions".into()],
            },
        }
    }

    /// The certificate layout when the inventory names none, if the kind has a
    /// conventional one. coturn's paths vary by installation and must be given.
    #[must_use]
    pub fn default_cert(self) -> Option<CertLayout> {
        match self {
            Kind::Restund => Some(CertLayout::Bundle {
                path: "/etc/restund/restund.pem".into(),
            }),
            Kind::Relayd => Some(CertLayout::Bundle {
                path: "/etc/relayd/relayd.pem".into(),
            }),
            Kind::Coturn | Kind::Rtpengine => None,
        }
    }

    /// Whether the relay terminates TLS at all (rtpengine relays media only).
    #[must_use]
    pub fn serves_tls(self) -> bool {
        !matches!(self, Kind::Rtpengine)
    }

    /// What the relay's own drain mode costs, when opsctl is asked to use it.
    #[must_use]
    pub fn relay_drain(self) -> RelayDrain {
        match self {
            Kind::Restund => RelayDrain::RefusesRefresh,
            Kind::Relayd => RelayDrain::KeepsExisting,
            // Only from 4.6.3 on (Debian 12 ships 4.6.1): the version the
            // running coturn reports decides.
            Kind::Coturn => RelayDrain::EndsInExit,
            Kind::Rtpengine => RelayDrain::Unsupported,
        }
    }

    /// The signal that starts the relay's drain, where it is one
    /// (coturn's SIGUSR1).
    #[must_use]
    pub fn drain_signal(self) -> Option<&'static str> {
        match self {
            Kind::Coturn => Some("USR1"),
            Kind::Restund | Kind::Rtpengine | Kind::Relayd => None,
        }
    }

    /// The signal that makes the relay load a new certificate without a
    /// restart, keeping every allocation: relayd's SIGHUP (or its status
    /// command `reload_cert`), which refuses a bad new file, and coturn's
    /// SIGUSR2 (since 4.5.0.8). restund has none: SIGHUP ends it.
    #[must_use]
    pub fn cert_reload_signal(self) -> Option<&'static str> {
        match self {
            Kind::Relayd => Some("HUP"),
            Kind::Coturn => Some("USR2"),
            Kind::Restund | Kind::Rtpengine => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| crate::Error::UnknownKind(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(k.name().parse::<Kind>().unwrap(), k);
        }
        assert!("turnserver".parse::<Kind>().is_err());
    }

    #[test]
    fn only_restund_and_relayd_have_a_default_bundle() {
        assert!(Kind::Restund.default_cert().is_some());
        assert!(Kind::Relayd.default_cert().is_some());
        assert_eq!(Kind::Coturn.default_cert(), None);
        assert!(!Kind::Rtpengine.serves_tls());
    }

    #[test]
    fn versions_compare_by_their_numbers() {
        assert_eq!(version_at_least("4.6.1", COTURN_DRAIN_SINCE), Some(false));
        assert_eq!(version_at_least("4.6.3\n", COTURN_DRAIN_SINCE), Some(true));
        assert_eq!(version_at_least("4.6.10", COTURN_DRAIN_SINCE), Some(true));
        assert_eq!(version_at_least("4.10.0", COTURN_DRAIN_SINCE), Some(true));
        assert_eq!(
            version_at_least("Coturn-4.7.0 'Gorst'", COTURN_DRAIN_SINCE),
            Some(true)
        );
        assert_eq!(version_at_least("4.5.0.8", COTURN_DRAIN_SINCE), Some(false));
        assert_eq!(version_at_least("5", COTURN_DRAIN_SINCE), None);
        assert_eq!(version_at_least("unknown", COTURN_DRAIN_SINCE), None);
    }
}
