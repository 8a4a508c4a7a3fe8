//! Updating stored headers from a 304 (RFC 9111 §3.2, §4.3.4).
//!
//! A 304 answers one client's request: what it says to that client alone
//! (cookies, authentication results) never enters the stored, shared
//! headers; the proxy hands it to that client with [`copy_per_client`].

use http::HeaderMap;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, ETAG, HeaderName, SET_COOKIE};

/// Headers a 304 never replaces: framing and what the stored body depends on.
const EXEMPT: [HeaderName; 3] = [CONTENT_LENGTH, CONTENT_ENCODING, CONTENT_RANGE];

/// Headers of a 304 meant for the client that asked, never stored.
const PER_CLIENT: [HeaderName; 4] = [
    SET_COOKIE,
    HeaderName::from_static("set-cookie2"),
    HeaderName::from_static("authentication-info"),
    HeaderName::from_static("proxy-authentication-info"),
];

/// The stored headers updated with every header of the 304 but framing
/// and per-client ones (hop-by-hop headers are assumed already stripped
/// from `not_modified`).
pub fn merge_304(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    let mut merged = stored.clone();
    for name in not_modified.keys() {
        if EXEMPT.contains(name) || PER_CLIENT.contains(name) {
            continue;
        }
        merged.remove(name);
        for value in not_modified.get_all(name) {
            merged.append(name.clone(), value.clone());
        }
    }
    merged
}

/// Adds a 304's per-client headers to the response its client gets.
pub fn copy_per_client(not_modified: &HeaderMap, response: &mut HeaderMap) {
    for name in &PER_CLIENT {
        for value in not_modified.get_all(name) {
            response.append(name.clone(), value.clone());
        }
    }
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
    fn a_304_never_merges_cookies_or_authentication_results() {
        let mut stored = HeaderMap::new();
        stored.insert("cache-control", HeaderValue::from_static("max-age=1"));
        let mut nm = HeaderMap::new();
        nm.insert(SET_COOKIE, HeaderValue::from_static("sid=alice"));
        nm.insert("set-cookie2", HeaderValue::from_static("sid=alice"));
        nm.insert("authentication-info", HeaderValue::from_static("x"));
        nm.insert("proxy-authentication-info", HeaderValue::from_static("x"));
        nm.insert("cache-control", HeaderValue::from_static("max-age=60"));
        let m = merge_304(&stored, &nm);
        assert_eq!(m.len(), 1);
        assert_eq!(m["cache-control"], "max-age=60");
        let mut client = HeaderMap::new();
        copy_per_client(&nm, &mut client);
        assert_eq!(client[SET_COOKIE], "sid=alice");
        assert_eq!(client.len(), 4);
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
