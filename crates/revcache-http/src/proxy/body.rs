//! Response and request bodies as the proxy moves them.
//!
//! One enum instead of a boxed trait object: a hit is `Full` (shared
//! `Bytes`, no copy), a pass-through is `Upstream` (streamed with an idle
//! timeout), a fill is `Channel` (the fill task tees the upstream body to
//! the client and the cache). Every variant counts the bytes it sends.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use prometheus_client::metrics::counter::Counter;

use super::tee::TapReceiver;
use tokio::time::Sleep;

pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The upstream stopped sending body bytes for longer than the read timeout.
#[derive(Debug, thiserror::Error)]
#[error("upstream read timeout: no body bytes for {0:?}")]
pub struct BodyTimeout(pub Duration);

pub struct ProxyBody {
    kind: Kind,
    sent: Option<Counter>,
}

enum Kind {
    Empty,
    Full(Option<Bytes>),
    Upstream(IdleTimeout<Incoming>),
    Channel(TapReceiver),
    File(FileStream),
    /// Bytes already read from `rest`, then the rest of it.
    Prefixed {
        prefix: Option<Bytes>,
        rest: Box<ProxyBody>,
    },
    /// `remaining` bytes of `body` after the first `skip` (a byte range
    /// of a body that cannot be cut where it is).
    Slice {
        body: Box<ProxyBody>,
        skip: u64,
        remaining: u64,
    },
    /// A body whose access-log line is written when it ends or is dropped.
    Logged {
        body: Box<ProxyBody>,
        line: crate::access_log::Pending,
    },
}

/// A body file of the disk tier, read in chunks as the client takes them.
pub struct FileStream {
    file: tokio::fs::File,
    /// Where reading starts, until the file has been positioned there.
    seek: Option<Seek>,
    remaining: u64,
    buf: bytes::BytesMut,
}

#[derive(Clone, Copy)]
enum Seek {
    To(u64),
    Started,
}

const FILE_CHUNK: usize = 64 << 10;

impl ProxyBody {
    pub fn empty() -> Self {
        ProxyBody {
            kind: Kind::Empty,
            sent: None,
        }
    }

    pub fn full(bytes: Bytes, sent: Counter) -> Self {
        ProxyBody {
            kind: Kind::Full(Some(bytes)),
            sent: Some(sent),
        }
    }

    /// A body the proxy made up (errors, admin answers); not counted.
    pub fn text(text: impl Into<Bytes>) -> Self {
        ProxyBody {
            kind: Kind::Full(Some(text.into())),
            sent: None,
        }
    }

    pub fn upstream(body: Incoming, idle: Duration, sent: Counter) -> Self {
        ProxyBody {
            kind: Kind::Upstream(IdleTimeout::new(body, idle)),
            sent: Some(sent),
        }
    }

    /// Opens a body file now, so a vanished file is noticed before any
    /// response header is sent.
    pub async fn file(file: &revcache_core::BodyFile, sent: Counter) -> std::io::Result<Self> {
        let f = tokio::fs::File::open(&file.path).await?;
        let len = f.metadata().await?.len();
        if len != file.len {
            return Err(std::io::Error::other(format!(
                "body file is {len} bytes, expected {}",
                file.len
            )));
        }
        Ok(ProxyBody {
            kind: Kind::File(FileStream {
                file: f,
                seek: None,
                remaining: file.len,
                buf: bytes::BytesMut::new(),
            }),
            sent: Some(sent),
        })
    }

    pub fn channel(rx: TapReceiver, sent: Counter) -> Self {
        ProxyBody {
            kind: Kind::Channel(rx),
            sent: Some(sent),
        }
    }

    /// `prefix` (already read from `rest`, and counted there), then what
    /// is left of `rest`.
    pub fn prefixed(prefix: Bytes, rest: ProxyBody) -> Self {
        ProxyBody {
            kind: Kind::Prefixed {
                prefix: Some(prefix),
                rest: Box::new(rest),
            },
            sent: None,
        }
    }
}

impl ProxyBody {
    /// `len` bytes of this body from `start` on (a byte range; the caller
    /// checked both against the body's length). A body in memory or in a
    /// file is cut where it is; a streamed one reads and drops what comes
    /// before `start`. Only the bytes sent are counted.
    pub fn slice(mut self, start: u64, len: u64) -> Self {
        match &mut self.kind {
            Kind::Full(Some(b)) => {
                let from = (start as usize).min(b.len());
                let to = (start.saturating_add(len) as usize).min(b.len());
                *b = b.slice(from..to);
                self
            }
            Kind::File(f) => {
                f.remaining = len.min(f.remaining.saturating_sub(start));
                f.seek = Some(Seek::To(start));
                self
            }
            Kind::Empty | Kind::Full(None) => self,
            _ => {
                let sent = self.sent.take();
                ProxyBody {
                    kind: Kind::Slice {
                        body: Box::new(self),
                        skip: start,
                        remaining: len,
                    },
                    sent,
                }
            }
        }
    }

