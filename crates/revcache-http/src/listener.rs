//! A listener's accept loop and the life of its connections: at most
//! `max_connections` at a time (beyond, new ones wait in the kernel's
//! backlog), a connection that sends no request within the header timeout
//! is closed, one with no request in progress for the idle timeout is shut
//! down gracefully, and an accept that fails for lack of resources
//! (`EMFILE`, `ENFILE`, `ENOBUFS` …) backs off instead of spinning.
//!
//! It never reads or answers requests itself: the [`Handler`] does.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use crate::interim::{InterimConnection, InterimIo};
use crate::listener_tls::{ClientTls, ListenerTls};
use crate::metrics::ListenerMetrics;
use crate::proxy::body::{BodyError, ProxyBody};

/// What answers a listener's requests.
pub(crate) trait Handler: Clone + Send + Sync + 'static {
    /// `interims`: how an HTTP/1.1 request's upstream 1xx reach its client.
    fn serve(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        interims: Option<InterimConnection>,
    ) -> impl Future<Output = Response<ProxyBody>> + Send;
}

/// The connection limits of one listener.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// What the server asks of open connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Serving,
    /// Finish the requests in progress, take no new ones.
    Draining,
    /// Close now.
    Closing,
}

pub(crate) struct Listener<H> {
    name: &'static str,
    listener: TcpListener,
    limits: ConnectionLimits,
    slots: Arc<Semaphore>,
    handler: H,
    builder: auto::Builder<TokioExecutor>,
    metrics: ListenerMetrics,
    /// TLS: each connection's handshake runs in its own task, within the
    /// connection cap and the header timeout.
    tls: Option<Arc<ListenerTls>>,
}

impl<H: Handler> Listener<H> {
    pub fn new(
        name: &'static str,
        listener: TcpListener,
        limits: ConnectionLimits,
        handler: H,
        builder: auto::Builder<TokioExecutor>,
        metrics: ListenerMetrics,
    ) -> Self {
        Listener {
            name,
            listener,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            limits,
            handler,
            builder,
            metrics,
            tls: None,
        }
    }

