//! Parsing `Cache-Control` (RFC 9111 §5.2), and the targeted fields that
//! take its place for a cache they name (RFC 9213, `CDN-Cache-Control`).
//!
//! Directive names are case-insensitive; unknown directives are ignored;
//! values may be tokens or quoted strings; a directive that appears twice
//! keeps its first occurrence. A delta-seconds value that is not a
//! non-negative integer is kept as [`Delta::Invalid`], which makes a
//! response stale rather than fresh.

use http::header::CACHE_CONTROL;
use http::{HeaderMap, HeaderName};

/// A delta-seconds directive value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delta {
    Seconds(u64),
    Invalid,
}

/// delta-seconds beyond this are treated as this (RFC 9111 §1.2.2).
pub const DELTA_MAX: u64 = 2_147_483_648;

impl Delta {
    fn parse(value: Option<&str>) -> Delta {
        match value {
            Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                Delta::Seconds(v.parse::<u64>().unwrap_or(DELTA_MAX).min(DELTA_MAX))
            }
            _ => Delta::Invalid,
        }
    }

    /// Seconds, with an invalid value counting as zero.
    pub fn seconds(self) -> u64 {
        match self {
            Delta::Seconds(s) => s,
            Delta::Invalid => 0,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResponseDirectives {
    pub max_age: Option<Delta>,
    pub s_maxage: Option<Delta>,
    pub no_cache: bool,
    pub no_store: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub must_understand: bool,
    pub stale_while_revalidate: Option<Delta>,
    pub stale_if_error: Option<Delta>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestDirectives {
    pub max_age: Option<Delta>,
    /// `Some(None)`: any staleness is acceptable.
    pub max_stale: Option<Option<Delta>>,
    pub min_fresh: Option<Delta>,
    pub no_cache: bool,
    pub no_store: bool,
    pub only_if_cached: bool,
    pub stale_if_error: Option<Delta>,
}

impl ResponseDirectives {
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut d = ResponseDirectives::default();
        for_each_directive(headers, |name, value| match name {
            "max-age" => set_once(&mut d.max_age, Delta::parse(value)),
            "s-maxage" => set_once(&mut d.s_maxage, Delta::parse(value)),
            "no-cache" => d.no_cache = true,
            "no-store" => d.no_store = true,
            "private" => d.private = true,
            "public" => d.public = true,
            "must-revalidate" => d.must_revalidate = true,
            "proxy-revalidate" => d.proxy_revalidate = true,
            "must-understand" => d.must_understand = true,
            "stale-while-revalidate" => {
                set_once(&mut d.stale_while_revalidate, Delta::parse(value))
            }
            "stale-if-error" => set_once(&mut d.stale_if_error, Delta::parse(value)),
            _ => {}
        });
        d
    }

    /// The directives a cache whose target list is `targets` (most
    /// specific first) keeps and serves the response by (RFC 9213 §2.2):
    /// those of the first targeted field present with a valid value, and
    /// then `Cache-Control` is ignored; `Cache-Control`'s when there is none.
    pub fn for_cache(headers: &HeaderMap, targets: &[HeaderName]) -> Self {
        targets
            .iter()
            .find_map(|name| targeted(headers, name))
            .unwrap_or_else(|| Self::parse(headers))
    }

    /// Whether the response may be shared with other credentials
    /// (RFC 9111 §3.5; `must-revalidate` only when the route follows the
    /// RFC to the letter: `no-cache, must-revalidate` on personal data is
    /// common).
    pub fn allows_sharing_authenticated(&self, sharing: super::Sharing) -> bool {
        !self.private
            && (self.public
                || self.s_maxage.is_some()
                || (sharing == super::Sharing::Rfc9111 && self.must_revalidate))
    }
}

impl RequestDirectives {
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut d = RequestDirectives::default();
        for_each_directive(headers, |name, value| match name {
            "max-age" => set_once(&mut d.max_age, Delta::parse(value)),
            "max-stale" => set_once(&mut d.max_stale, value.map(|v| Delta::parse(Some(v)))),
            "min-fresh" => set_once(&mut d.min_fresh, Delta::parse(value)),
            "no-cache" => d.no_cache = true,
            "no-store" => d.no_store = true,
            "only-if-cached" => d.only_if_cached = true,
            "stale-if-error" => set_once(&mut d.stale_if_error, Delta::parse(value)),
            _ => {}
        });
        d
    }
}

/// The directives of the targeted field `name`: `None` when it is absent
/// or not a valid Structured Field Dictionary (RFC 9213 §2.1; an invalid
/// field is ignored as a whole). Its lines are one dictionary. Directive
/// semantics are `Cache-Control`'s: delta-seconds are Integers (anything
/// else is invalid, hence stale), flags are `true` (`?0` is absent), and
/// the qualified forms of `private` and `no-cache` count unqualified.
fn targeted(headers: &HeaderMap, name: &HeaderName) -> Option<ResponseDirectives> {
    let mut lines = headers.get_all(name).iter();
    let mut joined = lines.next()?.as_bytes().to_vec();
    for line in lines {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(line.as_bytes());
    }
    let dictionary: sfv::Dictionary = sfv::Parser::new(&joined).parse_dictionary().ok()?;
    let mut d = ResponseDirectives::default();
    for (key, member) in &dictionary {
        let item = match member {
            sfv::ListEntry::Item(item) => Some(&item.bare_item),
            sfv::ListEntry::InnerList(_) => None,
        };
        let set = item.is_none_or(|i| i.as_boolean() != Some(false));
        let delta = || match item.and_then(|i| i.as_integer()).map(i64::from) {
            Some(n) if n >= 0 => Delta::Seconds((n as u64).min(DELTA_MAX)),
            _ => Delta::Invalid,
        };
        match key.as_str() {
            "max-age" => d.max_age = Some(delta()),
            "s-maxage" => d.s_maxage = Some(delta()),
            "stale-while-revalidate" => d.stale_while_revalidate = Some(delta()),
            "stale-if-error" => d.stale_if_error = Some(delta()),
            "no-cache" => d.no_cache = set,
            "no-store" => d.no_store = set,
            "private" => d.private = set,
            "public" => d.public = set,
            "must-revalidate" => d.must_revalidate = set,
            "proxy-revalidate" => d.proxy_revalidate = set,
            "must-understand" => d.must_understand = set,
            _ => {}
        }
    }
    Some(d)
}

fn set_once<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

/// Calls `f(lowercase name, unquoted value)` for every directive of every
/// `Cache-Control` line. Values that are not valid UTF-8 are skipped.
fn for_each_directive(headers: &HeaderMap, mut f: impl FnMut(&str, Option<&str>)) {
    for line in headers.get_all(CACHE_CONTROL) {
        let Ok(line) = line.to_str() else { continue };
        for part in split_directives(line) {
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (n.trim(), Some(unquote(v.trim()))),
                None => (part.trim(), None),
            };
            if name.is_empty() {
                continue;
            }
            let name = name.to_ascii_lowercase();
            f(&name, value.as_deref());
        }
    }
}

