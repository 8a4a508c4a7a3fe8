//! The variants stored for one primary key: the value of the memory tier.

use std::ops::Deref;
use std::sync::Arc;

use crate::entry::Entry;

/// The variants held for one primary key, newest last. Cheap to clone.
///
/// Nearly every key has one variant (responses without `Vary`), so one is
/// held as the entry itself: no slice to allocate, and no pointer to follow
/// on a hit.
#[derive(Clone)]
pub enum Variants {
    One(Arc<Entry>),
    Many(Arc<[Arc<Entry>]>),
}

impl Variants {
    /// Whether `self` and `other` are the same stored value (not merely
    /// equal): a removal can then tell that nothing replaced it meanwhile.
    pub fn same(&self, other: &Variants) -> bool {
        match (self, other) {
            (Variants::One(a), Variants::One(b)) => Arc::ptr_eq(a, b),
            (Variants::Many(a), Variants::Many(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Deref for Variants {
    type Target = [Arc<Entry>];

    fn deref(&self) -> &[Arc<Entry>] {
        match self {
            Variants::One(e) => std::slice::from_ref(e),
            Variants::Many(v) => v,
        }
    }
}

impl From<Vec<Arc<Entry>>> for Variants {
    fn from(mut v: Vec<Arc<Entry>>) -> Self {
        match (v.len(), v.pop()) {
            (1, Some(only)) => Variants::One(only),
            (_, last) => {
                v.extend(last);
                Variants::Many(v.into())
            }
        }
    }
}
