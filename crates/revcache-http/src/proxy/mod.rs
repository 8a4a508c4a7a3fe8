//! The caching proxy service: one client request in, one response out.
//!
//! Flow (see ARCHITECTURE.md): limits → route → `dialect.classify` →
//! writes are forwarded then invalidate; passes are forwarded; cacheable
//! requests look up L0/L1, serve fresh hits, and otherwise join the key's
//! single flight, whose leader fetches (conditionally when it holds a
//! validator) and fills the cache while streaming to its client.

pub mod body;
pub mod cache_status;
pub mod egress;
mod fill;
pub mod forward;
pub mod request_headers;
mod respond;
mod tee;
pub mod upstream;
pub mod upstream_tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use http::header::{AGE, CONTENT_LENGTH, HOST};
use http::{HeaderMap, Request, Response, StatusCode, request};
use hyper::body::Incoming;
use revcache_core::{
    BodyFile, Cache, Entry, EntryBody, Join, KeyClass, KeyRef, Partition, PartitionKey, PrimaryKey,
    SingleFlight, StoreOutcome, Variants,
};

use self::body::{ProxyBody, RequestBody};
use self::cache_status::CacheStatus;
use self::fill::{FillPlan, Leader};
use self::forward::Conditions;
use self::upstream::UpstreamError;
use crate::credential;
use crate::dialect::{Classification, Invalidation, Storage};
use crate::invalidator::Invalidator;
use crate::metrics::{InvalidationSource, Metrics, Outcome, UpstreamReason};
use crate::policy::freshness::stale_if_error_allows;
use crate::policy::{RequestDirectives, ResponseDirectives};
use crate::policy::{
    Reuse, Storability, conditional, hop_by_hop, merge, reuse, storability, stored_freshness, vary,
};
use crate::request_target;
use crate::route::{Route, RouteChanges, RouteError, Router};
use crate::settings::{Limits, PartitionSettings, Settings};

/// What a single flight's leader hands its waiters.
#[derive(Clone, Debug)]
pub enum FlightOutcome {
    /// The stored (or refreshed) entry.
    Entry(Arc<Entry>),
    /// Nothing shareable (not storable, too large, outdated): fetch alone.
    NotShared,
    /// The leader could not fetch for the others (a HEAD that found nothing
    /// reusable on disk): join again, one of them leads.
    Retry,
    /// The upstream failed; waiters answer with the same error (or stale).
    Failed(UpstreamError),
}

pub struct Proxy {
    cache: Arc<Cache>,
    fills: Arc<fill::Fills>,
    /// The routes and settings requests read, swapped whole by a reload.
    active: Arc<ArcSwap<ActiveConfig>>,
    flights: SingleFlight<PrimaryKey, FlightOutcome>,
    metrics: Arc<Metrics>,
    invalidator: Arc<Invalidator>,
    partition_key: PartitionKey,
    /// Keys whose last fetch could not be stored (hit-for-pass), until
    /// when: their requests skip the flight, which could only make them
    /// wait for a response nobody else may use.
    uncacheable: quick_cache::sync::Cache<PrimaryKey, SystemTime>,
}

/// How long a key whose response could not be stored skips the flight.
const HIT_FOR_PASS: std::time::Duration = std::time::Duration::from_secs(120);
/// Keys remembered as uncacheable at most.
const HIT_FOR_PASS_KEYS: usize = 65_536;

/// What a config reload swaps: every setting a request reads. A request
/// keeps the one it started under to its end.
pub struct ActiveConfig {
    pub router: Router,
    pub limits: Limits,
    pub partition: PartitionSettings,
    sanitizer: request_headers::Sanitizer,
}

impl ActiveConfig {
    /// Builds the config `settings` describe, keeping the unchanged routes
    /// of `previous` (see [`Router::rebuild`]).
    pub fn build(
        settings: &Settings,
        previous: Option<&ActiveConfig>,
        now: SystemTime,
    ) -> Result<(Self, RouteChanges), RouteError> {
        let (router, changes) = Router::rebuild(
            &settings.routes,
            &settings.limits,
            previous.map(|p| &p.router),
            now,
        )?;
        Ok((
            ActiveConfig {
                router,
                limits: settings.limits.clone(),
                partition: settings.partition.clone(),
                sanitizer: request_headers::Sanitizer::new(&settings.forwarding),
            },
            changes,
        ))
    }
}

/// One client request on its way through the proxy.
struct Exchange {
    /// The config the request started under.
    config: Arc<ActiveConfig>,
    route: Arc<Route>,
    parts: request::Parts,
    /// The authority the client addressed, lowercased, when the request's
    /// own was not already lower case (see [`Exchange::host`]).
    lowered_host: Option<Box<str>>,
    client: SocketAddr,
    req_cc: RequestDirectives,
    /// The request is authenticated (RFC 9111 §3.5): partition material or
    /// credentials revcache does not partition on.
    has_credentials: bool,
    class: KeyClass,
    /// The request target with credential query parameters redacted, when
    /// it had any: what keys, purges, `/inspect` and logs see.
    redacted_target: Option<Box<str>>,
    /// What the key calls the upstream (see `dispatch`).
    key_host: Arc<str>,
    /// The caller's partition, when the request carries partition
    /// material and nothing else that identifies it (an unrecognized
    /// credential makes the caller use and store only shared entries).
    partition: Option<Partition>,
    /// (public key, own key), built only when needed: a hit looks up by
    /// borrowed keys and never builds them.
    keys: std::sync::OnceLock<(PrimaryKey, PrimaryKey)>,
}

