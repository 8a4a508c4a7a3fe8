//! Vary (RFC 9111 §4.1): which request headers select a stored variant.
//!
//! Values are normalized (lines joined with ", ", whitespace around commas
//! and at the ends removed) so trivially different spellings share a
//! variant. `Vary: *`, or a field name that cannot be parsed, never matches.
//! `Accept-Encoding` and `Accept-Language` are preference lists whose
//! members are compared case-insensitively and whose order only matters
//! through their weights (RFC 9110 §12.4.2, §12.5.3, §12.5.4): they are
//! normalised further (lower case, `q` written one way, sorted by weight)
//! so equivalent requests share one variant. Credential headers
//! (`Authorization`, `Cookie`, `Proxy-Authorization`) are kept only as a
//! keyed hash: variants are stored, secrets are not.

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
/// the response can never be matched (`Vary: *`). A dialect may `add`
/// names the upstream answers by without listing them, and `ignore` names
/// the partition already covers.
pub fn variant_of(
    response: &HeaderMap,
    request: &HeaderMap,
    key: &PartitionKey,
    add: &[HeaderName],
    ignore: &[HeaderName],
) -> Option<Variant> {
    let mut names: Vec<HeaderName> = add.to_vec();
    for line in response.get_all(VARY) {
        let line = line.to_str().ok()?;
        for name in line.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return None;
            }
            let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
            if !names.contains(&name) && !ignore.contains(&name) {
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
        let v = exact_text(v.as_bytes());
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
    if *name == http::header::ACCEPT_ENCODING || *name == http::header::ACCEPT_LANGUAGE {
        return Some(preferences(&out).into_boxed_str());
    }
    Some(out.into_boxed_str())
}

/// `bytes` as text, byte-exactly: UTF-8 as it is, and each byte of an
/// invalid sequence as DEL and two hex digits. A header value never holds
/// DEL, so two different values never read the same (a lossy reading made
/// `s=\xe9` and `s=\xe8` one `Cookie` variant).
fn exact_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\u{7f}{b:02x}"));
        }
    }
    out
}