/// Splits on commas outside quoted strings.
fn split_directives(line: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&line[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&line[start..]);
    parts
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut escaped = false;
            for c in inner.chars() {
                if escaped || c != '\\' {
                    out.push(c);
                    escaped = false;
                } else {
                    escaped = true;
                }
            }
            out
        }
        None => v.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(CACHE_CONTROL, HeaderValue::from_str(l).unwrap());
        }
        h
    }

    #[test]
    fn directives_are_case_insensitive_and_span_lines() {
        let d = ResponseDirectives::parse(&headers(&["Max-Age=60, PUBLIC", "s-maxage=\"10\""]));
        assert_eq!(d.max_age, Some(Delta::Seconds(60)));
        assert_eq!(d.s_maxage, Some(Delta::Seconds(10)));
        assert!(d.public);
    }

    #[test]
    fn invalid_and_huge_deltas_are_handled() {
        let d = ResponseDirectives::parse(&headers(&["max-age=-1"]));
        assert_eq!(d.max_age, Some(Delta::Invalid));
        let d = ResponseDirectives::parse(&headers(&["max-age=1.5"]));
        assert_eq!(d.max_age, Some(Delta::Invalid));
        let d = ResponseDirectives::parse(&headers(&["max-age=99999999999999999999999"]));
        assert_eq!(d.max_age, Some(Delta::Seconds(DELTA_MAX)));
    }

    #[test]
    fn first_duplicate_wins_and_unknown_directives_are_ignored() {
        let d = ResponseDirectives::parse(&headers(&["max-age=10, foo=\"a,b\", max-age=20"]));
        assert_eq!(d.max_age, Some(Delta::Seconds(10)));
    }

    #[test]
    fn request_max_stale_without_value_accepts_any_staleness() {
        let d = RequestDirectives::parse(&headers(&["max-stale, only-if-cached"]));
        assert_eq!(d.max_stale, Some(None));
        assert!(d.only_if_cached);
    }

    fn with(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn cdn() -> Vec<HeaderName> {
        vec![
            HeaderName::from_static("revcache-cache-control"),
            HeaderName::from_static("cdn-cache-control"),
        ]
    }

    #[test]
    fn a_valid_targeted_field_replaces_cache_control() {
        let h = with(&[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=60, stale-if-error=30"),
        ]);
        let d = ResponseDirectives::for_cache(&h, &cdn());
        assert!(!d.no_store);
        assert_eq!(d.max_age, Some(Delta::Seconds(60)));
        assert_eq!(d.stale_if_error, Some(Delta::Seconds(30)));
    }

    #[test]
    fn the_most_specific_valid_field_wins() {
        let h = with(&[
            ("cdn-cache-control", "max-age=60"),
            ("revcache-cache-control", "no-store"),
        ]);
        assert!(ResponseDirectives::for_cache(&h, &cdn()).no_store);
        let h = with(&[
            ("cdn-cache-control", "max-age=60"),
            ("revcache-cache-control", "max-age=\"x"),
        ]);
        let d = ResponseDirectives::for_cache(&h, &cdn());
        assert_eq!(
            d.max_age,
            Some(Delta::Seconds(60)),
            "the invalid one is skipped"
        );
    }

    #[test]
    fn an_invalid_targeted_field_is_ignored_as_a_whole() {
        for invalid in [
            "max-age=60, Max-Age=5",
            "max-age=60,,",
            "no-store;",
            "max-age=\"60",
        ] {
            let h = with(&[
                ("cache-control", "max-age=5"),
                ("cdn-cache-control", invalid),
            ]);
            let d = ResponseDirectives::for_cache(&h, &cdn());
            assert_eq!(d.max_age, Some(Delta::Seconds(5)), "{invalid}");
            assert!(!d.no_store, "{invalid}");
        }
    }

    #[test]
    fn targeted_values_follow_structured_field_types() {
        let h = with(&[("cdn-cache-control", "max-age=1.5, s-maxage=-1, no-cache=?0")]);
        let d = ResponseDirectives::for_cache(&h, &cdn());
        assert_eq!(d.max_age, Some(Delta::Invalid));
        assert_eq!(d.s_maxage, Some(Delta::Invalid));
        assert!(!d.no_cache);
        let h = with(&[
            ("cdn-cache-control", "private=\"set-cookie\""),
            ("cdn-cache-control", "max-age=99999999999"),
        ]);
        let d = ResponseDirectives::for_cache(&h, &cdn());
        assert!(d.private, "the qualified form counts, lines combine");
        assert_eq!(d.max_age, Some(Delta::Seconds(DELTA_MAX)));
    }

    #[test]
    fn without_targets_only_cache_control_counts() {
        let h = with(&[
            ("cache-control", "max-age=5"),
            ("cdn-cache-control", "no-store"),
        ]);
        assert!(!ResponseDirectives::for_cache(&h, &[]).no_store);
    }
}
