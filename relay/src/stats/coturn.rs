//! coturn's admin CLI `ps` output (the telnet CLI, port 5766 by default).
//!
//! coturn prints a block per session, each opened by a numbered header line,
//! then `  Total sessions: N` (with ` for realm R` and ` and for origin O`
//! when the CLI session has them set). Past `cli-max-output-sessions` it
//! stops printing blocks but keeps counting, and says so after the total.
//! Lines end in CRLF, as telnet wants.

use std::time::SystemTime;

use super::error::quote;
use super::{ParseError, SourceKind, Stats, lines, number};

const PS: &str = "coturn `ps`";

/// The warning coturn prints when it listed fewer sessions than it counted.
const TRUNCATED_WARNING: [&str; 3] = [
    "  Warning: too many output sessions, more than the",
    "  current value of cli-max-output-sessions CLI parameter.",
    "  Refine your request or increase cli-max-output-sessions value.",
];

/// Parses the output of coturn's `ps` command. The session count is the
/// `Total sessions` line; the listed session headers must agree with it
/// unless coturn warned that it cut the list short.
///
/// # Errors
///
/// [`ParseError`] for a line it does not know (quoted), a missing or repeated
/// total, or a total that disagrees with the sessions listed.
pub fn parse_coturn_ps(text: &str, read_at: SystemTime) -> Result<Stats, ParseError> {
    if text.trim().is_empty() {
        return Err(ParseError::Empty { reply: PS });
    }
    let mut listed = 0;
    let mut in_session = false;
    let mut total: Option<(u64, &str)> = None;
    let mut warned = 0;
    for line in lines(text) {
        let unknown = || ParseError::UnknownLine {
            reply: PS,
            line: quote(line),
        };
        if line.is_empty() {
            in_session = false;
        } else if let Some(n) = session_header(line) {
            if n != listed + 1 || total.is_some() {
                return Err(unknown());
            }
            listed = n;
            in_session = true;
        } else if in_session && line.starts_with("      ") {
            // A detail of the current session (realm, addresses, usage, peers).
        } else if let Some(rest) = line.strip_prefix("  Total sessions") {
            let (qualifier, n) = rest.rsplit_once(": ").ok_or_else(unknown)?;
            if !(qualifier.is_empty() || qualifier.starts_with(" for ")) {
                return Err(unknown());
            }
            let n = number(n).ok_or_else(|| ParseError::BadNumber {
                reply: PS,
                line: quote(line),
            })?;
            if total.is_some() {
                return Err(ParseError::Duplicate {
                    reply: PS,
                    line: quote(line),
                });
            }
            total = Some((n, line));
        } else if TRUNCATED_WARNING.get(warned) == Some(&line) {
            warned += 1;
        } else if line == "..." || line.trim_end() == ">" {
            // coturn's mark for a cut list; the CLI prompt a reader may catch.
        } else {
            return Err(unknown());
        }
    }
    let (total, total_line) = total.ok_or(ParseError::Missing {
        reply: PS,
        field: "Total sessions",
    })?;
    let consistent = if warned == TRUNCATED_WARNING.len() {
        listed < total
    } else {
        listed == total
    };
    if !consistent || (warned != 0 && warned != TRUNCATED_WARNING.len()) {
        return Err(ParseError::Inconsistent {
            listed,
            line: quote(total_line),
        });
    }
    Ok(Stats::new(SourceKind::CoturnCli, total, read_at))
}

