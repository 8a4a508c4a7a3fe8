//! The ceiling for revcache's stack: the same hyper server setup
//! (hyper-util auto builder, tokio multi-thread runtime) answering every
//! request with bytes already in memory, with the headers a cache hit
//! carries. Anything revcache does on a hit costs throughput relative to it.
//!
//! Usage: revcache-bench-static [--headers HEADERS] ADDR FILE...
//!
//! serves /NAME for each FILE. With `--headers`, every response carries the
//! `name: value` lines of HEADERS instead of the three default headers
//! (bench/http-hit/profile.sh passes revcache's own response headers, so the
//! ceiling sends the same head as a revcache hit).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let mut headers = None;
    if args.peek().map(String::as_str) == Some("--headers") {
        args.next();
        let file = args.next().unwrap_or_default();
        match read_headers(&file) {
            Ok(h) => headers = Some(h),
            Err(e) => {
                eprintln!("cannot use headers from {file:?}: {e}");
                std::process::exit(2);
            }
        };
    }
    let headers = Arc::new(headers);
    let Some(addr) = args.next() else {
        eprintln!("usage: revcache-bench-static [--headers HEADERS] ADDR FILE...");
        std::process::exit(2);
    };
    let mut objects = HashMap::new();
    for file in args {
        let name = std::path::Path::new(&file)
            .file_name()
            .map(|n| format!("/{}", n.to_string_lossy()))
            .unwrap_or_default();
        match std::fs::read(&file) {
            Ok(bytes) => {
                objects.insert(name, Bytes::from(bytes));
            }
            Err(e) => {
                eprintln!("cannot read {file}: {e}");
                std::process::exit(1);
            }
        }
    }
    let objects = Arc::new(objects);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let objects = objects.clone();
            let headers = headers.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let body = objects.get(req.uri().path()).cloned();
                    let headers = headers.clone();
                    async move {
                        let mut res = match body {
                            Some(b) => Response::new(Full::new(b)),
                            None => {
                                let mut r = Response::new(Full::new(Bytes::new()));
                                *r.status_mut() = http::StatusCode::NOT_FOUND;
                                r
                            }
                        };
                        let h = res.headers_mut();
                        match &*headers {
                            // Inserted one by one, as a hit builds its map.
                            Some(given) => {
                                for (name, value) in given {
                                    h.append(name.clone(), value.clone());
                                }
                            }
                            None => {
                                h.insert(
                                    "cache-control",
                                    HeaderValue::from_static("public, max-age=3600"),
                                );
                                h.insert("etag", HeaderValue::from_static("\"static\""));
                                h.insert("age", HeaderValue::from_static("1"));
                            }
                        }
                        Ok::<_, Infallible>(res)
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// `name: value` lines (blank lines skipped), in order.
fn read_headers(file: &str) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let mut headers = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("not a header line: {line:?}"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|e| e.to_string())?;
        let value = HeaderValue::from_str(value.trim()).map_err(|e| e.to_string())?;
        headers.push((name, value));
    }
    Ok(headers)
}
