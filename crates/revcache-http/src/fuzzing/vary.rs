//! `vary`: the variant a request selects (`crate::policy::vary`) and the
//! keys it is stored under. One header block is both the response (its
//! `Vary` lines) and the request.

use std::sync::{Arc, OnceLock};

use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, VARY};
use http::{HeaderMap, HeaderName, HeaderValue};
use quick_cache::Equivalent;
use revcache_core::fuzzing::header_lines;
use revcache_core::{KeyClass, KeyRef, Partition, PartitionKey, PrimaryKey, Variant, record};

use crate::policy::vary::{matches, variant_of};

fn partition_key() -> &'static PartitionKey {
    static KEY: OnceLock<PartitionKey> = OnceLock::new();
    KEY.get_or_init(|| PartitionKey::ephemeral().expect("a random partition key"))
}

/// Never panics; the same request gives the same variant, which it
/// matches; a request made of a variant's normalised values selects that
/// variant again (normalisation is idempotent); keys built from the same
/// parts are equal, hash alike and survive their byte encoding.
pub fn check_vary(data: &[u8]) {
    let headers = header_lines(data);
    let key = partition_key();
    let add = [HeaderName::from_static("x-github-api-version")];
    let ignore = [AUTHORIZATION];
    for (add, ignore) in [(&add[..], &ignore[..]), (&[], &[])] {
        let variant = variant_of(&headers, &headers, key, add, ignore);
        assert_eq!(variant, variant_of(&headers, &headers, key, add, ignore));
        let Some(variant) = variant else {
            continue;
        };
        assert!(matches(&variant, &headers, key));
        let again = variant_of(
            &headers,
            &normalised_request(&variant, &headers),
            key,
            add,
            ignore,
        );
        assert_eq!(
            again.as_ref(),
            Some(&variant),
            "normalisation is not idempotent"
        );
        check_keys(&headers, &variant);
    }
}

/// A request holding `variant`'s values as they were normalised
/// (credential headers, stored as hashes, and values with bytes that are
/// not UTF-8, stored escaped, keep the request's values), and the
/// response's `Vary`.
fn normalised_request(variant: &Variant, request: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for line in request.get_all(VARY) {
        out.append(VARY, line.clone());
    }
    for (name, value) in variant.iter() {
        if *name == VARY {
            // Copied above: a response may vary on `Vary` itself.
            continue;
        }
        let escaped = value.as_deref().is_some_and(|v| v.contains('\u{7f}'));
        if escaped || [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION].contains(name) {
            for v in request.get_all(name) {
                out.append(name.clone(), v.clone());
            }
        } else if let Some(value) = value {
            let value = HeaderValue::from_str(value).expect("a normalised value is a header value");
            out.append(name.clone(), value);
        }
    }
    out
}

fn check_keys(headers: &HeaderMap, variant: &Variant) {
    let target = headers
        .get("x-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("/");
    let host: Arc<str> = Arc::from("upstream.example:443");
    let class = KeyClass::Named(Arc::from("PROPFIND 1 allprop"));
    for (class, partition) in [
        (KeyClass::Get, Partition::Public),
        (class, Partition::Credential([3; 16])),
    ] {
        let key = PrimaryKey::new(9, class.clone(), host.clone(), target, partition);
        let same = PrimaryKey::new(9, class.clone(), host.clone(), target, partition);
        assert_eq!(key, same);
        assert_eq!(key.hash64(), same.hash64());
        let borrowed = KeyRef::new(9, &class, &host, target, partition);
        assert!(borrowed.equivalent(&key));
        assert_eq!(borrowed.to_key(), key);
        let bytes = record::entry_key(&key, variant);
        assert_eq!(bytes, record::entry_key(&same, variant));
        assert_eq!(record::decode_key(&bytes).ok(), Some(key.clone()));
        assert_eq!(record::decode_key(&record::key_bytes(&key)).ok(), Some(key));
    }
}