/// The number of a `    N) id=..., user <name>:` line.
fn session_header(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("    ")?;
    let (n, rest) = rest.split_once(") id=")?;
    let (id, rest) = rest.split_once(", user <")?;
    number(id)?;
    rest.ends_with(">:").then_some(())?;
    number(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// coturn 4.6.1's `ps` with two sessions (format of print_session and
    /// print_sessions in src/apps/relay/turn_admin_server.c), CRLF as telnet
    /// sends it, the prompt at the end.
    const TWO_SESSIONS: &str = "\r\n    1) id=001000000000000001, user <1763800000:alice>:\r\n      realm: example.org\r\n      started 42 secs ago\r\n      expiring in 558 secs\r\n      client protocol UDP, relay protocol UDP\r\n      client addr 192.0.2.10:50123, server addr 198.51.100.1:3478\r\n      relay addr 198.51.100.1:49160\r\n      fingerprints enforced: ON\r\n      mobile: OFF\r\n      usage: rp=1200, rb=96000, sp=1180, sb=94400\r\n       rate: r=2285, s=2247, total=4532 (bytes per sec)\r\n      peers:\r\n          203.0.113.5\r\n\r\n    2) id=002000000000000007, user <>:\r\n      started 3 secs ago\r\n      expiring in 597 secs\r\n      client protocol TLS/TCP, relay protocol UDP\r\n      client addr [2001:db8::10]:50200, server addr [2001:db8::1]:5349\r\n      relay addr [2001:db8::1]:49200\r\n      fingerprints enforced: OFF\r\n      mobile: OFF\r\n      TLS method: TLSv1.3\r\n      TLS cipher: TLS_AES_256_GCM_SHA384\r\n      usage: rp=3, rb=300, sp=2, sb=200\r\n       rate: r=0, s=0, total=0 (bytes per sec)\r\n\r\n  Total sessions: 2\r\n\r\n> ";

    /// No sessions, in a CLI session with a realm and origin set.
    const NONE_FOR_REALM: &str =
        "\r\n  Total sessions for realm example.org and for origin https://app.example.org: 0\r\n\r\n";

    /// `cli-max-output-sessions 1` with three sessions.
    const CUT_SHORT: &str = "\r\n    1) id=001000000000000001, user <bob>:\r\n      started 1 secs ago\r\n      expiring in 599 secs\r\n\r\n...\r\n\r\n  Total sessions: 3\r\n\r\n  Warning: too many output sessions, more than the\r\n  current value of cli-max-output-sessions CLI parameter.\r\n  Refine your request or increase cli-max-output-sessions value.\r\n\r\n";

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH
    }

    #[test]
    fn counts_sessions() {
        let s = parse_coturn_ps(TWO_SESSIONS, at()).unwrap();
        assert_eq!(
            (s.source, s.allocations, s.total, s.draining),
            (SourceKind::CoturnCli, 2, None, None)
        );
        assert_eq!(parse_coturn_ps(NONE_FOR_REALM, at()).unwrap().allocations, 0);
        assert_eq!(parse_coturn_ps(CUT_SHORT, at()).unwrap().allocations, 3);
        // Plain LF line ends are read the same.
        assert_eq!(
            parse_coturn_ps(&TWO_SESSIONS.replace("\r\n", "\n"), at())
                .unwrap()
                .allocations,
            2
        );
    }

    #[test]
    fn disagreement_is_an_error() {
        let wrong = TWO_SESSIONS.replace("Total sessions: 2", "Total sessions: 3");
        assert_eq!(
            parse_coturn_ps(&wrong, at()).unwrap_err().to_string(),
            "coturn `ps` lists 2 sessions but says `  Total sessions: 3`"
        );
        let no_warning = CUT_SHORT.split("  Warning").next().unwrap();
        assert!(matches!(
            parse_coturn_ps(no_warning, at()),
            Err(ParseError::Inconsistent { listed: 1, .. })
        ));
        let half_warning = CUT_SHORT.split("  current value").next().unwrap();
        assert!(matches!(
            parse_coturn_ps(half_warning, at()),
            Err(ParseError::Inconsistent { .. })
        ));
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        let err = |t: &str| parse_coturn_ps(t, at()).unwrap_err().to_string();
        assert_eq!(err("\r\n"), "coturn `ps` reply is empty");
        assert!(err("  Total sessions: 0\r\n  Total sessions: 0\r\n").contains("repeats"));
        assert_eq!(
            err("Unknown command\r\n"),
            "unexpected line `Unknown command` in coturn `ps` reply"
        );
        assert_eq!(
            err("  Total sessions: many\r\n"),
            "bad number in line `  Total sessions: many` of coturn `ps` reply"
        );
        assert_eq!(err("\r\n> "), "coturn `ps` reply has no `Total sessions` line");
        // A detail line outside a session block, or sessions numbered out of order.
        assert_eq!(
            err("      realm: x\r\n  Total sessions: 0\r\n"),
            "unexpected line `      realm: x` in coturn `ps` reply"
        );
        let skipped = TWO_SESSIONS.replace("    2) id", "    3) id");
        assert!(err(&skipped).starts_with("unexpected line `    3) id=002000000000000007"));
    }
}
