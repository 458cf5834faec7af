//! The line format of the three signature documents: base64 wrapped at 76
//! columns with `\n`, no trailing newline, no PEM armour
//! (docs/protocol/categories.md#signatures; the same width as MIME base64).

/// Characters per line of the served base64 text.
pub const LINE_WIDTH: usize = 76;

/// Wraps `b64` at [`LINE_WIDTH`] characters per line with `\n`: every line
/// but the last has exactly 76 characters, the last 1 to 76, and there is no
/// trailing newline (the empty string stays empty).
///
/// Counts characters, not bytes, so it never splits a UTF-8 sequence even
/// though base64 is always ASCII.
pub fn wrap76(b64: &str) -> String {
    let mut out = String::with_capacity(b64.len() + b64.len() / LINE_WIDTH);
    for (i, c) in b64.chars().enumerate() {
        if i > 0 && i % LINE_WIDTH == 0 {
            out.push('\n');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_input_is_one_line() {
        assert_eq!(wrap76(""), "");
        assert_eq!(wrap76("QUJD"), "QUJD");
        let exactly = "A".repeat(76);
        assert_eq!(wrap76(&exactly), exactly);
    }

    #[test]
    fn long_input_breaks_every_76_without_trailing_newline() {
        let text = "B".repeat(76 * 2 + 5);
        let wrapped = wrap76(&text);
        let lines: Vec<&str> = wrapped.split('\n').collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].len(), 76);
        assert_eq!(lines[1].len(), 76);
        assert_eq!(lines[2].len(), 5);
        assert!(!wrapped.ends_with('\n'));
        assert_eq!(wrap76(&"C".repeat(152)).matches('\n').count(), 1);
    }

    proptest! {
        #[test]
        fn unwrapping_gives_back_the_input(s in "[A-Za-z0-9+/=]{0,1000}") {
            let wrapped = wrap76(&s);
            prop_assert_eq!(wrapped.replace('\n', ""), s.clone());
            prop_assert!(!wrapped.ends_with('\n'));
            let lines: Vec<&str> = wrapped.split('\n').collect();
            let (last, full) = lines.split_last().expect("split yields a line");
            prop_assert!(full.iter().all(|l| l.len() == LINE_WIDTH));
            prop_assert!(last.len() <= LINE_WIDTH);
        }

        #[test]
        fn never_splits_characters(s in "\\PC{0,300}") {
            prop_assert_eq!(wrap76(&s).replace('\n', ""), s.replace('\n', ""));
        }
    }
}
