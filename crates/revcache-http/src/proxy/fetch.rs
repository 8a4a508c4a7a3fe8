//! Fetching: asking the upstream for a cacheable request, and filling the
//! cache with what it answers while the client receives it.
//!
//! The leader of a flight asks conditionally when it holds a stored entry
//! with validators (a 304 goes to `revalidate`); a request fetching on its
//! own passes its client's conditions through and stores nothing. An
//! upstream failure (no answer, a server error, or what the dialect
//! declares one) falls back to stale-if-error. Whatever happens, the
//! leader hands its waiters exactly one outcome (see `flight`).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use http::header::AGE;
use http::{HeaderMap, Response, StatusCode};
use hyper::body::Body;
use revcache_core::Entry;
use revcache_core::Variant;

use super::body::{ProxyBody, RequestBody};
use super::cache_status::{self, CacheStatus, Fwd};
use super::exchange::{Exchange, clone_parts};
use super::fill::{self, FillPlan};
use super::flight::{FlightOutcome, Leader};
use super::forward::{self, Conditions};
use super::revalidate::Revalidation;
use super::upstream::UpstreamError;
use super::{HIT_FOR_PASS, Proxy, respond};
use crate::dialect::Storage;
use crate::metrics::{Outcome, UpstreamReason};
use crate::policy::{
    NotStored, ResponseDirectives, Storability, conditional, hop_by_hop, storability,
    stored_freshness, vary,
};

/// An upstream answer about to be stored.
pub struct Answer<'a> {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub directives: &'a ResponseDirectives,
    pub request_time: std::time::SystemTime,
    pub response_time: std::time::SystemTime,
}

/// What a fetch starts from.
pub struct Fetch {
    /// The stored entry it revalidates, if any.
    pub stale: Option<Arc<Entry>>,
    /// The flight it leads; `None` when fetching on its own (after a
    /// waiter's deadline, say), which stores nothing.
    pub leader: Option<Leader>,
    pub fwd: Fwd,
    pub reason: UpstreamReason,
}

