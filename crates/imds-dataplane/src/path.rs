//! Request-path normalisation and routing of the IMDS path namespace.
//!
//! Owns the list of metadata versions, the rules that make
//! `//latest/meta-data/instance-id`, `/latest//meta-data/` and a trailing slash
//! on a leaf mean the same as their canonical form
//! (docs/protocol/data-plane.md#normalisation), and the split of a path into
//! the version list, the token endpoint and a path inside the version root. It
//! does not own what exists inside a version root ([`crate::tree`]) nor which
//! method or status a route gets (the HTTP service).
//!
//! Rules, in order: refuse inputs longer than [`MAX_RAW_PATH_LEN`]; drop the
//! query string (and any fragment); percent-decode (a malformed `%` escape
//! or bytes that are not UTF-8 after decoding are an error); split on `/`,
//! dropping empty segments (so runs of `/`, a leading `//` and a trailing `/`
//! vanish); a `.` or `..` segment makes the path [`Route::NotFound`] — dot
//! segments are never resolved, so no spelling can climb out of a version
//! root. Matching is case-sensitive.
//!
//! `%2F` decodes to `/` and then separates segments like a literal `/`: no
//! metadata name contains a slash, so nothing is lost, and the canonical form
//! stays a plain `/`-joined string.

use std::borrow::Cow;
use std::fmt;

/// The metadata versions served, in the order `GET /` lists them
/// (docs/protocol/data-plane.md#versions), `latest` last. Every version serves
/// the same tree.
pub const VERSIONS: &[&str] = &[
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
    "2011-01-01",
    "2011-05-01",
    "2012-01-12",
    "2014-02-25",
    "2014-11-05",
    "2015-10-20",
    "2016-04-19",
    "2016-06-30",
    "2016-09-02",
    "2018-03-28",
    "2018-08-17",
    "2018-09-24",
    "2019-10-01",
    "2020-10-27",
    "2021-01-03",
    "2021-03-23",
    "2021-07-15",
    "2022-07-09",
    "2022-09-24",
    LATEST,
];

/// The alias of the newest version; the only one whose token path issues tokens.
pub const LATEST: &str = "latest";

/// Longest request target (path and query, still percent-encoded) that is
/// parsed at all. The deepest real path (a tag key of 255 characters under
/// `/latest/meta-data/tags/instance/`) is about 300 bytes; anything much
/// longer is refused before decoding so the work per request stays bounded.
pub const MAX_RAW_PATH_LEN: usize = 2048;

/// The segments after a version that form the token endpoint.
const TOKEN_SEGMENTS: &str = "api/token";

/// Why a request target could not be normalised. Real IMDS documents no
/// status for these and no client sends them; the HTTP service picks the
/// answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// Longer than [`MAX_RAW_PATH_LEN`] bytes; carries the length.
    TooLong(usize),
    /// A `%` not followed by two hexadecimal digits.
    InvalidEscape,
    /// The percent-decoded path is not UTF-8.
    NotUtf8,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong(len) => {
                write!(f, "request path of {len} bytes exceeds {MAX_RAW_PATH_LEN}")
            }
            Self::InvalidEscape => f.write_str("request path has a malformed percent escape"),
            Self::NotUtf8 => f.write_str("request path is not UTF-8 after percent-decoding"),
        }
    }
}

impl std::error::Error for PathError {}

/// Where a normalised path leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/`: the version list.
    VersionList,
    /// `<version>/api/token`; `latest` tells whether the version was
    /// [`LATEST`] (only that one issues tokens, others answer 403).
    Token {
        /// Whether the version segment was `latest`.
        latest: bool,
    },
    /// A path inside a version root, normalised: `""` for the version root
    /// listing, `"meta-data"`, `"meta-data/instance-id"`,
    /// `"dynamic/instance-identity/document"`, `"user-data"`. Look it up
    /// with [`crate::tree::MetadataTree::get`].
    Tree(&'a str),
    /// Unknown version, or a `.`/`..` segment.
    NotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    VersionList,
    Token {
        latest: bool,
    },
    /// Byte offset in `path` where the tree path starts.
    Tree(usize),
    NotFound,
}

/// A decoded, normalised request path: its segments joined by single `/`,
/// without leading or trailing slash (`""` for `/`), plus where it routes.
/// Borrowed from the request target when that is already canonical (what
/// every real client sends), so the common case does not allocate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath<'a> {
    path: Cow<'a, str>,
    kind: Kind,
}

