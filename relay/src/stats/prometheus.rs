//! coturn's Prometheus endpoint (`--prometheus`, port 9641 by default).
//!
//! The count is the gauge `turn_total_allocations` ("Represents current
//! allocations number", src/apps/relay/prom_server.c). coturn 4.6.1 exports
//! it without labels; since 4.6.2 it has one sample per client transport,
//! `turn_total_allocations{type="UDP"}`, `{type="TLS/TCP"}` and so on, so the
//! samples are summed. The traffic counters on the same page cover finished
//! sessions only, so they are not reported as bytes relayed.

use std::time::SystemTime;

use super::error::quote;
use super::{ParseError, SourceKind, Stats, lines};

const METRIC: &str = "turn_total_allocations";
const PROMETHEUS: &str = "prometheus";

/// Parses a Prometheus text page and sums the `turn_total_allocations`
/// samples. A page that declares the gauge but has no sample yet (no
/// allocation since start, unlabelled 4.6.1) reads as 0.
///
/// # Errors
///
/// [`ParseError`] when the metric is neither declared nor sampled, a sample
/// line of it is malformed or not a whole non-negative number (quoted), or
/// it is declared as something other than a gauge.
pub fn parse_prometheus(text: &str, read_at: SystemTime) -> Result<Stats, ParseError> {
    let mut declared = false;
    let mut sum: Option<u64> = None;
    for line in lines(text).filter(|l| !l.trim().is_empty()) {
        let unknown = || ParseError::UnknownLine {
            reply: PROMETHEUS,
            line: quote(line),
        };
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.split_whitespace().collect();
            if let ["TYPE", METRIC, kind, ..] = words[..] {
                if kind != "gauge" || words.len() != 3 {
                    return Err(unknown());
                }
                declared = true;
            }
            continue;
        }
        let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
        if &line[..name_end] != METRIC {
            continue;
        }
        let mut rest = &line[name_end..];
        if let Some(labels) = rest.strip_prefix('{') {
            rest = skip_labels(labels).ok_or_else(unknown)?;
        }
        let mut fields = rest.split_whitespace();
        let (Some(value), timestamp, None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(unknown());
        };
        if timestamp.is_some_and(|t| t.parse::<i64>().is_err()) || !rest.starts_with([' ', '\t']) {
            return Err(unknown());
        }
        let bad_number = || ParseError::BadNumber {
            reply: PROMETHEUS,
            line: quote(line),
        };
        let value = whole(value).ok_or_else(bad_number)?;
        sum = Some(sum.unwrap_or(0).checked_add(value).ok_or_else(bad_number)?);
    }
    match sum {
        Some(n) => Ok(Stats::new(SourceKind::Prometheus, n, read_at)),
        None if declared => Ok(Stats::new(SourceKind::Prometheus, 0, read_at)),
        None => Err(ParseError::Missing {
            reply: PROMETHEUS,
            field: METRIC,
        }),
    }
}

/// A sample value that is a whole non-negative number (`3`, `3.0`, `3e0`);
/// libprom prints gauges as doubles.
fn whole(value: &str) -> Option<u64> {
    let v: f64 = value.parse().ok()?;
    // 2^53: beyond it doubles skip integers, and no relay has that many.
    let exact = v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= 9_007_199_254_740_992.0;
    // The checks above make the conversion exact.
    exact.then_some(v as u64)
}

/// Skips `name="value",...}` and returns what follows the closing brace.
fn skip_labels(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        if b.get(i) == Some(&b'}') {
            return Some(&s[i + 1..]);
        }
        let start = i;
        while b.get(i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
            i += 1;
        }
        if i == start || b.get(i..i + 2) != Some(b"=\"") {
            return None;
        }
        i += 2;
        // The value runs to the first unescaped quote; `\\`, `\"` and `\n`
        // are the escapes. UTF-8 continuation bytes never look like ASCII.
        loop {
            match b.get(i)? {
                b'\\' => i += 2,
                b'"' => break,
                _ => i += 1,
            }
        }
        i += 1;
        match b.get(i)? {
            b',' => i += 1,
            b'}' => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A coturn 4.6.2+ page (excerpt): one gauge sample per client transport.
    const LABELLED: &str = "\
# HELP turn_total_traffic_sentb Represents total finished sessions sent bytes
# TYPE turn_total_traffic_sentb counter
turn_total_traffic_sentb 73219
# HELP turn_total_allocations Represents current allocations number
# TYPE turn_total_allocations gauge
turn_total_allocations{type=\"UDP\"} 5
turn_total_allocations{type=\"TLS/TCP\"} 2
turn_total_allocations{type=\"TLS/TCP ?\"} 0
# HELP turn_packet_processed Incoming packet processed
# TYPE turn_packet_processed counter
turn_packet_processed 918
";

    /// coturn 4.6.1: no labels.
    const UNLABELLED: &str = "# HELP turn_total_allocations Represents current allocations number\n# TYPE turn_total_allocations gauge\nturn_total_allocations 3\n";

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH
    }

    #[test]
    fn sums_the_gauge() {
        let s = parse_prometheus(LABELLED, at()).unwrap();
        assert_eq!(
            (s.source, s.allocations, s.bytes_tx),
            (SourceKind::Prometheus, 7, None)
        );
        assert_eq!(parse_prometheus(UNLABELLED, at()).unwrap().allocations, 3);
        assert_eq!(
            parse_prometheus("turn_total_allocations{type=\"UDP\"} 4.0 1700000000000\n", at())
                .unwrap()
                .allocations,
            4
        );
        assert_eq!(
            parse_prometheus("turn_total_allocations{a=\"x\\\"}\",} 1\r\n", at())
                .unwrap()
                .allocations,
            1
        );
    }

    #[test]
    fn declared_without_samples_is_zero() {
        let page = "# HELP turn_total_allocations Represents current allocations number\n# TYPE turn_total_allocations gauge\n";
        assert_eq!(parse_prometheus(page, at()).unwrap().allocations, 0);
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        let err = |t: &str| parse_prometheus(t, at()).unwrap_err().to_string();
        assert_eq!(
            err("turn_packet_processed 9\n"),
            "prometheus reply has no `turn_total_allocations` line"
        );
        assert_eq!(err(""), "prometheus reply has no `turn_total_allocations` line");
        assert_eq!(
            err("turn_total_allocations{type=\"UDP\"} -1\n"),
            "bad number in line `turn_total_allocations{type=\"UDP\"} -1` of prometheus reply"
        );
        for bad in ["1.5", "NaN", "+Inf", "x"] {
            assert!(
                err(&format!("turn_total_allocations {bad}\n")).starts_with("bad number"),
                "{bad}"
            );
        }
        for bad in [
            "turn_total_allocations{type=\"UDP\" 1",
            "turn_total_allocations{type=UDP} 1",
            "turn_total_allocations{type=\"UDP\"}1",
            "turn_total_allocations",
            "turn_total_allocations 1 2 3",
            "turn_total_allocations 1 soon",
            "# TYPE turn_total_allocations counter",
        ] {
            assert!(err(bad).starts_with("unexpected line"), "{bad}");
        }
    }
}
