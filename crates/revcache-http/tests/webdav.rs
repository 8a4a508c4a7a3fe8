//! The `webdav` dialect against an in-process WebDAV server (the
//! `dav-server` crate, memory filesystem and lock system): every row of the
//! invalidation table, both trust modes, ledger validation, external
//! invalidation and partition isolation.

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dav_server::DavHandler;
use dav_server::memfs::MemFs;
use dav_server::memls::MemLs;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use revcache_http::webdav as xml;
use revcache_http::{DialectName, EventSettings};
use support::{Client, Got, JSON, Revcache};

/// A WebDAV server counting the requests it gets, by method.
struct Dav {
    addr: SocketAddr,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl Dav {
    async fn start() -> Dav {
        let handler = DavHandler::builder()
            .filesystem(MemFs::new())
            .locksystem(MemLs::new())
            .build_handler();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let seen = counts.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (handler, seen) = (handler.clone(), seen.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (handler, seen) = (handler.clone(), seen.clone());
                        async move {
                            *seen
                                .lock()
                                .unwrap()
                                .entry(req.method().to_string())
                                .or_default() += 1;
                            Ok::<_, Infallible>(handler.handle(req).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Dav { addr, counts }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn reads(&self) -> u64 {
        let c = self.counts.lock().unwrap();
        ["GET", "HEAD", "PROPFIND"]
            .iter()
            .map(|m| c.get(*m).copied().unwrap_or(0))
            .sum()
    }
}

async fn setup(trust: Option<Duration>) -> (Dav, Revcache) {
    let dav = Dav::start().await;
    let rc = Revcache::start_with(&dav.url(""), |s| {
        s.routes[0].name = "dav".into();
        s.routes[0].dialect = DialectName::Webdav;
        s.routes[0].events = Some(EventSettings {
            trust,
            heartbeat: None,
            command: None,
            secret_file: None,
        });
    })
    .await;
    (dav, rc)
}

const TRUST: Option<Duration> = Some(Duration::from_secs(300));
const ALLPROP: &str =
    r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>"#;

async fn req(url: &str, method: &str, headers: &[(&str, &str)], body: &str) -> Got {
    Client::default()
        .send(method, url, headers, body.to_owned())
        .await
}

async fn put(base: &str, path: &str, body: &str) -> Got {
    req(&format!("{base}{path}"), "PUT", &[], body).await
}

async fn list(rc: &Revcache, path: &str) -> (Got, Vec<String>) {
    let got = req(&rc.url(path), "PROPFIND", &[("depth", "1")], ALLPROP).await;
    rc.proxy.fills_idle().await;
    assert_eq!(got.status, 207, "{}", got.text());
    let mut names: Vec<String> = xml::members(&got.body)
        .into_iter()
        .map(|m| m.path)
        .filter(|p| p.trim_end_matches('/') != path.trim_end_matches('/'))
        .collect();
    names.sort();
    (got, names)
}

async fn props(rc: &Revcache, path: &str) -> Got {
    let got = req(&rc.url(path), "PROPFIND", &[("depth", "0")], ALLPROP).await;
    rc.proxy.fills_idle().await;
    got
}

/// Returns once any fill the GET started is stored.
async fn get(rc: &Revcache, path: &str) -> Got {
    let got = Client::default().get(&rc.url(path)).await;
    rc.proxy.fills_idle().await;
    got
}

/// Upstream reads `f` caused.
async fn reads<T>(dav: &Dav, f: impl std::future::Future<Output = T>) -> (u64, T) {
    let before = dav.reads();
    let out = f.await;
    (dav.reads() - before, out)
}

#[tokio::test]
async fn bodies_are_cached_by_strong_etag_and_revalidated_without_trust() {
    let (dav, rc) = setup(None).await;
    put(&rc.url(""), "/a.txt", "hello").await;
    let first = get(&rc, "/a.txt").await;
    assert_eq!(first.text(), "hello");
    let etag = first.header("etag").unwrap().to_owned();
    assert!(!etag.starts_with("W/"), "{etag}");
    let (cost, second) = reads(&dav, get(&rc, "/a.txt")).await;
    assert_eq!(cost, 1);
    assert!(
        second
            .cache_status()
            .starts_with("revcache; fwd=stale; fwd-status=304"),
        "{}",
        second.cache_status()
    );
    assert_eq!(second.text(), "hello");
}

#[tokio::test]
async fn trusted_caches_answer_bodies_properties_and_listings_without_asking() {
    let (dav, rc) = setup(TRUST).await;
    req(&rc.url("/d/"), "MKCOL", &[], "").await;
    put(&rc.url(""), "/d/a.txt", "A").await;
    get(&rc, "/d/a.txt").await;
    props(&rc, "/d/a.txt").await;
    list(&rc, "/d/").await;
    let (cost, (g, p, (l, names))) = reads(&dav, async {
        (
            get(&rc, "/d/a.txt").await,
            props(&rc, "/d/a.txt").await,
            list(&rc, "/d/").await,
        )
    })
    .await;
    assert_eq!(cost, 0);
    assert!(g.is_hit() && p.is_hit() && l.is_hit());
    assert_eq!(names, vec!["/d/a.txt"]);
}

#[tokio::test]
async fn propfind_keys_on_depth_and_the_normalized_property_set() {
    let (dav, rc) = setup(TRUST).await;
    put(&rc.url(""), "/p.txt", "x").await;
    let etag_only =
        r#"<propfind xmlns="DAV:"><prop><getetag/><getcontentlength/></prop></propfind>"#;
    let same_reordered = r#"<D:propfind xmlns:D="DAV:"><D:prop><D:getcontentlength/><D:getetag/></D:prop></D:propfind>"#;
    req(&rc.url("/p.txt"), "PROPFIND", &[("depth", "0")], etag_only).await;
    let (cost, hit) = reads(
        &dav,
        req(
            &rc.url("/p.txt"),
            "PROPFIND",
            &[("depth", "0")],
            same_reordered,
        ),
    )
    .await;
    assert_eq!(
        cost, 0,
        "the same property set in another spelling is the same entry"
    );
    assert!(hit.is_hit());
    let (cost, _) = reads(&dav, props(&rc, "/p.txt")).await;
    assert_eq!(cost, 1, "allprop is another entry");
    let (cost, _) = reads(
        &dav,
        req(&rc.url("/p.txt"), "PROPFIND", &[("depth", "1")], etag_only),
    )
    .await;
    assert_eq!(cost, 1, "another depth is another entry");
}

#[tokio::test]
async fn propfind_depth_infinity_passes_through() {
    let (dav, rc) = setup(TRUST).await;
    put(&rc.url(""), "/i.txt", "x").await;
    for _ in 0..2 {
        let (cost, got) = reads(
            &dav,
            req(&rc.url("/"), "PROPFIND", &[("depth", "infinity")], ALLPROP),
        )
        .await;
        assert_eq!(cost, 1);
        assert!(
            got.cache_status().contains("fwd=bypass"),
            "{}",
            got.cache_status()
        );
    }
}

#[tokio::test]
async fn put_updates_the_body_and_the_parents_listing() {
    let (_dav, rc) = setup(TRUST).await;
    req(&rc.url("/d/"), "MKCOL", &[], "").await;
    put(&rc.url(""), "/d/a.txt", "v1").await;
    assert_eq!(get(&rc, "/d/a.txt").await.text(), "v1");
    list(&rc, "/d/").await;
    put(&rc.url(""), "/d/a.txt", "v2").await;
    assert_eq!(get(&rc, "/d/a.txt").await.text(), "v2");
    put(&rc.url(""), "/d/b.txt", "new").await;
    assert_eq!(list(&rc, "/d/").await.1, vec!["/d/a.txt", "/d/b.txt"]);
}

#[tokio::test]
async fn delete_removes_descendants_and_updates_the_listing() {
    let (_dav, rc) = setup(TRUST).await;
    req(&rc.url("/d/"), "MKCOL", &[], "").await;
    req(&rc.url("/d/sub/"), "MKCOL", &[], "").await;
    put(&rc.url(""), "/d/sub/deep.txt", "deep").await;
    assert_eq!(get(&rc, "/d/sub/deep.txt").await.status, 200);
    list(&rc, "/d/").await;
    list(&rc, "/d/sub/").await;
    assert_eq!(
        req(&rc.url("/d/sub/"), "DELETE", &[], "").await.status / 100,
        2
    );
    assert_eq!(get(&rc, "/d/sub/deep.txt").await.status, 404);
    assert!(list(&rc, "/d/").await.1.is_empty());
}

#[tokio::test]
async fn move_with_overwrite_updates_source_destination_and_both_parents() {
    let (_dav, rc) = setup(TRUST).await;
    for c in ["/a/", "/b/"] {
        req(&rc.url(c), "MKCOL", &[], "").await;
    }
    put(&rc.url(""), "/a/x.txt", "moving").await;
    put(&rc.url(""), "/b/y.txt", "old y").await;
    assert_eq!(get(&rc, "/b/y.txt").await.text(), "old y");
    list(&rc, "/a/").await;
    list(&rc, "/b/").await;
    let dest = rc.url("/b/y.txt");
    let moved = req(
        &rc.url("/a/x.txt"),
        "MOVE",
        &[("destination", &dest), ("overwrite", "T")],
        "",
    )
    .await;
    assert_eq!(moved.status / 100, 2, "{}", moved.status);
    assert_eq!(get(&rc, "/b/y.txt").await.text(), "moving");
    assert_eq!(get(&rc, "/a/x.txt").await.status, 404);
    assert!(list(&rc, "/a/").await.1.is_empty());
    assert_eq!(list(&rc, "/b/").await.1, vec!["/b/y.txt"]);
}

#[tokio::test]
async fn copy_updates_the_destination_and_its_parent_only() {
    let (dav, rc) = setup(TRUST).await;
    for c in ["/a/", "/b/"] {
        req(&rc.url(c), "MKCOL", &[], "").await;
    }
    put(&rc.url(""), "/a/x.txt", "copied").await;
    get(&rc, "/a/x.txt").await;
    list(&rc, "/b/").await;
    let dest = rc.url("/b/x.txt");
    assert_eq!(
        req(&rc.url("/a/x.txt"), "COPY", &[("destination", &dest)], "")
            .await
            .status
            / 100,
        2
    );
    assert_eq!(list(&rc, "/b/").await.1, vec!["/b/x.txt"]);
    assert_eq!(get(&rc, "/b/x.txt").await.text(), "copied");
    let (cost, _) = reads(&dav, get(&rc, "/a/x.txt")).await;
    assert_eq!(cost, 0, "the source is unchanged and stays cached");
}

#[tokio::test]
async fn mkcol_appears_in_the_parents_listing() {
    let (_dav, rc) = setup(TRUST).await;
    list(&rc, "/").await;
    req(&rc.url("/newdir/"), "MKCOL", &[], "").await;
    assert!(
        list(&rc, "/")
            .await
            .1
            .iter()
            .any(|p| p.trim_end_matches('/') == "/newdir")
    );
}

#[tokio::test]
async fn proppatch_updates_properties_and_listings_but_keeps_the_body() {
    let (dav, rc) = setup(TRUST).await;
    req(&rc.url("/d/"), "MKCOL", &[], "").await;
    put(&rc.url(""), "/d/doc.txt", "body").await;
    get(&rc, "/d/doc.txt").await;
    let ask = r#"<propfind xmlns="DAV:"><prop><author xmlns="urn:cms"/></prop></propfind>"#;
    req(&rc.url("/d/doc.txt"), "PROPFIND", &[("depth", "0")], ask).await;
    req(&rc.url("/d/"), "PROPFIND", &[("depth", "1")], ask).await;
    let patch = r#"<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><a:author xmlns:a="urn:cms">Ada</a:author></D:prop></D:set></D:propertyupdate>"#;
    assert_eq!(
        req(&rc.url("/d/doc.txt"), "PROPPATCH", &[], patch)
            .await
            .status,
        207
    );
    let p = req(&rc.url("/d/doc.txt"), "PROPFIND", &[("depth", "0")], ask).await;
    assert!(p.text().contains("Ada"), "{}", p.text());
    let l = req(&rc.url("/d/"), "PROPFIND", &[("depth", "1")], ask).await;
    assert!(
        l.text().contains("Ada"),
        "the listing shows the member's new property: {}",
        l.text()
    );
    let (cost, body) = reads(&dav, get(&rc, "/d/doc.txt")).await;
    assert_eq!(
        (cost, body.text().as_str()),
        (0, "body"),
        "a PROPPATCH does not change the body"
    );
}

#[tokio::test]
async fn lock_and_unlock_update_lockdiscovery_and_lock_null_resources_their_parent() {
    let (_dav, rc) = setup(TRUST).await;
    put(&rc.url(""), "/l.txt", "x").await;
    let ask = r#"<propfind xmlns="DAV:"><prop><lockdiscovery/></prop></propfind>"#;
    let before = req(&rc.url("/l.txt"), "PROPFIND", &[("depth", "0")], ask).await;
    assert!(!before.text().contains("locktoken"));
    let lockinfo = r#"<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>test</D:owner></D:lockinfo>"#;
    let lock = req(
        &rc.url("/l.txt"),
        "LOCK",
        &[("timeout", "Second-600")],
        lockinfo,
    )
    .await;
    assert_eq!(lock.status, 200, "{}", lock.text());
    let token = lock.header("lock-token").unwrap().to_owned();
    let bare = token.trim_matches(|c| c == '<' || c == '>').to_owned();
    let locked = req(&rc.url("/l.txt"), "PROPFIND", &[("depth", "0")], ask).await;
    assert!(locked.text().contains(&bare), "{}", locked.text());
    // Writes carry their If/Lock-Token headers to the upstream untouched.
    assert_eq!(put(&rc.url(""), "/l.txt", "no token").await.status, 423);
    let with_token = req(
        &rc.url("/l.txt"),
        "PUT",
        &[("if", &format!("({token})"))],
        "with token",
    )
    .await;
    assert_eq!(with_token.status / 100, 2);
    assert_eq!(
        req(&rc.url("/l.txt"), "UNLOCK", &[("lock-token", &token)], "")
            .await
            .status,
        204
    );
    let unlocked = req(&rc.url("/l.txt"), "PROPFIND", &[("depth", "0")], ask).await;
    assert!(!unlocked.text().contains(&bare), "{}", unlocked.text());
    list(&rc, "/").await;
    let null = req(
        &rc.url("/lock-null.txt"),
        "LOCK",
        &[("timeout", "Second-600")],
        lockinfo,
    )
    .await;
    assert_eq!(null.status, 201);
    assert!(list(&rc, "/").await.1.iter().any(|p| p == "/lock-null.txt"));
}

#[tokio::test]
async fn a_listing_confirms_member_bodies_without_asking() {
    let (dav, rc) = setup(None).await;
    req(&rc.url("/d/"), "MKCOL", &[], "").await;
    put(&rc.url(""), "/d/a.txt", "A").await;
    get(&rc, "/d/a.txt").await;
    rc.advance(Duration::from_millis(5));
    let (listing, _) = list(&rc, "/d/").await;
    // dav-server writes getetag without quotes; the ledger normalizes it.
    assert!(listing.text().contains("getetag"));
    let (cost, got) = reads(&dav, get(&rc, "/d/a.txt")).await;
    assert_eq!(cost, 0, "{}", got.cache_status());
    assert!(got.cache_status().contains("detail=ledger"));
}

#[tokio::test]
async fn without_trust_listings_and_properties_are_refetched() {
    let (dav, rc) = setup(None).await;
    put(&rc.url(""), "/r.txt", "x").await;
    props(&rc, "/r.txt").await;
    let (cost, _) = reads(&dav, props(&rc, "/r.txt")).await;
    assert_eq!(cost, 1);
}

#[tokio::test]
async fn external_changes_reach_the_cache_through_the_events_endpoint() {
    let (dav, rc) = setup(TRUST).await;
    put(&rc.url(""), "/ext.txt", "before").await;
    assert_eq!(get(&rc, "/ext.txt").await.text(), "before");
    // Written behind revcache's back: the trusted entry stays until told.
    put(&dav.url(""), "/ext.txt", "after").await;
    assert_eq!(get(&rc, "/ext.txt").await.text(), "before");
    let c = Client::default();
    let res = c
        .send(
            "POST",
            &rc.admin_url("/events/dav"),
            JSON,
            r#"{"paths": ["/ext.txt"], "recursive": false}"#,
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(get(&rc, "/ext.txt").await.text(), "after");
    for bad in [r#"{"paths": ["ext.txt"]}"#, r#"{"path": "/x"}"#, "nope"] {
        let res = c
            .send("POST", &rc.admin_url("/events/dav"), JSON, bad)
            .await;
        assert_eq!(res.status, 400, "{bad}");
        assert!(res.text().contains("error"), "{}", res.text());
    }
}

#[tokio::test]
async fn two_credentials_never_share_webdav_entries() {
    let (dav, rc) = setup(TRUST).await;
    put(&rc.url(""), "/s.txt", "x").await;
    let c = Client::default();
    c.get_with(&rc.url("/s.txt"), &[("authorization", "Basic YTph")])
        .await;
    let (cost, other) = reads(
        &dav,
        c.get_with(&rc.url("/s.txt"), &[("authorization", "Basic Yjpi")]),
    )
    .await;
    assert_eq!(cost, 1);
    assert!(!other.is_hit());
}