impl NormalPath<'_> {
    /// Where this path leads.
    pub fn route(&self) -> Route<'_> {
        match self.kind {
            Kind::VersionList => Route::VersionList,
            Kind::Token { latest } => Route::Token { latest },
            Kind::Tree(start) => Route::Tree(self.path.get(start..).unwrap_or("")),
            Kind::NotFound => Route::NotFound,
        }
    }

    /// The canonical, decoded path: `latest/meta-data/instance-id`, `""` for
    /// the root. Not percent-encoded again, so it is for logs and tests, not
    /// for building URLs.
    pub fn as_str(&self) -> &str {
        &self.path
    }
}

/// Normalises a request target (`/latest//meta-data/?x=1`) and decides its
/// route; see the module docs for the rules.
pub fn normalise(raw_path_and_query: &str) -> Result<NormalPath<'_>, PathError> {
    if raw_path_and_query.len() > MAX_RAW_PATH_LEN {
        return Err(PathError::TooLong(raw_path_and_query.len()));
    }
    if let Some(path) = already_canonical(raw_path_and_query) {
        return Ok(NormalPath { kind: classify(path), path: Cow::Borrowed(path) });
    }
    normalise_in_full(raw_path_and_query)
}

/// The canonical form of `raw` when `raw` is already canonical apart from a
/// leading `/`: no `%`, `?` or `#`, no empty segment (`//`, trailing `/`),
/// no `.` or `..` segment. `None` sends the target through the full rules,
/// which give the same answer for every input this accepts.
fn already_canonical(raw: &str) -> Option<&str> {
    let path = raw.strip_prefix('/').unwrap_or(raw);
    if path.is_empty() {
        return Some(path);
    }
    // Per segment: its length and how many of its bytes are dots.
    let (mut len, mut dots) = (0usize, 0usize);
    let ends_segment_badly = |len: usize, dots: usize| len == 0 || (dots == len && len <= 2);
    for &b in path.as_bytes() {
        match b {
            b'/' => {
                if ends_segment_badly(len, dots) {
                    return None;
                }
                (len, dots) = (0, 0);
            }
            b'%' | b'?' | b'#' => return None,
            b'.' => (len, dots) = (len + 1, dots + 1),
            _ => len += 1,
        }
    }
    if ends_segment_badly(len, dots) { None } else { Some(path) }
}

/// Every rule of the module docs, building the canonical form.
fn normalise_in_full(raw_path_and_query: &str) -> Result<NormalPath<'static>, PathError> {
    let raw_path = raw_path_and_query.split(['?', '#']).next().unwrap_or_default();
    let decoded = percent_decode(raw_path)?;

    let mut path = String::with_capacity(decoded.len());
    let mut has_dot_segment = false;
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        has_dot_segment |= segment == "." || segment == "..";
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(segment);
    }

    let kind = if has_dot_segment { Kind::NotFound } else { classify(&path) };
    Ok(NormalPath { path: Cow::Owned(path), kind })
}

fn classify(path: &str) -> Kind {
    if path.is_empty() {
        return Kind::VersionList;
    }
    let (version, rest) = match path.split_once('/') {
        Some((version, rest)) => (version, rest),
        None => (path, ""),
    };
    // `latest` is what nearly every request names, and the last entry.
    if version != LATEST && !VERSIONS.contains(&version) {
        return Kind::NotFound;
    }
    if rest == TOKEN_SEGMENTS {
        return Kind::Token { latest: version == LATEST };
    }
    let start = if rest.is_empty() { path.len() } else { version.len() + 1 };
    Kind::Tree(start)
}

