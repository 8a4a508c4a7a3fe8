//! `https://` upstreams, for real: a throwaway CA made in the test, TLS
//! origins on loopback (rustls), mutual TLS and an h2-only origin.

mod support;

use std::sync::atomic::Ordering;

use revcache_http::{ProxySetting, UpstreamHttp2, UpstreamTls};
use support::tls::{Alpn, Pki, tls_origin};
use support::{Client, Revcache, connect_proxy, metric, temp_dir};

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

#[tokio::test]
async fn an_https_upstream_is_reached_through_the_routes_connect_proxy() {
    let pki = Pki::new();
    let origin = tls_origin(
        &pki.leaf("proxied", &["localhost"], false),
        None,
        Alpn::Both,
    )
    .await;
    let (proxy, heads) = connect_proxy(&[]).await;
    let rc = Revcache::start_with(&format!("https://localhost:{}", origin.port), |s| {
        s.routes[0].tls.ca_file = Some(pki.ca_file());
        s.routes[0].proxy = ProxySetting::Url(format!("http://ci:s3cret@{proxy}"));
    })
    .await;
    let c = Client::default();
    let res = c.get(&rc.url("/a")).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert!(c.get(&rc.url("/a")).await.is_hit());
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0].starts_with(&format!("CONNECT localhost:{} HTTP/1.1", origin.port)),
        "{}",
        heads[0]
    );
    // "ci:s3cret" in base64: sent to the proxy, never to the upstream.
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains("proxy-authorization: basic y2k6cznjcmv0"),
        "{}",
        heads[0]
    );
}