impl Proxy {
    pub(super) async fn fetch(
        &self,
        ex: &Exchange,
        body: RequestBody,
        exceeded: Option<Arc<AtomicBool>>,
        fetch: Fetch,
    ) -> Response<ProxyBody> {
        let Fetch {
            stale,
            leader,
            fwd,
            reason,
        } = fetch;
        let conditions = match (&stale, leader.is_some()) {
            (Some(e), true) => Conditions::Revalidate(&e.headers),
            (None, true) => Conditions::Strip,
            (_, false) => Conditions::Client,
        };
        self.metrics.forwarded(fwd);
        let ticket = self.cache.begin_fill();
        // The shared sequence this fill starts from: its entry is shared
        // only if no node invalidated what it shows since.
        let shared_ticket = match (&self.shared, &leader) {
            (Some(shared), Some(_)) => shared.ticket().await,
            _ => None,
        };
        let request_time = self.cache.clock().now();
        let req = forward::upstream_request(ex, body, conditions);
        let res = match ex.route.upstream.send(req, exceeded).await {
            Ok(res) => res,
            Err(e) => {
                self.release_shared_lock(ex);
                if let Some(leader) = leader {
                    leader.finish(FlightOutcome::Failed(e.clone()));
                }
                if !e.is_client_error()
                    && let Some(res) = self
                        .stale_if_error(ex, stale.as_ref(), None, false, e.is_disconnection())
                        .await
                {
                    self.metrics.upstream_error(e.kind());
                    tracing::warn!(error = %e, "upstream failed; serving stale (stale-if-error)");
                    return res;
                }
                return self.upstream_failed(&e, CacheStatus::fwd(fwd));
            }
        };
        let response_time = self.cache.clock().now();
        let status = res.status();
        self.metrics.upstream(reason, status.as_u16());
        let class = ex.route.dialect.endpoint_class(&ex.parts);
        ex.route
            .counters(&self.metrics)
            .upstream(class, status.as_u16());
        let (mut rparts, rbody) = res.into_parts();
        hop_by_hop::strip(&mut rparts.headers);
        if let Some(subject) = ex.rate_subject() {
            ex.route
                .dialect
                .answered(subject, status, &rparts.headers, response_time);
        }

        // A 304 to the leader's conditional request is about its entry.
        let leader = match (status == StatusCode::NOT_MODIFIED, &stale, leader) {
            (true, Some(s), Some(leader)) => {
                let answer = Revalidation {
                    stale: s.clone(),
                    headers: rparts.headers,
                    request_time,
                    response_time,
                    ticket,
                    shared_ticket,
                };
                return self.revalidated(ex, answer, leader, fwd, reason).await;
            }
            (_, _, leader) => leader,
        };
        if ex.route.dialect.upstream_failure(status, &rparts.headers)
            && let Some(res) = self
                .stale_on_failure(ex, stale.as_ref(), status, response_time)
                .await
        {
            if let Some(leader) = leader {
                let e = UpstreamError::Other(format!("upstream answered {status}"));
                leader.finish(FlightOutcome::Failed(e));
            }
            return res;
        }

        let outcome = if stale.is_some() {
            Outcome::Refetched
        } else {
            Outcome::Miss
        };
        let res_cc = ResponseDirectives::for_cache(&rparts.headers, &ex.config.targeted);
        let decision = match leader {
            Some(_) => self.storability(
                ex,
                status,
                &res_cc,
                &rparts.headers,
                rbody.size_hint().exact(),
            ),
            // Fetching alone: what it gets is its client's only.
            None => Err(None),
        };
        let mut client_headers = rparts.headers.clone();
        forward::client_response_headers(&mut client_headers, ex.parts.version);
        let mut cs = CacheStatus::fwd(fwd).fwd_status(status.as_u16());
        let body = match decision {
            Ok((storable, variant)) => {
                let share = match (&self.shared, shared_ticket) {
                    (Some(tier), Some(ticket)) => Some((tier.clone(), ticket)),
                    _ => None,
                };
                let answer = Answer {
                    status,
                    headers: rparts.headers,
                    directives: &res_cc,
                    request_time,
                    response_time,
                };
                let plan = self.fill_plan(ex, storable, variant, answer, ticket, share);
                cs = cs.stored(true).ttl(
                    plan.freshness.lifetime.as_secs() as i64
                        - plan.timing.initial_age.as_secs() as i64,
                );
                let rx = fill::spawn(self.cache.clone(), &self.fills, plan, rbody, leader);
                ProxyBody::channel(rx, self.metrics.bytes_counter(false))
            }
            Err(why) => {
                self.release_shared_lock(ex);
                if let Some(why) = why {
                    self.metrics.not_stored(why);
                    cs = cs.detail(why.as_str());
                }
                if let Some(leader) = leader {
                    leader.finish(FlightOutcome::NotShared);
                    // A failing upstream's errors keep collapsing: the
                    // herd should not reach it while it is down.
                    if why.is_some() && !status.is_server_error() {
                        let until = self.cache.clock().now() + HIT_FOR_PASS;
                        self.uncacheable.insert(ex.own_key().clone(), until);
                    }
                }
                if ex.range.is_some() && status == StatusCode::OK {
                    // The whole will not be kept: the upstream answers the
                    // client's range itself (and, remembered as
                    // uncacheable above, does so at once next time).
                    drop(rbody);
                    return self
                        .forward_plain(ex, RequestBody::empty(), None, reason, fwd, outcome)
                        .await
                        .0;
                }
                ProxyBody::upstream(
                    rbody,
                    ex.route.upstream.read_timeout(),
                    self.metrics.bytes_counter(false),
                )
            }
        };
        self.metrics.outcome(outcome);
        if status == StatusCode::OK && conditional::not_modified(&ex.parts.headers, &client_headers)
        {
            // The client already has this version; the fill goes on without it.
            return respond::not_modified(&client_headers, cs);
        }
        client_headers.append(cache_status::NAME, cs.value());
        let mut res = Response::new(body);
        *res.status_mut() = status;
        *res.headers_mut() = client_headers;
        res
    }

    /// The plan of a fill storing `answer` for `ex`, under the key its
    /// storability names; `share` is the shared tier and the sequence the
    /// fill started from, when the entry goes there too.
    pub(super) fn fill_plan(
        &self,
        ex: &Exchange,
        storable: Storability,
        variant: Variant,
        answer: Answer<'_>,
        ticket: revcache_core::FillTicket,
        share: Option<(Arc<revcache_shared::SharedTier>, revcache_shared::Ticket)>,
    ) -> FillPlan {
        let key = match storable {
            Storability::Shared => ex.public_key().clone(),
            _ => ex.own_key().clone(),
        };
        let (mut freshness, timing) = stored_freshness(
            answer.status,
            &answer.headers,
            answer.directives,
            answer.request_time,
            answer.response_time,
            ex.route.sharing,
        );
        // Stored for the caller alone (a dialect's partition, even an
        // anonymous caller's): never an answer for a caller with
        // credentials, whatever `public` said.
        if storable != Storability::Shared {
            freshness.shareable = false;
        }
        let mut stored = answer.headers;
        stored.remove(AGE);
        stored.remove(cache_status::NAME);
        FillPlan {
            key,
            variant,
            dialect: ex.route.dialect.clone(),
            request: clone_parts(&ex.parts),
            status: answer.status,
            headers: stored,
            timing,
            share: share.map(|(tier, ticket)| fill::Share {
                tier,
                ticket,
                ttl: shared_ttl(ex, &freshness),
                lock: ex.own_key().clone(),
            }),
            freshness,
            ticket,
            max_bytes: ex.config.limits.max_cacheable_body_bytes,
            read_timeout: ex.route.upstream.read_timeout(),
        }
    }

