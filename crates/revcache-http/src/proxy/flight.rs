//! Single flight as the proxy uses it: one request per key leads (reads
//! the disk tier, asks the upstream, fills the cache) and the identical
//! requests behind it wait for its outcome.
//!
//! Every way a leader can end hands its waiters exactly one outcome: a
//! leader that is finished says what it got, and one that is dropped on
//! any other path (its client went away, an early return) tells them
//! [`FlightOutcome::NotShared`], so they fetch for themselves at once
//! instead of guessing. A waiter waits until a deadline and then fetches on
//! its own: a stalled leader never holds its waiters longer than that.
//!
//! A waiter may join after an invalidation that came between the leader
//! reading (or fetching) its entry and handing it over; the entry carries
//! the ticket the leader took before, and a waiter the invalidation
//! reached since joins again instead of answering with what it outdated.

use std::sync::Arc;

use revcache_core::{Cache, Entry, FillTicket, Join, LeaderGuard, PrimaryKey, SingleFlight};
use tokio::time::Instant;

use super::upstream::UpstreamError;

/// What a flight's leader hands its waiters.
#[derive(Clone, Debug)]
pub enum FlightOutcome {
    /// The stored (or refreshed) entry, and the ticket taken before it was
    /// read or fetched.
    Entry(Arc<Entry>, FillTicket),
    /// Nothing shareable (not storable, too large, outdated, the leader
    /// gave up): fetch alone.
    NotShared,
    /// The leader could not fetch for the others (a HEAD that found nothing
    /// reusable on disk cannot fill a GET entry): join again; one of the
    /// waiters leads.
    Retry,
    /// The upstream failed; waiters answer with the same error (or stale).
    Failed(UpstreamError),
}

/// The flights in progress, by key.
#[derive(Clone, Default)]
pub struct Flights {
    inner: SingleFlight<PrimaryKey, FlightOutcome>,
}

/// A request's part in its key's flight.
pub enum Role {
    Lead(Leader),
    Wait(Waiter),
}

/// The leader of a flight. Finish it with [`Leader::finish`]; dropping it
/// unfinished tells the waiters [`FlightOutcome::NotShared`].
pub struct Leader {
    guard: Option<LeaderGuard<PrimaryKey, FlightOutcome>>,
}

/// A request waiting for its flight's leader.
pub struct Waiter {
    inner: revcache_core::Waiter<PrimaryKey, FlightOutcome>,
}

impl Flights {
    pub fn join(&self, key: &PrimaryKey) -> Role {
        match self.inner.join(key) {
            Join::Leader(guard) => Role::Lead(Leader { guard: Some(guard) }),
            Join::Waiter(inner) => Role::Wait(Waiter { inner }),
        }
    }

    /// Requests waiting for a leader now.
    pub fn waiting(&self) -> usize {
        self.inner.waiting()
    }

    /// Keys with a leader now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight()
    }
}

impl Leader {
    /// Hands `outcome` to every waiter and frees the key.
    pub fn finish(mut self, outcome: FlightOutcome) {
        if let Some(guard) = self.guard.take() {
            guard.complete(outcome);
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            guard.complete(FlightOutcome::NotShared);
        }
    }
}

