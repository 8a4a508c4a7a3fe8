//! The `http` dialect: plain RFC 9111, no knowledge of the upstream.

use http::header::{CONTENT_LOCATION, ETAG, LOCATION};
use http::{HeaderMap, Method, StatusCode, Uri, request};
use revcache_core::{Invalidation, KeyClass, Version};

use super::registry::{DialectOptions, OptionError, OptionSpec};
use super::{Classification, Dialect, Facts, Fwd};

/// Scoped to its route: what its writes invalidate is of that route only.
pub struct HttpDialect {
    pub route: u32,
    /// `store_post_responses`: see [`Dialect::stores_post_responses`].
    store_post: bool,
}

impl HttpDialect {
    pub const OPTIONS: &'static [OptionSpec] = &[OptionSpec {
        key: "store_post_responses",
        help: "\"true\": a POST response with explicit freshness and a Content-Location equal to its target answers later GETs of it (RFC 9110 §9.3.3)",
    }];

    /// The dialect with its defaults (what other dialects delegate to).
    pub fn new(route: u32) -> Self {
        HttpDialect {
            route,
            store_post: false,
        }
    }

    /// The dialect of a route with `[routes.options]`.
    pub fn with_options(route: u32, options: &DialectOptions) -> Result<Self, OptionError> {
        let store_post = match options.get("store_post_responses").map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(OptionError::option(
                    "store_post_responses",
                    format!("{other:?} is neither \"true\" nor \"false\""),
                ));
            }
        };
        Ok(HttpDialect { route, store_post })
    }
}

impl Dialect for HttpDialect {
    fn name(&self) -> &'static str {
        "http"
    }

    fn classify(&self, req: &request::Parts) -> Classification {
        match req.method {
            // Ranges are answered by the proxy (see `proxy/range.rs`);
            // `Upgrade` is hop-by-hop, removed before any dialect sees it.
            Method::GET | Method::HEAD => Classification::Cacheable {
                class: KeyClass::Get,
            },
            Method::OPTIONS | Method::TRACE | Method::CONNECT => Classification::Pass {
                reason: Fwd::Method,
            },
            _ => Classification::Write,
        }
    }

    fn stores_post_responses(&self) -> bool {
        self.store_post
    }

    fn facts(
        &self,
        _req: &request::Parts,
        _partition: revcache_core::Partition,
        _status: StatusCode,
        headers: &HeaderMap,
        _body: &[u8],
        _received: std::time::SystemTime,
    ) -> Facts {
        Facts {
            version: headers
                .get(ETAG)
                .and_then(|v| v.to_str().ok())
                .map(Version::from_etag),
            tags: Vec::new(),
        }
    }

    /// RFC 9111 §4.4: the target URI, and same-origin `Location` and
    /// `Content-Location`.
    fn on_write(
        &self,
        req: &request::Parts,
        _status: StatusCode,
        headers: &HeaderMap,
        _body: Option<&[u8]>,
    ) -> Vec<Invalidation> {
        let mut out = Vec::new();
        if let Some(pq) = req.uri.path_and_query() {
            out.push(Invalidation::target(self.route, pq.as_str()));
        }
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()));
        for name in [LOCATION, CONTENT_LOCATION] {
            let Some(target) = headers.get(name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            if let Some(t) = same_origin_target(target, host)
                && !out.contains(&Invalidation::target(self.route, t.clone()))
            {
                out.push(Invalidation::target(self.route, t));
            }
        }
        out
    }
}

/// The path and query of `reference` if it points at the request's origin,
/// normalised as request targets are keyed (`None` if it cannot be).
pub(crate) fn same_origin_target(reference: &str, host: Option<&str>) -> Option<String> {
    let target = origin_target(reference, host)?;
    crate::request_target::normalize_target(&target).ok()
}

fn origin_target(reference: &str, host: Option<&str>) -> Option<String> {
    if reference.starts_with('/') && !reference.starts_with("//") {
        return Some(reference.to_owned());
    }
    let uri: Uri = reference.parse().ok()?;
    let same = uri
        .authority()
        .zip(host)
        .is_some_and(|(a, h)| a.as_str().eq_ignore_ascii_case(h));
    same.then(|| uri.path_and_query().map(|p| p.as_str().to_owned()))?
}

#[cfg(test)]
mod tests {
    #[test]
    fn store_post_responses_is_true_or_false() {
        let opts = |v: &str| [("store_post_responses".to_owned(), v.to_owned())].into();
        assert!(
            HttpDialect::with_options(1, &opts("true"))
                .unwrap()
                .stores_post_responses()
        );
        assert!(
            !HttpDialect::with_options(1, &opts("false"))
                .unwrap()
                .stores_post_responses()
        );
        assert!(!HttpDialect::new(1).stores_post_responses());
        let e = HttpDialect::with_options(1, &opts("yes")).err().unwrap();
        assert_eq!(
            e.to_string(),
            "options.store_post_responses: \"yes\" is neither \"true\" nor \"false\""
        );
    }

    use http::Request;

    use super::*;

    #[test]
    fn writes_invalidate_target_and_same_origin_locations_only() {
        let (parts, ()) = Request::post("/items?x=1")
            .header("host", "cache.example")
            .body(())
            .unwrap()
            .into_parts();
        let mut h = HeaderMap::new();
        h.insert(LOCATION, "http://cache.example/items//./7".parse().unwrap());
        h.insert(
            CONTENT_LOCATION,
            "http://elsewhere.example/x".parse().unwrap(),
        );
        let inv = HttpDialect::new(3).on_write(&parts, StatusCode::CREATED, &h, None);
        assert_eq!(
            inv,
            vec![
                Invalidation::target(3, "/items?x=1"),
                Invalidation::target(3, "/items/7")
            ]
        );
    }
}
