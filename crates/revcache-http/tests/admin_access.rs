//! The admin API against a web page: DNS rebinding (a foreign Host),
//! cross-site requests and form posts are refused; scoped tokens; a
//! non-loopback admin listener without a token does not start; event
//! types cannot inject into /metrics; /inspect is paginated.

mod support;

use std::collections::HashSet;

use revcache_http::{DialectName, EventSettings, Server, ServerError, Settings};
use support::{Client, JSON, Origin, Reply, Revcache, metric};

fn cacheable() -> impl Fn(&support::Seen, usize) -> Reply + Send + Sync + 'static {
    |_, _| Reply::ok("body").header("cache-control", "max-age=60")
}

#[tokio::test]
async fn a_rebound_host_name_cannot_purge() {
    let origin = Origin::start(cacheable()).await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/a")).await;
    let port = rc.admin.port();
    let res = c
        .send(
            "POST",
            &rc.admin_url("/purge?url=/a"),
            &[("host", &format!("attacker.example:{port}"))],
            "",
        )
        .await;
    assert_eq!(res.status, 403, "{}", res.text());
    assert!(res.text().contains("admin.allowed_hosts"), "{}", res.text());
    assert!(c.get(&rc.url("/a")).await.is_hit(), "the entry survived");
    let local = c
        .send(
            "POST",
            &rc.admin_url("/purge?url=/a"),
            &[("host", &format!("localhost:{port}"))],
            "",
        )
        .await;
    assert_eq!(local.status, 200, "{}", local.text());
}

#[tokio::test]
async fn cross_site_requests_and_form_posts_are_refused() {
    let origin = Origin::start(cacheable()).await;
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.routes[0].name = "gerrit".into();
        s.routes[0].dialect = DialectName::Gerrit;
        s.routes[0].events = Some(EventSettings::default());
    })
    .await;
    let c = Client::default();
    let event = r#"{"type":"ref-updated","refUpdate":{"project":"p","refName":"refs/heads/main"}}"#;
    for (headers, status) in [
        (
            vec![
                ("origin", "https://attacker.example"),
                ("content-type", "application/json"),
            ],
            403,
        ),
        (
            vec![
                ("sec-fetch-site", "cross-site"),
                ("content-type", "application/json"),
            ],
            403,
        ),
        (vec![("content-type", "text/plain")], 415),
        (
            vec![("content-type", "application/x-www-form-urlencoded")],
            415,
        ),
        (
            vec![("content-type", "multipart/form-data; boundary=x")],
            415,
        ),
        (vec![], 415),
    ] {
        let res = c
            .send("POST", &rc.admin_url("/events/gerrit"), &headers, event)
            .await;
        assert_eq!(res.status, status, "{headers:?}: {}", res.text());
    }
    let m = c.get(&rc.admin_url("/metrics")).await.text();
    assert_eq!(metric(&m, "revcache_events_total"), 0.0, "an event got in");
    let ok = c
        .send("POST", &rc.admin_url("/events/gerrit"), JSON, event)
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    // A body-less POST needs no content type (curl -X POST).
    let purge = c
        .send("POST", &rc.admin_url("/purge?url=/a"), &[], "")
        .await;
    assert_eq!(purge.status, 200, "{}", purge.text());
    // An operator's browser may read metrics by typing the URL.
    let typed = c
        .get_with(&rc.admin_url("/metrics"), &[("sec-fetch-site", "none")])
        .await;
    assert_eq!(typed.status, 200);
}

#[tokio::test]
async fn the_dashboard_opens_without_the_token_and_only_its_own_reads_pass() {
    let origin = Origin::start(cacheable()).await;
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.admin_token = Some("admin-t".into());
    })
    .await;
    let c = Client::default();
    let token = [("authorization", "Bearer admin-t")];
    // The page and its files hold no data: served without the token, also
    // to a link followed from another site.
    let page = c.get(&rc.admin_url("/")).await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    let linked = [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-dest", "document"),
    ];
    assert_eq!(c.get_with(&rc.admin_url("/"), &linked).await.status, 200);
    let script = c.get(&rc.admin_url("/dashboard/dashboard.js")).await;
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    // What it shows needs the token.
    for path in ["/stats", "/stats/history", "/metrics"] {
        assert_eq!(c.get(&rc.admin_url(path)).await.status, 401, "{path}");
    }
    // The page's own reads (same origin) pass with the token...
    let own = [token[0], ("sec-fetch-site", "same-origin")];
    for path in ["/stats", "/stats/history?since=0"] {
        let res = c.get_with(&rc.admin_url(path), &own).await;
        assert_eq!(res.status, 200, "{path}: {}", res.text());
    }
    // ...but not writes, and no other site's page reads or frames.
    let purge = c
        .send("POST", &rc.admin_url("/purge?url=/a"), &own, "")
        .await;
    assert_eq!(purge.status, 403, "{}", purge.text());
    for headers in [
        vec![token[0], ("sec-fetch-site", "cross-site")],
        vec![token[0], ("sec-fetch-site", "same-site")],
        vec![token[0], ("origin", "https://attacker.example")],
        vec![token[0], linked[0], linked[1], ("sec-fetch-dest", "iframe")],
    ] {
        let res = c.get_with(&rc.admin_url("/stats"), &headers).await;
        assert_eq!(res.status, 403, "{headers:?}");
    }
    let framed = [linked[0], linked[1], ("sec-fetch-dest", "iframe")];
    assert_eq!(c.get_with(&rc.admin_url("/"), &framed).await.status, 403);
    // A link to anything else is still refused.
    let linked_metrics = c
        .get_with(
            &rc.admin_url("/metrics"),
            &[token[0], linked[0], linked[1], linked[2]],
        )
        .await;
    assert_eq!(linked_metrics.status, 403);
    let bad = c
        .get_with(&rc.admin_url("/stats/history?since=x"), &token)
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text());
}

