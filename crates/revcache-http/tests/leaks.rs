//! Cross-caller leaks: two callers and an anonymous one against an origin
//! that answers each with their own data. Nothing one caller was given may
//! reach another (issue "Safe to expose", items 1–8).

mod support;

use std::time::Duration;

use revcache_http::{DialectName, EventSettings, Sharing};
use support::{Client, Origin, Reply, Revcache, Seen, raw_exchange};

/// Who the origin thinks is asking: Authorization, else the cookie line,
/// else an auth proxy's user header, else a query token, else anonymous.
fn who(req: &Seen) -> String {
    let h = |n: &str| {
        req.headers
            .get(n)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    h("authorization")
        .or_else(|| h("cookie"))
        .or_else(|| h("x-forwarded-user"))
        .or_else(|| {
            req.target
                .split_once("access_token=")
                // Upper case: the body shows who asked, not the token.
                .map(|(_, t)| t.to_uppercase())
        })
        .unwrap_or_else(|| "anonymous".into())
}

const ALICE: (&str, &str) = ("authorization", "Bearer alice");
const BOB: (&str, &str) = ("authorization", "Bearer bob");

#[tokio::test]
async fn a_304_cookie_reaches_only_the_client_that_revalidated() {
    // Every use revalidates; a 304 to an authenticated caller sets its cookie.
    let origin = Origin::start(|req, _| {
        let caller = who(req);
        if req.headers.contains_key("if-none-match") {
            let mut r = Reply::status(304)
                .header("etag", "\"v1\"")
                .header("cache-control", "public, no-cache");
            if caller != "anonymous" {
                r = r
                    .header("set-cookie", format!("sid={caller}"))
                    .header("authentication-info", format!("nextnonce={caller}"));
            }
            return r;
        }
        Reply::ok("the same for all")
            .header("etag", "\"v1\"")
            .header("cache-control", "public, no-cache")
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    let url = rc.url("/r");
    assert_eq!(c.get(&url).await.status, 200);
    let a = c.get_with(&url, &[ALICE]).await;
    assert!(a.cache_status().contains("fwd-status=304"), "{a:?}");
    assert_eq!(a.header("set-cookie"), Some("sid=Bearer alice"));
    let b = c.get_with(&url, &[BOB]).await;
    assert_eq!(
        b.headers.get_all("set-cookie").iter().collect::<Vec<_>>(),
        ["sid=Bearer bob"]
    );
    let anon = c.get(&url).await;
    assert!(anon.cache_status().contains("fwd-status=304"));
    assert_eq!(anon.header("set-cookie"), None, "{anon:?}");
    assert_eq!(anon.header("authentication-info"), None);
    assert_eq!(anon.text(), "the same for all");
}

#[tokio::test]
async fn a_304_that_turns_private_drops_the_shared_entry() {
    let origin = Origin::start(|req, _| {
        if req.headers.contains_key("if-none-match") {
            return Reply::status(304)
                .header("etag", "\"v1\"")
                .header("cache-control", "private, max-age=600");
        }
        Reply::ok("body")
            .header("etag", "\"v1\"")
            .header("cache-control", "public, no-cache")
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    let url = rc.url("/r");
    c.get(&url).await;
    let revalidated = c.get(&url).await;
    assert!(revalidated.cache_status().contains("fwd-status=304"));
    assert_eq!(
        revalidated.header("cache-control"),
        Some("private, max-age=600")
    );
    // A private response is in no shared cache: the next caller asks anew.
    let next = c.get(&url).await;
    assert!(next.cache_status().contains("fwd=uri-miss"), "{next:?}");
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn a_200_that_sets_a_cookie_for_an_authenticated_caller_stays_in_its_partition() {
    let origin = Origin::start(|req, _| {
        let caller = who(req);
        Reply::ok(format!("for {caller}"))
            .header("cache-control", "public, max-age=600")
            .header("set-cookie", format!("sid={caller}"))
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    let url = rc.url("/me");
    assert_eq!(c.get_with(&url, &[ALICE]).await.text(), "for Bearer alice");
    let b = c.get_with(&url, &[BOB]).await;
    assert_eq!(b.text(), "for Bearer bob");
    assert_eq!(b.header("set-cookie"), Some("sid=Bearer bob"));
    let anon = c.get(&url).await;
    assert_eq!(anon.text(), "for anonymous");
    // The anonymous response sets a cookie too: not shared either.
    assert!(!c.get(&url).await.is_hit());
    let again = c.get_with(&url, &[ALICE]).await;
    assert!(again.is_hit());
    assert_eq!(again.text(), "for Bearer alice");
}

#[tokio::test]
async fn a_route_following_rfc9111_shares_an_anonymous_public_cookie_response() {
    let origin = Origin::start(|_, _| {
        Reply::ok("public page")
            .header("cache-control", "public, max-age=600")
            .header("set-cookie", "theme=dark")
    })
    .await;
    let rc = Revcache::start_with(&origin.url(), |s| s.routes[0].sharing = Sharing::Rfc9111).await;
    let c = Client::default();
    c.get(&rc.url("/p")).await;
    assert!(c.get(&rc.url("/p")).await.is_hit());
}

#[tokio::test]
async fn a_non_ascii_cookie_does_not_hide_the_partition_cookie() {
    let origin = Origin::start(|req, _| {
        Reply::ok(format!("for {}", who(req))).header("cache-control", "max-age=600")
    })
    .await;
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.partition.cookies = vec!["session".into()];
    })
    .await;
    let c = Client::default();
    let url = rc.url("/me");
    let alice: &[u8] = b"name=J\xc3\xbcrgen; session=alice";
    let bob: &[u8] = b"name=J\xc3\xbcrgen; session=bob";
    let a = c.get_bytes(&url, &[("cookie", alice)]).await;
    assert!(a.text().contains("session=alice"));
    let b = c.get_bytes(&url, &[("cookie", bob)]).await;
    assert!(b.text().contains("session=bob"), "bob got {:?}", b.text());
    assert_eq!(c.get(&url).await.text(), "for anonymous");
    let a = c.get_bytes(&url, &[("cookie", alice)]).await;
    assert!(a.is_hit() && a.text().contains("session=alice"));
}

/// A trusting Gerrit route: stored changes are served without asking.
async fn gerrit_route(origin: &Origin) -> Revcache {
    Revcache::start_with(&origin.url(), |s| {
        s.routes[0].name = "gerrit".into();
        s.routes[0].dialect = DialectName::Gerrit;
        s.routes[0].events = Some(EventSettings {
            trust: Some(Duration::from_secs(300)),
            heartbeat: None,
            command: None,
            secret_file: None,
        });
    })
    .await
}

fn change_for(req: &Seen) -> Reply {
    let body = format!(
        ")]}}'\n{{\"_number\":1,\"project\":\"p\",\"branch\":\"main\",\"change_id\":\"I1\",\"meta_rev_id\":\"aaaa\",\"subject\":\"seen by {}\"}}",
        who(req)
    );
    Reply::ok(body).header("cache-control", "no-cache, no-store")
}

#[tokio::test]
async fn gerrit_callers_known_by_session_cookie_or_an_auth_proxy_never_share() {
    let origin = Origin::start(|req, _| change_for(req)).await;
    let rc = gerrit_route(&origin).await;
    let c = Client::default();
    let url = rc.url("/changes/1");
    let ask = |headers: Vec<(&'static str, &'static str)>| {
        let (c, url) = (c.clone(), url.clone());
        async move { c.get_with(&url, &headers).await.text() }
    };
    assert!(ask(vec![]).await.contains("seen by anonymous"));
    // Gerrit's own session cookie partitions by default.
    let alice = vec![("cookie", "GerritAccount=alice")];
    assert!(ask(alice.clone()).await.contains("GerritAccount=alice"));
    assert!(
        ask(vec![("cookie", "GerritAccount=bob")])
            .await
            .contains("GerritAccount=bob")
    );
    let again = c.get_with(&url, &alice).await;
    assert!(again.is_hit(), "{again:?}");
    assert!(again.text().contains("GerritAccount=alice"));
    // Something revcache was not told about: passed, never stored.
    for _ in 0..2 {
        let sso = c.get_with(&url, &[("x-forwarded-user", "carol")]).await;
        assert!(sso.text().contains("seen by carol"), "{sso:?}");
        assert!(!sso.is_hit());
        let cookie = c.get_with(&url, &[("cookie", "sso=dave")]).await;
        assert!(cookie.text().contains("sso=dave"), "{cookie:?}");
        assert!(!cookie.is_hit());
    }
    let anon = c.get(&url).await;
    assert!(anon.is_hit());
    assert!(anon.text().contains("seen by anonymous"), "{anon:?}");
}

#[tokio::test]
async fn must_revalidate_alone_does_not_share_an_authenticated_response() {
    let origin = Origin::start(|req, _| {
        Reply::ok(format!("for {}", who(req)))
            .header("cache-control", "max-age=600, must-revalidate")
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    let url = rc.url("/me");
    assert_eq!(c.get_with(&url, &[ALICE]).await.text(), "for Bearer alice");
    assert_eq!(c.get_with(&url, &[BOB]).await.text(), "for Bearer bob");
    assert_eq!(c.get(&url).await.text(), "for anonymous");
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn spoofable_forwarding_headers_never_reach_the_upstream() {
    // A framework that builds links from X-Forwarded-Host: a poisoning gadget.
    let origin = Origin::start(|req, _| {
        let host = req
            .headers
            .get("x-forwarded-host")
            .map_or("none", |v| v.to_str().unwrap());
        Reply::ok(format!("link to {host}")).header("cache-control", "max-age=600")
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    let url = rc.url("/page");
    let attacker = c
        .get_with(
            &url,
            &[
                ("x-forwarded-host", "evil.example"),
                ("x-http-method-override", "DELETE"),
                ("x-original-url", "/admin"),
                ("forwarded", "for=6.6.6.6;host=\"evil\""),
                ("x-forwarded-for", "6.6.6.6"),
            ],
        )
        .await;
    assert_eq!(attacker.text(), "link to none");
    let seen = origin.last();
    for name in [
        "x-forwarded-host",
        "x-http-method-override",
        "x-original-url",
    ] {
        assert!(
            !seen.headers.contains_key(name),
            "{name} reached the upstream"
        );
    }
    let forwarded: Vec<_> = seen.headers.get_all("forwarded").iter().collect();
    assert_eq!(forwarded.len(), 1);
    let forwarded = forwarded[0].to_str().unwrap();
    assert!(forwarded.starts_with("for=\"127.0.0.1:"), "{forwarded}");
    assert!(!forwarded.contains("6.6.6.6"));
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(c.get(&url).await.text(), "link to none");
}

#[tokio::test]
async fn a_header_named_in_connection_does_not_select_a_variant() {
    let origin = Origin::start(|req, _| {
        let v = req
            .headers
            .get("x-variant")
            .map_or("none", |v| v.to_str().unwrap());
        Reply::ok(format!("variant {v}"))
            .header("cache-control", "max-age=600")
            .header("vary", "x-variant")
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let request = |variant: &str, connection: &str| {
        format!(
            "GET /v HTTP/1.1\r\nhost: x\r\nx-variant: {variant}\r\nconnection: {connection}\r\n\r\n"
        )
    };
    // The upstream never sees X-Variant here, so this is the "none" variant.
    let attacker = raw_exchange(rc.addr, request("evil", "x-variant, close").as_bytes()).await;
    assert!(attacker.ends_with("variant none"), "{attacker}");
    let victim = raw_exchange(rc.addr, request("evil", "close").as_bytes()).await;
    assert!(victim.ends_with("variant evil"), "{victim}");
}

#[tokio::test]
async fn duplicate_or_malformed_host_and_duplicate_depth_are_refused() {
    let origin = Origin::start(|_, _| Reply::ok("x")).await;
    let rc = Revcache::start(&origin.url()).await;
    for head in [
        "GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\nconnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nhost: a@b\r\nconnection: close\r\n\r\n",
        "GET http://a/ HTTP/1.1\r\nhost: b\r\nconnection: close\r\n\r\n",
        "PROPFIND / HTTP/1.1\r\nhost: a\r\ndepth: 0\r\ndepth: 1\r\nconnection: close\r\n\r\n",
    ] {
        let res = raw_exchange(rc.addr, head.as_bytes()).await;
        assert!(res.starts_with("HTTP/1.1 400"), "{head:?} got {res}");
    }
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn query_credentials_partition_and_are_never_stored_or_shown() {
    let origin = Origin::start(|req, _| {
        Reply::ok(format!("for {}", who(req))).header("cache-control", "max-age=600")
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    let alice = rc.url("/me?access_token=alicesecret");
    let bob = rc.url("/me?access_token=bobsecret");
    assert_eq!(c.get(&alice).await.text(), "for ALICESECRET");
    assert_eq!(c.get(&bob).await.text(), "for BOBSECRET");
    assert_eq!(c.get(&rc.url("/me")).await.text(), "for anonymous");
    let again = c.get(&alice).await;
    assert!(again.is_hit());
    assert_eq!(again.text(), "for ALICESECRET");
    rc.proxy.cache().flush();
    let inspect = c.get(&rc.admin_url("/inspect")).await.text();
    assert!(inspect.contains("access_token=REDACTED"), "{inspect}");
    assert!(!inspect.contains("secret"), "{inspect}");
    let mut found = Vec::new();
    for path in walk(&rc.data_dir) {
        let bytes = std::fs::read(&path).unwrap_or_default();
        if bytes.windows(6).any(|w| w == b"secret") {
            found.push(path);
        }
    }
    assert!(found.is_empty(), "credential on disk in {found:?}");
    // A purge by the URL as clients send it reaches the entry.
    let purged = c
        .send(
            "POST",
            &rc.admin_url("/purge?url=/me%3Faccess_token%3Dalicesecret"),
            &[],
            "",
        )
        .await;
    assert_eq!(purged.status, 200);
    assert!(!c.get(&alice).await.is_hit());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
