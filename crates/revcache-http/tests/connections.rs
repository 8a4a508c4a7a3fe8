//! Hostile clients that hold connections: silent sockets, half-sent
//! prefaces and bodies, idle HTTP/2 connections. revcache closes them on
//! time, caps how many a listener holds, and keeps answering everyone else.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use revcache_http::{DialectName, EventSettings};
use support::{Client, Origin, Reply, Revcache, metric, raw_exchange};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn ok() -> impl Fn(&support::Seen, usize) -> Reply + Send + Sync + 'static {
    |_, _| Reply::ok("fine").header("cache-control", "max-age=60")
}

const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n";

/// Whether the server closed `s` within `within` (EOF or reset).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(within, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

async fn silent(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(TcpStream::connect(addr).await.unwrap());
    }
    // Let the server accept them before anyone else connects.
    tokio::time::sleep(Duration::from_millis(100)).await;
    out
}

#[tokio::test]
async fn silent_connections_at_the_cap_are_closed_on_time_and_the_next_client_is_answered() {
    let origin = Origin::start(ok()).await;
    let timeout = Duration::from_millis(500);
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.limits.max_connections = 4;
        s.limits.request_header_timeout = timeout;
    })
    .await;
    let mut hostile = silent(rc.addr, 4).await;
    let started = Instant::now();
    let answer = raw_exchange(rc.addr, GET).await;
    let waited = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        waited >= timeout / 2,
        "answered after {waited:?}: the cap of 4 did not hold the fifth connection back"
    );
    for s in &mut hostile {
        assert!(
            closed_within(s, Duration::from_secs(3)).await,
            "a silent connection is still open"
        );
    }
    let m = Client::default()
        .get(&rc.admin_url("/metrics"))
        .await
        .text();
    assert!(
        metric(
            &m,
            "revcache_connection_timeouts_total{listener=\"proxy\",kind=\"request_header\"}"
        ) >= 4.0,
        "{m}"
    );
}

#[tokio::test]
async fn a_full_proxy_listener_holds_new_clients_and_leaves_the_admin_api_answering() {
    let origin = Origin::start(ok()).await;
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.limits.max_connections = 2;
        s.limits.request_header_timeout = Duration::from_secs(30);
    })
    .await;
    let hostile = silent(rc.addr, 2).await;
    let health = tokio::time::timeout(
        Duration::from_secs(5),
        Client::default().get(&rc.admin_url("/healthz")),
    )
    .await
    .expect("the admin API answers while the proxy listener is full");
    assert_eq!(health.status, 200);
    let mut waiting = TcpStream::connect(rc.addr).await.unwrap();
    waiting.write_all(GET).await.unwrap();
    let mut buf = Vec::new();
    let early =
        tokio::time::timeout(Duration::from_millis(500), waiting.read_to_end(&mut buf)).await;
    assert!(
        early.is_err() && buf.is_empty(),
        "a third connection was served past the cap of 2: {}",
        String::from_utf8_lossy(&buf)
    );
    // A slot frees when a hostile client goes: the waiting one is served.
    drop(hostile);
    tokio::time::timeout(Duration::from_secs(5), waiting.read_to_end(&mut buf))
        .await
        .expect("served once a slot freed")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_half_sent_http2_preface_does_not_hold_a_connection() {
    let origin = Origin::start(ok()).await;
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.limits.request_header_timeout = Duration::from_millis(300);
    })
    .await;
    let mut s = TcpStream::connect(rc.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let origin = Origin::start(ok()).await;
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.limits.idle_connection_timeout = Duration::from_millis(300);
    })
    .await;
    let stream = TcpStream::connect(rc.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!("http://{}/a", rc.addr))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    drop(res);
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection stayed open");
    let m = Client::default()
        .get(&rc.admin_url("/metrics"))
        .await
        .text();
    assert!(
        metric(
            &m,
            "revcache_connection_timeouts_total{listener=\"proxy\",kind=\"idle\"}"
        ) >= 1.0,
        "{m}"
    );
}

#[tokio::test]
async fn a_propfind_body_that_never_arrives_gets_408_while_others_are_answered() {
    let origin = Origin::start(ok()).await;
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.routes[0].dialect = DialectName::Webdav;
        s.limits.request_body_timeout = Duration::from_millis(500);
    })
    .await;
    let mut hostile = TcpStream::connect(rc.addr).await.unwrap();
    hostile
        .write_all(
            b"PROPFIND /d/ HTTP/1.1\r\nHost: example.org\r\nDepth: 1\r\nContent-Type: application/xml\r\nContent-Length: 200\r\n\r\n<?xml",
        )
        .await
        .unwrap();
    let other = tokio::time::timeout(Duration::from_secs(5), raw_exchange(rc.addr, GET))
        .await
        .expect("another client is answered");
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), hostile.read(&mut buf))
        .await
        .expect("the half-sent PROPFIND is answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn an_event_batch_that_never_arrives_gets_408() {
    let origin = Origin::start(ok()).await;
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.routes[0].name = "gerrit".into();
        s.routes[0].dialect = DialectName::Gerrit;
        s.routes[0].events = Some(EventSettings::default());
        s.limits.request_body_timeout = Duration::from_millis(500);
    })
    .await;
    let mut hostile = TcpStream::connect(rc.admin).await.unwrap();
    hostile
        .write_all(
            format!(
                "POST /events/gerrit HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"type\"",
                rc.admin
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let health = tokio::time::timeout(
        Duration::from_secs(5),
        Client::default().get(&rc.admin_url("/healthz")),
    )
    .await
    .expect("the admin API answers others meanwhile");
    assert_eq!(health.status, 200);
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), hostile.read(&mut buf))
        .await
        .expect("the half-sent batch is answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_body_timeout"), "{answer}");
}
