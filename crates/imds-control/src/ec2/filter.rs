//! `Filter.N.Name` / `Filter.N.Value.M` and `MaxResults` / `NextToken`, as
//! every Describe action reads them: values of one filter are ORed,
//! filters are ANDed, values may use `*` and `?` wildcards (`\` escapes
//! them), and an unknown filter name is `InvalidParameterValue`. Pages are
//! cut from a list sorted by a stable key; the token is that key of the
//! last item, base64url-encoded. Which filter names exist and what they
//! compare with is the calling action's business.

use crate::error::ApiError;
use crate::query::View;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// One filter of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// `instance-state-name`, `tag:Name`, …
    pub name: String,
    /// Accepted values (patterns).
    pub values: Vec<String>,
}

/// The `Filter.N` list of a request.
pub fn parse(p: &View<'_>) -> Result<Vec<Filter>, ApiError> {
    p.struct_list("Filter")
        .into_iter()
        .map(|f| {
            Ok(Filter {
                name: f.required_str("Name")?.to_owned(),
                values: f.list("Value").into_iter().map(str::to_owned).collect(),
            })
        })
        .collect()
}

/// `*` any run, `?` one character, `\` escapes the next character.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with one backtrack point: linear in practice and
    // never worse than O(|p|·|t|).
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let literal = |pi: usize| -> Option<(char, usize)> {
            match p.get(pi) {
                Some('\\') => p.get(pi + 1).map(|c| (*c, 2)),
                Some(c) => Some((*c, 1)),
                None => None,
            }
        };
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            Some('?') => {
                pi += 1;
                ti += 1;
                continue;
            }
            _ => {}
        }
        if let Some((c, width)) = literal(pi)
            && c == t[ti]
        {
            pi += width;
            ti += 1;
            continue;
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    while p.get(pi) == Some(&'*') {
        pi += 1;
    }
    pi == p.len()
}

impl Filter {
    /// Whether any of `candidates` matches any value of this filter.
    pub fn matches<S: AsRef<str>>(&self, candidates: &[S]) -> bool {
        candidates.iter().any(|c| self.values.iter().any(|v| glob(v, c.as_ref())))
    }

    /// The filter-name error EC2 gives for a name it does not know.
    pub fn unknown(&self) -> ApiError {
        ApiError::invalid_value(format!("The filter '{}' is invalid", self.name))
    }
}

/// Keeps the items every filter accepts. `known` says which filter names
/// this action has (checked first, so an unknown name is refused even when
/// there is nothing to filter); `values_of` returns an item's values for a
/// known name.
pub fn apply<T>(
    items: Vec<T>,
    filters: &[Filter],
    known: impl Fn(&str) -> bool,
    values_of: impl Fn(&T, &str) -> Vec<String>,
) -> Result<Vec<T>, ApiError> {
    if let Some(f) = filters.iter().find(|f| !known(&f.name)) {
        return Err(f.unknown());
    }
    Ok(items
        .into_iter()
        .filter(|item| filters.iter().all(|f| f.matches(&values_of(item, &f.name))))
        .collect())
}

/// A page request: `MaxResults` within bounds, and the opaque `NextToken`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Items per page; `None` = everything.
    pub max: Option<usize>,
    /// Key after which to continue.
    pub after: Option<String>,
}

/// Reads `MaxResults` (bounded to `min..=max`) and `NextToken`.
pub fn page(p: &View<'_>, min: i64, max: i64) -> Result<Page, ApiError> {
    let size = match p.int("MaxResults")? {
        None => None,
        Some(n) if (min..=max).contains(&n) => usize::try_from(n).ok(),
        Some(n) => {
            return Err(ApiError::invalid_value(format!(
                "Value ( {n} ) for parameter maxResults is invalid. Parameter must be between {min} and {max}."
            )));
        }
    };
    let after = match p.str("NextToken") {
        None | Some("") => None,
        Some(t) => Some(
            URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::invalid_value(format!("Invalid value '{t}' for nextToken")))?,
        ),
    };
    Ok(Page { max: size, after })
}

