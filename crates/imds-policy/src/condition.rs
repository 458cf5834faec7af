//! The `Condition` element: operators, their parsing and their evaluation
//! against a [`Context`].
//!
//! Semantics, as the IAM User Guide documents them (*IAM JSON policy
//! elements: Condition* and *Condition operators*, and *Multivalued context
//! keys*):
//!
//! * several operators in one block, and several keys under one operator,
//!   are ANDed; several policy values for one key are ORed;
//! * "If the key that you specify in a policy condition is not present in the
//!   request context, the values do not match and the condition is false. If
//!   the policy condition requires that the key is not matched, such as
//!   `StringNotLike` or `ArnNotLike`, and the right key is not present, the
//!   condition is true. This logic applies to all condition operators except
//!   `...IfExists` and Null check." So an absent key makes `StringEquals`
//!   false and `StringNotEquals` true;
//! * `...IfExists`: an absent key makes the condition true;
//! * `Null`: `"true"` holds when the key is absent, `"false"` when present;
//! * a negated operator (`StringNotEquals`, `StringNotLike`, ...) holds when
//!   no request value matches any policy value;
//! * `ForAnyValue:` holds when at least one request value satisfies the
//!   operator (false when the key is absent); `ForAllValues:` holds when
//!   every request value satisfies it (true when the key is absent). With a
//!   negated operator, "satisfies" means "matches none of the policy values".
//!
//! Unsupported operators (`Date*`, `IpAddress`, `Binary*`, ...) are parse
//! errors: a policy that cannot be evaluated faithfully is refused rather
//! than half-evaluated.

use crate::PolicyError;
use crate::context::{Context, normalize_key};
use crate::glob::{Flavor, Pattern};
use crate::json::Json;

