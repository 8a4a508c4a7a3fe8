//! Generations: a purge or invalidation that happens while a fill is in
//! flight keeps that fill from being stored (no stale set).
//!
//! A single sequence counts every invalidation. A fill takes a
//! [`FillTicket`] (the sequence when it began); an invalidation of a target
//! or tag raises that scope's slot to its own sequence number. A fill is
//! current when no slot of its scopes, and no prefix invalidation covering
//! its target, is newer than its ticket.
//!
//! Scopes are route-scoped like invalidations: a target or prefix bumped
//! for one route outdates fills of that route only; one bumped for every
//! route (an operator's purge) outdates fills of any route.
//!
//! Slots are a fixed array indexed by hash, so memory stays bounded however
//! many tags exist. Two scopes sharing a slot only ever make a fill look
//! outdated (it is then not stored and refetched next time), never current.
//!
//! Store protocol (see `Cache::store`): the fill inserts, *then* checks; an
//! invalidation bumps, *then* removes. Either the check sees the bump, or
//! the removal sees the insert.
//!
//! Model checks (`--cfg loom`): the `loom` tests below run concurrent bumps
//! of one scope against fills taking and checking tickets (bumping is two
//! steps, the sequence then the slot); `cache`'s run the store protocol.

use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::Ordering;

use crate::key::PrimaryKey;
use crate::sync::{AtomicU64, Mutex};
use crate::tag::Tag;

#[cfg(not(loom))]
const SLOTS: usize = 1 << 16;
// Every model execution builds a fresh set of slots: keep it cheap.
#[cfg(loom)]
const SLOTS: usize = 1 << 8;
const PREFIX_HISTORY: usize = 256;

/// The sequence number at which a fill began.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FillTicket(u64);

pub struct Generations {
    seq: AtomicU64,
    slots: Box<[AtomicU64]>,
    prefixes: Mutex<PrefixHistory>,
}

#[derive(Default)]
struct PrefixHistory {
    /// (sequence, route or every route, prefix)
    recent: VecDeque<(u64, Option<u32>, Box<str>)>,
    /// Sequence of the newest record dropped from `recent`.
    forgotten_upto: u64,
}

impl Default for Generations {
    fn default() -> Self {
        Generations {
            seq: AtomicU64::new(0),
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            prefixes: Mutex::new(PrefixHistory::default()),
        }
    }
}

enum Scope<'a> {
    /// A target of one route, or of every route (`None`).
    Target(Option<u32>, &'a str),
    Tag(&'a Tag),
}

impl Scope<'_> {
    fn slot(&self) -> usize {
        let mut h = DefaultHasher::new();
        match self {
            Scope::Target(route, t) => (0u8, route, t).hash(&mut h),
            Scope::Tag(t) => (1u8, t.route(), t.name()).hash(&mut h),
        }
        h.finish() as usize % SLOTS
    }
}

impl Generations {
    pub fn begin_fill(&self) -> FillTicket {
        FillTicket(self.seq.load(Ordering::SeqCst))
    }

    /// Invalidates one request target (path and query) in every partition.
    /// A target of `route`, or of every route.
    pub fn bump_target(&self, route: Option<u32>, target: &str) {
        self.bump_slot(Scope::Target(route, target).slot());
    }

    pub fn bump_tag(&self, tag: &Tag) {
        self.bump_slot(Scope::Tag(tag).slot());
    }

    /// Invalidates every target whose path starts with `prefix`.
    /// A path prefix of `route`, or of every route.
    pub fn bump_prefix(&self, route: Option<u32>, prefix: &str) {
        let mut history = self.prefixes.lock();
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        history.recent.push_back((seq, route, prefix.into()));
        if history.recent.len() > PREFIX_HISTORY
            && let Some((old, _, _)) = history.recent.pop_front()
        {
            history.forgotten_upto = old;
        }
    }

    fn bump_slot(&self, slot: usize) {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        self.slots[slot].fetch_max(seq, Ordering::SeqCst);
    }

    /// Whether a fill that began at `ticket` for `key` with `tags` may
    /// still be stored.
    pub fn is_current(&self, ticket: FillTicket, key: &PrimaryKey, tags: &[Tag]) -> bool {
        let newer = |slot: usize| self.slots[slot].load(Ordering::SeqCst) > ticket.0;
        let (route, target) = (key.route(), key.target());
        if newer(Scope::Target(Some(route), target).slot())
            || newer(Scope::Target(None, target).slot())
        {
            return false;
        }
        if tags.iter().any(|t| newer(Scope::Tag(t).slot())) {
            return false;
        }
        let history = self.prefixes.lock();
        if history.forgotten_upto > ticket.0 {
            return false;
        }
        let path = key.path();
        !history.recent.iter().any(|(seq, of, prefix)| {
            *seq > ticket.0 && of.is_none_or(|r| r == route) && path.starts_with(&**prefix)
        })
    }
}

#[cfg(all(test, loom))]
pub(crate) fn scopes_share_no_slot(target: &str, tags: &[&str]) -> bool {
    let tags: Vec<Tag> = tags.iter().map(|t| Tag::new(0, *t)).collect();
    let mut slots: Vec<usize> = tags.iter().map(|t| Scope::Tag(t).slot()).collect();
    slots.push(Scope::Target(Some(0), target).slot());
    slots.push(Scope::Target(None, target).slot());
    slots.sort_unstable();
    slots.windows(2).all(|w| w[0] != w[1])
}

