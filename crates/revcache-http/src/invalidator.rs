//! The invalidator: applies invalidations (an operator's purge, what a
//! write changed, what upstream events say) to every tier, and ingests
//! events. Invalidations that arrive together (one write, one event, one
//! NDJSON batch of events) reach the disk tier in one durable commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use revcache_core::{Cache, DiskError, Invalidation, PurgeError};
use revcache_shared::SharedTier;

use crate::credential;
use crate::events::{Event, EventEffect, EventError};
use crate::metrics::{InvalidationSource, Metrics};
use crate::proxy::ActiveConfig;
use crate::route::Route;

pub struct Invalidator {
    cache: Arc<Cache>,
    metrics: Arc<Metrics>,
    /// For the credential query parameters targets are keyed without.
    active: Arc<ArcSwap<ActiveConfig>>,
    /// The other nodes, told of every invalidation made here.
    shared: Option<Arc<SharedTier>>,
    /// Entries received before this (µs since the Unix epoch) are
    /// revalidated before they answer: the shared tier's stream could
    /// not be read meanwhile, so an invalidation of them may be missed.
    revalidate_before: AtomicU64,
}

impl Invalidator {
    pub(crate) fn new(
        cache: Arc<Cache>,
        metrics: Arc<Metrics>,
        active: Arc<ArcSwap<ActiveConfig>>,
        shared: Option<Arc<SharedTier>>,
    ) -> Self {
        // A node joining (or rejoining) the shared tier missed what the
        // others invalidated while it was not reading the stream: what its
        // disk tier kept is revalidated first.
        let revalidate_before = match shared {
            Some(_) => micros(cache.clock().now()),
            None => 0,
        };
        Invalidator {
            cache,
            metrics,
            active,
            shared,
            revalidate_before: AtomicU64::new(revalidate_before),
        }
    }

    /// Applies `invalidations` to every tier, durably and in one disk
    /// commit, before returning. Returns how many entries went, or that the
    /// disk tier did not commit the removal (the entries are gone from
    /// memory and hidden from disk lookups meanwhile).
    pub async fn invalidate(
        &self,
        invalidations: Vec<Invalidation>,
        source: InvalidationSource,
    ) -> Result<usize, PurgeError> {
        if invalidations.is_empty() {
            return Ok(0);
        }
        let invalidations: Vec<_> = invalidations.into_iter().map(|i| self.keyed(i)).collect();
        // The other nodes first: their entries (and the shared ones) go
        // before this caller is told the invalidation is done.
        if source != InvalidationSource::Shared
            && let Some(shared) = &self.shared
            && !shared.invalidate(&invalidations).await
        {
            // The others may go on serving what this invalidated: no
            // node trusts anything until the stream is read again.
            tracing::warn!("an invalidation could not be shared; trust suspended on this node");
            self.suspend_trust();
        }
        let cache = self.cache.clone();
        let result = tokio::task::spawn_blocking(move || cache.purge(&invalidations))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let n = match &result {
            Ok(n) => *n,
            // A disk tier already disabled (reported when it failed, and
            // by readyz) would otherwise log this for every event.
            Err(e) if matches!(e.source, DiskError::Unavailable { .. }) => {
                tracing::debug!(error = %e, "invalidation did not reach the disabled disk tier");
                e.in_memory
            }
            Err(e) => {
                tracing::error!(error = %e, "invalidation did not reach the disk tier");
                e.in_memory
            }
        };
        self.metrics.invalidation(source, n);
        result
    }

    /// Stops every route's trust (the shared stream cannot be read, or an
    /// invalidation could not be shared): entries are revalidated.
    pub fn suspend_trust(&self) {
        for route in self.active.load().router.routes() {
            if let Some(feed) = route.dialect.feed() {
                feed.suspend();
            }
        }
    }

    /// Entries received before this instant must be revalidated before
    /// they answer (see [`Invalidator::resume_trust`]).
    pub fn revalidate_before(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.revalidate_before.load(Ordering::Acquire))
    }

    /// Lets trust start over, from `now`, after a suspension; whatever was
    /// received before is revalidated before it answers again (an
    /// invalidation published meanwhile may never reach this node).
    pub fn resume_trust(&self) {
        let now = self.cache.clock().now();
        self.revalidate_before
            .fetch_max(micros(now), Ordering::AcqRel);
        for route in self.active.load().router.routes() {
            if let Some(feed) = route.dialect.feed() {
                feed.resume(now);
            }
        }
    }

    /// A target as keys name it: credential query parameters redacted.
    fn keyed(&self, invalidation: Invalidation) -> Invalidation {
        match invalidation {
            Invalidation::Target { route, target } => {
                let params = &self.active.load().partition.query_params;
                Invalidation::Target {
                    route,
                    target: credential::redact_target(&target, params).unwrap_or(target),
                }
            }
            other => other,
        }
    }

    /// Applies upstream events for `route`, in order: feed health, then all
    /// their invalidations in one durable commit, then the counts (whoever
    /// sees an event counted can rely on its invalidations having
    /// happened). A rejected event is counted and reported; the others
    /// still apply.
    pub async fn ingest(
        &self,
        route: &Route,
        events: &[Event<'_>],
    ) -> Vec<Result<EventEffect, EventError>> {
        let now = self.cache.clock().now();
        let results: Vec<_> = events
            .iter()
            .map(|event| {
                let effect = route.dialect.on_event(event, now);
                match &effect {
                    Ok(effect) => {
                        if let Some(feed) = route.dialect.feed() {
                            feed.received(now);
                            if effect.gap {
                                tracing::warn!(route = %route.name, kind = %effect.kind, "event feed reports lost events; trust restarts now");
                                feed.gap(now);
                            }
                        }
                    }
                    Err(e) => {
                        self.metrics.event_rejected(&route.name);
                        tracing::debug!(route = %route.name, error = %e, "event rejected");
                    }
                }
                effect
            })
            .collect();
        let all: Vec<Invalidation> = results
            .iter()
            .flatten()
            .flat_map(|effect| effect.invalidations.iter().cloned())
            .collect();
        let _ = self.invalidate(all, InvalidationSource::Event).await;
        for effect in results.iter().flatten() {
            self.metrics.event(&route.name, &effect.kind);
            for inv in &effect.invalidations {
                if let Invalidation::Tag(t) = inv {
                    let kind = t.name().split(':').next().unwrap_or("");
                    self.metrics.tag_invalidation(&route.name, kind);
                }
            }
        }
        results
    }
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
