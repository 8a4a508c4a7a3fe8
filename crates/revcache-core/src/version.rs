//! Versions: the upstream's name for one state of a resource.
//!
//! Only a strong validator names a byte-exact state, so only a strong ETag
//! (or a dialect's own revision id, such as Gerrit's `meta_rev_id`) becomes a
//! [`Version::Strong`]. Everything else is [`Version::Unversioned`]: it can
//! still be cached and revalidated, but it is never shared by identity.

use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// A strong, byte-exact version (opaque string, e.g. an ETag's value).
    Strong(Arc<str>),
    /// No strong version known.
    Unversioned,
}

impl Version {
    /// The version named by an `ETag` header value, if it is strong.
    pub fn from_etag(etag: &str) -> Version {
        let etag = etag.trim();
        if etag.starts_with("W/")
            || etag.len() < 2
            || !etag.starts_with('"')
            || !etag.ends_with('"')
        {
            return Version::Unversioned;
        }
        Version::Strong(Arc::from(etag))
    }

    pub fn is_strong(&self) -> bool {
        matches!(self, Version::Strong(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_strong_etags_are_versions() {
        assert!(Version::from_etag("\"abc\"").is_strong());
        assert!(!Version::from_etag("W/\"abc\"").is_strong());
        assert!(!Version::from_etag("abc").is_strong());
        assert!(!Version::from_etag("\"").is_strong());
    }
}
