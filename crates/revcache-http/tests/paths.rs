//! Request paths against a real origin on loopback: what the origin sees
//! is what revcache routed and keyed, so a route's `path_prefix` (and the
//! upstream's base path) cannot be escaped with dot segments, encoded dots,
//! encoded slashes or a longer name.

mod support;

use std::time::Duration;

use revcache_http::{DialectName, EncodedSlashes, EventSettings, RouteSettings};
use support::{Client, Origin, Reply, Revcache};

/// One route, `/api/` → the origin's `/base`, and nothing else.
async fn api_only(origin: &Origin, encoded_slashes: EncodedSlashes) -> Revcache {
    let upstream = format!("{}/base", origin.url());
    Revcache::start_with(&upstream, |s| {
        s.routes = vec![RouteSettings {
            name: "api".into(),
            path_prefix: "/api/".into(),
            encoded_slashes,
            ..s.routes[0].clone()
        }];
    })
    .await
}

fn cacheable_origin() -> impl Fn(&support::Seen, usize) -> Reply {
    |seen, _| {
        Reply::ok(format!("origin saw {}", seen.target))
            .header("cache-control", "max-age=60")
            .header("etag", "\"v1\"")
    }
}

#[tokio::test]
async fn a_path_prefix_route_cannot_be_escaped() {
    let origin = Origin::start(cacheable_origin()).await;
    let rc = api_only(&origin, EncodedSlashes::Reject).await;
    let c = Client::default();
    for (path, status) in [
        ("/api/../admin", 404),
        ("/api/%2e%2e/admin", 404),
        ("/api/%2E%2E/%2e%2e/admin", 400),
        ("/apix", 404),
        ("/apix/admin", 404),
        ("/api/..;/admin", 400),
        ("/api/..%2Fadmin", 400),
        ("/api/..%5cadmin", 400),
        ("/api/a%2Fb", 400),
        ("/api/%zz", 400),
        ("/api/%00", 400),
    ] {
        let got = c.get(&rc.url(path)).await;
        assert_eq!(got.status, status, "{path}: {}", got.text());
    }
    assert_eq!(origin.requests(), 0, "nothing reached the origin");

    // Inside the prefix, the origin sees the normalised path under its base.
    let got = c.get(&rc.url("/api/v1/../users//42")).await;
    assert_eq!(got.status, 200);
    assert_eq!(origin.last().target, "/base/api/users/42");
    assert_eq!(got.text(), "origin saw /base/api/users/42");
    let got = c.get(&rc.url("/api")).await;
    assert_eq!(got.status, 200, "the prefix itself is in the route");
    assert_eq!(origin.last().target, "/base/api");
}

#[tokio::test]
async fn spellings_of_one_path_share_one_cache_entry() {
    let origin = Origin::start(cacheable_origin()).await;
    let rc = api_only(&origin, EncodedSlashes::Reject).await;
    let c = Client::default();
    c.get(&rc.url("/api/users/42")).await;
    rc.proxy.fills_idle().await;
    for path in [
        "/api/users/42",
        "/api//users/42",
        "/api/./users/x/../42",
        "/api/%75sers/%34%32",
    ] {
        let got = c.get(&rc.url(path)).await;
        assert!(got.is_hit(), "{path}: {}", got.cache_status());
    }
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn a_route_that_keeps_encoded_slashes_forwards_them_as_sent() {
    let origin = Origin::start(cacheable_origin()).await;
    let rc = api_only(&origin, EncodedSlashes::Keep).await;
    let c = Client::default();
    let got = c.get(&rc.url("/api/projects/infra%2fci")).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(origin.last().target, "/base/api/projects/infra%2Fci");
    // Still never a dot segment in disguise.
    let got = c.get(&rc.url("/api/x%2F..%2F..%2Fadmin")).await;
    assert_eq!(got.status, 400);
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn a_webdav_put_through_a_doubled_slash_invalidates_the_resource() {
    let origin = Origin::start(|seen, n| match seen.method.as_str() {
        "PUT" => Reply::status(204),
        _ => Reply::ok(format!("version {n}")).header("etag", format!("\"{n}\"")),
    })
    .await;
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.routes[0].dialect = DialectName::Webdav;
        s.routes[0].events = Some(EventSettings {
            trust: Some(Duration::from_secs(300)),
            heartbeat: None,
            command: None,
            secret_file: None,
        });
    })
    .await;
    let c = Client::default();
    let first = c.get(&rc.url("/d/f")).await;
    rc.proxy.fills_idle().await;
    assert!(c.get(&rc.url("/d/f")).await.is_hit());
    let put = c.send("PUT", &rc.url("/d//f"), &[], "new").await;
    assert_eq!(put.status, 204);
    assert_eq!(origin.last().target, "/d/f");
    let after = c.get(&rc.url("/d/f")).await;
    assert!(!after.is_hit(), "{}", after.cache_status());
    assert_ne!(after.text(), first.text());
}

#[tokio::test]
async fn gerrit_routes_keep_encoded_project_names_and_store_only_documented_shapes() {
    let origin = Origin::start(|seen, n| {
        Reply::ok(format!(
            ")]}}'\n{{\"_number\": 42, \"n\": {n}, \"at\": \"{}\"}}",
            seen.target
        ))
        .header("cache-control", "no-cache, no-store, must-revalidate")
        .header("etag", format!("\"{n}\""))
    })
    .await;
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.routes[0].dialect = DialectName::Gerrit;
        s.routes[0].encoded_slashes = EncodedSlashes::default_for(DialectName::Gerrit);
    })
    .await;
    let c = Client::default();
    let auth = [("authorization", "Basic dTpw")];
    let got = c
        .get_with(&rc.url("/a/changes/infra%2Fci~42/detail"), &auth)
        .await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(origin.last().target, "/a/changes/infra%2Fci~42/detail");
    // A change's drafts change without any event: never stored against
    // Gerrit's no-store, unlike the change itself.
    for path in ["/a/changes/42/drafts", "/a/changes/42/detail"] {
        c.get_with(&rc.url(path), &auth).await;
        rc.proxy.fills_idle().await;
    }
    let before = origin.requests();
    c.get_with(&rc.url("/a/changes/42/drafts"), &auth).await;
    assert_eq!(
        origin.requests(),
        before + 1,
        "drafts are fetched every time"
    );
    c.get_with(&rc.url("/a/changes/42/detail"), &auth).await;
    assert!(
        origin.last().headers.contains_key("if-none-match"),
        "the change itself is kept and revalidated"
    );
    assert!(
        !origin.seen()[before].headers.contains_key("if-none-match"),
        "drafts have nothing stored to revalidate"
    );
}

#[tokio::test]
async fn a_purge_names_an_entry_in_any_spelling_of_its_path() {
    let origin = Origin::start(cacheable_origin()).await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/d/f?v=1")).await;
    rc.proxy.fills_idle().await;
    let res = c
        .send(
            "POST",
            &rc.admin_url("/purge?url=/d//x/../f%3Fv%3D1"),
            &[],
            "",
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert!(res.text().contains(r#""purged":1"#), "{}", res.text());
    assert!(!c.get(&rc.url("/d/f?v=1")).await.is_hit());
    let res = c
        .send("POST", &rc.admin_url("/purge?prefix=/../d/"), &[], "")
        .await;
    assert_eq!(res.status, 400);
    assert!(res.text().contains("above the root"), "{}", res.text());
}