#[cfg(all(test, loom))]
mod loom_tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering::SeqCst;

    use loom::sync::RwLock;
    use loom::sync::atomic::AtomicBool;
    use loom::thread;

    use super::*;

    /// Two invalidations of one scope (of the tag when there is one, else
    /// of `target`) race a fill that
    /// publishes its ticket. Each invalidation reads the published ticket
    /// before it starts, so that ticket predates it: once the invalidation
    /// returns, the ticket must not be current. A fill that saw both
    /// invalidations finished before taking its ticket must be current.
    fn two_bumps_and_a_fill(target: &'static str, tags: &'static [&'static str]) {
        assert!(scopes_share_no_slot(target, tags));
        let bump = move |g: &Generations| match tags.first() {
            Some(tag) => g.bump_tag(&Tag::new(0, *tag)),
            None => g.bump_target(Some(0), target),
        };
        let tags: Vec<Tag> = tags.iter().map(|t| Tag::new(0, *t)).collect();
        let key = PrimaryKey::new(
            0,
            crate::key::KeyClass::Get,
            "h",
            target,
            crate::partition::Partition::Public,
        );
        loom::model(move || {
            let g = Arc::new(Generations::default());
            let published = Arc::new(RwLock::new(None::<FillTicket>));
            let done: Arc<[AtomicBool; 2]> =
                Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
            let invalidations: Vec<_> = (0..2)
                .map(|i| {
                    let (g, published, done, tags, key) = (
                        g.clone(),
                        published.clone(),
                        done.clone(),
                        tags.clone(),
                        key.clone(),
                    );
                    thread::spawn(move || {
                        let before = *published.read().unwrap();
                        bump(&g);
                        done[i].store(true, SeqCst);
                        if let Some(ticket) = before {
                            assert!(
                                !g.is_current(ticket, &key, &tags),
                                "a ticket taken before an invalidation is current after it"
                            );
                        }
                    })
                })
                .collect();
            let both_done_before = done.iter().all(|d| d.load(SeqCst));
            let ticket = g.begin_fill();
            *published.write().unwrap() = Some(ticket);
            let current_now = g.is_current(ticket, &key, &tags);
            if both_done_before {
                assert!(
                    current_now,
                    "a ticket taken after every invalidation is outdated"
                );
            }
            for h in invalidations {
                h.join().expect("invalidation panicked");
            }
            assert!(g.is_current(g.begin_fill(), &key, &tags));
        });
    }

    #[test]
    fn loom_racing_target_bumps_outdate_every_earlier_ticket() {
        two_bumps_and_a_fill("/a", &[]);
    }

    #[test]
    fn loom_racing_tag_bumps_outdate_every_earlier_ticket() {
        two_bumps_and_a_fill("/a", &["t"]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyClass;
    use crate::partition::Partition;

    fn key(route: u32, target: &str) -> PrimaryKey {
        PrimaryKey::new(route, KeyClass::Get, "h", target, Partition::Public)
    }

    #[test]
    fn a_bump_after_the_ticket_outdates_only_its_scope() {
        let g = Generations::default();
        let t = g.begin_fill();
        g.bump_target(Some(0), "/a");
        assert!(!g.is_current(t, &key(0, "/a"), &[]));
        assert!(g.is_current(t, &key(0, "/b"), &[]));
        assert!(g.is_current(t, &key(1, "/a"), &[]), "another route's /a");
        assert!(g.is_current(g.begin_fill(), &key(0, "/a"), &[]));
        g.bump_target(None, "/b");
        assert!(!g.is_current(t, &key(1, "/b"), &[]), "every route's /b");
    }

    #[test]
    fn tag_and_prefix_bumps_outdate_fills_in_flight() {
        let g = Generations::default();
        let t = g.begin_fill();
        g.bump_tag(&Tag::new(0, "change:1"));
        assert!(!g.is_current(t, &key(0, "/x"), &[Tag::new(0, "change:1")]));
        assert!(g.is_current(t, &key(0, "/x"), &[Tag::new(0, "change:2")]));
        assert!(g.is_current(t, &key(1, "/x"), &[Tag::new(1, "change:1")]));
        g.bump_prefix(Some(0), "/dir/");
        assert!(!g.is_current(t, &key(0, "/dir/file?q=1"), &[]));
        assert!(g.is_current(t, &key(1, "/dir/file?q=1"), &[]));
        assert!(g.is_current(t, &key(0, "/other"), &[]));
        g.bump_prefix(None, "/all/");
        assert!(!g.is_current(t, &key(1, "/all/x"), &[]));
    }

    #[test]
    fn forgotten_prefix_history_makes_old_fills_outdated() {
        let g = Generations::default();
        let t = g.begin_fill();
        for i in 0..=PREFIX_HISTORY {
            g.bump_prefix(Some(0), &format!("/p{i}/"));
        }
        assert!(!g.is_current(t, &key(0, "/unrelated"), &[]));
        assert!(g.is_current(g.begin_fill(), &key(0, "/unrelated"), &[]));
    }
}
