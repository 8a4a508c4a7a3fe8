//! Filling the cache from an upstream response while the client receives it.
//!
//! The fill runs as its own task: it reads the upstream body, forwards each
//! chunk to the requesting client (if one is still listening) and keeps a
//! copy. When the body is complete it stores the entry and hands it to the
//! single flight's waiters. A client that disconnects does not stop the
//! fill, so waiters are never punished for the leader's client leaving.
//! A body that grows past the cacheable limit stops being kept; the
//! waiters are then told to fetch for themselves.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, DATE, HeaderValue};
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use revcache_core::entry::Variant;
use revcache_core::{
    Cache, Entry, EntryTiming, FillTicket, Freshness, LeaderGuard, PrimaryKey, StoreOutcome,
    Version,
};
use tokio::sync::mpsc;

use super::FlightOutcome;
use super::body::{BodyError, IdleTimeout};
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
}

pub type Leader = LeaderGuard<PrimaryKey, FlightOutcome>;

/// Counts fills in progress, so shutdown can let them finish storing
/// (a client may have its whole body before the fill stores it).
#[derive(Default)]
pub struct Fills {
    active: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
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
) -> mpsc::Receiver<Result<Bytes, BodyError>> {
    let (tx, rx) = mpsc::channel(32);
    fills
        .active
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let guard = FillGuard(fills.clone());
    tokio::spawn(async move {
        run(cache, plan, body, leader, tx).await;
        drop(guard);
    });
    rx
}

async fn run(
    cache: Arc<Cache>,
    plan: FillPlan,
    body: Incoming,
    mut leader: Option<Leader>,
    tx: mpsc::Sender<Result<Bytes, BodyError>>,
) {
    let mut body = IdleTimeout::new(body, plan.read_timeout);
    let mut client = Some(tx);
    // Room for the declared length up front, so a body that arrives in many
    // chunks is not copied at every doubling (bounded: the upstream says it).
    let declared = plan
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .filter(|&n| n <= plan.max_bytes)
        .unwrap_or(0);
    let mut kept = Some(BytesMut::with_capacity(declared as usize));
    loop {
        let frame = match body.frame().await {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(e)) => {
                tracing::warn!(key = ?plan.key, error = %e, "upstream body failed during fill");
                if let Some(tx) = client.take() {
                    let _ = tx.send(Err(e)).await;
                }
                if let Some(leader) = leader.take() {
                    leader.complete(FlightOutcome::NotShared);
                }
                return;
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if let Some(buf) = &mut kept {
            if (buf.len() + data.len()) as u64 > plan.max_bytes {
                kept = None;
                if let Some(leader) = leader.take() {
                    leader.complete(FlightOutcome::NotShared);
                }
            } else {
                buf.extend_from_slice(&data);
            }
        }
        if let Some(tx) = &client
            && tx.send(Ok(data)).await.is_err()
        {
            client = None;
        }
        if client.is_none() && kept.is_none() {
            return;
        }
    }
    let Some(buf) = kept else { return };
    let body = fitted(buf);
    let mut headers = plan.headers;
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    if !headers.contains_key(DATE) {
        let date = httpdate::fmt_http_date(plan.timing.response_time);
        if let Ok(v) = HeaderValue::from_str(&date) {
            headers.insert(DATE, v);
        }
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
    let shared = match cache.store(entry, plan.ticket) {
        StoreOutcome::Stored(e) => FlightOutcome::Entry(e),
        StoreOutcome::Outdated(e) => {
            tracing::debug!(key = ?e.key, "fill overtaken by an invalidation; not stored");
            FlightOutcome::NotShared
        }
    };
    if let Some(leader) = leader.take() {
        leader.complete(shared);
    }
}

/// The body as stored, in an allocation of about its own size. A buffer
/// grown chunk by chunk (no or a wrong Content-Length) can hold up to twice
/// its length, which the memory tier's byte budget, weighing lengths,
/// would never see; such a body is copied once into a buffer that fits.
fn fitted(buf: BytesMut) -> Bytes {
    if buf.capacity() - buf.len() > buf.len() / 8 {
        Bytes::copy_from_slice(&buf)
    } else {
        buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capacity_of(body: Bytes) -> usize {
        body.try_into_mut().map_or(0, |b| b.capacity())
    }

    #[test]
    fn a_stored_body_does_not_keep_the_room_its_buffer_grew() {
        let mut grown = BytesMut::new();
        for _ in 0..17 {
            grown.extend_from_slice(&[7; 1000]);
        }
        assert!(grown.capacity() > 20_000, "the buffer grew past the body");
        let body = fitted(grown);
        assert_eq!(body.len(), 17_000);
        assert!(body.iter().all(|&b| b == 7));
        assert!(capacity_of(body) <= 17_000 + 17_000 / 8);

        let mut exact = BytesMut::with_capacity(17_000);
        exact.extend_from_slice(&[1; 17_000]);
        let ptr = exact.as_ptr();
        let body = fitted(exact);
        assert_eq!(body.as_ptr(), ptr, "a buffer that fits is not copied");
    }
}
