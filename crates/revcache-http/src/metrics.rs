//! Prometheus metrics: what operators read on `/metrics`.
//!
//! Counters touched on the hit path are resolved once at start-up (a
//! `Counter` is an `Arc<AtomicU64>`), so counting a hit is one atomic add.
//! Tier sizes are read from the cache at scrape time.
//!
//! Label values never come from a peer unchecked: event types and tag kinds
//! are counted by name only when known (others as `other`), so an event
//! sender cannot grow the exposition without bound, and every value that is
//! not a fixed string (route names) is escaped, since the text encoder
//! writes label values as given.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use revcache_core::Cache;

use revcache_shared::SharedTier;

use crate::access_log::AccessLogCounters;
use crate::dialect::RateLimitRow;
use crate::policy::NotStored;
use crate::proxy::ActiveConfig;
use crate::proxy::cache_status::Fwd;
use crate::proxy::flight::Flights;

/// How a client request ended, for `revcache_requests_total{outcome}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    Collapsed,
    StaleWhileRevalidate,
    StaleIfError,
    RateLimited,
    Miss,
    Revalidated,
    Refetched,
    Bypass,
    Method,
    Rejected,
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 12] = [
        Outcome::Hit,
        Outcome::Collapsed,
        Outcome::StaleWhileRevalidate,
        Outcome::StaleIfError,
        Outcome::RateLimited,
        Outcome::Miss,
        Outcome::Revalidated,
        Outcome::Refetched,
        Outcome::Bypass,
        Outcome::Method,
        Outcome::Rejected,
        Outcome::Error,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Collapsed => "collapsed",
            Outcome::StaleWhileRevalidate => "stale_while_revalidate",
            Outcome::StaleIfError => "stale_if_error",
            Outcome::RateLimited => "rate_limited",
            Outcome::Miss => "miss",
            Outcome::Revalidated => "revalidated",
            Outcome::Refetched => "refetched",
            Outcome::Bypass => "bypass",
            Outcome::Method => "method",
            Outcome::Rejected => "rejected",
            Outcome::Error => "error",
        }
    }

    pub fn served_from_cache(self) -> bool {
        matches!(
            self,
            Outcome::Hit
                | Outcome::Collapsed
                | Outcome::StaleWhileRevalidate
                | Outcome::StaleIfError
                | Outcome::RateLimited
                | Outcome::Revalidated
        )
    }
}

/// Why revcache asked the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamReason {
    Miss,
    Revalidate,
    Background,
    Bypass,
    Method,
}

impl UpstreamReason {
    fn label(self) -> &'static str {
        match self {
            UpstreamReason::Miss => "miss",
            UpstreamReason::Revalidate => "revalidate",
            UpstreamReason::Background => "background_revalidate",
            UpstreamReason::Bypass => "bypass",
            UpstreamReason::Method => "method",
        }
    }
}

/// Where an invalidation came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidationSource {
    Admin,
    Write,
    Event,
    /// Published by another node of the shared tier.
    Shared,
}

impl InvalidationSource {
    fn label(self) -> &'static str {
        match self {
            InvalidationSource::Admin => "admin",
            InvalidationSource::Write => "write",
            InvalidationSource::Event => "event",
            InvalidationSource::Shared => "shared",
        }
    }
}

/// Event types counted by name in `revcache_events_total{type}`: Gerrit's
/// stream-events and webhook types, the webdav dialect's notice, and
/// GitHub's webhook events.
const EVENT_TYPES: &[&str] = &[
    "check_run",
    "check_suite",
    "create",
    "delete",
    "duplicate",
    "installation",
    "installation_repositories",
    "issue_comment",
    "issues",
    "label",
    "member",
    "ping",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "push",
    "repository",
    "status",
    "team",
    "workflow_job",
    "workflow_run",
    "assignee-changed",
    "change-abandoned",
    "change-deleted",
    "change-merged",
    "change-restored",
    "comment-added",
    "dropped-output",
    "external-change",
    "hashtags-changed",
    "private-state-changed",
    "patchset-created",
    "project-created",
    "project-head-updated",
    "ref-replicated",
    "ref-replication-done",
    "ref-replication-scheduled",
    "ref-updated",
    "reviewer-added",
    "reviewer-deleted",
    "topic-changed",
    "vote-deleted",
    "wip-state-changed",
];

