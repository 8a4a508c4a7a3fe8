//! The access log: one line per request the proxy listeners answer, off by
//! default (`[access_log]`).
//!
//! A request builds a [`Pending`] line as its response head leaves; the
//! line is completed (bytes sent, duration) when the response body ends or
//! is dropped, and handed to a bounded queue. A writer thread (`writer`)
//! formats (`format`) and writes it, so a request never waits for the log
//! file and never formats on the runtime; when the queue is full the line
//! is dropped and counted (`revcache_access_log_dropped_total`). The file
//! is reopened on reload and SIGUSR1, for logrotate. Targets and referers
//! carry query credentials redacted; nothing else from the request that
//! could be a secret (headers, cookies) is written.
//!
//! The route and the upstream's time to answer are noted by the request as
//! it goes (a task-local [`Note`]), so the proxy's flow needs no extra
//! arguments and pays nothing when the log is off.

mod format;
mod writer;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::credential;
use crate::route::Route;
use crate::settings::{AccessLogDestination, AccessLogSettings};

/// Lines queued for the writer at most; beyond, lines are dropped.
const QUEUE: usize = 8192;

/// The access log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "access_log.path: cannot open {path} for appending: {source}; create its directory or choose another path"
)]
pub struct AccessLogError {
    path: String,
    source: std::io::Error,
}

/// Counters the access log keeps, registered with the other metrics.
#[derive(Clone, Debug, Default)]
pub struct AccessLogCounters {
    /// Lines dropped because the writer fell behind.
    pub dropped: Counter,
    /// Lines the destination refused (disk full, closed stdout).
    pub write_errors: Counter,
}

/// A running access log: the queue to its writer thread.
pub struct AccessLog {
    tx: mpsc::Sender<Message>,
    reopen: Arc<AtomicBool>,
    /// Lines begun but not yet queued (their bodies still streaming).
    open_lines: AtomicUsize,
    settled: Notify,
    counters: AccessLogCounters,
}

enum Message {
    Line(Box<Record>),
    /// Write out everything queued before, then answer.
    Flush(oneshot::Sender<()>),
    /// Look at the reopen flag now.
    Wake,
}

/// One request's line, as the writer formats it.
#[derive(Debug)]
pub(crate) struct Record {
    time: SystemTime,
    client: IpAddr,
    method: http::Method,
    /// Path and query, credential parameters redacted.
    target: String,
    version: http::Version,
    status: u16,
    /// Response body bytes sent to the client.
    bytes: u64,
    /// From the request head to the end of the response body.
    duration: Duration,
    /// revcache's `Cache-Status` member without the leading `revcache; `.
    cache_status: Option<String>,
    /// How long the upstream took to answer with its response head.
    upstream: Option<Duration>,
    route: Option<String>,
    referer: Option<String>,
    user_agent: Option<String>,
}

impl AccessLog {
    /// Opens the destination now (a path that cannot be opened stops the
    /// start with the reason) and starts the writer thread.
    pub fn open(settings: &AccessLogSettings) -> Result<Arc<Self>, AccessLogError> {
        let output = match &settings.destination {
            AccessLogDestination::Stdout => writer::Output::stdout(),
            AccessLogDestination::File(path) => {
                writer::Output::file(path).map_err(|source| AccessLogError {
                    path: path.display().to_string(),
                    source,
                })?
            }
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let reopen = Arc::new(AtomicBool::new(false));
        let counters = AccessLogCounters::default();
        writer::spawn(
            rx,
            output,
            settings.format,
            reopen.clone(),
            counters.write_errors.clone(),
        );
        Ok(Arc::new(AccessLog {
            tx,
            reopen,
            open_lines: AtomicUsize::new(0),
            settled: Notify::new(),
            counters,
        }))
    }

    /// Reopens the file at its path before the next line (after logrotate
    /// moved it away). A file that cannot be reopened keeps the old one,
    /// with a warning.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::SeqCst);
        let _ = self.tx.try_send(Message::Wake);
    }

