//! Links back through the cache: an upstream whose answers hold absolute
//! URLs of itself (GitHub's `Link: <https://api.github.com/...?page=2>;
//! rel="next"`) would send clients that follow them around revcache. For
//! routes whose dialect asks for it, `Link` and `Location` URLs under the
//! upstream's origin and base path are rewritten to the origin the client
//! addressed, with the same path and query.

use http::header::{LINK, LOCATION};
use http::{HeaderValue, Response};

use super::body::ProxyBody;
use super::exchange::Exchange;

/// What one response's links are rewritten from and to.
pub struct Rewrite {
    /// `https://api.github.com/base`
    upstream: String,
    /// `http://revcache.example:8080`
    client: String,
}

impl Rewrite {
    pub fn of(ex: &Exchange) -> Rewrite {
        let route = &ex.route;
        let upstream = format!("{}://{}{}", route.scheme, route.authority, route.base_path);
        let tls = ex
            .parts
            .extensions
            .get::<crate::listener_tls::ClientTls>()
            .is_some();
        let scheme = if tls { "https" } else { "http" };
        Rewrite {
            upstream,
            client: format!("{scheme}://{}", ex.host()),
        }
    }

    pub fn apply(&self, mut res: Response<ProxyBody>) -> Response<ProxyBody> {
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
        res
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
        if after.is_empty() || after.starts_with(['/', '?', '>', '#']) {
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