impl Exchange {
    /// The authority the client addressed, lower case. Read from the
    /// request unless it had to be lowercased: the hit path allocates no
    /// string for it.
    fn host(&self) -> &str {
        self.lowered_host
            .as_deref()
            .unwrap_or_else(|| addressed_host(&self.parts))
    }

    fn target(&self) -> &str {
        match &self.redacted_target {
            Some(t) => t,
            None => self.parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        }
    }

    fn key_ref(&self, partition: Partition) -> KeyRef<'_> {
        KeyRef::new(
            self.route.id,
            &self.class,
            &self.key_host,
            self.target(),
            partition,
        )
    }

    fn keys(&self) -> &(PrimaryKey, PrimaryKey) {
        self.keys.get_or_init(|| {
            let public = self.key_ref(Partition::Public).to_key();
            let own = match self.partition {
                Some(p) => public.with_partition(p),
                None => public.clone(),
            };
            (public, own)
        })
    }

    fn public_key(&self) -> &PrimaryKey {
        &self.keys().0
    }

    /// The caller's partition key (`public_key` when anonymous).
    fn own_key(&self) -> &PrimaryKey {
        &self.keys().1
    }
}

impl Proxy {
    pub fn new(
        settings: &Settings,
        partition_key: PartitionKey,
        cache: Arc<Cache>,
    ) -> Result<Arc<Self>, RouteError> {
        let flights = SingleFlight::default();
        let active = Arc::new(ArcSwap::from_pointee(
            ActiveConfig::build(settings, None, cache.clock().now())?.0,
        ));
        let metrics = Arc::new(Metrics::new(cache.clone(), flights.clone(), active.clone()));
        let invalidator = Arc::new(Invalidator::new(
            cache.clone(),
            metrics.clone(),
            active.clone(),
        ));
        Ok(Arc::new(Proxy {
            invalidator,
            uncacheable: quick_cache::sync::Cache::new(HIT_FOR_PASS_KEYS),
            cache,
            fills: Arc::new(fill::Fills::new(settings.limits.max_fill_bytes)),
            active,
            flights,
            metrics,
            partition_key,
        }))
    }

    /// The config requests now start under.
    pub fn config(&self) -> Arc<ActiveConfig> {
        self.active.load_full()
    }

