//! Lookup: the stored entry that may answer a request, from memory (by
//! borrowed keys, on the hit path) or from the disk tier (under the single
//! flight, so a burst costs one read).
//!
//! A caller with a partition looks in its own partition first, then in the
//! public one. An entry answers only when its Vary-selected headers match
//! and, for an authenticated caller, a public entry only when the response
//! said it may be shared with them (RFC 9111 §3.5).

use std::sync::Arc;

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
