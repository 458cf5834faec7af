//! The timestamp formats EC2 metadata documents use.

use time::OffsetDateTime;
use time::macros::format_description;

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`, the only format botocore's
/// credential parser accepts (`%Y-%m-%dT%H:%M:%SZ`, no fractional seconds).
pub fn iso8601_secs(unix_secs: u64) -> String {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    let secs = i64::try_from(unix_secs).unwrap_or(i64::MAX);
    OffsetDateTime::from_unix_timestamp(secs)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .format(&fmt)
        .unwrap_or_default()
}

/// Formats Unix seconds as `D Mon YYYY HH:MM:SS GMT`, the format of
/// maintenance events (`21 Jan 2019 09:00:43 GMT`, day not zero-padded).
pub fn event_time(unix_secs: u64) -> String {
    let fmt =
        format_description!("[day padding:none] [month repr:short] [year] [hour]:[minute]:[second] GMT");
    let secs = i64::try_from(unix_secs).unwrap_or(i64::MAX);
    OffsetDateTime::from_unix_timestamp(secs)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .format(&fmt)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_has_no_fraction_and_ends_in_z() {
        assert_eq!(iso8601_secs(1_632_174_146), "2021-09-20T21:42:26Z");
        assert_eq!(iso8601_secs(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn event_time_matches_documented_example() {
        // 21 Jan 2019 09:00:43 GMT
        assert_eq!(event_time(1_548_061_243), "21 Jan 2019 09:00:43 GMT");
        assert_eq!(event_time(1_546_592_400), "4 Jan 2019 09:00:00 GMT");
    }
}
