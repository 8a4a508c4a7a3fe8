//! GitHub's rate limits, per partition: what every answer's
//! `x-ratelimit-*` headers say, and when a partition must hold back.
//!
//! - Below `reserve` remaining units of `core`, stored entries answer
//!   instead of revalidating until the reset (misses still go upstream:
//!   nothing else can answer them).
//! - At 0 remaining, or after a secondary limit (403/429 with
//!   `Retry-After`), nothing of the partition goes upstream from the cache
//!   until the reset or the retry time: stored entries answer, misses get a
//!   local 429 with `Retry-After`.
//!
//! Partitions are the keyed hashes of credentials (or an installation's);
//! `/metrics` shows them as their hash prefix.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use revcache_core::Partition;

use crate::dialect::{Hold, RateLimitRow};

/// Partitions tracked at most; past it, those whose limits have reset go.
const PARTITIONS: usize = 16_384;

#[derive(Clone, Debug, Default)]
struct Bucket {
    limit: u64,
    remaining: u64,
    used: u64,
    /// Seconds since the Unix epoch.
    reset: u64,
}

#[derive(Default)]
struct Caller {
    buckets: HashMap<String, Bucket>,
    /// No request until then (a secondary limit's `Retry-After`, or an
    /// exhausted primary limit's reset).
    closed_until: Option<SystemTime>,
    saved: u64,
}

pub struct RateLimits {
    reserve: u64,
    callers: Mutex<HashMap<Option<Partition>, Caller>>,
}

fn number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Waits an upstream may ask for at most: a `Retry-After` or reset
/// further out is taken as this far (and cannot overflow the clock).
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

fn epoch(secs: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .unwrap_or(UNIX_EPOCH)
}

/// `now + secs`, at most `MAX_WAIT` ahead.
fn after(now: SystemTime, secs: u64) -> SystemTime {
    now + Duration::from_secs(secs).min(MAX_WAIT)
}

impl RateLimits {
    pub fn new(reserve: u64) -> Self {
        RateLimits {
            reserve,
            callers: Mutex::default(),
        }
    }

    /// Records what an upstream answer says of `partition`'s limits.
    pub fn answered(
        &self,
        partition: Option<Partition>,
        status: StatusCode,
        headers: &HeaderMap,
        now: SystemTime,
    ) {
        // A token GitHub did not accept is nobody's limit (and a flood of
        // made-up tokens must not fill the table).
        if status == StatusCode::UNAUTHORIZED {
            return;
        }
        let remaining = number(headers, "x-ratelimit-remaining");
        let retry_after = number(headers, "retry-after");
        let limited = matches!(
            status,
            StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
        );
        if remaining.is_none() && !(limited && retry_after.is_some()) {
            return;
        }
        let mut callers = self.callers.lock();
        if callers.len() >= PARTITIONS && !callers.contains_key(&partition) {
            // Full: one caller goes, so the table never grows and a new
            // caller is always tracked (an evicted one is tracked again
            // from its next answer).
            if let Some(victim) = callers.keys().next().copied() {
                callers.remove(&victim);
            }
        }
        let caller = callers.entry(partition).or_default();
        let reset = number(headers, "x-ratelimit-reset");
        if let Some(remaining) = remaining {
            let resource = headers
                .get("x-ratelimit-resource")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("core")
                .to_owned();
            let bucket = caller.buckets.entry(resource).or_default();
            bucket.remaining = remaining;
            bucket.limit = number(headers, "x-ratelimit-limit").unwrap_or(bucket.limit);
            bucket.used = number(headers, "x-ratelimit-used").unwrap_or(bucket.used);
            bucket.reset = reset.unwrap_or(bucket.reset);
        }
        let core = headers
            .get("x-ratelimit-resource")
            .is_none_or(|v| v.as_bytes() == b"core");
        if limited {
            // A secondary limit (any resource) says when to come back; an
            // exhausted primary limit of `core`, when it resets (search or
            // GraphQL running out holds back nothing else).
            let until = match (retry_after, remaining.filter(|_| core), reset) {
                (Some(secs), _, _) => Some(after(now, secs)),
                (None, Some(0), Some(reset)) => {
                    Some(epoch(reset).min(after(now, MAX_WAIT.as_secs())))
                }
                _ => None,
            };
            if let Some(until) = until {
                caller.closed_until = Some(caller.closed_until.map_or(until, |t| t.max(until)));
            }
        }
    }

    /// Whether `partition` must hold back at `now`.
    pub fn hold(&self, partition: Option<Partition>, now: SystemTime) -> Option<Hold> {
        let callers = self.callers.lock();
        let caller = callers.get(&partition)?;
        if let Some(until) = caller.closed_until
            && until > now
        {
            return Some(Hold {
                until,
                closed: true,
            });
        }
        let core = caller.buckets.get("core")?;
        let reset = epoch(core.reset).min(after(now, MAX_WAIT.as_secs()));
        (reset > now && core.remaining <= self.reserve).then_some(Hold {
            until: reset,
            closed: core.remaining == 0,
        })
    }