    /// Puts `config` in force for requests that start from now on.
    pub fn install(&self, config: ActiveConfig) {
        self.fills.set_limit(config.limits.max_fill_bytes);
        self.active.store(Arc::new(config));
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// Bytes held by fills in progress: bodies being kept and chunks
    /// queued for clients (at most `limits.max_fill_bytes` kept).
    pub fn fill_bytes(&self) -> u64 {
        self.fills.held_bytes()
    }

    /// Waits until every fill in progress has stored (or given up).
    pub async fn fills_idle(&self) {
        self.fills.idle().await;
    }

    /// Applies invalidations and ingests events.
    pub fn invalidator(&self) -> &Arc<Invalidator> {
        &self.invalidator
    }

    /// Drops every variant of `key` from every tier: its body file is
    /// gone, or the upstream no longer confirms it.
    async fn forget(&self, key: PrimaryKey) {
        let cache = self.cache.clone();
        let purged =
            tokio::task::spawn_blocking(move || cache.purge(&[Invalidation::Key(key)])).await;
        if let Ok(Err(e)) = purged {
            tracing::error!(error = %e, "a dropped entry did not leave the disk tier");
        }
    }

    /// Serves one client request.
    pub async fn handle(
        self: &Arc<Self>,
        req: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<ProxyBody> {
        // The request line is kept for the log only when debug is on: the
        // hit path does not pay for a log line nobody reads.
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return self.dispatch(req, client).await;
        }
        let started = Instant::now();
        let method = req.method().clone();
        let uri = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let uri = credential::redact_target(uri, &self.active.load().partition.query_params)
            .unwrap_or_else(|| uri.to_owned());
        let res = self.dispatch(req, client).await;
        let status = res
            .headers()
            .get_all(cache_status::NAME)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        tracing::debug!(
            %client, %method, %uri, status = res.status().as_u16(),
            cache_status = %status, elapsed_us = started.elapsed().as_micros() as u64,
            "request"
        );
        res
    }

    async fn dispatch(
        self: &Arc<Self>,
        req: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<ProxyBody> {
        let config = self.active.load_full();
        let header_bytes: usize = req
            .headers()
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>()
            + req.uri().path_and_query().map_or(0, |p| p.as_str().len());
        if header_bytes > config.limits.max_request_header_bytes {
            return self.reject(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!(
                    "request header fields total {header_bytes} bytes; the limit is {} (limits.max_request_header_bytes)",
                    config.limits.max_request_header_bytes
                ),
            );
        }
        let (mut parts, body) = req.into_parts();
        if let Err(why) = config.sanitizer.sanitize(&mut parts) {
            return self.reject(StatusCode::BAD_REQUEST, why.to_string());
        }
        // Routing, the key and the upstream all see the normalised target.
        let target = match request_target::normalize(&parts.uri) {
            Ok(t) => t,
            Err(e) => return self.reject(StatusCode::BAD_REQUEST, e.to_string()),
        };
        if let Some(uri) = target.uri {
            parts.uri = uri;
        }
        let addressed = addressed_host(&parts);
        let lowered_host: Option<Box<str>> = addressed
            .bytes()
            .any(|b| b.is_ascii_uppercase())
            .then(|| addressed.to_ascii_lowercase().into());
        let host = lowered_host.as_deref().unwrap_or(addressed);
        let host_name = host_without_port(host);
        let Some(route) = config.router.route(host_name, parts.uri.path()).cloned() else {
            return self.reject(
                StatusCode::NOT_FOUND,
                format!(
                    "no route for host {host_name:?} and path {:?}",
                    parts.uri.path()
                ),
            );
        };
        if target.encoded_slash && !route.keeps_encoded_slashes {
            let e = request_target::TargetError::EncodedSlash;
            return self.reject(StatusCode::BAD_REQUEST, e.to_string());
        }
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > config.limits.max_request_body_bytes) {
            return self.reject(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body of {} bytes exceeds the limit of {} (limits.max_request_body_bytes)",
                    declared.unwrap_or_default(),
                    config.limits.max_request_body_bytes
                ),
            );
        }
        let mut classification = route.dialect.classify(&parts);
        let (body, exceeded) = match classification {
            Classification::NeedsBody { max } => {
                // The dialect keys this request on its body (a PROPFIND's
                // property set): read it, bounded, then classify again.
                let read = Box::pin(tokio::time::timeout(
                    config.limits.request_body_timeout,
                    http_body_util::BodyExt::collect(http_body_util::Limited::new(body, max)),
                ))
                .await;
                let bytes = match read {
                    Err(_) => {
                        return self.reject(
                            StatusCode::REQUEST_TIMEOUT,
                            "request body did not arrive within limits.request_body_timeout".into(),
                        );
                    }
                    Ok(Ok(b)) => b.to_bytes(),
                    Ok(Err(e)) => {
                        return self.reject(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("request body could not be read within {max} bytes: {e}"),
                        );
                    }
                };
                classification = route.dialect.classify_body(&parts, &bytes);
                (RequestBody::full(bytes), None)
            }
            // Nothing to read or limit (a GET, say): no limiter to allocate.
            _ if hyper::body::Body::is_end_stream(&body) => (RequestBody::empty(), None),
            _ => {
                let (b, e) = RequestBody::new(body, config.limits.max_request_body_bytes);
                (b, Some(e))
            }
        };
        let caller = credential::identify(
            &parts.headers,
            parts.uri.query(),
            &config.partition,
            route.dialect.partition_cookies(),
            route.dialect.cookies_identify(),
            &self.partition_key,
        );
        let redacted_target = parts
            .uri
            .query()
            .is_some()
            .then(|| {
                let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                credential::redact_target(target, &config.partition.query_params)
            })
            .flatten()
            .map(String::into_boxed_str);
        let class = match &classification {
            Classification::Cacheable { class } => class.clone(),
            _ => KeyClass::Get,
        };
        // The key names what the upstream sees: its own authority, unless
        // the client's Host is passed on.
        let key_host = if route.preserve_host {
            Arc::from(format!("{host}@{}", route.key_host))
        } else {
            route.key_host.clone()
        };
        let ex = Exchange {
            config,
            route,
            req_cc: RequestDirectives::parse(&parts.headers),
            parts,
            lowered_host,
            client,
            has_credentials: caller.has_credentials(),
            class,
            redacted_target,
            key_host,
            partition: caller.partition.filter(|_| !caller.unrecognized),
            keys: std::sync::OnceLock::new(),
        };
        // Only the memory hit runs inline; every other path is boxed, so
        // this future stays small and a hit does not move the others.
        match classification {
            Classification::Write | Classification::NeedsBody { .. } => {
                Box::pin(self.write(ex, body, exceeded)).await
            }
            Classification::Pass { reason } => {
                Box::pin(self.forward_plain(
                    &ex,
                    body,
                    exceeded,
                    UpstreamReason::Bypass,
                    reason,
                    Outcome::Bypass,
                ))
                .await
                .0
            }
            Classification::Cacheable { .. } => {
                let now = self.cache.clock().now();
                let found = self.find(&ex);
                if let Some(entry) = &found.0
                    && let Some(res) = self.reuse_now(&ex, entry, now)
                {
                    return res;
                }
                Box::pin(self.cached(ex, body, exceeded, found, now)).await
            }
        }
    }

    fn reject(&self, status: StatusCode, message: String) -> Response<ProxyBody> {
        self.metrics.outcome(Outcome::Rejected);
        tracing::debug!(status = status.as_u16(), %message, "rejected request");
        respond::error(status, message, CacheStatus::fwd("bypass"))
    }

    fn upstream_failed(&self, e: &UpstreamError, status: CacheStatus) -> Response<ProxyBody> {
        self.metrics.upstream_error(e.kind());
        if e.is_client_error() {
            self.metrics.outcome(Outcome::Rejected);
        } else {
            self.metrics.outcome(Outcome::Error);
            tracing::warn!(error = %e, "upstream request failed");
        }
        respond::error(e.status(), e.to_string(), status)
    }

    /// Forwards without touching the cache; returns the response and the
    /// upstream's status (if it answered) with its headers.
    async fn forward_plain(
        &self,
        ex: &Exchange,
        body: RequestBody,
        exceeded: Option<Arc<AtomicBool>>,
        reason: UpstreamReason,
        fwd: &'static str,
        outcome: Outcome,
    ) -> (Response<ProxyBody>, Option<(StatusCode, HeaderMap)>) {
        let req = forward::upstream_request(
            &ex.route,
            &ex.parts,
            ex.host(),
            ex.client,
            body,
            Conditions::Client,
        );
        self.relay(ex, req, exceeded, reason, fwd, outcome).await
    }

