//! The EC2 Query request format: a form-encoded body (or query string),
//! flattened the way botocore's `EC2Serializer` writes it — scalars as
//! `Name`, nested structures as `Outer.Inner`, lists as `Name.N` and lists
//! of structures as `Name.N.Member`, with 1-based indexes.
//!
//! [`parse_form`] turns bytes into [`Params`] (bounded: the caller limits
//! the body before this sees it, and indexes are bounded here). [`Params`]
//! checks every key against the patterns its action accepts
//! ([`Params::check_known`]) and offers typed accessors that produce the
//! EC2 errors for missing, mistyped and malformed members. This module
//! does not know what any action means.

use crate::error::ApiError;
use std::collections::BTreeMap;

/// The only API version this service speaks.
pub const API_VERSION: &str = "2016-11-15";

/// The largest list index accepted (`InstanceId.N`); bounds the work a
/// request can cause and keeps indexes in `u32`.
pub const MAX_INDEX: u32 = 10_000;

/// Parameters that carry a query-string SigV4 signature rather than API
/// input; they are never reported as unknown.
const SIGNATURE_PARAMS: &[&str] = &[
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
];

/// All parameters of one request, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    map: BTreeMap<String, String>,
}

/// Parses `application/x-www-form-urlencoded` input from any number of
/// sources (query string, body) into one parameter set. A key given twice
/// is `InvalidParameterValue`: EC2 input never repeats a key, and picking
/// one silently would hide client bugs.
pub fn parse_form(sources: &[&[u8]]) -> Result<Params, ApiError> {
    let mut map = BTreeMap::new();
    for source in sources {
        for (key, value) in form_urlencoded::parse(source) {
            if key.is_empty() {
                continue;
            }
            if map.insert(key.clone().into_owned(), value.into_owned()).is_some() {
                return Err(ApiError::invalid_value(format!(
                    "The parameter {key} is specified more than once"
                )));
            }
        }
    }
    Ok(Params { map })
}

