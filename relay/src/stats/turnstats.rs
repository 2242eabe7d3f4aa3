//! restund's (and relayd's) status replies: `turnstats`, and the drain
//! module's `drain_enable` / `drain_disable` / `drain_state`.
//!
//! restund's status module answers on UDP in raw slices of at most 1024
//! bytes, cut anywhere (even inside a line or a UTF-8 character) and with no
//! end marker; [`Collector`] joins them in order before anything is parsed.

use std::time::SystemTime;

use super::error::quote;
use super::{ParseError, SourceKind, Stats, lines, number};

const TURNSTATS: &str = "turnstats";
const DRAIN: &str = "drain";

/// The longest reply [`Collector`] accepts. A `turnstats` reply is about a
/// hundred bytes; anything this long is not one.
pub const MAX_REPLY_LEN: usize = 64 * 1024;

/// Parses a `turnstats` reply: `allocs_cur N`, `allocs_tot N`, `bytes_tx N`,
/// `bytes_rx N`, `bytes_tot N`, optionally `chan_cur N` (newer restund) and
/// `is_draining: 0|1` (relayd), one per line.
///
/// # Errors
///
/// [`ParseError`] for an empty reply, a line it does not know (quoted), a bad
/// or repeated value, a missing `allocs_cur`, or restund's
/// `turnstats: command not found`.
pub fn parse_turnstats(text: &str, read_at: SystemTime) -> Result<Stats, ParseError> {
    if text.trim().is_empty() {
        return Err(ParseError::Empty { reply: TURNSTATS });
    }
    let mut current = None;
    let mut stats = Stats::new(SourceKind::Turnstats, 0, read_at);
    for line in lines(text).filter(|l| !l.is_empty()) {
        if line.ends_with(": command not found") {
            return Err(ParseError::CommandNotFound { line: quote(line) });
        }
        if line.starts_with("is_draining:") {
            set(&mut stats.draining, drain_line(line, TURNSTATS)?, line, TURNSTATS)?;
            continue;
        }
        let unknown = || ParseError::UnknownLine {
            reply: TURNSTATS,
            line: quote(line),
        };
        let (key, value) = line.split_once(' ').ok_or_else(unknown)?;
        let slot = match key {
            "allocs_cur" => &mut current,
            "allocs_tot" => &mut stats.total,
            "bytes_tx" => &mut stats.bytes_tx,
            "bytes_rx" => &mut stats.bytes_rx,
            "bytes_tot" => &mut stats.bytes_total,
            "chan_cur" => &mut stats.channels,
            _ => return Err(unknown()),
        };
        let value = number(value).ok_or_else(|| ParseError::BadNumber {
            reply: TURNSTATS,
            line: quote(line),
        })?;
        set(slot, value, line, TURNSTATS)?;
    }
    stats.allocations = current.ok_or(ParseError::Missing {
        reply: TURNSTATS,
        field: "allocs_cur",
    })?;
    Ok(stats)
}

/// Parses the reply to `drain_enable`, `drain_disable` or `drain_state`:
/// `is_draining: 0` or `is_draining: 1`, one line.
///
/// # Errors
///
/// [`ParseError`] for anything else, quoted.
pub fn parse_drain_reply(text: &str) -> Result<bool, ParseError> {
    let mut found = None;
    for line in lines(text).filter(|l| !l.is_empty()) {
        if line.ends_with(": command not found") {
            return Err(ParseError::CommandNotFound { line: quote(line) });
        }
        set(&mut found, drain_line(line, DRAIN)?, line, DRAIN)?;
    }
    found.ok_or(ParseError::Empty { reply: DRAIN })
}

/// Parses turnstats from the payloads of the reply datagrams, in the order
/// they arrived.
///
/// # Errors
///
/// As [`Collector::push`] and [`Collector::finish`].
pub fn parse_turnstats_datagrams<I>(datagrams: I, read_at: SystemTime) -> Result<Stats, ParseError>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    let mut collector = Collector::new();
    for d in datagrams {
        collector.push(d.as_ref())?;
    }
    collector.finish(read_at)
}

