use std::time::Duration;

use http::HeaderValue;

pub const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// Parses a `grpc-timeout` value: at most 8 ASCII digits and a unit (H M S m u n).
/// Anything else is `None`: the spec says such a request has no deadline we can honour.
pub fn parse_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Encodes a remaining time for the upstream request, in the finest unit whose value fits in
/// 8 digits so little precision is lost. Rounds up: a deadline must never shrink to zero
/// while time is left.
pub fn encode_timeout(remaining: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = remaining.as_nanos().max(1);
    let units: [(u128, u8); 6] = [
        (1, b'n'),
        (1_000, b'u'),
        (1_000_000, b'm'),
        (1_000_000_000, b'S'),
        (60_000_000_000, b'M'),
        (3_600_000_000_000, b'H'),
    ];
    for (per, unit) in units {
        let amount = nanos.div_ceil(per);
        if amount <= MAX {
            return HeaderValue::from_str(&format!("{amount}{}", unit as char))
                .unwrap_or(HeaderValue::from_static("99999999H"));
        }
    }
    HeaderValue::from_static("99999999H")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_timeout(b"2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_timeout(b"3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_timeout(b"10S"), Some(Duration::from_secs(10)));
        assert_eq!(parse_timeout(b"250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout(b"7u"), Some(Duration::from_micros(7)));
        assert_eq!(
            parse_timeout(b"99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
    }

    #[test]
    fn rejects_bad_values() {
        for bad in [
            &b""[..],
            b"S",
            b"10",
            b"10s",
            b"123456789S",
            b"-1S",
            b"1.5S",
            b" 1S",
        ] {
            assert_eq!(
                parse_timeout(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn encodes_in_a_unit_that_fits_and_never_rounds_down() {
        assert_eq!(encode_timeout(Duration::from_millis(25)), "25000000n");
        assert_eq!(encode_timeout(Duration::from_millis(250)), "250000u");
        assert_eq!(encode_timeout(Duration::from_secs(10)), "10000000u");
        assert_eq!(encode_timeout(Duration::from_secs(1000)), "1000000m");
        assert_eq!(encode_timeout(Duration::ZERO), "1n");
        assert_eq!(encode_timeout(Duration::from_nanos(100_000_001)), "100001u");
        let long = Duration::from_secs(100_000_000 * 3600);
        assert_eq!(encode_timeout(long), "99999999H");
    }

    #[test]
    fn encode_then_parse_keeps_at_least_the_time() {
        for ms in [1u64, 999, 1_000, 59_999, 3_600_000, 86_400_000] {
            let d = Duration::from_millis(ms);
            let back = parse_timeout(encode_timeout(d).as_bytes()).unwrap();
            assert!(back >= d, "{d:?} -> {back:?}");
        }
    }
}
