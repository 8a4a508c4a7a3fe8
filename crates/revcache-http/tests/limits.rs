//! Limits answer with clear errors; upstream failures say which limit.

mod support;

use std::time::Duration;

use support::{Client, Origin, Reply, Revcache};

#[tokio::test]
async fn oversized_request_headers_get_431() {
    let origin = Origin::start(|_, _| Reply::ok("x")).await;
    let rc =
        Revcache::start_with(&origin.url(), |s| s.limits.max_request_header_bytes = 2048).await;
    let big = "v".repeat(4096);
    let res = Client::default()
        .get_with(&rc.url("/a"), &[("x-big", &big)])
        .await;
    assert_eq!(res.status, 431);
    assert!(
        res.text().contains("max_request_header_bytes"),
        "{}",
        res.text()
    );
    assert!(res.cache_status().starts_with("revcache"));
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn declared_oversized_bodies_get_413_before_forwarding() {
    let origin = Origin::start(|_, _| Reply::ok("x")).await;
    let rc = Revcache::start_with(&origin.url(), |s| s.limits.max_request_body_bytes = 1024).await;
    let res = Client::default()
        .send("POST", &rc.url("/up"), &[], vec![0u8; 4096])
        .await;
    assert_eq!(res.status, 413);
    assert!(
        res.text().contains("max_request_body_bytes"),
        "{}",
        res.text()
    );
    assert_eq!(origin.requests(), 0);
}

/// A body of `n` chunks with no declared length (sent chunked).
struct Chunks(usize);

impl http_body::Body for Chunks {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        if self.0 == 0 {
            return std::task::Poll::Ready(None);
        }
        self.0 -= 1;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from(
            vec![1u8; 512],
        )))))
    }
}

#[tokio::test]
async fn streamed_oversized_bodies_get_413() {
    use http_body_util::BodyExt;
    let origin = Origin::start(|_, _| Reply::ok("x")).await;
    let rc = Revcache::start_with(&origin.url(), |s| s.limits.max_request_body_bytes = 1024).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let req = http::Request::post(rc.url("/up")).body(Chunks(8)).unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), 413);
    let text = res.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&text).contains("1024"), "{text:?}");
}

#[tokio::test]
async fn an_unreachable_upstream_gets_502_that_says_connect() {
    // Bind then drop a listener: nothing listens on that port any more.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let rc = Revcache::start(&format!("http://{addr}")).await;
    let res = Client::default().get(&rc.url("/a")).await;
    assert_eq!(res.status, 502);
    assert!(
        res.text().contains("upstream connect error"),
        "{}",
        res.text()
    );
}

#[tokio::test]
async fn an_upstream_that_never_accepts_gets_504_that_says_connect_timeout() {
    // A listener with a full accept queue: the kernel drops further SYNs.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let _listener = socket.listen(0).unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let rc = Revcache::start_with(&format!("http://{addr}"), |s| {
        s.limits.upstream_connect_timeout = Duration::from_millis(300)
    })
    .await;
    let res = Client::default().get(&rc.url("/a")).await;
    assert_eq!(res.status, 504, "{}", res.text());
    assert!(
        res.text().contains("upstream connect timeout"),
        "{}",
        res.text()
    );
}

#[tokio::test]
async fn a_slow_upstream_gets_504_that_says_read_timeout() {
    let origin = Origin::start(|_, _| Reply::ok("late").delay(Duration::from_secs(2))).await;
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.limits.upstream_read_timeout = Duration::from_millis(300)
    })
    .await;
    let res = Client::default().get(&rc.url("/a")).await;
    assert_eq!(res.status, 504);
    assert!(
        res.text().contains("upstream read timeout"),
        "{}",
        res.text()
    );
}

#[tokio::test]
async fn requests_without_a_route_get_404_naming_host_and_path() {
    let origin = Origin::start(|_, _| Reply::ok("x")).await;
    let rc =
        Revcache::start_with(&origin.url(), |s| s.routes[0].path_prefix = "/api/".into()).await;
    let res = Client::default().get(&rc.url("/elsewhere")).await;
    assert_eq!(res.status, 404);
    assert!(res.text().contains("/elsewhere"), "{}", res.text());
}

#[tokio::test]
async fn routes_match_the_host_whatever_its_case() {
    let origin = Origin::start(|_, _| Reply::ok("routed")).await;
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.routes[0].host = Some("api.example.test".into())
    })
    .await;
    let c = Client::default();
    let url = rc.url("/x");
    let mixed = c.get_with(&url, &[("host", "API.Example.Test:8080")]).await;
    assert_eq!(mixed.status, 200, "{}", mixed.text());
    assert_eq!(mixed.text(), "routed");
    let lower = c.get_with(&url, &[("host", "api.example.test")]).await;
    assert_eq!(lower.status, 200);
    let other = c.get_with(&url, &[("host", "Other.Example.Test")]).await;
    assert_eq!(other.status, 404);
    assert!(
        other.text().contains("other.example.test"),
        "{}",
        other.text()
    );
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let origin =
        Origin::start(|_, _| Reply::ok("finished").delay(Duration::from_millis(500))).await;
    let rc = Revcache::start(&origin.url()).await;
    let url = rc.url("/slow");
    let in_flight = tokio::spawn(async move { Client::default().get(&url).await });
    origin.received(1).await;
    let addr = rc.addr;
    rc.shutdown().await;
    assert_eq!(in_flight.await.unwrap().text(), "finished");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener must be closed"
    );
}
