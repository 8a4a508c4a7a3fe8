//! Tags: surrogate keys a dialect attaches to an entry (`gerrit:change:123`,
//! `dav:path:/a/b`), so one invalidation reaches every entry that shows the
//! tagged thing.

use std::fmt;
use std::sync::Arc;

/// A surrogate key. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(Arc<str>);

impl Tag {
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Tag(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({})", self.0)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
