//! Keys: the identity of a cached resource.
//!
//! A [`PrimaryKey`] is (route, key class, host, request target, partition).
//! Vary-selected request headers form the secondary part and live on the
//! entry as its [`Variant`](crate::entry::Variant); a primary key holds a
//! small set of variants. The hash is computed once at construction, so
//! every tier and map that uses the key hashes a single `u64`.
//!
//! The hash is aHash with seeds drawn at start-up: about a third of the cost
//! of std's SipHash on a hit, and, unlike `DefaultHasher::new()`'s fixed
//! keys, not predictable by a client crafting request targets to collide.
//! It is never persisted (the disk tier keys by the key's bytes).

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, LazyLock};

use crate::partition::Partition;

/// Which kind of request a key stands for. GET and HEAD share `Get`;
/// dialects name other cacheable request shapes (a PROPFIND with its depth
/// and property set, say) so they never collide with a GET of the same URL.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum KeyClass {
    Get,
    Named(Arc<str>),
}

/// Identity of a cached resource, without the Vary part. Cheap to clone.
#[derive(Clone)]
pub struct PrimaryKey(Arc<KeyInner>);

#[derive(PartialEq, Eq)]
struct KeyInner {
    hash: u64,
    route: u32,
    class: KeyClass,
    /// Shared by every key of a route (the upstream's name): no allocation.
    host: Arc<str>,
    target: Box<str>,
    partition: Partition,
}

impl PrimaryKey {
    /// `target` is the request's path and query as sent by the client;
    /// `host` names what the upstream sees (pass a shared `Arc<str>` on hot
    /// paths to avoid an allocation).
    pub fn new(
        route: u32,
        class: KeyClass,
        host: impl Into<Arc<str>>,
        target: &str,
        partition: Partition,
    ) -> Self {
        let host: Arc<str> = host.into();
        PrimaryKey(Arc::new(KeyInner {
            hash: key_hash(route, &class, &host, target, partition),
            route,
            class,
            host,
            target: target.into(),
            partition,
        }))
    }

    pub fn route(&self) -> u32 {
        self.0.route
    }
    pub fn class(&self) -> &KeyClass {
        &self.0.class
    }
    pub fn host(&self) -> &str {
        &self.0.host
    }
    /// Path and query.
    pub fn target(&self) -> &str {
        &self.0.target
    }
    /// Path without the query.
    pub fn path(&self) -> &str {
        self.0.target.split('?').next().unwrap_or_default()
    }
    pub fn partition(&self) -> Partition {
        self.0.partition
    }
    pub fn hash64(&self) -> u64 {
        self.0.hash
    }

    /// Bytes the key holds in memory: its allocation, target, host and
    /// class text. The host and class may be shared with other keys; they
    /// are counted anyway, since a client can make them unique (a
    /// `preserve_host` Host, a dialect's class).
    pub fn weight(&self) -> usize {
        let class = match &self.0.class {
            KeyClass::Get => 0,
            KeyClass::Named(n) => n.len(),
        };
        // The Arc's two counts.
        std::mem::size_of::<KeyInner>() + 16 + self.0.target.len() + self.0.host.len() + class
    }

    /// The same resource in another partition.
    pub fn with_partition(&self, partition: Partition) -> Self {
        PrimaryKey::new(
            self.0.route,
            self.0.class.clone(),
            self.0.host.clone(),
            &self.0.target,
            partition,
        )
    }
}

static KEY_HASHER: LazyLock<ahash::RandomState> = LazyLock::new(ahash::RandomState::new);

fn key_hash(route: u32, class: &KeyClass, host: &str, target: &str, partition: Partition) -> u64 {
    let mut h = KEY_HASHER.build_hasher();
    route.hash(&mut h);
    class.hash(&mut h);
    host.hash(&mut h);
    target.hash(&mut h);
    partition.hash(&mut h);
    h.finish()
}

/// A key borrowed from a request, for lookups that should not allocate: it
/// hashes and compares exactly like the `PrimaryKey` it stands for.
pub struct KeyRef<'a> {
    hash: u64,
    route: u32,
    class: &'a KeyClass,
    host: &'a Arc<str>,
    target: &'a str,
    partition: Partition,
}