/// Cuts one page from `items` sorted by `key`; returns it and the token of
/// the next page, if any.
pub fn paginate<T>(mut items: Vec<T>, page: &Page, key: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
    items.sort_by_key(|i| key(i));
    if let Some(after) = &page.after {
        items.retain(|i| key(i).as_str() > after.as_str());
    }
    match page.max {
        Some(max) if items.len() > max => {
            items.truncate(max);
            let token = items.last().map(|i| URL_SAFE_NO_PAD.encode(key(i)));
            (items, token)
        }
        _ => (items, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Params;
    use proptest::prelude::*;

    #[test]
    fn wildcards() {
        assert!(glob("*", ""));
        assert!(glob("web-*", "web-1"));
        assert!(glob("w?b", "web"));
        assert!(!glob("w?b", "weeb"));
        assert!(glob("*a*b*", "xxaxxbxx"));
        assert!(!glob("*a*b", "xxaxxbxx"));
        assert!(glob("a\\*", "a*"));
        assert!(!glob("a\\*", "ab"));
        assert!(glob("running", "running"));
        assert!(!glob("running", "stopped"));
    }

    #[test]
    fn filters_and_values() {
        let p = Params::from_pairs([
            ("Filter.1.Name", "a"),
            ("Filter.1.Value.1", "x"),
            ("Filter.1.Value.2", "y*"),
            ("Filter.2.Name", "b"),
            ("Filter.2.Value.1", "1"),
        ]);
        let filters = parse(&p.root()).unwrap();
        let items = vec![("x", "1"), ("yes", "1"), ("z", "1"), ("x", "2")];
        let kept = apply(
            items,
            &filters,
            |n| n == "a" || n == "b",
            |(a, b), name| vec![(if name == "a" { *a } else { *b }).to_owned()],
        )
        .unwrap();
        assert_eq!(kept, vec![("x", "1"), ("yes", "1")]);
        let bad = vec![Filter { name: "nope".into(), values: vec!["1".into()] }];
        let e = apply(Vec::<u8>::new(), &bad, |_| false, |_, _| Vec::new()).unwrap_err();
        assert_eq!(e.message, "The filter 'nope' is invalid");
    }

    #[test]
    fn pages_follow_tokens() {
        let p = Params::from_pairs([("MaxResults", "5")]);
        let pg = page(&p.root(), 5, 1000).unwrap();
        let items: Vec<u32> = (0..12).collect();
        let key = |i: &u32| format!("{i:04}");
        let (first, token) = paginate(items.clone(), &pg, key);
        assert_eq!(first, [0, 1, 2, 3, 4]);
        let p2 = Params::from_pairs([("MaxResults", "5".to_owned()), ("NextToken", token.unwrap())]);
        let (second, token) = paginate(items.clone(), &page(&p2.root(), 5, 1000).unwrap(), key);
        assert_eq!(second, [5, 6, 7, 8, 9]);
        let p3 = Params::from_pairs([("MaxResults", "5".to_owned()), ("NextToken", token.unwrap())]);
        let (third, token) = paginate(items, &page(&p3.root(), 5, 1000).unwrap(), key);
        assert_eq!((third, token), (vec![10, 11], None));
        let bad = Params::from_pairs([("MaxResults", "4")]);
        assert_eq!(
            page(&bad.root(), 5, 1000).unwrap_err().message,
            "Value ( 4 ) for parameter maxResults is invalid. Parameter must be between 5 and 1000."
        );
        let bad = Params::from_pairs([("NextToken", "!!")]);
        assert!(page(&bad.root(), 5, 1000).is_err());
    }

    proptest! {
        #[test]
        fn glob_never_panics_and_literals_match_themselves(p in "[a-c*?\\\\]{0,12}", t in "[a-c*?]{0,12}") {
            let _ = glob(&p, &t);
            let escaped: String = t.chars().flat_map(|c| if c == '*' || c == '?' { vec!['\\', c] } else { vec![c] }).collect();
            prop_assert!(glob(&escaped, &t));
            prop_assert!(glob("*", &t));
        }
    }
}