/// One (operator, key) pair of a `Condition` block.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    /// Lower-cased context key.
    key: String,
    set: SetOperator,
    /// `...Not...` operators: the condition holds when nothing matches.
    negated: bool,
    if_exists: bool,
    test: Test,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetOperator {
    None,
    ForAnyValue,
    ForAllValues,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumericOp {
    Equals,
    LessThan,
    LessThanEquals,
    GreaterThan,
    GreaterThanEquals,
}

/// The positive test of one request value against the policy values.
#[derive(Debug, Clone, PartialEq)]
enum Test {
    /// Exact, case-sensitive.
    StringEquals(Vec<String>),
    /// Exact, case-insensitive: policy values lower-cased at parse time.
    StringEqualsIgnoreCase(Vec<String>),
    /// Case-sensitive wildcard match.
    StringLike(Vec<Pattern>),
    Numeric(NumericOp, Vec<f64>),
    Bool(Vec<bool>),
    /// `ArnEquals` and `ArnLike`, which IAM documents identically: each of
    /// the six colon-separated parts is matched on its own, with wildcards.
    Arn(Vec<[Pattern; 6]>),
    /// `Null`: expected absence of the key.
    Null(Vec<bool>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    StringEquals,
    StringEqualsIgnoreCase,
    StringLike,
    Numeric(NumericOp),
    Bool,
    Arn,
    Null,
}

/// Operator names (after the set prefix and `IfExists` suffix are removed)
/// and what they mean: (name, base test, negated). Names are case-sensitive,
/// as IAM's (`stringEquals` is rejected with "Invalid Condition type").
const OPERATORS: &[(&str, Base, bool)] = &[
    ("StringEquals", Base::StringEquals, false),
    ("StringNotEquals", Base::StringEquals, true),
    ("StringEqualsIgnoreCase", Base::StringEqualsIgnoreCase, false),
    ("StringNotEqualsIgnoreCase", Base::StringEqualsIgnoreCase, true),
    ("StringLike", Base::StringLike, false),
    ("StringNotLike", Base::StringLike, true),
    ("NumericEquals", Base::Numeric(NumericOp::Equals), false),
    ("NumericNotEquals", Base::Numeric(NumericOp::Equals), true),
    ("NumericLessThan", Base::Numeric(NumericOp::LessThan), false),
    ("NumericLessThanEquals", Base::Numeric(NumericOp::LessThanEquals), false),
    ("NumericGreaterThan", Base::Numeric(NumericOp::GreaterThan), false),
    ("NumericGreaterThanEquals", Base::Numeric(NumericOp::GreaterThanEquals), false),
    ("Bool", Base::Bool, false),
    ("ArnEquals", Base::Arn, false),
    ("ArnLike", Base::Arn, false),
    ("ArnNotEquals", Base::Arn, true),
    ("ArnNotLike", Base::Arn, true),
    ("Null", Base::Null, false),
];

/// Parses a whole `Condition` element at `path` (e.g. `Statement[0].Condition`).
pub(crate) fn parse_block(value: &Json, path: &str, variables: bool) -> Result<Vec<Condition>, PolicyError> {
    let Json::Object(operators) = value else {
        return Err(PolicyError::Invalid(format!(
            "{path} must be an object of condition operators, found {}",
            value.kind()
        )));
    };
    let mut out = Vec::new();
    for (operator, keys) in operators {
        let op_path = format!("{path}.{operator}");
        let (set, base, negated, if_exists) = parse_operator(operator).ok_or_else(|| {
            PolicyError::Invalid(format!("{path}: unknown or unsupported condition operator \"{operator}\""))
        })?;
        let Json::Object(keys) = keys else {
            return Err(PolicyError::Invalid(format!(
                "{op_path} must be an object mapping condition keys to values, found {}",
                keys.kind()
            )));
        };
        if keys.is_empty() {
            return Err(PolicyError::Invalid(format!("{op_path} must name at least one condition key")));
        }
        for (key, values) in keys {
            let key_path = format!("{op_path}.{key}");
            if key.is_empty() {
                return Err(PolicyError::Invalid(format!("{op_path} has an empty condition key")));
            }
            let values = scalar_values(values, &key_path)?;
            let test = parse_test(base, &values, &key_path, variables)?;
            out.push(Condition { key: normalize_key(key), set, negated, if_exists, test });
        }
    }
    Ok(out)
}

fn parse_operator(name: &str) -> Option<(SetOperator, Base, bool, bool)> {
    let (set, rest) = if let Some(rest) = name.strip_prefix("ForAnyValue:") {
        (SetOperator::ForAnyValue, rest)
    } else if let Some(rest) = name.strip_prefix("ForAllValues:") {
        (SetOperator::ForAllValues, rest)
    } else {
        (SetOperator::None, name)
    };
    let (rest, if_exists) = match rest.strip_suffix("IfExists") {
        Some(stripped) => (stripped, true),
        None => (rest, false),
    };
    let &(_, base, negated) = OPERATORS.iter().find(|(n, _, _)| *n == rest)?;
    // `Null` is itself an existence test: no `IfExists`, no set prefix.
    if base == Base::Null && (if_exists || set != SetOperator::None) {
        return None;
    }
    Some((set, base, negated, if_exists))
}

/// A condition value: a string, number or boolean, or a non-empty array of
/// them. Numbers and booleans are compared as their JSON text.
fn scalar_values(value: &Json, path: &str) -> Result<Vec<String>, PolicyError> {
    fn scalar(v: &Json) -> Option<String> {
        match v {
            Json::String(s) | Json::Number(s) => Some(s.clone()),
            Json::Bool(b) => Some(b.to_string()),
            Json::Null | Json::Array(_) | Json::Object(_) => None,
        }
    }
    let bad = |found: &Json| {
        PolicyError::Invalid(format!(
            "{path} must be a string, number or boolean, or an array of them, found {}",
            found.kind()
        ))
    };
    match value {
        Json::Array(items) => {
            if items.is_empty() {
                return Err(PolicyError::Invalid(format!("{path} must have at least one value")));
            }
            items.iter().map(|item| scalar(item).ok_or_else(|| bad(item))).collect()
        }
        other => Ok(vec![scalar(other).ok_or_else(|| bad(other))?]),
    }
}

fn parse_test(base: Base, values: &[String], path: &str, variables: bool) -> Result<Test, PolicyError> {
    let literal = |v: &String| {
        crate::glob::literal(v, variables).map_err(|e| PolicyError::Invalid(format!("{path}: {e}")))
    };
    Ok(match base {
        Base::StringEquals => Test::StringEquals(values.iter().map(literal).collect::<Result<_, _>>()?),
        Base::StringEqualsIgnoreCase => Test::StringEqualsIgnoreCase(
            values.iter().map(|v| literal(v).map(|s| s.to_lowercase())).collect::<Result<_, _>>()?,
        ),
        Base::StringLike => Test::StringLike(
            values
                .iter()
                .map(|v| {
                    Pattern::compile(v, Flavor::Plain, variables)
                        .map_err(|e| PolicyError::Invalid(format!("{path}: {e}")))
                })
                .collect::<Result<_, _>>()?,
        ),
        Base::Numeric(op) => Test::Numeric(
            op,
            values
                .iter()
                .map(|v| {
                    parse_number(v)
                        .ok_or_else(|| PolicyError::Invalid(format!("{path}: \"{v}\" is not a number")))
                })
                .collect::<Result<_, _>>()?,
        ),
        Base::Bool => Test::Bool(
            values
                .iter()
                .map(|v| {
                    parse_bool(v)
                        .ok_or_else(|| PolicyError::Invalid(format!("{path}: \"{v}\" is not true or false")))
                })
                .collect::<Result<_, _>>()?,
        ),
        Base::Null => Test::Null(
            values
                .iter()
                .map(|v| {
                    parse_bool(v)
                        .ok_or_else(|| PolicyError::Invalid(format!("{path}: \"{v}\" is not true or false")))
                })
                .collect::<Result<_, _>>()?,
        ),
        Base::Arn => {
            Test::Arn(values.iter().map(|v| parse_arn_pattern(v, path, variables)).collect::<Result<_, _>>()?)
        }
    })
}

fn parse_arn_pattern(value: &str, path: &str, variables: bool) -> Result<[Pattern; 6], PolicyError> {
    let parts = split_arn(value).ok_or_else(|| {
        PolicyError::Invalid(format!(
            "{path}: \"{value}\" is not an ARN (arn:partition:service:region:account:resource)"
        ))
    })?;
    let compile = |s: &str| {
        Pattern::compile(s, Flavor::Plain, variables)
            .map_err(|e| PolicyError::Invalid(format!("{path}: {e}")))
    };
    Ok([
        compile(parts[0])?,
        compile(parts[1])?,
        compile(parts[2])?,
        compile(parts[3])?,
        compile(parts[4])?,
        compile(parts[5])?,
    ])
}

/// The six colon-separated parts of an ARN; the last keeps any further
/// colons. `None` when there are fewer than six.
pub(crate) fn split_arn(value: &str) -> Option<[&str; 6]> {
    let mut it = value.splitn(6, ':');
    Some([it.next()?, it.next()?, it.next()?, it.next()?, it.next()?, it.next()?])
}

/// A decimal number: optional sign, digits with an optional fraction,
/// optional exponent. `2`, `2.0` and `+2.` are equal; `NaN`, `inf` and
/// hexadecimal are not numbers.
fn parse_number(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() && frac.is_empty() || !digits(int) || !digits(frac) {
        return None;
    }
    if let Some(exp) = exponent {
        let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
        if exp.is_empty() || !digits(exp) {
            return None;
        }
    }
    s.parse::<f64>().ok().filter(|n| n.is_finite())
}

fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

impl Test {
    /// True when the request value `v` matches at least one policy value.
    fn matches(&self, v: &str) -> bool {
        match self {
            Test::StringEquals(expected) => expected.iter().any(|e| e == v),
            Test::StringEqualsIgnoreCase(expected) => {
                let v = v.to_lowercase();
                expected.contains(&v)
            }
            Test::StringLike(patterns) => patterns.iter().any(|p| p.matches(v)),
            Test::Numeric(op, expected) => {
                // A request value that is not a number matches nothing.
                let Some(n) = parse_number(v) else {
                    return false;
                };
                expected.iter().any(|&e| match op {
                    NumericOp::Equals => n == e,
                    NumericOp::LessThan => n < e,
                    NumericOp::LessThanEquals => n <= e,
                    NumericOp::GreaterThan => n > e,
                    NumericOp::GreaterThanEquals => n >= e,
                })
            }
            Test::Bool(expected) => parse_bool(v).is_some_and(|b| expected.contains(&b)),
            Test::Arn(patterns) => split_arn(v).is_some_and(|parts| {
                patterns.iter().any(|p| p.iter().zip(parts).all(|(p, part)| p.matches(part)))
            }),
            // Handled by `Condition::holds` before any value is looked at.
            Test::Null(_) => false,
        }
    }
}

impl Condition {
    /// Does this condition hold for `ctx`?
    pub(crate) fn holds(&self, ctx: &Context) -> bool {
        let values = ctx.get_normalized(&self.key);
        if let Test::Null(expect_absent) = &self.test {
            let absent = values.is_none();
            return expect_absent.contains(&absent);
        }
        let Some(values) = values else {
            // IAM: absent key → no match → false, except that negated
            // operators are then true, `...IfExists` is true, and
            // `ForAllValues` over an empty set is (vacuously) true.
            return match self.set {
                SetOperator::None => self.negated || self.if_exists,
                SetOperator::ForAnyValue => self.if_exists,
                SetOperator::ForAllValues => true,
            };
        };
        let matches = |v: &String| self.test.matches(v);
        match (self.set, self.negated) {
            (SetOperator::None | SetOperator::ForAnyValue, false) => values.iter().any(matches),
            (SetOperator::None | SetOperator::ForAllValues, true) => !values.iter().any(matches),
            (SetOperator::ForAnyValue, true) => !values.iter().all(matches),
            (SetOperator::ForAllValues, false) => values.iter().all(matches),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(json: &str) -> Vec<Condition> {
        let j: Json = serde_json::from_str(json).unwrap();
        parse_block(&j, "Condition", true).unwrap()
    }

    fn holds(json: &str, ctx: &Context) -> bool {
        cond(json).iter().all(|c| c.holds(ctx))
    }

    fn err(json: &str) -> String {
        let j: Json = serde_json::from_str(json).unwrap();
        match parse_block(&j, "Statement[0].Condition", true).unwrap_err() {
            PolicyError::Invalid(s) => s,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn numbers_compare_as_numbers() {
        assert_eq!(parse_number("2"), parse_number("2.0"));
        assert_eq!(parse_number("+2."), Some(2.0));
        assert_eq!(parse_number("-.5"), Some(-0.5));
        assert_eq!(parse_number("1e3"), Some(1000.0));
        for bad in ["", ".", "NaN", "inf", "infinity", "0x10", "1e", "1.2.3", " 1", "--1", "1e400"] {
            assert_eq!(parse_number(bad), None, "{bad:?}");
        }
        let ctx = Context::new().with("ec2:RoleDelivery", "2");
        assert!(holds(r#"{"NumericEquals": {"ec2:RoleDelivery": "2.0"}}"#, &ctx));
        assert!(holds(r#"{"NumericEquals": {"ec2:RoleDelivery": 2.0}}"#, &ctx));
        assert!(!holds(r#"{"NumericNotEquals": {"ec2:RoleDelivery": 2}}"#, &ctx));
        assert!(holds(r#"{"NumericLessThanEquals": {"ec2:RoleDelivery": 2}}"#, &ctx));
        assert!(holds(r#"{"NumericGreaterThanEquals": {"ec2:RoleDelivery": "2"}}"#, &ctx));
        assert!(!holds(r#"{"NumericGreaterThan": {"ec2:RoleDelivery": "2"}}"#, &ctx));
        // Not lexicographic: 10 > 9.
        let ctx = Context::new().with("ec2:MetadataHttpPutResponseHopLimit", "10");
        assert!(holds(r#"{"NumericGreaterThan": {"ec2:MetadataHttpPutResponseHopLimit": 9}}"#, &ctx));
    }

    #[test]
    fn a_request_value_that_is_not_a_number_matches_nothing() {
        let ctx = Context::new().with("k:n", "many");
        assert!(!holds(r#"{"NumericLessThan": {"k:n": 3}}"#, &ctx));
        assert!(!holds(r#"{"NumericGreaterThanEquals": {"k:n": 3}}"#, &ctx));
        assert!(holds(r#"{"NumericNotEquals": {"k:n": 3}}"#, &ctx));
    }

    #[test]
    fn multiple_policy_values_are_ored_and_negation_needs_none_to_match() {
        let ctx = Context::new().with("k:s", "b");
        assert!(holds(r#"{"StringEquals": {"k:s": ["a", "b"]}}"#, &ctx));
        assert!(!holds(r#"{"StringEquals": {"k:s": ["a", "c"]}}"#, &ctx));
        assert!(!holds(r#"{"StringNotEquals": {"k:s": ["a", "b"]}}"#, &ctx));
        assert!(holds(r#"{"StringNotEquals": {"k:s": ["a", "c"]}}"#, &ctx));
    }

    #[test]
    fn keys_and_operators_are_anded() {
        let ctx = Context::new().with("k:a", "1").with("k:b", "2");
        assert!(holds(r#"{"StringEquals": {"k:a": "1", "k:b": "2"}}"#, &ctx));
        assert!(!holds(r#"{"StringEquals": {"k:a": "1", "k:b": "3"}}"#, &ctx));
        assert!(!holds(r#"{"StringEquals": {"k:a": "1"}, "NumericGreaterThan": {"k:b": 2}}"#, &ctx));
        assert!(holds(r#"{"StringEquals": {"k:a": "1"}, "NumericGreaterThan": {"k:b": 1}}"#, &ctx));
    }

    /// IAM User Guide, *Condition operators*: "If the key that you specify in
    /// a policy condition is not present in the request context, the values do
    /// not match and the condition is false. If the policy condition requires
    /// that the key is not matched, such as StringNotLike or ArnNotLike, and
    /// the right key is not present, the condition is true."
    #[test]
    fn absent_key_is_false_for_positive_and_true_for_negated_operators() {
        let empty = Context::new();
        for positive in [
            r#"{"StringEquals": {"k:x": "a"}}"#,
            r#"{"StringEqualsIgnoreCase": {"k:x": "a"}}"#,
            r#"{"StringLike": {"k:x": "*"}}"#,
            r#"{"NumericEquals": {"k:x": 1}}"#,
            r#"{"NumericLessThan": {"k:x": 1}}"#,
            r#"{"NumericLessThanEquals": {"k:x": 1}}"#,
            r#"{"NumericGreaterThan": {"k:x": 1}}"#,
            r#"{"NumericGreaterThanEquals": {"k:x": 1}}"#,
            r#"{"Bool": {"k:x": "false"}}"#,
            r#"{"ArnEquals": {"k:x": "arn:aws:iam::1:role/a"}}"#,
            r#"{"ArnLike": {"k:x": "arn:*:*:*:*:*"}}"#,
            r#"{"ForAnyValue:StringEquals": {"k:x": "a"}}"#,
            r#"{"ForAnyValue:StringNotEquals": {"k:x": "a"}}"#,
        ] {
            assert!(!holds(positive, &empty), "{positive}");
        }
        for negated in [
            r#"{"StringNotEquals": {"k:x": "a"}}"#,
            r#"{"StringNotEqualsIgnoreCase": {"k:x": "a"}}"#,
            r#"{"StringNotLike": {"k:x": "*"}}"#,
            r#"{"NumericNotEquals": {"k:x": 1}}"#,
            r#"{"ArnNotEquals": {"k:x": "arn:aws:iam::1:role/a"}}"#,
            r#"{"ArnNotLike": {"k:x": "arn:*:*:*:*:*"}}"#,
            r#"{"ForAllValues:StringEquals": {"k:x": "a"}}"#,
            r#"{"ForAllValues:StringNotEquals": {"k:x": "a"}}"#,
        ] {
            assert!(holds(negated, &empty), "{negated}");
        }
    }

    #[test]
    fn if_exists_is_true_when_absent_and_a_normal_test_when_present() {
        let empty = Context::new();
        let json = r#"{"StringEqualsIfExists": {"ec2:MetadataHttpTokens": "required"}}"#;
        assert!(holds(json, &empty));
        assert!(holds(json, &Context::new().with("ec2:MetadataHttpTokens", "required")));
        assert!(!holds(json, &Context::new().with("ec2:MetadataHttpTokens", "optional")));

        let json = r#"{"NumericLessThanIfExists": {"ec2:RoleDelivery": 2}}"#;
        assert!(holds(json, &empty));
        assert!(holds(json, &Context::new().with("ec2:RoleDelivery", "1.0")));
        assert!(!holds(json, &Context::new().with("ec2:RoleDelivery", "2.0")));

        // Negated + IfExists: absent is true either way.
        let json = r#"{"StringNotEqualsIfExists": {"k:x": "a"}}"#;
        assert!(holds(json, &empty));
        assert!(!holds(json, &Context::new().with("k:x", "a")));

        let json = r#"{"ForAnyValue:StringEqualsIfExists": {"k:x": "a"}}"#;
        assert!(holds(json, &empty));
        assert!(!holds(json, &Context::new().with("k:x", "b")));
    }

    #[test]
    fn null_checks_presence() {
        let with = Context::new().with("aws:TokenIssueTime", "2024-01-01T00:00:00Z");
        let without = Context::new();
        let is_null = r#"{"Null": {"aws:TokenIssueTime": "true"}}"#;
        let not_null = r#"{"Null": {"aws:TokenIssueTime": false}}"#;
        assert!(holds(is_null, &without));
        assert!(!holds(is_null, &with));
        assert!(holds(not_null, &with));
        assert!(!holds(not_null, &without));
        // An empty value list is the same as absent.
        let empty_values = Context::new().with_all("aws:TokenIssueTime", Vec::<String>::new());
        assert!(holds(is_null, &empty_values));
    }

    #[test]
    fn bool_compares_true_and_false_case_insensitively() {
        let json = r#"{"Bool": {"aws:SecureTransport": "true"}}"#;
        assert!(holds(json, &Context::new().with("aws:SecureTransport", "true")));
        assert!(holds(json, &Context::new().with("aws:SecureTransport", "TRUE")));
        assert!(!holds(json, &Context::new().with("aws:SecureTransport", "false")));
        assert!(!holds(json, &Context::new().with("aws:SecureTransport", "yes")));
        let json = r#"{"Bool": {"aws:SecureTransport": false}}"#;
        assert!(holds(json, &Context::new().with("aws:SecureTransport", "false")));
    }

    #[test]
    fn string_operators_respect_case_as_documented() {
        let ctx = Context::new().with("ec2:ResourceTag/Environment", "Prod");
        assert!(holds(r#"{"StringEquals": {"ec2:ResourceTag/Environment": "Prod"}}"#, &ctx));
        assert!(!holds(r#"{"StringEquals": {"ec2:ResourceTag/Environment": "prod"}}"#, &ctx));
        assert!(holds(r#"{"StringEqualsIgnoreCase": {"ec2:ResourceTag/Environment": "PROD"}}"#, &ctx));
        assert!(!holds(r#"{"StringNotEqualsIgnoreCase": {"ec2:ResourceTag/Environment": "pRoD"}}"#, &ctx));
        assert!(holds(r#"{"StringLike": {"ec2:ResourceTag/Environment": "P?o*"}}"#, &ctx));
        assert!(!holds(r#"{"StringLike": {"ec2:ResourceTag/Environment": "p*"}}"#, &ctx));
        assert!(holds(r#"{"StringNotLike": {"ec2:ResourceTag/Environment": "Dev*"}}"#, &ctx));
        // StringEquals has no wildcards.
        assert!(!holds(r#"{"StringEquals": {"ec2:ResourceTag/Environment": "*"}}"#, &ctx));
    }

    #[test]
    fn condition_key_names_are_case_insensitive() {
        let ctx = Context::new().with("EC2:RESOURCETAG/ENVIRONMENT", "Prod");
        assert!(holds(r#"{"StringEquals": {"ec2:ResourceTag/Environment": "Prod"}}"#, &ctx));
        let ctx = Context::new().with("aws:principalarn", "arn:aws:iam::1:role/r");
        assert!(holds(r#"{"ArnEquals": {"AWS:PrincipalARN": "arn:aws:iam::1:role/r"}}"#, &ctx));
    }

    #[test]
    fn arn_operators_match_segment_by_segment() {
        let ctx = Context::new().with("aws:PrincipalArn", "arn:aws:iam::123456789012:role/ec2-imds-admins");
        assert!(holds(r#"{"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/ec2-imds-*"}}"#, &ctx));
        assert!(holds(
            r#"{"ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/ec2-imds-admins"}}"#,
            &ctx
        ));
        assert!(!holds(r#"{"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/*"}}"#, &ctx));
        // Each part must match whole.
        assert!(!holds(r#"{"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/ec2-imds"}}"#, &ctx));
        assert!(!holds(r#"{"ArnLike": {"aws:PrincipalArn": "arn:aws:iam:us-*:*:role/*"}}"#, &ctx));
        assert!(holds(r#"{"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/*"}}"#, &ctx));
        assert!(!holds(r#"{"ArnNotEquals": {"aws:PrincipalArn": "arn:aws:iam::*:role/*"}}"#, &ctx));
        // A request value that is not an ARN matches nothing.
        let ctx = Context::new().with("aws:PrincipalArn", "not-an-arn");
        assert!(!holds(r#"{"ArnLike": {"aws:PrincipalArn": "arn:*:*:*:*:*"}}"#, &ctx));
        assert!(holds(r#"{"ArnNotLike": {"aws:PrincipalArn": "arn:*:*:*:*:*"}}"#, &ctx));
    }

    #[test]
    fn for_any_value_needs_one_matching_request_value() {
        let ctx = Context::new().with_all("ec2:Attribute", ["HttpTokens", "HttpEndpoint"]);
        assert!(holds(r#"{"ForAnyValue:StringEquals": {"ec2:Attribute": "HttpTokens"}}"#, &ctx));
        assert!(!holds(r#"{"ForAnyValue:StringEquals": {"ec2:Attribute": "UserData"}}"#, &ctx));
        // At least one request value matching none of the policy values.
        assert!(holds(r#"{"ForAnyValue:StringNotEquals": {"ec2:Attribute": "HttpTokens"}}"#, &ctx));
        assert!(!holds(
            r#"{"ForAnyValue:StringNotEquals": {"ec2:Attribute": ["HttpTokens", "HttpEndpoint"]}}"#,
            &ctx
        ));
    }

    #[test]
    fn for_all_values_needs_every_request_value_to_match() {
        let ctx = Context::new().with_all("ec2:Attribute", ["HttpTokens", "HttpEndpoint"]);
        assert!(holds(
            r#"{"ForAllValues:StringEquals": {"ec2:Attribute": ["HttpTokens", "HttpEndpoint", "X"]}}"#,
            &ctx
        ));
        assert!(!holds(r#"{"ForAllValues:StringEquals": {"ec2:Attribute": "HttpTokens"}}"#, &ctx));
        assert!(holds(r#"{"ForAllValues:StringLike": {"ec2:Attribute": "Http*"}}"#, &ctx));
        assert!(!holds(r#"{"ForAllValues:StringNotEquals": {"ec2:Attribute": "HttpTokens"}}"#, &ctx));
        assert!(holds(r#"{"ForAllValues:StringNotEquals": {"ec2:Attribute": "UserData"}}"#, &ctx));
    }

    #[test]
    fn plain_operator_on_a_multivalued_key_is_any_for_positive_and_none_for_negated() {
        let ctx = Context::new().with_all("ec2:Attribute", ["HttpTokens", "HttpEndpoint"]);
        assert!(holds(r#"{"StringEquals": {"ec2:Attribute": "HttpTokens"}}"#, &ctx));
        assert!(!holds(r#"{"StringNotEquals": {"ec2:Attribute": "HttpTokens"}}"#, &ctx));
        assert!(holds(r#"{"StringNotEquals": {"ec2:Attribute": "UserData"}}"#, &ctx));
    }

    #[test]
    fn unknown_and_unsupported_operators_are_rejected() {
        for op in [
            "StringEqual",
            "stringEquals",
            "DateLessThan",
            "IpAddress",
            "BinaryEquals",
            "NullIfExists",
            "ForAnyValue:Null",
            "ForSomeValues:StringEquals",
            "IfExists",
        ] {
            let e = err(&format!(r#"{{"{op}": {{"k:x": "a"}}}}"#));
            assert!(e.contains(&format!("unknown or unsupported condition operator \"{op}\"")), "{e}");
            assert!(e.starts_with("Statement[0].Condition"), "{e}");
        }
    }

    #[test]
    fn bad_values_are_rejected_with_their_path() {
        let e = err(r#"{"NumericLessThan": {"ec2:RoleDelivery": "two"}}"#);
        assert_eq!(e, "Statement[0].Condition.NumericLessThan.ec2:RoleDelivery: \"two\" is not a number");
        let e = err(r#"{"Bool": {"aws:SecureTransport": "yes"}}"#);
        assert!(e.contains("\"yes\" is not true or false"), "{e}");
        let e = err(r#"{"StringEquals": {"k:x": []}}"#);
        assert!(e.contains("must have at least one value"), "{e}");
        let e = err(r#"{"StringEquals": {"k:x": {"a": 1}}}"#);
        assert!(e.contains("found an object"), "{e}");
        let e = err(r#"{"StringEquals": {"k:x": [null]}}"#);
        assert!(e.contains("found null"), "{e}");
        let e = err(r#"{"StringEquals": {}}"#);
        assert!(e.contains("at least one condition key"), "{e}");
        let e = err(r#"{"StringEquals": "x"}"#);
        assert!(e.contains("must be an object"), "{e}");
        let e = err(r#"{"ArnLike": {"aws:PrincipalArn": "role/x"}}"#);
        assert!(e.contains("is not an ARN"), "{e}");
        let e = err(r#"{"StringLike": {"aws:PrincipalArn": "${aws:username}"}}"#);
        assert!(e.contains("policy variable \"${aws:username}\" is not supported"), "{e}");
    }
}
