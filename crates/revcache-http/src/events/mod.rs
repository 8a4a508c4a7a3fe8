//! Event feeds: upstream change events (webhook POSTs to
//! `/events/<route>`, or the JSON lines of a command such as `ssh ... gerrit
//! stream-events`) turned into invalidations by the route's dialect.
//!
//! Invalidations commute and are idempotent, so events are applied as they
//! arrive, with no reordering or delay window. A malformed event is
//! rejected and counted; it never stops the feed.

pub mod command;
pub mod feed;

pub use feed::Feed;

use std::sync::LazyLock;

use http::HeaderMap;

/// One upstream event as it arrived: the headers of the request that
/// carried it (none for a command feed's line) and its bytes. A dialect
/// may verify it (a webhook signature over the body) before trusting it.
#[derive(Clone, Copy, Debug)]
pub struct Event<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

static NO_HEADERS: LazyLock<HeaderMap> = LazyLock::new(HeaderMap::new);

impl<'a> Event<'a> {
    /// An event without headers: a command feed's line.
    pub fn line(body: &'a [u8]) -> Self {
        Event {
            headers: &NO_HEADERS,
            body,
        }
    }
}

/// How the body of a webhook POST to `/events/<route>` holds events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventFraming {
    /// One JSON object, or one per line (NDJSON), each an event.
    JsonOrLines,
    /// The whole body is one event (its signature covers all of it).
    Whole,
}

/// Why an event was rejected.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    #[error("not a JSON object: {0}")]
    Json(String),
    #[error("{0}")]
    Shape(String),
    #[error("route {0:?} uses a dialect without an event feed")]
    NoFeed(String),
    /// The event's sender could not be verified (a missing or wrong
    /// signature): nothing in it is applied.
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
}

/// What one accepted event does.
#[derive(Clone, Debug, Default)]
pub struct EventEffect {
    /// The event's type, for metrics (`patchset-created`, ...).
    pub kind: String,
    pub invalidations: Vec<crate::dialect::Invalidation>,
    /// The upstream says events were lost: trust starts over.
    pub gap: bool,
}
