//! The dashboard's time series: the last 15 minutes of the counters
//! `/metrics` exposes, one sample a second, in a ring kept in memory and
//! served as JSON on `/stats/history`.
//!
//! It owns the ring and the task that samples into it. It counts nothing
//! itself: a [`Reading`] reads the counters the proxy and the cache keep,
//! and a sample is the difference of two readings. It keeps nothing across
//! restarts, and the request path never touches it (its lock is taken once
//! a second by the sampler and by `/stats/history`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;

use crate::metrics::Outcome;
use crate::proxy::Proxy;

/// Samples kept: 15 minutes of one a second.
pub const CAPACITY: usize = 900;
/// How often the sampler reads the counters.
pub const INTERVAL: Duration = Duration::from_secs(1);

const OUTCOMES: usize = Outcome::ALL.len();

/// The counters at one instant: totals since start-up, and tier sizes.
#[derive(Clone, Debug)]
pub struct Reading {
    pub time: SystemTime,
    /// Client requests by outcome, in [`Outcome::ALL`] order.
    pub requests: [u64; OUTCOMES],
    /// Upstream requests by endpoint class, summed over routes.
    pub upstream: Vec<(&'static str, u64)>,
    /// Upstream answers 304 Not Modified.
    pub not_modified: u64,
    /// Entries the memory tier evicted.
    pub evictions: u64,
    /// Entries the disk tier's sweeper removed.
    pub swept: u64,
    pub l1_keys: u64,
    pub l1_bytes: u64,
    /// `None` without a disk tier.
    pub l2_entries: Option<u64>,
    pub l2_bytes: Option<u64>,
}

impl Reading {
    /// What `proxy`'s counters say now.
    pub fn of(proxy: &Proxy) -> Reading {
        let stats = proxy.cache().stats();
        let mut upstream: Vec<(&'static str, u64)> = Vec::new();
        let mut not_modified = 0;
        for counters in proxy.metrics().routes().values() {
            let totals = counters.totals();
            not_modified += totals.not_modified;
            for (class, n) in totals.by_class {
                match upstream.iter_mut().find(|(c, _)| *c == class) {
                    Some((_, sum)) => *sum += n,
                    None => upstream.push((class, n)),
                }
            }
        }
        Reading {
            time: proxy.cache().clock().now(),
            requests: proxy.metrics().outcome_totals(),
            upstream,
            not_modified,
            evictions: stats.memory_evictions,
            swept: stats
                .disk
                .as_ref()
                .map_or(0, |d| d.swept_idle + d.swept_over_budget),
            l1_keys: stats.memory_keys as u64,
            l1_bytes: stats.memory_bytes,
            l2_entries: stats.disk.as_ref().map(|d| d.entries),
            l2_bytes: stats.disk.as_ref().map(|d| d.bytes()),
        }
    }
}

/// One second: what was counted since the reading before (deltas), and
/// the tier sizes at its end.
#[derive(Clone, Debug, PartialEq)]
struct Sample {
    /// Seconds since the Unix epoch.
    time: f64,
    requests: [u64; OUTCOMES],
    upstream: Vec<(&'static str, u64)>,
    not_modified: u64,
    evictions: u64,
    swept: u64,
    l1_keys: u64,
    l1_bytes: u64,
    l2_entries: Option<u64>,
    l2_bytes: Option<u64>,
}

impl Sample {
    /// From `before` to `now`. A counter that went down (a route a
    /// reload removed no longer adds to its class) counts as nothing.
    fn between(before: &Reading, now: &Reading) -> Sample {
        let mut requests = [0; OUTCOMES];
        for (i, r) in requests.iter_mut().enumerate() {
            *r = now.requests[i].saturating_sub(before.requests[i]);
        }
        let upstream = now
            .upstream
            .iter()
            .map(|&(class, n)| {
                let was = before
                    .upstream
                    .iter()
                    .find(|(c, _)| *c == class)
                    .map_or(0, |(_, n)| *n);
                (class, n.saturating_sub(was))
            })
            .collect();
        Sample {
            time: now
                .time
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            requests,
            upstream,
            not_modified: now.not_modified.saturating_sub(before.not_modified),
            evictions: now.evictions.saturating_sub(before.evictions),
            swept: now.swept.saturating_sub(before.swept),
            l1_keys: now.l1_keys,
            l1_bytes: now.l1_bytes,
            l2_entries: now.l2_entries,
            l2_bytes: now.l2_bytes,
        }
    }

