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
#[non_exhaustive]
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

/// The request header rules of one instance, ready for the request path.
pub struct Sanitizer {
    strip: Vec<HeaderName>,
    /// First bytes of every name that may be removed: most requests carry
    /// none, and are let through after one pass that compares nothing.
    first_bytes: [bool; 256],
}

impl Sanitizer {
    pub fn new(forwarding: &ForwardingSettings) -> Self {
        let mut first_bytes = [false; 256];
        let hop = hop_by_hop::NAMES.iter().copied();
        for name in hop.chain(forwarding.strip_request_headers.iter().map(|n| n.as_str())) {
            if let Some(&b) = name.as_bytes().first() {
                first_bytes[b as usize] = true;
            }
        }
        Sanitizer {
            strip: forwarding.strip_request_headers.clone(),
            first_bytes,
        }
    }

    /// Checks the request's framing headers, then removes hop-by-hop
    /// headers, every header named in `Connection`, and the configured
    /// `forwarding.strip_request_headers`.
    pub fn sanitize(&self, parts: &mut request::Parts) -> Result<(), RequestHeaderError> {
        let (mut hosts, mut depths, mut removes) = (0, 0, false);
        for (name, _) in &parts.headers {
            if *name == HOST {
                hosts += 1;
            } else if *name == DEPTH {
                depths += 1;
            } else if self.first_bytes[name.as_str().as_bytes()[0] as usize]
                && (hop_by_hop::is_hop_by_hop(name) || self.strip.contains(name))
            {
                removes = true;
            }
        }
        if hosts > 1 {
            return Err(RequestHeaderError::DuplicateHost(hosts));
        }
        if depths > 1 {
            return Err(RequestHeaderError::Duplicate(depths, "Depth"));
        }
        check_host(parts)?;
        if removes {
            hop_by_hop::strip(&mut parts.headers);
            for name in &self.strip {
                parts.headers.remove(name);
            }
        }
        Ok(())
    }
}

/// A `Host` must be an authority and agree with the request line's.
fn check_host(parts: &request::Parts) -> Result<(), RequestHeaderError> {
    if let Some(host) = parts.headers.get(HOST) {
        if parts.uri.authority().is_none() && is_plain_authority(host.as_bytes()) {
            return Ok(());
        }
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
    Ok(())
}

/// `name[:port]` of letters, digits, `.` and `-`: an authority without
/// parsing one (what nearly every request's Host is).
fn is_plain_authority(host: &[u8]) -> bool {
    let (name, port) = match host.iter().position(|&b| b == b':') {
        Some(i) => (&host[..i], Some(&host[i + 1..])),
        None => (host, None),
    };
    !name.is_empty()
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'-')
        && port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.iter().all(u8::is_ascii_digit))
}

#[cfg(test)]
mod tests {
    use http::{HeaderValue, Request};

    use super::*;

    fn sanitizer() -> Sanitizer {
        Sanitizer::new(&ForwardingSettings::default())
    }

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
        sanitizer().sanitize(&mut p).unwrap();
        let names: Vec<_> = p.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["host", "accept"]);
        let mut p = parts(&[
            ("host", "a.example"),
            ("te", "trailers"),
            ("user-agent", "x"),
        ]);
        sanitizer().sanitize(&mut p).unwrap();
        assert_eq!(p.headers.len(), 2, "hop-by-hop TE is removed");
    }

    #[test]
    fn ambiguous_hosts_and_depths_are_refused() {
        let f = sanitizer();
        let mut p = parts(&[("host", "a.example"), ("host", "b.example")]);
        assert_eq!(
            f.sanitize(&mut p),
            Err(RequestHeaderError::DuplicateHost(2))
        );
        for bad in ["a b", "user@a.example", "", "a.example/x", ":80"] {
            let mut p = parts(&[]);
            p.headers
                .insert(HOST, HeaderValue::from_bytes(bad.as_bytes()).unwrap());
            assert_eq!(
                f.sanitize(&mut p),
                Err(RequestHeaderError::InvalidHost),
                "{bad:?}"
            );
        }
        let mut p = parts(&[("host", "a.example")]);
        p.uri = "http://b.example/x".parse().unwrap();
        assert!(matches!(
            f.sanitize(&mut p),
            Err(RequestHeaderError::HostMismatch { .. })
        ));
        p.uri = "http://A.example/x".parse().unwrap();
        assert_eq!(f.sanitize(&mut p), Ok(()));
        let mut p = parts(&[("depth", "0"), ("depth", "1")]);
        assert_eq!(
            f.sanitize(&mut p),
            Err(RequestHeaderError::Duplicate(2, "Depth"))
        );
    }
}
