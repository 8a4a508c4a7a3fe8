//! Entries: one stored representation, immutable once built.
//!
//! An entry carries what the HTTP layer decided about it at store time
//! ([`Freshness`], [`EntryTiming`]) as plain data, so the hit path does not
//! re-parse headers. A revalidation never mutates an entry: it builds a new
//! one that shares the body bytes.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};

use crate::identity_map::{IdentityKey, IdentityShards};
use crate::key::PrimaryKey;
use crate::packed_time::{PackedFreshness, PackedTiming};
use crate::stored_headers::StoredHeaders;
use crate::tag::Tag;
use crate::version::Version;

/// The Vary-selected request header values an entry was stored for:
/// (header name, normalized value or `None` when the request lacked it),
/// in the order of the response's `Vary`.
pub type Variant = Box<[(HeaderName, Option<Box<str>>)]>;

/// Freshness facts decided by the HTTP policy when the entry was stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Freshness {
    /// Freshness lifetime (RFC 9111 §4.2.1).
    pub lifetime: Duration,
    /// Must be revalidated before every reuse (`no-cache`).
    pub no_cache: bool,
    /// May never be served stale (`must-revalidate`, `proxy-revalidate`, `s-maxage`).
    pub must_revalidate: bool,
    /// RFC 5861 windows beyond the lifetime.
    pub stale_while_revalidate: Option<Duration>,
    pub stale_if_error: Option<Duration>,
    /// May answer requests that carry credentials (`public`, `s-maxage`,
    /// `must-revalidate`; RFC 9111 §3.5).
    pub shareable: bool,
}

impl Freshness {
    /// Whether a response with these facts may be reused at most where one
    /// with `other`'s may: the same rules, and no longer a lifetime or window.
    pub fn at_least_as_strict_as(&self, other: &Freshness) -> bool {
        self.no_cache == other.no_cache
            && self.must_revalidate == other.must_revalidate
            && self.shareable == other.shareable
            && self.lifetime <= other.lifetime
            && self.stale_while_revalidate <= other.stale_while_revalidate
            && self.stale_if_error <= other.stale_if_error
    }
}

/// When the entry was fetched, for Age arithmetic (RFC 9111 §4.2.3).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EntryTiming {
    /// When the request that produced it was sent.
    pub request_time: SystemTime,
    /// When its response arrived.
    pub response_time: SystemTime,
    /// `corrected_initial_age` of §4.2.3.
    pub initial_age: Duration,
}

impl EntryTiming {
    /// `current_age` of §4.2.3 at `now`.
    pub fn age_at(&self, now: SystemTime) -> Duration {
        let resident = now.duration_since(self.response_time).unwrap_or_default();
        self.initial_age.saturating_add(resident)
    }
}

