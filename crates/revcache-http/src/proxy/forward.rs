//! Turning a client request into an upstream request and an upstream
//! response into a client response, the way a transparent reverse proxy
//! must: hop-by-hop headers removed, `Via` and `Forwarded` added, Host set
//! for the upstream.

use http::header::{
    FORWARDED, HOST, HeaderName, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH, VIA,
};
use http::{HeaderMap, Request, Uri, Version};

use super::body::RequestBody;
use super::exchange::Exchange;
use revcache_core::StoredHeaders;

use crate::policy::hop_by_hop;

/// How the upstream request differs from the client's.
pub enum Conditions<'a> {
    /// Forward the client's conditional headers as they are.
    Client,
    /// Drop them: the response is to be stored whole.
    Strip,
    /// Replace them with the stored entry's validators.
    Revalidate(&'a StoredHeaders),
}

pub fn via_value(version: Version) -> HeaderValue {
    HeaderValue::from_static(match version {
        Version::HTTP_09 => "0.9 revcache",
        Version::HTTP_10 => "1.0 revcache",
        Version::HTTP_2 => "2 revcache",
        Version::HTTP_3 => "3 revcache",
        _ => "1.1 revcache",
    })
}

pub fn upstream_request(
    ex: &Exchange,
    body: RequestBody,
    conditions: Conditions<'_>,
) -> Request<RequestBody> {
    let (route, parts, host, client) = (&ex.route, &ex.parts, ex.host(), ex.client);
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri = Uri::builder()
        .scheme(route.scheme.clone())
        .authority(route.authority.clone())
        .path_and_query(format!("{}{}", route.base_path, target))
        .build()
        .unwrap_or_else(|_| Uri::from_static("/"));
    let mut headers = parts.headers.clone();
    hop_by_hop::strip(&mut headers);
    if !route.preserve_host || !headers.contains_key(HOST) {
        let value = if route.preserve_host {
            host
        } else {
            route.authority.as_str()
        };
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HOST, v);
        }
    }
    headers.append(VIA, via_value(parts.version));
    // Client-sent `Forwarded` and `X-Forwarded-For` were removed with the
    // other spoofable headers (`forwarding.strip_request_headers`), unless
    // an operator kept them to extend a trusted chain.
    let proto = if parts
        .extensions
        .get::<crate::listener_tls::ClientTls>()
        .is_some()
    {
        "https"
    } else {
        "http"
    };
    let forwarded = format!(
        "for={};host={};proto={proto}",
        quoted(&client.to_string()),
        quoted(host)
    );
    if let Ok(v) = HeaderValue::from_str(&forwarded) {
        headers.append(FORWARDED, v);
    }
    let xff = match headers.get(X_FORWARDED_FOR).map(|v| v.to_str()) {
        Some(Ok(chain)) => format!("{chain}, {}", client.ip()),
        _ => client.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    match conditions {
        Conditions::Client => {}
        Conditions::Strip => strip_conditions(&mut headers),
        Conditions::Revalidate(stored) => {
            strip_conditions(&mut headers);
            copy(stored, &mut headers, http::header::ETAG, IF_NONE_MATCH);
            copy(
                stored,
                &mut headers,
                http::header::LAST_MODIFIED,
                IF_MODIFIED_SINCE,
            );
        }
    }
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    // Upstream connections are HTTP/1.1 whatever the client spoke.
    *req.version_mut() = Version::HTTP_11;
    // The upstream's 1xx go to an HTTP/1.1 client as they come.
    if let Some(interims) = &ex.interims {
        let interim = interims.arm();
        hyper::ext::on_informational(&mut req, move |res| {
            interim.relay(res.status(), res.headers());
        });
    }
    req
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// A `Forwarded` parameter value as a quoted-string (RFC 7239 §4, RFC 9110
/// §5.6.4): `"` and `\` escaped, anything that is not visible ASCII dropped.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' ' | '\t' => out.push(c),
            c if c.is_ascii_graphic() => out.push(c),
            _ => {}
        }
    }
    out.push('"');
    out
}

fn strip_conditions(headers: &mut HeaderMap) {
    headers.remove(IF_NONE_MATCH);
    headers.remove(IF_MODIFIED_SINCE);
}

fn copy(from: &StoredHeaders, to: &mut HeaderMap, name: HeaderName, as_name: HeaderName) {
    if let Some(v) = from.get(name.as_str()) {
        to.insert(as_name, v);
    }
}

/// Response headers as the client gets them from the upstream.
pub fn client_response_headers(headers: &mut HeaderMap, version: Version) {
    hop_by_hop::strip(headers);
    headers.append(VIA, via_value(version));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_values_are_quoted_strings() {
        assert_eq!(quoted("[::1]:80"), "\"[::1]:80\"");
        assert_eq!(quoted("a\"b\\c\u{7f}d"), "\"a\\\"b\\\\cd\"");
    }
}
