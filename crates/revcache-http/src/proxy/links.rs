//! Links back through the cache: an upstream whose answers hold absolute
//! URLs of itself (GitHub's `Link: <https://api.github.com/...?page=2>;
//! rel="next"`, and the `"url"` of every object in its JSON) would send
//! clients that follow them around revcache. For routes whose dialect asks
//! for it, URLs under the upstream's origin and base path are rewritten to
//! the origin the client addressed, with the same path and query: in
//! `Link` and `Location`, and in JSON bodies of at most `MAX_BODY` bytes
//! that are not content-coded (the dialect asks the upstream for identity
//! bodies). Stored entries keep the upstream's bytes; each answer is
//! rewritten for its client.

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, LINK, LOCATION};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;

use super::body::ProxyBody;
use super::cache_status::{self, CacheStatus};
use super::exchange::Exchange;
use super::respond;

/// The largest body whose URLs are rewritten; larger ones pass as they
/// are.
const MAX_BODY: usize = 8 << 20;

/// What one response's links are rewritten from and to.
pub struct Rewrite {
    /// `https://api.github.com/base`
    upstream: String,
    /// `http://revcache.example:8080`
    client: String,
}

impl Rewrite {
    /// The rewrite for `ex`: to the dialect's configured public origin,
    /// else to the scheme and `Host` the client used. `None` when that
    /// `Host` is not a plain `name[:port]` (nothing from it is written
    /// into an answer).
    pub fn of(ex: &Exchange) -> Option<Rewrite> {
        let route = &ex.route;
        let upstream = format!("{}://{}{}", route.scheme, route.authority, route.base_path);
        let client = match route.dialect.public_origin() {
            Some(origin) => origin.trim_end_matches('/').to_owned(),
            None => {
                let host = ex.host();
                let plain = !host.is_empty()
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
                if !plain {
                    return None;
                }
                let tls = ex
                    .parts
                    .extensions
                    .get::<crate::listener_tls::ClientTls>()
                    .is_some();
                let scheme = if tls { "https" } else { "http" };
                format!("{scheme}://{host}")
            }
        };
        Some(Rewrite { upstream, client })
    }

    pub async fn apply(&self, mut res: Response<ProxyBody>) -> Response<ProxyBody> {
        for name in [LINK, LOCATION] {
            let headers = res.headers_mut();
            if !headers.contains_key(&name) {
                continue;
            }
            let values: Vec<HeaderValue> = headers
                .get_all(&name)
                .iter()
                .map(|v| self.value(v))
                .collect();
            headers.remove(&name);
            for v in values {
                headers.append(name.clone(), v);
            }
        }
        if self.rewrites_body(&res) {
            return self.rewrite_body(res).await;
        }
        res
    }

    fn rewrites_body(&self, res: &Response<ProxyBody>) -> bool {
        let headers = res.headers();
        let json = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.to_ascii_lowercase().contains("json"));
        let coded = headers
            .get(CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        let small = http_body::Body::size_hint(res.body())
            .upper()
            .is_none_or(|n| n <= MAX_BODY as u64);
        json && !coded && small && res.status() != StatusCode::NOT_MODIFIED
    }

    async fn rewrite_body(&self, res: Response<ProxyBody>) -> Response<ProxyBody> {
        let (mut parts, mut body) = res.into_parts();
        // Read up to `MAX_BODY`; a longer body is passed on as it is, what
        // was read first.
        let mut read = bytes::BytesMut::new();
        let failed = loop {
            match body.frame().await {
                None => break None,
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        read.extend_from_slice(data);
                    }
                    if read.len() > MAX_BODY {
                        let body = ProxyBody::prefixed(read.freeze(), body);
                        return Response::from_parts(parts, body);
                    }
                }
                Some(Err(e)) => break Some(e),
            }
        };
        let bytes = match failed {
            None => read.freeze(),
            Some(e) => {
                let status = parts
                    .headers
                    .get_all(cache_status::NAME)
                    .iter()
                    .next_back()
                    .cloned();
                let mut res = respond::error(
                    StatusCode::BAD_GATEWAY,
                    format!("the answer could not be read to point its links here: {e}"),
                    CacheStatus::default(),
                );
                if let Some(s) = status {
                    res.headers_mut().insert(cache_status::NAME, s);
                }
                return res;
            }
        };
        let body = match std::str::from_utf8(&bytes) {
            Ok(text) if find_ignoring_case(text, &self.upstream).is_some() => {
                Bytes::from(rewrite(text, &self.upstream, &self.client))
            }
            _ => bytes,
        };
        parts.headers.remove(CONTENT_LENGTH);
        Response::from_parts(parts, ProxyBody::full(body, Default::default()))
    }

    fn value(&self, v: &HeaderValue) -> HeaderValue {
        let Ok(text) = v.to_str() else {
            return v.clone();
        };
        let rewritten = rewrite(text, &self.upstream, &self.client);
        HeaderValue::from_str(&rewritten).unwrap_or_else(|_| v.clone())
    }
}

/// `text` with every URL that starts with `from` (case-insensitively in
/// scheme and host, followed by `/`, `?` or its end) starting with `to`.
fn rewrite(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = find_ignoring_case(rest, from) {
        let after = &rest[at + from.len()..];
        out.push_str(&rest[..at]);
        if after.is_empty() || after.starts_with(['/', '?', '>', '#', '"']) {
            out.push_str(to);
        } else {
            // `https://api.github.com.evil/...`: not the upstream.
            out.push_str(&rest[at..at + from.len()]);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

fn find_ignoring_case(haystack: &str, needle: &str) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    (0..=haystack.len() - needle.len()).find(|&i| {
        haystack.is_char_boundary(i)
            && haystack.as_bytes()[i..i + needle.len()].eq_ignore_ascii_case(needle.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_links_point_back_through_the_cache() {
        let link = r#"<https://api.github.com/repositories/1/issues?page=2>; rel="next", <https://API.github.com/repositories/1/issues?page=5>; rel="last""#;
        assert_eq!(
            rewrite(link, "https://api.github.com", "http://cache:8080"),
            r#"<http://cache:8080/repositories/1/issues?page=2>; rel="next", <http://cache:8080/repositories/1/issues?page=5>; rel="last""#
        );
    }

    #[test]
    fn urls_in_json_are_rewritten_and_other_hosts_kept() {
        let body = r#"{"url":"https://api.github.com/repos/o/r","html_url":"https://github.com/o/r","root":"https://api.github.com"}"#;
        assert_eq!(
            rewrite(body, "https://api.github.com", "http://c:1"),
            r#"{"url":"http://c:1/repos/o/r","html_url":"https://github.com/o/r","root":"http://c:1"}"#
        );
    }

    #[test]
    fn only_the_upstreams_own_origin_and_base_path_are_rewritten() {
        let from = "https://ghe.example/api/v3";
        assert_eq!(
            rewrite("<https://ghe.example/api/v3/user?page=2>", from, "http://c"),
            "<http://c/user?page=2>"
        );
        for other in [
            "<https://ghe.example.evil/api/v3/user>",
            "<https://ghe.example/api/v30/user>",
            "<https://elsewhere/api/v3/user>",
        ] {
            assert_eq!(rewrite(other, from, "http://c"), other);
        }
    }
}