    /// Requests served from the cache, of all, in this second; `None`
    /// without requests.
    fn hit_ratio(&self) -> Option<f64> {
        hit_ratio(&self.requests)
    }
}

/// Requests served from the cache (hits, collapsed, stale, 304
/// revalidations) of all client requests; `None` without requests.
pub fn hit_ratio(requests: &[u64; OUTCOMES]) -> Option<f64> {
    let all: u64 = requests.iter().sum();
    let cached: u64 = Outcome::ALL
        .iter()
        .zip(requests)
        .filter(|(o, _)| o.served_from_cache())
        .map(|(_, n)| n)
        .sum();
    (all > 0).then(|| cached as f64 / all as f64)
}

struct Ring {
    samples: VecDeque<Sample>,
    /// The reading the next sample is taken from.
    last: Option<Reading>,
    /// Sequence number of the next sample; the oldest kept is
    /// `next - samples.len()`.
    next: u64,
}

/// The ring of the last [`CAPACITY`] samples.
pub struct StatsHistory {
    ring: Mutex<Ring>,
}

impl Default for StatsHistory {
    fn default() -> Self {
        StatsHistory {
            ring: Mutex::new(Ring {
                samples: VecDeque::with_capacity(CAPACITY),
                last: None,
                next: 0,
            }),
        }
    }
}

impl StatsHistory {
    /// Adds the sample from the previous reading to `reading` (the first
    /// reading only sets where the next sample starts), dropping the
    /// oldest once [`CAPACITY`] are kept.
    pub fn record(&self, reading: Reading) {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(before) = &ring.last {
            let sample = Sample::between(before, &reading);
            if ring.samples.len() == CAPACITY {
                ring.samples.pop_front();
            }
            ring.samples.push_back(sample);
            ring.next += 1;
        }
        ring.last = Some(reading);
    }

    /// The samples as columns (what a chart reads), oldest first: those
    /// numbered `since` and later when the ring still holds `since`
    /// (`first` then equals it), else all. `next` is the `since` of the
    /// next call.
    pub fn json(&self, since: Option<u64>) -> Value {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let oldest = ring.next - ring.samples.len() as u64;
        let first = since
            .filter(|s| (oldest..=ring.next).contains(s))
            .unwrap_or(oldest);
        let skip = usize::try_from(first - oldest).unwrap_or(usize::MAX);
        let samples: Vec<&Sample> = ring.samples.iter().skip(skip).collect();
        let column = |f: &dyn Fn(&Sample) -> Value| -> Value {
            samples.iter().map(|s| f(s)).collect::<Vec<_>>().into()
        };
        let mut requests = Map::new();
        for (i, outcome) in Outcome::ALL.iter().enumerate() {
            requests.insert(outcome.label().into(), column(&|s| s.requests[i].into()));
        }
        let mut classes: Vec<&'static str> = Vec::new();
        for s in &samples {
            for (class, _) in &s.upstream {
                if !classes.contains(class) {
                    classes.push(class);
                }
            }
        }
        let mut upstream = Map::new();
        for class in classes {
            upstream.insert(
                class.into(),
                column(&|s| {
                    s.upstream
                        .iter()
                        .find(|(c, _)| *c == class)
                        .map_or(0, |(_, n)| *n)
                        .into()
                }),
            );
        }
        json!({
            "interval_seconds": INTERVAL.as_secs(),
            "capacity": CAPACITY,
            "first": first,
            "next": ring.next,
            "time": column(&|s| s.time.into()),
            "requests": requests,
            "hit_ratio": column(&|s| s.hit_ratio().into()),
            "upstream": upstream,
            "not_modified": column(&|s| s.not_modified.into()),
            "evictions": column(&|s| s.evictions.into()),
            "swept": column(&|s| s.swept.into()),
            "l1_keys": column(&|s| s.l1_keys.into()),
            "l1_bytes": column(&|s| s.l1_bytes.into()),
            "l2_entries": column(&|s| s.l2_entries.into()),
            "l2_bytes": column(&|s| s.l2_bytes.into()),
        })
    }