impl<'a> KeyRef<'a> {
    /// `host` is the route's shared name: the owned key made from this one
    /// shares it rather than copying it.
    pub fn new(
        route: u32,
        class: &'a KeyClass,
        host: &'a Arc<str>,
        target: &'a str,
        partition: Partition,
    ) -> Self {
        KeyRef {
            hash: key_hash(route, class, host, target, partition),
            route,
            class,
            host,
            target,
            partition,
        }
    }

    pub fn partition(&self) -> Partition {
        self.partition
    }

    /// The owned key (allocates).
    pub fn to_key(&self) -> PrimaryKey {
        PrimaryKey::new(
            self.route,
            self.class.clone(),
            self.host.clone(),
            self.target,
            self.partition,
        )
    }
}

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl quick_cache::Equivalent<PrimaryKey> for KeyRef<'_> {
    fn equivalent(&self, key: &PrimaryKey) -> bool {
        let k = &key.0;
        k.hash == self.hash
            && k.route == self.route
            && k.partition == self.partition
            && &*k.target == self.target
            && k.host == *self.host
            && k.class == *self.class
    }
}

impl PartialEq for PrimaryKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || (self.0.hash == other.0.hash && *self.0 == *other.0)
    }
}
impl Eq for PrimaryKey {}

impl Hash for PrimaryKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.hash);
    }
}

impl fmt::Debug for PrimaryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {}{} [{}] route={}",
            self.0.class, self.0.host, self.0.target, self.0.partition, self.0.route
        )
    }
}

#[cfg(test)]
mod tests {
    use std::hash::DefaultHasher;

    use super::*;

    #[test]
    fn borrowed_keys_hash_and_compare_like_owned_ones() {
        use quick_cache::Equivalent;
        let owned = PrimaryKey::new(2, KeyClass::Get, "h", "/a?b", Partition::Public);
        let class = KeyClass::Get;
        let host: Arc<str> = Arc::from("h");
        let borrowed = KeyRef::new(2, &class, &host, "/a?b", Partition::Public);
        assert!(borrowed.equivalent(&owned));
        assert_eq!(borrowed.to_key(), owned);
        assert!(
            Arc::ptr_eq(&borrowed.to_key().0.host, &host),
            "the host is shared"
        );
        let mut a = DefaultHasher::new();
        let mut b = DefaultHasher::new();
        owned.hash(&mut a);
        borrowed.hash(&mut b);
        assert_eq!(a.finish(), b.finish());
        assert!(!KeyRef::new(2, &class, &host, "/a?c", Partition::Public).equivalent(&owned));
        assert!(
            !KeyRef::new(2, &class, &host, "/a?b", Partition::Credential([1; 16]))
                .equivalent(&owned)
        );
    }

    #[test]
    fn keys_differ_by_partition_class_and_route() {
        let a = PrimaryKey::new(0, KeyClass::Get, "h", "/a?x=1", Partition::Public);
        assert_eq!(
            a,
            PrimaryKey::new(0, KeyClass::Get, "h", "/a?x=1", Partition::Public)
        );
        assert_ne!(a, a.with_partition(Partition::Credential([1; 16])));
        assert_ne!(
            a,
            PrimaryKey::new(1, KeyClass::Get, "h", "/a?x=1", Partition::Public)
        );
        let named = KeyClass::Named("PROPFIND 1".into());
        assert_ne!(
            a,
            PrimaryKey::new(0, named, "h", "/a?x=1", Partition::Public)
        );
        assert_eq!(a.path(), "/a");
    }

    #[test]
    fn a_keys_weight_counts_its_host_class_and_target() {
        let small = PrimaryKey::new(0, KeyClass::Get, "h", "/a", Partition::Public);
        let host = "h".repeat(1000);
        let class = KeyClass::Named("c".repeat(2000).into());
        let big = PrimaryKey::new(0, class, host.as_str(), "/a", Partition::Public);
        assert_eq!(big.weight() - small.weight(), 999 + 2000);
    }
}
