//! Credentials: the parts of a request that identify a caller
//! (`Authorization`, configured cookies, headers and query parameters),
//! turned into a partition by the keyed hash. The credential itself is
//! never kept.
//!
//! It fails closed: a `Cookie` line it cannot parse becomes partition
//! material as a whole, and a request that carries something that looks
//! like a credential but is not partition material (an auth proxy's user
//! header, a session cookie on a dialect that partitions) is marked
//! `unrecognized`, so the proxy shares with it only what the upstream
//! marked shareable.

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderName};
use revcache_core::{Partition, PartitionKey};

use crate::settings::PartitionSettings;

/// Who a request comes from, as far as the cache is concerned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// The keyed hash of the request's partition material; `None` when it
    /// has none (anonymous, or only unrecognized credentials).
    pub partition: Option<Partition>,
    /// The request carries credentials that are not partition material.
    pub unrecognized: bool,
}

impl Caller {
    /// Whether RFC 9111 §3.5 applies: the request is authenticated.
    pub fn has_credentials(&self) -> bool {
        self.partition.is_some() || self.unrecognized
    }
}

/// Identifies the caller of a request to a route. `route_cookies` are the
/// dialect's own session cookies (Gerrit's `GerritAccount`); with
/// `cookies_identify`, any other cookie is an unrecognized credential.
pub fn identify(
    headers: &HeaderMap,
    query: Option<&str>,
    settings: &PartitionSettings,
    route_cookies: &[&str],
    cookies_identify: bool,
    key: &PartitionKey,
) -> Caller {
    let mut material: Vec<&[u8]> = Vec::new();
    let mut unrecognized = false;
    for v in headers.get_all(AUTHORIZATION) {
        material.push(b"authorization");
        material.push(v.as_bytes());
    }
    for name in &settings.headers {
        for v in headers.get_all(name) {
            material.push(name.as_str().as_bytes());
            material.push(v.as_bytes());
        }
    }
    for name in headers.keys() {
        if looks_like_credential(name)
            && !settings.headers.contains(name)
            && !settings.not_credentials.contains(name)
        {
            unrecognized = true;
        }
    }
    let is_partition_cookie = |name: &[u8]| {
        settings.cookies.iter().any(|c| c.as_bytes() == name)
            || route_cookies.iter().any(|c| c.as_bytes() == name)
    };
    for line in headers.get_all(COOKIE) {
        match cookie_pairs(line.as_bytes()) {
            Some(pairs) => {
                for (name, value) in pairs {
                    if is_partition_cookie(name) {
                        material.push(b"cookie");
                        material.push(name);
                        material.push(value);
                    } else if cookies_identify {
                        unrecognized = true;
                    }
                }
            }
            // A line that cannot be read may hide a partition cookie: the
            // whole line identifies the caller.
            None => {
                material.push(b"cookie-line");
                material.push(line.as_bytes());
            }
        }
    }
    let query_material = query_credentials(query, &settings.query_params);
    for (name, value) in &query_material {
        material.push(b"query");
        material.push(name.as_bytes());
        material.push(value.as_bytes());
    }
    Caller {
        partition: (!material.is_empty()).then(|| key.partition(&material)),
        unrecognized,
    }
}

/// The partition of a caller whose only partition material is one
/// `Authorization` header of `value`: what [`identify`] computes for it.
pub fn authorization_partition(value: &http::HeaderValue, key: &PartitionKey) -> Partition {
    key.partition(&[b"authorization", value.as_bytes()])
}

/// The `name=value` pairs of one `Cookie` line (RFC 6265 §4.2.1, read
/// leniently: any bytes in values, spaces or tabs around pairs); `None`
/// when a pair has no `=` or its name is not a token.
pub fn cookie_pairs(line: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut pairs = Vec::new();
    for pair in line.split(|&b| b == b';') {
        let pair = pair.trim_ascii();
        if pair.is_empty() {
            continue;
        }
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (name, value) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
        if name.is_empty() || !name.iter().all(|&b| is_token_byte(b)) {
            return None;
        }
        pairs.push((name, value));
    }
    Some(pairs)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether a request header's name says it carries a credential: what auth
/// proxies and APIs use (`X-Forwarded-User`, `X-Auth-Token`, `Private-Token`,
/// `X-Api-Key`, `X-Goog-Authenticated-User-Email` …). Errs on the side of
/// yes; `partition.not_credentials` lists exceptions.
pub fn looks_like_credential(name: &HeaderName) -> bool {
    let n = name.as_str();
    // What nearly every request carries is decided without a search.
    if matches!(
        n,
        "host"
            | "accept"
            | "accept-encoding"
            | "accept-language"
            | "user-agent"
            | "cache-control"
            | "pragma"
            | "if-none-match"
            | "if-modified-since"
            | "if-match"
            | "if-unmodified-since"
            | "if-range"
            | "referer"
            | "origin"
            | "content-type"
            | "content-length"
            | "cookie"
            | "authorization"
            | "range"
            | "depth"
            | "via"
    ) {
        return false;
    }
    const PARTS: [&str; 8] = [
        "auth",
        "token",
        "secret",
        "session",
        "api-key",
        "apikey",
        "principal",
        "password",
    ];
    const ENDS: [&str; 5] = ["-user", "-email", "-group", "-groups", "-jwt-assertion"];
    n == "remote-user" || PARTS.iter().any(|p| n.contains(p)) || ENDS.iter().any(|e| n.ends_with(e))
}

/// The credential parameters of a query (names compared after decoding,
/// case-insensitively), as (name, raw value).
fn query_credentials<'q>(query: Option<&'q str>, names: &[String]) -> Vec<(&'q str, &'q str)> {
    let Some(query) = query else {
        return Vec::new();
    };
    query
        .split('&')
        .filter_map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            is_credential_param(name, names).then_some((name, value))
        })
        .collect()
}

