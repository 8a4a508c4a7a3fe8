//! The caching proxy service: one client request in, one response out.
//!
//! The flow, as [`Proxy::dispatch`] reads (see ARCHITECTURE.md):
//!
//! 1. **admit** (`admission`): limits, sanitizing, the route, the
//!    dialect's classification, the caller's identity;
//! 2. writes and passes are relayed (`pass`); cacheable requests go on:
//! 3. **lookup** (`lookup`) in memory, and **decide** (`decide`) once what
//!    the entry may do;
//! 4. **serve** (`serve`) a fresh entry at once, or
//! 5. join the key's **flight** (`flight`): the leader reads the disk tier,
//!    then serves or **fetches** (`fetch`, `revalidate`) and fills the
//!    cache (`fill`); waiters get its outcome or fetch on their own after
//!    a deadline.

mod admission;
pub mod body;
pub mod cache_status;
mod decide;
pub mod egress;
mod exchange;
mod fetch;
mod fill;
pub mod flight;
pub mod forward;
mod links;
mod lookup;
mod pass;
mod post;
pub mod range;
pub mod request_headers;
mod respond;
mod revalidate;
mod serve;
mod tee;
pub mod upstream;
pub mod upstream_tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use revcache_core::{Cache, FillTicket, PartitionKey, PrimaryKey};
use revcache_shared::SharedTier;

use self::admission::{Admitted, Kind};
use self::body::{ProxyBody, RequestBody};
use self::cache_status::CacheStatus;
use self::decide::Candidate;
use self::exchange::Exchange;
use self::fetch::Fetch;
use self::flight::{FlightOutcome, Flights, Leader, Role};
use crate::access_log::{self, AccessLog};
use crate::credential;
use crate::interim::InterimConnection;
use crate::invalidator::Invalidator;
use crate::metrics::{Metrics, Outcome, UpstreamReason};
use crate::route::{RouteChanges, RouteError, Router};
use crate::settings::{Limits, PartitionSettings, RangeMiss, Settings};

pub struct Proxy {
    cache: Arc<Cache>,
    fills: Arc<fill::Fills>,
    /// The routes and settings requests read, swapped whole by a reload.
    active: Arc<ArcSwap<ActiveConfig>>,
    flights: Flights,
    metrics: Arc<Metrics>,
    invalidator: Arc<Invalidator>,
    partition_key: PartitionKey,
    /// Keys whose last fetch could not be stored (hit-for-pass), until
    /// when: their requests skip the flight, which could only make them
    /// wait for a response nobody else may use.
    uncacheable: quick_cache::sync::Cache<PrimaryKey, SystemTime>,
    /// The shared tier (L3), when nodes share one cache.
    shared: Option<Arc<SharedTier>>,
    /// One line per request, when configured.
    access_log: Option<Arc<AccessLog>>,
}

/// How long a key whose response could not be stored skips the flight.
const HIT_FOR_PASS: Duration = Duration::from_secs(120);
/// Keys remembered as uncacheable at most.
const HIT_FOR_PASS_KEYS: usize = 65_536;

/// What a config reload swaps: every setting a request reads. A request
/// keeps the one it started under to its end.
pub struct ActiveConfig {
    pub router: Router,
    pub limits: Limits,
    pub partition: PartitionSettings,
    pub range_miss: RangeMiss,
    /// `cache.targeted_cache_control`.
    pub targeted: Vec<http::HeaderName>,
    /// The targeted fields removed from answers to clients, if any.
    pub strip_targeted: bool,
    sanitizer: request_headers::Sanitizer,
}

impl ActiveConfig {
    /// Builds the config `settings` describe, keeping the unchanged routes
    /// of `previous` (see [`Router::rebuild`]).
    pub fn build(
        settings: &Settings,
        previous: Option<&ActiveConfig>,
        now: SystemTime,
        partition_key: &PartitionKey,
    ) -> Result<(Self, RouteChanges), RouteError> {
        let (router, changes) = Router::rebuild(
            &settings.routes,
            &settings.limits,
            previous.map(|p| &p.router),
            now,
            partition_key,
        )?;
        Ok((
            ActiveConfig {
                router,
                limits: settings.limits.clone(),
                partition: settings.partition.clone(),
                range_miss: settings.cache.range_miss,
                targeted: settings.cache.targeted_cache_control.clone(),
                strip_targeted: !settings.cache.forward_targeted_cache_control,
                sanitizer: request_headers::Sanitizer::new(&settings.forwarding),
            },
            changes,
        ))
    }
}