    /// Serves TLS with `tls`'s current certificate.
    pub fn with_tls(mut self, tls: Arc<ListenerTls>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Resolves once every connection slot is free again (all connections
    /// closed).
    pub fn all_closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let (slots, n) = (self.slots.clone(), self.limits.max_connections.max(1));
        async move {
            let _ = slots
                .acquire_many(u32::try_from(n).unwrap_or(u32::MAX))
                .await;
        }
    }

    /// Accepts until the phase leaves `Serving`; the listening socket is
    /// closed when this returns.
    pub async fn run(self, mut phase: watch::Receiver<Phase>) {
        let mut backoff = AcceptBackoff::default();
        loop {
            // A slot first: at the cap, connections wait in the backlog
            // rather than being accepted and left unserved.
            let permit = tokio::select! {
                p = self.slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                _ = phase.wait_for(|p| *p != Phase::Serving) => return,
            };
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = phase.wait_for(|p| *p != Phase::Serving) => return,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    drop(permit);
                    let Some(delay) = backoff.failed(&e) else {
                        tracing::debug!(listener = self.name, error = %e, "accept: connection failed before it was accepted");
                        continue;
                    };
                    self.metrics.accept_errors.inc();
                    if backoff.errors == 1 {
                        tracing::warn!(listener = self.name, error = %e, "accept failed; backing off (raise the open-file limit or lower max_connections)");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = phase.wait_for(|p| *p != Phase::Serving) => return,
                    }
                    continue;
                }
            };
            if let Some(errors) = backoff.accepted() {
                tracing::info!(listener = self.name, errors, "accepting connections again");
            }
            let _ = stream.set_nodelay(true);
            let connection = self.connection();
            match &self.tls {
                None => connection.spawn(stream, peer, permit, phase.clone(), false),
                Some(tls) => {
                    let (acceptor, phase) = (tls.acceptor(), phase.clone());
                    tokio::spawn(async move {
                        let timeout = connection.limits.header_timeout;
                        match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => connection.spawn(tls, peer, permit, phase, true),
                            Ok(Err(e)) => {
                                tracing::debug!(listener = connection.name, %peer, error = %e, "TLS handshake failed");
                            }
                            Err(_) => {
                                connection.metrics.header_timeouts.inc();
                                tracing::debug!(listener = connection.name, %peer, "no TLS handshake within the header timeout; closing");
                            }
                        }
                    });
                }
            }
        }
    }

    fn connection(&self) -> Connection<H> {
        Connection {
            name: self.name,
            limits: self.limits,
            handler: self.handler.clone(),
            builder: self.builder.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// What serving one accepted connection needs.
struct Connection<H> {
    name: &'static str,
    limits: ConnectionLimits,
    handler: H,
    builder: auto::Builder<TokioExecutor>,
    metrics: ListenerMetrics,
}

impl<H: Handler> Connection<H> {
    fn spawn<I>(
        self,
        io: I,
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
        mut phase: watch::Receiver<Phase>,
        over_tls: bool,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let (io, interims) = InterimIo::new(
            io,
            self.metrics.interim_relayed.clone(),
            self.metrics.interim_dropped.clone(),
        );
        let service = service_fn({
            let (handler, activity) = (self.handler.clone(), activity.clone());
            move |mut req: Request<Incoming>| {
                if over_tls {
                    req.extensions_mut().insert(ClientTls);
                }
                // Only HTTP/1.1 clients may be sent 1xx this way.
                let h11 = req.version() == http::Version::HTTP_11;
                let serving = h11.then(|| interims.serving());
                let relay = h11.then(|| interims.clone());
                let (handler, guard) = (handler.clone(), activity.begin());
                async move {
                    let res = handler.serve(req, peer, relay).await;
                    // The final response goes to hyper: no interim after it.
                    if let Some(serving) = serving {
                        serving.finish();
                    }
                    Ok::<_, Infallible>(res.map(|body| Tracked {
                        body,
                        _guard: guard,
                    }))
                }
            }
        });
        let conn = self
            .builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned();
        let (limits, metrics, name) = (self.limits, self.metrics.clone(), self.name);
        metrics.open.inc();
        tokio::spawn(async move {
            tokio::pin!(conn);
            let mut draining = false;
            let mut idle_since: Option<Instant> = None;
            if *phase.borrow_and_update() != Phase::Serving {
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
            loop {
                let deadline = activity.deadline(&limits, idle_since);
                tokio::select! {
                    done = conn.as_mut() => {
                        if let Err(e) = done {
                            tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    changed = phase.changed() => {
                        let now = if changed.is_err() { Phase::Closing } else { *phase.borrow_and_update() };
                        match now {
                            Phase::Serving => {}
                            Phase::Draining if !draining => {
                                conn.as_mut().graceful_shutdown();
                                draining = true;
                            }
                            Phase::Draining => {}
                            Phase::Closing => break,
                        }
                    }
                    // The first request ends the header-timeout regime.
                    () = activity.first_request.notified() => {}
                    () = tokio::time::sleep_until(deadline) => {
                        let now = Instant::now();
                        match activity.expired(&limits, idle_since, now) {
                            Expired::No => {}
                            Expired::NoRequest => {
                                metrics.header_timeouts.inc();
                                tracing::debug!(listener = name, %peer, "no request within the header timeout; closing");
                                break;
                            }
                            Expired::Idle => {
                                metrics.idle_timeouts.inc();
                                if !draining {
                                    conn.as_mut().graceful_shutdown();
                                    draining = true;
                                }
                                idle_since = Some(now);
                            }
                            Expired::IdleClose => break,
                        }
                    }
                }
            }
            metrics.open.dec();
            drop(permit);
        });
    }
}

/// What a connection has been doing, for its timeouts. Requests only
/// update counters (the first one also wakes the connection, to leave the
/// header timeout): the connection's timer looks at them when it fires and
/// sleeps again if nothing expired, so a request costs no wake-up.
struct Activity {
    started: Instant,
    requests: AtomicU64,
    in_flight: AtomicUsize,
    /// When the last response finished, in milliseconds since `started`.
    last_done_ms: AtomicU64,
    first_request: Notify,
}

enum Expired {
    No,
    /// No request arrived within the header timeout.
    NoRequest,
    /// No request in progress for the idle timeout: shut down gracefully.
    Idle,
    /// Shut down for idleness a header timeout ago and still open.
    IdleClose,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: Instant::now(),
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
            first_request: Notify::new(),
        }
    }

    fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.requests.fetch_add(1, Ordering::SeqCst) == 0 {
            self.first_request.notify_one();
        }
        RequestGuard(self.clone())
    }

    fn last_done(&self) -> Instant {
        self.started + Duration::from_millis(self.last_done_ms.load(Ordering::SeqCst))
    }

    /// When to look again.
    fn deadline(&self, limits: &ConnectionLimits, idle_since: Option<Instant>) -> Instant {
        if self.requests.load(Ordering::SeqCst) == 0 {
            return self.started + limits.header_timeout;
        }
        if let Some(since) = idle_since {
            return since + limits.header_timeout;
        }
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Instant::now() + limits.idle_timeout;
        }
        self.last_done() + limits.idle_timeout
    }

    fn expired(
        &self,
        limits: &ConnectionLimits,
        idle_since: Option<Instant>,
        now: Instant,
    ) -> Expired {
        if self.requests.load(Ordering::SeqCst) == 0 {
            return if now >= self.started + limits.header_timeout {
                Expired::NoRequest
            } else {
                Expired::No
            };
        }
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Expired::No;
        }
        match idle_since {
            Some(since) if now >= since + limits.header_timeout => Expired::IdleClose,
            Some(_) => Expired::No,
            None if now >= self.last_done() + limits.idle_timeout => Expired::Idle,
            None => Expired::No,
        }
    }
}