impl Waiter {
    /// The leader's outcome, or `None` when `deadline` passed first (the
    /// waiter then fetches on its own). An entry that an invalidation
    /// reached after the leader's ticket comes back as
    /// [`FlightOutcome::Retry`]: this waiter may have joined after that
    /// invalidation, and must not be answered with what it outdated.
    pub async fn wait_until(self, deadline: Instant, cache: &Cache) -> Option<FlightOutcome> {
        match tokio::time::timeout_at(deadline, self.inner.wait()).await {
            Ok(Ok(FlightOutcome::Entry(e, ticket))) if !cache.is_current(ticket, &e) => {
                Some(FlightOutcome::Retry)
            }
            Ok(Ok(outcome)) => Some(outcome),
            // Only a leader outside this module can end unfinished.
            Ok(Err(_abandoned)) => Some(FlightOutcome::NotShared),
            Err(_deadline) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};
    use revcache_core::{
        CacheConfig, EntryTiming, Freshness, Invalidation, KeyClass, Partition, StoreOutcome,
        Version,
    };

    use super::*;

    fn key() -> PrimaryKey {
        PrimaryKey::new(0, KeyClass::Get, "h", "/k", Partition::Public)
    }

    fn cache() -> Cache {
        Cache::new(CacheConfig::default())
    }

    fn entry() -> Entry {
        let at = SystemTime::now();
        Entry::new(
            key(),
            Box::new([]),
            Version::from_etag("\"g0\""),
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from_static(b"g0"),
            Vec::new(),
            EntryTiming {
                request_time: at,
                response_time: at,
                initial_age: Duration::ZERO,
            },
            Freshness::default(),
        )
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    /// The soak's one stale answer: a write's invalidation landed between
    /// the leader reading its entry and handing it over, and a read that
    /// began after the write joined the flight in that gap.
    #[tokio::test]
    async fn a_waiter_is_not_handed_an_entry_invalidated_after_the_leader_read_it() {
        let (cache, flights) = (cache(), Flights::default());
        let ticket = cache.begin_fill();
        let Role::Lead(leader) = flights.join(&key()) else {
            panic!("first joiner leads")
        };
        let StoreOutcome::Stored(read) = cache.store(entry(), ticket) else {
            panic!("nothing invalidated yet")
        };
        cache
            .purge(&[Invalidation::target(0, "/k")])
            .expect("memory purge");
        let Role::Wait(waiter) = flights.join(&key()) else {
            panic!("the leader has not finished")
        };
        leader.finish(FlightOutcome::Entry(read, ticket));
        let got = waiter.wait_until(soon(), &cache).await;
        assert!(matches!(got, Some(FlightOutcome::Retry)), "{got:?}");
        assert!(matches!(flights.join(&key()), Role::Lead(_)), "key freed");
    }

    #[tokio::test]
    async fn a_waiter_is_handed_an_entry_nothing_invalidated() {
        let (cache, flights) = (cache(), Flights::default());
        let ticket = cache.begin_fill();
        let Role::Lead(leader) = flights.join(&key()) else {
            panic!("first joiner leads")
        };
        let Role::Wait(waiter) = flights.join(&key()) else {
            panic!("second joiner waits")
        };
        let StoreOutcome::Stored(read) = cache.store(entry(), ticket) else {
            panic!("nothing invalidated")
        };
        // Another target's invalidation does not concern it.
        cache
            .purge(&[Invalidation::target(0, "/other")])
            .expect("memory purge");
        leader.finish(FlightOutcome::Entry(read.clone(), ticket));
        let got = waiter.wait_until(soon(), &cache).await;
        assert!(
            matches!(&got, Some(FlightOutcome::Entry(e, _)) if Arc::ptr_eq(e, &read)),
            "{got:?}"
        );
    }

    #[tokio::test]
    async fn a_dropped_leader_tells_its_waiters_to_fetch_alone() {
        let flights = Flights::default();
        let Role::Lead(leader) = flights.join(&key()) else {
            panic!("first joiner leads")
        };
        let Role::Wait(waiter) = flights.join(&key()) else {
            panic!("second joiner waits")
        };
        drop(leader);
        let got = waiter.wait_until(soon(), &cache()).await;
        assert!(matches!(got, Some(FlightOutcome::NotShared)), "{got:?}");
        assert!(matches!(flights.join(&key()), Role::Lead(_)), "key freed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_behind_a_stalled_leader_gives_up_at_its_deadline() {
        let flights = Flights::default();
        let Role::Lead(_stalled) = flights.join(&key()) else {
            panic!("first joiner leads")
        };
        let Role::Wait(waiter) = flights.join(&key()) else {
            panic!("second joiner waits")
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        assert!(waiter.wait_until(deadline, &cache()).await.is_none());
        assert!(Instant::now() >= deadline);
    }
}