impl Proxy {
    pub fn new(
        settings: &Settings,
        partition_key: PartitionKey,
        cache: Arc<Cache>,
        shared: Option<Arc<SharedTier>>,
        access_log: Option<Arc<AccessLog>>,
    ) -> Result<Arc<Self>, RouteError> {
        let flights = Flights::default();
        let active = Arc::new(ArcSwap::from_pointee(
            ActiveConfig::build(settings, None, cache.clock().now(), &partition_key)?.0,
        ));
        let metrics = Arc::new(Metrics::new(
            cache.clone(),
            flights.clone(),
            active.clone(),
            shared.clone(),
            access_log
                .as_ref()
                .map(|log| log.counters().clone())
                .unwrap_or_default(),
        ));
        let invalidator = Arc::new(Invalidator::new(
            cache.clone(),
            metrics.clone(),
            active.clone(),
            shared.clone(),
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
            shared,
            access_log,
        }))
    }

    /// The shared tier, when configured.
    pub fn shared(&self) -> Option<&Arc<SharedTier>> {
        self.shared.as_ref()
    }

    /// The access log, when one is configured.
    pub fn access_log(&self) -> Option<&Arc<AccessLog>> {
        self.access_log.as_ref()
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

    /// The key partitions are hashed with.
    pub fn partition_key(&self) -> &PartitionKey {
        &self.partition_key
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

    /// Serves one client request.
    pub async fn handle(
        self: &Arc<Self>,
        req: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<ProxyBody> {
        self.serve_client(req, client, None).await
    }

    /// Serves one client request of a listener's connection; `interims`
    /// relays the upstream's 1xx to an HTTP/1.1 client.
    pub(crate) async fn serve_client(
        self: &Arc<Self>,
        req: Request<Incoming>,
        client: SocketAddr,
        interims: Option<InterimConnection>,
    ) -> Response<ProxyBody> {
        if let Some(log) = &self.access_log {
            return Box::pin(self.logged(req, client, interims, log.clone())).await;
        }
        // The request line is kept for the log only when debug is on: the
        // hit path does not pay for a log line nobody reads.
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return self.dispatch(req, client, interims).await;
        }
        let started = Instant::now();
        let method = req.method().clone();
        let uri = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let uri = credential::redact_target(uri, &self.active.load().partition.query_params)
            .unwrap_or_else(|| uri.to_owned());
        let res = self.dispatch(req, client, interims).await;
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

    /// Serves one client request and writes its access-log line once its
    /// response body has gone out.
    async fn logged(
        self: &Arc<Self>,
        req: Request<Incoming>,
        client: SocketAddr,
        interims: Option<InterimConnection>,
        log: Arc<AccessLog>,
    ) -> Response<ProxyBody> {
        let line = access_log::RequestLine::of(
            &req,
            client.ip(),
            self.cache.clock().now(),
            &self.active.load().partition.query_params,
        );
        let (res, note) = access_log::noted(self.dispatch(req, client, interims)).await;
        let pending = log.begin(line, note, &res);
        res.map(|body| ProxyBody::logged(body, pending))
    }

    /// admit → lookup → decide → serve | flight | forward.
    async fn dispatch(
        self: &Arc<Self>,
        req: Request<Incoming>,
        client: SocketAddr,
        interims: Option<InterimConnection>,
    ) -> Response<ProxyBody> {
        let config = self.active.load_full();
        let mut now = self.cache.clock().now();
        let admitted = admission::admit(config, req, client, &self.partition_key, now);
        let Admitted {
            exchange: mut ex,
            mut body,
            exceeded,
            mut kind,
        } = match admitted {
            Ok(a) => a,
            Err(rejection) => return self.reject(rejection),
        };
        ex.interims = interims;
        access_log::note_route(&ex.route);
        ex.route.counters(&self.metrics).request();
        if let Kind::ReadBody { max, body: unread } = kind {
            match Box::pin(admission::read_body(&mut ex, unread, max)).await {
                Ok((read_kind, read)) => (kind, body) = (read_kind, read),
                Err(rejection) => return self.reject(rejection),
            }
            now = self.cache.clock().now();
        }
        // Links in the answer that point at the upstream point back here.
        let links = ex
            .route
            .dialect
            .rewrites_links()
            .then(|| links::Rewrite::of(&ex))
            .flatten();
        let range = ex.range.clone();
        let strip = ex.config.strip_targeted.then(|| ex.config.clone());
        let res = self.answer(ex, body, exceeded, kind, now).await;
        let mut res = match links {
            Some(rewrite) => rewrite.apply(res).await,
            None => res,
        };
        if let Some(config) = strip {
            for name in &config.targeted {
                res.headers_mut().remove(name);
            }
        }
        match range {
            Some(range) => range.answer(res),
            None => res,
        }
    }

    /// Serves an admitted request as its kind says.
    async fn answer(
        self: &Arc<Self>,
        ex: Exchange,
        body: RequestBody,
        exceeded: Option<Arc<AtomicBool>>,
        kind: Kind,
        now: SystemTime,
    ) -> Response<ProxyBody> {
        // Only the memory hit runs inline; every other path is boxed, so
        // this future stays small and a hit does not move the others.
        match kind {
            // A body classified again as needing a body is forwarded.
            Kind::Write | Kind::ReadBody { .. } => Box::pin(self.write(ex, body, exceeded)).await,
            Kind::Pass(fwd) => {
                let pass = self.forward_plain(
                    &ex,
                    body,
                    exceeded,
                    UpstreamReason::Bypass,
                    fwd,
                    Outcome::Bypass,
                );
                Box::pin(pass).await.0
            }
            Kind::Cacheable => {
                let (entry, uri_known) = self.find(&ex);
                let candidate = Candidate::decided(
                    entry,
                    uri_known,
                    &ex,
                    now,
                    self.invalidator.revalidate_before(),
                );
                if let Some(serving) = candidate.serving()
                    && let Some(res) = self.serve_now(&ex, serving, now)
                {
                    return res;
                }
                Box::pin(self.cached(ex, body, exceeded, candidate)).await
            }
        }
    }

    /// Everything but a memory hit: an entry whose body is in a file, the
    /// single flight, the upstream.
    async fn cached(
        self: &Arc<Self>,
        ex: Exchange,
        body: RequestBody,
        exceeded: Option<Arc<AtomicBool>>,
        candidate: Candidate,
    ) -> Response<ProxyBody> {
        if let Some(serving) = candidate.serving() {
            return self.serve_decided(&ex, serving).await;
        }
        let known_uncacheable = candidate.entry.is_none()
            && self
                .uncacheable
                .get(ex.own_key())
                .is_some_and(|until| self.cache.clock().now() < until);
        if !known_uncacheable {
            // One deadline for all of this request's waiting, however
            // often a HEAD leader sends it to join again.
            let deadline = tokio::time::Instant::now() + ex.config.limits.collapsed_wait_timeout;
            loop {
                // Before the join: a leader hands its waiters what it reads
                // under this ticket, and they check it (`Waiter::wait_until`).
                let ticket = self.cache.begin_fill();
                let waiter = match self.flights.join(ex.own_key()) {
                    Role::Lead(leader) => {
                        return self
                            .lead(ex, body, exceeded, candidate, leader, ticket)
                            .await;
                    }
                    Role::Wait(waiter) => waiter,
                };
                match waiter.wait_until(deadline, &self.cache).await {
                    Some(FlightOutcome::Entry(e, _)) if self.may_answer(&ex, &e) => {
                        let status = CacheStatus::hit().collapsed();
                        return self.serve(&ex, &e, status, Outcome::Collapsed).await;
                    }
                    Some(FlightOutcome::Failed(err)) => {
                        let stale = candidate.stale();
                        let disconnected = err.is_disconnection();
                        if let Some(res) = self
                            .stale_if_error(&ex, stale, None, true, disconnected)
                            .await
                        {
                            return res;
                        }
                        let status = CacheStatus::fwd(candidate.fwd()).collapsed();
                        return self.upstream_failed(&err, status);
                    }
                    // A GET may lead the next flight and fill the entry;
                    // a HEAD could only read the disk again, and relays.
                    Some(FlightOutcome::Retry) if ex.parts.method != http::Method::HEAD => {
                        continue;
                    }
                    Some(_) => break,
                    None => {
                        tracing::debug!(
                            target = ex.target(),
                            "collapsed wait timed out; fetching alone"
                        );
                        break;
                    }
                }
            }
        }
        self.upstream(&ex, body, exceeded, candidate, None).await
    }

    /// Leads `ex`'s flight: reads the disk tier once for every request
    /// behind it, then serves what it found or asks the upstream. What it
    /// hands the waiters carries `ticket`, taken before any of it was read.
    async fn lead(
        self: &Arc<Self>,
        ex: Exchange,
        body: RequestBody,
        exceeded: Option<Arc<AtomicBool>>,
        mut candidate: Candidate,
        leader: Leader,
        ticket: FillTicket,
    ) -> Response<ProxyBody> {
        if candidate.entry.is_none() {
            // A leader after another flight ended finds what that one
            // promoted in memory.
            let found = match self.find(&ex).0 {
                Some(e) => Some(e),
                None => match self.find_on_disk(&ex).await {
                    Some(e) => Some(e),
                    None => self.find_shared(&ex).await,
                },
            };
            if found.is_some() {
                candidate = Candidate::decided(
                    found,
                    true,
                    &ex,
                    self.cache.clock().now(),
                    self.invalidator.revalidate_before(),
                );
            }
        }
        if let Some(serving) = candidate.serving() {
            leader.finish(FlightOutcome::Entry(serving.entry.clone(), ticket));
            return self.serve_decided(&ex, serving).await;
        }
        if ex.parts.method == http::Method::HEAD {
            // A HEAD cannot fill a GET entry: one of the waiters leads.
            leader.finish(FlightOutcome::Retry);
            return self.upstream(&ex, body, exceeded, candidate, None).await;
        }
        // One flight across nodes: when another node is fetching this key,
        // wait (until the same deadline as a local waiter) for what it
        // shares.
        if candidate.entry.is_none()
            && let Some(entry) = self.wait_for_other_node(&ex).await
        {
            candidate = Candidate::decided(
                Some(entry),
                true,
                &ex,
                self.cache.clock().now(),
                self.invalidator.revalidate_before(),
            );
            if let Some(serving) = candidate.serving() {
                leader.finish(FlightOutcome::Entry(serving.entry.clone(), ticket));
                return self.serve_decided(&ex, serving).await;
            }
        }
        self.upstream(&ex, body, exceeded, candidate, Some(leader))
            .await
    }

    /// Asks the upstream for a cacheable request the cache cannot answer:
    /// `only-if-cached` ends here with a 504 (RFC 9111 §5.2.1.7); a HEAD is
    /// relayed; a GET is fetched, and stored when it leads the flight.
    async fn upstream(
        &self,
        ex: &Exchange,
        body: RequestBody,
        exceeded: Option<Arc<AtomicBool>>,
        candidate: Candidate,
        leader: Option<Leader>,
    ) -> Response<ProxyBody> {
        if ex.req_cc.only_if_cached {
            if let Some(leader) = leader {
                leader.finish(FlightOutcome::Retry);
            }
            return self.only_if_cached_miss();
        }
        let fwd = candidate.fwd();
        if let Some(hold) = ex
            .rate_subject()
            .and_then(|subject| ex.route.dialect.hold(subject, self.cache.clock().now()))
            && hold.closed
        {
            if let Some(leader) = leader {
                leader.finish(FlightOutcome::Retry);
            }
            return self.held_back(hold, fwd);
        }
        let (reason, outcome) = candidate.upstream_reason();
        // A range that will not be answered from a stored whole goes
        // upstream as the client asked it.
        if ex.parts.method == http::Method::HEAD
            || (ex.range.is_some()
                && (leader.is_none() || ex.config.range_miss == RangeMiss::Forward))
        {
            if let Some(leader) = leader {
                leader.finish(FlightOutcome::Retry);
            }
            return self
                .forward_plain(ex, body, exceeded, reason, fwd, outcome)
                .await
                .0;
        }
        let fetch = Fetch {
            stale: candidate.entry.map(|(e, _)| e),
            leader,
            fwd,
            reason,
        };
        self.fetch(ex, body, exceeded, fetch).await
    }
}