/// Where an entry's body bytes are.
#[derive(Clone, Debug)]
pub enum EntryBody {
    Memory(Bytes),
    /// In a file of the disk tier, streamed on use (large bodies promoted
    /// from disk are never loaded whole).
    File(BodyFile),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyFile {
    pub path: Arc<Path>,
    pub len: u64,
}

impl EntryBody {
    pub fn len(&self) -> u64 {
        match self {
            EntryBody::Memory(b) => b.len() as u64,
            EntryBody::File(f) => f.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, when they are in memory.
    pub fn bytes(&self) -> Option<&Bytes> {
        match self {
            EntryBody::Memory(b) => Some(b),
            EntryBody::File(_) => None,
        }
    }
}

impl From<Bytes> for EntryBody {
    fn from(b: Bytes) -> Self {
        EntryBody::Memory(b)
    }
}

/// The access bucket of an entry whose disk write was dropped (the
/// writer's queue was full) or failed: the disk may still hold an older
/// version, so the next refresh of this entry writes it again.
pub(crate) const NOT_ON_DISK: u32 = u32::MAX;

/// A stored representation.
pub struct Entry {
    pub key: PrimaryKey,
    pub variant: Variant,
    pub version: Version,
    pub status: StatusCode,
    /// End-to-end response headers as stored (hop-by-hop removed).
    pub headers: StoredHeaders,
    pub body: EntryBody,
    pub tags: Box<[Tag]>,
    timing: PackedTiming,
    freshness: PackedFreshness,
    /// Access-time bucket last recorded for this entry (see the disk tier),
    /// or [`NOT_ON_DISK`] when its disk write was dropped or failed.
    pub(crate) access_bucket: AtomicU32,
    /// The identity map this entry is registered in (its slot's key is
    /// recomputed on drop rather than stored: storing it would cost 32 bytes per entry).
    pub(crate) identity: Option<Weak<IdentityShards>>,
}

impl Entry {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key: PrimaryKey,
        variant: Variant,
        version: Version,
        status: StatusCode,
        headers: HeaderMap,
        body: impl Into<EntryBody>,
        tags: Vec<Tag>,
        timing: EntryTiming,
        freshness: Freshness,
    ) -> Self {
        Entry {
            key,
            variant,
            version,
            status,
            headers: StoredHeaders::from_map(&headers),
            body: body.into(),
            tags: tags.into_boxed_slice(),
            timing: timing.into(),
            freshness: (&freshness).into(),
            access_bucket: AtomicU32::new(0),
            identity: None,
        }
    }

    /// When it was fetched, for Age arithmetic.
    pub fn timing(&self) -> EntryTiming {
        self.timing.into()
    }

    /// What the HTTP policy decided about its freshness when it was stored.
    pub fn freshness(&self) -> Freshness {
        self.freshness.into()
    }

    /// Bytes this entry costs in memory, for the byte budget: everything
    /// it holds, since a client can make any part of it large (a Vary
    /// variant of long header values, a long Host or target).
    pub fn weight(&self) -> u64 {
        const FIXED: usize = std::mem::size_of::<Entry>() + 64;
        let headers = self.headers.heap_bytes();
        let tags: usize = self.tags.iter().map(|t| t.name().len() + 28).sum();
        let body = match &self.body {
            EntryBody::Memory(b) => b.len(),
            EntryBody::File(f) => f.path.as_os_str().len(),
        };
        let variant: usize = self
            .variant
            .iter()
            .map(|(name, value)| {
                std::mem::size_of::<(HeaderName, Option<Box<str>>)>()
                    + name.as_str().len()
                    + value.as_deref().map_or(0, str::len)
            })
            .sum();
        let version = match &self.version {
            Version::Strong(v) => v.len() + 16,
            Version::Unversioned => 0,
        };
        (FIXED + body + headers + tags + variant + version + self.key.weight()) as u64
    }

    /// The upstream's `Date`, for newest-version-wins between racing fills.
    pub fn date(&self) -> Option<SystemTime> {
        httpdate::parse_http_date(self.headers.get_str("date")?.trim()).ok()
    }

    /// Whether this entry's disk write was dropped or failed.
    pub(crate) fn missing_on_disk(&self) -> bool {
        self.access_bucket.load(Ordering::Relaxed) == NOT_ON_DISK
    }

    pub(crate) fn mark_missing_on_disk(&self) {
        self.access_bucket.store(NOT_ON_DISK, Ordering::Relaxed);
    }

    /// Whether `other` is the same variant of the same resource.
    pub fn same_variant(&self, other: &Entry) -> bool {
        self.key == other.key && self.variant == other.variant
    }

    /// A copy with other headers, timing and freshness (after a 304), sharing
    /// the body bytes.
    pub fn refreshed(
        &self,
        headers: HeaderMap,
        timing: EntryTiming,
        freshness: Freshness,
    ) -> Entry {
        Entry {
            key: self.key.clone(),
            variant: self.variant.clone(),
            version: self.version.clone(),
            status: self.status,
            headers: StoredHeaders::from_map(&headers),
            body: self.body.clone(),
            tags: self.tags.clone(),
            timing: timing.into(),
            freshness: (&freshness).into(),
            // The disk tier already knows this use time: a refresh that is
            // not rewritten to disk must not cost a touch on its next hit.
            access_bucket: AtomicU32::new(self.access_bucket.load(Ordering::Relaxed)),
            identity: None,
        }
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("key", &self.key)
            .field("version", &self.version)
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(shards) = self.identity.take()
            && let Some(shards) = shards.upgrade()
            && let Some(id) = IdentityKey::of(self)
        {
            shards.forget_if_dead(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyClass;
    use crate::partition::Partition;

    #[test]
    fn strictness_compares_rules_lifetimes_and_windows() {
        let base = Freshness {
            lifetime: Duration::from_secs(60),
            ..Freshness::default()
        };
        let longer = Freshness {
            lifetime: Duration::from_secs(61),
            ..base.clone()
        };
        let with_window = Freshness {
            stale_if_error: Some(Duration::ZERO),
            ..base.clone()
        };
        let no_cache = Freshness {
            no_cache: true,
            ..base.clone()
        };
        assert!(base.at_least_as_strict_as(&base));
        assert!(base.at_least_as_strict_as(&longer));
        assert!(!longer.at_least_as_strict_as(&base));
        assert!(base.at_least_as_strict_as(&with_window));
        assert!(!with_window.at_least_as_strict_as(&base));
        assert!(!base.at_least_as_strict_as(&no_cache));
    }

    #[test]
    fn a_refreshed_copy_keeps_the_body_and_the_recorded_use_time() {
        let timing = EntryTiming {
            request_time: SystemTime::now(),
            response_time: SystemTime::now(),
            initial_age: Duration::ZERO,
        };
        let e = Entry::new(
            PrimaryKey::new(0, KeyClass::Get, "h", "/r", Partition::Public),
            Box::new([]),
            Version::from_etag("\"v\""),
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from_static(b"body"),
            vec![],
            timing,
            Freshness::default(),
        );
        e.access_bucket.store(42, Ordering::Relaxed);
        let r = e.refreshed(HeaderMap::new(), timing, Freshness::default());
        assert_eq!(r.access_bucket.load(Ordering::Relaxed), 42);
        assert_eq!(r.body.bytes(), e.body.bytes());
    }
}
