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