/// Percent-decodes strictly: every `%` must start a two-hex-digit escape.
fn percent_decode(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.contains('%') {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut i = 0;
    while let Some(offset) = bytes.get(i..).and_then(|b| b.iter().position(|&c| c == b'%')) {
        let at = i + offset;
        match bytes.get(at + 1..at + 3) {
            Some([h, l]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => i = at + 3,
            _ => return Err(PathError::InvalidEscape),
        }
    }
    percent_encoding::percent_decode_str(raw).decode_utf8().map_err(|_| PathError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden_table_of_edge_cases() {
        let cases: &[(&str, Route<'_>)] = &[
            ("/", Route::VersionList),
            ("", Route::VersionList),
            ("//", Route::VersionList),
            ("/?x=1", Route::VersionList),
            ("/latest", Route::Tree("")),
            ("/latest/", Route::Tree("")),
            ("/2009-04-04/", Route::Tree("")),
            ("/1.0", Route::Tree("")),
            ("/latest/meta-data", Route::Tree("meta-data")),
            ("/latest/meta-data/", Route::Tree("meta-data")),
            ("/latest/meta-data/instance-id", Route::Tree("meta-data/instance-id")),
            ("//latest/meta-data/instance-id", Route::Tree("meta-data/instance-id")),
            ("/latest//meta-data/", Route::Tree("meta-data")),
            ("/latest//meta-data/reservation-id", Route::Tree("meta-data/reservation-id")),
            (
                "/latest/meta-data/placement/availability-zone/",
                Route::Tree("meta-data/placement/availability-zone"),
            ),
            ("/latest/meta-data/tags/instance", Route::Tree("meta-data/tags/instance")),
            ("/latest/meta-data/tags/instance/", Route::Tree("meta-data/tags/instance")),
            ("/latest/user-data/", Route::Tree("user-data")),
            ("/latest/user-data?foo=bar/baz", Route::Tree("user-data")),
            ("/latest/user-data#frag", Route::Tree("user-data")),
            ("/2021-03-23/meta-data/instance-id", Route::Tree("meta-data/instance-id")),
            ("/latest/dynamic/instance-identity/document", Route::Tree("dynamic/instance-identity/document")),
            ("/latest/api/token", Route::Token { latest: true }),
            ("/latest/api/token/", Route::Token { latest: true }),
            ("//latest//api//token", Route::Token { latest: true }),
            ("/2021-03-23/api/token", Route::Token { latest: false }),
            ("/latest/api", Route::Tree("api")),
            ("/latest/api/token/x", Route::Tree("api/token/x")),
            ("/1999-01-01/meta-data/", Route::NotFound),
            ("/1999-01-01/api/token", Route::NotFound),
            ("/Latest/meta-data/", Route::NotFound),
            ("/meta-data/", Route::NotFound),
            ("/latest/Meta-Data", Route::Tree("Meta-Data")),
            ("/latest/meta-data/../user-data", Route::NotFound),
            ("/latest/./meta-data", Route::NotFound),
            ("/latest/meta-data/..", Route::NotFound),
            ("/latest/%2e%2e/x", Route::NotFound),
            ("/..", Route::NotFound),
            ("/latest/meta-data/...", Route::Tree("meta-data/...")),
            ("/latest/meta-data/tags/instance/a%3Ab", Route::Tree("meta-data/tags/instance/a:b")),
            ("/latest%2Fmeta-data%2Finstance-id", Route::Tree("meta-data/instance-id")),
            ("/latest/meta-data/a%3Fb?c", Route::Tree("meta-data/a?b")),
            ("/latest/meta-data/%C3%BC", Route::Tree("meta-data/\u{fc}")),
            ("latest/meta-data", Route::Tree("meta-data")),
        ];
        for (raw, expected) in cases {
            let p = normalise(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(p.route(), *expected, "{raw}");
            assert_eq!(normalise_in_full(raw).unwrap().route(), *expected, "{raw}");
        }
    }

    #[test]
    fn canonical_targets_are_borrowed_and_others_rebuilt() {
        for raw in ["/latest/meta-data/instance-id", "/latest/api/token", "/", "/latest/meta-data/..."] {
            assert!(matches!(normalise(raw).unwrap().path, Cow::Borrowed(_)), "{raw}");
        }
        for raw in ["//latest/meta-data", "/latest/meta-data/", "/latest/a%3Ab", "/latest?x", "/latest/./x"] {
            assert!(matches!(normalise(raw).unwrap().path, Cow::Owned(_)), "{raw}");
        }
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert_eq!(normalise("/latest/%"), Err(PathError::InvalidEscape));
        assert_eq!(normalise("/latest/%4"), Err(PathError::InvalidEscape));
        assert_eq!(normalise("/latest/%zz"), Err(PathError::InvalidEscape));
        assert_eq!(normalise("/latest/%ff"), Err(PathError::NotUtf8));
        assert_eq!(normalise("/latest/%C3"), Err(PathError::NotUtf8));
        // An escape in the dropped query string does not matter.
        assert!(normalise("/latest/meta-data?%zz").is_ok());
    }

    #[test]
    fn overlong_paths_are_refused_before_decoding() {
        let ok = format!("/latest/{}", "a".repeat(MAX_RAW_PATH_LEN - 8));
        assert_eq!(ok.len(), MAX_RAW_PATH_LEN);
        assert!(normalise(&ok).is_ok());
        let long = format!("{ok}a");
        assert_eq!(normalise(&long), Err(PathError::TooLong(MAX_RAW_PATH_LEN + 1)));
        let long_query = format!("/latest?{}", "q".repeat(MAX_RAW_PATH_LEN));
        assert!(matches!(normalise(&long_query), Err(PathError::TooLong(_))));
    }

    #[test]
    fn versions_are_chronological_with_latest_last() {
        assert_eq!(VERSIONS.first(), Some(&"1.0"));
        assert_eq!(VERSIONS.last(), Some(&LATEST));
        let dates = &VERSIONS[1..VERSIONS.len() - 1];
        assert!(dates.windows(2).all(|w| w[0] < w[1]));
        for v in ["2009-04-04", "2016-09-02", "2018-09-24", "2021-03-23"] {
            assert!(VERSIONS.contains(&v), "cloud-init probes {v}");
        }
    }

    #[test]
    fn canonical_form_is_the_decoded_joined_path() {
        assert_eq!(normalise("//latest//meta-data/?q").unwrap().as_str(), "latest/meta-data");
        assert_eq!(normalise("/").unwrap().as_str(), "");
    }

    /// Re-encodes a canonical path so it can be normalised again.
    fn encode(canonical: &str) -> String {
        const SET: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%').add(b'?').add(b'#');
        format!("/{}", percent_encoding::utf8_percent_encode(canonical, SET))
    }

    fn path_like() -> impl Strategy<Value = String> {
        let segment = prop_oneof![
            Just("latest".to_owned()),
            Just("2021-03-23".to_owned()),
            Just("meta-data".to_owned()),
            Just("api".to_owned()),
            Just("token".to_owned()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just("%2F".to_owned()),
            Just("%25".to_owned()),
            "[a-zA-Z0-9:._%-]{0,8}",
        ];
        (proptest::collection::vec(segment, 0..6), any::<bool>(), any::<bool>()).prop_map(
            |(segments, lead, trail)| {
                let mut s = if lead { "/".to_owned() } else { String::new() };
                s.push_str(&segments.join("/"));
                if trail {
                    s.push('/');
                }
                s
            },
        )
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_input(raw in ".{0,300}") {
            if let Ok(p) = normalise(&raw) {
                let _ = p.route();
            }
        }

        #[test]
        fn never_panics_on_arbitrary_bytes_as_escapes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let raw: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
            if let Ok(p) = normalise(&raw) {
                let _ = p.route();
            }
        }

        #[test]
        fn the_borrowed_fast_path_agrees_with_the_full_rules(raw in path_like()) {
            prop_assert_eq!(normalise(&raw), normalise_in_full(&raw));
        }

        #[test]
        fn the_fast_path_agrees_on_arbitrary_input(raw in "[a-z0-9./%?#-]{0,40}") {
            prop_assert_eq!(normalise(&raw), normalise_in_full(&raw));
        }

        #[test]
        fn renormalising_the_canonical_form_gives_the_same_route(raw in path_like()) {
            if let Ok(p) = normalise(&raw) {
                let encoded = encode(p.as_str());
                let again = normalise(&encoded).unwrap();
                prop_assert_eq!(again.as_str(), p.as_str());
                prop_assert_eq!(again.route(), p.route());
            }
        }

        #[test]
        fn extra_slashes_never_change_the_route(
            raw in path_like(),
            extra in proptest::collection::vec(1usize..4, 0..8),
            trailing in any::<bool>(),
        ) {
            if let Ok(p) = normalise(&raw) {
                // Widen every '/' into a run, using `extra` cyclically.
                let mut widened = String::new();
                let mut k = 0;
                for c in raw.chars() {
                    widened.push(c);
                    if c == '/' && !extra.is_empty() {
                        widened.push_str(&"/".repeat(extra[k % extra.len()]));
                        k += 1;
                    }
                }
                if trailing {
                    widened.push('/');
                }
                let q = normalise(&widened).unwrap();
                prop_assert_eq!(q.route(), p.route());
            }
        }
    }
}