    /// Sends `req` upstream and streams the answer back uncached; also
    /// returns the upstream's status and headers when it answered.
    async fn relay(
        &self,
        ex: &Exchange,
        req: Request<RequestBody>,
        exceeded: Option<Arc<AtomicBool>>,
        reason: UpstreamReason,
        fwd: &'static str,
        outcome: Outcome,
    ) -> (Response<ProxyBody>, Option<(StatusCode, HeaderMap)>) {
        let res = match ex.route.upstream.send(req, exceeded).await {
            Ok(res) => res,
            Err(e) => return (self.upstream_failed(&e, CacheStatus::fwd(fwd)), None),
        };
        self.metrics.upstream(reason, res.status().as_u16());
        self.metrics.outcome(outcome);
        let (mut parts, body) = res.into_parts();
        forward::client_response_headers(&mut parts.headers, ex.parts.version);
        let answered = (parts.status, parts.headers.clone());
        parts.headers.append(
            cache_status::NAME,
            CacheStatus::fwd(fwd)
                .fwd_status(parts.status.as_u16())
                .value(),
        );
        let body = ProxyBody::upstream(
            body,
            ex.route.upstream.read_timeout(),
            self.metrics.bytes_counter(false),
        );
        (Response::from_parts(parts, body), Some(answered))
    }

    /// Unsafe methods: forward, then invalidate what a success changed
    /// (before the client sees the response, so its next read is fresh).
    async fn write(
        &self,
        ex: Exchange,
        body: RequestBody,
        exceeded: Option<Arc<AtomicBool>>,
    ) -> Response<ProxyBody> {
        let (res, answered) = self
            .forward_plain(
                &ex,
                body,
                exceeded,
                UpstreamReason::Method,
                "method",
                Outcome::Method,
            )
            .await;
        if let Some((status, headers)) = answered
            && (status.is_success() || status.is_redirection())
        {
            let invalidations = ex.route.dialect.on_write(&ex.parts, status, &headers);
            // Failures are logged and counted by the invalidator; the
            // write's own response goes to the client either way.
            let _ = self
                .invalidator
                .invalidate(invalidations, InvalidationSource::Write)
                .await;
        }
        res
    }

    /// The stored entry that may answer `ex`, and whether the URI had any.
    fn find(&self, ex: &Exchange) -> (Option<Arc<Entry>>, bool) {
        let mut known = false;
        let own = ex.key_ref(ex.partition.unwrap_or(Partition::Public));
        let public = ex.partition.map(|_| ex.key_ref(Partition::Public));
        let keys = [Some(own), public];
        for key in keys.into_iter().flatten() {
            if let Some(variants) = self.cache.lookup_ref(&key) {
                known = true;
                if let Some(e) = self.usable_variant(ex, &variants) {
                    return (Some(e), true);
                }
            }
        }
        (None, known)
    }

    /// The newest of `variants` that may answer `ex`: its Vary-selected
    /// headers match, and a caller with credentials uses a public entry only
    /// when the response said it may be shared with them (RFC 9111 §3.5).
    fn usable_variant(&self, ex: &Exchange, variants: &Variants) -> Option<Arc<Entry>> {
        variants
            .iter()
            .rev()
            .find(|e| self.may_answer(ex, e))
            .cloned()
    }

    /// Whether `entry` (of `ex`'s own or the public partition) may answer
    /// `ex`: its Vary-selected headers match, and an authenticated caller
    /// uses a public entry only when the response said it may be shared
    /// with them (RFC 9111 §3.5).
    fn may_answer(&self, ex: &Exchange, entry: &Entry) -> bool {
        (!ex.has_credentials
            || entry.key.partition() != Partition::Public
            || entry.freshness().shareable)
            && vary::matches(&entry.variant, &ex.parts.headers, &self.partition_key)
    }

    /// Answers from `entry`. A body file that vanished since the entry was
    /// read (swept or purged) makes this a plain forward instead.
    async fn serve(
        &self,
        ex: &Exchange,
        entry: &Entry,
        status: CacheStatus,
        outcome: Outcome,
    ) -> Response<ProxyBody> {
        let body = match self.body_at_hand(ex, entry) {
            Ok(body) => body,
            Err(file) => match ProxyBody::file(file, self.metrics.bytes_counter(true)).await {
                Ok(body) => body,
                Err(e) => {
                    tracing::warn!(path = %file.path.display(), error = %e, "cached body file vanished; forwarding");
                    self.forget(entry.key.clone()).await;
                    let req = forward::upstream_request(
                        &ex.route,
                        &ex.parts,
                        ex.host(),
                        ex.client,
                        RequestBody::empty(),
                        Conditions::Client,
                    );
                    return self
                        .relay(ex, req, None, UpstreamReason::Miss, "miss", Outcome::Miss)
                        .await
                        .0;
                }
            },
        };
        self.respond_with(ex, entry, body, status, outcome, self.cache.clock().now())
    }