    pub fn saved(&self, partition: Option<Partition>) {
        if let Some(c) = self.callers.lock().get_mut(&partition) {
            c.saved += 1;
        }
    }

    pub fn rows(&self) -> Vec<RateLimitRow> {
        let callers = self.callers.lock();
        let mut rows: Vec<RateLimitRow> = callers
            .iter()
            .flat_map(|(p, c)| {
                let partition = p.map_or_else(|| "anonymous".to_owned(), |p| p.to_string());
                c.buckets.iter().map(move |(resource, b)| RateLimitRow {
                    partition: partition.clone(),
                    resource: resource.clone(),
                    limit: b.limit,
                    remaining: b.remaining,
                    used: b.used,
                    reset: b.reset,
                    saved: c.saved,
                })
            })
            .collect();
        rows.sort_by(|a, b| (&a.partition, &a.resource).cmp(&(&b.partition, &b.resource)));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn below_the_reserve_a_partition_holds_until_the_reset() {
        let limits = RateLimits::new(100);
        let now = epoch(1_000);
        let p = Some(Partition::Credential([1; 16]));
        limits.answered(
            p,
            StatusCode::OK,
            &headers(&[
                ("x-ratelimit-limit", "5000"),
                ("x-ratelimit-remaining", "4000"),
                ("x-ratelimit-reset", "2000"),
            ]),
            now,
        );
        assert_eq!(limits.hold(p, now), None);
        limits.answered(
            p,
            StatusCode::OK,
            &headers(&[
                ("x-ratelimit-remaining", "99"),
                ("x-ratelimit-reset", "2000"),
            ]),
            now,
        );
        assert_eq!(
            limits.hold(p, now),
            Some(Hold {
                until: epoch(2000),
                closed: false
            })
        );
        assert_eq!(limits.hold(p, epoch(2001)), None, "reset");
        assert_eq!(
            limits.hold(None, now),
            None,
            "other partitions are not held"
        );
    }

    #[test]
    fn a_secondary_limit_closes_the_partition_for_its_retry_after() {
        let limits = RateLimits::new(0);
        let now = epoch(1_000);
        limits.answered(
            None,
            StatusCode::FORBIDDEN,
            &headers(&[("retry-after", "60"), ("x-ratelimit-remaining", "3000")]),
            now,
        );
        assert_eq!(
            limits.hold(None, now),
            Some(Hold {
                until: epoch(1060),
                closed: true
            })
        );
        assert_eq!(limits.hold(None, epoch(1061)), None);
    }

    #[test]
    fn absurd_waits_are_bounded_and_never_overflow_the_clock() {
        let limits = RateLimits::new(10);
        let now = epoch(1_000);
        limits.answered(
            None,
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[
                ("retry-after", "18446744073709551615"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "18446744073709551615"),
            ]),
            now,
        );
        let hold = limits.hold(None, now).unwrap();
        assert!(hold.closed);
        assert_eq!(hold.until, now + MAX_WAIT);
    }

    #[test]
    fn refused_tokens_and_other_resources_running_out_hold_nothing_back() {
        let limits = RateLimits::new(10);
        let now = epoch(1_000);
        let p = Some(Partition::Credential([2; 16]));
        limits.answered(
            p,
            StatusCode::UNAUTHORIZED,
            &headers(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "2000"),
            ]),
            now,
        );
        assert!(limits.rows().is_empty(), "a refused token is not tracked");
        limits.answered(
            p,
            StatusCode::FORBIDDEN,
            &headers(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "2000"),
                ("x-ratelimit-resource", "search"),
            ]),
            now,
        );
        assert_eq!(limits.hold(p, now), None, "search ran out, core did not");
    }

    #[test]
    fn rows_show_partitions_by_hash_and_what_was_saved() {
        let limits = RateLimits::new(0);
        let p = Some(Partition::Credential([0xab; 16]));
        limits.answered(
            p,
            StatusCode::OK,
            &headers(&[
                ("x-ratelimit-limit", "5000"),
                ("x-ratelimit-remaining", "4999"),
                ("x-ratelimit-used", "1"),
                ("x-ratelimit-reset", "2000"),
                ("x-ratelimit-resource", "core"),
            ]),
            epoch(1000),
        );
        limits.saved(p);
        let rows = limits.rows();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].partition, "abababababababab");
        assert_eq!(
            (rows[0].remaining, rows[0].used, rows[0].saved),
            (4999, 1, 1)
        );
    }
}
