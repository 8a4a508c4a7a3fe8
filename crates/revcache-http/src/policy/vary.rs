//! Vary (RFC 9111 §4.1): which request headers select a stored variant.
//!
//! Values are normalized (lines joined with ", ", whitespace around commas
//! and at the ends removed) so trivially different spellings share a
//! variant. `Vary: *`, or a field name that cannot be parsed, never matches.
//! Credential headers (`Authorization`, `Cookie`, `Proxy-Authorization`)
//! are kept only as a keyed hash: variants are stored, secrets are not.

use http::HeaderMap;
use http::header::{HeaderName, VARY};
use revcache_core::PartitionKey;
use revcache_core::Variant;

const SECRET: [HeaderName; 3] = [
    http::header::AUTHORIZATION,
    http::header::COOKIE,
    http::header::PROXY_AUTHORIZATION,
];

/// The variant a request selects under a response's `Vary`, or `None` when
/// the response can never be matched (`Vary: *`).
pub fn variant_of(
    response: &HeaderMap,
    request: &HeaderMap,
    key: &PartitionKey,
) -> Option<Variant> {
    let mut names: Vec<HeaderName> = Vec::new();
    for line in response.get_all(VARY) {
        let line = line.to_str().ok()?;
        for name in line.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return None;
            }
            let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    Some(
        names
            .into_iter()
            .map(|name| {
                let value = normalized(request, &name, key);
                (name, value)
            })
            .collect(),
    )
}

/// Whether `request` selects `variant`.
pub fn matches(variant: &Variant, request: &HeaderMap, key: &PartitionKey) -> bool {
    variant
        .iter()
        .all(|(name, value)| normalized(request, name, key).as_deref() == value.as_deref())
}

fn normalized(request: &HeaderMap, name: &HeaderName, key: &PartitionKey) -> Option<Box<str>> {
    let mut values = request.get_all(name).iter().peekable();
    values.peek()?;
    let mut out = String::new();
    for v in values {
        // Non-UTF-8 values still select, byte-exactly.
        let v = String::from_utf8_lossy(v.as_bytes());
        for part in v.split(',') {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(part.trim());
        }
    }
    if SECRET.contains(name) {
        return Some(format!("#{}", key.partition(&[out.as_bytes()])).into_boxed_str());
    }
    Some(out.into_boxed_str())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            m.append(*n, HeaderValue::from_static(v));
        }
        m
    }

    fn key() -> PartitionKey {
        PartitionKey::ephemeral().unwrap()
    }

    #[test]
    fn requests_match_the_variant_of_equal_normalized_values() {
        let k = key();
        let res = h(&[("vary", "Accept-Encoding, accept-language")]);
        let v = variant_of(&res, &h(&[("accept-encoding", "gzip,br")]), &k).unwrap();
        assert!(matches(&v, &h(&[("accept-encoding", "gzip, br")]), &k));
        assert!(matches(
            &v,
            &h(&[("accept-encoding", "gzip"), ("accept-encoding", "br")]),
            &k
        ));
        assert!(!matches(&v, &h(&[("accept-encoding", "gzip")]), &k));
        assert!(!matches(
            &v,
            &h(&[("accept-encoding", "gzip, br"), ("accept-language", "en")]),
            &k
        ));
    }

    #[test]
    fn vary_star_anywhere_never_matches() {
        let k = key();
        assert!(variant_of(&h(&[("vary", "accept, *")]), &HeaderMap::new(), &k).is_none());
        assert!(
            variant_of(
                &h(&[("vary", "accept"), ("vary", "*")]),
                &HeaderMap::new(),
                &k
            )
            .is_none()
        );
    }

    #[test]
    fn credential_headers_are_kept_as_keyed_hashes_only() {
        let k = key();
        let req = h(&[("authorization", "Bearer s3cret")]);
        let v = variant_of(&h(&[("vary", "Authorization")]), &req, &k).unwrap();
        assert!(!v[0].1.as_deref().unwrap().contains("s3cret"));
        assert!(matches(&v, &req, &k));
        assert!(!matches(&v, &h(&[("authorization", "Bearer other")]), &k));
    }
}
