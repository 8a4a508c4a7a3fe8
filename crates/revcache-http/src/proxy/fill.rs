//! Filling the cache from an upstream response while the client receives it.
//!
//! The fill runs as its own task: it reads the upstream body, queues each
//! chunk for the requesting client (if one is still listening) and keeps
//! it. When the body is complete it stores the entry and hands it to the
//! single flight's waiters. Neither a client that disconnects nor one that
//! stops reading holds the fill back (see `tee`), so waiters are never
//! punished for the leader's client. A body that grows past the cacheable
//! limit, or past what the fill budget has room for, stops being kept; the
//! waiters are then told to fetch for themselves, and the fill goes on at
//! its client's pace.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, DATE, HeaderValue};
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use revcache_core::Variant;
use revcache_core::{
    Cache, Entry, EntryTiming, FillTicket, Freshness, PrimaryKey, StoreOutcome, Version,
};
use revcache_shared::SharedTier;

use super::body::IdleTimeout;
use super::flight::{FlightOutcome, Leader};
use super::tee::{self, FillBudget, Held, TapReceiver, TapSender};
use crate::dialect::Dialect;

/// Everything known about the entry before its body arrives. Version and
/// tags come from the dialect once the body is complete.
pub struct FillPlan {
    pub key: PrimaryKey,
    pub variant: Variant,
    pub dialect: Arc<dyn Dialect>,
    pub request: http::request::Parts,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub timing: EntryTiming,
    pub freshness: Freshness,
    pub ticket: FillTicket,
    pub max_bytes: u64,
    pub read_timeout: Duration,
    /// Where the stored entry is shared with the other nodes.
    pub share: Option<Share>,
}

/// A fill's place in the shared tier: the sequence it started from, how
/// long its entry may be of use, and the cross-node fetch lock it holds.
pub struct Share {
    pub tier: Arc<SharedTier>,
    pub ticket: revcache_shared::Ticket,
    pub ttl: Duration,
    pub lock: PrimaryKey,
}

/// Bytes a fill that no longer keeps its body lets queue for its client
/// before it waits for the client, as a pass-through would.
const STREAM_QUEUE: u64 = 1 << 20;

/// Counts fills in progress, so shutdown can let them finish storing
/// (a client may have its whole body before the fill stores it), and the
/// bytes they hold.
pub struct Fills {
    active: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
    budget: Arc<FillBudget>,
}

struct FillGuard(Arc<Fills>);

impl Drop for FillGuard {
    fn drop(&mut self) {
        if self
            .0
            .active
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.0.idle.notify_waiters();
        }
    }
}

impl Fills {
    /// Fills that together hold at most `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Fills {
            active: Default::default(),
            idle: Default::default(),
            budget: Arc::new(FillBudget::new(limit)),
        }
    }

    /// Changes the budget (a config reload).
    pub fn set_limit(&self, limit: u64) {
        self.budget.set_limit(limit);
    }

    /// Bytes held by fills now (kept bodies and client queues).
    pub fn held_bytes(&self) -> u64 {
        self.budget.held()
    }

    /// Waits until no fill is in progress.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.active.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Starts the fill; the returned receiver is the client's body.
pub fn spawn(
    cache: Arc<Cache>,
    fills: &Arc<Fills>,
    plan: FillPlan,
    body: Incoming,
    leader: Option<Leader>,
) -> TapReceiver {
    let (tx, rx) = tee::tap(fills.budget.clone());
    fills
        .active
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let guard = FillGuard(fills.clone());
    let budget = fills.budget.clone();
    let unlock = plan
        .share
        .as_ref()
        .map(|s| (s.tier.clone(), s.lock.clone()));
    tokio::spawn(async move {
        run(cache, plan, body, leader, tx, budget).await;
        // Stored and shared, or given up: the other nodes stop waiting.
        if let Some((tier, key)) = unlock {
            tier.unlock(&key).await;
        }
        drop(guard);
    });
    rx
}

/// The body kept for the cache, counted in the fill budget.
struct Kept {
    chunks: Vec<Bytes>,
    len: u64,
    _held: Held,
}

