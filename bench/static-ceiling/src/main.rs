//! The ceiling for revcache's stack: the same hyper server setup
//! (hyper-util auto builder, tokio multi-thread runtime) answering every
//! request with bytes already in memory, with the headers a cache hit
//! carries. Anything revcache does on a hit costs throughput relative to it.
//!
//! Usage: revcache-bench-static ADDR FILE...   serves /NAME for each FILE

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(addr) = args.next() else {
        eprintln!("usage: revcache-bench-static ADDR FILE...");
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
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let body = objects.get(req.uri().path()).cloned();
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
                        h.insert(
                            "cache-control",
                            HeaderValue::from_static("public, max-age=3600"),
                        );
                        h.insert("etag", HeaderValue::from_static("\"static\""));
                        h.insert("age", HeaderValue::from_static("1"));
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
