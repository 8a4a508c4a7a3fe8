//! Admission: the checks a request passes before the cache sees it, and
//! what they learn.
//!
//! In order: header limits, the forwarding sanitizer, target
//! normalisation, the route, the declared body size, the dialect's
//! classification (reading a body the dialect keys on, bounded in size and
//! time), and the caller's identity (partition material, credentials). A
//! request that fails a check gets a [`Rejection`] and never reaches the
//! cache or the upstream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::SystemTime;

use http::{Request, StatusCode};
use hyper::body::{Body, Incoming};
use revcache_core::{KeyClass, PartitionKey};

use super::ActiveConfig;
use super::body::RequestBody;
use super::cache_status::Fwd;
use super::exchange::{Exchange, addressed_host, host_without_port};
use super::range;
use crate::credential;
use crate::dialect::Classification;
use crate::policy::RequestDirectives;
use crate::request_target;

/// A request that passed admission.
pub struct Admitted {
    pub exchange: Exchange,
    pub body: RequestBody,
    /// Set when the request body outgrew `limits.max_request_body_bytes`
    /// while streaming upstream.
    pub exceeded: Option<Arc<AtomicBool>>,
    pub kind: Kind,
}

/// What the cache does with an admitted request.
pub enum Kind {
    /// Look it up; store what the upstream answers.
    Cacheable,
    /// Forward uncached.
    Pass(Fwd),
    /// Forward, then invalidate what a success changed.
    Write,
    /// The dialect classifies this request by its body (a PROPFIND's
    /// property set): [`read_body`] reads at most `max` bytes of `body`
    /// and classifies again.
    ReadBody { max: usize, body: Incoming },
}

/// Why a request was refused, as its client is told.
pub struct Rejection {
    pub status: StatusCode,
    pub message: String,
}

fn reject(status: StatusCode, message: impl Into<String>) -> Rejection {
    Rejection {
        status,
        message: message.into(),
    }
}

