//! Where a relay's live counters come from, and what they say.
//!
//! Each relay kind exposes its allocation or session count differently; a
//! [`Source`] names the interface and its address, and one pure parser per
//! interface turns its reply text into the one [`Stats`] type. The parsers
//! fail closed: any line they do not understand is an error that quotes it,
//! because a drain gate must never proceed on a misread count. Reading the
//! replies (UDP, telnet, HTTP, ssh) is I/O and lives with the caller.

mod allocations;
mod coturn;
mod error;
mod prometheus;
mod rtpengine;
mod turnstats;

use std::fmt;
use std::time::SystemTime;

pub use allocations::{Allocation, parse_allocations};
pub use coturn::parse_coturn_ps;
pub use error::ParseError;
pub use prometheus::parse_prometheus;
pub use rtpengine::parse_rtpengine_numsessions;
pub use turnstats::{
    Collector, MAX_REPLY_LEN, parse_drain_reply, parse_turnstats, parse_turnstats_datagrams,
};

/// A relay's stats interface.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "via", rename_all = "kebab-case")]
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
        self.kind().name()
    }

    /// Which kind of interface this is, without its address.
    #[must_use]
    pub fn kind(&self) -> SourceKind {
        match self {
            Source::Turnstats { .. } => SourceKind::Turnstats,
            Source::CoturnCli { .. } => SourceKind::CoturnCli,
            Source::Prometheus { .. } => SourceKind::Prometheus,
            Source::RtpengineCtl { .. } => SourceKind::RtpengineCtl,
        }
    }
}

/// The kind of a stats interface: which parser a reply needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SourceKind {
    /// restund's (and relayd's) `turnstats` reply.
    Turnstats,
    /// coturn's admin CLI `ps` output.
    CoturnCli,
    /// coturn's Prometheus text exposition.
    Prometheus,
    /// `rtpengine-ctl list numsessions` output.
    RtpengineCtl,
}

impl SourceKind {
    /// The short name used in inventories (`stats.via`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Turnstats => "turnstats",
            SourceKind::CoturnCli => "coturn-cli",
            SourceKind::Prometheus => "prometheus",
            SourceKind::RtpengineCtl => "rtpengine-ctl",
        }
    }

    /// What a drain read through this interface counts ([`Stats::to_drain`]):
    /// rtpengine's own calls, else allocations.
    #[must_use]
    pub fn drains(self) -> &'static str {
        match self {
            SourceKind::RtpengineCtl => "own calls",
            _ => "allocations",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One reading of a relay's counters.
///
/// `allocations` is what a drain waits on: allocations for restund, relayd
/// and coturn's Prometheus gauge; sessions, the nearest count they offer, for
/// coturn's CLI and rtpengine. The other counters are `None` when the
/// interface does not report them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Which interface the reading came from.
    pub source: SourceKind,
    /// Allocations (or sessions, see above) open now.
    pub allocations: u64,
    /// Allocations made since the relay started.
    pub total: Option<u64>,
    /// Bytes relayed towards clients and peers.
    pub bytes_tx: Option<u64>,
    /// Bytes received from clients and peers.
    pub bytes_rx: Option<u64>,
    /// Bytes relayed both ways.
    pub bytes_total: Option<u64>,
    /// Channels bound now.
    pub channels: Option<u64>,
    /// Whether the relay's own drain mode is on.
    pub draining: Option<bool>,
    /// rtpengine: the calls it owns, and those it holds for a peer (learnt
    /// from the peer's Redis database); `allocations` is their sum.
    pub sessions: Option<Sessions>,
    /// When the reply was read, as the caller's clock said.
    pub read_at: SystemTime,
}

/// rtpengine's sessions, by whose they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Sessions {
    pub own: u64,
    pub foreign: u64,
}

impl Stats {
    /// What a drain waits on: rtpengine's own calls (those it holds for a
    /// peer are the peer's to end), else `allocations`.
    #[must_use]
    pub fn to_drain(&self) -> u64 {
        self.sessions.map_or(self.allocations, |s| s.own)
    }

    /// A reading with only the current count known.
    #[must_use]
    pub fn new(source: SourceKind, allocations: u64, read_at: SystemTime) -> Stats {
        Stats {
            source,
            allocations,
            total: None,
            bytes_tx: None,
            bytes_rx: None,
            bytes_total: None,
            channels: None,
            draining: None,
            sessions: None,
            read_at,
        }
    }
}

/// Parses a reply from `source` with the parser its kind needs; the reading
/// is stamped `read_at`.
///
/// # Errors
///
/// The [`ParseError`] of that parser.
pub fn parse_at(source: &Source, text: &str, read_at: SystemTime) -> Result<Stats, ParseError> {
    match source.kind() {
        SourceKind::Turnstats => parse_turnstats(text, read_at),
        SourceKind::CoturnCli => parse_coturn_ps(text, read_at),
        SourceKind::Prometheus => parse_prometheus(text, read_at),
        SourceKind::RtpengineCtl => parse_rtpengine_numsessions(text, read_at),
    }
}

/// [`parse_at`], stamped with the system clock now: for a caller that parses
/// a reply as soon as it has read it.
///
/// # Errors
///
/// The [`ParseError`] of the parser for `source`.
pub fn parse(source: &Source, text: &str) -> Result<Stats, ParseError> {
    parse_at(source, text, SystemTime::now())
}

/// Parses a whole decimal number, refusing signs, spaces and overflow.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Splits reply text into lines, dropping a `\r` before each `\n`.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_name_their_sources() {
        let s = Source::Turnstats {
            addr: "127.0.0.1:33000".into(),
        };
        assert_eq!(s.kind(), SourceKind::Turnstats);
        assert_eq!(s.via(), "turnstats");
        assert_eq!(Source::RtpengineCtl { command: vec![] }.via(), "rtpengine-ctl");
        assert_eq!(SourceKind::CoturnCli.to_string(), "coturn-cli");
    }

    #[test]
    fn parse_picks_the_parser_for_the_source() {
        let at = SystemTime::UNIX_EPOCH;
        let turnstats = Source::Turnstats {
            addr: "127.0.0.1:33000".into(),
        };
        assert_eq!(parse_at(&turnstats, "allocs_cur 2\n", at).unwrap().allocations, 2);
        let rtpengine = Source::RtpengineCtl {
            command: vec!["rtpengine-ctl".into()],
        };
        let s = parse(&rtpengine, "Current sessions total: 5\n").unwrap();
        assert_eq!((s.source, s.allocations), (SourceKind::RtpengineCtl, 5));
        let prometheus = Source::Prometheus {
            url: "http://127.0.0.1:9641/metrics".into(),
        };
        assert!(matches!(
            parse(&prometheus, "allocs_cur 2\n"),
            Err(ParseError::Missing { .. })
        ));
        let coturn = Source::CoturnCli {
            addr: "127.0.0.1:5766".into(),
        };
        assert!(matches!(
            parse(&coturn, "allocs_cur 2\n"),
            Err(ParseError::UnknownLine { .. })
        ));
    }

    #[test]
    fn numbers_are_plain_decimals() {
        assert_eq!(number("0"), Some(0));
        assert_eq!(number("18446744073709551615"), Some(u64::MAX));
        for bad in ["", "+1", "-1", " 1", "1 ", "1.0", "18446744073709551616", "0x10"] {
            assert_eq!(number(bad), None, "{bad:?}");
        }
    }
}
