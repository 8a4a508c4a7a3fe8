//! Updating stored headers from a 304 (RFC 9111 §3.2, §4.3.4).

use http::HeaderMap;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, ETAG, HeaderName};

/// Headers a 304 never replaces: framing and what the stored body depends on.
const EXEMPT: [HeaderName; 3] = [CONTENT_LENGTH, CONTENT_ENCODING, CONTENT_RANGE];

/// The stored headers updated with every header of the 304 (hop-by-hop
/// headers are assumed already stripped from `not_modified`).
pub fn merge_304(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    let mut merged = stored.clone();
    for name in not_modified.keys() {
        if EXEMPT.contains(name) {
            continue;
        }
        merged.remove(name);
        for value in not_modified.get_all(name) {
            merged.append(name.clone(), value.clone());
        }
    }
    merged
}

/// Whether a 304 is about the stored response (§4.3.4): when it names a
/// strong ETag, that ETag must be the stored one.
pub fn validates(stored: &HeaderMap, not_modified: &HeaderMap) -> bool {
    match (not_modified.get(ETAG), stored.get(ETAG)) {
        (Some(new), Some(old)) => {
            let strip = |v: &[u8]| v.strip_prefix(b"W/").unwrap_or(v).to_vec();
            strip(new.as_bytes()) == strip(old.as_bytes())
        }
        (Some(_), None) => false,
        (None, _) => true,
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn a_304_replaces_headers_but_not_framing() {
        let mut stored = HeaderMap::new();
        stored.insert(CONTENT_LENGTH, HeaderValue::from_static("5"));
        stored.insert("cache-control", HeaderValue::from_static("max-age=1"));
        stored.insert("x-old", HeaderValue::from_static("1"));
        let mut nm = HeaderMap::new();
        nm.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        nm.insert("cache-control", HeaderValue::from_static("max-age=60"));
        nm.append("x-new", HeaderValue::from_static("a"));
        nm.append("x-new", HeaderValue::from_static("b"));
        let m = merge_304(&stored, &nm);
        assert_eq!(m[CONTENT_LENGTH], "5");
        assert_eq!(m["cache-control"], "max-age=60");
        assert_eq!(m["x-old"], "1");
        assert_eq!(m.get_all("x-new").iter().count(), 2);
    }

    #[test]
    fn a_304_for_another_etag_does_not_validate() {
        let mut stored = HeaderMap::new();
        stored.insert(ETAG, HeaderValue::from_static("\"a\""));
        let mut nm = HeaderMap::new();
        nm.insert(ETAG, HeaderValue::from_static("\"b\""));
        assert!(!validates(&stored, &nm));
        nm.insert(ETAG, HeaderValue::from_static("\"a\""));
        assert!(validates(&stored, &nm));
        assert!(validates(&stored, &HeaderMap::new()));
    }
}
