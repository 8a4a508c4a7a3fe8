//! The ledger: versions of children recorded on a parent's listing (a
//! Gerrit query result's `meta_rev_id`s, a WebDAV collection's member
//! ETags), so a child can be validated without its own upstream request.
//!
//! It remembers, per child, the newest version seen and when it was
//! learned; a stored child whose version equals it, and that was stored no
//! later than the listing was learned, was still current at that moment.
//! Bounded by entry count (quick_cache); forgetting only costs a request.
//!
//! A listing confirms children only for the partition that fetched it:
//! callers who see different things never vouch for each other. Each child
//! remembers the newest listing's partition only; a listing from another
//! partition replaces it (that too only costs a request).
//!
//! With a shared tier, what this node records is also kept in an outbox
//! (once `share` is called) for the other nodes, and what they recorded
//! arrives through `record_shared`, so a listing fetched by one node
//! confirms a child on another.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use crate::Partition;

/// One child's newest known version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    pub version: Arc<str>,
    pub learned_at: SystemTime,
    /// The partition whose listing told it.
    pub partition: Partition,
}

/// One record, as it travels to the other nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerRecord {
    pub scope: u32,
    pub child: Arc<str>,
    pub known: Known,
}

/// Records kept for the other nodes at most; beyond, new ones are not
/// shared (that only costs the other nodes a request).
const OUTBOX_MAX: usize = 10_000;

/// Ledger of child versions, keyed by (scope, child) — a scope is e.g. a
/// route, so two upstreams never confirm each other's children.
pub struct Ledger {
    map: quick_cache::sync::Cache<(u32, Arc<str>), Known>,
    sharing: AtomicBool,
    outbox: parking_lot::Mutex<Vec<LedgerRecord>>,
}

impl Ledger {
    pub fn new(capacity: usize) -> Self {
        Ledger {
            map: quick_cache::sync::Cache::new(capacity.max(16)),
            sharing: AtomicBool::new(false),
            outbox: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// Records `version` of `child`, unless a later listing already did;
    /// kept for the other nodes too once `share` was called.
    pub fn record(
        &self,
        scope: u32,
        partition: Partition,
        child: &str,
        version: &str,
        learned_at: SystemTime,
    ) {
        let record = LedgerRecord {
            scope,
            child: child.into(),
            known: Known {
                version: version.into(),
                learned_at,
                partition,
            },
        };
        if self.sharing.load(Ordering::Relaxed) {
            let mut outbox = self.outbox.lock();
            if outbox.len() < OUTBOX_MAX {
                outbox.push(record.clone());
            }
        }
        self.record_shared(record);
    }

    /// Records what another node recorded (not shared again).
    pub fn record_shared(&self, record: LedgerRecord) {
        let key = (record.scope, record.child);
        if let Some(old) = self.map.get(&key)
            && old.learned_at > record.known.learned_at
        {
            return;
        }
        self.map.insert(key, record.known);
    }

    /// From now on, records are also kept for the other nodes.
    pub fn share(&self) {
        self.sharing.store(true, Ordering::Relaxed);
    }

    /// The records kept for the other nodes since the last call.
    pub fn take_unshared(&self) -> Vec<LedgerRecord> {
        std::mem::take(&mut *self.outbox.lock())
    }

    pub fn get(&self, scope: u32, child: &str) -> Option<Known> {
        self.map.get(&(scope, Arc::<str>::from(child)))
    }

    /// Forgets `child` (an event says it changed).
    pub fn forget(&self, scope: u32, child: &str) {
        self.map.remove(&(scope, Arc::<str>::from(child)));
    }

    /// Whether a child received at `stored_at` with `version` is confirmed
    /// current by a listing of `partition` learned strictly after it (so a
    /// response never confirms itself) and not before `not_before`.
    pub fn confirms(
        &self,
        scope: u32,
        partition: Partition,
        child: &str,
        version: &str,
        stored_at: SystemTime,
        not_before: SystemTime,
    ) -> bool {
        self.get(scope, child).is_some_and(|k| {
            k.partition == partition
                && &*k.version == version
                && k.learned_at > stored_at
                && k.learned_at >= not_before
        })
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const P: Partition = Partition::Public;

    #[test]
    fn a_later_listing_of_the_same_version_confirms_a_stored_child() {
        let l = Ledger::new(100);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let later = t0 + Duration::from_secs(5);
        l.record(1, P, "42", "abc", later);
        assert!(l.confirms(1, P, "42", "abc", t0, t0));
        assert!(!l.confirms(1, P, "42", "def", t0, t0), "other version");
        assert!(
            !l.confirms(1, P, "42", "abc", later + Duration::from_secs(1), t0),
            "stored after the listing"
        );
        assert!(
            !l.confirms(1, P, "42", "abc", later, t0),
            "a response does not confirm itself"
        );
        assert!(!l.confirms(2, P, "42", "abc", t0, t0), "other scope");
        assert!(
            !l.confirms(1, P, "42", "abc", t0, later + Duration::from_secs(1)),
            "learned before a gap"
        );
        l.record(1, P, "42", "old", t0);
        assert_eq!(
            l.get(1, "42").unwrap().version.as_ref(),
            "abc",
            "an older listing does not win"
        );
        assert!(
            !l.confirms(1, Partition::Credential([7; 16]), "42", "abc", t0, t0),
            "another partition's listing"
        );
        l.forget(1, "42");
        assert!(!l.confirms(1, P, "42", "abc", t0, t0));
    }

    #[test]
    fn records_reach_another_ledger_once_sharing_and_the_newest_listing_wins() {
        let (here, there) = (Ledger::new(100), Ledger::new(100));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let later = t0 + Duration::from_secs(5);
        here.record(1, P, "a", "v0", later);
        assert!(here.take_unshared().is_empty(), "not sharing yet");
        here.share();
        here.record(1, P, "a", "v1", later);
        here.record(1, P, "b", "old", t0);
        let records = here.take_unshared();
        assert_eq!(records.len(), 2);
        assert!(here.take_unshared().is_empty(), "taken once");
        there.record(1, P, "b", "new", later);
        for r in records {
            there.record_shared(r);
        }
        assert!(there.confirms(1, P, "a", "v1", t0, t0));
        assert_eq!(there.get(1, "b").unwrap().version.as_ref(), "new");
        assert!(there.take_unshared().is_empty(), "not shared again");
    }
}
