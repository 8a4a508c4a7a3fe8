//! Answering clients' conditional GET/HEAD from a stored response
//! (RFC 9110 §13.1.2, §13.1.3, §13.2.2): `If-None-Match` takes precedence
//! over `If-Modified-Since`.

use http::header::{DATE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use http::{HeaderMap, HeaderName};
use revcache_core::StoredHeaders;

use super::freshness::http_date;

/// Read access to a response's headers, stored or just received.
pub trait Headers {
    /// The first value of `name`, when it is text.
    fn first(&self, name: HeaderName) -> Option<&str>;
}

impl Headers for HeaderMap {
    fn first(&self, name: HeaderName) -> Option<&str> {
        self.get(name)?.to_str().ok()
    }
}

impl Headers for StoredHeaders {
    fn first(&self, name: HeaderName) -> Option<&str> {
        self.get_str(name.as_str())
    }
}

fn date_of(h: &impl Headers, name: HeaderName) -> Option<std::time::SystemTime> {
    httpdate::parse_http_date(h.first(name)?.trim()).ok()
}

/// Whether the client's condition says it already has `stored` (answer 304).
pub fn not_modified(req: &HeaderMap, stored: &impl Headers) -> bool {
    if req.contains_key(IF_NONE_MATCH) {
        let Some(etag) = stored.first(ETAG) else {
            return req
                .get_all(IF_NONE_MATCH)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| v.trim() == "*"));
        };
        let opaque = weak_opaque(etag);
        return req
            .get_all(IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .any(|candidate| candidate == "*" || weak_opaque(candidate) == opaque);
    }
    let Some(since) = http_date(req, IF_MODIFIED_SINCE) else {
        return false;
    };
    match date_of(stored, LAST_MODIFIED).or_else(|| date_of(stored, DATE)) {
        Some(modified) => modified <= since,
        None => false,
    }
}

/// The opaque part of an entity tag, for weak comparison.
fn weak_opaque(tag: &str) -> &str {
    let tag = tag.trim();
    tag.strip_prefix("W/").unwrap_or(tag)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    http::HeaderName::from_static(n),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn if_none_match_uses_weak_comparison_over_a_list() {
        let stored = h(&[("etag", "\"v2\"")]);
        assert!(not_modified(
            &h(&[("if-none-match", "\"v1\", W/\"v2\"")]),
            &stored
        ));
        assert!(!not_modified(&h(&[("if-none-match", "\"v1\"")]), &stored));
        assert!(not_modified(&h(&[("if-none-match", "*")]), &stored));
    }

    #[test]
    fn if_none_match_takes_precedence_over_if_modified_since() {
        let stored = h(&[
            ("etag", "\"v2\""),
            ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        let req = h(&[
            ("if-none-match", "\"v1\""),
            ("if-modified-since", "Sun, 06 Nov 2094 08:49:37 GMT"),
        ]);
        assert!(!not_modified(&req, &stored));
    }

    #[test]
    fn if_modified_since_compares_with_last_modified() {
        let stored = h(&[("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert!(not_modified(
            &h(&[("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")]),
            &stored
        ));
        assert!(!not_modified(
            &h(&[("if-modified-since", "Sat, 05 Nov 1994 08:49:37 GMT")]),
            &stored
        ));
        assert!(!not_modified(
            &h(&[("if-modified-since", "garbage")]),
            &stored
        ));
    }
}