    /// Samples `proxy` every [`INTERVAL`] until the task is aborted.
    pub fn spawn_sampler(self: &Arc<Self>, proxy: Arc<Proxy>) -> JoinHandle<()> {
        let history = self.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                history.record(Reading::of(&proxy));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(second: u64, hits: u64, misses: u64, classes: &[(&'static str, u64)]) -> Reading {
        let mut requests = [0; OUTCOMES];
        requests[at(Outcome::Hit)] = hits;
        requests[at(Outcome::Miss)] = misses;
        Reading {
            time: UNIX_EPOCH + Duration::from_secs(second),
            requests,
            upstream: classes.to_vec(),
            not_modified: second / 2,
            evictions: second,
            swept: 0,
            l1_keys: second * 10,
            l1_bytes: second * 100,
            l2_entries: None,
            l2_bytes: None,
        }
    }

    fn at(outcome: Outcome) -> usize {
        Outcome::ALL.iter().position(|o| *o == outcome).unwrap()
    }

    fn numbers(v: &Value) -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .collect()
    }

    #[test]
    fn samples_are_per_second_deltas_and_sizes_as_read() {
        let history = StatsHistory::default();
        history.record(reading(100, 5, 5, &[("change", 5)]));
        history.record(reading(101, 8, 6, &[("change", 6)]));
        history.record(reading(102, 8, 6, &[("change", 6), ("query", 2)]));
        let j = history.json(None);
        assert_eq!(j["first"], 0);
        assert_eq!(j["next"], 2);
        assert_eq!(j["time"], json!([101.0, 102.0]));
        assert_eq!(numbers(&j["requests"]["hit"]), [3, 0]);
        assert_eq!(numbers(&j["requests"]["miss"]), [1, 0]);
        assert_eq!(numbers(&j["requests"]["error"]), [0, 0]);
        assert_eq!(j["hit_ratio"], json!([0.75, null]));
        // A class first counted later reads 0 before.
        assert_eq!(numbers(&j["upstream"]["change"]), [1, 0]);
        assert_eq!(numbers(&j["upstream"]["query"]), [0, 2]);
        assert_eq!(numbers(&j["not_modified"]), [0, 1]);
        assert_eq!(numbers(&j["evictions"]), [1, 1]);
        assert_eq!(numbers(&j["l1_keys"]), [1010, 1020]);
        assert_eq!(j["l2_entries"], json!([null, null]));
        assert_eq!(j["capacity"], 900);
        assert_eq!(j["interval_seconds"], 1);
    }

    #[test]
    fn a_counter_that_went_down_counts_as_nothing() {
        let history = StatsHistory::default();
        history.record(reading(1, 10, 0, &[("body", 7), ("write", 3)]));
        // A reload removed the route that counted `write`.
        history.record(reading(2, 4, 0, &[("body", 9)]));
        let j = history.json(None);
        assert_eq!(numbers(&j["requests"]["hit"]), [0]);
        assert_eq!(numbers(&j["upstream"]["body"]), [2]);
        assert!(j["upstream"].get("write").is_none());
    }

    #[test]
    fn the_ring_keeps_the_last_900_samples() {
        let history = StatsHistory::default();
        for second in 0..=1000 {
            history.record(reading(second, second * 2, 0, &[]));
        }
        let j = history.json(None);
        assert_eq!(j["time"].as_array().unwrap().len(), CAPACITY);
        assert_eq!(j["first"], 100);
        assert_eq!(j["next"], 1000);
        assert_eq!(j["time"][0], 101.0);
        assert_eq!(j["time"][CAPACITY - 1], 1000.0);
        assert!(numbers(&j["requests"]["hit"]).iter().all(|n| *n == 2));
    }

    #[test]
    fn since_returns_only_newer_samples_or_all_when_it_is_not_held() {
        let history = StatsHistory::default();
        for second in 0..=1000 {
            history.record(reading(second, second, 0, &[]));
        }
        let newer = history.json(Some(998));
        assert_eq!(newer["first"], 998);
        assert_eq!(newer["time"], json!([999.0, 1000.0]));
        let none = history.json(Some(1000));
        assert_eq!(none["time"], json!([]));
        assert_eq!(none["next"], 1000);
        // Dropped from the ring, or from another process: everything.
        for since in [5, 5000] {
            let all = history.json(Some(since));
            assert_eq!(all["first"], 100);
            assert_eq!(all["time"].as_array().unwrap().len(), CAPACITY);
        }
    }

    #[test]
    fn one_reading_makes_no_sample() {
        let history = StatsHistory::default();
        assert_eq!(history.json(None)["time"], json!([]));
        history.record(reading(1, 1, 1, &[]));
        let j = history.json(None);
        assert_eq!(j["time"], json!([]));
        assert_eq!(j["next"], 0);
    }

    #[test]
    fn the_hit_ratio_counts_what_the_cache_served() {
        let mut requests = [0; OUTCOMES];
        assert_eq!(hit_ratio(&requests), None);
        requests[at(Outcome::Hit)] = 2;
        requests[at(Outcome::Revalidated)] = 1; // served after a 304
        requests[at(Outcome::Collapsed)] = 1;
        requests[at(Outcome::Miss)] = 3;
        requests[at(Outcome::Bypass)] = 1;
        assert_eq!(hit_ratio(&requests), Some(0.5));
    }
}
