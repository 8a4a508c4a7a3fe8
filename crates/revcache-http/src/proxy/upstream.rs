//! The upstream client of one route: pooled keep-alive connections over
//! plain TCP or TLS, HTTP/2 where the upstream speaks it, connect and read
//! timeouts, and errors that say which limit or which TLS setting was hit.
//!
//! HTTP/2 (`upstream_http2`): `always` speaks it from the first byte
//! (prior knowledge on `http://`); `auto` offers it by ALPN on `https://`.
//! Until an `auto` route's upstream has answered once, its requests go one
//! at a time, so a cold burst learns the protocol from the first exchange
//! and then shares one h2 connection instead of opening one each.

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::body::RequestBody;
use super::egress::Egress;
use super::upstream_tls::{self, TlsConfigError};
use crate::settings::{Limits, RouteSettings, UpstreamHttp2};

/// Why the upstream gave no response.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    #[error("upstream connect timeout: no connection within {0:?}")]
    ConnectTimeout(Duration),
    #[error("upstream connect error: {0}")]
    Connect(String),
    #[error("upstream {upstream} (route {route:?}): TLS handshake failed: {reason}; check {fix}")]
    Tls {
        route: String,
        upstream: String,
        reason: String,
        fix: &'static str,
    },
    #[error("upstream read timeout: no response headers within {0:?}")]
    ReadTimeout(Duration),
    #[error("request body larger than the limit of {0} bytes")]
    RequestBodyTooLarge(u64),
    #[error("upstream error: {0}")]
    Other(String),
}

impl UpstreamError {
    /// The upstream could not be reached or gave no response (refused,
    /// reset, timed out): a cache is "disconnected" (RFC 9111 §4.2.4). A
    /// TLS failure is a configuration to fix, not a disconnection.
    pub fn is_disconnection(&self) -> bool {
        matches!(
            self,
            UpstreamError::ConnectTimeout(_)
                | UpstreamError::Connect(_)
                | UpstreamError::ReadTimeout(_)
                | UpstreamError::Other(_)
        )
    }

    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::ConnectTimeout(_) | UpstreamError::ReadTimeout(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            UpstreamError::RequestBodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            UpstreamError::Connect(_) | UpstreamError::Tls { .. } | UpstreamError::Other(_) => {
                StatusCode::BAD_GATEWAY
            }
        }
    }

    /// Label for `revcache_upstream_errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::ConnectTimeout(_) => "connect_timeout",
            UpstreamError::Connect(_) => "connect",
            UpstreamError::Tls { .. } => "tls",
            UpstreamError::ReadTimeout(_) => "read_timeout",
            UpstreamError::RequestBodyTooLarge(_) => "request_body_too_large",
            UpstreamError::Other(_) => "other",
        }
    }

    /// Whether the client, not the upstream, caused it.
    pub fn is_client_error(&self) -> bool {
        matches!(self, UpstreamError::RequestBodyTooLarge(_))
    }
}

type Https = HttpsConnector<Egress>;

const UNKNOWN: u8 = 0;
const HTTP1: u8 = 1;
const HTTP2: u8 = 2;

pub struct Upstream {
    /// HTTP/1.1, or ALPN-negotiated on an `auto` https route.
    client: Client<Https, RequestBody>,
    /// HTTP/2 only: `always`, or an `auto` route whose upstream chose h2.
    h2: Client<Https, RequestBody>,
    mode: UpstreamHttp2,
    /// What an `auto` https upstream chose (UNKNOWN, HTTP1, HTTP2).
    learned: AtomicU8,
    learning: tokio::sync::Mutex<()>,
    route: String,
    upstream: String,
    connect_timeout: Duration,
    read_timeout: Duration,
    max_request_body: u64,
}

