//! The allocations a relay lists one by one: restund's (and relayd's) `turn`
//! status command, and the session blocks of coturn's `ps`. A drain whose
//! count stops falling uses them to tell calls from clients that vanished
//! without deallocating: those stay counted until their lifetime ends.

use std::time::Duration;

use super::error::quote;
use super::{ParseError, SourceKind, lines, number};

/// One allocation as the relay lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// Time left before the allocation expires unless it is refreshed.
    pub expires_in: Duration,
    /// Whether it carries no traffic now; `None` where the relay does not say.
    pub idle: Option<bool>,
}

/// Parses a listing of allocations from an interface of `kind`.
///
/// # Errors
///
/// [`ParseError`] for a listing it cannot read, quoting the line, or for an
/// interface that lists no allocations (rtpengine, Prometheus).
pub fn parse_allocations(kind: SourceKind, text: &str) -> Result<Vec<Allocation>, ParseError> {
    match kind {
        SourceKind::Turnstats => turn_listing(text),
        SourceKind::CoturnCli => coturn_sessions(text),
        SourceKind::Prometheus | SourceKind::RtpengineCtl => Err(ParseError::Empty {
            reply: "a listing of allocations",
        }),
    }
}

const TURN: &str = "restund `turn`";

/// `TURN allocations: N`, then a line `- tuple - relayed "user" Ns (...)`
/// for each.
fn turn_listing(text: &str) -> Result<Vec<Allocation>, ParseError> {
    let mut out = Vec::new();
    let mut count = None;
    for line in lines(text).filter(|l| !l.trim().is_empty()) {
        let unknown = || ParseError::UnknownLine {
            reply: TURN,
            line: quote(line),
        };
        if let Some(n) = line.strip_prefix("TURN allocations: ") {
            count = Some(number(n.trim()).ok_or_else(unknown)?);
        } else if line.starts_with("- ") {
            // The lifetime follows the quoted user name: `"user" 598s (`.
            let after_user = line.rsplit_once("\" ").map(|(_, r)| r).ok_or_else(unknown)?;
            let secs = after_user
                .split_once("s")
                .and_then(|(n, _)| number(n))
                .ok_or_else(unknown)?;
            out.push(Allocation {
                expires_in: Duration::from_secs(secs),
                idle: None,
            });
        } else {
            return Err(unknown());
        }
    }
    match count {
        Some(n) if n == out.len() as u64 => Ok(out),
        Some(_) | None => Err(ParseError::Empty { reply: TURN }),
    }
}

const PS: &str = "coturn `ps`";

/// Each session's `expiring in N secs` and its `rate: ..., total=T` line.
fn coturn_sessions(text: &str) -> Result<Vec<Allocation>, ParseError> {
    let mut out: Vec<Allocation> = Vec::new();
    for line in lines(text) {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("expiring in ") {
            let secs =
                rest.strip_suffix(" secs")
                    .and_then(number)
                    .ok_or_else(|| ParseError::UnknownLine {
                        reply: PS,
                        line: quote(line),
                    })?;
            out.push(Allocation {
                expires_in: Duration::from_secs(secs),
                idle: None,
            });
        } else if let Some(rest) = t.strip_prefix("rate: ") {
            let total = rest
                .split(", ")
                .find_map(|kv| kv.strip_prefix("total="))
                .and_then(|v| v.split(' ').next())
                .and_then(number);
            if let (Some(total), Some(last)) = (total, out.last_mut()) {
                last.idle = Some(total == 0);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restund_s_turn_listing_gives_each_lifetime() {
        let text = "TURN allocations: 2\n- 127.0.0.1:5000 - 127.0.0.1:49152 \"1700000000:alice\" 598s (perms 1, chans 0)\n- 127.0.0.1:5001 - 127.0.0.1:49153 \"bob\" 12s (perms 0, chans 0)\n";
        let a = parse_allocations(SourceKind::Turnstats, text).unwrap();
        assert_eq!(
            a.iter().map(|x| x.expires_in.as_secs()).collect::<Vec<_>>(),
            [598, 12]
        );
        assert!(a.iter().all(|x| x.idle.is_none()));
        assert_eq!(
            parse_allocations(SourceKind::Turnstats, "TURN allocations: 0\n").unwrap(),
            []
        );
        // A count that disagrees with the lines, or a line it does not know, is an error.
        assert!(parse_allocations(SourceKind::Turnstats, "TURN allocations: 3\n").is_err());
        assert!(parse_allocations(SourceKind::Turnstats, "TURN allocations: 0\nweird\n").is_err());
    }

    #[test]
    fn coturn_sessions_give_lifetime_and_traffic() {
        let text = "\n    1) id=1, user <alice>:\n      expiring in 769 secs\n      usage: rp=3, rb=284, sp=2, sb=228\n       rate: r=0, s=0, total=0 (bytes per sec)\n\n    2) id=2, user <alice>:\n      expiring in 12 secs\n       rate: r=100, s=90, total=190 (bytes per sec)\n\n  Total sessions: 2\n";
        let a = parse_allocations(SourceKind::CoturnCli, text).unwrap();
        assert_eq!(
            a,
            [
                Allocation {
                    expires_in: Duration::from_secs(769),
                    idle: Some(true)
                },
                Allocation {
                    expires_in: Duration::from_secs(12),
                    idle: Some(false)
                },
            ]
        );
    }
}
