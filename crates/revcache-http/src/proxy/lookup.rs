//! Lookup: the stored entry that may answer a request, from memory (by
//! borrowed keys, on the hit path), from the disk tier (under the single
//! flight, so a burst costs one read) or from the shared tier (promoted to
//! memory, unless an invalidation reached it meanwhile).
//!
//! A caller with a partition looks in its own partition first, then in the
//! public one. An entry answers only when its Vary-selected headers match
//! and, for an authenticated caller, a public entry only when the response
//! said it may be shared with them (RFC 9111 §3.5).

use std::sync::Arc;
use std::time::Duration;

use revcache_core::{Entry, Partition, Variants};

use super::Proxy;
use super::exchange::Exchange;
use crate::policy::vary;

impl Proxy {
    /// The entry in memory that may answer `ex`, and whether the URI had
    /// any entry there.
    pub(super) fn find(&self, ex: &Exchange) -> (Option<Arc<Entry>>, bool) {
        let mut known = false;
        let own = ex.key_ref(ex.partition.unwrap_or(Partition::Public));
        let public = ex.partition.map(|_| ex.key_ref(Partition::Public));
        for key in [Some(own), public].into_iter().flatten() {
            if let Some(variants) = self.cache.lookup_ref(&key) {
                known = true;
                if let Some(e) = self.usable_variant(ex, &variants) {
                    return (Some(e), true);
                }
            }
        }
        (None, known)
    }

    /// Reads `ex`'s keys from the disk tier (promoting what it finds) and
    /// returns the entry that may answer it. It answers from what it read,
    /// not from memory again: under memory pressure the promoted entry may
    /// already be evicted, and the request would go upstream after a disk hit.
    pub(super) async fn find_on_disk(&self, ex: &Exchange) -> Option<Arc<Entry>> {
        self.cache.disk()?;
        let cache = self.cache.clone();
        let mut keys = vec![ex.own_key().clone()];
        if ex.partition.is_some() {
            keys.push(ex.public_key().clone());
        }
        let found =
            tokio::task::spawn_blocking(move || keys.iter().find_map(|k| cache.lookup_disk(k)))
                .await
                .ok()
                .flatten()?;
        self.usable_variant(ex, &found)
    }

    /// Looks `ex` up in the shared tier (L3) and promotes what may answer
    /// it to this node's memory, unless an invalidation reached it while
    /// it was read.
    pub(super) async fn find_shared(&self, ex: &Exchange) -> Option<Arc<Entry>> {
        let shared = self.shared.as_ref()?;
        let ticket = self.cache.begin_fill();
        let mut found = shared.lookup(ex.own_key()).await;
        if found.is_empty() && ex.partition.is_some() {
            found = shared.lookup(ex.public_key()).await;
        }
        self.promote_shared(ex, found, ticket)
    }

    /// When another node holds the fetch lock of `ex`'s key, waits for
    /// what it shares (until `collapsed_wait_timeout`); `None` when this
    /// node fetches (it then holds the lock, or Redis cannot say), or the
    /// wait timed out.
    ///
    /// Every poll is one [`SharedTier::claim`]: it reads what is shared
    /// and takes the lock if it is free in one step, so a fill shared and
    /// released between two of this node's reads is found, not fetched
    /// again, and a holder that died hands the fetch to one waiter.
    ///
    /// [`SharedTier::claim`]: revcache_shared::SharedTier::claim
    pub(super) async fn wait_for_other_node(&self, ex: &Exchange) -> Option<Arc<Entry>> {
        let shared = self.shared.as_ref()?;
        if ex.parts.method != http::Method::GET {
            return None;
        }
        let deadline = tokio::time::Instant::now() + ex.config.limits.collapsed_wait_timeout;
        let mut pause = Duration::from_millis(5);
        let mut waited = false;
        loop {
            let ticket = self.cache.begin_fill();
            let claim = shared.claim(ex.own_key()).await;
            if let Some(entry) = self.promote_shared(ex, claim.found, ticket) {
                if claim.fetch {
                    let (shared, key) = (shared.clone(), ex.own_key().clone());
                    tokio::spawn(async move { shared.unlock(&key).await });
                }
                return Some(entry);
            }
            if claim.fetch || tokio::time::Instant::now() + pause >= deadline {
                return None;
            }
            if !waited {
                waited = true;
                shared.waited_for_another_node();
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    fn promote_shared(
        &self,
        ex: &Exchange,
        found: Vec<Entry>,
        ticket: revcache_core::FillTicket,
    ) -> Option<Arc<Entry>> {
        let entry = found.into_iter().rev().find(|e| self.may_answer(ex, e))?;
        match self.cache.store(entry, ticket) {
            revcache_core::StoreOutcome::Stored(e) => Some(e),
            revcache_core::StoreOutcome::Outdated(_) => None,
        }
    }

    /// The newest of `variants` that may answer `ex`.
    fn usable_variant(&self, ex: &Exchange, variants: &Variants) -> Option<Arc<Entry>> {
        variants
            .iter()
            .rev()
            .find(|e| self.may_answer(ex, e))
            .cloned()
    }

    /// Whether `entry` (of `ex`'s own or the public partition) may answer
    /// `ex`.
    pub(super) fn may_answer(&self, ex: &Exchange, entry: &Entry) -> bool {
        (!ex.has_credentials
            || entry.key.partition() != Partition::Public
            || entry.freshness().shareable)
            && vary::matches(&entry.variant, &ex.parts.headers, &self.partition_key)
    }
}
