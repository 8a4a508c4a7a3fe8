//! The upstream client: pooled keep-alive connections, connect and read
//! timeouts, and errors that say which limit was hit.

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::body::RequestBody;
use crate::settings::Limits;

/// Why the upstream gave no response.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream connect timeout: no connection within {0:?}")]
    ConnectTimeout(Duration),
    #[error("upstream connect error: {0}")]
    Connect(String),
    #[error("upstream read timeout: no response headers within {0:?}")]
    ReadTimeout(Duration),
    #[error("request body larger than the limit of {0} bytes")]
    RequestBodyTooLarge(u64),
    #[error("upstream error: {0}")]
    Other(String),
}

impl UpstreamError {
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::ConnectTimeout(_) | UpstreamError::ReadTimeout(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            UpstreamError::RequestBodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            UpstreamError::Connect(_) | UpstreamError::Other(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// Label for `revcache_upstream_errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::ConnectTimeout(_) => "connect_timeout",
            UpstreamError::Connect(_) => "connect",
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

#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpConnector, RequestBody>,
    connect_timeout: Duration,
    read_timeout: Duration,
    max_request_body: u64,
}

impl Upstream {
    pub fn new(limits: &Limits) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(limits.upstream_connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector);
        Upstream {
            client,
            connect_timeout: limits.upstream_connect_timeout,
            read_timeout: limits.upstream_read_timeout,
            max_request_body: limits.max_request_body_bytes,
        }
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
        let sent = tokio::time::timeout(self.read_timeout, self.client.request(req)).await;
        let too_large = || exceeded.as_ref().is_some_and(|e| e.load(Ordering::SeqCst));
        match sent {
            Err(_) => Err(UpstreamError::ReadTimeout(self.read_timeout)),
            Ok(Ok(res)) => Ok(res),
            Ok(Err(_)) if too_large() => {
                Err(UpstreamError::RequestBodyTooLarge(self.max_request_body))
            }
            Ok(Err(e)) => Err(self.classify(e)),
        }
    }

    fn classify(&self, e: hyper_util::client::legacy::Error) -> UpstreamError {
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
