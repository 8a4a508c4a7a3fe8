//! The `webdav` dialect: bodies, properties and child listings of a WebDAV
//! repository, kept correct by write-through and external invalidation.
//!
//! - GET/HEAD bodies are stored by strong ETag only (a weak ETag is never a
//!   body version); PROPFIND Depth 0 and 1 by path, depth and the requested
//!   property set (read from the request body, bounded, keyed by its hash;
//!   shapes interned); Depth infinity and oversized property sets pass
//!   through. Locks and conditional writes pass untouched,
//!   and writes are never answered from cache.
//! - Tags: `dav:res:P` (the resource), `dav:props:P` (its properties, also
//!   on every listing that shows P), `dav:list:P` (P's listing).
//! - A Depth 1 listing records each member's `getetag` in the ledger: a GET
//!   whose cached ETag it confirms needs no upstream request.
//! - With `events.trust` entries are served without asking while nothing
//!   invalidated them; without it bodies are revalidated with their ETag
//!   and properties and listings (which have no validator) refetched.

pub(crate) mod invalidate;
pub mod xml;

use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, StatusCode, request};
use revcache_core::{Entry, Invalidation, KeyClass, Ledger, Partition, Tag, Version};

use self::invalidate::norm;
use super::{Classification, Dialect, DialectReuse, Facts, Fwd, HttpDialect, NotStored, Storage};
use crate::events::{Event, EventEffect, EventError, Feed};
use crate::policy::Reuse;
use crate::settings::EventSettings;

const LEDGER_CAPACITY: usize = 1 << 20;
/// Without trust, a listing confirms member bodies for this long.
const LEDGER_WINDOW: Duration = Duration::from_secs(2);

pub struct WebdavDialect {
    route: u32,
    feed: Feed,
    ledger: Ledger,
}

impl WebdavDialect {
    pub fn new(route: u32, events: Option<&EventSettings>, now: SystemTime) -> Self {
        WebdavDialect {
            route,
            // External invalidation is always accepted; trust is opt-in.
            feed: Feed::new(
                events.and_then(|e| e.trust),
                events.and_then(|e| e.heartbeat),
                true,
                now,
            ),
            ledger: Ledger::new(LEDGER_CAPACITY),
        }
    }
}

fn depth(req: &request::Parts) -> Option<&'static str> {
    match req
        .headers
        .get("depth")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    {
        Some("0") => Some("0"),
        Some("1") => Some("1"),
        // Absent means infinity (RFC 4918 §9.1).
        _ => None,
    }
}

fn is_propfind(class: &KeyClass) -> bool {
    matches!(class, KeyClass::Named(n) if n.starts_with("PROPFIND "))
}

fn strong_etag(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .filter(|e| Version::from_etag(e).is_strong())
}

