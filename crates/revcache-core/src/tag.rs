//! Tags: surrogate keys a dialect attaches to an entry (Gerrit's
//! `change:123`, `changeid:I8473b9…`, `chain:123`; WebDAV's `dav:res:/docs/a`,
//! `dav:list:/docs`), so one invalidation reaches every entry that shows the
//! tagged thing. A tag belongs to a route: two routes' entries
//! may carry the same name (two Gerrit servers both have a change 123) and a
//! tag invalidation in one never reaches the other.

use std::fmt;
use std::sync::Arc;

/// A surrogate key of one route. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    route: u32,
    name: Arc<str>,
}

impl Tag {
    pub fn new(route: u32, name: impl Into<Arc<str>>) -> Self {
        Tag {
            route,
            name: name.into(),
        }
    }

    /// The route (its id, as in keys) whose entries the tag names.
    pub fn route(&self) -> u32 {
        self.route
    }

    /// The name, as the dialect spelled it (`change:123`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({:08x}/{})", self.route, self.name)
    }
}

/// The name only: what operators see and type.
impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}