impl Upstream {
    pub fn new(route: &RouteSettings, limits: &Limits) -> Result<Self, TlsConfigError> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(limits.upstream_connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let egress = Egress::new(http, &route.proxy);
        let https = route.upstream.scheme_str() == Some("https");
        let tls = upstream_tls::client_config(&route.tls, https)?;
        let alpn = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http();
        let connector = match (route.upstream_http2, https) {
            (UpstreamHttp2::Auto, true) => alpn
                .enable_http1()
                .enable_http2()
                .wrap_connector(egress.clone()),
            _ => alpn.enable_http1().wrap_connector(egress.clone()),
        };
        let h2_connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http2()
            .wrap_connector(egress);
        let builder = || {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_idle_timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(256);
            b
        };
        let learned = match (route.upstream_http2, https) {
            (UpstreamHttp2::Auto, true) => UNKNOWN,
            (UpstreamHttp2::Always, _) => HTTP2,
            _ => HTTP1,
        };
        Ok(Upstream {
            client: builder().build(connector),
            h2: builder().http2_only(true).build(h2_connector),
            mode: route.upstream_http2,
            learned: AtomicU8::new(learned),
            learning: tokio::sync::Mutex::new(()),
            route: route.name.clone(),
            upstream: route.upstream.to_string(),
            connect_timeout: limits.upstream_connect_timeout,
            read_timeout: limits.upstream_read_timeout,
            max_request_body: limits.max_request_body_bytes,
        })
    }

    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// Sends `req` and waits for the response headers. `exceeded` is the
    /// flag of a [`RequestBody`] so a cut-off body reads as 413, not 502.
    pub async fn send(
        &self,
        req: Request<RequestBody>,
        exceeded: Option<Arc<AtomicBool>>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut learning = None;
        if self.learned.load(Ordering::Acquire) == UNKNOWN {
            let guard = self.learning.lock().await;
            if self.learned.load(Ordering::Acquire) == UNKNOWN {
                learning = Some(guard);
            }
        }
        let h2 = self.learned.load(Ordering::Acquire) == HTTP2;
        let client = if h2 { &self.h2 } else { &self.client };
        let asked = std::time::Instant::now();
        let sent = tokio::time::timeout(self.read_timeout, client.request(req)).await;
        crate::access_log::note_upstream(asked.elapsed());
        let too_large = || exceeded.as_ref().is_some_and(|e| e.load(Ordering::SeqCst));
        match sent {
            Err(_) => Err(UpstreamError::ReadTimeout(self.read_timeout)),
            Ok(Ok(res)) => {
                if learning.is_some() {
                    let spoke = if res.version() == http::Version::HTTP_2 {
                        HTTP2
                    } else {
                        HTTP1
                    };
                    self.learned.store(spoke, Ordering::Release);
                }
                Ok(res)
            }
            Ok(Err(_)) if too_large() => {
                Err(UpstreamError::RequestBodyTooLarge(self.max_request_body))
            }
            Ok(Err(e)) => {
                // An `auto` upstream that no longer speaks h2 is asked anew.
                if h2 && self.mode == UpstreamHttp2::Auto && e.is_connect() {
                    self.learned.store(UNKNOWN, Ordering::Release);
                }
                Err(self.classify(e))
            }
        }
    }

    fn classify(&self, e: hyper_util::client::legacy::Error) -> UpstreamError {
        if let Some((reason, fix)) = upstream_tls::diagnose(&e) {
            return UpstreamError::Tls {
                route: self.route.clone(),
                upstream: self.upstream.clone(),
                reason,
                fix,
            };
        }
        let mut source = e.source();
        let mut timed_out = false;
        let mut detail = e.to_string();
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::TimedOut
            {
                timed_out = true;
            }
            detail = s.to_string();
            source = s.source();
        }
        if e.is_connect() {
            if timed_out {
                UpstreamError::ConnectTimeout(self.connect_timeout)
            } else {
                UpstreamError::Connect(detail)
            }
        } else {
            UpstreamError::Other(detail)
        }
    }
}
