//! Serving: answering a client from a stored entry, and the answers
//! revcache makes up (rejections, upstream failures, `only-if-cached`).
//!
//! Stale-if-error (RFC 5861 §4) is one function here, whichever way the
//! upstream failed: no answer, a server error, or an answer the route's
//! dialect declares a failure (a rate limit).

use std::sync::Arc;
use std::time::SystemTime;

use http::{Response, StatusCode};
use revcache_core::{BodyFile, Entry, EntryBody, Invalidation, PrimaryKey};

use super::Proxy;
use super::admission::Rejection;
use super::body::{ProxyBody, RequestBody};
use super::cache_status::{CacheStatus, Fwd};
use super::decide::{Decision, Serving};
use super::exchange::Exchange;
use super::forward::{self, Conditions};
use super::respond;
use super::upstream::UpstreamError;
use crate::dialect::Hold;
use crate::metrics::{Outcome, UpstreamReason};
use crate::policy::freshness::{disconnected_allows, stale_if_error_allows};

impl Proxy {
    /// The hit path: answers from `entry` at once when it serves without
    /// the upstream and its body needs no file opened. It has no `.await`,
    /// so a hit never builds (or moves) the futures of the miss path: about
    /// 1,000 fewer instructions per hit, most of them memory copies
    /// (bench/http-hit/profile.sh).
    pub(super) fn serve_now(
        self: &Arc<Self>,
        ex: &Exchange,
        serving: Serving<'_>,
        now: SystemTime,
    ) -> Option<Response<ProxyBody>> {
        let body = self.body_at_hand(ex, serving.entry).ok()?;
        self.served(ex, &serving);
        Some(self.respond_with(
            ex,
            serving.entry,
            body,
            serving.status,
            serving.outcome,
            now,
        ))
    }

    /// Answers from an entry that serves without the upstream.
    pub(super) async fn serve_decided(
        self: &Arc<Self>,
        ex: &Exchange,
        serving: Serving<'_>,
    ) -> Response<ProxyBody> {
        self.served(ex, &serving);
        self.serve(ex, serving.entry, serving.status, serving.outcome)
            .await
    }

    /// What serving as decided sets going: the route's dialect-hit
    /// counter, the background refresh of a stale-while-revalidate, the
    /// dialect's count of requests that cost the upstream nothing.
    fn served(self: &Arc<Self>, ex: &Exchange, serving: &Serving<'_>) {
        if let Some(subject) = ex.rate_subject() {
            ex.route.dialect.saved(subject);
        }
        match serving.decision {
            Decision::Fresh {
                detail: Some(detail),
            } => ex.route.dialect_hit(&self.metrics, detail),
            Decision::StaleWhileRevalidate => {
                self.revalidate_in_background(ex, serving.entry.clone());
            }
            Decision::RateLimited => ex.route.dialect_hit(&self.metrics, "rate-limited"),
            _ => {}
        }
    }

    /// Answers from `entry`. A body file that vanished since the entry was
    /// read (swept or purged) makes this a plain forward instead.
    pub(super) async fn serve(
        &self,
        ex: &Exchange,
        entry: &Entry,
        status: CacheStatus,
        outcome: Outcome,
    ) -> Response<ProxyBody> {
        let body = match self.body_at_hand(ex, entry) {
            Ok(body) => body,
            Err(file) => match ProxyBody::file(file, self.metrics.bytes_counter(true)).await {
                Ok(body) => body,
                Err(e) => {
                    tracing::warn!(path = %file.path.display(), error = %e, "cached body file vanished; forwarding");
                    self.forget(entry.key.clone()).await;
                    let req =
                        forward::upstream_request(ex, RequestBody::empty(), Conditions::Client);
                    let fwd = if ex.parts.method == http::Method::HEAD {
                        Fwd::Method
                    } else {
                        Fwd::UriMiss
                    };
                    return self
                        .relay(ex, req, None, UpstreamReason::Miss, fwd, Outcome::Miss)
                        .await
                        .0;
                }
            },
        };
        self.respond_with(ex, entry, body, status, outcome, self.cache.clock().now())
    }

