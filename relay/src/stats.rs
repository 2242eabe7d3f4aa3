//! Where a relay's live counters come from.
//!
//! Each relay kind exposes its allocation or session count differently; a
//! [`Source`] names the interface and its address. Reading and parsing replies
//! is added beside it; describing the source is all the planner needs.

use std::fmt;

/// A relay's stats interface.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// restund's (and relayd's) `turnstats` command on the UDP status port.
    Turnstats {
        /// `host:port` of the status port, as seen from the node.
        addr: String,
    },
    /// coturn's telnet admin CLI; `ps` ends with `Total sessions: N`.
    CoturnCli {
        /// `host:port` of the CLI, as seen from the node.
        addr: String,
    },
    /// A Prometheus text endpoint (coturn builds with the exporter).
    Prometheus {
        /// The URL of the metrics page, as seen from the node.
        url: String,
    },
    /// `rtpengine-ctl list numsessions` run on the node.
    RtpengineCtl {
        /// The command and its arguments.
        command: Vec<String>,
    },
}

impl Source {
    /// The short name used in inventories (`stats.via`).
    #[must_use]
    pub fn via(&self) -> &'static str {
        match self {
            Source::Turnstats { .. } => "turnstats",
            Source::CoturnCli { .. } => "coturn-cli",
            Source::Prometheus { .. } => "prometheus",
            Source::RtpengineCtl { .. } => "rtpengine-ctl",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Turnstats { addr } => write!(f, "turnstats on udp {addr}"),
            Source::CoturnCli { addr } => write!(f, "coturn admin CLI on tcp {addr}"),
            Source::Prometheus { url } => write!(f, "prometheus metrics at {url}"),
            Source::RtpengineCtl { command } => write!(f, "`{}`", command.join(" ")),
        }
    }
}
