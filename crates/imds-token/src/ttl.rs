//! Parsing of the `X-aws-ec2-metadata-token-ttl-seconds` request header.
//!
//! Owns the accepted syntax and the bounds check; whether the header is
//! present at all, and the 400 answer, belong to the caller.

use crate::{TTL_MAX_SECS, TTL_MIN_SECS};

/// Why a TTL header value was refused (both are answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TtlError {
    /// Empty, or not made only of ASCII digits (`abc`, `1.5`, `-1`, `+5`).
    #[error("token TTL is not a decimal integer")]
    NotANumber,
    /// A decimal integer outside `1..=21600`, however large.
    #[error("token TTL must be between {TTL_MIN_SECS} and {TTL_MAX_SECS} seconds")]
    OutOfRange,
}

/// Parses the value of the `X-aws-ec2-metadata-token-ttl-seconds` header.
///
/// Surrounding ASCII whitespace is trimmed, the rest must match `^[0-9]+$`
/// (leading zeros are fine) and lie in
/// [`TTL_MIN_SECS`]`..=`[`TTL_MAX_SECS`]. Values too large for any integer
/// type are simply out of range. A missing header is the caller's case.
pub fn parse_ttl(value: &[u8]) -> Result<u32, TtlError> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(TtlError::NotANumber);
    }
    // Checked arithmetic: an overflow can only come from a value far above
    // the maximum, so it is "out of range", never a panic or a wrap.
    let mut n: u32 = 0;
    for &d in digits {
        n = n.checked_mul(10).and_then(|n| n.checked_add(u32::from(d - b'0'))).ok_or(TtlError::OutOfRange)?;
    }
    if (TTL_MIN_SECS..=TTL_MAX_SECS).contains(&n) { Ok(n) } else { Err(TtlError::OutOfRange) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_bounds_leading_zeros_and_surrounding_whitespace() {
        assert_eq!(parse_ttl(b"1"), Ok(1));
        assert_eq!(parse_ttl(b"21600"), Ok(21_600));
        assert_eq!(parse_ttl(b"021600"), Ok(21_600));
        assert_eq!(parse_ttl(b" 60 "), Ok(60));
        assert_eq!(parse_ttl(b"\t60\r\n"), Ok(60));
        assert_eq!(parse_ttl(b"00000000000000000000000001"), Ok(1));
    }

    #[test]
    fn refuses_out_of_range_values() {
        for v in ["0", "000", "21601", "99999999999999999999999", "4294967296"] {
            assert_eq!(parse_ttl(v.as_bytes()), Err(TtlError::OutOfRange), "{v:?}");
        }
    }

    #[test]
    fn refuses_non_numbers() {
        for v in ["-1", "1.5", "abc", "", "   ", "+5", "6 0", "60s", "0x10", "٣"] {
            assert_eq!(parse_ttl(v.as_bytes()), Err(TtlError::NotANumber), "{v:?}");
        }
        assert_eq!(parse_ttl(&[0xff, b'1']), Err(TtlError::NotANumber));
    }

    /// A deliberately different implementation: strip zeros, bound the
    /// number of significant digits, then let `str::parse` do the work.
    fn reference(s: &str) -> Result<u32, TtlError> {
        let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
        if t.is_empty() || !t.chars().all(|c| c.is_ascii_digit()) {
            return Err(TtlError::NotANumber);
        }
        let significant = t.trim_start_matches('0');
        if significant.len() > 5 {
            return Err(TtlError::OutOfRange);
        }
        let n: u32 = if significant.is_empty() { 0 } else { significant.parse().unwrap() };
        if (1..=21_600).contains(&n) { Ok(n) } else { Err(TtlError::OutOfRange) }
    }

    proptest! {
        #[test]
        fn agrees_with_reference_on_arbitrary_strings(
            s in prop_oneof![
                any::<String>(),
                "[ \t\r\n]{0,3}[0-9]{0,30}[ \t\r\n]{0,3}",
                "[ \t]{0,2}0{0,10}[0-9]{1,6}[ \t]{0,2}",
                "[0-9 .+\\-a-z]{0,8}",
            ]
        ) {
            prop_assert_eq!(parse_ttl(s.as_bytes()), reference(&s));
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_ttl(&b);
        }
    }
}
