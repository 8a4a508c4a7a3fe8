//! Requests the cache does not answer: passes (and HEADs that missed) are
//! relayed uncached; writes are relayed, then invalidate what a success
//! changed before the client sees the response, so its next read is fresh.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use http::{HeaderMap, Request, Response, StatusCode};

use super::Proxy;
use super::body::{ProxyBody, RequestBody};
use super::cache_status::{self, CacheStatus, Fwd};
use super::exchange::Exchange;
use super::forward::{self, Conditions};
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
        let req = forward::upstream_request(
            &ex.route,
            &ex.parts,
            ex.host(),
            ex.client,
            body,
            Conditions::Client,
        );
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
        self.metrics.outcome(outcome);
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
        if let Some((status, headers)) = answered
            && (status.is_success() || status.is_redirection())
        {
            let invalidations = ex.route.dialect.on_write(&ex.parts, status, &headers);
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
