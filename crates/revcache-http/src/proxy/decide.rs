//! What a stored entry may do for a request at one instant, decided once.
//!
//! The route's dialect decides first (an event feed it trusts, the
//! ledger), else RFC 9111 §4.2. A client's own `no-cache` or `max-age=0`
//! always forces revalidation. The [`Decision`] is carried through serving,
//! the single flight and the fetch; the response's `Cache-Status` and the
//! outcome metric are derived from it, never recomputed.

use std::sync::Arc;
use std::time::SystemTime;

use revcache_core::Entry;

use super::cache_status::{CacheStatus, Fwd};
use super::exchange::Exchange;
use crate::metrics::{Outcome, UpstreamReason};
use crate::policy::{RequestDirectives, Reuse, reuse};

/// How a stored entry may answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Serve it as it is. `detail` names a dialect's reason (`trusted`,
    /// `ledger`) when RFC 9111 alone would not have.
    Fresh { detail: Option<&'static str> },
    /// Serve it, and refresh it behind the client (RFC 5861).
    StaleWhileRevalidate,
    /// Serve it without asking: the upstream's rate limit holds the
    /// caller back (the dialect's `hold`).
    RateLimited,
    /// Ask the upstream first (conditionally when the entry has
    /// validators); `fwd` says why: the entry is stale or untrusted
    /// (`stale`), or the client's directives forbid it (`request`).
    Revalidate { fwd: Fwd },
}

impl Decision {
    /// The decision for `entry` answering `ex` at `now`. An entry received
    /// before `revalidate_before` (a gap in the shared tier's stream may
    /// have hidden an invalidation of it) is revalidated first.
    pub fn of(
        ex: &Exchange,
        entry: &Entry,
        now: SystemTime,
        revalidate_before: SystemTime,
    ) -> Decision {
        if entry.timing().response_time < revalidate_before {
            return Decision::Revalidate { fwd: Fwd::Stale };
        }
        let req = &ex.req_cc;
        let client_insists = req.no_cache || req.max_age.is_some_and(|m| m.seconds() == 0);
        let dialect = ex.route.dialect.reuse(entry, now);
        let (verdict, detail) = match dialect {
            Some(d) => (d.reuse, d.detail),
            None => (reuse(entry, req, now), None),
        };
        match verdict {
            Reuse::Revalidate => {
                // `request` when the entry would have served but for the
                // client's own directives.
                let without_client = match dialect {
                    Some(d) => d.reuse,
                    None => reuse(entry, &RequestDirectives::default(), now),
                };
                let fwd = if without_client != Reuse::Revalidate {
                    Fwd::Request
                } else {
                    Fwd::Stale
                };
                // Asking would spend what the caller has left of the
                // upstream's rate limit: what is stored answers, unless
                // the client itself insists.
                if !client_insists
                    && let Some(subject) = ex.rate_subject()
                    && ex.route.dialect.hold(subject, now).is_some()
                {
                    return Decision::RateLimited;
                }
                Decision::Revalidate { fwd }
            }
            _ if client_insists => Decision::Revalidate { fwd: Fwd::Request },
            Reuse::Fresh => Decision::Fresh { detail },
            Reuse::StaleWhileRevalidate => Decision::StaleWhileRevalidate,
        }
    }

    /// `Cache-Status` and outcome of serving the entry as decided; `None`
    /// for a revalidation (its status comes from the upstream's answer).
    pub fn served(self) -> Option<(CacheStatus, Outcome)> {
        match self {
            Decision::Fresh { detail: None } => Some((CacheStatus::hit(), Outcome::Hit)),
            Decision::Fresh {
                detail: Some(detail),
            } => Some((CacheStatus::hit().detail(detail), Outcome::Hit)),
            Decision::StaleWhileRevalidate => Some((
                CacheStatus::hit().detail("stale-while-revalidate"),
                Outcome::StaleWhileRevalidate,
            )),
            Decision::RateLimited => Some((
                CacheStatus::hit().detail("rate-limited"),
                Outcome::RateLimited,
            )),
            Decision::Revalidate { .. } => None,
        }
    }
}

/// An entry that answers without the upstream, and how.
pub struct Serving<'a> {
    pub entry: &'a Arc<Entry>,
    pub decision: Decision,
    pub status: CacheStatus,
    pub outcome: Outcome,
}

/// What the cache holds for a request: the newest entry that may answer
/// it with its decision, and whether the URI had any entry at all.
#[derive(Clone, Debug, Default)]
pub struct Candidate {
    pub entry: Option<(Arc<Entry>, Decision)>,
    pub uri_known: bool,
}

impl Candidate {
    pub fn decided(
        entry: Option<Arc<Entry>>,
        uri_known: bool,
        ex: &Exchange,
        now: SystemTime,
        revalidate_before: SystemTime,
    ) -> Self {
        Candidate {
            entry: entry.map(|e| {
                let d = Decision::of(ex, &e, now, revalidate_before);
                (e, d)
            }),
            uri_known,
        }
    }

    /// The entry when it answers without the upstream.
    pub fn serving(&self) -> Option<Serving<'_>> {
        let (entry, decision) = self.entry.as_ref()?;
        let (status, outcome) = decision.served()?;
        Some(Serving {
            entry,
            decision: *decision,
            status,
            outcome,
        })
    }

    /// The stored entry a fetch revalidates (or falls back to on error).
    pub fn stale(&self) -> Option<&Arc<Entry>> {
        self.entry.as_ref().map(|(e, _)| e)
    }

    /// Why a request for this candidate goes upstream (RFC 9211 `fwd`).
    pub fn fwd(&self) -> Fwd {
        match &self.entry {
            Some((_, Decision::Revalidate { fwd })) => *fwd,
            // Served entries only go upstream in the background.
            Some(_) => Fwd::Stale,
            None if self.uri_known => Fwd::VaryMiss,
            None => Fwd::UriMiss,
        }
    }

    /// The metric reason and outcome of going upstream for it.
    pub fn upstream_reason(&self) -> (UpstreamReason, Outcome) {
        match self.entry {
            Some(_) => (UpstreamReason::Revalidate, Outcome::Refetched),
            None => (UpstreamReason::Miss, Outcome::Miss),
        }
    }
}
