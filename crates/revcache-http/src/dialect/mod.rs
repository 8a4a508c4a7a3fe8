//! Dialects: what revcache knows about one kind of upstream.
//!
//! The proxy knows nothing of Gerrit or WebDAV; it asks the route's dialect
//! whether a request is cacheable, how a response may be stored, what
//! version and tags a stored response has, when a stored entry may be
//! served without asking, what a successful write invalidates, and what an
//! upstream event invalidates. Contract for implementors: every method is
//! cheap, synchronous and never panics on input; when unsure, a dialect
//! answers conservatively (pass the request, revalidate, invalidate more).

pub mod gerrit;
pub mod github;
pub(crate) mod http;
pub mod registry;
pub mod webdav;

use std::time::SystemTime;

use ::http::request;
use ::http::{HeaderMap, HeaderName, StatusCode};
use revcache_core::{Entry, KeyClass, Ledger, Partition, Tag, Version};

pub use self::gerrit::GerritDialect;
pub use self::github::GithubDialect;
pub use self::http::HttpDialect;
pub use self::webdav::WebdavDialect;
use crate::events::{Event, EventEffect, EventError, EventFraming, Feed};
pub use crate::policy::NotStored;
use crate::policy::Reuse;
pub use crate::proxy::cache_status::Fwd;

pub use revcache_core::Invalidation;

/// What to do with a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Classification {
    /// Look it up and store it under `class`.
    Cacheable { class: KeyClass },
    /// Forward without caching, for `reason`.
    Pass { reason: Fwd },
    /// A write: forward, then apply `Dialect::on_write` if it succeeded.
    Write,
    /// The request body decides (a PROPFIND's property set): read up to
    /// `max` bytes and ask `Dialect::classify_body`.
    NeedsBody { max: usize },
}

/// How a response to a cacheable request may be stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// RFC 9111 decides (storability, partition, freshness).
    Rfc,
    /// The dialect vouches for it: store it in the caller's partition
    /// whatever `Cache-Control` says; `Dialect::reuse` decides freshness.
    Partitioned,
    /// Never store it (e.g. a body without a strong validator).
    Never(NotStored),
}

/// What a dialect learned from a complete response.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub version: Option<Version>,
    pub tags: Vec<Tag>,
}

/// A dialect's decision to serve a stored entry without RFC 9111 freshness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DialectReuse {
    pub reuse: Reuse,
    /// Cache-Status `detail`, e.g. `trusted`, `ledger`.
    pub detail: Option<&'static str>,
}

/// How a dialect changes the request headers that select a stored variant
/// (RFC 9111 §4.1) from what the response's `Vary` lists.
#[derive(Clone, Copy, Debug, Default)]
pub struct VaryRule {
    /// Headers that select a variant even when `Vary` omits them (an API
    /// version header the upstream answers by).
    pub add: &'static [HeaderName],
    /// Headers `Vary` lists that the partition already covers (the
    /// credential a partition is the hash of).
    pub ignore: &'static [HeaderName],
}

/// The upstream's rate limit holds a caller back: stored entries answer
/// instead of revalidating, and while it is `Closed` nothing of that
/// caller's goes upstream from the cache (misses are answered locally
/// with `Retry-After`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    pub until: SystemTime,
    pub closed: bool,
}

/// One rate-limit bucket of one caller, for `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitRow {
    /// The partition, as `Partition` displays it (a hash prefix).
    pub partition: String,
    /// The upstream's resource (`core`, `search`, `graphql`).
    pub resource: String,
    pub limit: u64,
    pub remaining: u64,
    pub used: u64,
    /// When the bucket refills, in seconds since the Unix epoch.
    pub reset: u64,
    /// Requests of this partition the cache answered without costing a
    /// unit of the limit (hits, and revalidations answered 304).
    pub saved: u64,
}

pub trait Dialect: Send + Sync {
    fn name(&self) -> &'static str;

    fn classify(&self, req: &request::Parts) -> Classification;

    /// Classification of a request whose body was read after `NeedsBody`.
    fn classify_body(&self, _req: &request::Parts, _body: &[u8]) -> Classification {
        Classification::Pass {
            reason: Fwd::Bypass,
        }
    }

