//! Test harness: a scriptable origin server, a revcache instance and a
//! client, all real HTTP on loopback ports chosen by the OS.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use revcache_core::{Clock, ClockHand};
use revcache_http::{Server, Settings};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub mod tls;

/// What a reload of a test instance reads: the settings to put in force,
/// or the error a config file would have.
pub type ReloadSource = Arc<Mutex<Option<Result<Settings, String>>>>;

/// A request the origin received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What the origin answers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Wait before sending headers.
    pub delay: Duration,
}

impl Reply {
    pub fn ok(body: impl Into<Bytes>) -> Self {
        Reply {
            status: 200,
            headers: Vec::new(),
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            ..Reply::ok("")
        }
    }
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Handler = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

/// An origin whose replies a test scripts; it counts and records requests.
/// Dropping it closes its listener and every connection it has open, as
/// an upstream that vanished would.
pub struct Origin {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    count: Arc<AtomicUsize>,
    _stop: tokio::sync::watch::Sender<()>,
}

impl Origin {
    /// `handler(request, n)` gets the request and how many came before it.
    pub async fn start(handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Origin {
        let handler: Arc<Handler> = Arc::new(handler);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = tokio::sync::watch::channel(());
        let (seen2, count2) = (seen.clone(), count.clone());
        tokio::spawn(async move {
            let mut accepting = stopped.clone();
            loop {
                let (stream, _) = tokio::select! {
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                    _ = accepting.changed() => return,
                };
                let mut connection_stopped = stopped.clone();
                let (handler, seen, count) = (handler.clone(), seen2.clone(), count2.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (handler, seen, count) = (handler.clone(), seen.clone(), count.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let s = Seen {
                                method: parts.method,
                                target: parts
                                    .uri
                                    .path_and_query()
                                    .map_or("/".into(), |p| p.to_string()),
                                headers: parts.headers,
                                body,
                            };
                            let n = count.fetch_add(1, Ordering::SeqCst);
                            seen.lock().unwrap().push(s.clone());
                            let reply = handler(&s, n);
                            if !reply.delay.is_zero() {
                                tokio::time::sleep(reply.delay).await;
                            }
                            let mut res = Response::new(Full::new(reply.body));
                            *res.status_mut() = StatusCode::from_u16(reply.status).unwrap();
                            for (n, v) in reply.headers {
                                res.headers_mut().append(
                                    http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                                    v.parse().unwrap(),
                                );
                            }
                            Ok::<_, Infallible>(res)
                        }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = connection => {}
                        _ = connection_stopped.changed() => {}
                    }
                });
            }
        });
        Origin {
            addr,
            seen,
            count,
            _stop: stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits until the origin has received `n` requests (their replies may
    /// still be delayed).
    pub async fn received(&self, n: usize) {
        while self.requests() < n {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.seen().last().cloned().expect("origin saw no request")
    }
}

/// A running revcache, stopped when dropped.
pub struct Revcache {
    pub addr: SocketAddr,
    /// The TLS listener and its certificate, when configured.
    pub tls: Option<(SocketAddr, Arc<revcache_http::ListenerTls>)>,
    pub admin: SocketAddr,
    pub data_dir: PathBuf,
    pub proxy: Arc<revcache_http::Proxy>,
    /// The test chose the data dir and removes it itself.
    keep_data_dir: bool,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
    clock: ClockHand,
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "revcache-test-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

impl Revcache {
    pub async fn start(upstream: &str) -> Revcache {
        Self::start_with(upstream, |_| {}).await
    }

    pub async fn start_with(upstream: &str, tweak: impl FnOnce(&mut Settings)) -> Revcache {
        Self::start_reloadable(upstream, tweak, None).await
    }

    /// As `start_with`; a reload puts in force what `source` holds then
    /// (the settings started with, when it holds `None`).
    pub async fn start_reloadable(
        upstream: &str,
        tweak: impl FnOnce(&mut Settings),
        source: Option<ReloadSource>,
    ) -> Revcache {
        let mut settings = Settings::for_upstream(upstream.parse().unwrap());
        settings.listen = "127.0.0.1:0".parse().unwrap();
        settings.admin_listen = "127.0.0.1:0".parse().unwrap();
        let own_dir = temp_dir("data");
        settings.data_dir = own_dir.clone();
        settings.limits.upstream_read_timeout = Duration::from_secs(5);
        settings.limits.shutdown_grace = Duration::from_secs(5);
        tweak(&mut settings);
        let data_dir = settings.data_dir.clone();
        let keep_data_dir = data_dir != own_dir;
        // Every test server runs on an adjustable clock: a test waiting for
        // an entry to go stale advances it instead of sleeping.
        let (clock, hand) = Clock::adjustable();
        let server = match source {
            None => {
                let again = settings.clone();
                Server::bind_with_clock(settings, Box::new(move || Ok(again.clone())), clock)
                    .await
                    .unwrap()
            }
            Some(source) => {
                {
                    let mut next = source.lock().unwrap();
                    if next.is_none() {
                        *next = Some(Ok(settings.clone()));
                    }
                }
                let read = move || source.lock().unwrap().clone().unwrap();
                Server::bind_with_clock(settings, Box::new(read), clock)
                    .await
                    .unwrap()
            }
        };
        let tls = server.tls_addr().zip(server.listener_tls());
        let (addr, admin, proxy) = (
            server.local_addr(),
            server.admin_addr(),
            server.proxy().clone(),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            server
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Revcache {
            addr,
            tls,
            admin,
            data_dir,
            proxy,
            keep_data_dir,
            stop: Some(stop),
            done: Some(done),
            clock: hand,
        }
    }

    /// Moves revcache's clock forward: stored entries age by `by` at once.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// Stops accepting and waits for in-flight requests to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            done.await.unwrap();
        }
    }
}

impl Drop for Revcache {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if !self.keep_data_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// The header an admin API POST with a body needs.
pub const JSON: &[(&str, &str)] = &[("content-type", "application/json")];

/// A received response, body read whole.
#[derive(Clone, Debug)]
pub struct Got {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// revcache's own Cache-Status member (the last one).
    pub fn cache_status(&self) -> String {
        self.headers
            .get_all("cache-status")
            .iter()
            .next_back()
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn is_hit(&self) -> bool {
        self.cache_status().starts_with("revcache; hit")
    }
}

#[derive(Clone)]
pub struct Client {
    inner: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Default for Client {
    fn default() -> Self {
        Client {
            inner: HyperClient::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl Client {
    pub fn http2() -> Self {
        Client {
            inner: HyperClient::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        }
    }

    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Got {
        let mut req = Request::new(Full::new(body.into()));
        *req.method_mut() = method.parse().unwrap();
        *req.uri_mut() = url.parse().unwrap();
        for (n, v) in headers {
            req.headers_mut().append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        self.request(req).await
    }

    async fn request(&self, req: Request<Full<Bytes>>) -> Got {
        let res = self.inner.request(req).await.expect("request failed");
        let (parts, body) = res.into_parts();
        let body = body.collect().await.expect("body failed").to_bytes();
        Got {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&self, url: &str) -> Got {
        self.send("GET", url, &[], Bytes::new()).await
    }

    pub async fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> Got {
        self.send("GET", url, headers, Bytes::new()).await
    }
}

/// Reads from `s` until `buf` holds a whole request head (a raw origin's
/// requests have no body), and drops it from `buf`; `false` when the
/// connection ends first.
pub async fn next_request_head(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> bool {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            return true;
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A raw origin that answers every request head with `answer` (bytes as
/// they go on the wire: interim responses, say, which the scripted origin
/// cannot send); returns its URL and how many requests it got.
pub async fn raw_origin(answer: &'static [u8]) -> (String, Arc<AtomicUsize>) {
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while next_request_head(&mut s, &mut buf).await {
                    seen.fetch_add(1, Ordering::SeqCst);
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, count)
}

/// Whether a second GET of one path is a hit when the origin always
/// answers `reply`, and how many requests the origin got for both.
pub async fn second_get_hits(reply: impl Fn() -> Reply + Send + Sync + 'static) -> (bool, usize) {
    let origin = Origin::start(move |_, _| reply()).await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    let hit = c.get(&rc.url("/a")).await.is_hit();
    (hit, origin.requests())
}

/// Waits (up to two seconds) until revcache's disk tier holds `n`
/// entries, as its metrics say; returns how many it holds.
pub async fn disk_entries_reach(c: &Client, rc: &Revcache, n: f64) -> f64 {
    let mut on_disk = 0.0;
    for _ in 0..200 {
        let metrics = c.get(&rc.admin_url("/metrics")).await.text();
        on_disk = metric(&metrics, "revcache_tier_entries{tier=\"l2\"}");
        if on_disk >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    on_disk
}

/// Reads a counter or gauge from the Prometheus text, summing matching lines.
pub fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name_and_labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn counting_map() -> Arc<Mutex<HashMap<String, usize>>> {
    Arc::default()
}

pub fn http_date_in(secs: i64) -> String {
    let now = std::time::SystemTime::now();
    let t = if secs >= 0 {
        now + Duration::from_secs(secs as u64)
    } else {
        now - Duration::from_secs((-secs) as u64)
    };
    httpdate::fmt_http_date(t)
}

/// Sends `request` (raw HTTP/1.1 bytes, which should ask `Connection:
/// close`) to `addr` and returns everything the server sent back.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

impl Client {
    /// A GET whose header values may hold any bytes a header may carry
    /// (obs-text included), which `send` cannot build from `&str`.
    pub async fn get_bytes(&self, url: &str, headers: &[(&str, &[u8])]) -> Got {
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = url.parse().unwrap();
        for (n, v) in headers {
            req.headers_mut().append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(v).unwrap(),
            );
        }
        self.request(req).await
    }
}

/// A CONNECT proxy on loopback: records each request head it gets and
/// tunnels to the named host (names in `hosts` map to loopback ports' host).
pub async fn connect_proxy(hosts: &[(&str, &str)]) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let hosts: Vec<(String, String)> = hosts
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (seen, hosts) = (seen.clone(), hosts.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                seen.lock().unwrap().push(head.clone());
                let target = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                let (host, port) = target.rsplit_once(':').unwrap_or((&target, "443"));
                let host = hosts
                    .iter()
                    .find(|(from, _)| from == host)
                    .map_or(host.to_owned(), |(_, to)| to.clone());
                let Ok(mut upstream) =
                    tokio::net::TcpStream::connect(format!("{host}:{port}")).await
                else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                let _ = client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (addr, heads)
}

/// Route 0 as a `github` route (`github`) to an https upstream signed by
/// `ca`, taking webhooks signed with the secret in `secret_file`.
pub fn github_route(s: &mut Settings, ca: PathBuf, trust: Option<Duration>, secret_file: PathBuf) {
    s.routes[0].name = "github".into();
    s.routes[0].dialect = revcache_http::DialectName::Github;
    s.routes[0].tls = revcache_http::UpstreamTls {
        ca_file: Some(ca),
        ..Default::default()
    };
    s.routes[0].events = Some(revcache_http::EventSettings {
        trust,
        heartbeat: None,
        command: None,
        secret_file: Some(secret_file),
    });
}