/// Whether `key` matches `pattern` (`N` stands for one list index).
fn matches_pattern(pattern: &str, key: &str) -> bool {
    let mut p = pattern.split('.');
    let mut k = key.split('.');
    loop {
        match (p.next(), k.next()) {
            (None, None) => return true,
            (Some("N"), Some(seg)) => {
                if parse_index(seg).is_none() {
                    return false;
                }
            }
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// A list index: decimal, no sign, no leading zero, 1..=[`MAX_INDEX`].
fn parse_index(seg: &str) -> Option<u32> {
    if seg.is_empty() || seg.starts_with('0') || !seg.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    seg.parse::<u32>().ok().filter(|i| (1..=MAX_INDEX).contains(i))
}

impl Params {
    /// Parameters from explicit pairs (tests, other front ends).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self { map: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    /// Every key and value, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The `Action`, checked to be present, together with `Version`.
    pub fn action(&self) -> Result<&str, ApiError> {
        let action = self.map.get("Action").map(String::as_str).filter(|a| !a.is_empty());
        let action = action.ok_or_else(ApiError::missing_action)?;
        match self.map.get("Version").map(String::as_str) {
            None | Some("") => Err(ApiError::missing_parameter("Version")),
            Some(API_VERSION) => Ok(action),
            Some(other) => Err(ApiError::no_such_version(other)),
        }
    }

    /// Fails with `UnknownParameter` for the first key (in key order) that
    /// is neither `Action`, `Version`, a signature parameter, nor matched by
    /// one of `patterns`.
    pub fn check_known(&self, patterns: &[&str]) -> Result<(), ApiError> {
        for key in self.map.keys() {
            let known = key == "Action"
                || key == "Version"
                || SIGNATURE_PARAMS.contains(&key.as_str())
                || patterns.iter().any(|p| matches_pattern(p, key));
            if !known {
                return Err(ApiError::unknown_parameter(key));
            }
        }
        Ok(())
    }

    /// The root view for typed access.
    pub fn root(&self) -> View<'_> {
        View { params: self, prefix: String::new() }
    }
}

/// A view of the parameters under one prefix (the root, a structure
/// `Outer.`, or a list element `Filter.3.`), with typed accessors. Errors
/// name the member by its full wire name.
#[derive(Debug, Clone)]
pub struct View<'a> {
    params: &'a Params,
    prefix: String,
}

impl<'a> View<'a> {
    /// Every parameter of the request (not only this view's).
    pub fn params(&self) -> &'a Params {
        self.params
    }

    fn full(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The wire name of a member of this view (for error messages).
    pub fn name_of(&self, name: &str) -> String {
        self.full(name)
    }

    /// A scalar member, if present.
    pub fn str(&self, name: &str) -> Option<&'a str> {
        self.params.map.get(&self.full(name)).map(String::as_str)
    }

    /// A scalar member that must be present (`MissingParameter` otherwise).
    pub fn required_str(&self, name: &str) -> Result<&'a str, ApiError> {
        self.str(name).ok_or_else(|| ApiError::missing_parameter(&self.full(name)))
    }

    /// A boolean member: `true`/`false` in any case.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.str(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(ApiError::invalid_parameter(&self.full(name), v)),
        }
    }

    /// An integer member (decimal, optional sign).
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.str(name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| ApiError::invalid_parameter(&self.full(name), v)),
        }
    }

    /// The nested structure `name` (`Outer.Inner` members).
    pub fn sub(&self, name: &str) -> View<'a> {
        View { params: self.params, prefix: format!("{}{name}.", self.prefix) }
    }

    /// Whether any member of the structure `name` is present.
    pub fn has_sub(&self, name: &str) -> bool {
        let prefix = format!("{}{name}.", self.prefix);
        self.params.map.range(prefix.clone()..).next().is_some_and(|(k, _)| k.starts_with(&prefix))
    }

    /// Indexes present under `name.` in numeric order, each with the rest of
    /// the key after `name.N`; keys with a malformed index are skipped (they
    /// were already refused by [`Params::check_known`]).
    fn indexed(&self, name: &str) -> BTreeMap<u32, Vec<(&'a str, &'a str)>> {
        let prefix = format!("{}{name}.", self.prefix);
        let mut out: BTreeMap<u32, Vec<(&str, &str)>> = BTreeMap::new();
        for (key, value) in self.params.map.range(prefix.clone()..) {
            let Some(rest) = key.strip_prefix(&prefix) else { break };
            let (index, tail) = rest.split_once('.').unwrap_or((rest, ""));
            if let Some(i) = parse_index(index) {
                out.entry(i).or_default().push((tail, value.as_str()));
            }
        }
        out
    }

    /// A list of scalars, `name.1`, `name.2`, … in index order.
    pub fn list(&self, name: &str) -> Vec<&'a str> {
        self.indexed(name)
            .into_values()
            .filter_map(|members| members.into_iter().find(|(tail, _)| tail.is_empty()).map(|(_, v)| v))
            .collect()
    }

    /// A list of structures, `name.N.Member`: one view per index, in order.
    pub fn struct_list(&self, name: &str) -> Vec<View<'a>> {
        self.indexed(name)
            .into_keys()
            .map(|i| View { params: self.params, prefix: format!("{}{name}.{i}.", self.prefix) })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(body: &str) -> Params {
        parse_form(&[body.as_bytes()]).unwrap()
    }

    #[test]
    fn reads_the_botocore_wire_example() {
        let p = params(
            "Action=RunInstances&Version=2016-11-15&ImageId=ami-1&MinCount=1&MaxCount=1\
             &UserData=IyEvYmluL3NoCmVjaG8gaGk%3D&MetadataOptions.HttpTokens=required\
             &MetadataOptions.HttpPutResponseHopLimit=2&TagSpecification.1.ResourceType=instance\
             &TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=x&DryRun=true",
        );
        assert_eq!(p.action(), Ok("RunInstances"));
        let r = p.root();
        assert_eq!(r.str("UserData"), Some("IyEvYmluL3NoCmVjaG8gaGk="));
        assert_eq!(r.int("MinCount"), Ok(Some(1)));
        assert_eq!(r.bool("DryRun"), Ok(Some(true)));
        let mo = r.sub("MetadataOptions");
        assert_eq!(mo.str("HttpTokens"), Some("required"));
        assert_eq!(mo.int("HttpPutResponseHopLimit"), Ok(Some(2)));
        let specs = r.struct_list("TagSpecification");
        assert_eq!(specs.len(), 1);
        let tags = specs[0].struct_list("Tag");
        assert_eq!(tags[0].str("Key"), Some("Name"));
        assert_eq!(tags[0].str("Value"), Some("x"));
        assert!(p.check_known(crate::ec2::params::RUN_INSTANCES).is_ok());
    }

    #[test]
    fn lists_are_ordered_numerically() {
        let p = params("Action=X&Version=2016-11-15&InstanceId.10=c&InstanceId.2=b&InstanceId.1=a");
        assert_eq!(p.root().list("InstanceId"), ["a", "b", "c"]);
        let f = params("Filter.2.Name=y&Filter.1.Name=x&Filter.1.Value.2=q&Filter.1.Value.1=p");
        let filters = f.root().struct_list("Filter");
        assert_eq!(filters.iter().map(|v| v.str("Name").unwrap()).collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(filters[0].list("Value"), ["p", "q"]);
        assert!(filters[1].list("Value").is_empty());
    }

    #[test]
    fn action_and_version_are_required() {
        assert_eq!(params("Version=2016-11-15").action().unwrap_err().code, "MissingAction");
        assert_eq!(params("Action=X").action().unwrap_err().code, "MissingParameter");
        assert_eq!(params("Action=X&Version=2014-01-01").action().unwrap_err().code, "NoSuchVersion");
    }

    #[test]
    fn unknown_parameters_are_named() {
        let p = params("Action=X&Version=2016-11-15&InstanceId.1=i-1&Foo=bar");
        let e = p.check_known(&["InstanceId.N"]).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), ("UnknownParameter", "The parameter Foo is not recognized"));
        // Scalars may not be given as lists and vice versa; indexes are 1-based.
        for bad in [
            "InstanceId=i-1",
            "InstanceId.0=i-1",
            "InstanceId.01=i-1",
            "InstanceId.1.X=i",
            "InstanceId.99999=i",
        ] {
            let p = params(&format!("Action=X&Version=2016-11-15&{bad}"));
            assert_eq!(p.check_known(&["InstanceId.N"]).unwrap_err().code, "UnknownParameter", "{bad}");
        }
        let sig = params("Action=X&Version=2016-11-15&X-Amz-Signature=abc&X-Amz-Date=1");
        assert!(sig.check_known(&[]).is_ok());
    }

    #[test]
    fn typed_accessors_report_ec2_errors() {
        let p = params("HopLimit=abc&DryRun=maybe&Count=-1&Flag=TRUE");
        let r = p.root();
        let e = r.int("HopLimit").unwrap_err();
        assert_eq!(e.message, "Value (abc) for parameter HopLimit is invalid.");
        assert_eq!(r.bool("DryRun").unwrap_err().code, "InvalidParameterValue");
        assert_eq!(r.int("Count"), Ok(Some(-1)));
        assert_eq!(r.bool("Flag"), Ok(Some(true)));
        let e = r.sub("MetadataOptions").required_str("HttpTokens").unwrap_err();
        assert_eq!(e.message, "The request must contain the parameter MetadataOptions.HttpTokens");
        assert!(!r.has_sub("MetadataOptions"));
    }

    #[test]
    fn duplicates_are_refused_and_encoding_is_decoded() {
        assert!(parse_form(&[b"A=1&A=2"]).is_err());
        assert!(parse_form(&[b"A=1", b"A=2"]).is_err());
        let p = params("Tag.1.Value=a+b%26c%3D&Empty=");
        assert_eq!(p.root().sub("Tag").str("1.Value"), Some("a b&c="));
        assert_eq!(p.root().str("Empty"), Some(""));
    }

    /// A botocore-shaped input: scalars, a list of scalars and a list of
    /// structures with a nested list.
    #[derive(Debug, Clone)]
    struct Input {
        name: String,
        ids: Vec<String>,
        filters: Vec<(String, Vec<String>)>,
    }

    fn flatten(input: &Input) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        s.append_pair("Action", "DescribeInstances").append_pair("Version", API_VERSION);
        s.append_pair("Name", &input.name);
        for (i, id) in input.ids.iter().enumerate() {
            s.append_pair(&format!("InstanceId.{}", i + 1), id);
        }
        for (i, (name, values)) in input.filters.iter().enumerate() {
            s.append_pair(&format!("Filter.{}.Name", i + 1), name);
            for (j, v) in values.iter().enumerate() {
                s.append_pair(&format!("Filter.{}.Value.{}", i + 1, j + 1), v);
            }
        }
        s.finish()
    }

    proptest! {
        #[test]
        fn parser_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(p) = parse_form(&[&body]) {
                let _ = p.action();
                let _ = p.check_known(&["InstanceId.N", "Filter.N.Name", "Filter.N.Value.N", "A.B"]);
                let r = p.root();
                let _ = r.list("InstanceId");
                for f in r.struct_list("Filter") {
                    let _ = f.list("Value");
                    let _ = f.int("Name");
                    let _ = f.bool("Name");
                }
            }
        }

        #[test]
        fn botocore_flattening_round_trips(
            name in any::<String>(),
            ids in proptest::collection::vec(any::<String>(), 0..12),
            filters in proptest::collection::vec(
                (any::<String>(), proptest::collection::vec(any::<String>(), 0..12)), 0..12),
        ) {
            let input = Input { name, ids, filters };
            let p = parse_form(&[flatten(&input).as_bytes()]).unwrap();
            prop_assert_eq!(p.action(), Ok("DescribeInstances"));
            prop_assert!(p.check_known(&["Name", "InstanceId.N", "Filter.N.Name", "Filter.N.Value.N"]).is_ok());
            let r = p.root();
            prop_assert_eq!(r.str("Name"), Some(input.name.as_str()));
            prop_assert_eq!(r.list("InstanceId"), input.ids.iter().map(String::as_str).collect::<Vec<_>>());
            let filters = r.struct_list("Filter");
            prop_assert_eq!(filters.len(), input.filters.len());
            for (view, (name, values)) in filters.iter().zip(&input.filters) {
                prop_assert_eq!(view.str("Name"), Some(name.as_str()));
                prop_assert_eq!(view.list("Value"), values.iter().map(String::as_str).collect::<Vec<_>>());
            }
        }
    }
}
