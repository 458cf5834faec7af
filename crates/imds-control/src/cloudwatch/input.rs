//! The input of a CloudWatch call, whichever protocol carried it: a JSON
//! 1.0 body, an RPC v2 CBOR body or a query form all become one [`Node`]
//! tree, read through [`Input`] with the member names of the model
//! (`StartTime`, `Dimensions`, …).
//!
//! Query forms carry every value as text and lists as
//! `Name.member.N[.Sub]`; [`from_form`] rebuilds the structure, and
//! [`Input`] converts text to the member's type only for them (a JSON
//! `"Period": "60"` is refused, as a JSON service would). Members this
//! endpoint does not know are ignored, as CloudWatch does (newer SDKs
//! send newer members). Messages name members the query way
//! (`MetricDataQueries.member.1.MetricStat.Period`), as CloudWatch does in
//! every protocol.

use super::error::CwError;
use crate::query::Params;
use std::collections::BTreeMap;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Largest list index a query form may use (bounds the work of a request).
const MAX_FORM_INDEX: u32 = 10_000;

/// A decoded input value.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `null` (JSON, CBOR): the same as absent.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i128),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Text(String),
    /// A timestamp (CBOR tag 1), Unix seconds.
    Time(f64),
    /// A list.
    List(Vec<Node>),
    /// A structure.
    Map(BTreeMap<String, Node>),
}

/// A JSON 1.0 body; an empty body is `{}`.
pub fn from_json(body: &[u8]) -> Result<Node, CwError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Node::Map(BTreeMap::new()));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| CwError::serialization(format!("The request body is not valid JSON: {e}")))?;
    Ok(json_node(value))
}