/// Admits `req` under `config`. It never waits: a body the dialect needs
/// is read by [`read_body`], so the hit path returns its exchange without
/// crossing a future.
pub fn admit(
    config: Arc<ActiveConfig>,
    req: Request<Incoming>,
    client: SocketAddr,
    partition_key: &PartitionKey,
    now: SystemTime,
) -> Result<Admitted, Rejection> {
    let limits = &config.limits;
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if header_bytes > limits.max_request_header_bytes {
        return Err(reject(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "request header fields total {header_bytes} bytes; the limit is {} (limits.max_request_header_bytes)",
                limits.max_request_header_bytes
            ),
        ));
    }
    let (mut parts, body) = req.into_parts();
    if let Err(why) = config.sanitizer.sanitize(&mut parts) {
        return Err(reject(StatusCode::BAD_REQUEST, why.to_string()));
    }
    // Routing, the key and the upstream all see the normalised target.
    let target = request_target::normalize(&parts.uri)
        .map_err(|e| reject(StatusCode::BAD_REQUEST, e.to_string()))?;
    if let Some(uri) = target.uri {
        parts.uri = uri;
    }
    let addressed = addressed_host(&parts);
    let lowered_host: Option<Box<str>> = addressed
        .bytes()
        .any(|b| b.is_ascii_uppercase())
        .then(|| addressed.to_ascii_lowercase().into());
    let host = lowered_host.as_deref().unwrap_or(addressed);
    let host_name = host_without_port(host);
    let Some(route) = config.router.route(host_name, parts.uri.path()).cloned() else {
        return Err(reject(
            StatusCode::NOT_FOUND,
            format!(
                "no route for host {host_name:?} and path {:?}",
                parts.uri.path()
            ),
        ));
    };
    // The key names what the upstream sees: its own authority, unless
    // the client's Host is passed on.
    let key_host = if route.preserve_host {
        Arc::from(format!("{host}@{}", route.key_host))
    } else {
        route.key_host.clone()
    };
    if target.encoded_slash && !route.keeps_encoded_slashes {
        let e = request_target::TargetError::EncodedSlash;
        return Err(reject(StatusCode::BAD_REQUEST, e.to_string()));
    }
    route.dialect.normalize_request(&mut parts);
    // A single byte range is answered from the whole representation: the
    // dialect, the key and the upstream see a request for all of it.
    let (range, range_pass) = match range::take(&mut parts) {
        range::Taken::None => (None, false),
        range::Taken::One(r) => (Some(r), false),
        range::Taken::Pass => (None, true),
    };
    // hyper derives the exact size hint from Content-Length.
    if let Some(declared) = body.size_hint().exact()
        && declared > limits.max_request_body_bytes
    {
        return Err(reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body of {declared} bytes exceeds the limit of {} (limits.max_request_body_bytes)",
                limits.max_request_body_bytes
            ),
        ));
    }
    let classification = route.dialect.classify(&parts);
    let (body, exceeded, unread) = match classification {
        Classification::NeedsBody { max } => (RequestBody::empty(), None, Some((max, body))),
        // Nothing to read or limit (a GET, say): no limiter to allocate.
        _ if body.is_end_stream() => (RequestBody::empty(), None, None),
        _ => {
            let (b, e) = RequestBody::new(body, limits.max_request_body_bytes);
            (b, Some(e), None)
        }
    };
    let caller = credential::identify(
        &parts.headers,
        parts.uri.query(),
        &config.partition,
        route.dialect.partition_cookies(),
        route.dialect.cookies_identify(),
        partition_key,
    );
    let redacted_target = parts
        .uri
        .query()
        .is_some()
        .then(|| {
            let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            credential::redact_target(target, &config.partition.query_params)
        })
        .flatten()
        .map(String::into_boxed_str);
    let (kind, class) = match (unread, classification) {
        (Some((max, body)), _) => (Kind::ReadBody { max, body }, KeyClass::Get),
        // Several ranges go upstream as they are: never stored, and never
        // answered from an entry.
        (None, Classification::Cacheable { .. }) if range_pass => {
            (Kind::Pass(Fwd::Bypass), KeyClass::Get)
        }
        (None, classification) => kind_of(classification),
    };
    // A dialect may serve a credential from a group's partition.
    let partition = caller
        .partition
        .filter(|_| !caller.unrecognized)
        .map(|p| route.dialect.regroup(&parts.headers, p, now));
    let exchange = Exchange {
        config,
        route,
        req_cc: RequestDirectives::parse(&parts.headers),
        parts,
        lowered_host,
        client,
        has_credentials: caller.has_credentials(),
        class,
        redacted_target,
        key_host,
        partition,
        interims: None,
        range,
        keys: std::sync::OnceLock::new(),
    };
    Ok(Admitted {
        exchange,
        body,
        exceeded,
        kind,
    })
}

/// What the cache does with a request classified as `classification`, and
/// the key class it is stored under.
fn kind_of(classification: Classification) -> (Kind, KeyClass) {
    match classification {
        Classification::Cacheable { class } => (Kind::Cacheable, class),
        Classification::Pass { reason } => (Kind::Pass(reason), KeyClass::Get),
        // A body the dialect could not classify is forwarded as a write.
        Classification::Write | Classification::NeedsBody { .. } => (Kind::Write, KeyClass::Get),
    }
}

/// Reads the body the dialect classifies `exchange` by, bounded by `max`
/// bytes and `limits.request_body_timeout`, and classifies it again.
pub async fn read_body(
    exchange: &mut Exchange,
    body: Incoming,
    max: usize,
) -> Result<(Kind, RequestBody), Rejection> {
    let timeout = exchange.config.limits.request_body_timeout;
    let read = tokio::time::timeout(
        timeout,
        http_body_util::BodyExt::collect(http_body_util::Limited::new(body, max)),
    )
    .await;
    let bytes = match read {
        Err(_) => {
            return Err(reject(
                StatusCode::REQUEST_TIMEOUT,
                "request body did not arrive within limits.request_body_timeout",
            ));
        }
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            return Err(reject(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body could not be read within {max} bytes: {e}"),
            ));
        }
    };
    let classification = exchange
        .route
        .dialect
        .classify_body(&exchange.parts, &bytes);
    let (kind, class) = kind_of(classification);
    exchange.class = class;
    Ok((kind, RequestBody::full(bytes)))
}
