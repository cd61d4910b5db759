//! Byte sizes: `65535`, `64KiB`, `1MiB`. Only binary units, so that a value reads the same
//! to everyone: `64KB` could mean 64000 or 65536.

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;
const UNITS: [(&str, u64); 3] = [("B", 1), ("KiB", KIB), ("MiB", MIB)];

/// Parses a size string: a whole number of bytes, or a whole number followed by `B`, `KiB` or
/// `MiB` (case-sensitive). Sizes too large for a `u64` saturate, since every caller has a much
/// smaller upper bound to report. Errors are a human message.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    if s.is_empty() {
        return Err("empty size".to_owned());
    }
    if s.starts_with('-') {
        return Err(format!("`{s}` is negative; sizes are zero or more"));
    }
    let number_len = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(number_len);
    if number.is_empty() {
        return Err(format!(
            "`{s}` is not a size: it does not start with a number"
        ));
    }
    if unit.starts_with('.') {
        return Err(format!(
            "`{s}` is not a whole number; write the size in a smaller unit"
        ));
    }
    let multiplier = match unit {
        "" => 1,
        _ => match UNITS.iter().find(|(name, _)| *name == unit) {
            Some(&(_, multiplier)) => multiplier,
            None => {
                return Err(format!(
                    "`{s}` has an unknown unit `{unit}`; use B, KiB or MiB"
                ))
            }
        },
    };
    // All digits, so the only way to fail is overflow.
    let number = number.parse::<u64>().unwrap_or(u64::MAX);
    Ok(number.saturating_mul(multiplier))
}

/// The inverse of [`parse_size`] in its shortest exact form: `1MiB`, `64KiB`, `65535`.
pub(crate) fn format_size(bytes: u32) -> String {
    let bytes = u64::from(bytes);
    if bytes > 0 && bytes % MIB == 0 {
        format!("{}MiB", bytes / MIB)
    } else if bytes > 0 && bytes % KIB == 0 {
        format!("{}KiB", bytes / KIB)
    } else {
        bytes.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bytes_and_binary_units() {
        let cases = [
            ("0", 0),
            ("65535", 65_535),
            ("0B", 0),
            ("512B", 512),
            ("64KiB", 65_536),
            ("16KiB", 16_384),
            ("1MiB", 1_048_576),
            ("16MiB", 16_777_216),
            ("007KiB", 7_168),
            ("99999999999999999999999", u64::MAX),
            ("99999999999999MiB", u64::MAX),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_size() {
        let cases = [
            ("", "empty"),
            ("-1", "negative"),
            ("KiB", "does not start with a number"),
            ("1.5MiB", "not a whole number"),
            ("64KB", "unknown unit `KB`"),
            ("64kib", "unknown unit `kib`"),
            ("1GiB", "unknown unit `GiB`"),
            ("64 KiB", "unknown unit ` KiB`"),
            ("1MiB1", "unknown unit `MiB1`"),
        ];
        for (text, want) in cases {
            let err = parse_size(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn formats_back_to_the_same_size() {
        let cases = [
            (1, "1"),
            (65_535, "65535"),
            (1_000, "1000"),
            (16_384, "16KiB"),
            (1_048_576, "1MiB"),
            (1_049_600, "1025KiB"),
            (16_777_215, "16777215"),
            (u32::MAX, "4294967295"),
        ];
        for (bytes, want) in cases {
            assert_eq!(format_size(bytes), want);
            assert_eq!(parse_size(want), Ok(u64::from(bytes)), "{want}");
        }
    }
}
