//! The request context: condition keys and their values for one request.
//!
//! Key names are case-insensitive, as in IAM ("Context key names are not
//! case-sensitive", IAM User Guide, *IAM JSON policy elements: Condition*),
//! so they are stored lower-cased. Values keep their case; whether case
//! matters is the condition operator's business. Which keys a request
//! carries (and their values) is the caller's business.

use std::collections::HashMap;

/// Condition keys → values for one request.
///
/// A key has one value (single-valued keys such as `aws:PrincipalArn`) or
/// several (multivalued keys such as `ec2:Attribute` when one call modifies
/// several attributes). A key with no values is the same as an absent key.
///
/// ```
/// use imds_policy::Context;
///
/// let mut ctx = Context::new();
/// ctx.insert("ec2:MetadataHttpTokens", "required")
///     .insert_all("ec2:Attribute", ["HttpTokens", "HttpPutResponseHopLimit"]);
/// assert_eq!(ctx.get("EC2:metadatahttptokens"), Some(&["required".to_owned()][..]));
///
/// let ctx = Context::new().with("aws:PrincipalArn", "arn:aws:iam::123456789012:role/x");
/// assert!(ctx.contains_key("aws:principalarn"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    entries: HashMap<String, Vec<String>>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value` to the values of `key` (keeping any it already has).
    pub fn insert(&mut self, key: impl AsRef<str>, value: impl Into<String>) -> &mut Self {
        self.entries.entry(normalize_key(key.as_ref())).or_default().push(value.into());
        self
    }

    /// Adds every one of `values` to the values of `key`. Adding no values
    /// leaves the key as it was (absent if it was absent).
    pub fn insert_all<I, V>(&mut self, key: impl AsRef<str>, values: I) -> &mut Self
    where
        I: IntoIterator<Item = V>,
        V: Into<String>,
    {
        let mut values = values.into_iter().map(Into::into).peekable();
        if values.peek().is_some() {
            self.entries.entry(normalize_key(key.as_ref())).or_default().extend(values);
        }
        self
    }

    /// By-value form of [`Context::insert`], for building a context in one
    /// expression.
    #[must_use]
    pub fn with(mut self, key: impl AsRef<str>, value: impl Into<String>) -> Self {
        self.insert(key, value);
        self
    }

    /// By-value form of [`Context::insert_all`].
    #[must_use]
    pub fn with_all<I, V>(mut self, key: impl AsRef<str>, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: Into<String>,
    {
        self.insert_all(key, values);
        self
    }

    /// Removes `key` and returns its values.
    pub fn remove(&mut self, key: &str) -> Option<Vec<String>> {
        self.entries.remove(&normalize_key(key))
    }

    /// The values of `key` (any case), or `None` when it is absent.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.get_normalized(&normalize_key(key))
    }

    /// True when `key` (any case) has at least one value.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// True when no key has a value.
    pub fn is_empty(&self) -> bool {
        self.entries.values().all(Vec::is_empty)
    }

    /// Lookup with a key already lower-cased by [`normalize_key`].
    pub(crate) fn get_normalized(&self, key: &str) -> Option<&[String]> {
        self.entries.get(key).map(Vec::as_slice).filter(|v| !v.is_empty())
    }
}

/// The case-folded form under which keys are stored and looked up.
pub(crate) fn normalize_key(key: &str) -> String {
    key.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_case_insensitive_values_are_not() {
        let mut ctx = Context::new();
        ctx.insert("ec2:ResourceTag/Environment", "Prod");
        assert_eq!(ctx.get("EC2:RESOURCETAG/environment"), Some(&["Prod".to_owned()][..]));
        assert!(ctx.get("ec2:ResourceTag/Other").is_none());
    }

    #[test]
    fn insert_appends_to_a_multivalued_key() {
        let mut ctx = Context::new();
        ctx.insert("ec2:Attribute", "HttpTokens").insert("EC2:attribute", "HttpEndpoint");
        assert_eq!(ctx.get("ec2:attribute").map(<[String]>::len), Some(2));
    }

    #[test]
    fn a_key_without_values_is_absent() {
        let mut ctx = Context::new();
        ctx.insert_all("ec2:Attribute", Vec::<String>::new());
        assert!(!ctx.contains_key("ec2:Attribute"));
        assert!(ctx.is_empty());
    }

    #[test]
    fn remove_takes_the_key_out() {
        let mut ctx = Context::new().with_all("a:B", ["1", "2"]);
        assert_eq!(ctx.remove("A:b"), Some(vec!["1".to_owned(), "2".to_owned()]));
        assert!(ctx.is_empty());
    }
}
