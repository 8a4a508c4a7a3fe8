//! The `gerrit` dialect: version-aware caching of Gerrit's REST API.
//!
//! - Change endpoints and queries are stored in the caller's partition
//!   (Gerrit ETags are per user) whatever `Cache-Control` says, tagged from
//!   the URL and the body; a change's version is its `meta_rev_id`.
//! - An entry is served without asking when the route's event feed is
//!   healthy and trusted and the entry was fetched since the feed last
//!   became healthy, or when a query result learned since then lists the
//!   change at the entry's version (the ledger). Otherwise it is
//!   revalidated with its ETag (queries have none: they are refetched).
//! - Events invalidate by tag (see `event`), and outdate ledger entries.
//! - The `)]}'` guard is stripped only for parsing; clients get the
//!   upstream's bytes.

pub mod endpoint;
pub(crate) mod event;
pub mod query;

use std::time::SystemTime;

use http::{HeaderMap, Method, StatusCode, request};
use revcache_core::{Entry, Invalidation, KeyClass, Ledger, Partition, Tag, Version};
use serde_json::Value;

use self::endpoint::{ChangeRef, Endpoint, Sub};
use super::{Classification, Dialect, DialectReuse, Facts, HttpDialect, Storage};
use crate::events::{Event, EventEffect, EventError, Feed};
use crate::policy::Reuse;
use crate::settings::EventSettings;

/// Invalidated by every change event: queries whose shape is not understood.
pub const ANY: &str = "gerrit:any";
/// Invalidated when any Depends-On footer may have changed.
pub const DEPENDSON_ANY: &str = "dependson:*";
/// Invalidated by events that can change related-changes chains.
pub const RELATED_ANY: &str = "related:*";

const XSSI: &[u8] = b")]}'";
const LEDGER_CAPACITY: usize = 1 << 20;

pub struct GerritDialect {
    route: u32,
    feed: Option<Feed>,
    ledger: Ledger,
}

impl GerritDialect {
    pub fn new(route: u32, events: Option<&EventSettings>, now: SystemTime) -> Self {
        GerritDialect {
            route,
            feed: events.map(|e| Feed::new(e.trust, e.heartbeat, e.command.is_none(), now)),
            ledger: Ledger::new(LEDGER_CAPACITY),
        }
    }

    fn endpoint(req: &request::Parts) -> Endpoint {
        Endpoint::of(req.uri.path(), req.uri.query())
    }
}

/// The JSON of a Gerrit response, without the XSSI guard.
fn json(body: &[u8]) -> Option<Value> {
    let body = body.strip_prefix(XSSI).unwrap_or(body);
    serde_json::from_slice(body).ok()
}

fn ref_tags(route: u32, id: &ChangeRef) -> Vec<Tag> {
    match id {
        ChangeRef::Number(n) => vec![Tag::new(route, format!("change:{n}"))],
        ChangeRef::ChangeId(i) => vec![Tag::new(route, format!("changeid:{i}"))],
        // Unknown id forms: only the catch-all reaches them.
        ChangeRef::Opaque(_) => vec![Tag::new(route, ANY)],
    }
}

/// `KIND:N` or `KINDid:I…` for a change reference.
fn prefixed(route: u32, kind: &str, id: &ChangeRef) -> Vec<Tag> {
    match id {
        ChangeRef::Number(n) => vec![Tag::new(route, format!("{kind}:{n}"))],
        ChangeRef::ChangeId(i) => vec![Tag::new(route, format!("{kind}id:{i}"))],
        ChangeRef::Opaque(_) => vec![Tag::new(route, ANY)],
    }
}

fn push_unique(route: u32, tags: &mut Vec<Tag>, tag: String) {
    let tag = Tag::new(route, tag);
    if !tags.contains(&tag) {
        tags.push(tag);
    }
}

/// Tags of one `ChangeInfo`; records its version in the ledger.
fn change_info_tags(route: u32, info: &Value, tags: &mut Vec<Tag>) -> Option<(u64, String)> {
    let number = info.get("_number").and_then(Value::as_u64);
    if let Some(n) = number {
        push_unique(route, tags, format!("change:{n}"));
    }
    if let Some(id) = info.get("change_id").and_then(Value::as_str) {
        push_unique(route, tags, format!("changeid:{id}"));
    }
    if let Some(p) = info.get("project").and_then(Value::as_str) {
        push_unique(route, tags, format!("project:{p}"));
    }
    let meta = info.get("meta_rev_id").and_then(Value::as_str)?;
    Some((number?, meta.to_owned()))
}

