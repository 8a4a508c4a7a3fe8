//! Interim (1xx) responses end to end: an origin that sends 103 Early
//! Hints before its answer, a real revcache, raw HTTP/1.x clients that see
//! every byte on the wire.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::{Client, Revcache};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the origin writes for every request: a 102, a 103 with a hint and
/// a field of its own, then the final response.
const ANSWER: &[u8] = b"HTTP/1.1 102 Processing\r\n\r\n\
HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\nX-Interim: yes\r\n\r\n\
HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\n\r\nhello";

/// Sends `request` on `s` and reads until the final response's 5-byte
/// body has arrived; returns everything read.
async fn exchange(s: &mut TcpStream, request: &str) -> String {
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    let done = |out: &[u8]| {
        let text = String::from_utf8_lossy(out);
        text.find("HTTP/1.1 200")
            .or_else(|| text.find("HTTP/1.0 200"))
            .is_some_and(|at| {
                text[at..]
                    .find("\r\n\r\n")
                    .is_some_and(|head| text.len() >= at + head + 4 + 5)
            })
    };
    while !done(&out) {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("revcache answered in time")
            .unwrap();
        assert!(
            n > 0,
            "connection closed early: {}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn an_http11_client_gets_the_upstream_interims_before_the_answer_and_a_hit_gets_none() {
    let (origin, requests) = support::raw_origin(ANSWER).await;
    let rc = Revcache::start(&origin).await;
    let mut s = TcpStream::connect(rc.addr).await.unwrap();
    let miss = exchange(&mut s, "GET /page HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let hints = miss.find("HTTP/1.1 103 Early Hints\r\n").expect(&miss);
    let processing = miss.find("HTTP/1.1 102 Processing\r\n\r\n").expect(&miss);
    let answer = miss.find("HTTP/1.1 200 OK\r\n").expect(&miss);
    assert!(processing < hints && hints < answer, "{miss}");
    assert!(miss[hints..answer].contains("link: </style.css>; rel=preload\r\n"));
    assert!(miss.ends_with("hello"));
    let final_head = &miss[answer..];
    assert!(
        !final_head.to_ascii_lowercase().contains("x-interim") && !final_head.contains("style.css"),
        "interim fields stay out of the final response: {final_head}"
    );
    // The same connection, now a hit: the stored response has no trace
    // of the interims, and none are sent.
    let hit = exchange(&mut s, "GET /page HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(hit.starts_with("HTTP/1.1 200 OK\r\n"), "{hit}");
    assert!(hit.contains("cache-status: revcache; hit"), "{hit}");
    assert!(!hit.to_ascii_lowercase().contains("x-interim") && !hit.contains("103"));
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    let metrics = Client::default()
        .get(&rc.admin_url("/metrics"))
        .await
        .text();
    assert_eq!(
        support::metric(
            &metrics,
            "revcache_interim_responses_total{listener=\"proxy\",outcome=\"relayed\"}"
        ),
        2.0
    );
}

#[tokio::test]
async fn an_http10_client_gets_no_interim() {
    let (origin, _) = support::raw_origin(ANSWER).await;
    let rc = Revcache::start(&origin).await;
    let mut s = TcpStream::connect(rc.addr).await.unwrap();
    let got = exchange(&mut s, "GET /old HTTP/1.0\r\nHost: a\r\n\r\n").await;
    assert!(
        got.starts_with("HTTP/1.0 200 OK\r\n") || got.starts_with("HTTP/1.1 200 OK\r\n"),
        "{got}"
    );
    assert!(!got.contains(" 103 ") && !got.contains(" 102 "), "{got}");
}

#[tokio::test]
async fn an_http2_client_gets_the_answer_alone() {
    let (origin, _) = support::raw_origin(ANSWER).await;
    let rc = Revcache::start(&origin).await;
    let got = Client::http2().get(&rc.url("/h2")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "hello");
    assert!(got.header("x-interim").is_none() && got.header("link").is_none());
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_whole() {
    let (origin, _) = support::raw_origin(ANSWER).await;
    let rc = Revcache::start(&origin).await;
    let mut s = TcpStream::connect(rc.addr).await.unwrap();
    let both = "GET /p1 HTTP/1.1\r\nHost: a\r\n\r\nGET /p2 HTTP/1.1\r\nHost: a\r\n\r\n";
    s.write_all(both.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    while String::from_utf8_lossy(&out).matches("hello").count() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        out.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8(out).unwrap();
    // Whatever interims made it, each sits before a final response and
    // none inside one.
    let finals: Vec<usize> = text
        .match_indices("HTTP/1.1 200 OK\r\n")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(finals.len(), 2, "{text}");
    let first_end = text[finals[0]..].find("hello").unwrap() + finals[0] + 5;
    assert!(first_end <= finals[1], "{text}");
    for part in [&text[..finals[0]], &text[first_end..finals[1]]] {
        assert!(
            part.is_empty() || part.starts_with("HTTP/1.1 10"),
            "only whole interims between answers: {part:?}"
        );
    }
}