async fn run(
    cache: Arc<Cache>,
    plan: FillPlan,
    body: Incoming,
    mut leader: Option<Leader>,
    tx: TapSender,
    budget: Arc<FillBudget>,
) {
    let mut body = IdleTimeout::new(body, plan.read_timeout);
    let mut client = Some(tx);
    let mut kept = budget.try_take(0).map(|held| Kept {
        chunks: Vec::new(),
        len: 0,
        _held: held,
    });
    loop {
        let frame = match body.frame().await {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(e)) => {
                tracing::warn!(key = ?plan.key, error = %e, "upstream body failed during fill");
                if let Some(tx) = client.take() {
                    tx.send(Err(e));
                }
                if let Some(leader) = leader.take() {
                    leader.finish(FlightOutcome::NotShared);
                }
                return;
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if let Some(k) = &mut kept {
            let n = data.len() as u64;
            let room = (k.len + n <= plan.max_bytes)
                .then(|| budget.try_take(n))
                .flatten();
            match room {
                Some(held) => {
                    k._held.absorb(held);
                    k.chunks.push(data.clone());
                    k.len += n;
                }
                None => {
                    if k.len + n <= plan.max_bytes {
                        tracing::debug!(key = ?plan.key, "fill budget exhausted; not keeping this body");
                    }
                    kept = None;
                    if let Some(leader) = leader.take() {
                        leader.finish(FlightOutcome::NotShared);
                    }
                }
            }
        }
        if let Some(tx) = &client {
            // A kept body never waits for its client; one that is only
            // passed on goes at the client's pace.
            let open = tx.send(Ok(data)) && (kept.is_some() || tx.drained_to(STREAM_QUEUE).await);
            if !open {
                client = None;
            }
        }
        if client.is_none() && kept.is_none() {
            return;
        }
    }
    let Some(kept) = kept else { return };
    let body = assembled(&kept.chunks, kept.len);
    let mut headers = plan.headers;
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    if !headers.contains_key(DATE) {
        let date = httpdate::fmt_http_date(plan.timing.response_time);
        if let Ok(v) = HeaderValue::from_str(&date) {
            headers.insert(DATE, v);
        }
    }
    // What the listing records in the ledger reaches the other nodes too.
    let ledger = plan.share.as_ref().and(plan.dialect.ledger());
    if let Some(ledger) = ledger {
        ledger.share();
    }
    let facts = plan.dialect.facts(
        &plan.request,
        plan.key.partition(),
        plan.status,
        &headers,
        &body,
        plan.timing.response_time,
    );
    let entry = Entry::new(
        plan.key,
        plan.variant,
        facts.version.unwrap_or(Version::Unversioned),
        plan.status,
        headers,
        body,
        facts.tags,
        plan.timing,
        plan.freshness,
    );
    // Waiters of an outdated fill may have arrived after the invalidation:
    // they fetch again rather than get the outdated response.
    let (outcome, stored) = match cache.store(entry, plan.ticket) {
        StoreOutcome::Stored(e) => (FlightOutcome::Entry(e.clone(), plan.ticket), Some(e)),
        StoreOutcome::Outdated(e) => {
            tracing::debug!(key = ?e.key, "fill overtaken by an invalidation; not stored");
            (FlightOutcome::NotShared, None)
        }
    };
    if let Some(leader) = leader.take() {
        leader.finish(outcome);
    }
    // The other nodes' turn, after this node's waiters.
    if let (Some(e), Some(share)) = (stored, &plan.share) {
        share.tier.store(&e, &share.ticket, share.ttl).await;
    }
    if let (Some(ledger), Some(share)) = (ledger, &plan.share) {
        let records = ledger.take_unshared();
        if !records.is_empty() {
            share.tier.publish_ledger(&records).await;
        }
    }
}

/// The body as stored: one allocation of exactly its length (chunks hold
/// on to the buffers they were read into, which can be larger).
fn assembled(chunks: &[Bytes], len: u64) -> Bytes {
    let mut body = BytesMut::with_capacity(len as usize);
    for c in chunks {
        body.extend_from_slice(c);
    }
    body.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_body_is_one_allocation_of_its_length() {
        let chunks: Vec<Bytes> = (0..17).map(|_| Bytes::from(vec![7u8; 1000])).collect();
        let body = assembled(&chunks, 17_000);
        assert_eq!(body.len(), 17_000);
        assert!(body.iter().all(|&b| b == 7));
        assert_eq!(body.try_into_mut().map_or(0, |b| b.capacity()), 17_000);
    }
}