/// Joins the datagrams of one status reply. The caller decides when the
/// reply is over (restund sends no end marker: a short quiet gap is the only
/// sign), then calls [`Collector::finish`] or [`Collector::text`].
#[derive(Debug, Clone, Default)]
pub struct Collector {
    buf: Vec<u8>,
    datagrams: usize,
}

impl Collector {
    /// An empty collector.
    #[must_use]
    pub fn new() -> Collector {
        Collector::default()
    }

    /// Appends one datagram's payload.
    ///
    /// # Errors
    ///
    /// [`ParseError::TooLong`] once the reply passes [`MAX_REPLY_LEN`]: the
    /// port is answering with something other than a status reply.
    pub fn push(&mut self, payload: &[u8]) -> Result<(), ParseError> {
        if self.buf.len() + payload.len() > MAX_REPLY_LEN {
            return Err(ParseError::TooLong {
                reply: TURNSTATS,
                max: MAX_REPLY_LEN,
            });
        }
        self.buf.extend_from_slice(payload);
        self.datagrams += 1;
        Ok(())
    }

    /// How many datagrams have been joined.
    #[must_use]
    pub fn datagrams(&self) -> usize {
        self.datagrams
    }

    /// The reply so far as text.
    ///
    /// # Errors
    ///
    /// [`ParseError::NotText`] if the bytes are not UTF-8.
    pub fn text(&self) -> Result<&str, ParseError> {
        std::str::from_utf8(&self.buf).map_err(|_| ParseError::NotText {
            reply: TURNSTATS,
            text: quote(&String::from_utf8_lossy(&self.buf)),
        })
    }

    /// Parses the joined reply as `turnstats`.
    ///
    /// # Errors
    ///
    /// As [`Collector::text`] and [`parse_turnstats`].
    pub fn finish(self, read_at: SystemTime) -> Result<Stats, ParseError> {
        parse_turnstats(self.text()?, read_at)
    }
}

fn drain_line(line: &str, reply: &'static str) -> Result<bool, ParseError> {
    match line {
        "is_draining: 0" => Ok(false),
        "is_draining: 1" => Ok(true),
        _ => Err(ParseError::UnknownLine {
            reply,
            line: quote(line),
        }),
    }
}

