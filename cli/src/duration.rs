//! Durations as operators write them: `90s`, `10m`, `12h`, `1h30m`, `500ms`.

use std::time::Duration;

/// Parses a duration with units; a bare number is refused because `30` could
/// mean seconds or minutes, and a drain timeout off by 60x is a real outage.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if t.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("`{t}` has no unit; write e.g. `{t}s` or `{t}m`"));
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("`{t}` is not a duration like `90s`, `10m` or `1h30m`"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{t}` is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let step = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            _ => {
                return Err(format!(
                    "`{t}` has an unknown unit `{unit}`; use ms, s, m, h or d"
                ));
            }
        };
        total = total.saturating_add(step);
    }
    Ok(total)
}

/// Formats a duration the way [`parse`] reads it, largest units first.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) && ms < 60_000 {
        return format!("{ms}ms");
    }
    let mut secs = d.as_secs();
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// `06:41:00 UTC` for a time in Unix seconds: when something happened today.
pub fn utc_clock(unix_secs: u64) -> String {
    let s = unix_secs % 86_400;
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s % 3600 / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        for (text, secs) in [("12h", 43_200), ("90s", 90), ("1h30m", 5400), ("2d", 172_800)] {
            assert_eq!(parse(text).unwrap(), Duration::from_secs(secs));
        }
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_secs(43_200)), "12h");
        assert_eq!(format(Duration::from_millis(500)), "500ms");
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert_eq!(
            parse("30").unwrap_err(),
            "`30` has no unit; write e.g. `30s` or `30m`"
        );
        assert!(parse("12 hours").unwrap_err().contains("unknown unit"));
        assert!(parse("h").is_err());
        assert!(parse("").is_err());
    }
}