    /// Lets the other nodes stop waiting for a fetch of `ex` this node
    /// will not share.
    fn release_shared_lock(&self, ex: &Exchange) {
        if let Some(shared) = &self.shared {
            let (shared, key) = (shared.clone(), ex.own_key().clone());
            tokio::spawn(async move { shared.unlock(&key).await });
        }
    }

    /// A stored entry in place of an upstream failure: when the upstream's
    /// rate limit now holds the caller back (`detail=rate-limited`), or as
    /// stale-if-error allows.
    async fn stale_on_failure(
        &self,
        ex: &Exchange,
        stale: Option<&Arc<Entry>>,
        status: StatusCode,
        now: std::time::SystemTime,
    ) -> Option<Response<ProxyBody>> {
        if let Some(entry) = stale
            && let Some(subject) = ex.rate_subject()
            && ex.route.dialect.hold(subject, now).is_some()
        {
            let cs = CacheStatus::fwd(Fwd::Stale)
                .fwd_status(status.as_u16())
                .detail("rate-limited");
            ex.route.dialect_hit(&self.metrics, "rate-limited");
            return Some(self.serve(ex, entry, cs, Outcome::RateLimited).await);
        }
        self.stale_if_error(ex, stale, Some(status.as_u16()), false, false)
            .await
    }

    /// `Ok` with the storability and variant when the response will be
    /// stored, `Err` with the reason when not. `length` is the body's
    /// declared length, when it has one.
    pub(super) fn storability(
        &self,
        ex: &Exchange,
        status: StatusCode,
        res_cc: &ResponseDirectives,
        headers: &HeaderMap,
        length: Option<u64>,
    ) -> Result<(Storability, Variant), Option<NotStored>> {
        if length.is_some_and(|n| n > ex.config.limits.max_cacheable_body_bytes) {
            return Err(Some(NotStored::TooLarge));
        }
        let rule = ex.route.dialect.vary_rule();
        // `ignore` holds only where the partition covers what it names:
        // in the caller's own partition, never in a shared entry.
        let variant = |ignore| {
            vary::variant_of(
                headers,
                &ex.parts.headers,
                &self.partition_key,
                rule.add,
                ignore,
            )
            .ok_or(Some(NotStored::VaryStar))
        };
        // A caller known by something that is not partition material has no
        // partition of its own: only what may be shared is stored for it.
        let unpartitioned = ex.has_credentials && ex.partition.is_none();
        match ex.route.dialect.storage(&ex.parts, status, headers) {
            // The dialect vouches for it; only the caller's partition sees it.
            Storage::Partitioned if !unpartitioned && ex.partition.is_some() => {
                return Ok((Storability::Private, variant(rule.ignore)?));
            }
            Storage::Partitioned if !unpartitioned => {
                return Ok((Storability::Private, variant(&[])?));
            }
            Storage::Never(why) => return Err(Some(why)),
            Storage::Partitioned | Storage::Rfc => {}
        }
        let variant = variant(&[])?;
        match storability(
            &ex.parts.method,
            status,
            &ex.req_cc,
            res_cc,
            headers,
            ex.has_credentials,
            ex.route.sharing,
        ) {
            Storability::No(why) => Err(Some(why)),
            Storability::Private if unpartitioned => Err(Some(NotStored::Credentials)),
            s => Ok((s, variant)),
        }
    }
}

/// How long a shared entry may be of use to another node: its freshness,
/// its stale windows and the route's trust, and a minute more.
pub(super) fn shared_ttl(
    ex: &Exchange,
    freshness: &revcache_core::Freshness,
) -> std::time::Duration {
    let stale = freshness
        .stale_while_revalidate
        .unwrap_or_default()
        .max(freshness.stale_if_error.unwrap_or_default());
    let trust = ex
        .route
        .dialect
        .feed()
        .and_then(|f| f.trust())
        .unwrap_or_default();
    freshness.lifetime + stale + trust + std::time::Duration::from_secs(60)
}
