//! What the shared tier holds, for `GET /inspect` and `revcache inspect`:
//! entries found through the index sets (by request target, by tag, or
//! every entry of the given routes), never by scanning the keyspace, so
//! it works alike on one server and in a cluster.

use std::collections::BTreeSet;

use redis::Value;
use revcache_core::{Entry, Tag};

use crate::codec;
use crate::tier::SharedTier;

/// Entry values read per `MGET`.
const BATCH: usize = 500;

impl SharedTier {
    /// Up to `limit` entries: of request target `target`, carrying one of
    /// `tags`, or (neither given) of any of `routes`. Values that do not
    /// decode are counted and left out; an unreachable Redis gives none.
    pub async fn entries(
        &self,
        target: Option<&str>,
        tags: &[Tag],
        routes: &[u32],
        limit: usize,
    ) -> Vec<Entry> {
        let mut names = BTreeSet::new();
        if let Some(target) = target {
            names.extend(self.members(&self.names.by_target(target)).await);
        }
        for tag in tags {
            let found = self.members(&self.names.by_tag(tag)).await;
            if target.is_some() {
                names.retain(|n| found.contains(n));
            } else {
                names.extend(found);
            }
        }
        if target.is_none() && tags.is_empty() {
            for route in routes {
                // `target NUL entry name` of every entry of the route.
                for member in self.members(&self.names.by_route(*route)).await {
                    if let Some((_, name)) = member.split_once('\0') {
                        names.insert(name.to_owned());
                    }
                }
            }
        }
        let names: Vec<String> = names.into_iter().take(limit).collect();
        let mut out = Vec::new();
        for batch in names.chunks(BATCH) {
            let mut conn = self.conn().clone();
            let values: Option<Vec<Value>> = self
                .timed(
                    "inspect",
                    redis::cmd("MGET").arg(batch).query_async(&mut conn),
                )
                .await;
            for value in values.unwrap_or_default() {
                // Expired since the index listed it.
                let Value::BulkString(bytes) = value else {
                    continue;
                };
                match codec::decode_entry(&bytes, None) {
                    Ok(entry) => out.push(entry),
                    Err(_) => {
                        self.stats
                            .malformed
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        }
        out
    }

    async fn members(&self, set: &str) -> Vec<String> {
        let mut conn = self.conn().clone();
        let members: Option<Vec<Value>> = self
            .timed(
                "inspect",
                redis::cmd("SMEMBERS").arg(set).query_async(&mut conn),
            )
            .await;
        members
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| match v {
                Value::BulkString(b) => String::from_utf8(b).ok(),
                _ => None,
            })
            .collect()
    }
}