    /// Waits until every line begun before has been written out: the
    /// responses still streaming end first.
    pub async fn flush(&self) {
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if self.open_lines.load(Ordering::SeqCst) == 0 {
                break;
            }
            settled.await;
        }
        let (done, written) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }

    pub(crate) fn counters(&self) -> &AccessLogCounters {
        &self.counters
    }

    /// The line of a request whose response head is `res`.
    pub(crate) fn begin<B>(
        self: &Arc<Self>,
        request: RequestLine,
        note: Note,
        res: &http::Response<B>,
    ) -> Pending {
        self.open_lines.fetch_add(1, Ordering::SeqCst);
        let cache_status = res
            .headers()
            .get_all(crate::proxy::cache_status::NAME)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.trim().strip_prefix("revcache"))
            .next_back()
            .map(|v| v.trim_start_matches(';').trim().to_owned());
        Pending {
            log: self.clone(),
            record: Some(Box::new(Record {
                time: request.time,
                client: request.client,
                method: request.method,
                target: request.target,
                version: request.version,
                status: res.status().as_u16(),
                bytes: 0,
                duration: Duration::ZERO,
                cache_status,
                upstream: note.upstream.get(),
                route: note.route.take().map(|r| r.name.clone()),
                referer: request.referer,
                user_agent: request.user_agent,
            })),
            started: request.started,
        }
    }

    fn submit(&self, record: Box<Record>) {
        if self.tx.try_send(Message::Line(record)).is_err() {
            self.counters.dropped.inc();
        }
        if self.open_lines.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.settled.notify_waiters();
        }
    }
}

/// What the log needs from a request, taken before it is served.
pub(crate) struct RequestLine {
    started: Instant,
    time: SystemTime,
    client: IpAddr,
    method: http::Method,
    target: String,
    version: http::Version,
    referer: Option<String>,
    user_agent: Option<String>,
}

impl RequestLine {
    /// `credential_params` are the query parameters redacted from the
    /// target and the referer.
    pub(crate) fn of<B>(
        req: &http::Request<B>,
        client: IpAddr,
        time: SystemTime,
        credential_params: &[String],
    ) -> Self {
        let redact = |s: &str| {
            credential::redact_target(s, credential_params).unwrap_or_else(|| s.to_owned())
        };
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let header = |name: http::header::HeaderName| {
            req.headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        RequestLine {
            started: Instant::now(),
            time,
            client,
            method: req.method().clone(),
            target: redact(target),
            version: req.version(),
            referer: header(http::header::REFERER).map(|r| redact(&r)),
            user_agent: header(http::header::USER_AGENT),
        }
    }
}

/// A line waiting for its response body to end; queued when dropped.
pub(crate) struct Pending {
    log: Arc<AccessLog>,
    record: Option<Box<Record>>,
    started: Instant,
}

impl Pending {
    pub(crate) fn sent(&mut self, bytes: usize) {
        if let Some(r) = &mut self.record {
            r.bytes += bytes as u64;
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut record) = self.record.take() {
            record.duration = self.started.elapsed();
            self.log.submit(record);
        }
    }
}

/// What a request notes on its way for its line: its route, and how long
/// the upstream took to answer.
#[derive(Default)]
pub(crate) struct Note {
    route: RefCell<Option<Arc<Route>>>,
    upstream: Cell<Option<Duration>>,
}

tokio::task_local! {
    static NOTE: Note;
}

/// Runs `serve` with a [`Note`] that its steps fill in.
pub(crate) async fn noted<T>(serve: impl Future<Output = T>) -> (T, Note) {
    NOTE.scope(Note::default(), async move {
        let out = serve.await;
        let note = NOTE.with(|n| Note {
            route: RefCell::new(n.route.take()),
            upstream: Cell::new(n.upstream.get()),
        });
        (out, note)
    })
    .await
}

/// Notes the route serving this request (nothing when the log is off).
pub(crate) fn note_route(route: &Arc<Route>) {
    let _ = NOTE.try_with(|n| *n.route.borrow_mut() = Some(route.clone()));
}

/// Notes the upstream's time to its response head (the last one, when a
/// request asked more than once).
pub(crate) fn note_upstream(took: Duration) {
    let _ = NOTE.try_with(|n| n.upstream.set(Some(took)));
}
