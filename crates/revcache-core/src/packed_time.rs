//! [`EntryTiming`] and [`Freshness`] as an entry keeps them: whole
//! milliseconds or microseconds in plain integers, 48 bytes instead of 104.
//!
//! HTTP's own precision is the second, so nothing a client can observe
//! changes: times keep microseconds (Age arithmetic subtracts them),
//! durations milliseconds (every lifetime HTTP can express is a whole number
//! of tenths of seconds). Values beyond the integers' range saturate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::entry::{EntryTiming, Freshness};

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct PackedTiming {
    request_us: u64,
    response_us: u64,
    initial_age_us: u64,
}

impl From<EntryTiming> for PackedTiming {
    fn from(t: EntryTiming) -> Self {
        PackedTiming {
            request_us: micros_since_epoch(t.request_time),
            response_us: micros_since_epoch(t.response_time),
            initial_age_us: saturating_micros(t.initial_age),
        }
    }
}

impl From<PackedTiming> for EntryTiming {
    fn from(p: PackedTiming) -> Self {
        EntryTiming {
            request_time: UNIX_EPOCH + Duration::from_micros(p.request_us),
            response_time: UNIX_EPOCH + Duration::from_micros(p.response_us),
            initial_age: Duration::from_micros(p.initial_age_us),
        }
    }
}

/// `None` of an optional window.
const NO_WINDOW: u32 = u32::MAX;

/// The RFC 5861 windows are 32-bit milliseconds: a window longer than 49
/// days is kept as 49 days, which only serves stale less. That saves the 8
/// bytes that put an entry in the allocator's next smaller size class.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct PackedFreshness {
    lifetime_ms: u64,
    stale_while_revalidate_ms: u32,
    stale_if_error_ms: u32,
    no_cache: bool,
    must_revalidate: bool,
    shareable: bool,
}

impl From<&Freshness> for PackedFreshness {
    fn from(f: &Freshness) -> Self {
        let window = |w: Option<Duration>| {
            w.map_or(NO_WINDOW, |d| {
                u32::try_from(d.as_millis()).map_or(NO_WINDOW - 1, |ms| ms.min(NO_WINDOW - 1))
            })
        };
        PackedFreshness {
            lifetime_ms: saturating_millis(f.lifetime),
            stale_while_revalidate_ms: window(f.stale_while_revalidate),
            stale_if_error_ms: window(f.stale_if_error),
            no_cache: f.no_cache,
            must_revalidate: f.must_revalidate,
            shareable: f.shareable,
        }
    }
}

impl From<PackedFreshness> for Freshness {
    fn from(p: PackedFreshness) -> Self {
        let window = |ms: u32| (ms != NO_WINDOW).then(|| Duration::from_millis(ms.into()));
        Freshness {
            lifetime: Duration::from_millis(p.lifetime_ms),
            no_cache: p.no_cache,
            must_revalidate: p.must_revalidate,
            stale_while_revalidate: window(p.stale_while_revalidate_ms),
            stale_if_error: window(p.stale_if_error_ms),
            shareable: p.shareable,
        }
    }
}

fn micros_since_epoch(t: SystemTime) -> u64 {
    saturating_micros(t.duration_since(UNIX_EPOCH).unwrap_or_default())
}

fn saturating_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn saturating_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_and_freshness_come_back_at_http_precision() {
        let t = EntryTiming {
            request_time: UNIX_EPOCH + Duration::new(1_790_000_000, 123_456_789),
            response_time: UNIX_EPOCH + Duration::new(1_790_000_001, 5),
            initial_age: Duration::from_secs(86_400 * 400) + Duration::from_micros(7),
        };
        let back = EntryTiming::from(PackedTiming::from(t));
        assert_eq!(
            back.request_time,
            UNIX_EPOCH + Duration::new(1_790_000_000, 123_456_000)
        );
        assert_eq!(
            back.response_time,
            UNIX_EPOCH + Duration::from_secs(1_790_000_001)
        );
        assert_eq!(back.initial_age, t.initial_age);

        let f = Freshness {
            lifetime: Duration::from_millis(360_100),
            no_cache: false,
            must_revalidate: true,
            stale_while_revalidate: Some(Duration::ZERO),
            stale_if_error: None,
            shareable: true,
        };
        assert_eq!(Freshness::from(PackedFreshness::from(&f)), f);
        let forever = Freshness {
            lifetime: Duration::MAX,
            stale_if_error: Some(Duration::MAX),
            ..Freshness::default()
        };
        let back = Freshness::from(PackedFreshness::from(&forever));
        assert!(back.lifetime > Duration::from_secs(1 << 40));
        let forty_nine_days = Duration::from_millis(u64::from(u32::MAX - 1));
        assert_eq!(back.stale_if_error, Some(forty_nine_days));
        assert!(forty_nine_days > Duration::from_secs(49 * 86_400));
    }
}
