//! One slow or stalled client must not stall a URL for everyone else
//! (issue "Safe to expose", item 10).

mod support;

use std::time::Duration;

use support::{Client, Origin, Reply, Revcache};
use tokio::io::AsyncWriteExt;

const BIG: usize = 24 << 20;

/// Connects with a tiny receive window, asks for `path` and never reads.
async fn stalled_client(addr: std::net::SocketAddr, path: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    s
}

#[tokio::test]
async fn a_client_that_stops_reading_does_not_stall_the_others_on_its_url() {
    let origin = Origin::start(|_, _| {
        Reply::ok(vec![b'x'; BIG])
            .header("cache-control", "max-age=600")
            .delay(Duration::from_millis(300))
    })
    .await;
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.limits.max_cacheable_body_bytes = 32 << 20;
    })
    .await;
    let _stalled = stalled_client(rc.addr, "/big").await;
    // Joins the stalled client's flight while the origin is still thinking.
    origin.received(1).await;
    let c = Client::default();
    let other = tokio::time::timeout(Duration::from_secs(20), c.get(&rc.url("/big")))
        .await
        .expect("the second client was stalled by the first");
    assert_eq!(other.body.len(), BIG);
    assert!(other.cache_status().contains("collapsed"), "{other:?}");
    let third = c.get(&rc.url("/big")).await;
    assert!(third.is_hit());
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn collapsed_requests_fetch_on_their_own_after_the_wait_deadline() {
    let origin = Origin::start(|_, n| {
        let r = Reply::ok(format!("answer {n}")).header("cache-control", "max-age=600");
        if n == 0 {
            r.delay(Duration::from_secs(30))
        } else {
            r
        }
    })
    .await;
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.limits.collapsed_wait_timeout = Duration::from_millis(200);
        s.limits.upstream_read_timeout = Duration::from_secs(60);
    })
    .await;
    let c = Client::default();
    let slow = tokio::spawn({
        let (c, url) = (c.clone(), rc.url("/q"));
        async move { c.get(&url).await }
    });
    origin.received(1).await;
    let waiter = tokio::time::timeout(Duration::from_secs(15), c.get(&rc.url("/q")))
        .await
        .expect("the waiter had no deadline");
    assert_eq!(waiter.text(), "answer 1");
    assert_eq!(origin.requests(), 2);
    slow.abort();
}

#[tokio::test]
async fn fills_hold_no_more_than_their_budget_for_stalled_clients() {
    let origin = Origin::start(|req, _| {
        Reply::ok(vec![b'y'; 4 << 20])
            .header("cache-control", "max-age=600")
            .header("x-path", req.target.clone())
    })
    .await;
    let budget = 2 << 20;
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.limits.max_fill_bytes = budget;
        s.limits.max_cacheable_body_bytes = 8 << 20;
    })
    .await;
    let mut stalled = Vec::new();
    for i in 0..8 {
        stalled.push(stalled_client(rc.addr, &format!("/f{i}")).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Bodies over the budget are passed on at their clients' pace: what the
    // stalled clients make revcache hold stays bounded.
    let held = rc.proxy.fill_bytes();
    assert!(held <= 8 * (2 << 20), "fills hold {held} bytes");
    // And revcache still answers everyone else.
    let c = Client::default();
    let other = tokio::time::timeout(Duration::from_secs(20), c.get(&rc.url("/f0")))
        .await
        .expect("another client was stalled");
    assert_eq!(other.body.len(), 4 << 20);
    drop(stalled);
}
