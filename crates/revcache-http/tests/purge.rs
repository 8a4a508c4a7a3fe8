//! The admin API: purges by URL, prefix and tag; the purge-during-fill race;
//! token protection; health and metrics.

mod support;

use std::time::Duration;

use support::{Client, JSON, Origin, Reply, Revcache};

fn cacheable() -> impl Fn(&support::Seen, usize) -> Reply + Send + Sync + 'static {
    |req, n| Reply::ok(format!("{} #{n}", req.target)).header("cache-control", "max-age=600")
}

#[tokio::test]
async fn purge_by_url_removes_every_partition_of_that_url() {
    let origin = Origin::start(cacheable()).await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a?x=1")).await;
    c.get_with(&rc.url("/a?x=1"), &[("authorization", "Bearer u")])
        .await;
    c.get(&rc.url("/a?x=2")).await;
    let res = c
        .send("POST", &rc.admin_url("/purge?url=/a%3Fx%3D1"), &[], "")
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.text().trim(),
        r#"{"purged":2,"scope":"url","value":"/a?x=1"}"#
    );
    assert!(!c.get(&rc.url("/a?x=1")).await.is_hit());
    assert!(c.get(&rc.url("/a?x=2")).await.is_hit());
}

#[tokio::test]
async fn purge_by_prefix_removes_the_subtree_only() {
    let origin = Origin::start(cacheable()).await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    for p in ["/docs/a", "/docs/b/c", "/doc", "/other"] {
        c.get(&rc.url(p)).await;
    }
    let res = c
        .send("POST", &rc.admin_url("/purge?prefix=/docs/"), &[], "")
        .await;
    assert!(res.text().contains("\"purged\":2"), "{}", res.text());
    assert!(!c.get(&rc.url("/docs/a")).await.is_hit());
    assert!(c.get(&rc.url("/doc")).await.is_hit());
    assert!(c.get(&rc.url("/other")).await.is_hit());
}

#[tokio::test]
async fn purge_by_tag_counts_zero_when_nothing_carries_it() {
    // WebDAV entries carry tags (`dav:res:<path>`); purge one no entry has.
    let origin = Origin::start(|_, _| Reply::ok("body").header("etag", "\"e1\"")).await;
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.routes[0].dialect = revcache_http::DialectName::Webdav;
    })
    .await;
    let c = Client::default();
    c.get(&rc.url("/docs/a")).await;
    rc.proxy.fills_idle().await;
    let purge = async |tag: &str| {
        let url = rc.admin_url(&format!("/purge?tag={tag}"));
        c.send("POST", &url, &[], "").await.text()
    };
    assert_eq!(
        purge("dav:res:/docs/b").await.trim(),
        r#"{"purged":0,"scope":"tag","value":"dav:res:/docs/b"}"#
    );
    let inspect = c.get(&rc.admin_url("/inspect?url=/docs/a")).await.text();
    assert!(
        inspect.contains("dav:res:/docs/a"),
        "still stored: {inspect}"
    );
    // The entry's own tag does reach it: the count is what went.
    assert_eq!(
        purge("dav:res:/docs/a").await.trim(),
        r#"{"purged":1,"scope":"tag","value":"dav:res:/docs/a"}"#
    );
}

#[tokio::test]
async fn malformed_purges_get_a_400_that_says_why() {
    let origin = Origin::start(cacheable()).await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    for (query, says) in [
        ("", "give one of"),
        ("?url=/a&tag=t", "exactly one"),
        ("?url=relative", "must start with '/'"),
        ("?colour=red", "unknown parameter"),
        ("?url=%zz", "percent-encoded"),
    ] {
        let res = c
            .send("POST", &rc.admin_url(&format!("/purge{query}")), &[], "")
            .await;
        assert_eq!(res.status, 400, "{query}");
        assert!(res.text().contains(says), "{query}: {}", res.text());
    }
    assert_eq!(c.get(&rc.admin_url("/purge?url=/a")).await.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_during_a_fill_keeps_the_stale_response_out() {
    let origin = Origin::start(|_, n| {
        Reply::ok(format!("version {n}"))
            .header("cache-control", "max-age=600")
            .delay(if n == 0 {
                Duration::from_millis(400)
            } else {
                Duration::ZERO
            })
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let url = rc.url("/race");
    let filling = tokio::spawn({
        let url = url.clone();
        async move { Client::default().get(&url).await }
    });
    origin.received(1).await;
    let c = Client::default();
    c.send("POST", &rc.admin_url("/purge?url=/race"), &[], "")
        .await;
    assert_eq!(filling.await.unwrap().text(), "version 0");
    let after = c.get(&url).await;
    assert_eq!(
        after.text(),
        "version 1",
        "the pre-purge fill must not have been stored"
    );
    assert!(c.get(&url).await.is_hit());
}

#[tokio::test]
async fn admin_token_is_required_when_configured() {
    let origin = Origin::start(cacheable()).await;
    let rc = Revcache::start_with(&origin.url(), |s| s.admin_token = Some("t0ken".into())).await;
    let c = Client::default();
    let denied = c.get(&rc.admin_url("/metrics")).await;
    assert_eq!(denied.status, 401);
    assert!(
        denied
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(
        c.get_with(
            &rc.admin_url("/metrics"),
            &[("authorization", "Bearer wrong")]
        )
        .await
        .status,
        401
    );
    assert_eq!(
        c.get_with(
            &rc.admin_url("/metrics"),
            &[("authorization", "Bearer t0ken")]
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn health_readiness_and_metrics_report_the_cache() {
    let origin = Origin::start(cacheable()).await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    assert_eq!(c.get(&rc.admin_url("/healthz")).await.status, 200);
    assert_eq!(c.get(&rc.admin_url("/readyz")).await.status, 200);
    c.get(&rc.url("/m")).await;
    c.get(&rc.url("/m")).await;
    c.send("POST", &rc.admin_url("/purge?url=/m"), &[], "")
        .await;
    let m = c.get(&rc.admin_url("/metrics")).await.text();
    use support::metric;
    assert_eq!(metric(&m, "revcache_requests_total{outcome=\"hit\"}"), 1.0);
    assert_eq!(metric(&m, "revcache_requests_total{outcome=\"miss\"}"), 1.0);
    assert_eq!(
        metric(
            &m,
            "revcache_upstream_requests_total{reason=\"miss\",status=\"200\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(&m, "revcache_served_bytes_total{source=\"cache\"}"),
        5.0
    );
    assert_eq!(
        metric(&m, "revcache_invalidated_entries_total{source=\"admin\"}"),
        1.0
    );
    for name in [
        "revcache_tier_keys{tier=\"l1\"}",
        "revcache_tier_bytes",
        "revcache_evictions_total",
        "revcache_single_flight_waiters",
    ] {
        assert!(m.contains(name), "{name} missing from\n{m}");
    }
    let stats = c.get(&rc.admin_url("/stats")).await.text();
    assert!(stats.contains("\"l1\""), "{stats}");
}

#[tokio::test]
async fn events_for_a_route_without_a_feed_say_so() {
    let origin = Origin::start(cacheable()).await;
    let rc = Revcache::start(&origin.url()).await;
    let res = Client::default()
        .send("POST", &rc.admin_url("/events/default"), JSON, "{}")
        .await;
    assert_eq!(res.status, 404);
    assert!(res.text().contains("no event feed"), "{}", res.text());
}