fn json_node(value: serde_json::Value) -> Node {
    use serde_json::Value;
    match value {
        Value::Null => Node::Null,
        Value::Bool(b) => Node::Bool(b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Node::Int(i128::from(i)),
            (None, Some(u)) => Node::Int(i128::from(u)),
            _ => Node::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Node::Text(s),
        Value::Array(items) => Node::List(items.into_iter().map(json_node).collect()),
        Value::Object(map) => Node::Map(map.into_iter().map(|(k, v)| (k, json_node(v))).collect()),
    }
}

/// An RPC v2 CBOR body; an empty body is `{}`.
pub fn from_cbor(body: &[u8]) -> Result<Node, CwError> {
    if body.is_empty() {
        return Ok(Node::Map(BTreeMap::new()));
    }
    let value: ciborium::Value = ciborium::from_reader(body)
        .map_err(|e| CwError::serialization(format!("The request body is not valid CBOR: {e}")))?;
    cbor_node(value)
}

fn cbor_node(value: ciborium::Value) -> Result<Node, CwError> {
    use ciborium::Value;
    Ok(match value {
        Value::Null => Node::Null,
        Value::Bool(b) => Node::Bool(b),
        Value::Integer(i) => Node::Int(i128::from(i)),
        Value::Float(f) => Node::Float(f),
        Value::Text(s) => Node::Text(s),
        Value::Tag(1, inner) => match *inner {
            Value::Integer(i) => Node::Time(i128::from(i) as f64),
            Value::Float(f) => Node::Time(f),
            _ => return Err(CwError::serialization("A CBOR timestamp (tag 1) must hold a number.")),
        },
        Value::Tag(tag, _) => return Err(CwError::serialization(format!("Unsupported CBOR tag {tag}."))),
        Value::Bytes(_) => return Err(CwError::serialization("No member of this API is a blob.")),
        Value::Array(items) => Node::List(items.into_iter().map(cbor_node).collect::<Result<_, _>>()?),
        Value::Map(entries) => {
            let mut map = BTreeMap::new();
            for (k, v) in entries {
                let Value::Text(key) = k else {
                    return Err(CwError::serialization("CBOR map keys must be text strings."));
                };
                map.insert(key, cbor_node(v)?);
            }
            Node::Map(map)
        }
        // `ciborium::Value` is non-exhaustive.
        _ => return Err(CwError::serialization("Unsupported CBOR value.")),
    })
}

/// A query form while it is rebuilt: lists keyed by their 1-based index.
enum Form {
    Leaf(String),
    Map(BTreeMap<String, Form>),
    List(BTreeMap<u32, Form>),
}

fn malformed(key: &str) -> CwError {
    let shown: String = key.chars().take(128).collect();
    CwError::invalid_value(format!("The parameter {shown} is malformed."))
}

fn form_index(seg: &str) -> Option<u32> {
    if seg.is_empty() || seg.starts_with('0') || !seg.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    seg.parse::<u32>().ok().filter(|i| (1..=MAX_FORM_INDEX).contains(i))
}

/// Inserts `segs` = `value` into the structure `map`.
fn insert_member(
    map: &mut BTreeMap<String, Form>,
    segs: &[&str],
    value: &str,
    key: &str,
) -> Result<(), CwError> {
    let Some((name, rest)) = segs.split_first() else {
        return Err(malformed(key));
    };
    if *name == "member" {
        // `member` only ever stands before a list index.
        return Err(malformed(key));
    }
    match rest {
        [] => {
            if map.insert((*name).to_owned(), Form::Leaf(value.to_owned())).is_some() {
                return Err(malformed(key));
            }
            Ok(())
        }
        ["member", index, rest @ ..] => {
            let index = form_index(index).ok_or_else(|| malformed(key))?;
            let entry = map.entry((*name).to_owned()).or_insert_with(|| Form::List(BTreeMap::new()));
            let Form::List(items) = entry else {
                return Err(malformed(key));
            };
            if rest.is_empty() {
                if items.insert(index, Form::Leaf(value.to_owned())).is_some() {
                    return Err(malformed(key));
                }
                return Ok(());
            }
            let item = items.entry(index).or_insert_with(|| Form::Map(BTreeMap::new()));
            let Form::Map(fields) = item else {
                return Err(malformed(key));
            };
            insert_member(fields, rest, value, key)
        }
        _ => {
            let entry = map.entry((*name).to_owned()).or_insert_with(|| Form::Map(BTreeMap::new()));
            let Form::Map(fields) = entry else {
                return Err(malformed(key));
            };
            insert_member(fields, rest, value, key)
        }
    }
}

fn form_node(form: Form) -> Node {
    match form {
        Form::Leaf(s) => Node::Text(s),
        Form::Map(map) => Node::Map(map.into_iter().map(|(k, v)| (k, form_node(v))).collect()),
        Form::List(items) => Node::List(items.into_values().map(form_node).collect()),
    }
}

/// A query form's members (everything but `Action`, `Version` and the
/// signature parameters) as a structure.
pub fn from_form(params: &Params) -> Result<Node, CwError> {
    let mut root = BTreeMap::new();
    for (key, value) in params.iter() {
        if key == "Action" || key == "Version" || key.starts_with("X-Amz-") {
            continue;
        }
        let segs: Vec<&str> = key.split('.').collect();
        if segs.len() > 16 || segs.iter().any(|s| s.is_empty()) {
            return Err(malformed(key));
        }
        insert_member(&mut root, &segs, value, key)?;
    }
    Ok(form_node(Form::Map(root)))
}

/// The latest accepted timestamp: 9999-12-31T23:59:59Z.
pub(crate) const MAX_TIME: f64 = 253_402_300_799.0;

/// Whole Unix seconds (rounded down) of a timestamp in `[0, MAX_TIME]`;
/// values outside are clamped.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub(crate) fn whole_seconds(secs: f64) -> u64 {
    // Clamped to [0, MAX_TIME], so the value fits and has no sign.
    secs.clamp(0.0, MAX_TIME).floor() as u64
}

/// A structure of the input, read by member name.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    map: Option<&'a BTreeMap<String, Node>>,
    /// Query-style path of this structure for messages (`""` at the top).
    path: String,
    /// Whether text stands for numbers, booleans and timestamps (query).
    textual: bool,
}

/// Parses an ISO 8601 timestamp (`2026-11-24T10:00:00Z`, with or without
/// fractional seconds or offset) or Unix seconds given as text.
fn parse_time_text(s: &str) -> Option<f64> {
    if let Ok(secs) = s.parse::<f64>() {
        return secs.is_finite().then_some(secs);
    }
    let parsed = OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(&format!("{s}Z"), &Rfc3339))
        .ok()?;
    Some(parsed.unix_timestamp_nanos() as f64 / 1e9)
}

impl<'a> Input<'a> {
    /// The top-level structure of `node`; `textual` for query forms.
    pub fn root(node: &'a Node, textual: bool) -> Result<Self, CwError> {
        match node {
            Node::Map(map) => Ok(Self { map: Some(map), path: String::new(), textual }),
            Node::Null => Ok(Self { map: None, path: String::new(), textual }),
            _ => Err(CwError::serialization("The request body must be an object.")),
        }
    }

    /// The member's full name for messages.
    pub fn name(&self, member: &str) -> String {
        if self.path.is_empty() { member.to_owned() } else { format!("{}.{member}", self.path) }
    }

