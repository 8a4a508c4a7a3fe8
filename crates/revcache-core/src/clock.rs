//! The time source every freshness, trust and sweep decision reads.
//!
//! Production code never calls `SystemTime::now()` for a caching decision;
//! it asks the [`Clock`] its owner (the cache, the proxy, a feed) was built
//! with. A test or an embedding program builds an adjustable clock and moves
//! it forward with [`ClockHand::advance`] instead of sleeping, so an entry
//! becomes stale at once and the test stays fast and deterministic.
//!
//! An adjustable clock is the system clock plus an offset: time keeps
//! flowing (timeouts, the upstream's `Date`) and jumps when advanced. A
//! response fetched after an advance therefore looks as old as the advance
//! to RFC 9111's age calculation when its `Date` came from real time.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Reads the time. Cloning shares the source.
#[derive(Clone, Default)]
pub struct Clock {
    /// Nanoseconds added to the system time; `None` for the system clock,
    /// which then costs no more than `SystemTime::now()`.
    offset: Option<Arc<AtomicU64>>,
}

/// Moves an adjustable [`Clock`] (and every clone of it) forward.
#[derive(Clone)]
pub struct ClockHand {
    offset: Arc<AtomicU64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock::default()
    }

    /// A clock that runs with the system clock and jumps forward when its
    /// hand says so.
    pub fn adjustable() -> (Self, ClockHand) {
        let offset = Arc::new(AtomicU64::new(0));
        (
            Clock {
                offset: Some(offset.clone()),
            },
            ClockHand { offset },
        )
    }

    pub fn now(&self) -> SystemTime {
        let now = SystemTime::now();
        match &self.offset {
            None => now,
            Some(offset) => now + Duration::from_nanos(offset.load(Ordering::Acquire)),
        }
    }
}

impl ClockHand {
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .offset
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| {
                Some(o.saturating_add(nanos))
            });
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.offset {
            None => f.write_str("Clock::system"),
            Some(o) => write!(
                f,
                "Clock::adjustable(+{:?})",
                Duration::from_nanos(o.load(Ordering::Acquire))
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_advanced_clock_and_its_clones_jump_forward_together() {
        let (clock, hand) = Clock::adjustable();
        let copy = clock.clone();
        let before = SystemTime::now();
        hand.advance(Duration::from_secs(3600));
        assert!(clock.now() >= before + Duration::from_secs(3600));
        assert!(copy.now() >= before + Duration::from_secs(3600));
        assert!(Clock::system().now() < before + Duration::from_secs(3600));
    }
}
