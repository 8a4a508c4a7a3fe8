//! POST responses that answer later GETs (RFC 9110 §9.3.3, RFC 9111 §4),
//! on routes whose dialect opts in (`store_post_responses`).
//!
//! Such a response must carry explicit freshness and a `Content-Location`
//! equal to the POST's target. The write invalidates the target first, as
//! every write does; the response is then stored as a GET of the target
//! would be (same key, variant and storability rules), with a fill ticket
//! taken after that invalidation, while the client receives it.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use http::header::{CONTENT_LOCATION, EXPIRES};
use http::{HeaderMap, Method, Response};

use super::Proxy;
use super::body::{ProxyBody, RequestBody};
use super::cache_status::{self, CacheStatus, Fwd};
use super::exchange::Exchange;
use super::fetch::Answer;
use super::fill;
use super::forward::{self, Conditions};
use crate::dialect::http::same_origin_target;
use crate::metrics::{InvalidationSource, Outcome, UpstreamReason};
use crate::policy::{ResponseDirectives, cache_control::Delta, hop_by_hop};

impl Proxy {
    /// Forwards a POST, invalidates what it changed, and stores its
    /// response as the target's GET answer when it says it is one.
    pub(super) async fn post_and_store(
        &self,
        ex: Exchange,
        body: RequestBody,
        exceeded: Option<Arc<AtomicBool>>,
    ) -> Response<ProxyBody> {
        let req = forward::upstream_request(&ex, body, Conditions::Client);
        self.metrics.forwarded(Fwd::Method);
        let request_time = self.cache.clock().now();
        let res = match ex.route.upstream.send(req, exceeded).await {
            Ok(res) => res,
            Err(e) => return self.upstream_failed(&e, CacheStatus::fwd(Fwd::Method)),
        };
        let response_time = self.cache.clock().now();
        let status = res.status();
        self.metrics
            .upstream(UpstreamReason::Method, status.as_u16());
        let class = ex.route.dialect.endpoint_class(&ex.parts);
        ex.route
            .counters(&self.metrics)
            .upstream(class, status.as_u16());
        self.metrics.outcome(Outcome::Method);
        let (mut parts, rbody) = res.into_parts();
        hop_by_hop::strip(&mut parts.headers);
        if status.is_success() || status.is_redirection() {
            let invalidations = ex
                .route
                .dialect
                .on_write(&ex.parts, status, &parts.headers, None);
            let _ = self
                .invalidator
                .invalidate(invalidations, InvalidationSource::Write)
                .await;
        }
        let mut client_headers = parts.headers.clone();
        forward::client_response_headers(&mut client_headers, ex.parts.version);
        let mut cs = CacheStatus::fwd(Fwd::Method).fwd_status(status.as_u16());
        let directives = ResponseDirectives::for_cache(&parts.headers, &ex.config.targeted);
        // Stored as the GET of its target would be.
        let mut get = ex.detach();
        get.parts.method = Method::GET;
        let storable = (has_explicit_freshness(&directives, &parts.headers)
            && names_target(&parts.headers, &ex))
        .then(|| {
            let length = hyper::body::Body::size_hint(&rbody).exact();
            self.storability(&get, status, &directives, &parts.headers, length)
                .ok()
        })
        .flatten();
        let body = match storable {
            Some((storable, variant)) => {
                let answer = Answer {
                    status,
                    headers: parts.headers,
                    directives: &directives,
                    request_time,
                    response_time,
                };
                // After the invalidation: this version outlives it.
                let ticket = self.cache.begin_fill();
                let plan = self.fill_plan(&get, storable, variant, answer, ticket, None);
                cs = cs.stored(true).ttl(
                    plan.freshness.lifetime.as_secs() as i64
                        - plan.timing.initial_age.as_secs() as i64,
                );
                let rx = fill::spawn(self.cache.clone(), &self.fills, plan, rbody, None);
                ProxyBody::channel(rx, self.metrics.bytes_counter(false))
            }
            None => ProxyBody::upstream(
                rbody,
                ex.route.upstream.read_timeout(),
                self.metrics.bytes_counter(false),
            ),
        };
        client_headers.append(cache_status::NAME, cs.value());
        let mut res = Response::new(body);
        *res.status_mut() = status;
        *res.headers_mut() = client_headers;
        res
    }
}

/// `max-age`, `s-maxage` or `Expires` (RFC 9111 §4.2.1): a POST response
/// is never heuristically fresh.
fn has_explicit_freshness(directives: &ResponseDirectives, headers: &HeaderMap) -> bool {
    let given = |d: Option<Delta>| matches!(d, Some(Delta::Seconds(_)));
    given(directives.max_age) || given(directives.s_maxage) || headers.contains_key(EXPIRES)
}

/// Whether the response's `Content-Location` is the POST's own target:
/// the same path and query, given as a path or as an absolute URI naming
/// the authority the client addressed.
fn names_target(headers: &HeaderMap, ex: &Exchange) -> bool {
    let mut values = headers.get_all(CONTENT_LOCATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let target = ex.parts.uri.path_and_query().map_or("/", |p| p.as_str());
    value
        .to_str()
        .ok()
        .and_then(|v| same_origin_target(v.trim(), Some(ex.host())))
        .is_some_and(|t| t == target)
}
