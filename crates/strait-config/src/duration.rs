//! Duration strings: `250ms`, `30s`, `1.5s`, `1m30s`, `2h`.

use std::time::Duration;

const NANOS_PER_MS: u128 = 1_000_000;
const UNITS: [(&str, u128); 4] = [
    ("ms", NANOS_PER_MS),
    ("s", 1_000 * NANOS_PER_MS),
    ("m", 60_000 * NANOS_PER_MS),
    ("h", 3_600_000 * NANOS_PER_MS),
];

/// Parses a duration string: integer or decimal number followed by a unit ms, s, m, h; several
/// parts may be joined ("1m30s"); "0s" is allowed. Errors are a human message.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.is_empty() {
        return Err("empty duration".to_owned());
    }
    if s.starts_with('-') {
        return Err(format!("`{s}` is negative; durations are zero or more"));
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() {
            return Err(format!(
                "`{s}` is not a duration: expected a number at `{rest}`"
            ));
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let Some(&(_, unit_nanos)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(if unit.is_empty() {
                format!("`{s}` has no unit; add one of ms, s, m, h (e.g. `{number}s`)")
            } else {
                format!("`{s}` has an unknown unit `{unit}`; use ms, s, m or h")
            });
        };
        let nanos = scaled(number, unit_nanos)
            .ok_or_else(|| format!("`{s}` is not a duration: `{number}` is not a number"))?;
        total = total
            .checked_add(nanos)
            .ok_or_else(|| format!("`{s}` is too long"))?;
        rest = after;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| format!("`{s}` is too long"))?;
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// The inverse of [`parse_duration`] in its shortest usual form: `1m30s`, `250ms`, `1s500ms`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    let secs = d.as_secs();
    let mut out = String::new();
    let (hours, minutes, seconds) = (secs / 3600, secs / 60 % 60, secs % 60);
    for (value, unit) in [(hours, "h"), (minutes, "m"), (seconds, "s")] {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    let nanos = d.subsec_nanos();
    if nanos > 0 {
        let (ms, frac) = (nanos / 1_000_000, nanos % 1_000_000);
        if frac == 0 {
            out.push_str(&format!("{ms}ms"));
        } else {
            let frac = format!("{frac:06}");
            out.push_str(&format!("{ms}.{}ms", frac.trim_end_matches('0')));
        }
    }
    out
}

/// `number` (digits with at most one `.`) times `unit_nanos`, exactly; digits past nanosecond
/// precision are dropped. `None` when `number` is malformed.
fn scaled(number: &str, unit_nanos: u128) -> Option<u128> {
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || (number.contains('.') && frac.is_empty()) || frac.contains('.') {
        return None;
    }
    if !whole
        .bytes()
        .chain(frac.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // Anything this long exceeds every Duration; saturating lets the caller say "too long".
    if whole.trim_start_matches('0').len() > 30 {
        return Some(u128::MAX);
    }
    let whole: u128 = whole.parse().ok()?;
    let mut nanos = whole.saturating_mul(unit_nanos);
    let mut scale = unit_nanos;
    for digit in frac.bytes() {
        scale /= 10;
        if scale == 0 {
            break;
        }
        nanos = nanos.saturating_add(u128::from(digit - b'0') * scale);
    }
    Some(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_joined_parts() {
        let cases = [
            ("0s", Duration::ZERO),
            ("250ms", Duration::from_millis(250)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("1m30s", Duration::from_secs(90)),
            ("1h2m3s4ms", Duration::from_millis(3_723_004)),
            ("1.5s", Duration::from_millis(1500)),
            ("0.5ms", Duration::from_micros(500)),
            ("1.25h", Duration::from_secs(4500)),
            ("0.0000001ms", Duration::ZERO),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        let cases = [
            ("", "empty"),
            ("5", "no unit"),
            ("5x", "unknown unit `x`"),
            ("-1s", "negative"),
            ("s", "expected a number"),
            ("1.s", "not a number"),
            (".5s", "not a number"),
            ("1.2.3s", "not a number"),
            ("1 s", "unknown unit ` s`"),
            ("1m30", "no unit"),
            ("99999999999999999999999999999h", "too long"),
            ("9999999999999999999999999999999999h", "too long"),
        ];
        for (text, want) in cases {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn formats_back_to_the_same_duration() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_millis(1500), "1s500ms"),
            (Duration::from_micros(500), "0.5ms"),
            (Duration::new(3723, 1), "1h2m3s0.000001ms"),
        ];
        for (d, want) in cases {
            assert_eq!(format_duration(d), want);
            assert_eq!(parse_duration(want), Ok(d), "{want}");
        }
    }
}
