//! TLS on the client listener: HTTP/1.1 and HTTP/2 by ALPN, `proto=https`
//! to the upstream, and certificates re-read without dropping connections.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use revcache_http::ListenerTlsSettings;
use rustls::pki_types::{CertificateDer, ServerName};
use support::tls::{Leaf, Pki, provider};
use support::{Origin, Reply, Revcache};

/// An origin that answers with the `Forwarded` header it received.
async fn forwarded_echo() -> Origin {
    Origin::start(|req, _| {
        let fwd = req
            .headers
            .get("forwarded")
            .map_or("", |v| v.to_str().unwrap())
            .to_owned();
        Reply::ok(fwd).header("cache-control", "no-store")
    })
    .await
}

async fn with_tls_listener(origin: &Origin, leaf: &Leaf) -> Revcache {
    let (cert_file, key_file) = (leaf.cert_file.clone(), leaf.key_file.clone());
    Revcache::start_with(&origin.url(), move |s| {
        s.tls = Some(ListenerTlsSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert_file,
            key_file,
        });
    })
    .await
}

fn client_config(pki: &Pki, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.der().clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TLS connection to `addr` as `localhost`; also returns the certificate
/// the server presented.
async fn connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    CertificateDer<'static>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    (tls, presented)
}

async fn get_text(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    path: &str,
) -> String {
    let req = Request::get(path)
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test]
async fn the_tls_listener_speaks_http1_and_h2_and_tells_the_upstream_https() {
    let pki = Pki::new();
    let leaf = pki.leaf("listener", &["localhost"], false);
    let origin = forwarded_echo().await;
    let rc = with_tls_listener(&origin, &leaf).await;
    let (addr, _) = rc.tls.clone().unwrap();

    let (tls, _) = connect(addr, client_config(&pki, &[b"http/1.1"])).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let forwarded = get_text(&mut sender, "/a").await;
    assert!(forwarded.contains("proto=https"), "{forwarded}");

    let (tls, _) = connect(addr, client_config(&pki, &[b"h2"])).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("https://localhost/b")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("proto=https"));

    // The plain listener still says http.
    let plain = support::Client::default().get(&rc.url("/c")).await;
    assert!(plain.text().contains("proto=http") && !plain.text().contains("proto=https"));

    // And curl (scripts/test.sh installs it) over both protocols.
    let ca = pki.ca_file();
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let url = format!("https://localhost:{}/d", addr.port());
        let ca = ca.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_version} %{http_code}",
                ])
                .arg("--cacert")
                .arg(&ca)
                .arg(flag)
                .arg(&url)
                .output()
        })
        .await
        .unwrap();
        let out = out.expect("curl runs");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{version} 200")
        );
    }
}

#[tokio::test]
async fn renewed_certificates_serve_new_handshakes_and_open_connections_keep_working() {
    let pki = Pki::new();
    let first = pki.leaf("first", &["localhost"], false);
    let origin = forwarded_echo().await;
    let rc = with_tls_listener(&origin, &first).await;
    let (addr, _) = rc.tls.clone().unwrap();
    let config = client_config(&pki, &[b"http/1.1"]);
    let admin = support::Client::default();
    let reload_url = rc.admin_url("/reload");
    let reload = || admin.send("POST", &reload_url, &[], "");

    let (tls, presented) = connect(addr, config.clone()).await;
    assert_eq!(presented, first.cert);
    let (mut open, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    assert!(get_text(&mut open, "/1").await.contains("proto=https"));

    // Renewed in place, as certbot or an operator would.
    let second = pki.leaf("second", &["localhost"], false);
    std::fs::copy(&second.cert_file, &first.cert_file).unwrap();
    std::fs::copy(&second.key_file, &first.key_file).unwrap();
    let applied = reload().await;
    assert_eq!(applied.status, 200, "{}", applied.text());
    let (_, presented) = connect(addr, config.clone()).await;
    assert_eq!(
        presented, second.cert,
        "a new handshake gets the new certificate"
    );
    assert!(
        get_text(&mut open, "/2").await.contains("proto=https"),
        "the connection opened before the reload still works"
    );

    // A broken renewal keeps the certificate in use.
    std::fs::write(&first.cert_file, "not a certificate").unwrap();
    let refused = reload().await;
    assert_eq!(refused.status, 422);
    assert!(
        refused.text().contains("tls.cert_file"),
        "{}",
        refused.text()
    );
    let (_, presented) = connect(addr, config).await;
    assert_eq!(presented, second.cert);
}

#[tokio::test]
async fn a_tls_listener_whose_key_cannot_be_read_does_not_start_and_names_the_key() {
    let pki = Pki::new();
    let leaf = pki.leaf("nokey", &["localhost"], false);
    let mut settings = revcache_http::Settings::for_upstream("http://127.0.0.1:1".parse().unwrap());
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.admin_listen = "127.0.0.1:0".parse().unwrap();
    settings.disk.enabled = false;
    let dir = support::temp_dir("tls-listener-bad");
    settings.data_dir = dir.clone();
    settings.tls = Some(ListenerTlsSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        cert_file: leaf.cert_file.clone(),
        key_file: "/nonexistent/key.pem".into(),
    });
    let e = revcache_http::Server::bind(settings)
        .await
        .err()
        .unwrap()
        .to_string();
    let _ = std::fs::remove_dir_all(dir);
    assert!(e.contains("tls.key_file"), "{e}");
}