    /// `body`, counting what it sends into `line`, which is queued for
    /// the access log when the body ends or is dropped.
    pub(crate) fn logged(body: ProxyBody, line: crate::access_log::Pending) -> Self {
        ProxyBody {
            kind: Kind::Logged {
                body: Box::new(body),
                line,
            },
            sent: None,
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let polled = match &mut this.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream(body) => Pin::new(body).poll_frame(cx),
            Kind::Channel(rx) => Pin::new(rx)
                .poll_recv(cx)
                .map(|o| o.map(|r| r.map(Frame::data))),
            Kind::File(f) => f.poll_chunk(cx),
            Kind::Prefixed { prefix, rest } => match prefix.take() {
                Some(p) => Poll::Ready(Some(Ok(Frame::data(p)))),
                None => Pin::new(&mut **rest).poll_frame(cx),
            },
            Kind::Slice {
                body,
                skip,
                remaining,
            } => poll_slice(body, skip, remaining, cx),
            Kind::Logged { body, line } => {
                let polled = Pin::new(&mut **body).poll_frame(cx);
                if let Poll::Ready(Some(Ok(frame))) = &polled
                    && let Some(data) = frame.data_ref()
                {
                    line.sent(data.len());
                }
                polled
            }
        };
        if let (Poll::Ready(Some(Ok(frame))), Some(sent)) = (&polled, &this.sent)
            && let Some(data) = frame.data_ref()
        {
            sent.inc_by(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(b) => b.is_none(),
            Kind::Upstream(b) => b.inner.is_end_stream(),
            Kind::Channel(_) => false,
            Kind::File(f) => f.remaining == 0,
            Kind::Prefixed { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
            Kind::Slice { remaining, .. } => *remaining == 0,
            Kind::Logged { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream(b) => b.inner.size_hint(),
            Kind::Channel(_) => SizeHint::default(),
            Kind::File(f) => SizeHint::with_exact(f.remaining),
            Kind::Prefixed { prefix, rest } => {
                let before = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + before);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + before);
                }
                hint
            }
            Kind::Slice { remaining, .. } => SizeHint::with_exact(*remaining),
            Kind::Logged { body, .. } => body.size_hint(),
        }
    }
}

/// The next bytes of a slice: what `body` yields past the first `skip`
/// bytes, until `remaining` have gone out. A body that ends first was
/// shorter than it said: an error, so the client sees a truncated answer
/// as one.
fn poll_slice(
    body: &mut ProxyBody,
    skip: &mut u64,
    remaining: &mut u64,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
    loop {
        if *remaining == 0 {
            return Poll::Ready(None);
        }
        let frame = match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {
                let e = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "body ended before the requested range",
                );
                return Poll::Ready(Some(Err(Box::new(e))));
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        let len = data.len() as u64;
        if *skip >= len {
            *skip -= len;
            continue;
        }
        let _ = data.split_to(*skip as usize);
        *skip = 0;
        if data.len() as u64 > *remaining {
            data.truncate(*remaining as usize);
        }
        *remaining -= data.len() as u64;
        return Poll::Ready(Some(Ok(Frame::data(data))));
    }
}

impl FileStream {
    fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        use tokio::io::{AsyncRead, AsyncSeek};
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        if let Some(seek) = self.seek {
            if let Seek::To(start) = seek {
                if let Err(e) = Pin::new(&mut self.file).start_seek(std::io::SeekFrom::Start(start))
                {
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                self.seek = Some(Seek::Started);
            }
            match Pin::new(&mut self.file).poll_complete(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(Box::new(e)))),
                Poll::Ready(Ok(_)) => self.seek = None,
            }
        }
        let want = (self.remaining as usize).min(FILE_CHUNK);
        self.buf.resize(want, 0);
        let mut read_buf = tokio::io::ReadBuf::new(&mut self.buf[..want]);
        match Pin::new(&mut self.file).poll_read(cx, &mut read_buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(Ok(())) => {
                let n = read_buf.filled().len();
                if n == 0 {
                    let e = std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "body file shorter than recorded",
                    );
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                self.remaining -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(self.buf.split_to(n).freeze()))))
            }
        }
    }
}

/// Fails a body that yields nothing for `idle`.
pub struct IdleTimeout<B> {
    pub inner: B,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, idle: Duration) -> Self {
        IdleTimeout {
            inner,
            idle,
            timer: None,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BodyError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                this.timer = None;
                Poll::Ready(r.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(idle))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client's request body exceeded the configured limit.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {0} bytes")]
pub struct BodyTooLarge(pub u64);

/// The client's request body on its way upstream, cut off at a limit (or
/// already read whole, when a dialect needed it to classify the request).
pub struct RequestBody {
    read: Option<Bytes>,
    inner: Option<Incoming>,
    remaining: u64,
    limit: u64,
    /// Set when the client sent more than `limit`; only a streamed body has
    /// one (an empty or already read one cannot exceed it).
    exceeded: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl RequestBody {
    pub fn new(
        inner: Incoming,
        limit: u64,
    ) -> (Self, std::sync::Arc<std::sync::atomic::AtomicBool>) {
        let exceeded = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        (
            RequestBody {
                read: None,
                inner: Some(inner),
                remaining: limit,
                limit,
                exceeded: Some(exceeded.clone()),
            },
            exceeded,
        )
    }

    /// A body already read into memory.
    pub fn full(bytes: Bytes) -> Self {
        RequestBody {
            read: Some(bytes),
            ..RequestBody::empty()
        }
    }

    pub fn empty() -> Self {
        RequestBody {
            read: None,
            inner: None,
            remaining: 0,
            limit: 0,
            exceeded: None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Some(bytes) = this.read.take() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        let Some(inner) = &mut this.inner else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        if let Some(exceeded) = &this.exceeded {
                            exceeded.store(true, std::sync::atomic::Ordering::SeqCst);
                        }
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge(this.limit)))));
                    }
                    this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_none() && self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.read, &self.inner) {
            (Some(b), _) => SizeHint::with_exact(b.len() as u64),
            (None, Some(b)) => b.size_hint(),
            (None, None) => SizeHint::with_exact(0),
        }
    }
}
