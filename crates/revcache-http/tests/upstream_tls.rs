//! `https://` upstreams, for real: a throwaway CA made in the test, TLS
//! origins on loopback (rustls), mutual TLS and an h2-only origin.

mod support;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use revcache_http::{UpstreamHttp2, UpstreamTls};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use support::{Client, Revcache, metric, temp_dir};

/// A CA and what it signs, written where a route's settings can name them.
struct Pki {
    dir: PathBuf,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

/// A leaf certificate and its key.
struct Leaf {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = temp_dir("pki");
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "revcache test CA");
        let ca = params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki { dir, ca, ca_key }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn leaf(&self, name: &str, names: &[&str], expired: bool) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let (cert_file, key_file) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        Leaf {
            cert: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            cert_file,
            key_file,
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS origin: answers `who=<path> over <version>` with max-age=600 and
/// counts the TCP connections it accepted.
struct TlsOrigin {
    port: u16,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

#[derive(Clone, Copy, PartialEq)]
enum Alpn {
    Both,
    H2Only,
}

async fn tls_origin(leaf: &Leaf, client_ca: Option<&Pki>, alpn: Alpn) -> TlsOrigin {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(pki) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(pki.ca.der().clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(vec![leaf.cert.clone()], leaf.key.clone_key())
        .unwrap();
    config.alpn_protocols = match alpn {
        Alpn::Both => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        Alpn::H2Only => vec![b"h2".to_vec()],
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (connections, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let (c2, r2) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                _ = &mut stopped => return,
            };
            c2.fetch_add(1, Ordering::SeqCst);
            let (acceptor, requests) = (acceptor.clone(), r2.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    requests.fetch_add(1, Ordering::SeqCst);
                    let body = format!("who={} over {:?}", req.uri().path(), req.version());
                    let mut res = Response::new(Full::new(Bytes::from(body)));
                    res.headers_mut()
                        .insert("cache-control", "max-age=600".parse().unwrap());
                    async move { Ok::<_, Infallible>(res) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let builder = if alpn == Alpn::H2Only {
                    builder.http2_only()
                } else {
                    builder
                };
                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    TlsOrigin {
        port,
        connections,
        requests,
        _stop: stop,
    }
}

async fn revcache_for(upstream: String, tls: UpstreamTls, http2: UpstreamHttp2) -> Revcache {
    Revcache::start_with(&upstream, move |s| {
        s.routes[0].tls = tls;
        s.routes[0].upstream_http2 = http2;
    })
    .await
}

#[tokio::test]
async fn an_https_upstream_with_a_private_ca_is_cached_and_without_it_answers_a_clear_502() {
    let pki = Pki::new();
    let leaf = pki.leaf("origin", &["localhost"], false);
    let origin = tls_origin(&leaf, None, Alpn::Both).await;
    let url = format!("https://localhost:{}", origin.port);
    let with_ca = UpstreamTls {
        ca_file: Some(pki.ca_file()),
        ..Default::default()
    };
    let rc = revcache_for(url.clone(), with_ca, UpstreamHttp2::Auto).await;
    let c = Client::default();
    let first = c.get(&rc.url("/a")).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert!(first.text().starts_with("who=/a"), "{}", first.text());
    let second = c.get(&rc.url("/a")).await;
    assert!(second.is_hit());
    assert_eq!(origin.requests.load(Ordering::SeqCst), 1);

    let rc = revcache_for(url.clone(), UpstreamTls::default(), UpstreamHttp2::Auto).await;
    let refused = c.get(&rc.url("/a")).await;
    assert_eq!(refused.status, 502);
    let text = refused.text();
    assert!(text.contains(&url), "names the upstream: {text}");
    assert!(text.contains("unknown issuer"), "{text}");
    assert!(text.contains("tls.ca_file"), "names the key: {text}");
    let metrics = c.get(&rc.admin_url("/metrics")).await.text();
    assert_eq!(
        metric(&metrics, "revcache_upstream_errors_total{kind=\"tls\"}"),
        1.0
    );
}

#[tokio::test]
async fn expired_and_misnamed_certificates_are_refused_with_the_reason() {
    let pki = Pki::new();
    let with_ca = UpstreamTls {
        ca_file: Some(pki.ca_file()),
        ..Default::default()
    };
    let c = Client::default();

    let expired = tls_origin(&pki.leaf("old", &["localhost"], true), None, Alpn::Both).await;
    let rc = revcache_for(
        format!("https://localhost:{}", expired.port),
        with_ca.clone(),
        UpstreamHttp2::Auto,
    )
    .await;
    let res = c.get(&rc.url("/a")).await;
    assert_eq!(res.status, 502);
    assert!(res.text().contains("expired"), "{}", res.text());

    // Valid for localhost only: asked as 127.0.0.1 it is a name mismatch,
    // asked by its name it is fine.
    let origin = tls_origin(&pki.leaf("named", &["localhost"], false), None, Alpn::Both).await;
    let rc = revcache_for(
        format!("https://127.0.0.1:{}", origin.port),
        with_ca.clone(),
        UpstreamHttp2::Auto,
    )
    .await;
    let res = c.get(&rc.url("/a")).await;
    assert_eq!(res.status, 502);
    assert!(res.text().contains("name mismatch"), "{}", res.text());
    let rc = revcache_for(
        format!("https://localhost:{}", origin.port),
        with_ca,
        UpstreamHttp2::Auto,
    )
    .await;
    assert_eq!(c.get(&rc.url("/a")).await.status, 200);
}

#[tokio::test]
async fn an_upstream_that_requires_a_client_certificate_gets_the_configured_one() {
    let pki = Pki::new();
    let server = pki.leaf("mtls-origin", &["localhost"], false);
    let client_leaf = pki.leaf("revcache-client", &["revcache"], false);
    let origin = tls_origin(&server, Some(&pki), Alpn::Both).await;
    let url = format!("https://localhost:{}", origin.port);
    let c = Client::default();

    let without = UpstreamTls {
        ca_file: Some(pki.ca_file()),
        ..Default::default()
    };
    let rc = revcache_for(url.clone(), without.clone(), UpstreamHttp2::Never).await;
    let res = c.get(&rc.url("/a")).await;
    assert_eq!(res.status, 502, "{res:?}");
    assert!(res.text().contains("client certificate"), "{}", res.text());

    let with = UpstreamTls {
        client_cert: Some(client_leaf.cert_file.clone()),
        client_key: Some(client_leaf.key_file.clone()),
        ..without
    };
    let rc = revcache_for(url, with, UpstreamHttp2::Never).await;
    let res = c.get(&rc.url("/a")).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert!(
        res.text().contains("HTTP/1.1"),
        "never means HTTP/1.1: {}",
        res.text()
    );
}

#[tokio::test]
async fn concurrent_misses_to_an_h2_only_upstream_share_its_connection() {
    let pki = Pki::new();
    let origin = tls_origin(&pki.leaf("h2", &["localhost"], false), None, Alpn::H2Only).await;
    let tls = UpstreamTls {
        ca_file: Some(pki.ca_file()),
        ..Default::default()
    };
    let rc = revcache_for(
        format!("https://localhost:{}", origin.port),
        tls,
        UpstreamHttp2::Auto,
    )
    .await;
    let c = Client::default();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (c, url) = (c.clone(), rc.url(&format!("/k{i}")));
        tasks.push(tokio::spawn(async move { c.get(&url).await }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let got = t.await.unwrap();
        assert_eq!(got.status, 200, "{got:?}");
        assert_eq!(got.text(), format!("who=/k{i} over HTTP/2.0"));
    }
    assert_eq!(origin.requests.load(Ordering::SeqCst), 100);
    let connections = origin.connections.load(Ordering::SeqCst);
    assert!(
        connections <= 2,
        "100 concurrent misses opened {connections} connections"
    );
}

#[tokio::test]
async fn a_route_with_unreadable_tls_files_does_not_start_and_names_the_key() {
    let mut settings =
        revcache_http::Settings::for_upstream("https://localhost:1".parse().unwrap());
    settings.routes[0].tls.ca_file = Some("/nonexistent/ca.pem".into());
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.admin_listen = "127.0.0.1:0".parse().unwrap();
    settings.disk.enabled = false;
    let dir = temp_dir("tls-bad");
    settings.data_dir = dir.clone();
    let e = revcache_http::Server::bind(settings)
        .await
        .err()
        .unwrap()
        .to_string();
    let _ = std::fs::remove_dir_all(dir);
    assert!(
        e.contains("tls.ca_file") && e.contains("\"default\""),
        "{e}"
    );
}
