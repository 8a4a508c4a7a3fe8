//! The admin API, on its own listener (loopback by default): the
//! dashboard, metrics, health, readiness, purges, stats and their history,
//! and event ingestion. Who may call it is [`crate::admin_access`]'s
//! decision, made before any endpoint runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use revcache_core::{DiskState, Tag};

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::admin_access::{AdminAccess, Refusal};
use crate::admin_query;
use crate::dialect::Invalidation;
use crate::events::{Event, EventError, EventFraming};
use crate::metrics::InvalidationSource;
use crate::proxy::Proxy;
use crate::proxy::body::ProxyBody;
use crate::reload::Reloader;
use crate::stats_history::StatsHistory;

/// Largest event batch accepted in one POST.
/// GitHub delivers payloads of up to 25 MB.
const MAX_EVENT_BODY: usize = 26 << 20;
/// Shared-tier entries `/inspect` reads at most.
const INSPECT_SHARED_MAX: usize = 100_000;

pub struct Admin {
    proxy: Arc<Proxy>,
    /// Swapped by a reload.
    access: Arc<ArcSwap<AdminAccess>>,
    reloader: Arc<Reloader>,
    ready: Arc<AtomicBool>,
    /// What `/stats/history` answers; the server's sampler fills it.
    history: Arc<StatsHistory>,
    /// `disk.required`: not ready while the disk tier is disabled.
    disk_required: bool,
}

impl Admin {
    pub fn new(
        proxy: Arc<Proxy>,
        access: Arc<ArcSwap<AdminAccess>>,
        reloader: Arc<Reloader>,
        ready: Arc<AtomicBool>,
        history: Arc<StatsHistory>,
    ) -> Self {
        Admin {
            proxy,
            access,
            reloader,
            ready,
            history,
            disk_required: false,
        }
    }

    /// Makes `/readyz` answer 503 while the disk tier is disabled.
    pub fn disk_required(mut self, required: bool) -> Self {
        self.disk_required = required;
        self
    }

