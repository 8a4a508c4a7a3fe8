//! POST responses stored as GET answers (RFC 9110 §9.3.3, RFC 9111 §4),
//! opt-in per route (`[routes.options] store_post_responses = "true"`).

mod support;

use bytes::Bytes;
use support::{Client, Origin, Reply, Revcache};

/// An origin whose POSTs answer with `post_reply` and whose GETs with
/// "from-get", fresh for a minute.
async fn origin(post_reply: fn() -> Reply) -> Origin {
    Origin::start(move |req, _| {
        if req.method == http::Method::POST {
            post_reply()
        } else {
            Reply::ok("from-get").header("cache-control", "max-age=60")
        }
    })
    .await
}

/// A POST response that may be stored as the GET of `/search`.
fn storable_reply() -> Reply {
    Reply::ok("from-post")
        .header("cache-control", "max-age=60")
        .header("content-location", "/search")
}

async fn storing(origin: &Origin) -> Revcache {
    Revcache::start_with(&origin.url(), |s| {
        s.routes[0]
            .options
            .insert("store_post_responses".into(), "true".into());
    })
    .await
}

async fn post(c: &Client, url: &str) -> support::Got {
    c.send("POST", url, &[], Bytes::from_static(b"q=1")).await
}

#[tokio::test]
async fn a_post_response_naming_its_target_with_freshness_answers_the_next_get() {
    let origin = origin(storable_reply).await;
    let rc = storing(&origin).await;
    let c = Client::default();
    let posted = post(&c, &rc.url("/search")).await;
    assert_eq!(posted.text(), "from-post");
    assert!(
        posted.cache_status().contains("stored"),
        "{}",
        posted.cache_status()
    );
    rc.proxy.fills_idle().await;
    let got = c.get(&rc.url("/search")).await;
    assert!(got.is_hit(), "{}", got.cache_status());
    assert_eq!(got.text(), "from-post");
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn an_absolute_content_location_of_the_same_authority_counts() {
    let origin = origin(|| {
        Reply::ok("from-post")
            .header("expires", support::http_date_in(60))
            .header("content-location", "http://EXAMPLE.test/search?x=1")
    })
    .await;
    let rc = storing(&origin).await;
    let c = Client::default();
    let url = rc.url("/search?x=1");
    c.send("POST", &url, &[("host", "example.test")], Bytes::new())
        .await;
    rc.proxy.fills_idle().await;
    let got = c.get_with(&url, &[("host", "example.test")]).await;
    assert!(got.is_hit(), "{}", got.cache_status());
    assert_eq!(got.text(), "from-post");
}

#[tokio::test]
async fn a_post_response_is_not_stored_without_every_condition() {
    let cases: [fn() -> Reply; 4] = [
        // Another URL.
        || {
            Reply::ok("from-post")
                .header("cache-control", "max-age=60")
                .header("content-location", "/elsewhere")
        },
        // No explicit freshness (a POST is never heuristically fresh).
        || {
            Reply::ok("from-post")
                .header("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")
                .header("content-location", "/search")
        },
        // No Content-Location.
        || Reply::ok("from-post").header("cache-control", "max-age=60"),
        // Another authority.
        || {
            Reply::ok("from-post")
                .header("cache-control", "max-age=60")
                .header("content-location", "http://other.test/search")
        },
    ];
    for (i, reply) in cases.into_iter().enumerate() {
        let origin = origin(reply).await;
        let rc = storing(&origin).await;
        let c = Client::default();
        post(&c, &rc.url("/search")).await;
        rc.proxy.fills_idle().await;
        let got = c.get(&rc.url("/search")).await;
        assert_eq!(got.text(), "from-get", "case {i}");
        assert_eq!(origin.requests(), 2, "case {i}");
    }
}

#[tokio::test]
async fn without_the_option_a_post_response_only_invalidates() {
    let origin = origin(storable_reply).await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    assert_eq!(c.get(&rc.url("/search")).await.text(), "from-get");
    post(&c, &rc.url("/search")).await;
    let got = c.get(&rc.url("/search")).await;
    assert!(!got.is_hit());
    assert_eq!(got.text(), "from-get");
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn a_stored_post_response_replaces_the_earlier_get_entry() {
    let origin = origin(storable_reply).await;
    let rc = storing(&origin).await;
    let c = Client::default();
    assert_eq!(c.get(&rc.url("/search")).await.text(), "from-get");
    post(&c, &rc.url("/search")).await;
    rc.proxy.fills_idle().await;
    let got = c.get(&rc.url("/search")).await;
    assert!(got.is_hit());
    assert_eq!(got.text(), "from-post");
    assert_eq!(origin.requests(), 2);
}
