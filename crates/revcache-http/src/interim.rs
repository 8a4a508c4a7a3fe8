//! Interim (1xx) responses relayed from the upstream to HTTP/1.1 clients
//! (RFC 9110 §15.2: a proxy forwards them), such as 103 Early Hints.
//!
//! hyper's server cannot send a 1xx, so revcache writes it on the
//! connection itself: each client connection's IO is an [`InterimIo`].
//! An HTTP/1.1 request is served under a [`Serving`] guard, and its
//! exchange holds the connection's [`InterimConnection`]: when it goes
//! upstream, `forward::upstream_request` arms it and gives the upstream
//! request a hyper `on_informational` callback that hands each 1xx to the
//! armed [`Interim`]. A hit arms nothing and allocates nothing for this.
//!
//! An interim may only go out between responses: while the request that
//! asked for it is being served (its final response not yet returned to
//! hyper), and when everything hyper wrote before has been flushed
//! (hyper flushes its own buffer whole before it flushes the IO, so "no
//! write since the last completed flush" means hyper holds nothing). An
//! interim that cannot go out then is dropped: they are advisory. The
//! bytes are queued and written by the connection's own task, ahead of
//! anything hyper writes next, so they never split a message. 1xx are
//! never stored, and their fields never reach the final response (hyper
//! keeps them apart). HTTP/1.0 clients get none (RFC 9110 §15.2), nor do
//! HTTP/2 clients (hyper's HTTP/2 server has no way to send them).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::policy::hop_by_hop;

/// What a connection and the relays of its current request share.
struct Shared {
    /// A request that may receive interims is being served. Set and
    /// cleared by the connection's task (under `state` when clearing).
    armed: AtomicBool,
    /// Which upstream request armed it (each arming takes the next).
    request: AtomicU64,
    next: AtomicU64,
    /// Nothing written since the last completed flush.
    quiet: AtomicBool,
    /// Interims queued for a request whose final response hyper is about
    /// to write: they go out first.
    leftover: AtomicBool,
    state: Mutex<Pending>,
    relayed: Counter,
    dropped: Counter,
}

#[derive(Default)]
struct Pending {
    bytes: BytesMut,
    /// The connection task's, to have it write what was queued.
    waker: Option<Waker>,
}

/// A client connection's IO, through which interims are written.
pub struct InterimIo<T> {
    inner: T,
    shared: Arc<Shared>,
}

/// A connection's side of the interims: the request being served arms
/// it when it goes upstream.
#[derive(Clone)]
pub struct InterimConnection {
    shared: Arc<Shared>,
}

/// An upstream request's way to relay 1xx to its client.
#[derive(Clone)]
pub struct Interim {
    shared: Arc<Shared>,
    request: u64,
}

/// Held while a request's service runs: [`Serving::finish`] when its
/// final response goes to hyper (what was queued is written ahead of it),
/// dropped unfinished when the request is abandoned (what was queued is
/// discarded). Either way nothing is relayed after it.
pub struct Serving {
    shared: Arc<Shared>,
    finished: bool,
}

impl<T> InterimIo<T> {
    /// `relayed` and `dropped` count the interims sent and given up.
    pub fn new(inner: T, relayed: Counter, dropped: Counter) -> (Self, InterimConnection) {
        let shared = Arc::new(Shared {
            armed: AtomicBool::new(false),
            request: AtomicU64::new(0),
            next: AtomicU64::new(1),
            quiet: AtomicBool::new(true),
            leftover: AtomicBool::new(false),
            state: Mutex::new(Pending::default()),
            relayed,
            dropped,
        });
        let connection = InterimConnection {
            shared: shared.clone(),
        };
        (InterimIo { inner, shared }, connection)
    }
}

impl InterimConnection {
    /// The guard of a request whose service starts now.
    pub fn serving(&self) -> Serving {
        Serving {
            shared: self.shared.clone(),
            finished: false,
        }
    }

    /// Arms the connection for an upstream request of the request being
    /// served: its 1xx may go to the client until the service ends (or
    /// another upstream request arms it).
    pub fn arm(&self) -> Interim {
        let request = self.shared.next.fetch_add(1, Ordering::Relaxed);
        self.shared.request.store(request, Ordering::SeqCst);
        self.shared.armed.store(true, Ordering::SeqCst);
        Interim {
            shared: self.shared.clone(),
            request,
        }
    }
}

impl Serving {
    /// The final response is returned to hyper: no interim after it, and
    /// those queued go out before it.
    pub fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        // A hit armed nothing: one load.
        if !self.shared.armed.load(Ordering::SeqCst) {
            return;
        }
        let mut pending = self.shared.state.lock();
        self.shared.armed.store(false, Ordering::SeqCst);
        if pending.bytes.is_empty() {
            return;
        }
        if self.finished {
            self.shared.leftover.store(true, Ordering::SeqCst);
        } else {
            self.shared.dropped.inc();
            pending.bytes.clear();
        }
    }
}

