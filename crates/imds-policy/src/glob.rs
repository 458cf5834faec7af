//! Wildcard patterns (`*`, `?`) of the three flavours IAM uses, and policy
//! variable escapes.
//!
//! * [`Flavor::Plain`] — `Action`/`NotAction` and `StringLike`: `*` matches
//!   any run of characters, `?` any single character.
//! * [`Flavor::Arn`] — `Resource`/`NotResource`: wildcards stay inside one
//!   colon-separated ARN segment, except that a `*` that is the last
//!   character of a segment "can expand to match beyond the colon
//!   boundaries" (IAM User Guide, *IAM JSON policy elements: Resource*,
//!   "Using wildcards in resource ARNs").
//! * [`Flavor::Literal`] — `StringEquals` and friends: `*` and `?` are
//!   ordinary characters.
//!
//! Policy variables. In a `"Version": "2012-10-17"` document `${...}` is a
//! policy variable. This crate supports only the three escapes `${*}`,
//! `${?}` and `${$}` (a literal `*`, `?`, `$`); any other variable such as
//! `${aws:username}` is rejected when the policy is parsed, so it can never
//! match (or fail to match) by accident. In `2008-10-17` documents and
//! documents without `Version`, IAM treats `${` as literal text, and so do we.
//!
//! Matching is a dynamic programme over (pattern token, text position): time
//! `O(pattern × text)`, memory `O(text)`, no backtracking blow-up whatever
//! the pattern.

/// The text of a pattern without wildcards (`StringEquals` values), with
/// the variable escapes resolved.
pub(crate) fn literal(source: &str, variables: bool) -> Result<String, String> {
    Ok(resolve(source, Flavor::Literal, variables)?.into_iter().map(|(c, _)| c).collect())
}

/// The characters of `source` with escapes resolved; `true` marks a
/// wildcard. With `variables` (a 2012-10-17 document) `${...}` is a policy
/// variable: the escapes `${*}`, `${?}`, `${$}` are supported, anything else
/// is an error whose text names the variable.
fn resolve(source: &str, flavor: Flavor, variables: bool) -> Result<Vec<(char, bool)>, String> {
    let mut chars: Vec<(char, bool)> = Vec::with_capacity(source.len());
    let mut rest = source;
    while let Some(c) = rest.chars().next() {
        if variables && rest.starts_with("${") {
            let Some(end) = rest.find('}') else {
                return Err(format!("unterminated policy variable in \"{source}\""));
            };
            let name = &rest[2..end];
            let literal = match name {
                "*" => '*',
                "?" => '?',
                "$" => '$',
                _ => {
                    return Err(format!(
                        "policy variable \"${{{name}}}\" is not supported \
                         (only the escapes ${{*}}, ${{?}} and ${{$}} are)"
                    ));
                }
            };
            chars.push((literal, false));
            rest = &rest[end + 1..];
            continue;
        }
        let wildcard = flavor != Flavor::Literal && (c == '*' || c == '?');
        chars.push((c, wildcard));
        rest = &rest[c.len_utf8()..];
    }
    Ok(chars)
}

/// How `*` and `?` are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// No wildcards: the pattern must equal the text.
    Literal,
    /// `*` any run, `?` any character.
    Plain,
    /// Resource ARN rules: see the module docs.
    Arn,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// This exact character.
    Char(char),
    /// Any one character (but not `:` when `in_segment`).
    One { in_segment: bool },
    /// Any run of characters (without `:` when `in_segment`).
    Star { in_segment: bool },
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    /// `Some` when the pattern has no wildcards: compared with `==`.
    literal: Option<String>,
    tokens: Vec<Token>,
}

impl Pattern {
    /// Compiles `source`; see [`resolve`] for `variables`.
    pub(crate) fn compile(source: &str, flavor: Flavor, variables: bool) -> Result<Self, String> {
        let chars = resolve(source, flavor, variables)?;
        if chars.iter().all(|&(_, w)| !w) {
            return Ok(Pattern {
                literal: Some(chars.iter().map(|&(c, _)| c).collect()),
                tokens: Vec::new(),
            });
        }

        let mut tokens = Vec::with_capacity(chars.len());
        for (i, &(c, wildcard)) in chars.iter().enumerate() {
            let token = match (c, wildcard) {
                (_, false) => Token::Char(c),
                ('?', true) => Token::One { in_segment: flavor == Flavor::Arn },
                (_, true) => {
                    // A `*` ending a segment (next is a literal `:` or the
                    // end of the pattern) may cross colons.
                    let ends_segment = matches!(chars.get(i + 1), None | Some((':', false)));
                    Token::Star { in_segment: flavor == Flavor::Arn && !ends_segment }
                }
            };
            // `**` is the same as `*`; keep the DP rows short.
            if matches!(token, Token::Star { .. }) && tokens.last() == Some(&token) {
                continue;
            }
            tokens.push(token);
        }
        Ok(Pattern { literal: None, tokens })
    }