    /// The body `entry` answers `ex` with when no file has to be opened
    /// (none for a HEAD, shared bytes for a body in memory), else the file.
    fn body_at_hand<'e>(&self, ex: &Exchange, entry: &'e Entry) -> Result<ProxyBody, &'e BodyFile> {
        match (&entry.body, ex.parts.method == http::Method::HEAD) {
            (_, true) => Ok(ProxyBody::empty()),
            (EntryBody::Memory(bytes), false) => Ok(ProxyBody::full(
                bytes.clone(),
                self.metrics.bytes_counter(true),
            )),
            (EntryBody::File(file), false) => Err(file),
        }
    }

    fn respond_with(
        &self,
        ex: &Exchange,
        entry: &Entry,
        body: ProxyBody,
        status: CacheStatus,
        outcome: Outcome,
        now: SystemTime,
    ) -> Response<ProxyBody> {
        self.metrics.outcome(outcome);
        self.cache.touch(entry, now);
        respond::from_entry(
            entry,
            &ex.parts.headers,
            ex.parts.version,
            status,
            body,
            now,
        )
    }

    /// Reads `ex`'s key from the disk tier (promoting what it finds) and
    /// returns the entry that may answer it. It answers from what it read,
    /// not from memory again: under memory pressure the promoted entry may
    /// already be evicted, and the request would go upstream after a disk hit.
    async fn find_on_disk(&self, ex: &Exchange) -> Option<Arc<Entry>> {
        self.cache.disk()?;
        let cache = self.cache.clone();
        let mut keys = vec![ex.own_key().clone()];
        if ex.partition.is_some() {
            keys.push(ex.public_key().clone());
        }
        let found =
            tokio::task::spawn_blocking(move || keys.iter().find_map(|k| cache.lookup_disk(k)))
                .await
                .ok()
                .flatten()?;
        self.usable_variant(ex, &found)
    }

    /// How `entry` may answer `ex`: the route's dialect decides first
    /// (events, ledger), else RFC 9111. A client's own `no-cache` or
    /// `max-age=0` always forces revalidation.
    fn reuse_entry(ex: &Exchange, entry: &Entry, now: SystemTime) -> (Reuse, Option<&'static str>) {
        if let Some(d) = ex.route.dialect.reuse(entry, now) {
            let client_insists =
                ex.req_cc.no_cache || ex.req_cc.max_age.is_some_and(|m| m.seconds() == 0);
            if d.reuse != Reuse::Revalidate && client_insists {
                return (Reuse::Revalidate, None);
            }
            return (d.reuse, d.detail);
        }
        (reuse(entry, &ex.req_cc, now), None)
    }

    /// Serves `entry` when it may answer without the upstream.
    async fn try_reuse(
        self: &Arc<Self>,
        ex: &Exchange,
        entry: &Arc<Entry>,
        now: SystemTime,
    ) -> Option<Response<ProxyBody>> {
        let (decision, detail) = Self::reuse_entry(ex, entry, now);
        let (status, outcome) = self.reused(ex, entry, decision, detail)?;
        Some(self.serve(ex, entry, status, outcome).await)
    }

    /// The hit path: serves `entry` at once when it may answer without the
    /// upstream and its body needs no file opened. It has no `.await`, so a
    /// hit never builds (or moves) the futures of the miss path: about 1,000
    /// fewer instructions per hit, most of them memory copies
    /// (bench/http-hit/profile.sh).
    fn reuse_now(
        self: &Arc<Self>,
        ex: &Exchange,
        entry: &Arc<Entry>,
        now: SystemTime,
    ) -> Option<Response<ProxyBody>> {
        let (decision, detail) = Self::reuse_entry(ex, entry, now);
        if decision == Reuse::Revalidate {
            return None;
        }
        let body = self.body_at_hand(ex, entry).ok()?;
        let (status, outcome) = self.reused(ex, entry, decision, detail)?;
        Some(self.respond_with(ex, entry, body, status, outcome, now))
    }

    /// The Cache-Status and outcome of reusing `entry` as `decision` says
    /// (starting the background refresh of a stale-while-revalidate), or
    /// `None` when it must be revalidated first.
    fn reused(
        self: &Arc<Self>,
        ex: &Exchange,
        entry: &Arc<Entry>,
        decision: Reuse,
        detail: Option<&'static str>,
    ) -> Option<(CacheStatus, Outcome)> {
        match decision {
            Reuse::Fresh => {
                let mut status = CacheStatus::hit();
                if let Some(detail) = detail {
                    status = status.detail(detail);
                    self.metrics.dialect_hit(&ex.route.name, detail);
                }
                Some((status, Outcome::Hit))
            }
            Reuse::StaleWhileRevalidate => {
                self.revalidate_in_background(ex, entry.clone());
                let status = CacheStatus::hit().detail("stale-while-revalidate");
                Some((status, Outcome::StaleWhileRevalidate))
            }
            Reuse::Revalidate => None,
        }
    }

    /// Cache-Status `fwd` value and metrics reason of a forward.
    fn forward_reason(
        ex: &Exchange,
        stale: &Option<Arc<Entry>>,
        uri_known: bool,
        now: SystemTime,
    ) -> (&'static str, UpstreamReason) {
        let fwd = match stale {
            Some(e)
                if ex.req_cc.no_cache
                    && (ex.route.dialect.reuse(e, now).map(|d| d.reuse))
                        .unwrap_or_else(|| reuse(e, &RequestDirectives::default(), now))
                        == Reuse::Fresh =>
            {
                "request"
            }
            Some(_) => "stale",
            None if uri_known => "vary-miss",
            None => "uri-miss",
        };
        let reason = if stale.is_some() {
            UpstreamReason::Revalidate
        } else {
            UpstreamReason::Miss
        };
        (fwd, reason)
    }

    fn only_if_cached_miss(&self) -> Response<ProxyBody> {
        self.metrics.outcome(Outcome::Rejected);
        respond::error(
            StatusCode::GATEWAY_TIMEOUT,
            "only-if-cached: no usable stored response",
            CacheStatus::default().detail("only-if-cached"),
        )
    }

    /// Everything but a memory hit (see [`Proxy::reuse_now`]): `found` is
    /// what [`Proxy::find`] returned for `ex` at `now`.
    async fn cached(
        self: &Arc<Self>,
        ex: Exchange,
        body: RequestBody,
        exceeded: Option<Arc<AtomicBool>>,
        found: (Option<Arc<Entry>>, bool),
        now: SystemTime,
    ) -> Response<ProxyBody> {
        let (mut stale, mut uri_known) = found;
        if let Some(entry) = &stale
            && let Some(res) = self.try_reuse(&ex, entry, now).await
        {
            return res;
        }
        if ex.parts.method == http::Method::HEAD {
            // The disk read is under the flight: a burst of HEADs costs one,
            // and a HEAD behind a GET's fetch answers from its entry.
            if stale.is_none() {
                match self.flights.join(ex.own_key()) {
                    Join::Leader(leader) => {
                        let found = match self.find(&ex).0 {
                            Some(promoted) => Some(promoted),
                            None => self.find_on_disk(&ex).await,
                        };
                        match &found {
                            Some(e) if Self::reuse_entry(&ex, e, now).0 != Reuse::Revalidate => {
                                leader.complete(FlightOutcome::Entry(e.clone()));
                            }
                            _ => leader.complete(FlightOutcome::Retry),
                        }
                        if let Some(entry) = found {
                            if let Some(res) = self.try_reuse(&ex, &entry, now).await {
                                return res;
                            }
                            (stale, uri_known) = (Some(entry), true);
                        }
                    }
                    Join::Waiter(waiter) => {
                        let wait = ex.config.limits.collapsed_wait_timeout;
                        if let Ok(Ok(FlightOutcome::Entry(e))) =
                            tokio::time::timeout(wait, waiter.wait()).await
                            && self.may_answer(&ex, &e)
                        {
                            let status = CacheStatus::hit().collapsed();
                            return self.serve(&ex, &e, status, Outcome::Collapsed).await;
                        }
                    }
                }
            }
            if ex.req_cc.only_if_cached {
                return self.only_if_cached_miss();
            }
            // A HEAD cannot fill a GET entry; ask the upstream directly.
            let (fwd, reason) = Self::forward_reason(&ex, &stale, uri_known, now);
            let outcome = if stale.is_some() {
                Outcome::Refetched
            } else {
                Outcome::Miss
            };
            return self
                .forward_plain(&ex, body, exceeded, reason, fwd, outcome)
                .await
                .0;
        }
        let known_uncacheable = stale.is_none()
            && self
                .uncacheable
                .get(ex.own_key())
                .is_some_and(|until| self.cache.clock().now() < until);
        for _ in 0..3 {
            if known_uncacheable {
                break;
            }
            match self.flights.join(ex.own_key()) {
                Join::Leader(leader) => {
                    // The disk read is under the flight: a burst costs one.
                    // A leader after another flight ended finds what it
                    // promoted in memory.
                    let promoted = match &stale {
                        None => self.find(&ex).0,
                        Some(_) => None,
                    };
                    let found = match promoted {
                        Some(e) => Some(e),
                        None if stale.is_none() => self.find_on_disk(&ex).await,
                        None => None,
                    };
                    if let Some(entry) = found {
                        if Self::reuse_entry(&ex, &entry, now).0 != Reuse::Revalidate {
                            leader.complete(FlightOutcome::Entry(entry.clone()));
                            if let Some(res) = self.try_reuse(&ex, &entry, now).await {
                                return res;
                            }
                            break;
                        }
                        (stale, uri_known) = (Some(entry), true);
                    }
                    if ex.req_cc.only_if_cached {
                        return self.only_if_cached_miss();
                    }
                    let (fwd, reason) = Self::forward_reason(&ex, &stale, uri_known, now);
                    return self
                        .fetch(&ex, body, exceeded, stale, Some(leader), fwd, reason)
                        .await;
                }
                Join::Waiter(waiter) => {
                    match tokio::time::timeout(
                        ex.config.limits.collapsed_wait_timeout,
                        waiter.wait(),
                    )
                    .await
                    {
                        Err(_deadline) => {
                            tracing::debug!(
                                target = ex.target(),
                                "collapsed wait timed out; fetching alone"
                            );
                            break;
                        }
                        Ok(waited) => match waited {
                            Ok(FlightOutcome::Entry(e)) if self.may_answer(&ex, &e) => {
                                let status = CacheStatus::hit().collapsed();
                                return self.serve(&ex, &e, status, Outcome::Collapsed).await;
                            }
                            Ok(FlightOutcome::Failed(err)) => {
                                if let Some(s) = &stale
                                    && stale_if_error_allows(
                                        s,
                                        &ex.req_cc,
                                        self.cache.clock().now(),
                                    )
                                {
                                    let status = CacheStatus::fwd("stale")
                                        .collapsed()
                                        .detail("stale-if-error");
                                    return self.serve(&ex, s, status, Outcome::StaleIfError).await;
                                }
                                let (fwd, _) = Self::forward_reason(&ex, &stale, uri_known, now);
                                return self
                                    .upstream_failed(&err, CacheStatus::fwd(fwd).collapsed());
                            }
                            Ok(FlightOutcome::Retry) | Err(_) => continue,
                            Ok(_) => break,
                        },
                    }
                }
            }
        }
        if ex.req_cc.only_if_cached {
            return self.only_if_cached_miss();
        }
        let (fwd, reason) = Self::forward_reason(&ex, &stale, uri_known, now);
        self.fetch(&ex, body, exceeded, stale, None, fwd, reason)
            .await
    }

    /// Stale-while-revalidate: refresh `entry` without making anyone wait.
    fn revalidate_in_background(self: &Arc<Self>, ex: &Exchange, entry: Arc<Entry>) {
        let Join::Leader(leader) = self.flights.join(ex.own_key()) else {
            return; // a refresh is already under way
        };
        let this = self.clone();
        let ex = Exchange {
            config: ex.config.clone(),
            route: ex.route.clone(),
            parts: clone_parts(&ex.parts),
            lowered_host: ex.lowered_host.clone(),
            client: ex.client,
            req_cc: ex.req_cc.clone(),
            has_credentials: ex.has_credentials,
            class: ex.class.clone(),
            redacted_target: ex.redacted_target.clone(),
            key_host: ex.key_host.clone(),
            partition: ex.partition,
            keys: ex.keys.clone(),
        };
        tokio::spawn(async move {
            let res = this
                .fetch(
                    &ex,
                    RequestBody::empty(),
                    None,
                    Some(entry),
                    Some(leader),
                    "stale",
                    UpstreamReason::Background,
                )
                .await;
            // Nobody reads it; the fill task finishes storing on its own.
            drop(res);
        });
    }

    /// Fetches from the upstream (conditionally when `stale` has
    /// validators and this request leads a flight) and fills the cache.
    #[allow(clippy::too_many_arguments)]
    async fn fetch(
        &self,
        ex: &Exchange,
        body: RequestBody,
        exceeded: Option<Arc<AtomicBool>>,
        stale: Option<Arc<Entry>>,
        leader: Option<Leader>,
        fwd: &'static str,
        reason: UpstreamReason,
    ) -> Response<ProxyBody> {
        let conditions = match (&stale, leader.is_some()) {
            (Some(e), true) => Conditions::Revalidate(&e.headers),
            (None, true) => Conditions::Strip,
            (_, false) => Conditions::Client,
        };
        let ticket = self.cache.begin_fill();
        let request_time = self.cache.clock().now();
        let req =
            forward::upstream_request(&ex.route, &ex.parts, ex.host(), ex.client, body, conditions);
        let res = match ex.route.upstream.send(req, exceeded).await {
            Ok(res) => res,
            Err(e) => {
                if let Some(leader) = leader {
                    leader.complete(FlightOutcome::Failed(e.clone()));
                }
                if let Some(s) = &stale
                    && !e.is_client_error()
                    && stale_if_error_allows(s, &ex.req_cc, self.cache.clock().now())
                {
                    self.metrics.upstream_error(e.kind());
                    tracing::warn!(error = %e, "upstream failed; serving stale (stale-if-error)");
                    let status = CacheStatus::fwd("stale").detail("stale-if-error");
                    return self.serve(ex, s, status, Outcome::StaleIfError).await;
                }
                return self.upstream_failed(&e, CacheStatus::fwd(fwd));
            }
        };
        let response_time = self.cache.clock().now();
        let status = res.status();
        self.metrics.upstream(reason, status.as_u16());
        let class = ex.route.dialect.endpoint_class(&ex.parts);
        self.metrics
            .route_upstream(&ex.route.name, class, status.as_u16());
        let (mut rparts, rbody) = res.into_parts();
        hop_by_hop::strip(&mut rparts.headers);

        if status == StatusCode::NOT_MODIFIED
            && leader.is_some()
            && let Some(s) = &stale
        {
            let stored = s.headers.to_map(0);
            if !merge::validates(&stored, &rparts.headers) {
                // A 304 about another representation: ours cannot be
                // confirmed, so fetch the whole response instead, still
                // leading the flight: what it gets is stored and shared.
                self.forget(s.key.clone()).await;
                return Box::pin(self.fetch(
                    ex,
                    RequestBody::empty(),
                    None,
                    None,
                    leader,
                    fwd,
                    reason,
                ))
                .await;
            }
            let merged = merge::merge_304(&stored, &rparts.headers);
            let cc = ResponseDirectives::parse(&merged);
            let entry = refreshed(
                s,
                merged,
                &cc,
                request_time,
                response_time,
                ex.route.sharing,
            );
            // The merged headers may no longer allow the entry where it is
            // (a 304 that says `private` or `no-store` now, or a new Vary):
            // it is dropped, and this client alone gets the refreshed copy.
            let merged = entry.headers.to_map(0);
            let still_storable = self
                .storability(ex, s.status, &cc, &merged, true)
                .is_ok_and(|(storability, variant)| {
                    let key = match storability {
                        Storability::Shared => ex.public_key(),
                        _ => ex.own_key(),
                    };
                    *key == s.key && variant == s.variant
                });
            let (entry, shared) = if still_storable {
                match self.cache.store_refresh(s, entry, ticket) {
                    StoreOutcome::Stored(e) => (e.clone(), FlightOutcome::Entry(e)),
                    StoreOutcome::Outdated(e) => (e, FlightOutcome::NotShared),
                }
            } else {
                self.forget(s.key.clone()).await;
                (Arc::new(entry), FlightOutcome::NotShared)
            };
            if let Some(leader) = leader {
                leader.complete(shared);
            }
            let status = CacheStatus::fwd(fwd).fwd_status(304);
            let mut res = self.serve(ex, &entry, status, Outcome::Revalidated).await;
            // What the 304 says to this client only (its cookies) is never
            // stored; it reaches this client alone.
            merge::copy_per_client(&rparts.headers, res.headers_mut());
            return res;
        }
        if status.is_server_error()
            && let Some(s) = &stale
            && stale_if_error_allows(s, &ex.req_cc, self.cache.clock().now())
        {
            if let Some(leader) = leader {
                let e = UpstreamError::Other(format!("upstream answered {status}"));
                leader.complete(FlightOutcome::Failed(e));
            }
            let cs = CacheStatus::fwd("stale")
                .fwd_status(status.as_u16())
                .detail("stale-if-error");
            return self.serve(ex, s, cs, Outcome::StaleIfError).await;
        }

        let outcome = if stale.is_some() {
            Outcome::Refetched
        } else {
            Outcome::Miss
        };
        let res_cc = ResponseDirectives::parse(&rparts.headers);
        let decision = self.storability(ex, status, &res_cc, &rparts.headers, leader.is_some());
        let mut client_headers = rparts.headers.clone();
        forward::client_response_headers(&mut client_headers, ex.parts.version);
        let mut cs = CacheStatus::fwd(fwd).fwd_status(status.as_u16());
        let body = match decision {
            Ok((storable, variant)) => {
                let key = match storable {
                    Storability::Shared => ex.public_key().clone(),
                    _ => ex.own_key().clone(),
                };
                let (freshness, timing) = stored_freshness(
                    status,
                    &rparts.headers,
                    &res_cc,
                    request_time,
                    response_time,
                    ex.route.sharing,
                );
                let mut stored = rparts.headers;
                stored.remove(AGE);
                stored.remove(cache_status::NAME);
                let plan = FillPlan {
                    key,
                    variant,
                    dialect: ex.route.dialect.clone(),
                    request: clone_parts(&ex.parts),
                    status,
                    headers: stored,
                    timing,
                    freshness: freshness.clone(),
                    ticket,
                    max_bytes: ex.config.limits.max_cacheable_body_bytes,
                    read_timeout: ex.route.upstream.read_timeout(),
                };
                cs = cs
                    .stored(true)
                    .ttl(freshness.lifetime.as_secs() as i64 - timing.initial_age.as_secs() as i64);
                let rx = fill::spawn(self.cache.clone(), &self.fills, plan, rbody, leader);
                ProxyBody::channel(rx, self.metrics.bytes_counter(false))
            }
            Err(why) => {
                if let Some(leader) = leader {
                    leader.complete(FlightOutcome::NotShared);
                    // A failing upstream's errors keep collapsing: the
                    // herd should not reach it while it is down.
                    if why.is_some() && !status.is_server_error() {
                        self.uncacheable.insert(
                            ex.own_key().clone(),
                            self.cache.clock().now() + HIT_FOR_PASS,
                        );
                    }
                }
                if let Some(why) = why {
                    cs = cs.detail(why);
                }
                ProxyBody::upstream(
                    rbody,
                    ex.route.upstream.read_timeout(),
                    self.metrics.bytes_counter(false),
                )
            }
        };
        self.metrics.outcome(outcome);
        if status == StatusCode::OK && conditional::not_modified(&ex.parts.headers, &client_headers)
        {
            // The client already has this version; the fill goes on without it.
            let mut res = respond::error(StatusCode::NOT_MODIFIED, "", cs);
            *res.body_mut() = ProxyBody::empty();
            res.headers_mut().remove(http::header::CONTENT_TYPE);
            for name in [
                http::header::ETAG,
                http::header::CACHE_CONTROL,
                http::header::DATE,
                http::header::VARY,
                http::header::LAST_MODIFIED,
                http::header::EXPIRES,
                http::header::CONTENT_LOCATION,
            ] {
                for v in client_headers.get_all(&name) {
                    res.headers_mut().append(name.clone(), v.clone());
                }
            }
            return res;
        }
        client_headers.append(cache_status::NAME, cs.value());
        let mut res = Response::new(body);
        *res.status_mut() = status;
        *res.headers_mut() = client_headers;
        res
    }

    /// `Ok` with the storability and variant when the response will be
    /// stored, `Err` with the reason (for `Cache-Status: detail`) when not.
    fn storability(
        &self,
        ex: &Exchange,
        status: StatusCode,
        res_cc: &ResponseDirectives,
        headers: &HeaderMap,
        leading: bool,
    ) -> Result<(Storability, revcache_core::entry::Variant), Option<&'static str>> {
        if !leading {
            return Err(None);
        }
        let too_large = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > ex.config.limits.max_cacheable_body_bytes);
        if too_large {
            return Err(Some("too-large"));
        }
        let variant = vary::variant_of(headers, &ex.parts.headers, &self.partition_key)
            .ok_or(Some("vary-star"))?;
        // A caller known by something that is not partition material has no
        // partition of its own: only what may be shared is stored for it.
        let unpartitioned = ex.has_credentials && ex.partition.is_none();
        match ex.route.dialect.storage(&ex.parts, status, headers) {
            // The dialect vouches for it; only the caller's partition sees it.
            Storage::Partitioned if !unpartitioned => {
                return Ok((Storability::Private, variant));
            }
            Storage::Never(why) => return Err(Some(why)),
            Storage::Partitioned | Storage::Rfc => {}
        }
        match storability(
            &ex.parts.method,
            status,
            &ex.req_cc,
            res_cc,
            headers,
            ex.has_credentials,
            ex.route.sharing,
        ) {
            Storability::No(why) => Err(Some(why)),
            Storability::Private if unpartitioned => Err(Some("credentials")),
            s => Ok((s, variant)),
        }
    }
}

fn refreshed(
    stale: &Entry,
    mut merged: HeaderMap,
    cc: &ResponseDirectives,
    request_time: SystemTime,
    response_time: SystemTime,
    sharing: crate::settings::Sharing,
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

/// The authority the request addressed: its Host header, else the URI's.
fn addressed_host(parts: &request::Parts) -> &str {
    parts
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
}

fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map_or(host, |h| &h[1..]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

fn clone_parts(parts: &request::Parts) -> request::Parts {
    let mut req = Request::new(());
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    req.into_parts().0
}
