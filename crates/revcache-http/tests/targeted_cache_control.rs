//! Targeted cache control (RFC 9213) end to end: `CDN-Cache-Control` and
//! configured fields take the place of `Cache-Control` for revcache's own
//! storing and freshness, and reach clients as configured.

mod support;

use support::{Client, Origin, Reply, Revcache};

#[tokio::test]
async fn cdn_cache_control_makes_revcache_keep_what_cache_control_keeps_from_browsers() {
    let origin = Origin::start(|_, _| {
        Reply::ok("x")
            .header("cache-control", "no-store")
            .header("cdn-cache-control", "max-age=60")
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    let hit = c.get(&rc.url("/a")).await;
    assert!(hit.is_hit(), "{}", hit.cache_status());
    assert_eq!(origin.requests(), 1);
    assert_eq!(
        hit.header("cache-control"),
        Some("no-store"),
        "clients still get the origin's Cache-Control"
    );
    assert_eq!(
        hit.header("cdn-cache-control"),
        Some("max-age=60"),
        "forwarded by default"
    );
}

#[tokio::test]
async fn a_targeted_no_store_prevents_storing_despite_cache_control_max_age() {
    let (hit, requests) = support::second_get_hits(|| {
        Reply::ok("x")
            .header("cache-control", "max-age=600")
            .header("cdn-cache-control", "no-store")
    })
    .await;
    assert!(!hit);
    assert_eq!(requests, 2);
}

#[tokio::test]
async fn an_invalid_targeted_field_is_ignored_and_cache_control_applies() {
    let (hit, requests) = support::second_get_hits(|| {
        Reply::ok("x")
            .header("cache-control", "max-age=600")
            .header("cdn-cache-control", "no-store, Max-Age=0")
    })
    .await;
    assert!(hit);
    assert_eq!(requests, 1);
}

#[tokio::test]
async fn the_most_specific_configured_field_wins_and_can_be_withheld_from_clients() {
    let origin = Origin::start(|_, _| {
        Reply::ok("x")
            .header("cache-control", "max-age=600")
            .header("cdn-cache-control", "max-age=600")
            .header("revcache-cache-control", "max-age=0")
    })
    .await;
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.cache.targeted_cache_control = vec![
            http::HeaderName::from_static("revcache-cache-control"),
            http::HeaderName::from_static("cdn-cache-control"),
        ];
        s.cache.forward_targeted_cache_control = false;
    })
    .await;
    let c = Client::default();
    let first = c.get(&rc.url("/a")).await;
    assert!(
        first.cache_status().contains("ttl=0"),
        "{}",
        first.cache_status()
    );
    let second = c.get(&rc.url("/a")).await;
    assert!(!second.is_hit(), "revcache's own field said max-age=0");
    assert_eq!(origin.requests(), 2);
    for got in [first, second] {
        assert!(got.header("revcache-cache-control").is_none());
        assert!(got.header("cdn-cache-control").is_none());
        assert_eq!(got.header("cache-control"), Some("max-age=600"));
    }
}

#[tokio::test]
async fn a_304_can_change_the_targeted_freshness() {
    let origin = Origin::start(
        |req, n| match (n, req.headers.contains_key("if-none-match")) {
            (0, _) => Reply::ok("x")
                .header("etag", "\"v\"")
                .header("cdn-cache-control", "max-age=0"),
            (_, true) => Reply::status(304)
                .header("etag", "\"v\"")
                .header("cdn-cache-control", "max-age=600"),
            _ => Reply::ok("unexpected"),
        },
    )
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    let revalidated = c.get(&rc.url("/a")).await;
    assert_eq!(revalidated.text(), "x");
    let hit = c.get(&rc.url("/a")).await;
    assert!(hit.is_hit(), "{}", hit.cache_status());
    assert_eq!(origin.requests(), 2);
}