/// A request in progress, until its response body is done or dropped.
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.0;
        let since = Instant::now().saturating_duration_since(a.started);
        a.last_done_ms.store(
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
        a.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request counted as in progress.
struct Tracked {
    body: ProxyBody,
    _guard: RequestGuard,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// How long to wait before accepting again after a failed accept.
#[derive(Debug, Default)]
pub(crate) struct AcceptBackoff {
    delay: Duration,
    /// Failed accepts since the last successful one.
    pub errors: u64,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    /// `None` when the error belongs to one connection (it was reset
    /// before it was accepted) and accepting may go on at once; otherwise
    /// the pause, doubling from 5 ms to 1 s while accepts keep failing.
    pub fn failed(&mut self, e: &std::io::Error) -> Option<Duration> {
        use std::io::ErrorKind::*;
        if matches!(
            e.kind(),
            ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
        ) {
            return None;
        }
        self.errors += 1;
        self.delay = if self.delay.is_zero() {
            Self::FIRST
        } else {
            (self.delay * 2).min(Self::MAX)
        };
        Some(self.delay)
    }

    /// A connection was accepted; returns how many accepts had failed
    /// before it, if any.
    pub fn accepted(&mut self) -> Option<u64> {
        self.delay = Duration::ZERO;
        (self.errors > 0).then(|| std::mem::take(&mut self.errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> std::io::Error {
        std::io::Error::from_raw_os_error(24)
    }

    #[test]
    fn accept_errors_for_lack_of_resources_back_off_up_to_a_second() {
        let mut b = AcceptBackoff::default();
        let delays: Vec<_> = (0..12).map(|_| b.failed(&emfile()).unwrap()).collect();
        assert_eq!(delays[0], Duration::from_millis(5));
        assert_eq!(delays[1], Duration::from_millis(10));
        assert!(delays.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*delays.last().unwrap(), Duration::from_secs(1));
        assert_eq!(b.accepted(), Some(12));
        assert_eq!(b.accepted(), None);
        assert_eq!(
            b.failed(&emfile()),
            Some(Duration::from_millis(5)),
            "a success starts over"
        );
    }

    #[test]
    fn a_connection_reset_before_accept_does_not_pause_accepting() {
        let mut b = AcceptBackoff::default();
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionAborted);
        assert_eq!(b.failed(&reset), None);
        assert_eq!(b.errors, 0);
    }
}
