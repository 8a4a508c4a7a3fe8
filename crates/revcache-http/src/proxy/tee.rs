//! The fill's copy of the upstream body for its client, decoupled from
//! how fast that client reads.
//!
//! A fill that keeps the body for the cache never waits for its client:
//! chunks queue for the client while the fill goes on at upstream speed, so
//! one client that stops reading cannot hold back the waiters of its URL.
//! Every queued byte is counted in the [`FillBudget`] (shared by all fills,
//! released as the client reads or goes away) and per tap; a fill that no
//! longer keeps the body (too large, over budget) waits for its client like
//! any pass-through, so what a slow client can make revcache hold is
//! bounded.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

use super::body::BodyError;

/// Bytes held by fills in progress (kept for the cache, or queued for a
/// client), against a limit shared by every fill.
#[derive(Debug)]
pub struct FillBudget {
    held: AtomicU64,
    /// Changed by a config reload; fills already holding more keep it.
    limit: AtomicU64,
}

impl FillBudget {
    pub fn new(limit: u64) -> Self {
        FillBudget {
            held: AtomicU64::new(0),
            limit: AtomicU64::new(limit),
        }
    }

    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Takes `n` bytes if they fit under the limit.
    pub fn try_take(self: &Arc<Self>, n: u64) -> Option<Held> {
        let mut current = self.held.load(Ordering::Relaxed);
        let limit = self.limit.load(Ordering::Relaxed);
        loop {
            if current.saturating_add(n) > limit {
                return None;
            }
            match self.held.compare_exchange_weak(
                current,
                current + n,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Held::new(self.clone(), n)),
                Err(now) => current = now,
            }
        }
    }

    /// Takes `n` bytes whatever the limit (bytes a fill that waits for its
    /// client queues: bounded per tap instead).
    fn take(self: &Arc<Self>, n: u64) -> Held {
        self.held.fetch_add(n, Ordering::AcqRel);
        Held::new(self.clone(), n)
    }

    /// Bytes held now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }
}

/// Bytes counted in a [`FillBudget`] until dropped.
#[derive(Debug)]
pub struct Held {
    budget: Arc<FillBudget>,
    bytes: u64,
}

impl Held {
    fn new(budget: Arc<FillBudget>, bytes: u64) -> Self {
        Held { budget, bytes }
    }

    /// Adds `other` to this holding.
    pub fn absorb(&mut self, mut other: Held) {
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Bytes queued for one client.
struct Queued {
    bytes: AtomicU64,
    drained: Notify,
}

/// One chunk on its way to the client; its bytes stay counted until the
/// client takes it (or is gone and the queue is dropped).
struct Chunk {
    data: Option<Result<Bytes, BodyError>>,
    len: u64,
    _held: Held,
    queued: Arc<Queued>,
}

impl Drop for Chunk {
    fn drop(&mut self) {
        self.queued.bytes.fetch_sub(self.len, Ordering::AcqRel);
        self.queued.drained.notify_waiters();
    }
}

/// The fill's end of a client's body.
pub struct TapSender {
    tx: mpsc::UnboundedSender<Chunk>,
    queued: Arc<Queued>,
    budget: Arc<FillBudget>,
}

/// The client's end: the body hyper sends.
pub struct TapReceiver {
    rx: mpsc::UnboundedReceiver<Chunk>,
}

pub fn tap(budget: Arc<FillBudget>) -> (TapSender, TapReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(Queued {
        bytes: AtomicU64::new(0),
        drained: Notify::new(),
    });
    (TapSender { tx, queued, budget }, TapReceiver { rx })
}

impl TapSender {
    /// Queues `data` for the client without waiting; `false` once the
    /// client is gone.
    pub fn send(&self, data: Result<Bytes, BodyError>) -> bool {
        let n = data.as_ref().map_or(0, |b| b.len() as u64);
        let held = self.budget.take(n);
        self.queued.bytes.fetch_add(n, Ordering::AcqRel);
        let chunk = Chunk {
            data: Some(data),
            len: n,
            _held: held,
            queued: self.queued.clone(),
        };
        self.tx.send(chunk).is_ok()
    }

    /// Waits until at most `limit` bytes are queued for the client, or the
    /// client is gone (`false`).
    pub async fn drained_to(&self, limit: u64) -> bool {
        loop {
            let drained = self.queued.drained.notified();
            if self.tx.is_closed() {
                return false;
            }
            if self.queued.bytes.load(Ordering::Acquire) <= limit {
                return true;
            }
            tokio::select! {
                _ = drained => {}
                _ = self.tx.closed() => return false,
            }
        }
    }

    #[cfg(test)]
    fn queued(&self) -> u64 {
        self.queued.bytes.load(Ordering::Acquire)
    }
}

impl TapReceiver {
    pub fn poll_recv(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, BodyError>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.and_then(|mut c| c.data.take()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queued_bytes_stay_counted_until_the_client_takes_them() {
        let budget = Arc::new(FillBudget::new(100));
        let (tx, mut rx) = tap(budget.clone());
        assert!(tx.send(Ok(Bytes::from_static(b"0123456789"))));
        assert!(tx.send(Ok(Bytes::from_static(b"abcde"))));
        assert_eq!((tx.queued(), budget.held()), (15, 15));
        let first = std::future::poll_fn(|cx| Pin::new(&mut rx).poll_recv(cx)).await;
        assert_eq!(first.unwrap().unwrap(), "0123456789");
        assert_eq!((tx.queued(), budget.held()), (5, 5));
        assert!(tx.drained_to(5).await);
        drop(rx);
        assert_eq!(budget.held(), 0, "a client that left releases its queue");
        assert!(!tx.send(Ok(Bytes::from_static(b"x"))));
        assert!(!tx.drained_to(0).await);
    }

    #[test]
    fn the_budget_refuses_what_does_not_fit() {
        let budget = Arc::new(FillBudget::new(10));
        let mut a = budget.try_take(6).unwrap();
        assert!(budget.try_take(5).is_none());
        a.absorb(budget.try_take(4).unwrap());
        assert_eq!(budget.held(), 10);
        drop(a);
        assert_eq!(budget.held(), 0);
    }
}
