//! Invalidation: what a purge, a write or an upstream event removes. One
//! type for every tier (memory, disk, tombstones, generations), with route
//! scope: a target or prefix names the route whose entries it reaches (or
//! every route, for an operator's purge), a tag belongs to its route, a key
//! names its route. Routes never invalidate each other's entries unless an
//! operator asks.

use crate::entry::Entry;
use crate::key::PrimaryKey;
use crate::tag::Tag;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// One request target (path and query): every host, partition and
    /// variant of it in `route`, or in every route when `None`.
    Target { route: Option<u32>, target: String },
    /// Every target whose path starts with `prefix`, in `route` or all.
    Prefix { route: Option<u32>, prefix: String },
    /// Every entry of the tag's route carrying it.
    Tag(Tag),
    /// One primary key, all its variants.
    Key(PrimaryKey),
}

impl Invalidation {
    /// A target of one route.
    pub fn target(route: u32, target: impl Into<String>) -> Self {
        Invalidation::Target {
            route: Some(route),
            target: target.into(),
        }
    }

    /// A prefix of one route.
    pub fn prefix(route: u32, prefix: impl Into<String>) -> Self {
        Invalidation::Prefix {
            route: Some(route),
            prefix: prefix.into(),
        }
    }

    /// Whether it reaches `entry`.
    pub fn reaches(&self, entry: &Entry) -> bool {
        match self {
            Invalidation::Tag(t) => entry.key.route() == t.route() && entry.tags.contains(t),
            _ => self.reaches_key(&entry.key),
        }
    }

    /// Whether it reaches entries under `key` (for a tag: whether the key is
    /// of the tag's route; whether the entry carries the tag is the
    /// caller's to check).
    pub fn reaches_key(&self, key: &PrimaryKey) -> bool {
        self.reaches_route(key.route())
            && match self {
                Invalidation::Target { target, .. } => key.target() == target,
                Invalidation::Prefix { prefix, .. } => key.path().starts_with(prefix.as_str()),
                Invalidation::Tag(_) => true,
                Invalidation::Key(k) => key == k,
            }
    }

    /// Whether it may reach entries of `route`.
    pub fn reaches_route(&self, route: u32) -> bool {
        match self {
            Invalidation::Target { route: r, .. } | Invalidation::Prefix { route: r, .. } => {
                r.is_none_or(|r| r == route)
            }
            Invalidation::Tag(t) => t.route() == route,
            Invalidation::Key(k) => k.route() == route,
        }
    }
}