    pub async fn handle(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        // A route whose dialect verifies each event's signature (GitHub's
        // webhooks, which cannot send a bearer token) authenticates its
        // events itself.
        let signed = req
            .uri()
            .path()
            .strip_prefix("/events/")
            .and_then(|name| self.proxy.config().router.by_name(name).cloned())
            .is_some_and(|route| route.dialect.verifies_events());
        if let Err(refusal) = self.access.load().check(&req, signed) {
            tracing::debug!(path = req.uri().path(), %refusal, "admin request refused");
            let mut res = json(
                refusal.status(),
                &serde_json::json!({"error": refusal.to_string()}),
            );
            if refusal == Refusal::Unauthorized {
                res.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"revcache-admin\""),
                );
            }
            return res;
        }
        let path = req.uri().path();
        if let Some(res) = crate::dashboard::respond(req.method(), path) {
            return res;
        }
        match (req.method(), path) {
            (&Method::GET, "/metrics") => {
                let mut res = Response::new(ProxyBody::text(self.proxy.metrics().encode()));
                res.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                res
            }
            (&Method::GET, "/healthz") => {
                json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
            }
            (&Method::GET, "/readyz") => {
                let now = self.proxy.cache().clock().now();
                let feeds: serde_json::Map<String, serde_json::Value> = self
                    .proxy
                    .config()
                    .router
                    .routes()
                    .iter()
                    .filter_map(|r| {
                        r.dialect
                            .feed()
                            .map(|f| (r.name.clone(), f.healthy(now).into()))
                    })
                    .collect();
                let state = self.proxy.cache().disk_state();
                let disk_down = matches!(state, DiskState::Disabled { .. });
                // A disabled disk tier leaves the instance ready (it serves
                // from memory, and purges report what the disk kept) unless
                // the disk tier is required.
                let (status, text) = if !self.ready.load(Ordering::SeqCst) {
                    (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
                } else if disk_down && self.disk_required {
                    (StatusCode::SERVICE_UNAVAILABLE, "disk tier disabled")
                } else {
                    (StatusCode::OK, "ready")
                };
                let disk = crate::stats::disk_tier(state);
                // A node without Redis still serves (from its own tiers):
                // ready, and the shared tier's state says why it shares
                // nothing.
                let shared = self.proxy.shared().map(|s| s.healthy());
                json(
                    status,
                    &serde_json::json!({"status": text, "disk_tier": disk,
                        "event_feeds_healthy": feeds, "shared_tier_healthy": shared}),
                )
            }
            (&Method::GET, "/stats") => json(StatusCode::OK, &crate::stats::stats(&self.proxy)),
            (&Method::GET, "/stats/history") => {
                let since = match admin_query::history_since(req.uri().query().unwrap_or("")) {
                    Ok(since) => since,
                    Err(message) => return bad_request(message),
                };
                // Up to 900 samples to format: off the runtime's threads.
                let history = self.history.clone();
                match tokio::task::spawn_blocking(move || history.json(since)).await {
                    Ok(body) => json(StatusCode::OK, &body),
                    Err(e) => json(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &serde_json::json!({"error": e.to_string()}),
                    ),
                }
            }
            (&Method::POST, "/sweep") => self.sweep().await,
            (&Method::POST, "/reload") => self.reload().await,
            (&Method::GET, "/inspect") => self.inspect(req.uri().query().unwrap_or("")).await,
            (&Method::POST, "/purge") => self.purge(req.uri().query().unwrap_or("")).await,
            (_, "/purge" | "/sweep" | "/reload") => method_not_allowed("POST"),
            (_, "/metrics" | "/healthz" | "/readyz" | "/stats" | "/stats/history" | "/inspect") => {
                method_not_allowed("GET")
            }
            (&Method::POST, p) if p.starts_with("/events/") => {
                let name = p["/events/".len()..].to_owned();
                self.events(&name, req).await
            }
            (_, p) if p.starts_with("/events/") => method_not_allowed("POST"),
            _ => json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": "not found; endpoints: / (the dashboard) /metrics /healthz /readyz /stats /stats/history /inspect /purge /sweep /reload /events/<route>"}),
            ),
        }
    }

    /// Entries of every tier as JSON rows (what `revcache inspect` prints).
    /// Paginated: at most `limit` rows (100 unless asked, 1000 at most)
    /// after the `after` cursor; `next` is the query of the next page.
    async fn inspect(&self, query: &str) -> Response<ProxyBody> {
        let q = match admin_query::inspect(query) {
            Ok(q) => q,
            Err(message) => return bad_request(message),
        };
        let cache = self.proxy.cache().clone();
        let filter = q.clone();
        let rows = tokio::task::spawn_blocking(move || {
            crate::inspect::rows(&cache, filter.url.as_deref(), filter.tag.as_deref())
        })
        .await;
        let rows = match (rows, self.proxy.shared()) {
            (Ok(Ok(rows)), Some(shared)) => {
                let routes: Vec<u32> = self
                    .proxy
                    .config()
                    .router
                    .routes()
                    .iter()
                    .map(|r| r.id)
                    .collect();
                let tags: Vec<Tag> = q
                    .tag
                    .iter()
                    .flat_map(|t| routes.iter().map(|r| Tag::new(*r, t.as_str())))
                    .collect();
                let entries = shared
                    .entries(q.url.as_deref(), &tags, &routes, INSPECT_SHARED_MAX)
                    .await;
                let now = self.proxy.cache().clock().now();
                Ok(Ok(crate::inspect::with_shared(rows, &entries, now)))
            }
            (rows, _) => rows,
        };
        let rows =
            rows.map(|r| r.map(|rows| crate::inspect::page(rows, q.after.as_deref(), q.limit)));
        match rows {
            Ok(Ok((rows, next))) => {
                let next = next.map(|cursor| q.next(&cursor));
                json(
                    StatusCode::OK,
                    &serde_json::json!({ "entries": rows, "next": next }),
                )
            }
            Ok(Err(e)) => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &serde_json::json!({"error": e.to_string()}),
            ),
            Err(e) => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &serde_json::json!({"error": e.to_string()}),
            ),
        }
    }

    /// Event ingestion: one JSON event, or newline-delimited events.
    /// Good events are applied even when others in the batch are rejected.
    async fn events(&self, name: &str, req: Request<Incoming>) -> Response<ProxyBody> {
        let config = self.proxy.config();
        let body_timeout = config.limits.request_body_timeout;
        let Some(route) = config.router.by_name(name).cloned() else {
            return json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": format!("no route named {name:?}")}),
            );
        };
        if route.dialect.feed().is_none() {
            return json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": format!(
                    "route {name:?} has no event feed (dialect {}; set events for the route)", route.dialect.name())}),
            );
        }
        let (parts, body) = req.into_parts();
        let read = Limited::new(body, MAX_EVENT_BODY).collect();
        let body = match tokio::time::timeout(body_timeout, read).await {
            Err(_) => {
                return json(
                    StatusCode::REQUEST_TIMEOUT,
                    &serde_json::json!({"error": format!(
                        "events: the body did not arrive within {:?} (limits.request_body_timeout)", body_timeout)}),
                );
            }
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e)) => {
                return bad_request(format!(
                    "events: cannot read the body ({e}); the limit is {MAX_EVENT_BODY} bytes"
                ));
            }
        };
        let event = |body| Event {
            headers: &parts.headers,
            body,
        };
        let events: Vec<Event<'_>> = match route.dialect.event_framing() {
            EventFraming::Whole => vec![event(&body[..])],
            // One object (possibly pretty-printed), or one object per line.
            EventFraming::JsonOrLines
                if serde_json::from_slice::<serde_json::Value>(&body)
                    .is_ok_and(|v| v.is_object()) =>
            {
                vec![event(&body[..])]
            }
            EventFraming::JsonOrLines => body
                .split(|b| *b == b'\n')
                .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                .map(event)
                .collect(),
        };
        if events.is_empty() {
            return bad_request("events: the body holds no event".into());
        }
        // The batch's invalidations reach the disk in one commit.
        let mut accepted = 0;
        let mut rejected = Vec::new();
        let mut unauthenticated = false;
        let results = self.proxy.invalidator().ingest(&route, &events).await;
        for (i, result) in results.into_iter().enumerate() {
            match result {
                Ok(_) => accepted += 1,
                Err(e) => {
                    unauthenticated |= matches!(e, EventError::Unauthenticated(_));
                    rejected.push(serde_json::json!({"line": i + 1, "error": e.to_string()}));
                }
            }
        }
        let status = if unauthenticated {
            StatusCode::UNAUTHORIZED
        } else if rejected.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        };
        json(
            status,
            &serde_json::json!({"accepted": accepted, "rejected": rejected}),
        )
    }

    /// Reloads the config (as SIGHUP does) and says what changed, or why
    /// the new config was refused (422; the previous one stays in force).
    async fn reload(&self) -> Response<ProxyBody> {
        match self.reloader.reload().await {
            Ok(report) => json(
                StatusCode::OK,
                &serde_json::json!({
                    "status": "applied",
                    "routes": {
                        "kept": report.routes.kept, "changed": report.routes.changed,
                        "added": report.routes.added, "removed": report.routes.removed,
                    },
                    "restart_required": report.restart_required,
                }),
            ),
            Err(e) => json(
                StatusCode::UNPROCESSABLE_ENTITY,
                &serde_json::json!({"status": "rejected", "error": e.to_string()}),
            ),
        }
    }

    /// Runs the disk tier's sweeper until nothing is due.
    async fn sweep(&self) -> Response<ProxyBody> {
        let cache = self.proxy.cache().clone();
        let report = tokio::task::spawn_blocking(move || cache.disk().map(|d| d.sweep_all())).await;
        match report {
            Ok(Some(Ok(r))) => json(
                StatusCode::OK,
                &serde_json::json!({"idle": r.idle, "over_budget": r.over_budget}),
            ),
            Ok(None) => bad_request("sweep: this instance runs without a disk tier".into()),
            Ok(Some(Err(e))) => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &serde_json::json!({"error": e.to_string()}),
            ),
            Err(e) => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &serde_json::json!({"error": e.to_string()}),
            ),
        }
    }

    async fn purge(&self, query: &str) -> Response<ProxyBody> {
        let admin_query::PurgeQuery {
            scope: name,
            value,
            route: route_name,
        } = match admin_query::purge(query) {
            Ok(q) => q,
            Err(message) => return bad_request(message),
        };
        // One route when named; without one, every route's entries.
        let config = self.proxy.config();
        let route = match &route_name {
            None => None,
            Some(r) => match config.router.by_name(r) {
                Some(route) => Some(route.id),
                None => return bad_request(format!("purge: no route named {r:?}")),
            },
        };
        let invalidations = match name.as_str() {
            "url" => vec![Invalidation::Target {
                route,
                target: value.clone(),
            }],
            "prefix" => vec![Invalidation::Prefix {
                route,
                prefix: value.clone(),
            }],
            _ => config
                .router
                .routes()
                .iter()
                .filter(|r| route.is_none_or(|id| id == r.id))
                .map(|r| Invalidation::Tag(Tag::new(r.id, value.as_str())))
                .collect(),
        };
        let result = self
            .proxy
            .invalidator()
            .invalidate(invalidations, InvalidationSource::Admin)
            .await;
        match result {
            Ok(purged) => {
                tracing::info!(scope = %name, %value, purged, "purge");
                json(
                    StatusCode::OK,
                    &serde_json::json!({"purged": purged, "scope": name, "value": value}),
                )
            }
            // The disk still holds the entries: not a success, whatever
            // memory says (they would come back after a restart).
            Err(e) => {
                tracing::error!(scope = %name, %value, error = %e, "purge did not reach the disk tier");
                json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({
                        "error": e.to_string(),
                        "purged_from_memory": e.in_memory,
                        "scope": name,
                        "value": value,
                    }),
                )
            }
        }
    }
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    let mut body = value.to_string();
    body.push('\n');
    let mut res = Response::new(ProxyBody::text(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

fn bad_request(message: String) -> Response<ProxyBody> {
    json(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({"error": message}),
    )
}

fn method_not_allowed(allow: &'static str) -> Response<ProxyBody> {
    let mut res = json(
        StatusCode::METHOD_NOT_ALLOWED,
        &serde_json::json!({"error": format!("use {allow}")}),
    );
    res.headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    res
}