    /// Label for per-route metrics (`change`, `query`, …).
    fn endpoint_class(&self, _req: &request::Parts) -> &'static str {
        "http"
    }

    fn storage(&self, _req: &request::Parts, _status: StatusCode, _headers: &HeaderMap) -> Storage {
        Storage::Rfc
    }

    /// Version and tags of a response about to be stored, body included,
    /// for a caller in `partition` (ledger records are scoped to it).
    /// Called once per fill, off the request path.
    fn facts(
        &self,
        req: &request::Parts,
        partition: Partition,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        received: SystemTime,
    ) -> Facts;

    /// Whether an upstream answer is a failure that stale-if-error may
    /// cover (RFC 5861 §4): server errors, and whatever the upstream uses
    /// to say "not now" (a rate limit's 403 or 429 with `Retry-After`).
    fn upstream_failure(&self, status: StatusCode, _headers: &HeaderMap) -> bool {
        status.is_server_error()
    }

    /// Whether `entry` may answer now; `None` lets RFC 9111 decide.
    fn reuse(&self, _entry: &Entry, _now: SystemTime) -> Option<DialectReuse> {
        None
    }

    /// Called after a write got a non-error (2xx/3xx) status; `body` is
    /// the response's body when `write_body` asked for it.
    fn on_write(
        &self,
        req: &request::Parts,
        status: StatusCode,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> Vec<Invalidation>;

    /// Whether a POST response with explicit freshness and a
    /// `Content-Location` equal to its target is stored as the answer to
    /// later GETs of that target (RFC 9110 §9.3.3; opt-in: an API whose
    /// POSTs return what a GET would is rare).
    fn stores_post_responses(&self) -> bool {
        false
    }

    /// At most how many bytes of a write's response `on_write` reads (a
    /// token the upstream mints); `None` streams it untouched.
    fn write_body(&self, _req: &request::Parts) -> Option<usize> {
        None
    }

    /// The partition a caller in `partition` is served from: a dialect
    /// may group credentials the upstream treats as one (tokens of one
    /// app installation). Never called for anonymous callers.
    fn regroup(&self, _headers: &HeaderMap, partition: Partition, _now: SystemTime) -> Partition {
        partition
    }

    /// Adjustments to the response's `Vary`.
    fn vary_rule(&self) -> VaryRule {
        VaryRule::default()
    }

    /// Every upstream answer, for a caller in `partition` (`None`:
    /// anonymous): rate-limit accounting.
    fn answered(
        &self,
        _partition: Option<Partition>,
        _status: StatusCode,
        _headers: &HeaderMap,
        _now: SystemTime,
    ) {
    }

    /// Whether the upstream's rate limit holds back `partition` now.
    fn hold(&self, _partition: Option<Partition>, _now: SystemTime) -> Option<Hold> {
        None
    }

    /// The cache answered a request of `partition` at no cost to its
    /// upstream rate limit.
    fn saved(&self, _partition: Option<Partition>) {}

    /// Whether URLs of the upstream in `Link` and `Location` headers are
    /// rewritten to point at revcache (an API whose pagination links are
    /// absolute: clients follow them, and must come back through the
    /// cache).
    fn rewrites_links(&self) -> bool {
        false
    }

    /// The origin (`https://cache.example`) those URLs are rewritten to;
    /// `None`: the scheme and `Host` each client used (behind a proxy that
    /// terminates TLS, configure it).
    fn public_origin(&self) -> Option<&str> {
        None
    }

    /// Rate-limit buckets the dialect tracks, for `/metrics`.
    fn rate_limits(&self) -> Vec<RateLimitRow> {
        Vec::new()
    }

    /// One upstream event, with the headers it came with, received at
    /// `now`: verify it if the dialect can (a webhook signature), then say
    /// what it invalidates.
    fn on_event(&self, _event: &Event<'_>, _now: SystemTime) -> Result<EventEffect, EventError> {
        Err(EventError::NoFeed(self.name().into()))
    }

    /// Whether `on_event` authenticates every event by itself (a webhook
    /// signature under a configured secret): the admin listener then lets
    /// its events in without the bearer token a sender such as GitHub
    /// cannot send.
    fn verifies_events(&self) -> bool {
        false
    }

    /// How a webhook POST's body holds this dialect's events.
    fn event_framing(&self) -> EventFraming {
        EventFraming::JsonOrLines
    }

    /// Adds or normalises request headers before the request is looked
    /// up and forwarded: what it sets is what the key's variant and the
    /// upstream see (an API's `Accept` spelled one way, say).
    fn normalize_request(&self, _req: &mut request::Parts) {}

    /// The event feed whose health governs trust, if the route has one.
    fn feed(&self) -> Option<&Feed> {
        None
    }

    /// The ledger the route's listings record children in, if it keeps
    /// one (shared with the other nodes of a shared tier).
    fn ledger(&self) -> Option<&Ledger> {
        None
    }

    /// Cookies the upstream authenticates callers with, partition material
    /// on this route besides `partition.cookies`.
    fn partition_cookies(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether a cookie that is not partition material may identify the
    /// caller to the upstream (true where the dialect stores responses in
    /// the caller's partition whatever `Cache-Control` says): such a request
    /// then shares only what the upstream marked shareable.
    fn cookies_identify(&self) -> bool {
        false
    }
}
