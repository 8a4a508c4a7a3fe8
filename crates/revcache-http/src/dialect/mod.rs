//! Dialects: what revcache knows about one kind of upstream.
//!
//! The proxy knows nothing of Gerrit or WebDAV; it asks the route's dialect
//! whether a request is cacheable, what version and tags a response has,
//! and what a successful write invalidates. Contract for implementors:
//! every method is cheap, synchronous and infallible; when unsure, a dialect
//! answers conservatively (pass the request, invalidate more).

mod http;

use std::sync::Arc;

use ::http::request;
use ::http::{HeaderMap, StatusCode};
use revcache_core::{KeyClass, Tag, Version};

pub use self::http::HttpDialect;
use crate::settings::DialectName;

/// What to do with a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Classification {
    /// Look it up and store it under `class`.
    Cacheable { class: KeyClass },
    /// Forward without caching; `reason` is the Cache-Status `fwd` value
    /// (`bypass`, `method`, `request`).
    Pass { reason: &'static str },
    /// A write: forward, then apply `Dialect::on_write` if it succeeded.
    Write,
}

/// What a dialect learned from a response it may store.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub version: Option<Version>,
    pub tags: Vec<Tag>,
}

/// What an invalidation reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// A request target (path and query).
    Target(String),
    /// Every target under a path prefix.
    Prefix(String),
    Tag(Tag),
}

pub trait Dialect: Send + Sync {
    fn name(&self) -> &'static str;
    fn classify(&self, req: &request::Parts) -> Classification;
    fn on_response(&self, req: &request::Parts, status: StatusCode, headers: &HeaderMap) -> Facts;
    /// Called after a write got a non-error (2xx/3xx) status.
    fn on_write(
        &self,
        req: &request::Parts,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Vec<Invalidation>;
}

pub fn for_name(name: DialectName) -> Arc<dyn Dialect> {
    match name {
        DialectName::Http => Arc::new(HttpDialect),
    }
}