/// Tag kinds (the part before the first `:`) the dialects make.
const TAG_KINDS: &[&str] = &[
    "check-run",
    "check-suite",
    "checks",
    "global",
    "list",
    "num",
    "ref",
    "refs",
    "repo",
    "run",
    "sha",
    "branchq",
    "chain",
    "chainid",
    "change",
    "changeid",
    "dav",
    "dependson",
    "gerrit",
    "message",
    "project",
    "projectq",
    "projectq-any",
    "related",
    "rev",
    "topic",
    "visibility",
    "visibilityid",
];

/// `value` when it is one of `known`, else `other`.
fn known(value: &str, known: &[&'static str]) -> &'static str {
    known
        .iter()
        .find(|k| **k == value)
        .copied()
        .unwrap_or("other")
}

/// A label value as the text exposition needs it: `\`, `"` and line feeds
/// escaped.
pub fn label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

type Labels1 = [(&'static str, &'static str); 1];
type RouteLabels1 = [(&'static str, String); 1];
type RouteLabels2 = [(&'static str, String); 2];
type RouteLabels3 = [(&'static str, String); 3];

pub struct Metrics {
    registry: Registry,
    outcomes: Vec<Counter>,
    forwarded: Vec<Counter>,
    not_stored: Vec<Counter>,
    upstream: Family<[(&'static str, String); 2], Counter>,
    upstream_errors: Family<[(&'static str, String); 1], Counter>,
    bytes_cache: Counter,
    bytes_upstream: Counter,
    invalidations: Family<Labels1, Counter>,
    invalidated_entries: Family<Labels1, Counter>,
    route_requests: Family<RouteLabels1, Counter>,
    route_upstream: Family<RouteLabels3, Counter>,
    /// Each route's counters by name, kept across reloads (a rebuilt
    /// route counts on where the old one stopped). Grows only when a
    /// route first counts.
    routes: ArcSwap<HashMap<String, Arc<RouteCounters>>>,
    events: Family<RouteLabels2, Counter>,
    event_errors: Family<[(&'static str, String); 1], Counter>,
    tag_invalidations: Family<RouteLabels2, Counter>,
    dialect_hits: Family<RouteLabels2, Counter>,
    open_connections: Family<Labels1, Gauge>,
    accept_errors: Family<Labels1, Counter>,
    connection_timeouts: Family<[(&'static str, &'static str); 2], Counter>,
    interim_responses: Family<[(&'static str, &'static str); 2], Counter>,
    reloads: Family<Labels1, Counter>,
}

/// One route's hits a dialect allowed without revalidation, by reason.
#[derive(Clone, Debug)]
pub struct DialectHits {
    trusted: Counter,
    ledger: Counter,
    rate_limited: Counter,
    other: Counter,
}

impl DialectHits {
    pub fn count(&self, reason: &str) {
        match reason {
            "trusted" => self.trusted.inc(),
            "ledger" => self.ledger.inc(),
            "rate-limited" => self.rate_limited.inc(),
            _ => self.other.inc(),
        };
    }
}

/// One route's traffic, as `/metrics` exposes it: client requests the
/// route admitted (`revcache_route_requests_total`) and requests it sent
/// upstream by endpoint class and status
/// (`revcache_route_upstream_requests_total`). The dashboard reads these
/// same counters, so its numbers are the exposition's.
#[derive(Debug)]
pub struct RouteCounters {
    requests: Counter,
    family: Family<RouteLabels3, Counter>,
    /// The route name as a label value.
    label: String,
    /// The series this route has counted, resolved once each: counting
    /// one allocates nothing and takes no lock.
    upstream: ArcSwap<Vec<UpstreamCount>>,
}

#[derive(Clone, Debug)]
struct UpstreamCount {
    class: &'static str,
    status: u16,
    counter: Counter,
}

/// What a route has counted so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTotals {
    pub requests: u64,
    pub upstream: u64,
    /// Upstream answers 304 Not Modified.
    pub not_modified: u64,
    /// Upstream requests by endpoint class, in the order first counted.
    pub by_class: Vec<(&'static str, u64)>,
}

impl RouteCounters {
    /// A client request the route admitted.
    pub fn request(&self) {
        self.requests.inc();
    }

    /// A request sent upstream, by the dialect's endpoint class and the
    /// upstream's status.
    pub fn upstream(&self, class: &'static str, status: u16) {
        let find = |counts: &[UpstreamCount]| {
            counts
                .iter()
                .find(|c| c.class == class && c.status == status)
                .map(|c| c.counter.clone())
        };
        if let Some(counter) = find(&self.upstream.load()) {
            counter.inc();
            return;
        }
        let counter = self.family.get_or_create_owned(&[
            ("route", self.label.clone()),
            ("class", class.to_owned()),
            ("status", status.to_string()),
        ]);
        // The family hands every caller the same counter for these labels.
        self.upstream.rcu(|counts| {
            let mut counts = Vec::clone(counts);
            if find(&counts).is_none() {
                counts.push(UpstreamCount {
                    class,
                    status,
                    counter: counter.clone(),
                });
            }
            counts
        });
        counter.inc();
    }

    pub fn totals(&self) -> RouteTotals {
        let mut totals = RouteTotals {
            requests: self.requests.get(),
            ..RouteTotals::default()
        };
        for c in self.upstream.load().iter() {
            let n = c.counter.get();
            totals.upstream += n;
            if c.status == 304 {
                totals.not_modified += n;
            }
            match totals
                .by_class
                .iter_mut()
                .find(|(class, _)| *class == c.class)
            {
                Some((_, sum)) => *sum += n,
                None => totals.by_class.push((c.class, n)),
            }
        }
        totals
    }
}

/// The counters of one listener (`proxy` or `admin`).
#[derive(Clone, Debug)]
pub struct ListenerMetrics {
    pub open: Gauge,
    pub accept_errors: Counter,
    pub header_timeouts: Counter,
    pub idle_timeouts: Counter,
    /// Interim (1xx) responses relayed to clients, and given up.
    pub interim_relayed: Counter,
    pub interim_dropped: Counter,
}

impl Metrics {
    pub fn new(
        cache: Arc<Cache>,
        flights: Flights,
        active: Arc<ArcSwap<ActiveConfig>>,
        shared: Option<Arc<SharedTier>>,
        access_log: AccessLogCounters,
    ) -> Self {
        let mut registry = Registry::with_prefix("revcache");
        registry.register(
            "access_log_dropped",
            "Access-log lines dropped because the writer fell behind",
            access_log.dropped,
        );
        registry.register(
            "access_log_write_errors",
            "Access-log writes and flushes the destination refused",
            access_log.write_errors,
        );
        let requests = Family::<Labels1, Counter>::default();
        registry.register("requests", "Client requests by outcome", requests.clone());
        let outcomes = Outcome::ALL
            .iter()
            .map(|o| requests.get_or_create_owned(&[("outcome", o.label())]))
            .collect();
        let forwards = Family::<Labels1, Counter>::default();
        registry.register(
            "forwarded",
            "Requests that went upstream, by RFC 9211 fwd reason",
            forwards.clone(),
        );
        let forwarded = Fwd::ALL
            .iter()
            .map(|f| forwards.get_or_create_owned(&[("fwd", f.as_str())]))
            .collect();
        let not_stored_family = Family::<Labels1, Counter>::default();
        registry.register(
            "not_stored",
            "Upstream responses to cacheable requests that were not stored, by reason",
            not_stored_family.clone(),
        );
        let not_stored = NotStored::ALL
            .iter()
            .map(|r| not_stored_family.get_or_create_owned(&[("reason", r.as_str())]))
            .collect();
        let upstream = Family::default();
        registry.register(
            "upstream_requests",
            "Requests sent upstream by reason and response status",
            upstream.clone(),
        );
        let upstream_errors = Family::default();
        registry.register(
            "upstream_errors",
            "Upstream requests that got no response, by kind",
            upstream_errors.clone(),
        );
        let served = Family::<Labels1, Counter>::default();
        registry.register(
            "served_bytes",
            "Response body bytes sent to clients by source",
            served.clone(),
        );
        let bytes_cache = served.get_or_create_owned(&[("source", "cache")]);
        let bytes_upstream = served.get_or_create_owned(&[("source", "upstream")]);
        let invalidations = Family::default();
        registry.register(
            "invalidations",
            "Invalidation operations (purges, writes, events) by source",
            invalidations.clone(),
        );
        let invalidated_entries = Family::default();
        registry.register(
            "invalidated_entries",
            "Entries removed by invalidations, by source",
            invalidated_entries.clone(),
        );
        let route_requests = Family::default();
        registry.register(
            "route_requests",
            "Client requests per route (every request a route admitted)",
            route_requests.clone(),
        );
        let route_upstream = Family::default();
        registry.register(
            "route_upstream_requests",
            "Requests sent upstream per route, by the dialect's endpoint class and status",
            route_upstream.clone(),
        );
        let events = Family::default();
        registry.register(
            "events",
            "Upstream events accepted per route, by type",
            events.clone(),
        );
        let event_errors = Family::default();
        registry.register(
            "event_errors",
            "Malformed upstream events rejected per route",
            event_errors.clone(),
        );
        let tag_invalidations = Family::default();
        registry.register(
            "tag_invalidations",
            "Tag invalidations from events per route, by tag kind (change, topic, projectq …)",
            tag_invalidations.clone(),
        );
        let dialect_hits = Family::default();
        registry.register(
            "dialect_hits",
            "Hits a dialect allowed without revalidation, per route and reason (trusted, ledger)",
            dialect_hits.clone(),
        );
        let open_connections = Family::default();
        registry.register(
            "open_connections",
            "Client connections open, per listener (proxy, admin)",
            open_connections.clone(),
        );
        let accept_errors = Family::default();
        registry.register(
            "accept_errors",
            "Accepts that failed for lack of resources (EMFILE …), per listener",
            accept_errors.clone(),
        );
        let connection_timeouts = Family::default();
        registry.register(
            "connection_timeouts",
            "Connections closed by a timeout, per listener and kind (request_header, idle)",
            connection_timeouts.clone(),
        );
        let interim_responses = Family::default();
        registry.register(
            "interim_responses",
            "Upstream 1xx responses (103 Early Hints …) relayed to HTTP/1.1 clients or given up (dropped: the connection was not between responses)",
            interim_responses.clone(),
        );
        let reloads = Family::default();
        registry.register(
            "config_reloads",
            "Config reloads (SIGHUP, POST /reload) by result (applied, rejected)",
            reloads.clone(),
        );
        registry.register_collector(Box::new(TierCollector {
            cache,
            flights,
            active,
            shared,
        }));
        Metrics {
            registry,
            outcomes,
            forwarded,
            not_stored,
            upstream,
            upstream_errors,
            bytes_cache,
            bytes_upstream,
            invalidations,
            invalidated_entries,
            route_requests,
            route_upstream,
            routes: ArcSwap::default(),
            events,
            event_errors,
            tag_invalidations,
            dialect_hits,
            open_connections,
            accept_errors,
            connection_timeouts,
            interim_responses,
            reloads,
        }
    }

    /// The counters of the listener called `name`.
    pub fn listener(&self, name: &'static str) -> ListenerMetrics {
        ListenerMetrics {
            open: self
                .open_connections
                .get_or_create_owned(&[("listener", name)]),
            accept_errors: self
                .accept_errors
                .get_or_create_owned(&[("listener", name)]),
            header_timeouts: self
                .connection_timeouts
                .get_or_create_owned(&[("listener", name), ("kind", "request_header")]),
            idle_timeouts: self
                .connection_timeouts
                .get_or_create_owned(&[("listener", name), ("kind", "idle")]),
            interim_relayed: self
                .interim_responses
                .get_or_create_owned(&[("listener", name), ("outcome", "relayed")]),
            interim_dropped: self
                .interim_responses
                .get_or_create_owned(&[("listener", name), ("outcome", "dropped")]),
        }
    }

    /// The counters of the route called `route`, made on first use and
    /// the same for every later call (see [`crate::route::Route::counters`]).
    pub fn route(&self, route: &str) -> Arc<RouteCounters> {
        if let Some(c) = self.routes.load().get(route) {
            return c.clone();
        }
        let label = label_value(route);
        let made = Arc::new(RouteCounters {
            requests: self
                .route_requests
                .get_or_create_owned(&[("route", label.clone())]),
            family: self.route_upstream.clone(),
            label,
            upstream: ArcSwap::default(),
        });
        // Two first uses at once: the one that lands first is kept.
        self.routes.rcu(|routes| {
            let mut routes = HashMap::clone(routes);
            routes
                .entry(route.to_owned())
                .or_insert_with(|| made.clone());
            routes
        });
        self.routes.load().get(route).cloned().unwrap_or(made)
    }

    /// The counters of every route that has counted, by name (routes a
    /// reload removed included).
    pub fn routes(&self) -> Arc<HashMap<String, Arc<RouteCounters>>> {
        self.routes.load_full()
    }

    /// Client requests so far, by outcome, in [`Outcome::ALL`] order.
    pub fn outcome_totals(&self) -> [u64; Outcome::ALL.len()] {
        let mut totals = [0; Outcome::ALL.len()];
        for (total, counter) in totals.iter_mut().zip(&self.outcomes) {
            *total = counter.get();
        }
        totals
    }

    pub fn event(&self, route: &str, kind: &str) {
        self.events
            .get_or_create(&[
                ("route", label_value(route)),
                ("type", known(kind, EVENT_TYPES).to_owned()),
            ])
            .inc();
    }

    pub fn event_rejected(&self, route: &str) {
        self.event_errors
            .get_or_create(&[("route", label_value(route))])
            .inc();
    }

    pub fn tag_invalidation(&self, route: &str, kind: &str) {
        self.tag_invalidations
            .get_or_create(&[
                ("route", label_value(route)),
                ("kind", known(kind, TAG_KINDS).to_owned()),
            ])
            .inc();
    }

    /// The dialect-hit counters of the route called `route`, resolved
    /// once per route (see [`crate::route::Route::dialect_hit`]).
    pub fn dialect_hits(&self, route: &str) -> DialectHits {
        let counter = |reason: &str| {
            self.dialect_hits.get_or_create_owned(&[
                ("route", label_value(route)),
                ("reason", reason.to_owned()),
            ])
        };
        DialectHits {
            trusted: counter("trusted"),
            ledger: counter("ledger"),
            rate_limited: counter("rate-limited"),
            other: counter("other"),
        }
    }

    /// A request that went upstream, by RFC 9211 `fwd` reason.
    pub fn forwarded(&self, fwd: Fwd) {
        if let Some(i) = Fwd::ALL.iter().position(|f| *f == fwd) {
            self.forwarded[i].inc();
        }
    }

    /// A response that was not stored, by reason.
    pub fn not_stored(&self, why: NotStored) {
        if let Some(i) = NotStored::ALL.iter().position(|r| *r == why) {
            self.not_stored[i].inc();
        }
    }

    pub fn outcome(&self, outcome: Outcome) {
        if let Some(i) = Outcome::ALL.iter().position(|o| *o == outcome) {
            self.outcomes[i].inc();
        }
    }

    pub fn upstream(&self, reason: UpstreamReason, status: u16) {
        self.upstream
            .get_or_create(&[
                ("reason", reason.label().to_owned()),
                ("status", status.to_string()),
            ])
            .inc();
    }

    pub fn upstream_error(&self, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&[("kind", kind.to_owned())])
            .inc();
    }

    /// The counter for body bytes sent from the cache or the upstream.
    pub fn bytes_counter(&self, from_cache: bool) -> Counter {
        if from_cache {
            self.bytes_cache.clone()
        } else {
            self.bytes_upstream.clone()
        }
    }

    /// A config reload, applied or rejected.
    pub fn reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "rejected" };
        self.reloads.get_or_create(&[("result", result)]).inc();
    }

    pub fn invalidation(&self, source: InvalidationSource, entries: usize) {
        let labels = [("source", source.label())];
        self.invalidations.get_or_create(&labels).inc();
        self.invalidated_entries
            .get_or_create(&labels)
            .inc_by(entries as u64);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

struct TierCollector {
    cache: Arc<Cache>,
    flights: Flights,
    active: Arc<ArcSwap<ActiveConfig>>,
    shared: Option<Arc<SharedTier>>,
}

impl std::fmt::Debug for TierCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TierCollector")
    }
}

impl Collector for TierCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.cache.stats();
        let gauge =
            |encoder: &mut DescriptorEncoder, name: &str, help: &str, tier: &str, v: i64| {
                let g = ConstGauge::new(v);
                let mut m = encoder.encode_descriptor(name, help, None, g.metric_type())?;
                g.encode(m.encode_family(&[("tier", tier)])?)
            };
        gauge(
            &mut encoder,
            "tier_entries",
            "Entries held in the identity map (l0)",
            "l0",
            stats.identity_entries as i64,
        )?;
        gauge(
            &mut encoder,
            "tier_keys",
            "Keys held in the memory tier (l1)",
            "l1",
            stats.memory_keys as i64,
        )?;
        gauge(
            &mut encoder,
            "tier_bytes",
            "Bytes held in the memory tier (l1)",
            "l1",
            stats.memory_bytes as i64,
        )?;
        gauge(
            &mut encoder,
            "tier_capacity_bytes",
            "Byte budget of the memory tier (l1)",
            "l1",
            stats.memory_capacity as i64,
        )?;
        let evictions = ConstCounter::new(stats.memory_evictions);
        let mut m = encoder.encode_descriptor(
            "evictions",
            "Entries evicted by the byte budget",
            None,
            evictions.metric_type(),
        )?;
        evictions.encode(m.encode_family(&[("tier", "l1")])?)?;
        let enabled = ConstGauge::new(i64::from(matches!(
            self.cache.disk_state(),
            revcache_core::DiskState::Enabled
        )));
        let m = encoder.encode_descriptor(
            "disk_tier_enabled",
            "1 while the disk tier (l2) works; 0 when it is off, could not open, or a disk failure disabled it (serving from memory)",
            None,
            enabled.metric_type(),
        )?;
        enabled.encode(m)?;
        if let Some(d) = &stats.disk {
            gauge(
                &mut encoder,
                "tier_entries",
                "Entries held in the disk tier (l2)",
                "l2",
                d.entries as i64,
            )?;
            let g = ConstGauge::new(d.index_bytes as i64);
            let mut m = encoder.encode_descriptor(
                "disk_bytes",
                "Bytes the disk tier takes on disk, what its byte budget counts: the index (its rows, metadata and inline bodies, times the measured overhead of its pages) and body files",
                None,
                g.metric_type(),
            )?;
            g.encode(m.encode_family(&[("kind", "index")])?)?;
            ConstGauge::new(d.file_bytes as i64).encode(m.encode_family(&[("kind", "files")])?)?;
            let plain_gauge = |encoder: &mut DescriptorEncoder, name: &str, help: &str, v: i64| {
                let g = ConstGauge::new(v);
                let m = encoder.encode_descriptor(name, help, None, g.metric_type())?;
                g.encode(m)
            };
            plain_gauge(
                &mut encoder,
                "disk_files",
                "Body files in the disk tier",
                d.files as i64,
            )?;
            let counter = |encoder: &mut DescriptorEncoder, name: &str, help: &str, v: u64| {
                let c = ConstCounter::new(v);
                let m = encoder.encode_descriptor(name, help, None, c.metric_type())?;
                c.encode(m)
            };
            counter(
                &mut encoder,
                "disk_sweeps",
                "Sweep steps run on the disk tier",
                d.sweeps,
            )?;
            let swept = ConstCounter::new(d.swept_idle);
            let mut m = encoder.encode_descriptor(
                "disk_swept_entries",
                "Entries the sweeper removed, by reason",
                None,
                swept.metric_type(),
            )?;
            swept.encode(m.encode_family(&[("reason", "idle")])?)?;
            ConstCounter::new(d.swept_over_budget)
                .encode(m.encode_family(&[("reason", "budget")])?)?;
            counter(
                &mut encoder,
                "disk_orphans_removed",
                "Orphan body and temp files removed at start-up",
                d.orphans_removed,
            )?;
            counter(
                &mut encoder,
                "disk_corrupt_dropped",
                "Unreadable disk entries dropped",
                d.corrupt_dropped,
            )?;
            counter(
                &mut encoder,
                "disk_errors",
                "Disk tier writes the disk refused (failed batches, body files, reopen attempts)",
                d.errors,
            )?;
            plain_gauge(
                &mut encoder,
                "disk_tombstones",
                "Purges not yet committed to the disk tier (their entries are hidden meanwhile)",
                d.tombstones as i64,
            )?;
            counter(
                &mut encoder,
                "disk_writes_dropped",
                "Disk writes skipped because the writer queue was full",
                d.writes_dropped,
            )?;
            let lookups = ConstCounter::new(stats.disk_hits);
            let mut m = encoder.encode_descriptor(
                "disk_lookups",
                "Memory misses looked up in the disk tier, by whether it held the key (a hit is promoted to memory)",
                None,
                lookups.metric_type(),
            )?;
            lookups.encode(m.encode_family(&[("result", "hit")])?)?;
            ConstCounter::new(stats.disk_misses).encode(m.encode_family(&[("result", "miss")])?)?;
            let load = ConstGauge::new(d.load_time.as_secs_f64());
            let m = encoder.encode_descriptor(
                "disk_open_seconds",
                "Time the disk tier took to open at start-up",
                None,
                load.metric_type(),
            )?;
            load.encode(m)?;
        }
        let now = self.cache.clock().now();
        let active = self.active.load();
        let feeds: Vec<_> = active
            .router
            .routes()
            .iter()
            .filter_map(|r| r.dialect.feed().map(|f| (r, f)))
            .collect();
        if !feeds.is_empty() {
            let g = ConstGauge::new(0i64);
            let mut m = encoder.encode_descriptor(
                "event_feed_healthy",
                "1 while a route's event feed is healthy (events trusted), 0 otherwise",
                None,
                g.metric_type(),
            )?;
            for (route, feed) in feeds {
                let v = ConstGauge::new(i64::from(feed.healthy(now)));
                v.encode(m.encode_family(&[("route", label_value(&route.name))])?)?;
            }
        }
        self.encode_rate_limits(&mut encoder)?;
        self.encode_shared(&mut encoder)?;
        let waiting = ConstGauge::new(self.flights.waiting() as i64);
        let m = encoder.encode_descriptor(
            "single_flight_waiters",
            "Requests currently waiting on another request's upstream fetch",
            None,
            waiting.metric_type(),
        )?;
        waiting.encode(m)?;
        let in_flight = ConstGauge::new(self.flights.in_flight() as i64);
        let m = encoder.encode_descriptor(
            "single_flight_fetches",
            "Upstream fetches other requests can join",
            None,
            in_flight.metric_type(),
        )?;
        in_flight.encode(m)?;
        Ok(())
    }
}

impl TierCollector {
    /// The shared tier (L3): health, lookups, stores, stream, errors.
    fn encode_shared(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let s = shared.stats();
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let healthy = ConstGauge::new(i64::from(shared.healthy()));
        let m = encoder.encode_descriptor(
            "shared_healthy",
            "1 while the shared tier (Redis) answers; 0 while this node serves without it",
            None,
            healthy.metric_type(),
        )?;
        healthy.encode(m)?;
        let lookups = ConstCounter::new(load(&s.hits));
        let mut m = encoder.encode_descriptor(
            "shared_lookups",
            "Lookups in the shared tier (L3), by whether it held the key",
            None,
            lookups.metric_type(),
        )?;
        lookups.encode(m.encode_family(&[("result", "hit")])?)?;
        ConstCounter::new(load(&s.misses)).encode(m.encode_family(&[("result", "miss")])?)?;
        let lag = ConstGauge::new(load(&s.stream_lag_micros) as f64 / 1e6);
        let m = encoder.encode_descriptor(
            "shared_stream_lag_seconds",
            "How old the newest stream message was when this node read it (another node's invalidations reach this one that much later)",
            None,
            lag.metric_type(),
        )?;
        lag.encode(m)?;
        let unpublished = ConstGauge::new(shared.unpublished() as i64);
        let m = encoder.encode_descriptor(
            "shared_unpublished",
            "Invalidations made here that wait for Redis to reach the other nodes",
            None,
            unpublished.metric_type(),
        )?;
        unpublished.encode(m)?;
        let ledger = ConstCounter::new(load(&s.ledger_published));
        let mut m = encoder.encode_descriptor(
            "shared_ledger_records",
            "Ledger records (children a listing confirms) this node shared with the others, and theirs it applied",
            None,
            ledger.metric_type(),
        )?;
        ledger.encode(m.encode_family(&[("direction", "published")])?)?;
        ConstCounter::new(load(&s.ledger_applied))
            .encode(m.encode_family(&[("direction", "applied")])?)?;
        let counters: [(&str, &str, u64); 11] = [
            (
                "shared_ack_timeouts",
                "Invalidations answered before every other live node had applied them (it waited 100 ms)",
                load(&s.ack_timeouts),
            ),
            ("shared_stored", "Entries this node shared", load(&s.stored)),
            (
                "shared_stores_outdated",
                "Entries not shared because an invalidation reached them first",
                load(&s.outdated),
            ),
            (
                "shared_errors",
                "Shared-tier commands that failed or timed out (served without it)",
                load(&s.errors),
            ),
            (
                "shared_malformed",
                "Values and stream messages in Redis that are not revcache's: ignored",
                load(&s.malformed),
            ),
            (
                "shared_published",
                "Invalidations this node published to the others",
                load(&s.published),
            ),
            (
                "shared_applied",
                "Invalidations of other nodes applied here",
                load(&s.applied),
            ),
            (
                "shared_lock_waits",
                "Fetches that waited for another node's",
                load(&s.lock_waits),
            ),
            (
                "shared_gaps",
                "Times the invalidation stream could be read again after it could not (trust started over)",
                load(&s.gaps),
            ),
            (
                "shared_read_bytes",
                "Bytes of entries read from the shared tier",
                load(&s.bytes_read),
            ),
            (
                "shared_written_bytes",
                "Bytes of entries this node wrote to the shared tier",
                load(&s.bytes_written),
            ),
        ];
        for (name, help, v) in counters {
            let c = ConstCounter::new(v);
            let m = encoder.encode_descriptor(name, help, None, c.metric_type())?;
            c.encode(m)?;
        }
        Ok(())
    }

    /// The upstream rate limits dialects track, per route, partition
    /// (its hash prefix) and resource.
    fn encode_rate_limits(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let active = self.active.load();
        let rows: Vec<_> = active
            .router
            .routes()
            .iter()
            .flat_map(|r| {
                r.dialect
                    .rate_limits()
                    .into_iter()
                    .map(move |row| (label_value(&r.name), row))
            })
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        type Field = fn(&RateLimitRow) -> u64;
        let gauges: [(&str, &str, Field); 4] = [
            (
                "upstream_rate_limit",
                "The upstream's rate limit of a partition (x-ratelimit-limit)",
                |r| r.limit,
            ),
            (
                "upstream_rate_limit_remaining",
                "Requests the upstream still allows a partition (x-ratelimit-remaining)",
                |r| r.remaining,
            ),
            (
                "upstream_rate_limit_used",
                "Requests a partition spent of the upstream's rate limit (x-ratelimit-used)",
                |r| r.used,
            ),
            (
                "upstream_rate_limit_reset_seconds",
                "When a partition's rate limit resets, in seconds since the Unix epoch",
                |r| r.reset,
            ),
        ];
        for (name, help, field) in gauges {
            let g = ConstGauge::new(0i64);
            let mut m = encoder.encode_descriptor(name, help, None, g.metric_type())?;
            for (route, row) in &rows {
                ConstGauge::new(i64::try_from(field(row)).unwrap_or(i64::MAX)).encode(
                    m.encode_family(&[
                        ("route", route.as_str()),
                        ("partition", &row.partition),
                        ("resource", &label_value(&row.resource)),
                    ])?,
                )?;
            }
        }
        let c = ConstCounter::new(0u64);
        let mut m = encoder.encode_descriptor(
            "upstream_requests_saved",
            "Requests of a partition answered at no cost to the upstream's rate limit (hits, 304 revalidations)",
            None,
            c.metric_type(),
        )?;
        let mut seen = std::collections::HashSet::new();
        for (route, row) in &rows {
            if seen.insert((route.clone(), row.partition.clone())) {
                ConstCounter::new(row.saved).encode(m.encode_family(&[
                    ("route", route.as_str()),
                    ("partition", &row.partition),
                ])?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_cannot_break_out_of_their_quotes() {
        assert_eq!(label_value("api"), "api");
        assert_eq!(
            label_value("a\"} 1\nrevcache_x{y=\"\\"),
            "a\\\"} 1\\nrevcache_x{y=\\\"\\\\"
        );
    }

    #[test]
    fn unknown_event_types_and_tag_kinds_count_as_other() {
        assert_eq!(known("patchset-created", EVENT_TYPES), "patchset-created");
        assert_eq!(known("made-up-1234", EVENT_TYPES), "other");
        assert_eq!(known("topic", TAG_KINDS), "topic");
        assert_eq!(known("x\"y", TAG_KINDS), "other");
    }
}
