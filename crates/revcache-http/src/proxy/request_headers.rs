//! The request headers as revcache and the upstream both see them.
//!
//! Runs once, before routing: what is removed here is removed for keying,
//! Vary variants, dialect classification and forwarding alike, so the cache
//! never keys on a header the upstream did not get. Ambiguous requests (two
//! `Host`s, a `Host` that is no authority or disagrees with the request
//! line, two `Depth`s) are refused rather than guessed at.

use http::header::{HOST, HeaderName};
use http::request;
use http::uri::Authority;

use crate::policy::hop_by_hop;
use crate::settings::ForwardingSettings;

/// Why a request's headers were refused (answered 400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestHeaderError {
    #[error("the request has {0} Host headers; send exactly one")]
    DuplicateHost(usize),
    #[error("the Host header is not a host[:port] authority")]
    InvalidHost,
    #[error("the Host header {host:?} disagrees with the request target's authority {uri:?}")]
    HostMismatch { host: String, uri: String },
    #[error("the request has {0} {1} headers; send at most one")]
    Duplicate(usize, &'static str),
}

const DEPTH: HeaderName = HeaderName::from_static("depth");

/// Checks the request's framing headers, then removes hop-by-hop headers,
/// every header named in `Connection`, and the configured
/// `forwarding.strip_request_headers`.
pub fn sanitize(
    parts: &mut request::Parts,
    forwarding: &ForwardingSettings,
) -> Result<(), RequestHeaderError> {
    let hosts = parts.headers.get_all(HOST).iter().count();
    if hosts > 1 {
        return Err(RequestHeaderError::DuplicateHost(hosts));
    }
    if let Some(host) = parts.headers.get(HOST) {
        let authority = Authority::try_from(host.as_bytes())
            .ok()
            .filter(|a| !a.as_str().contains('@') && !a.host().is_empty())
            .ok_or(RequestHeaderError::InvalidHost)?;
        if let Some(uri) = parts.uri.authority()
            && !uri.as_str().eq_ignore_ascii_case(authority.as_str())
        {
            return Err(RequestHeaderError::HostMismatch {
                host: authority.to_string(),
                uri: uri.to_string(),
            });
        }
    }
    let depths = parts.headers.get_all(DEPTH).iter().count();
    if depths > 1 {
        return Err(RequestHeaderError::Duplicate(depths, "Depth"));
    }
    hop_by_hop::strip(&mut parts.headers);
    for name in &forwarding.strip_request_headers {
        parts.headers.remove(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use http::{HeaderValue, Request};

    use super::*;

    fn parts(headers: &[(&str, &str)]) -> request::Parts {
        let mut req = Request::get("/x");
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn connection_named_and_spoofing_headers_are_removed_before_keying() {
        let mut p = parts(&[
            ("host", "a.example"),
            ("connection", "x-variant"),
            ("x-variant", "1"),
            ("x-forwarded-host", "evil.example"),
            ("x-http-method-override", "DELETE"),
            ("forwarded", "for=1.2.3.4"),
            ("accept", "text/plain"),
        ]);
        sanitize(&mut p, &ForwardingSettings::default()).unwrap();
        let names: Vec<_> = p.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["host", "accept"]);
    }

    #[test]
    fn ambiguous_hosts_and_depths_are_refused() {
        let f = ForwardingSettings::default();
        let mut p = parts(&[("host", "a.example"), ("host", "b.example")]);
        assert_eq!(
            sanitize(&mut p, &f),
            Err(RequestHeaderError::DuplicateHost(2))
        );
        for bad in ["a b", "user@a.example", "", "a.example/x"] {
            let mut p = parts(&[]);
            p.headers
                .insert(HOST, HeaderValue::from_bytes(bad.as_bytes()).unwrap());
            assert_eq!(
                sanitize(&mut p, &f),
                Err(RequestHeaderError::InvalidHost),
                "{bad:?}"
            );
        }
        let mut p = parts(&[("host", "a.example")]);
        p.uri = "http://b.example/x".parse().unwrap();
        assert!(matches!(
            sanitize(&mut p, &f),
            Err(RequestHeaderError::HostMismatch { .. })
        ));
        p.uri = "http://A.example/x".parse().unwrap();
        assert_eq!(sanitize(&mut p, &f), Ok(()));
        let mut p = parts(&[("depth", "0"), ("depth", "1")]);
        assert_eq!(
            sanitize(&mut p, &f),
            Err(RequestHeaderError::Duplicate(2, "Depth"))
        );
    }
}