fn is_credential_param(name: &str, names: &[String]) -> bool {
    if !name.contains(['%', '+']) {
        return names.iter().any(|n| n.eq_ignore_ascii_case(name));
    }
    let decoded = crate::percent::decode_lossy(&name.replace('+', " "));
    names.iter().any(|n| n.eq_ignore_ascii_case(&decoded))
}

/// `target` with the values of credential query parameters replaced, so
/// what is keyed, stored, shown and logged never holds them; `None` when
/// there is nothing to redact. The caller's partition already tells
/// different credentials apart.
pub fn redact_target(target: &str, names: &[String]) -> Option<String> {
    let (path, query) = target.split_once('?')?;
    let mut redacted = false;
    let params: Vec<String> = query
        .split('&')
        .map(|p| {
            let name = p.split_once('=').map_or(p, |(n, _)| n);
            if is_credential_param(name, names) {
                redacted = true;
                format!("{name}=REDACTED")
            } else {
                p.to_owned()
            }
        })
        .collect();
    redacted.then(|| format!("{path}?{}", params.join("&")))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn settings(cookies: &[&str]) -> PartitionSettings {
        PartitionSettings {
            cookies: cookies.iter().map(|c| c.to_string()).collect(),
            ..PartitionSettings::default()
        }
    }

    fn caller(h: &HeaderMap, s: &PartitionSettings, key: &PartitionKey) -> Caller {
        identify(h, None, s, &[], false, key)
    }

    #[test]
    fn authorization_and_configured_cookies_select_a_partition() {
        let key = PartitionKey::ephemeral().unwrap();
        let settings = settings(&["session"]);
        let mut h = HeaderMap::new();
        assert_eq!(caller(&h, &settings, &key).partition, None);
        h.insert(COOKIE, HeaderValue::from_static("theme=dark"));
        assert_eq!(caller(&h, &settings, &key).partition, None);
        h.insert(COOKIE, HeaderValue::from_static("theme=dark; session=abc"));
        let a = caller(&h, &settings, &key).partition.unwrap();
        h.insert(COOKIE, HeaderValue::from_static("session=xyz; theme=dark"));
        assert_ne!(caller(&h, &settings, &key).partition.unwrap(), a);
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        assert!(caller(&h, &settings, &key).partition.is_some());
    }

    #[test]
    fn a_non_ascii_byte_in_another_cookie_does_not_hide_the_partition_cookie() {
        let key = PartitionKey::ephemeral().unwrap();
        let settings = settings(&["session"]);
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_bytes(b"name=J\xc3\xbcrgen; session=abc").unwrap(),
        );
        let a = caller(&h, &settings, &key).partition.expect("partitioned");
        h.insert(
            COOKIE,
            HeaderValue::from_bytes(b"name=J\xc3\xbcrgen; session=xyz").unwrap(),
        );
        assert_ne!(caller(&h, &settings, &key).partition.unwrap(), a);
    }

    #[test]
    fn an_unparseable_cookie_line_fails_closed_into_its_own_partition() {
        let key = PartitionKey::ephemeral().unwrap();
        let settings = settings(&["session"]);
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("garbage; session=abc"));
        let a = caller(&h, &settings, &key).partition.expect("credentialed");
        h.insert(COOKIE, HeaderValue::from_static("garbage; session=xyz"));
        assert_ne!(caller(&h, &settings, &key).partition.unwrap(), a);
    }

    #[test]
    fn auth_proxy_headers_and_session_cookies_are_unrecognized_credentials() {
        let key = PartitionKey::ephemeral().unwrap();
        let s = settings(&[]);
        let mut h = HeaderMap::new();
        h.insert("user-agent", HeaderValue::from_static("curl"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        assert!(!caller(&h, &s, &key).unrecognized);
        h.insert("x-forwarded-user", HeaderValue::from_static("alice"));
        let c = caller(&h, &s, &key);
        assert!(c.unrecognized && c.partition.is_none() && c.has_credentials());

        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("GerritAccount=abc"));
        assert!(!identify(&h, None, &s, &[], false, &key).unrecognized);
        assert!(identify(&h, None, &s, &[], true, &key).unrecognized);
        let known = identify(&h, None, &s, &["GerritAccount"], true, &key);
        assert!(!known.unrecognized && known.partition.is_some());
    }

    #[test]
    fn query_credentials_partition_and_are_redacted() {
        let key = PartitionKey::ephemeral().unwrap();
        let s = PartitionSettings::default();
        let h = HeaderMap::new();
        let a = identify(&h, Some("a=1&access_token=s3cret"), &s, &[], false, &key);
        let b = identify(&h, Some("a=1&Access%5Ftoken=other"), &s, &[], false, &key);
        assert!(a.partition.is_some() && b.partition.is_some());
        assert_ne!(a.partition, b.partition);
        assert_eq!(
            redact_target(
                "/x?a=1&access_token=s3cret&private_token=p",
                &s.query_params
            )
            .as_deref(),
            Some("/x?a=1&access_token=REDACTED&private_token=REDACTED")
        );
        assert_eq!(redact_target("/x?a=1", &s.query_params), None);
    }
}