    /// True when `text` matches the whole pattern.
    pub(crate) fn matches(&self, text: &str) -> bool {
        if let Some(literal) = &self.literal {
            return literal == text;
        }
        let n = text.chars().count();
        // row[j]: the tokens so far match the first j characters of text.
        let mut row = vec![false; n + 1];
        let mut next = vec![false; n + 1];
        row[0] = true;
        for token in &self.tokens {
            match *token {
                Token::Char(p) => {
                    next[0] = false;
                    for (j, c) in text.chars().enumerate() {
                        next[j + 1] = row[j] && c == p;
                    }
                }
                Token::One { in_segment } => {
                    next[0] = false;
                    for (j, c) in text.chars().enumerate() {
                        next[j + 1] = row[j] && !(in_segment && c == ':');
                    }
                }
                Token::Star { in_segment } => {
                    next[0] = row[0];
                    for (j, c) in text.chars().enumerate() {
                        next[j + 1] = row[j + 1] || (next[j] && !(in_segment && c == ':'));
                    }
                }
            }
            std::mem::swap(&mut row, &mut next);
            if !row.contains(&true) {
                return false;
            }
        }
        row[n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, flavor: Flavor, text: &str) -> bool {
        Pattern::compile(pattern, flavor, true).unwrap().matches(text)
    }

    #[test]
    fn plain_star_and_question_mark() {
        assert!(m("ec2:describe*", Flavor::Plain, "ec2:describeinstances"));
        assert!(m("ec2:*instance*", Flavor::Plain, "ec2:runinstances"));
        assert!(m("ec2:*instance*", Flavor::Plain, "ec2:modifyinstancemetadataoptions"));
        assert!(!m("ec2:*instance*", Flavor::Plain, "ec2:createtags"));
        assert!(m("ec2:?tartinstances", Flavor::Plain, "ec2:startinstances"));
        assert!(!m("ec2:?tartinstances", Flavor::Plain, "ec2:tartinstances"));
        assert!(m("*", Flavor::Plain, ""));
        assert!(m("a**b", Flavor::Plain, "ab"));
        assert!(m("a*b*c", Flavor::Plain, "a:b:c"));
        assert!(!m("a*b*c", Flavor::Plain, "a:b:d"));
    }

    #[test]
    fn literal_flavor_treats_wildcards_as_characters() {
        assert!(m("a*", Flavor::Literal, "a*"));
        assert!(!m("a*", Flavor::Literal, "ab"));
        assert!(!m("a?", Flavor::Literal, "ab"));
    }

    #[test]
    fn arn_star_stays_in_its_segment_unless_it_ends_it() {
        let arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0";
        assert!(m("arn:aws:ec2:*:*:instance/*", Flavor::Arn, arn));
        assert!(m("arn:aws:ec2:us-*:*:instance/i-*", Flavor::Arn, arn));
        assert!(!m("arn:aws:ec2:*:*:volume/*", Flavor::Arn, arn));
        // A trailing `*` expands beyond the colons (documented IAM behaviour).
        assert!(m("arn:aws:ec2:*", Flavor::Arn, arn));
        // A `*` inside a segment does not.
        assert!(!m("arn:aws:e*1:123456789012:instance/i-0123456789abcdef0", Flavor::Arn, arn));
        assert!(!m("arn:aws:ec2:us-east-1:123456789012:instance/?", Flavor::Arn, arn));
        assert!(m("arn:aws:ec2:us-east-?:123456789012:instance/i-0123456789abcdef?", Flavor::Arn, arn));
        assert!(!m("arn:aws:ec2:us-east-1?123456789012:instance/*", Flavor::Arn, arn));
        assert!(m("*", Flavor::Arn, arn));
        assert!(m("*", Flavor::Arn, "*"));
        assert!(!m("arn:aws:ec2:*:*:instance/*", Flavor::Arn, "*"));
    }

    #[test]
    fn matching_is_case_sensitive() {
        assert!(!m("ARN:*", Flavor::Arn, "arn:aws:ec2:::x"));
        assert!(!m("abc", Flavor::Literal, "ABC"));
    }

    #[test]
    fn variable_escapes_are_literal_characters() {
        assert!(m("a${*}", Flavor::Plain, "a*"));
        assert!(!m("a${*}", Flavor::Plain, "ab"));
        assert!(m("${?}${$}", Flavor::Plain, "?$"));
    }

    #[test]
    fn other_variables_are_rejected_in_2012_documents() {
        let err = Pattern::compile("user/${aws:username}", Flavor::Arn, true).unwrap_err();
        assert!(err.contains("${aws:username}"), "{err}");
        assert!(Pattern::compile("x${", Flavor::Plain, true).is_err());
    }

    #[test]
    fn variables_are_literal_text_in_2008_documents() {
        let p = Pattern::compile("user/${aws:username}", Flavor::Plain, false).unwrap();
        assert!(p.matches("user/${aws:username}"));
        assert!(!p.matches("user/alice"));
    }

    #[test]
    fn non_ascii_text_is_matched_by_character() {
        assert!(m("caf?", Flavor::Plain, "café"));
        assert!(m("*é", Flavor::Plain, "café"));
    }

    #[test]
    fn long_adversarial_patterns_finish() {
        let pattern = "*a".repeat(200) + "b";
        let text = "a".repeat(2000);
        assert!(!m(&pattern, Flavor::Plain, &text));
    }
}
