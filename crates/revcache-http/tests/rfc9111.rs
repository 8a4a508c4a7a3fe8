//! RFC 9111 shared-cache behaviour of the `http` dialect, end to end:
//! a real origin, a real revcache, a real client.

mod support;

use std::time::Duration;

use support::{Client, Origin, Reply, Revcache, http_date_in};

#[tokio::test]
async fn fresh_response_is_served_from_cache_with_age() {
    let origin =
        Origin::start(|_, _| Reply::ok("hello").header("cache-control", "max-age=60")).await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    let first = c.get(&rc.url("/a")).await;
    assert_eq!(first.text(), "hello");
    assert_eq!(
        first.cache_status(),
        "revcache; fwd=uri-miss; fwd-status=200; stored; ttl=60"
    );
    let second = c.get(&rc.url("/a")).await;
    assert_eq!(second.text(), "hello");
    assert!(
        second.cache_status() == "revcache; hit",
        "{}",
        second.cache_status()
    );
    assert!(second.header("age").is_some());
    assert_eq!(second.header("content-length"), Some("5"));
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn age_from_upstream_counts_against_freshness() {
    let origin = Origin::start(|_, _| {
        Reply::ok("x")
            .header("cache-control", "max-age=10")
            .header("age", "10")
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    let second = c.get(&rc.url("/a")).await;
    assert!(!second.is_hit(), "{}", second.cache_status());
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn served_age_includes_the_upstream_age() {
    let origin = Origin::start(|_, _| {
        Reply::ok("x")
            .header("cache-control", "max-age=600")
            .header("age", "100")
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    let hit = c.get(&rc.url("/a")).await;
    let age: u64 = hit.header("age").unwrap().parse().unwrap();
    assert!((100..=102).contains(&age), "age {age}");
}

#[tokio::test]
async fn expires_before_date_is_already_stale() {
    let origin = Origin::start(|_, _| {
        Reply::ok("x")
            .header("date", http_date_in(0))
            .header("expires", http_date_in(-60))
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    assert!(!c.get(&rc.url("/a")).await.is_hit());
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn expires_in_the_future_is_fresh() {
    let origin = Origin::start(|_, _| {
        Reply::ok("x")
            .header("date", http_date_in(0))
            .header("expires", http_date_in(60))
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    assert!(c.get(&rc.url("/a")).await.is_hit());
}

#[tokio::test]
async fn s_maxage_beats_max_age() {
    let origin =
        Origin::start(|_, _| Reply::ok("x").header("cache-control", "max-age=0, s-maxage=60"))
            .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    assert!(c.get(&rc.url("/a")).await.is_hit());
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn an_invalid_age_makes_the_response_stale() {
    let (hit, requests) = support::second_get_hits(|| {
        Reply::ok("x")
            .header("cache-control", "max-age=600")
            .header("age", "ten")
    })
    .await;
    assert!(!hit);
    assert_eq!(requests, 2);
}

#[tokio::test]
async fn age_with_several_values_uses_the_first() {
    let origin = Origin::start(|_, _| {
        Reply::ok("x")
            .header("cache-control", "max-age=600")
            .header("age", "100, 9999")
            .header("age", "99999")
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    let hit = c.get(&rc.url("/a")).await;
    assert!(hit.is_hit(), "{}", hit.cache_status());
    let age: u64 = hit.header("age").unwrap().parse().unwrap();
    assert!((100..=102).contains(&age), "age {age}");
}

#[tokio::test]
async fn invalid_max_age_is_stale_not_fresh() {
    let origin = Origin::start(|_, _| {
        Reply::ok("x")
            .header("cache-control", "max-age=soon")
            .header("expires", http_date_in(600))
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    assert!(!c.get(&rc.url("/a")).await.is_hit());
}

#[tokio::test]
async fn no_store_is_never_stored() {
    let origin =
        Origin::start(|_, _| Reply::ok("x").header("cache-control", "no-store, max-age=60")).await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    let first = c.get(&rc.url("/a")).await;
    assert!(
        first.cache_status().contains("detail=no-store"),
        "{}",
        first.cache_status()
    );
    let m = c.get(&rc.admin_url("/metrics")).await.text();
    assert_eq!(
        support::metric(&m, "revcache_not_stored_total{reason=\"no-store\"}"),
        1.0,
        "the reason is counted for operators"
    );
    c.get(&rc.url("/a")).await;
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn request_no_store_keeps_the_response_out_of_the_cache() {
    let origin = Origin::start(|_, _| Reply::ok("x").header("cache-control", "max-age=60")).await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get_with(&rc.url("/a"), &[("cache-control", "no-store")])
        .await;
    c.get(&rc.url("/a")).await;
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn private_is_never_stored_by_a_shared_cache() {
    let origin =
        Origin::start(|_, _| Reply::ok("x").header("cache-control", "private, max-age=60")).await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    c.get(&rc.url("/a")).await;
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn no_cache_is_stored_but_revalidated_every_time() {
    let origin = Origin::start(|req, _| {
        if req
            .headers
            .get("if-none-match")
            .is_some_and(|v| v == "\"v1\"")
        {
            Reply::status(304).header("etag", "\"v1\"")
        } else {
            Reply::ok("body")
                .header("cache-control", "no-cache")
                .header("etag", "\"v1\"")
        }
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    let second = c.get(&rc.url("/a")).await;
    assert_eq!(second.text(), "body");
    assert!(
        second
            .cache_status()
            .starts_with("revcache; fwd=stale; fwd-status=304"),
        "{}",
        second.cache_status()
    );
    assert_eq!(origin.requests(), 2);
    assert_eq!(origin.last().headers["if-none-match"], "\"v1\"");
}

#[tokio::test]
async fn revalidation_merges_304_headers_but_keeps_framing() {
    let origin = Origin::start(|req, n| {
        if req.headers.contains_key("if-none-match") {
            Reply::status(304)
                .header("etag", "\"v1\"")
                .header("cache-control", "max-age=60")
                .header("x-version", format!("refreshed-{n}"))
        } else {
            Reply::ok("12345")
                .header("etag", "\"v1\"")
                .header("cache-control", "max-age=0")
                .header("x-version", "original")
        }
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    let revalidated = c.get(&rc.url("/a")).await;
    assert_eq!(revalidated.header("x-version"), Some("refreshed-1"));
    assert_eq!(revalidated.header("content-length"), Some("5"));
    assert_eq!(revalidated.text(), "12345");
    let hit = c.get(&rc.url("/a")).await;
    assert!(
        hit.is_hit(),
        "the 304's max-age=60 makes it fresh: {}",
        hit.cache_status()
    );
    assert_eq!(hit.header("x-version"), Some("refreshed-1"));
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn revalidation_with_last_modified_sends_if_modified_since() {
    let lm = http_date_in(-1);
    let lm2 = lm.clone();
    let origin = Origin::start(move |req, _| {
        if req.headers.contains_key("if-modified-since") {
            Reply::status(304)
        } else {
            Reply::ok("x")
                .header("last-modified", lm2.clone())
                .header("cache-control", "max-age=0")
        }
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    let second = c.get(&rc.url("/a")).await;
    assert_eq!(second.status, 200);
    assert_eq!(origin.last().headers["if-modified-since"], lm.as_str());
}

#[tokio::test]
async fn heuristic_freshness_applies_to_200_with_last_modified() {
    let origin =
        Origin::start(|_, _| Reply::ok("x").header("last-modified", http_date_in(-100_000))).await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    assert!(c.get(&rc.url("/a")).await.is_hit());
}

#[tokio::test]
async fn no_heuristic_freshness_for_non_heuristic_statuses() {
    let origin = Origin::start(|_, _| {
        Reply::status(302)
            .header("location", "/elsewhere")
            .header("last-modified", http_date_in(-100_000))
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    c.get(&rc.url("/a")).await;
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn client_conditional_request_is_answered_from_cache() {
    let origin = Origin::start(|_, _| {
        Reply::ok("x")
            .header("etag", "\"v7\"")
            .header("cache-control", "max-age=60")
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    // A conditional miss still fills the cache with the whole response.
    let first = c
        .get_with(&rc.url("/a"), &[("if-none-match", "\"v7\"")])
        .await;
    assert_eq!(first.status, 304);
    assert!(!origin.last().headers.contains_key("if-none-match"));
    let hit = c
        .get_with(&rc.url("/a"), &[("if-none-match", "W/\"v7\"")])
        .await;
    assert_eq!(hit.status, 304);
    assert!(hit.body.is_empty());
    assert_eq!(hit.header("etag"), Some("\"v7\""));
    let other = c
        .get_with(&rc.url("/a"), &[("if-none-match", "\"v6\"")])
        .await;
    assert_eq!(other.status, 200);
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn if_modified_since_is_answered_from_cache() {
    let lm = http_date_in(-3600);
    let lm2 = lm.clone();
    let origin = Origin::start(move |_, _| {
        Reply::ok("x")
            .header("last-modified", lm2.clone())
            .header("cache-control", "max-age=60")
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    assert_eq!(
        c.get_with(&rc.url("/a"), &[("if-modified-since", &lm)])
            .await
            .status,
        304
    );
    let older = http_date_in(-7200);
    assert_eq!(
        c.get_with(&rc.url("/a"), &[("if-modified-since", &older)])
            .await
            .status,
        200
    );
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn head_is_served_from_a_stored_get() {
    let origin =
        Origin::start(|_, _| Reply::ok("0123456789").header("cache-control", "max-age=60")).await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    let head = c.send("HEAD", &rc.url("/a"), &[], "").await;
    assert_eq!(head.status, 200);
    assert!(head.is_hit());
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), Some("10"));
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn unsafe_methods_invalidate_the_target_and_same_origin_location() {
    let origin = Origin::start(|req, _| match req.method.as_str() {
        "POST" => Reply::status(201).header("location", "/items/7"),
        _ => Reply::ok(format!("{} body", req.target)).header("cache-control", "max-age=600"),
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/items")).await;
    c.get(&rc.url("/items/7")).await;
    c.get(&rc.url("/other")).await;
    assert_eq!(origin.requests(), 3);
    let post = c.send("POST", &rc.url("/items"), &[], "new item").await;
    assert_eq!(post.status, 201);
    assert!(
        post.cache_status().contains("fwd=method"),
        "{}",
        post.cache_status()
    );
    assert_eq!(origin.last().body, "new item");
    assert!(!c.get(&rc.url("/items")).await.is_hit());
    assert!(!c.get(&rc.url("/items/7")).await.is_hit());
    assert!(c.get(&rc.url("/other")).await.is_hit());
}

#[tokio::test]
async fn failed_unsafe_methods_do_not_invalidate() {
    let origin = Origin::start(|req, _| match req.method.as_str() {
        "DELETE" => Reply::status(500),
        _ => Reply::ok("x").header("cache-control", "max-age=600"),
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    c.send("DELETE", &rc.url("/a"), &[], "").await;
    assert!(c.get(&rc.url("/a")).await.is_hit());
}

#[tokio::test]
async fn vary_selects_the_stored_variant() {
    let origin = Origin::start(|req, _| {
        let lang = req
            .headers
            .get("accept-language")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        Reply::ok(format!("in {lang}"))
            .header("vary", "Accept-Language")
            .header("cache-control", "max-age=60")
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    assert_eq!(
        c.get_with(&rc.url("/a"), &[("accept-language", "en")])
            .await
            .text(),
        "in en"
    );
    let de = c
        .get_with(&rc.url("/a"), &[("accept-language", "de")])
        .await;
    assert_eq!(de.text(), "in de");
    assert!(
        de.cache_status().contains("fwd=vary-miss"),
        "{}",
        de.cache_status()
    );
    let en = c
        .get_with(&rc.url("/a"), &[("accept-language", "en")])
        .await;
    assert!(en.is_hit());
    assert_eq!(en.text(), "in en");
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn equivalent_accept_encoding_and_language_share_one_variant() {
    let origin = Origin::start(|_, n| {
        Reply::ok(format!("response {n}"))
            .header("vary", "Accept-Encoding, Accept-Language")
            .header("cache-control", "max-age=60")
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    let ask = |encoding: &'static str, language: &'static str| {
        let (c, url) = (c.clone(), rc.url("/a"));
        async move {
            c.get_with(
                &url,
                &[("accept-encoding", encoding), ("accept-language", language)],
            )
            .await
        }
    };
    assert_eq!(
        ask("gzip, br", "de-CH, de;q=0.8").await.text(),
        "response 0"
    );
    let same = ask("BR,gzip", "de;q=0.80 , de-ch").await;
    assert!(same.is_hit(), "{}", same.cache_status());
    assert_eq!(same.text(), "response 0");
    let other = ask("gzip, br", "de, de-CH;q=0.8").await;
    assert!(
        other.cache_status().contains("fwd=vary-miss"),
        "{}",
        other.cache_status()
    );
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn vary_star_never_matches() {
    let origin = Origin::start(|_, _| {
        Reply::ok("x")
            .header("vary", "*")
            .header("cache-control", "max-age=60")
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    c.get(&rc.url("/a")).await;
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_refreshes_behind() {
    // The refreshed response lives long: on a loaded machine the refresh may
    // take over a second, and its corrected initial age (RFC 9111 §4.2.3)
    // would make a one-second entry stale on arrival and refresh again.
    let origin = Origin::start(|_, n| {
        let cc = if n == 0 {
            "max-age=1, stale-while-revalidate=60"
        } else {
            "max-age=600"
        };
        Reply::ok(format!("version {n}")).header("cache-control", cc)
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    rc.advance(Duration::from_secs(2));
    let stale = c.get(&rc.url("/a")).await;
    assert_eq!(stale.text(), "version 0");
    assert!(
        stale
            .cache_status()
            .contains("detail=stale-while-revalidate"),
        "{}",
        stale.cache_status()
    );
    // The refresh runs behind; on a loaded machine it may take a while.
    let mut refreshed = None;
    for _ in 0..250 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if origin.requests() < 2 {
            continue;
        }
        let got = c.get(&rc.url("/a")).await;
        if got.text() == "version 1" {
            refreshed = Some(got);
            break;
        }
    }
    let refreshed = refreshed.expect("the background refresh was stored");
    assert!(refreshed.is_hit());
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn stale_if_error_serves_stale_when_the_upstream_fails() {
    let origin = Origin::start(|_, n| {
        if n == 0 {
            Reply::ok("good").header("cache-control", "max-age=1, stale-if-error=60")
        } else {
            Reply::status(503)
        }
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    rc.advance(Duration::from_secs(2));
    let res = c.get(&rc.url("/a")).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "good");
    assert!(
        res.cache_status().contains("detail=stale-if-error"),
        "{}",
        res.cache_status()
    );
}

#[tokio::test]
async fn stale_if_error_serves_stale_when_the_upstream_is_down() {
    let origin = Origin::start(|_, _| {
        Reply::ok("good").header("cache-control", "max-age=1, stale-if-error=60")
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    drop(origin);
    rc.advance(Duration::from_secs(2));
    let res = c.get(&rc.url("/a")).await;
    assert_eq!((res.status, res.text().as_str()), (200, "good"));
}

#[tokio::test]
async fn a_stale_entry_is_served_when_the_upstream_vanishes_unless_a_directive_forbids_it() {
    // RFC 9111 §4.2.4: a disconnected cache may serve stale without
    // stale-if-error, but never past must-revalidate, s-maxage or no-cache.
    let origin = Origin::start(|seen, _| {
        let cc = match seen.target.as_str() {
            "/plain" => "max-age=1",
            "/must" => "max-age=1, must-revalidate",
            "/shared" => "s-maxage=1",
            _ => "no-cache",
        };
        Reply::ok(format!("stored {}", seen.target)).header("cache-control", cc)
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    for path in ["/plain", "/must", "/shared", "/nocache"] {
        c.get(&rc.url(path)).await;
    }
    drop(origin);
    rc.advance(Duration::from_secs(2));
    let plain = c.get(&rc.url("/plain")).await;
    assert_eq!(
        (plain.status, plain.text().as_str()),
        (200, "stored /plain")
    );
    assert!(
        plain.cache_status().contains("fwd=stale")
            && plain.cache_status().contains("detail=disconnected"),
        "{}",
        plain.cache_status()
    );
    for path in ["/must", "/shared", "/nocache"] {
        let refused = c.get(&rc.url(path)).await;
        assert_eq!(refused.status, 502, "{path}: {}", refused.text());
    }
    let insisting = c
        .get_with(&rc.url("/plain"), &[("cache-control", "no-cache")])
        .await;
    assert_eq!(insisting.status, 502, "the client asked for a fresh answer");
}

#[tokio::test]
async fn must_revalidate_never_serves_stale_even_on_error() {
    let origin = Origin::start(|_, n| {
        if n == 0 {
            Reply::ok("good").header(
                "cache-control",
                "max-age=1, must-revalidate, stale-if-error=60",
            )
        } else {
            Reply::status(503)
        }
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    rc.advance(Duration::from_secs(2));
    let res = c
        .get_with(&rc.url("/a"), &[("cache-control", "max-stale=600")])
        .await;
    assert_eq!(res.status, 503);
}

#[tokio::test]
async fn request_no_cache_and_max_age_zero_force_revalidation() {
    let origin = Origin::start(|_, _| {
        Reply::ok("x")
            .header("cache-control", "max-age=600")
            .header("etag", "\"e\"")
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    let forced = c
        .get_with(&rc.url("/a"), &[("cache-control", "no-cache")])
        .await;
    assert!(
        forced.cache_status().contains("fwd=request"),
        "{}",
        forced.cache_status()
    );
    let insisted = c
        .get_with(&rc.url("/a"), &[("cache-control", "max-age=0")])
        .await;
    assert!(
        insisted.cache_status().contains("fwd=request"),
        "{}",
        insisted.cache_status()
    );
    assert_eq!(origin.requests(), 3);
    let m = c.get(&rc.admin_url("/metrics")).await.text();
    assert_eq!(
        support::metric(&m, "revcache_forwarded_total{fwd=\"request\"}"),
        2.0
    );
    assert_eq!(
        support::metric(&m, "revcache_forwarded_total{fwd=\"uri-miss\"}"),
        1.0
    );
}

#[tokio::test]
async fn only_if_cached_answers_504_on_a_miss() {
    let origin = Origin::start(|_, _| Reply::ok("x").header("cache-control", "max-age=600")).await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    let miss = c
        .get_with(&rc.url("/a"), &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(miss.status, 504);
    assert_eq!(origin.requests(), 0);
    c.get(&rc.url("/a")).await;
    assert_eq!(
        c.get_with(&rc.url("/a"), &[("cache-control", "only-if-cached")])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_and_via_and_forwarded_added() {
    let origin = Origin::start(|_, _| {
        Reply::ok("x")
            .header("connection", "x-origin-secret")
            .header("x-origin-secret", "1")
            .header("keep-alive", "timeout=5")
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    let res = c
        .get_with(
            &rc.url("/a"),
            &[
                ("connection", "x-client-secret"),
                ("x-client-secret", "1"),
                ("x-end-to-end", "kept"),
            ],
        )
        .await;
    let seen = origin.last();
    assert!(!seen.headers.contains_key("x-client-secret"));
    assert_eq!(seen.headers["x-end-to-end"], "kept");
    assert_eq!(seen.headers["via"], "1.1 revcache");
    assert!(
        seen.headers["forwarded"]
            .to_str()
            .unwrap()
            .starts_with("for=\"127.0.0.1:")
    );
    assert_eq!(seen.headers["host"], origin.addr.to_string().as_str());
    assert!(res.header("x-origin-secret").is_none());
    assert!(res.header("keep-alive").is_none());
    assert_eq!(res.header("via"), Some("1.1 revcache"));
}

#[tokio::test]
async fn bodies_larger_than_the_cacheable_limit_stream_through_uncached() {
    let big = vec![b'z'; 3 << 20];
    let body = bytes::Bytes::from(big.clone());
    let origin =
        Origin::start(move |_, _| Reply::ok(body.clone()).header("cache-control", "max-age=600"))
            .await;
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.limits.max_cacheable_body_bytes = 1 << 20
    })
    .await;
    let c = Client::default();
    let first = c.get(&rc.url("/big")).await;
    assert_eq!(first.body.len(), big.len());
    assert!(
        first.cache_status().contains("detail=too-large"),
        "{}",
        first.cache_status()
    );
    let second = c.get(&rc.url("/big")).await;
    assert_eq!(second.body, big);
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn request_bodies_are_forwarded_whole() {
    let origin = Origin::start(|req, _| Reply::ok(req.body.clone())).await;
    let rc = Revcache::start(&origin.url()).await;
    let body = vec![7u8; 1 << 20];
    let res = Client::default()
        .send("PUT", &rc.url("/upload"), &[], body.clone())
        .await;
    assert_eq!(res.body, body);
}

#[tokio::test]
async fn http2_clients_are_served_and_hit_the_cache() {
    let origin = Origin::start(|_, _| Reply::ok("h2").header("cache-control", "max-age=60")).await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::http2();
    assert_eq!(c.get(&rc.url("/a")).await.text(), "h2");
    let hit = c.get(&rc.url("/a")).await;
    assert!(hit.is_hit());
    assert_eq!(hit.header("via"), Some("2 revcache"));
    assert_eq!(origin.requests(), 1);
}

/// A 304 naming another validator than the stored one (a load-balanced
/// origin whose nodes disagree) confirms nothing: revcache fetches the whole
/// response, and stores it, so the next request is a hit.
#[tokio::test]
async fn a_304_for_another_representation_is_refetched_and_the_refetch_is_stored() {
    let origin = Origin::start(|req, n| {
        let conditional = req.headers.contains_key("if-none-match");
        match (n, conditional) {
            (0, _) => Reply::ok("first")
                .header("cache-control", "no-cache")
                .header("etag", "\"v1\""),
            (_, true) => Reply::status(304).header("etag", "\"v2\""),
            (_, false) => Reply::ok("second")
                .header("cache-control", "max-age=600")
                .header("etag", "\"v2\""),
        }
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    assert_eq!(c.get(&rc.url("/r")).await.text(), "first");
    let refetched = c.get(&rc.url("/r")).await;
    assert_eq!(refetched.text(), "second");
    assert_eq!(
        origin.requests(),
        3,
        "a conditional request, then a whole one"
    );
    assert!(
        origin.last().headers.get("if-none-match").is_none(),
        "the refetch is unconditional"
    );
    rc.proxy.fills_idle().await;
    let next = c.get(&rc.url("/r")).await;
    assert!(
        next.is_hit(),
        "the refetched 200 was stored: {}",
        next.cache_status()
    );
    assert_eq!(next.text(), "second");
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn an_interim_103_is_never_stored_and_its_headers_never_reach_the_final_response() {
    // An origin that sends Early Hints before its final response.
    let (origin, requests) = support::raw_origin(
        b"HTTP/1.1 103 Early Hints\r\n\
          Link: </style.css>; rel=preload\r\n\
          Cache-Control: no-store\r\n\r\n\
          HTTP/1.1 200 OK\r\n\
          Cache-Control: max-age=60\r\n\
          Content-Length: 5\r\n\r\nhello",
    )
    .await;
    let rc = Revcache::start(&origin).await;
    let c = Client::default();
    let first = c.get(&rc.url("/hinted")).await;
    assert_eq!((first.status, first.text().as_str()), (200, "hello"));
    assert!(first.header("link").is_none(), "{:?}", first.headers);
    let second = c.get(&rc.url("/hinted")).await;
    assert!(second.is_hit(), "{}", second.cache_status());
    assert_eq!(second.text(), "hello");
    assert!(second.header("link").is_none(), "{:?}", second.headers);
    assert_eq!(
        second.header("cache-control"),
        Some("max-age=60"),
        "the final response's headers only"
    );
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 1);
}