    /// The body `entry` answers `ex` with when no file has to be opened
    /// (none for a HEAD, shared bytes for a body in memory), else the file.
    fn body_at_hand<'e>(&self, ex: &Exchange, entry: &'e Entry) -> Result<ProxyBody, &'e BodyFile> {
        match (&entry.body, ex.parts.method == http::Method::HEAD) {
            (_, true) => Ok(ProxyBody::empty()),
            (EntryBody::Memory(bytes), false) => Ok(ProxyBody::full(
                bytes.clone(),
                self.metrics.bytes_counter(true),
            )),
            (EntryBody::File(file), false) => Err(file),
        }
    }

    fn respond_with(
        &self,
        ex: &Exchange,
        entry: &Entry,
        body: ProxyBody,
        status: CacheStatus,
        outcome: Outcome,
        now: SystemTime,
    ) -> Response<ProxyBody> {
        self.metrics.outcome(outcome);
        self.cache.touch(entry, now);
        respond::from_entry(
            entry,
            &ex.parts.headers,
            ex.parts.version,
            status,
            body,
            now,
        )
    }

    /// Serves `stale` in place of a failed upstream when stale-if-error
    /// allows it, or, when the upstream could not be reached
    /// (`disconnected`), when no directive forbids stale. `fwd_status` is
    /// the upstream's status when it answered.
    pub(super) async fn stale_if_error(
        &self,
        ex: &Exchange,
        stale: Option<&Arc<Entry>>,
        fwd_status: Option<u16>,
        collapsed: bool,
        disconnected: bool,
    ) -> Option<Response<ProxyBody>> {
        let stale = stale?;
        let detail = if stale_if_error_allows(stale, &ex.req_cc, self.cache.clock().now()) {
            "stale-if-error"
        } else if disconnected && disconnected_allows(stale, &ex.req_cc) {
            "disconnected"
        } else {
            return None;
        };
        let mut status = CacheStatus::fwd(Fwd::Stale).detail(detail);
        if let Some(s) = fwd_status {
            status = status.fwd_status(s);
        }
        if collapsed {
            status = status.collapsed();
        }
        Some(self.serve(ex, stale, status, Outcome::StaleIfError).await)
    }

    pub(super) fn only_if_cached_miss(&self) -> Response<ProxyBody> {
        self.metrics.outcome(Outcome::Rejected);
        respond::error(
            StatusCode::GATEWAY_TIMEOUT,
            "only-if-cached: no usable stored response",
            CacheStatus::default().detail("only-if-cached"),
        )
    }

    /// A request the upstream's rate limit holds back, with nothing stored
    /// to answer it: 429 with the `Retry-After` the upstream set.
    pub(super) fn held_back(&self, hold: Hold, fwd: Fwd) -> Response<ProxyBody> {
        self.metrics.outcome(Outcome::RateLimited);
        let wait = hold
            .until
            .duration_since(self.cache.clock().now())
            .unwrap_or_default()
            .as_secs()
            .max(1);
        let mut res = respond::error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "the upstream's rate limit holds this caller back for {wait} s; nothing is stored to answer"
            ),
            CacheStatus::fwd(fwd).detail("rate-limited"),
        );
        res.headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from(wait));
        res
    }

    pub(super) fn reject(&self, rejection: Rejection) -> Response<ProxyBody> {
        self.metrics.outcome(Outcome::Rejected);
        let Rejection { status, message } = rejection;
        tracing::debug!(status = status.as_u16(), %message, "rejected request");
        respond::error(status, message, CacheStatus::fwd(Fwd::Bypass))
    }

    pub(super) fn upstream_failed(
        &self,
        e: &UpstreamError,
        status: CacheStatus,
    ) -> Response<ProxyBody> {
        self.metrics.upstream_error(e.kind());
        if e.is_client_error() {
            self.metrics.outcome(Outcome::Rejected);
        } else {
            self.metrics.outcome(Outcome::Error);
            tracing::warn!(error = %e, "upstream request failed");
        }
        respond::error(e.status(), e.to_string(), status)
    }

    /// Drops every variant of `key` from every tier: its body file is
    /// gone, or the upstream no longer confirms it.
    pub(super) async fn forget(&self, key: PrimaryKey) {
        let cache = self.cache.clone();
        let purged =
            tokio::task::spawn_blocking(move || cache.purge(&[Invalidation::Key(key)])).await;
        if let Ok(Err(e)) = purged {
            tracing::error!(error = %e, "a dropped entry did not leave the disk tier");
        }
    }
}
