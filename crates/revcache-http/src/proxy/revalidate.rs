//! Revalidation: a 304 that confirms a stored entry refreshes it (RFC 9111
//! §4.3.4); stale-while-revalidate refreshes an entry behind its client.
//!
//! A 304 that names another representation cannot confirm ours: the entry
//! is dropped and the whole response fetched, still leading the flight, so
//! what it gets is stored and shared rather than missing again next time.

use std::sync::Arc;
use std::time::SystemTime;

use http::header::AGE;
use http::{HeaderMap, Response};
use revcache_core::{Entry, FillTicket, StoreOutcome};

use super::Proxy;
use super::body::{ProxyBody, RequestBody};
use super::cache_status::{CacheStatus, Fwd};
use super::exchange::Exchange;
use super::fetch::Fetch;
use super::flight::{FlightOutcome, Leader, Role};
use crate::metrics::{Outcome, UpstreamReason};
use crate::policy::{ResponseDirectives, Storability, merge, stored_freshness};
use crate::settings::Sharing;

/// A 304 to a leader's conditional request.
pub struct Revalidation {
    /// The entry the request was conditional on.
    pub stale: Arc<Entry>,
    /// The 304's headers.
    pub headers: HeaderMap,
    pub request_time: SystemTime,
    pub response_time: SystemTime,
    pub ticket: FillTicket,
    /// Where the shared tier was when the request was sent: the refreshed
    /// entry replaces the other nodes' copy unless invalidated since.
    pub shared_ticket: Option<revcache_shared::Ticket>,
}

impl Proxy {
    /// Answers `ex` after a 304: refreshes the entry (or drops it when the
    /// merged headers no longer allow it there) and hands it to the waiters.
    pub(super) async fn revalidated(
        &self,
        ex: &Exchange,
        answer: Revalidation,
        leader: Leader,
        fwd: Fwd,
        reason: UpstreamReason,
    ) -> Response<ProxyBody> {
        let Revalidation {
            stale,
            headers,
            request_time,
            response_time,
            ticket,
            shared_ticket,
        } = answer;
        let stored = stale.headers.to_map(0);
        if !merge::validates(&stored, &headers) {
            // A 304 about another representation: ours cannot be confirmed.
            self.forget(stale.key.clone()).await;
            let refetch = Fetch {
                stale: None,
                leader: Some(leader),
                fwd,
                reason,
            };
            return Box::pin(self.fetch(ex, RequestBody::empty(), None, refetch)).await;
        }
        // A confirmed entry cost the upstream's rate limit nothing.
        if let Some(subject) = ex.rate_subject() {
            ex.route.dialect.saved(subject);
        }
        let merged = merge::merge_304(&stored, &headers);
        let cc = ResponseDirectives::for_cache(&merged, &ex.config.targeted);
        let entry = refreshed(
            &stale,
            merged,
            &cc,
            request_time,
            response_time,
            ex.route.sharing,
        );
        // The merged headers may no longer allow the entry where it is (a
        // 304 that says `private` or `no-store` now, or a new Vary): it is
        // dropped, and this client alone gets the refreshed copy.
        let merged = entry.headers.to_map(0);
        let still_storable = self
            .storability(ex, stale.status, &cc, &merged, Some(stale.body.len()))
            .is_ok_and(|(storability, variant)| {
                let key = match storability {
                    Storability::Shared => ex.public_key(),
                    _ => ex.own_key(),
                };
                *key == stale.key && variant == stale.variant
            });
        let (entry, shared) = if still_storable {
            match self.cache.store_refresh(&stale, entry, ticket) {
                StoreOutcome::Stored(e) => (e.clone(), FlightOutcome::Entry(e, ticket)),
                StoreOutcome::Outdated(e) => (e, FlightOutcome::NotShared),
            }
        } else {
            self.forget(stale.key.clone()).await;
            (Arc::new(entry), FlightOutcome::NotShared)
        };
        let refreshed_here = matches!(shared, FlightOutcome::Entry(..));
        leader.finish(shared);
        // The other nodes get the refreshed entry too, so they need not
        // revalidate theirs.
        if refreshed_here && let (Some(tier), Some(shared_ticket)) = (&self.shared, shared_ticket) {
            let (tier, e) = (tier.clone(), entry.clone());
            let ttl = super::fetch::shared_ttl(ex, &e.freshness());
            tokio::spawn(async move { tier.store(&e, &shared_ticket, ttl).await });
        }
        let status = CacheStatus::fwd(fwd).fwd_status(304);
        let mut res = self.serve(ex, &entry, status, Outcome::Revalidated).await;
        // What the 304 says to this client only (its cookies) is never
        // stored; it reaches this client alone.
        merge::copy_per_client(&headers, res.headers_mut());
        res
    }

    /// Stale-while-revalidate: refreshes `entry` without making anyone
    /// wait, unless a refresh of its key is already under way.
    pub(super) fn revalidate_in_background(self: &Arc<Self>, ex: &Exchange, entry: Arc<Entry>) {
        let Role::Lead(leader) = self.flights.join(ex.own_key()) else {
            return;
        };
        let this = self.clone();
        let ex = ex.detach();
        tokio::spawn(async move {
            let refresh = Fetch {
                stale: Some(entry),
                leader: Some(leader),
                fwd: Fwd::Stale,
                reason: UpstreamReason::Background,
            };
            // Nobody reads it; the fill task finishes storing on its own.
            drop(this.fetch(&ex, RequestBody::empty(), None, refresh).await);
        });
    }
}

/// `stale` with the headers a 304 merged into it, fresh again.
fn refreshed(
    stale: &Entry,
    mut merged: HeaderMap,
    cc: &ResponseDirectives,
    request_time: SystemTime,
    response_time: SystemTime,
    sharing: Sharing,
) -> Entry {
    let (freshness, timing) = stored_freshness(
        stale.status,
        &merged,
        cc,
        request_time,
        response_time,
        sharing,
    );
    merged.remove(AGE);
    stale.refreshed(merged, timing, freshness)
}