    fn get(&self, member: &str) -> Option<&'a Node> {
        self.map.and_then(|m| m.get(member)).filter(|n| **n != Node::Null)
    }

    /// An optional string member.
    pub fn str(&self, member: &str) -> Result<Option<&'a str>, CwError> {
        match self.get(member) {
            None => Ok(None),
            Some(Node::Text(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(CwError::wrong_type(&self.name(member), "a string")),
        }
    }

    /// A required string member.
    pub fn required_str(&self, member: &str) -> Result<&'a str, CwError> {
        self.str(member)?.ok_or_else(|| CwError::missing(&self.name(member)))
    }

    /// An optional integer member.
    pub fn int(&self, member: &str) -> Result<Option<i64>, CwError> {
        let wrong = || CwError::wrong_type(&self.name(member), "an integer");
        match self.get(member) {
            None => Ok(None),
            Some(Node::Int(i)) => i64::try_from(*i).map(Some).map_err(|_| wrong()),
            Some(Node::Text(s)) if self.textual => s.parse::<i64>().map(Some).map_err(|_| wrong()),
            Some(_) => Err(wrong()),
        }
    }

    /// An optional boolean member.
    pub fn bool(&self, member: &str) -> Result<Option<bool>, CwError> {
        match self.get(member) {
            None => Ok(None),
            Some(Node::Bool(b)) => Ok(Some(*b)),
            Some(Node::Text(s)) if self.textual && s == "true" => Ok(Some(true)),
            Some(Node::Text(s)) if self.textual && s == "false" => Ok(Some(false)),
            Some(_) => Err(CwError::wrong_type(&self.name(member), "a boolean")),
        }
    }

    /// An optional timestamp member, in Unix seconds: epoch seconds
    /// (JSON), CBOR tag 1 (or a bare number), ISO 8601 text (query).
    pub fn timestamp(&self, member: &str) -> Result<Option<f64>, CwError> {
        let wrong = || CwError::wrong_type(&self.name(member), "a timestamp");
        let secs = match self.get(member) {
            None => return Ok(None),
            Some(Node::Time(t) | Node::Float(t)) => *t,
            Some(Node::Int(i)) => *i as f64,
            Some(Node::Text(s)) if self.textual => parse_time_text(s).ok_or_else(wrong)?,
            Some(_) => return Err(wrong()),
        };
        if !secs.is_finite() || !(0.0..=MAX_TIME).contains(&secs) {
            return Err(CwError::invalid_value(format!(
                "The parameter {} must be a time between 1970 and 9999.",
                self.name(member)
            )));
        }
        Ok(Some(secs))
    }

    /// A required timestamp member.
    pub fn required_timestamp(&self, member: &str) -> Result<f64, CwError> {
        self.timestamp(member)?.ok_or_else(|| CwError::missing(&self.name(member)))
    }

    /// An optional list member's items. In a query form an empty list is
    /// sent as `Name=` (an empty value).
    pub fn list(&self, member: &str) -> Result<Option<&'a [Node]>, CwError> {
        match self.get(member) {
            None => Ok(None),
            Some(Node::List(items)) => Ok(Some(items.as_slice())),
            Some(Node::Text(s)) if self.textual && s.is_empty() => Ok(Some(&[])),
            Some(_) => Err(CwError::wrong_type(&self.name(member), "a list")),
        }
    }

    /// An optional list of strings.
    pub fn str_list(&self, member: &str) -> Result<Option<Vec<&'a str>>, CwError> {
        let Some(items) = self.list(member)? else {
            return Ok(None);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, n)| match n {
                Node::Text(s) => Ok(s.as_str()),
                _ => Err(CwError::wrong_type(&format!("{}.member.{}", self.name(member), i + 1), "a string")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// An optional list of structures.
    pub fn struct_list(&self, member: &str) -> Result<Option<Vec<Input<'a>>>, CwError> {
        let Some(items) = self.list(member)? else {
            return Ok(None);
        };
        let base = self.name(member);
        items
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let path = format!("{base}.member.{}", i + 1);
                match n {
                    Node::Map(map) => Ok(Input { map: Some(map), path, textual: self.textual }),
                    _ => Err(CwError::wrong_type(&path, "a structure")),
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// An optional structure member.
    pub fn structure(&self, member: &str) -> Result<Option<Input<'a>>, CwError> {
        match self.get(member) {
            None => Ok(None),
            Some(Node::Map(map)) => {
                Ok(Some(Input { map: Some(map), path: self.name(member), textual: self.textual }))
            }
            Some(_) => Err(CwError::wrong_type(&self.name(member), "a structure")),
        }
    }

    /// An optional string member that must be one of `allowed`.
    pub fn enum_str(&self, member: &str, allowed: &[&str]) -> Result<Option<&'a str>, CwError> {
        match self.str(member)? {
            Some(v) if !allowed.contains(&v) => Err(CwError::not_in_set(&self.name(member), allowed)),
            other => Ok(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_forms_become_structures_and_lists() {
        let params = Params::from_pairs([
            ("Action", "GetMetricStatistics"),
            ("Version", "2010-08-01"),
            ("Namespace", "AWS/EC2"),
            ("Dimensions.member.2.Name", "B"),
            ("Dimensions.member.1.Name", "InstanceId"),
            ("Dimensions.member.1.Value", "i-1"),
            ("Statistics.member.1", "Sum"),
            ("Statistics.member.2", "Maximum"),
            ("Period", "60"),
            ("StartTime", "2024-01-02T03:04:05Z"),
            ("X-Amz-Date", "x"),
        ]);
        let node = from_form(&params).unwrap();
        let input = Input::root(&node, true).unwrap();
        assert_eq!(input.str("Namespace").unwrap(), Some("AWS/EC2"));
        assert_eq!(input.str("Action").unwrap(), None);
        assert_eq!(input.int("Period").unwrap(), Some(60));
        assert_eq!(input.timestamp("StartTime").unwrap(), Some(1_704_164_645.0));
        assert_eq!(input.str_list("Statistics").unwrap(), Some(vec!["Sum", "Maximum"]));
        let dims = input.struct_list("Dimensions").unwrap().unwrap();
        assert_eq!(dims.len(), 2);
        assert_eq!(dims[0].str("Value").unwrap(), Some("i-1"));
        assert_eq!(
            dims[1].required_str("Value").unwrap_err().message,
            "The parameter Dimensions.member.2.Value is required."
        );
    }

    #[test]
    fn malformed_forms_are_refused() {
        for key in ["Dimensions.member.0.Name", "Dimensions.member", "Dimensions.member.x", "A..B"] {
            let params = Params::from_pairs([(key, "v")]);
            assert_eq!(from_form(&params).unwrap_err().code, "InvalidParameterValue", "{key}");
        }
        let params = Params::from_pairs([("A", "v"), ("A.B", "w")]);
        assert!(from_form(&params).is_err());
        let empty = from_form(&Params::from_pairs([("Statistics", "")])).unwrap();
        assert_eq!(Input::root(&empty, true).unwrap().str_list("Statistics").unwrap(), Some(vec![]));
    }

    #[test]
    fn json_is_typed_strictly() {
        let node =
            from_json(br#"{"Period": "60", "StartTime": 1704164645.5, "EndTime": 1704164700, "X": null}"#)
                .unwrap();
        let input = Input::root(&node, false).unwrap();
        assert_eq!(input.int("Period").unwrap_err().code, "InvalidParameterValue");
        assert_eq!(input.timestamp("StartTime").unwrap(), Some(1_704_164_645.5));
        assert_eq!(input.timestamp("EndTime").unwrap(), Some(1_704_164_700.0));
        assert_eq!(input.str("X").unwrap(), None);
        assert_eq!(input.required_timestamp("X").unwrap_err().code, "MissingParameter");
        assert_eq!(from_json(b"{").unwrap_err().code, "SerializationException");
        assert!(Input::root(&from_json(b"[]").unwrap(), false).is_err());
    }

    #[test]
    fn cbor_timestamps_are_tag_1() {
        use ciborium::Value;
        let value = Value::Map(vec![
            (Value::Text("StartTime".into()), Value::Tag(1, Box::new(Value::Integer(1_704_164_645.into())))),
            (Value::Text("EndTime".into()), Value::Tag(1, Box::new(Value::Float(1_704_164_700.25)))),
            (Value::Text("Period".into()), Value::Integer(60.into())),
        ]);
        let mut bytes = Vec::new();
        ciborium::into_writer(&value, &mut bytes).unwrap();
        let node = from_cbor(&bytes).unwrap();
        let input = Input::root(&node, false).unwrap();
        assert_eq!(input.timestamp("StartTime").unwrap(), Some(1_704_164_645.0));
        assert_eq!(input.timestamp("EndTime").unwrap(), Some(1_704_164_700.25));
        assert_eq!(input.int("Period").unwrap(), Some(60));
        assert_eq!(from_cbor(&[0xff]).unwrap_err().code, "SerializationException");
    }

    #[test]
    fn negative_and_huge_times_are_invalid() {
        let node = from_json(br#"{"A": -1, "B": 1e300}"#).unwrap();
        let input = Input::root(&node, false).unwrap();
        assert_eq!(input.timestamp("A").unwrap_err().code, "InvalidParameterValue");
        assert_eq!(input.timestamp("B").unwrap_err().code, "InvalidParameterValue");
    }
}