/// A weighted preference list in one spelling: members in lower case, a
/// weight of 1 left out and others written with up to three decimals,
/// ordered by weight (heaviest first) and then by spelling, the first of
/// members with the same name kept. A member whose weight does not parse,
/// or that has no name, is kept as written (lower-cased), weighing least:
/// it never merges with another. Applied to its own output it changes
/// nothing.
fn preferences(list: &str) -> String {
    // (weight, name, spelling)
    let mut members: Vec<(u16, String, String)> = Vec::new();
    for member in list.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let member = member.to_ascii_lowercase();
        let (name, params) = match member.split_once(';') {
            Some((name, params)) => (name.trim(), Some(params)),
            None => (member.as_str(), None),
        };
        if members.iter().any(|(_, n, _)| n == name) {
            continue;
        }
        let weight = match params {
            // A weight alone (`;q=1`) names nothing: spelled as its name,
            // it would vanish when normalised again.
            _ if name.is_empty() => None,
            None => Some(1000),
            Some(params) => params
                .trim()
                .strip_prefix("q=")
                .and_then(qvalue)
                .filter(|_| !params.contains(';')),
        };
        let spelled = match weight {
            Some(1000) => name.to_owned(),
            Some(w) => format!("{name};q={}", qvalue_text(w)),
            None => member.clone(),
        };
        members.push((weight.unwrap_or(0), name.to_owned(), spelled));
    }
    members.sort_by(|(wa, _, a), (wb, _, b)| wb.cmp(wa).then_with(|| a.cmp(b)));
    members
        .into_iter()
        .map(|(_, _, m)| m)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` (RFC 9110
/// §12.4.2) as thousandths.
fn qvalue(text: &str) -> Option<u16> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths: u16 = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn qvalue_text(thousandths: u16) -> String {
    let text = format!("0.{thousandths:03}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
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
        let v = variant_of(&res, &h(&[("accept-encoding", "gzip,br")]), &k, &[], &[]).unwrap();
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
    fn equivalent_encoding_and_language_preferences_select_one_variant() {
        let res = h(&[("vary", "Accept-Encoding, Accept-Language")]);
        let k = key();
        let v = variant_of(
            &res,
            &h(&[
                ("accept-encoding", "gzip, deflate, br"),
                ("accept-language", "en-US,en;q=0.5"),
            ]),
            &k,
            &[],
            &[],
        )
        .unwrap();
        for (encoding, language) in [
            ("br,GZIP , deflate", "en-us, EN;q=0.50"),
            ("deflate;q=1.0, br, gzip", "en;q=0.500, en-US;q=1"),
            ("gzip, br, deflate, gzip;q=0.1", "en-US, en;q=0.5, EN"),
        ] {
            let req = h(&[("accept-encoding", encoding), ("accept-language", language)]);
            assert!(matches(&v, &req, &k), "{encoding} / {language}");
        }
        for (encoding, language) in [
            ("gzip;q=0.5, deflate, br", "en-US,en;q=0.5"),
            ("gzip, deflate, br", "en,en-US;q=0.5"),
            ("gzip, deflate", "en-US,en;q=0.5"),
            // A weight that does not parse never merges with another.
            ("gzip, deflate, br", "en-US,en;q=.5x"),
        ] {
            let req = h(&[("accept-encoding", encoding), ("accept-language", language)]);
            assert!(!matches(&v, &req, &k), "{encoding} / {language}");
        }
    }

    /// Found by the `vary` fuzz target's idempotence check: `y;q=0, y;a`
    /// kept both members (an unreadable weight's member was compared by its
    /// whole text), sorted to `y;a, y;q=0`, which normalised again to
    /// `y;a`: one request, two variants.
    #[test]
    fn a_preference_list_keeps_one_member_per_name_and_is_a_fixed_point() {
        for (list, want) in [
            ("y;q=0, y;a", "y;q=0"),
            ("y;a, y;q=0", "y;a"),
            ("gzip;q=x, GZIP", "gzip;q=x"),
            ("br;q=0.5, gzip, br", "gzip, br;q=0.5"),
            // Found by the same check: a weight without a name was spelled
            // as its (empty) name, which the next pass dropped.
            (";q=1, ua", "ua, ;q=1"),
            (
                "gzAcceptde;q, deflate, br;ip, ;q=1.0",
                "deflate, ;q=1.0, br;ip, gzacceptde;q",
            ),
        ] {
            let once = preferences(list);
            assert_eq!(once, want, "{list}");
            assert_eq!(preferences(&once), once, "{list}");
        }
    }

    /// Values were read lossily: every invalid byte became U+FFFD, so two
    /// callers whose cookies differed only there shared a `Vary: Cookie`
    /// variant (the one's personalised response served to the other).
    #[test]
    fn values_that_are_not_utf8_select_byte_exactly() {
        let res = h(&[("vary", "Cookie, Accept-Language")]);
        let k = key();
        let req = |cookie: &[u8], language: &[u8]| {
            let mut r = HeaderMap::new();
            r.insert("cookie", HeaderValue::from_bytes(cookie).unwrap());
            r.insert(
                "accept-language",
                HeaderValue::from_bytes(language).unwrap(),
            );
            r
        };
        let v = variant_of(&res, &req(b"s=\xe9", b"fr"), &k, &[], &[]).unwrap();
        assert!(matches(&v, &req(b"s=\xe9", b"fr"), &k));
        assert!(!matches(&v, &req(b"s=\xe8", b"fr"), &k));
        let v = variant_of(&res, &req(b"s=1", b"\xe9\xff"), &k, &[], &[]).unwrap();
        assert!(matches(&v, &req(b"s=1", b"\xe9\xff"), &k));
        assert!(!matches(&v, &req(b"s=1", b"\xe8\xff"), &k));
        assert!(!matches(
            &v,
            &req(b"s=1", "\u{fffd}\u{fffd}".as_bytes()),
            &k
        ));
    }

    #[test]
    fn qvalues_parse_as_the_rfc_writes_them() {
        assert_eq!(qvalue("1"), Some(1000));
        assert_eq!(qvalue("1.000"), Some(1000));
        assert_eq!(qvalue("0.5"), Some(500));
        assert_eq!(qvalue("0.05"), Some(50));
        assert_eq!(qvalue("0"), Some(0));
        for bad in ["1.5", "2", "0.0001", "-0.5", ".5", "0.x", ""] {
            assert_eq!(qvalue(bad), None, "{bad:?}");
        }
        assert_eq!(qvalue_text(500), "0.5");
        assert_eq!(qvalue_text(50), "0.05");
        assert_eq!(qvalue_text(0), "0");
    }

    #[test]
    fn vary_star_anywhere_never_matches() {
        let k = key();
        assert!(
            variant_of(
                &h(&[("vary", "accept, *")]),
                &HeaderMap::new(),
                &k,
                &[],
                &[]
            )
            .is_none()
        );
        assert!(
            variant_of(
                &h(&[("vary", "accept"), ("vary", "*")]),
                &HeaderMap::new(),
                &k,
                &[],
                &[]
            )
            .is_none()
        );
    }

    #[test]
    fn credential_headers_are_kept_as_keyed_hashes_only() {
        let k = key();
        let req = h(&[("authorization", "Bearer s3cret")]);
        let v = variant_of(&h(&[("vary", "Authorization")]), &req, &k, &[], &[]).unwrap();
        assert!(!v[0].1.as_deref().unwrap().contains("s3cret"));
        assert!(matches(&v, &req, &k));
        assert!(!matches(&v, &h(&[("authorization", "Bearer other")]), &k));
    }

    #[test]
    fn a_dialect_adds_names_the_upstream_answers_by_and_ignores_what_the_partition_covers() {
        let k = key();
        let add = [HeaderName::from_static("x-github-api-version")];
        let ignore = [http::header::AUTHORIZATION];
        let res = h(&[("vary", "Accept, Authorization")]);
        let req = h(&[
            ("accept", "application/json"),
            ("authorization", "token a"),
            ("x-github-api-version", "2022-11-28"),
        ]);
        let v = variant_of(&res, &req, &k, &add, &ignore).unwrap();
        let other_token = h(&[
            ("accept", "application/json"),
            ("authorization", "token b"),
            ("x-github-api-version", "2022-11-28"),
        ]);
        assert!(matches(&v, &other_token, &k));
        let other_version = h(&[
            ("accept", "application/json"),
            ("authorization", "token a"),
            ("x-github-api-version", "2026-03-10"),
        ]);
        assert!(!matches(&v, &other_version, &k));
    }
}