#[tokio::test]
async fn scoped_tokens_open_only_their_endpoints() {
    let origin = Origin::start(cacheable()).await;
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.admin_token = Some("admin-t".into());
        s.admin.events_token = Some("events-t".into());
        s.admin.purge_token = Some("purge-t".into());
        s.routes[0].name = "dav".into();
        s.routes[0].dialect = DialectName::Webdav;
        s.routes[0].events = Some(EventSettings::default());
    })
    .await;
    let c = Client::default();
    let status = |path: &'static str, method: &'static str, token: &'static str| {
        let (c, url) = (c.clone(), rc.admin_url(path));
        async move {
            let auth = format!("Bearer {token}");
            let mut headers = vec![("authorization", auth.as_str())];
            if method == "POST" {
                headers.push(("content-type", "application/json"));
            }
            let body = if path.starts_with("/events") {
                r#"{"paths": ["/x"]}"#
            } else {
                ""
            };
            c.send(method, &url, &headers, body).await.status
        }
    };
    assert_eq!(status("/events/dav", "POST", "events-t").await, 200);
    assert_eq!(status("/events/dav", "POST", "purge-t").await, 401);
    assert_eq!(status("/events/dav", "POST", "admin-t").await, 200);
    assert_eq!(status("/purge?url=/x", "POST", "purge-t").await, 200);
    assert_eq!(status("/purge?url=/x", "POST", "events-t").await, 401);
    assert_eq!(status("/inspect?url=/x", "GET", "purge-t").await, 200);
    assert_eq!(status("/metrics", "GET", "events-t").await, 401);
    assert_eq!(status("/metrics", "GET", "purge-t").await, 401);
    assert_eq!(status("/sweep", "POST", "purge-t").await, 401);
    assert_eq!(status("/metrics", "GET", "admin-t").await, 200);
}

#[tokio::test]
async fn a_non_loopback_admin_listener_without_a_token_does_not_start() {
    let mut settings = Settings::for_upstream("http://127.0.0.1:9".parse().unwrap());
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.admin_listen = "0.0.0.0:0".parse().unwrap();
    settings.data_dir = support::temp_dir("exposed");
    let refused = Server::bind(settings.clone()).await;
    assert!(
        matches!(refused, Err(ServerError::AdminUnprotected(_))),
        "{:?}",
        refused.err()
    );
    settings.admin_token = Some("t".into());
    let started = Server::bind(settings.clone()).await;
    assert!(started.is_ok(), "{:?}", started.err());
    drop(started);
    let _ = std::fs::remove_dir_all(&settings.data_dir);
}

#[tokio::test]
async fn event_types_cannot_add_lines_or_series_to_metrics() {
    let origin = Origin::start(cacheable()).await;
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.routes[0].name = "gerrit".into();
        s.routes[0].dialect = DialectName::Gerrit;
        s.routes[0].events = Some(EventSettings::default());
    })
    .await;
    let c = Client::default();
    let before = c
        .get(&rc.admin_url("/metrics"))
        .await
        .text()
        .lines()
        .count();
    for i in 0..50 {
        // A type that would close the label and start a forged series.
        let kind = format!("x{i}\"}} 1\nrevcache_forged_total{{a=\"b");
        let event = serde_json::json!({ "type": kind }).to_string();
        let res = c
            .send("POST", &rc.admin_url("/events/gerrit"), JSON, event)
            .await;
        assert_eq!(res.status, 200, "{}", res.text());
    }
    let m = c.get(&rc.admin_url("/metrics")).await.text();
    assert!(!m.contains("revcache_forged"), "{m}");
    assert_eq!(
        metric(&m, "revcache_events_total{route=\"gerrit\",type=\"other\"}"),
        50.0,
        "{m}"
    );
    let after = m.lines().count();
    assert!(
        after <= before + 3,
        "50 made-up types grew /metrics from {before} to {after} lines"
    );
}

#[tokio::test]
async fn inspect_without_a_filter_answers_bounded_pages_that_cover_every_entry() {
    let origin = Origin::start(cacheable()).await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    for i in 0..7 {
        c.get(&rc.url(&format!("/p{i}"))).await;
    }
    let mut keys = HashSet::new();
    let mut path = "/inspect?limit=3".to_owned();
    let mut pages = 0;
    loop {
        let res = c.get(&rc.admin_url(&path)).await;
        assert_eq!(res.status, 200, "{}", res.text());
        let v: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
        let entries = v["entries"].as_array().unwrap();
        assert!(entries.len() <= 3, "{} rows in a page of 3", entries.len());
        for e in entries {
            assert!(
                keys.insert(e["key"].as_str().unwrap().to_owned()),
                "a row came twice"
            );
        }
        pages += 1;
        match v["next"].as_str() {
            Some(next) => path = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(keys.len(), 7, "{keys:?}");
    assert_eq!(pages, 3);
    let too_many = c.get(&rc.admin_url("/inspect?limit=100000")).await;
    assert_eq!(too_many.status, 400, "{}", too_many.text());
}
