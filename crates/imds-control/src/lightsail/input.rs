//! The request body of an awsJson 1.1 call, read strictly: a JSON object
//! whose members are those of the operation's input shape (botocore's
//! serializer never sends others, so an unknown member is a client bug —
//! e.g. `HttpTokens` for `httpTokens` — and is refused rather than
//! silently ignored), each of the JSON type the model says. `null` counts
//! as absent, as SDKs that serialise unset members as `null` expect. An
//! empty body is `{}`.

use super::error::LsError;
use serde_json::{Map, Value};

/// A JSON object of input members.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    map: &'a Map<String, Value>,
    /// Dotted path of this object for messages (`""` at the top).
    path: &'a str,
}

/// Parses a request body into a JSON value (an object, checked by
/// [`Input::new`]).
pub fn parse_body(body: &[u8]) -> Result<Value, LsError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(body).map_err(|e| {
        LsError::invalid_code("SerializationException", format!("The request body is not valid JSON: {e}"))
    })
}

impl<'a> Input<'a> {
    /// The object `value`, whose members must all be in `known`.
    pub fn new(value: &'a Value, path: &'a str, known: &[&str]) -> Result<Self, LsError> {
        let Value::Object(map) = value else {
            let what = if path.is_empty() { "The request body" } else { path };
            return Err(LsError::invalid_code(
                "InvalidParameterType",
                format!("{what} must be a JSON object."),
            ));
        };
        if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
            let shown: String = unknown.chars().take(64).collect();
            return Err(LsError::invalid_code(
                "UnknownParameter",
                format!(
                    "Unknown parameter in {}: \"{shown}\", must be one of: {}",
                    if path.is_empty() { "input" } else { path },
                    known.join(", ")
                ),
            ));
        }
        Ok(Self { map, path })
    }

    /// The member's full name for messages (`tags[0].key`).
    pub fn name(&self, member: &str) -> String {
        if self.path.is_empty() { member.to_owned() } else { format!("{}.{member}", self.path) }
    }

    fn get(&self, member: &str) -> Option<&'a Value> {
        self.map.get(member).filter(|v| !v.is_null())
    }

    /// An optional string member.
    pub fn str(&self, member: &str) -> Result<Option<&'a str>, LsError> {
        match self.get(member) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(LsError::wrong_type(&self.name(member), "a string")),
        }
    }

    /// A required string member.
    pub fn required_str(&self, member: &str) -> Result<&'a str, LsError> {
        self.str(member)?.ok_or_else(|| LsError::missing(&self.name(member)))
    }

    /// An optional boolean member.
    pub fn bool(&self, member: &str) -> Result<Option<bool>, LsError> {
        match self.get(member) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(LsError::wrong_type(&self.name(member), "a boolean")),
        }
    }

    /// An optional integer member (a JSON number without fraction or
    /// exponent that fits in 64 bits).
    pub fn int(&self, member: &str) -> Result<Option<i64>, LsError> {
        match self.get(member) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) => Ok(Some(i)),
                None if n.is_u64() => Err(LsError::invalid(format!(
                    "Value {n} for parameter {} is out of range.",
                    self.name(member)
                ))),
                None => Err(LsError::wrong_type(&self.name(member), "an integer")),
            },
            Some(_) => Err(LsError::wrong_type(&self.name(member), "an integer")),
        }
    }

    /// An optional number member (integer or fraction), e.g. a timestamp
    /// in epoch seconds.
    pub fn number(&self, member: &str) -> Result<Option<f64>, LsError> {
        match self.get(member) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                n.as_f64().map(Some).ok_or_else(|| LsError::wrong_type(&self.name(member), "a number"))
            }
            Some(_) => Err(LsError::wrong_type(&self.name(member), "a number")),
        }
    }

    /// An optional list member.
    pub fn list(&self, member: &str) -> Result<Option<&'a Vec<Value>>, LsError> {
        match self.get(member) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(_) => Err(LsError::wrong_type(&self.name(member), "a list")),
        }
    }

    /// A list of strings.
    pub fn str_list(&self, member: &str) -> Result<Option<Vec<&'a str>>, LsError> {
        let Some(items) = self.list(member)? else {
            return Ok(None);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.as_str()),
                _ => Err(LsError::wrong_type(&format!("{}[{i}]", self.name(member)), "a string")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// An optional string member that must be one of `allowed`.
    pub fn enum_str(&self, member: &str, allowed: &[&str]) -> Result<Option<&'a str>, LsError> {
        match self.str(member)? {
            Some(v) if !allowed.contains(&v) => Err(LsError::not_in_enum(&self.name(member), v, allowed)),
            other => Ok(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: &str) -> Value {
        parse_body(json.as_bytes()).unwrap()
    }

    #[test]
    fn members_are_typed_and_known() {
        let v = input(r#"{"a": "x", "n": 2, "b": true, "l": ["p", "q"], "z": null}"#);
        let i = Input::new(&v, "", &["a", "n", "b", "l", "z"]).unwrap();
        assert_eq!(i.str("a").unwrap(), Some("x"));
        assert_eq!(i.int("n").unwrap(), Some(2));
        assert_eq!(i.bool("b").unwrap(), Some(true));
        assert_eq!(i.str_list("l").unwrap(), Some(vec!["p", "q"]));
        assert_eq!(i.str("z").unwrap(), None, "null is absent");
        assert_eq!(i.required_str("z").unwrap_err().code, "MissingParameter");
        assert_eq!(i.int("a").unwrap_err().code, "InvalidParameterType");
        assert_eq!(i.str("n").unwrap_err().message, "Invalid type for parameter n, expected a string.");
        let e = Input::new(&v, "", &["a"]).unwrap_err();
        assert_eq!(e.code, "UnknownParameter");
    }

    #[test]
    fn numbers_must_be_integers() {
        let v = input(r#"{"f": 2.0, "e": 1e2, "big": 18446744073709551615, "neg": -3}"#);
        let i = Input::new(&v, "", &["f", "e", "big", "neg"]).unwrap();
        assert!(i.int("f").is_err());
        assert!(i.int("e").is_err());
        assert!(i.int("big").unwrap_err().message.contains("out of range"));
        assert_eq!(i.int("neg").unwrap(), Some(-3));
    }

    #[test]
    fn numbers_may_have_fractions() {
        let v = input(r#"{"t": 1704164645, "f": 1704164645.5, "s": "1"}"#);
        let i = Input::new(&v, "", &["t", "f", "s"]).unwrap();
        assert_eq!(i.number("t").unwrap(), Some(1_704_164_645.0));
        assert_eq!(i.number("f").unwrap(), Some(1_704_164_645.5));
        assert_eq!(i.number("s").unwrap_err().code, "InvalidParameterType");
    }

    #[test]
    fn bodies_are_objects() {
        assert!(Input::new(&input("  "), "", &[]).is_ok());
        assert_eq!(Input::new(&input("[]"), "", &[]).unwrap_err().code, "InvalidParameterType");
        assert_eq!(parse_body(b"{").unwrap_err().code, "SerializationException");
        let v = input(r#"{"x": "y"}"#);
        assert_eq!(Input::new(&v, "", &["a"]).unwrap_err().shape, super::super::error::Shape::InvalidInput);
    }

    #[test]
    fn enums_are_case_sensitive() {
        let v = input(r#"{"t": "Required"}"#);
        let i = Input::new(&v, "", &["t"]).unwrap();
        assert_eq!(
            i.enum_str("t", &["optional", "required"]).unwrap_err().message,
            "Invalid value 'Required' for parameter t. Valid values: optional, required."
        );
    }
}