impl Dialect for GerritDialect {
    fn name(&self) -> &'static str {
        "gerrit"
    }

    fn classify(&self, req: &request::Parts) -> Classification {
        HttpDialect::new(self.route).classify(req)
    }

    fn endpoint_class(&self, req: &request::Parts) -> &'static str {
        match Self::endpoint(req) {
            Endpoint::Change { sub: Sub::Info, .. } => "change",
            Endpoint::Change {
                sub: Sub::Related { .. },
                ..
            } => "related",
            Endpoint::Change {
                sub: Sub::Revision, ..
            } => "revision",
            Endpoint::Change { .. } => "change_sub",
            Endpoint::Query { .. } => "query",
            Endpoint::Other => "other",
        }
    }

    fn storage(&self, req: &request::Parts, status: StatusCode, _headers: &HeaderMap) -> Storage {
        match (Self::endpoint(req), status) {
            (Endpoint::Other, _) => Storage::Rfc,
            (_, StatusCode::OK) if req.method == Method::GET => Storage::Partitioned,
            _ => Storage::Rfc,
        }
    }

    fn facts(
        &self,
        req: &request::Parts,
        partition: Partition,
        _status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        received: SystemTime,
    ) -> Facts {
        let etag_version = || {
            headers
                .get(http::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(Version::from_etag)
        };
        match Self::endpoint(req) {
            Endpoint::Other => {
                HttpDialect::new(self.route).facts(req, partition, _status, headers, body, received)
            }
            Endpoint::Change { id, sub } => {
                let mut tags;
                let mut version = None;
                match (sub, json(body)) {
                    (Sub::Info, Some(info)) => {
                        tags = ref_tags(self.route, &id);
                        if let Some((_, meta)) = change_info_tags(self.route, &info, &mut tags) {
                            version = Some(Version::Strong(meta.into()));
                        }
                    }
                    // A chain changes when a member gets a new patch set or
                    // status, or a new commit is stacked on a member: not on
                    // votes or comments.
                    (Sub::Related { revision }, Some(related)) => {
                        tags = prefixed(self.route, "chain", &id);
                        tags.extend(prefixed(self.route, "visibility", &id));
                        push_unique(self.route, &mut tags, RELATED_ANY.to_owned());
                        if endpoint::is_sha(&revision) {
                            push_unique(self.route, &mut tags, format!("rev:{revision}"));
                        }
                        for c in related
                            .get("changes")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            if let Some(n) = c.get("_change_number").and_then(Value::as_u64) {
                                push_unique(self.route, &mut tags, format!("chain:{n}"));
                            }
                            if let Some(sha) = c.pointer("/commit/commit").and_then(Value::as_str) {
                                push_unique(self.route, &mut tags, format!("rev:{sha}"));
                            }
                        }
                    }
                    // Content fixed by the commit: only visibility changes it.
                    (Sub::Revision, _) => tags = prefixed(self.route, "visibility", &id),
                    // Anything else, or a body we cannot read: the change's
                    // own tags reach it.
                    _ => tags = ref_tags(self.route, &id),
                }
                if tags.is_empty() {
                    tags = ref_tags(self.route, &id);
                }
                Facts {
                    version: version.or_else(etag_version),
                    tags,
                }
            }
            Endpoint::Query { q } => {
                let mut tags: Vec<Tag> = Vec::new();
                for t in query::membership_tags(&q) {
                    push_unique(self.route, &mut tags, t);
                }
                match json(body) {
                    Some(Value::Array(items)) => {
                        for info in &items {
                            if let Some((n, meta)) = change_info_tags(self.route, info, &mut tags) {
                                self.ledger.record(
                                    self.route,
                                    partition,
                                    &n.to_string(),
                                    &meta,
                                    received,
                                );
                            }
                        }
                    }
                    _ => push_unique(self.route, &mut tags, ANY.to_owned()),
                }
                Facts {
                    version: None,
                    tags,
                }
            }
        }
    }

    fn reuse(&self, entry: &Entry, now: SystemTime) -> Option<DialectReuse> {
        let endpoint = Endpoint::of(
            entry.key.path(),
            entry.key.target().split_once('?').map(|(_, q)| q),
        );
        if endpoint == Endpoint::Other || entry.key.class() != &KeyClass::Get {
            return None;
        }
        let revalidate = DialectReuse {
            reuse: Reuse::Revalidate,
            detail: None,
        };
        let Some(feed) = &self.feed else {
            return Some(revalidate);
        };
        let fetched = entry.timing().request_time;
        let received = entry.timing().response_time;
        if feed.trusts(fetched, now) {
            return Some(DialectReuse {
                reuse: Reuse::Fresh,
                detail: Some("trusted"),
            });
        }
        if let (Endpoint::Change { sub: Sub::Info, .. }, Version::Strong(v), Some(since)) =
            (&endpoint, &entry.version, feed.healthy_since(now))
        {
            let number = entry
                .tags
                .iter()
                .find_map(|t| t.name().strip_prefix("change:").map(str::to_owned));
            if let Some(n) = number
                && self
                    .ledger
                    .confirms(self.route, entry.key.partition(), &n, v, received, since)
            {
                return Some(DialectReuse {
                    reuse: Reuse::Fresh,
                    detail: Some("ledger"),
                });
            }
        }
        Some(revalidate)
    }

    fn on_write(
        &self,
        req: &request::Parts,
        status: StatusCode,
        headers: &HeaderMap,
        _body: Option<&[u8]>,
    ) -> Vec<Invalidation> {
        let mut out = HttpDialect::new(self.route).on_write(req, status, headers, None);
        if let Some(id) = endpoint::written_change(req.uri.path()) {
            out.extend(ref_tags(self.route, &id).into_iter().map(Invalidation::Tag));
            out.push(Invalidation::Tag(Tag::new(self.route, ANY)));
        }
        out
    }

    fn on_event(&self, event: &Event<'_>, _now: SystemTime) -> Result<EventEffect, EventError> {
        let parsed = event::parse(event.body)?;
        for n in &parsed.changes {
            self.ledger.forget(self.route, &n.to_string());
        }
        Ok(EventEffect {
            kind: parsed.kind,
            invalidations: parsed
                .tags
                .into_iter()
                .map(|t| Invalidation::Tag(Tag::new(self.route, t)))
                .collect(),
            gap: parsed.gap,
        })
    }

    fn feed(&self) -> Option<&Feed> {
        self.feed.as_ref()
    }

    fn ledger(&self) -> Option<&Ledger> {
        Some(&self.ledger)
    }

    /// Gerrit's web session and its XSRF token.
    fn partition_cookies(&self) -> &'static [&'static str] {
        &["GerritAccount", "XSRF_TOKEN"]
    }

    fn cookies_identify(&self) -> bool {
        true
    }
}
