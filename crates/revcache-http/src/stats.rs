//! What `GET /stats` answers: the tiers, the requests and, per route, its
//! traffic, event feed and upstream rate limits, as JSON. Every number is
//! read from the counters `/metrics` exposes (the dashboard shows these
//! and must agree with it); nothing here counts or keeps anything.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use revcache_core::DiskState;
use serde_json::{Map, Value, json};

use crate::metrics::{Outcome, RouteTotals};
use crate::proxy::Proxy;
use crate::route::Route;
use crate::stats_history::hit_ratio;

/// Seconds since the Unix epoch.
fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The disk tier's state, as `/readyz` and `/stats` report it.
pub fn disk_tier(state: DiskState) -> Value {
    match state {
        DiskState::Off => json!({"state": "off"}),
        DiskState::Enabled => json!({"state": "enabled"}),
        DiskState::Disabled { reason } => json!({"state": "disabled", "reason": reason}),
    }
}

pub fn stats(proxy: &Proxy) -> Value {
    let cache = proxy.cache();
    let s = cache.stats();
    let now = cache.clock().now();
    let totals = proxy.metrics().outcome_totals();
    let requests: Map<String, Value> = Outcome::ALL
        .iter()
        .zip(totals)
        .map(|(o, n)| (o.label().to_owned(), n.into()))
        .collect();
    let config = proxy.config();
    let counted = proxy.metrics().routes();
    let routes: Vec<Value> = config
        .router
        .routes()
        .iter()
        .map(|r| {
            let totals = counted.get(&r.name).map(|c| c.totals()).unwrap_or_default();
            route(r, &totals, now)
        })
        .collect();
    json!({
        "now": unix(now),
        "requests": requests,
        "hit_ratio": hit_ratio(&totals),
        "routes": routes,
        "l0": {"entries": s.identity_entries},
        "l1": {"keys": s.memory_keys, "bytes": s.memory_bytes,
               "capacity_bytes": s.memory_capacity, "evictions": s.memory_evictions},
        "tags": s.tags,
        "disk_tier": disk_tier(cache.disk_state()),
        "l2": s.disk.map(|d| json!({
            "entries": d.entries, "index_bytes": d.index_bytes, "row_bytes": d.row_bytes,
            "file_bytes": d.file_bytes,
            "files": d.files, "sweeps": d.sweeps, "swept_idle": d.swept_idle,
            "swept_over_budget": d.swept_over_budget, "orphans_removed": d.orphans_removed,
            "corrupt_dropped": d.corrupt_dropped, "open_seconds": d.load_time.as_secs_f64(),
            "errors": d.errors, "tombstones": d.tombstones, "disabled": d.disabled,
        })),
        "l3": proxy.shared().map(|t| {
            let s = t.stats();
            let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
            json!({
                "healthy": t.healthy(), "hits": n(&s.hits), "misses": n(&s.misses),
                "stored": n(&s.stored), "stores_outdated": n(&s.outdated),
                "errors": n(&s.errors), "malformed": n(&s.malformed),
                "published": n(&s.published), "applied": n(&s.applied),
                "lock_waits": n(&s.lock_waits), "gaps": n(&s.gaps),
                "read_bytes": n(&s.bytes_read), "written_bytes": n(&s.bytes_written),
                "ledger_published": n(&s.ledger_published),
                "ledger_applied": n(&s.ledger_applied),
                "stream_lag_seconds": n(&s.stream_lag_micros) as f64 / 1e6,
            })
        }),
    })
}

/// One route: its traffic (`saved`: client requests the upstream did not
/// see, which a background revalidation can make negative), its event
/// feed and the upstream rate limits its dialect tracks.
fn route(r: &Route, t: &RouteTotals, now: SystemTime) -> Value {
    let by_class: Map<String, Value> = t
        .by_class
        .iter()
        .map(|(class, n)| ((*class).to_owned(), (*n).into()))
        .collect();
    let saved = i128::from(t.requests) - i128::from(t.upstream);
    let feed = r.dialect.feed().map(|f| {
        let since = f.healthy_since(now);
        json!({
            "healthy": since.is_some(),
            "last_event": unix(f.last_event()),
            "healthy_since": since.map(unix),
            "trust_seconds": f.trust().map(|d| d.as_secs()),
            "trusted": since.is_some() && f.trust().is_some(),
        })
    });
    let rate_limits: Vec<Value> = r
        .dialect
        .rate_limits()
        .into_iter()
        .map(|row| {
            json!({
                "partition": row.partition, "resource": row.resource, "limit": row.limit,
                "remaining": row.remaining, "used": row.used, "reset": row.reset,
                "saved": row.saved,
            })
        })
        .collect();
    json!({
        "name": r.name,
        "dialect": r.dialect.name(),
        "requests": t.requests,
        "upstream": t.upstream,
        "saved": i64::try_from(saved).unwrap_or(if saved < 0 { i64::MIN } else { i64::MAX }),
        "not_modified": t.not_modified,
        "upstream_by_class": by_class,
        "feed": feed,
        "rate_limits": rate_limits,
    })
}