fn set<T>(slot: &mut Option<T>, value: T, line: &str, reply: &'static str) -> Result<(), ParseError> {
    if slot.is_some() {
        return Err(ParseError::Duplicate {
            reply,
            line: quote(line),
        });
    }
    *slot = Some(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// restund 0.4.x `turnstats` as its status module sends it (stats_handler
    /// in modules/turn/turn.c: one `%s %llu\n` per counter, no chan_cur).
    const RESTUND: &str = "allocs_cur 17\nallocs_tot 90211\nbytes_tx 81234567890\nbytes_rx 79876543210\nbytes_tot 161111111100\n";
    /// Wire's restund adds `chan_cur`.
    const RESTUND_WIRE: &str =
        "allocs_cur 0\nallocs_tot 312\nbytes_tx 4096\nbytes_rx 2048\nbytes_tot 6144\nchan_cur 0\n";

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH
    }

    #[test]
    fn reads_restund() {
        let s = parse_turnstats(RESTUND, at()).unwrap();
        assert_eq!(s.source, SourceKind::Turnstats);
        assert_eq!(s.allocations, 17);
        assert_eq!(s.total, Some(90211));
        assert_eq!(
            (s.bytes_tx, s.bytes_rx, s.bytes_total),
            (Some(81234567890), Some(79876543210), Some(161111111100))
        );
        assert_eq!((s.channels, s.draining), (None, None));
        let s = parse_turnstats(RESTUND_WIRE, at()).unwrap();
        assert_eq!((s.allocations, s.channels), (0, Some(0)));
    }

    #[test]
    fn reads_relayd_with_drain_state() {
        let s = parse_turnstats(&format!("{RESTUND_WIRE}is_draining: 1\n"), at()).unwrap();
        assert_eq!(s.draining, Some(true));
        // No final newline, and CRLF (as over HTTP), are fine too.
        let s = parse_turnstats("allocs_cur 3\r\nis_draining: 0", at()).unwrap();
        assert_eq!((s.allocations, s.draining, s.total), (3, Some(false), None));
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        let err = |t: &str| parse_turnstats(t, at()).unwrap_err().to_string();
        assert_eq!(err(""), "turnstats reply is empty");
        assert_eq!(
            err("allocs_cur 1\nallocs_now 2\n"),
            "unexpected line `allocs_now 2` in turnstats reply"
        );
        assert_eq!(
            err("allocs_cur\n"),
            "unexpected line `allocs_cur` in turnstats reply"
        );
        assert_eq!(
            err("allocs_cur -1\n"),
            "bad number in line `allocs_cur -1` of turnstats reply"
        );
        assert_eq!(
            err("allocs_cur 1 2\n"),
            "bad number in line `allocs_cur 1 2` of turnstats reply"
        );
        assert_eq!(err("allocs_tot 5\n"), "turnstats reply has no `allocs_cur` line");
        assert_eq!(
            err("allocs_cur 1\nallocs_cur 1\n"),
            "line `allocs_cur 1` repeats a value already read in turnstats reply"
        );
        assert_eq!(
            err("allocs_cur 1\nis_draining: yes\n"),
            "unexpected line `is_draining: yes` in turnstats reply"
        );
        assert_eq!(
            err("turnstats: command not found\n"),
            "relay answered `turnstats: command not found`: its status module does not know the command"
        );
        assert_eq!(
            err("<pre>allocs_cur 1</pre>"),
            "unexpected line `<pre>allocs_cur 1</pre>` in turnstats reply"
        );
    }

    #[test]
    fn drain_replies() {
        assert_eq!(parse_drain_reply("is_draining: 0\n"), Ok(false));
        assert_eq!(parse_drain_reply("is_draining: 1"), Ok(true));
        assert_eq!(parse_drain_reply(""), Err(ParseError::Empty { reply: "drain" }));
        assert_eq!(
            parse_drain_reply("draining\n").unwrap_err().to_string(),
            "unexpected line `draining` in drain reply"
        );
        assert!(matches!(
            parse_drain_reply("drain_enable: command not found\n"),
            Err(ParseError::CommandNotFound { .. })
        ));
        assert!(matches!(
            parse_drain_reply("is_draining: 1\nis_draining: 0\n"),
            Err(ParseError::Duplicate { .. })
        ));
    }

    #[test]
    fn joins_datagrams_split_mid_line() {
        // restund cuts a reply every 1024 bytes wherever that falls; cutting
        // a real reply at awkward places stands in for a long one.
        let bytes = RESTUND_WIRE.as_bytes();
        let parts = [&bytes[..7], &bytes[7..30], &bytes[30..31], &bytes[31..]];
        let s = parse_turnstats_datagrams(parts, at()).unwrap();
        assert_eq!((s.allocations, s.total, s.channels), (0, Some(312), Some(0)));

        // A split inside a multi-byte character is joined before decoding.
        let mut c = Collector::new();
        c.push(b"allocs_cur 1\nx\xc3").unwrap();
        c.push(b"\xa9 1\n").unwrap();
        assert_eq!(c.datagrams(), 2);
        assert_eq!(c.text(), Ok("allocs_cur 1\nx\u{e9} 1\n"));
        assert!(matches!(c.finish(at()), Err(ParseError::UnknownLine { .. })));
    }

    #[test]
    fn collector_refuses_non_text_and_floods() {
        assert!(matches!(
            parse_turnstats_datagrams([b"\xff\xfe"], at()),
            Err(ParseError::NotText { .. })
        ));
        let mut c = Collector::new();
        let chunk = [b'a'; 1024];
        for _ in 0..64 {
            c.push(&chunk).unwrap();
        }
        assert_eq!(
            c.push(b"a"),
            Err(ParseError::TooLong {
                reply: "turnstats",
                max: MAX_REPLY_LEN
            })
        );
        assert!(matches!(
            parse_turnstats_datagrams(Vec::<Vec<u8>>::new(), at()),
            Err(ParseError::Empty { .. })
        ));
    }
}
