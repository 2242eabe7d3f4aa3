//! `rtpengine-ctl list numsessions` output.
//!
//! Older rtpengine prints three lines (own, foreign, total sessions); newer
//! ones add more `Current ...: N` lines (transcoded media, IPv4/IPv6/mixed
//! sessions). The total is what a drain waits on: foreign sessions are
//! replicas of calls another rtpengine owns, but still media this one relays.

use std::time::SystemTime;

use super::error::quote;
use super::{ParseError, SourceKind, Stats, lines, number};

const NUMSESSIONS: &str = "rtpengine `list numsessions`";

/// Parses `rtpengine-ctl list numsessions`. `Current sessions total: N` is
/// required; other `Current ...: N` lines are accepted and ignored.
///
/// # Errors
///
/// [`ParseError`] for a line that is not `Current ...: N` (quoted), a bad
/// number, or a missing or repeated total.
pub fn parse_rtpengine_numsessions(text: &str, read_at: SystemTime) -> Result<Stats, ParseError> {
    if text.trim().is_empty() {
        return Err(ParseError::Empty { reply: NUMSESSIONS });
    }
    let mut total = None;
    let (mut own, mut foreign) = (None, None);
    for line in lines(text).filter(|l| !l.is_empty()) {
        let (key, value) = line
            .split_once(": ")
            .filter(|(key, _)| key.starts_with("Current "))
            .ok_or_else(|| ParseError::UnknownLine {
                reply: NUMSESSIONS,
                line: quote(line),
            })?;
        let value = number(value).ok_or_else(|| ParseError::BadNumber {
            reply: NUMSESSIONS,
            line: quote(line),
        })?;
        match key {
            "Current sessions own" => own = Some(value),
            "Current sessions foreign" => foreign = Some(value),
            _ => {}
        }
        if key == "Current sessions total" {
            if total.is_some() {
                return Err(ParseError::Duplicate {
                    reply: NUMSESSIONS,
                    line: quote(line),
                });
            }
            total = Some(value);
        }
    }
    let total = total.ok_or(ParseError::Missing {
        reply: NUMSESSIONS,
        field: "Current sessions total",
    })?;
    let mut stats = Stats::new(SourceKind::RtpengineCtl, total, read_at);
    if let (Some(own), Some(foreign)) = (own, foreign) {
        stats.sessions = Some(super::Sessions { own, foreign });
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Older rtpengine: three lines (cli_incoming_list_numsessions in daemon/cli.c).
    const BOOKWORM: &str =
        "Current sessions own: 4\nCurrent sessions foreign: 2\nCurrent sessions total: 6\n";
    /// Newer rtpengine, with the media lines (note the double space in "mixed  media").
    const NEWER: &str = "Current sessions own: 0\nCurrent sessions foreign: 0\nCurrent sessions total: 0\nCurrent transcoded media: 0\nCurrent sessions ipv4 only media: 0\nCurrent sessions ipv6 only media: 0\nCurrent sessions ip mixed  media: 0\n";

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH
    }

    #[test]
    fn reads_the_total() {
        let s = parse_rtpengine_numsessions(BOOKWORM, at()).unwrap();
        assert_eq!((s.source, s.allocations), (SourceKind::RtpengineCtl, 6));
        assert_eq!(s.sessions, Some(crate::stats::Sessions { own: 4, foreign: 2 }));
        assert_eq!(parse_rtpengine_numsessions(NEWER, at()).unwrap().allocations, 0);
        // A reply without the own and foreign lines still gives the total.
        let bare = parse_rtpengine_numsessions("Current sessions total: 3\n", at()).unwrap();
        assert_eq!((bare.allocations, bare.sessions), (3, None));
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        let err = |t: &str| parse_rtpengine_numsessions(t, at()).unwrap_err().to_string();
        assert_eq!(err(""), "rtpengine `list numsessions` reply is empty");
        assert_eq!(
            err("Current sessions own: 1\nCurrent sessions foreign: 0\n"),
            "rtpengine `list numsessions` reply has no `Current sessions total` line"
        );
        assert_eq!(
            err("More parameters required.\n"),
            "unexpected line `More parameters required.` in rtpengine `list numsessions` reply"
        );
        assert_eq!(
            err("Current sessions total: -1\n"),
            "bad number in line `Current sessions total: -1` of rtpengine `list numsessions` reply"
        );
        assert!(err("Current sessions total: 1\nCurrent sessions total: 1\n").contains("repeats"));
        assert!(err("Total sessions: 1\n").starts_with("unexpected line"));
    }
}