impl Dialect for WebdavDialect {
    fn name(&self) -> &'static str {
        "webdav"
    }

    fn classify(&self, req: &request::Parts) -> Classification {
        match req.method.as_str() {
            "GET" | "HEAD" => HttpDialect::new(self.route).classify(req),
            "PROPFIND" if depth(req).is_some() => Classification::NeedsBody {
                max: xml::MAX_PROPFIND_BODY,
            },
            "PROPFIND" => Classification::Pass {
                reason: Fwd::Bypass,
            },
            "OPTIONS" | "TRACE" => Classification::Pass {
                reason: Fwd::Method,
            },
            _ => Classification::Write,
        }
    }

    fn classify_body(&self, req: &request::Parts, body: &[u8]) -> Classification {
        match (depth(req), xml::requested_props(body)) {
            (Some(d), Some(props)) => Classification::Cacheable {
                class: KeyClass::Named(xml::key_class(d, &props)),
            },
            _ => Classification::Pass {
                reason: Fwd::Bypass,
            },
        }
    }

    fn endpoint_class(&self, req: &request::Parts) -> &'static str {
        match req.method.as_str() {
            "GET" | "HEAD" => "body",
            "PROPFIND" if depth(req) == Some("1") => "listing",
            "PROPFIND" => "properties",
            _ => "write",
        }
    }

    fn storage(&self, req: &request::Parts, status: StatusCode, headers: &HeaderMap) -> Storage {
        match (req.method.as_str(), status.as_u16()) {
            ("GET", 200) if strong_etag(headers).is_some() => Storage::Partitioned,
            ("GET", 200) => Storage::Never(NotStored::NoStrongValidator),
            ("PROPFIND", 207) => Storage::Partitioned,
            ("PROPFIND", _) => Storage::Never(NotStored::Status),
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
        let path = norm(req.uri.path());
        let mut tags = vec![Tag::new(self.route, format!("dav:res:{path}"))];
        if req.method == Method::GET {
            return Facts {
                version: strong_etag(headers).map(Version::from_etag),
                tags,
            };
        }
        tags.push(Tag::new(self.route, format!("dav:props:{path}")));
        if depth(req) == Some("1") {
            tags.push(Tag::new(self.route, format!("dav:list:{path}")));
            for m in xml::members(body) {
                let member = norm(&m.path);
                if member == path {
                    continue;
                }
                let t = Tag::new(self.route, format!("dav:props:{member}"));
                if !tags.contains(&t) {
                    tags.push(t);
                }
                // Some servers write getetag without its quotes.
                let etag = m.etag.as_deref().map(|e| {
                    if e.starts_with('"') || e.starts_with("W/") {
                        e.to_owned()
                    } else {
                        format!("\"{e}\"")
                    }
                });
                if let Some(etag) = etag.filter(|e| Version::from_etag(e).is_strong()) {
                    self.ledger
                        .record(self.route, partition, &member, &etag, received);
                }
            }
        }
        Facts {
            version: None,
            tags,
        }
    }

    fn reuse(&self, entry: &Entry, now: SystemTime) -> Option<DialectReuse> {
        if entry.key.class() != &KeyClass::Get && !is_propfind(entry.key.class()) {
            return None;
        }
        if self.feed.trusts(entry.timing().request_time, now) {
            return Some(DialectReuse {
                reuse: Reuse::Fresh,
                detail: Some("trusted"),
            });
        }
        if let (KeyClass::Get, Version::Strong(v), Some(since)) = (
            entry.key.class(),
            &entry.version,
            self.feed.healthy_since(now),
        ) {
            let window = self.feed.trust().unwrap_or(LEDGER_WINDOW);
            let not_before = since.max(now.checked_sub(window).unwrap_or(since));
            if self.ledger.confirms(
                self.route,
                entry.key.partition(),
                &norm(entry.key.path()),
                v,
                entry.timing().response_time,
                not_before,
            ) {
                return Some(DialectReuse {
                    reuse: Reuse::Fresh,
                    detail: Some("ledger"),
                });
            }
        }
        Some(DialectReuse {
            reuse: Reuse::Revalidate,
            detail: None,
        })
    }

    fn on_write(
        &self,
        req: &request::Parts,
        status: StatusCode,
        _headers: &HeaderMap,
        _body: Option<&[u8]>,
    ) -> Vec<Invalidation> {
        let out = invalidate::on_write(self.route, req, status);
        self.forget(&out);
        out
    }

    fn on_event(&self, event: &Event<'_>, _now: SystemTime) -> Result<EventEffect, EventError> {
        let invalidations = invalidate::on_external(self.route, event.body)?;
        self.forget(&invalidations);
        Ok(EventEffect {
            kind: "external-change".into(),
            invalidations,
            gap: false,
        })
    }

    fn feed(&self) -> Option<&Feed> {
        Some(&self.feed)
    }

    fn ledger(&self) -> Option<&Ledger> {
        Some(&self.ledger)
    }

    fn cookies_identify(&self) -> bool {
        true
    }
}

impl WebdavDialect {
    /// Ledger entries of resources a write or notice changed.
    fn forget(&self, invalidations: &[Invalidation]) {
        for inv in invalidations {
            if let Invalidation::Tag(t) = inv
                && let Some(path) = t.name().strip_prefix("dav:res:")
            {
                self.ledger.forget(self.route, path);
            }
        }
    }
}
