//! Requests the cache does not answer: passes (and HEADs that missed) are
//! relayed uncached; writes are relayed, then invalidate what a success
//! changed before the client sees the response, so its next read is fresh.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use prometheus_client::metrics::counter::Counter;

use super::body::{ProxyBody, RequestBody};
use super::cache_status::{self, CacheStatus, Fwd};
use super::exchange::Exchange;
use super::forward::{self, Conditions};
use super::{Proxy, respond};
use crate::metrics::{InvalidationSource, Outcome, UpstreamReason};

impl Proxy {
    /// Forwards with the client's own conditions, without touching the
    /// cache; returns the response and the upstream's status (if it
    /// answered) with its headers.
    pub(super) async fn forward_plain(
        &self,
        ex: &Exchange,
        body: RequestBody,
        exceeded: Option<Arc<AtomicBool>>,
        reason: UpstreamReason,
        fwd: Fwd,
        outcome: Outcome,
    ) -> (Response<ProxyBody>, Option<(StatusCode, HeaderMap)>) {
        let mut req = forward::upstream_request(ex, body, Conditions::Client);
        if let Some(range) = &ex.range {
            range.restore(req.headers_mut());
        }
        self.relay(ex, req, exceeded, reason, fwd, outcome).await
    }

    /// Sends `req` upstream and streams the answer back uncached; also
    /// returns the upstream's status and headers when it answered.
    pub(super) async fn relay(
        &self,
        ex: &Exchange,
        req: Request<RequestBody>,
        exceeded: Option<Arc<AtomicBool>>,
        reason: UpstreamReason,
        fwd: Fwd,
        outcome: Outcome,
    ) -> (Response<ProxyBody>, Option<(StatusCode, HeaderMap)>) {
        self.metrics.forwarded(fwd);
        let res = match ex.route.upstream.send(req, exceeded).await {
            Ok(res) => res,
            Err(e) => return (self.upstream_failed(&e, CacheStatus::fwd(fwd)), None),
        };
        self.metrics.upstream(reason, res.status().as_u16());
        let class = ex.route.dialect.endpoint_class(&ex.parts);
        ex.route
            .counters(&self.metrics)
            .upstream(class, res.status().as_u16());
        self.metrics.outcome(outcome);
        if let Some(subject) = ex.rate_subject() {
            ex.route.dialect.answered(
                subject,
                res.status(),
                res.headers(),
                self.cache.clock().now(),
            );
        }
        let (mut parts, body) = res.into_parts();
        forward::client_response_headers(&mut parts.headers, ex.parts.version);
        let answered = (parts.status, parts.headers.clone());
        parts.headers.append(
            cache_status::NAME,
            CacheStatus::fwd(fwd)
                .fwd_status(parts.status.as_u16())
                .value(),
        );
        let body = ProxyBody::upstream(
            body,
            ex.route.upstream.read_timeout(),
            self.metrics.bytes_counter(false),
        );
        (Response::from_parts(parts, body), Some(answered))
    }

    /// Unsafe methods: forward, then invalidate what a success changed.
    pub(super) async fn write(
        &self,
        ex: Exchange,
        body: RequestBody,
        exceeded: Option<Arc<AtomicBool>>,
    ) -> Response<ProxyBody> {
        if ex.parts.method == http::Method::POST && ex.route.dialect.stores_post_responses() {
            return self.post_and_store(ex, body, exceeded).await;
        }
        let (res, answered) = self
            .forward_plain(
                &ex,
                body,
                exceeded,
                UpstreamReason::Method,
                Fwd::Method,
                Outcome::Method,
            )
            .await;
        let Some((status, headers)) = answered else {
            return res;
        };
        if !(status.is_success() || status.is_redirection()) {
            return res;
        }
        // The dialect reads what this write's answer says (a token minted).
        let (res, body) = match ex.route.dialect.write_body(&ex.parts) {
            Some(max) => match read_whole(res, max).await {
                Ok((res, body)) => (res, Some(body)),
                Err(res) => return res,
            },
            None => (res, None),
        };
        {
            let invalidations =
                ex.route
                    .dialect
                    .on_write(&ex.parts, status, &headers, body.as_deref());
            // Failures are logged and counted by the invalidator; the
            // write's own response goes to the client either way.
            let _ = self
                .invalidator
                .invalidate(invalidations, InvalidationSource::Write)
                .await;
        }
        res
    }
}

/// `res` with its body read into memory, at most `max` bytes; a body that
/// cannot be read that way becomes a 502 (its client could not have used
/// a truncated answer either).
async fn read_whole(
    res: Response<ProxyBody>,
    max: usize,
) -> Result<(Response<ProxyBody>, Bytes), Response<ProxyBody>> {
    let (parts, body) = res.into_parts();
    match http_body_util::BodyExt::collect(http_body_util::Limited::new(body, max)).await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            let res =
                Response::from_parts(parts, ProxyBody::full(bytes.clone(), Counter::default()));
            Ok((res, bytes))
        }
        Err(e) => Err(respond::error(
            StatusCode::BAD_GATEWAY,
            format!("the upstream's answer could not be read within {max} bytes: {e}"),
            CacheStatus::fwd(Fwd::Method),
        )),
    }
}