impl Interim {
    /// Queues `status` with `headers` for the client, when it may go out
    /// now; 100 and 101 are hop-by-hop and never relayed. Runs on the
    /// upstream connection's task.
    pub fn relay(&self, status: StatusCode, headers: &HeaderMap) {
        if !status.is_informational()
            || status == StatusCode::CONTINUE
            || status == StatusCode::SWITCHING_PROTOCOLS
        {
            return;
        }
        let shared = &self.shared;
        let waker = {
            let mut pending = shared.state.lock();
            let current = shared.armed.load(Ordering::SeqCst)
                && shared.request.load(Ordering::SeqCst) == self.request;
            if !current || !shared.quiet.load(Ordering::SeqCst) {
                shared.dropped.inc();
                return;
            }
            encode(status, headers, &mut pending.bytes);
            shared.relayed.inc();
            pending.waker.clone()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// `status` and `headers` as an HTTP/1.1 interim response head, without
/// hop-by-hop fields.
fn encode(status: StatusCode, headers: &HeaderMap, out: &mut BytesMut) {
    let mut headers = headers.clone();
    hop_by_hop::strip(&mut headers);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(
        status
            .canonical_reason()
            .unwrap_or("Informational")
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    for (name, value) in &headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

impl<T: AsyncWrite + Unpin> InterimIo<T> {
    /// Whether writes must look at the queue: a request is armed, or
    /// interims are left for the response about to be written.
    fn guarded(&self) -> bool {
        self.shared.armed.load(Ordering::SeqCst) || self.shared.leftover.load(Ordering::SeqCst)
    }

    /// Writes what relays queued, ahead of anything else.
    fn poll_pending(
        &mut self,
        pending: &mut Pending,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !pending.bytes.is_empty() {
            let n = match Pin::new(&mut self.inner).poll_write(cx, &pending.bytes) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => n,
            };
            pending.bytes.advance(n);
        }
        self.shared.leftover.store(false, Ordering::SeqCst);
        Poll::Ready(Ok(()))
    }

    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut T>, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if !self.guarded() {
            self.shared.quiet.store(false, Ordering::SeqCst);
            return write(Pin::new(&mut self.inner), cx);
        }
        let shared = self.shared.clone();
        let mut pending = shared.state.lock();
        shared.quiet.store(false, Ordering::SeqCst);
        match self.poll_pending(&mut pending, cx) {
            Poll::Ready(Ok(())) => write(Pin::new(&mut self.inner), cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for InterimIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for InterimIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.guarded() {
            let flushed = Pin::new(&mut this.inner).poll_flush(cx);
            if let Poll::Ready(Ok(())) = flushed {
                this.shared.quiet.store(true, Ordering::SeqCst);
            }
            return flushed;
        }
        let shared = this.shared.clone();
        let mut pending = shared.state.lock();
        if !pending
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            pending.waker = Some(cx.waker().clone());
        }
        match this.poll_pending(&mut pending, cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            shared.quiet.store(true, Ordering::SeqCst);
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn early_hints() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("link", "</style.css>; rel=preload".parse().unwrap());
        h.insert("connection", "x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h
    }

    fn io() -> (InterimIo<Vec<u8>>, InterimConnection) {
        InterimIo::new(Vec::new(), Counter::default(), Counter::default())
    }

    #[tokio::test]
    async fn an_interim_goes_out_before_the_final_response_without_hop_by_hop_fields() {
        let (mut io, conn) = io();
        let armed = conn.serving();
        let interim = conn.arm();
        interim.relay(StatusCode::from_u16(103).unwrap(), &early_hints());
        // The final response is returned before the connection flushed.
        armed.finish();
        io.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        assert_eq!(
            String::from_utf8(io.inner).unwrap(),
            "HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"
        );
        assert_eq!(io.shared.relayed.get(), 1);
    }

    #[tokio::test]
    async fn nothing_is_relayed_while_a_write_is_unflushed_or_after_the_response() {
        let (mut io, conn) = io();
        io.write_all(b"previous response tail").await.unwrap();
        let armed = conn.serving();
        let interim = conn.arm();
        interim.relay(StatusCode::from_u16(103).unwrap(), &early_hints());
        io.flush().await.unwrap();
        interim.relay(StatusCode::from_u16(102).unwrap(), &HeaderMap::new());
        io.flush().await.unwrap();
        drop(armed);
        interim.relay(StatusCode::from_u16(103).unwrap(), &early_hints());
        io.flush().await.unwrap();
        assert_eq!(
            String::from_utf8(io.inner).unwrap(),
            "previous response tailHTTP/1.1 102 Processing\r\n\r\n"
        );
        assert_eq!(io.shared.dropped.get(), 2);
    }

    #[tokio::test]
    async fn what_an_abandoned_request_queued_is_discarded() {
        let (mut io, conn) = io();
        let armed = conn.serving();
        let interim = conn.arm();
        interim.relay(StatusCode::from_u16(103).unwrap(), &early_hints());
        drop(armed);
        io.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        assert_eq!(io.inner, b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(io.shared.dropped.get(), 1);
    }

    #[tokio::test]
    async fn a_relay_for_an_earlier_upstream_request_is_dropped_and_100_is_never_relayed() {
        let (mut io, conn) = io();
        let serving = conn.serving();
        let old = conn.arm();
        drop(serving);
        let _serving = conn.serving();
        let current = conn.arm();
        old.relay(StatusCode::from_u16(103).unwrap(), &early_hints());
        current.relay(StatusCode::CONTINUE, &HeaderMap::new());
        io.flush().await.unwrap();
        assert!(io.inner.is_empty());
    }
}
