//! Config reload (`POST /reload`; SIGHUP in the binary runs the same code):
//! routes, limits and tokens swapped whole, unchanged routes and the cache
//! kept, an invalid config refused with the previous one left in force.

mod support;

use std::sync::{Arc, Mutex};

use std::time::Duration;

use revcache_http::{DialectName, EventSettings, RouteSettings, Settings, Sharing, UpstreamTls};
use support::{Client, Origin, ReloadSource, Reply, Revcache};

fn cacheable() -> impl Fn(&support::Seen, usize) -> Reply + Send + Sync + 'static {
    |req, n| Reply::ok(format!("{} #{n}", req.target)).header("cache-control", "max-age=600")
}

fn route(name: &str, prefix: &str, upstream: &str) -> RouteSettings {
    let mut r = Settings::for_upstream(upstream.parse().unwrap()).routes[0].clone();
    r.name = name.into();
    r.path_prefix = prefix.into();
    r
}

/// An instance with routes `a` (/a) and `b` (/b) to `origin`, and the
/// source its reloads read.
async fn two_routes(origin: &Origin) -> (Revcache, ReloadSource) {
    let source: ReloadSource = Arc::new(Mutex::new(None));
    let url = origin.url();
    let rc = Revcache::start_reloadable(
        &url,
        |s| s.routes = vec![route("a", "/a", &url), route("b", "/b", &url)],
        Some(source.clone()),
    )
    .await;
    (rc, source)
}

/// Changes the settings the next reload reads.
fn edit(source: &ReloadSource, change: impl FnOnce(&mut Settings)) {
    let mut next = source.lock().unwrap();
    let Some(Ok(settings)) = next.as_mut() else {
        panic!("no settings to edit")
    };
    change(settings);
}

async fn reload(c: &Client, rc: &Revcache) -> support::Got {
    c.send("POST", &rc.admin_url("/reload"), &[], "").await
}

fn json(got: &support::Got) -> serde_json::Value {
    serde_json::from_slice(&got.body).unwrap()
}

#[tokio::test]
async fn a_reload_adds_and_removes_routes_and_kept_routes_keep_their_entries() {
    let (first, second) = (
        Origin::start(cacheable()).await,
        Origin::start(cacheable()).await,
    );
    let (rc, source) = two_routes(&first).await;
    let c = Client::default();
    c.get(&rc.url("/a/x")).await;
    assert!(c.get(&rc.url("/a/x")).await.is_hit());
    assert_eq!(c.get(&rc.url("/b/y")).await.status, 200);

    let second_url = second.url();
    edit(&source, |s| {
        s.routes.retain(|r| r.name == "a");
        s.routes.push(route("c", "/c", &second_url));
    });
    let res = reload(&c, &rc).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let report = json(&res);
    assert_eq!(report["status"], "applied");
    assert_eq!(report["routes"]["kept"], serde_json::json!(["a"]));
    assert_eq!(report["routes"]["added"], serde_json::json!(["c"]));
    assert_eq!(report["routes"]["removed"], serde_json::json!(["b"]));
    assert_eq!(report["restart_required"], serde_json::json!([]));

    let before = first.requests();
    assert!(c.get(&rc.url("/a/x")).await.is_hit());
    assert_eq!(
        c.get(&rc.url("/b/y")).await.status,
        404,
        "a removed route stops serving"
    );
    let new = c.get(&rc.url("/c/z")).await;
    assert_eq!((new.status, new.text().as_str()), (200, "/c/z #0"));
    assert_eq!(first.requests(), before);
    assert_eq!(second.requests(), 1);
}

#[tokio::test]
async fn a_changed_route_is_rebuilt_and_its_cached_entries_still_hit() {
    let origin = Origin::start(cacheable()).await;
    let (rc, source) = two_routes(&origin).await;
    let c = Client::default();
    c.get(&rc.url("/a/x")).await;
    edit(&source, |s| s.routes[0].sharing = Sharing::Rfc9111);
    let report = json(&reload(&c, &rc).await);
    assert_eq!(report["routes"]["changed"], serde_json::json!(["a"]));
    assert_eq!(report["routes"]["kept"], serde_json::json!(["b"]));
    assert!(c.get(&rc.url("/a/x")).await.is_hit());
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn an_invalid_config_is_refused_counted_and_the_old_one_stays() {
    let origin = Origin::start(cacheable()).await;
    let (rc, source) = two_routes(&origin).await;
    let c = Client::default();
    c.get(&rc.url("/a/x")).await;
    let good = source.lock().unwrap().clone().unwrap().unwrap();

    // What the binary's config reader reports for a bad file.
    *source.lock().unwrap() = Some(Err(
        "config file revcache.toml: routes[0].upstream: must be an absolute URL".into(),
    ));
    let res = reload(&c, &rc).await;
    assert_eq!(res.status, 422);
    assert_eq!(json(&res)["status"], "rejected");
    assert!(res.text().contains("routes[0].upstream"), "{}", res.text());

    // Settings that only fail when built: a CA file that is not there.
    let mut broken = good.clone();
    broken.routes[1].upstream = "https://127.0.0.1:1".parse().unwrap();
    broken.routes[1].tls = UpstreamTls {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..UpstreamTls::default()
    };
    broken.routes.retain(|r| r.name == "b");
    *source.lock().unwrap() = Some(Ok(broken));
    let res = reload(&c, &rc).await;
    assert_eq!(res.status, 422);
    assert!(res.text().contains("tls.ca_file"), "{}", res.text());

    // Nothing of either was applied: both routes serve, the entry hits.
    assert!(c.get(&rc.url("/a/x")).await.is_hit());
    assert_eq!(c.get(&rc.url("/b/y")).await.status, 200);
    let metrics = c.get(&rc.admin_url("/metrics")).await.text();
    assert!(
        metrics.contains("revcache_config_reloads_total{result=\"rejected\"} 2"),
        "{metrics}"
    );
    assert!(!metrics.contains("result=\"applied\""), "{metrics}");
}

#[tokio::test]
async fn a_reload_swaps_limits_and_admin_tokens_and_names_what_needs_a_restart() {
    let origin = Origin::start(cacheable()).await;
    let (rc, source) = two_routes(&origin).await;
    let c = Client::default();
    let body = "x".repeat(100);
    assert_eq!(
        c.send("POST", &rc.url("/a/w"), &[], body.clone())
            .await
            .status,
        200
    );

    edit(&source, |s| {
        s.limits.max_request_body_bytes = 10;
        s.limits.max_connections = 7;
        s.admin_token = Some("new-secret".into());
    });
    let res = reload(&c, &rc).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        json(&res)["restart_required"],
        serde_json::json!(["limits.max_connections"])
    );
    assert_eq!(c.send("POST", &rc.url("/a/w"), &[], body).await.status, 413);
    assert_eq!(c.get(&rc.admin_url("/metrics")).await.status, 401);
    let authorized = c
        .get_with(
            &rc.admin_url("/metrics"),
            &[("authorization", "Bearer new-secret")],
        )
        .await;
    assert_eq!(authorized.status, 200);
}

/// Polls `/readyz` until the route's feed reports `healthy`.
async fn feed_health_becomes(c: &Client, rc: &Revcache, route: &str, healthy: bool) {
    let want = format!("\"{route}\":{healthy}");
    for _ in 0..500 {
        if c.get(&rc.admin_url("/readyz")).await.text().contains(&want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the {route} feed never reported {want}");
}

#[tokio::test]
async fn an_unchanged_event_feed_keeps_running_and_a_changed_one_restarts() {
    let origin = Origin::start(cacheable()).await;
    let dir = support::temp_dir("feed-starts");
    std::fs::create_dir_all(&dir).unwrap();
    let starts = dir.join("starts");
    // Records each start, says one line (the feed turns healthy), stays.
    let command = |tag: &str| {
        format!(
            "echo {tag} >> {0}; echo '{{}}'; exec sleep 600",
            starts.display()
        )
    };
    let source: ReloadSource = Arc::new(Mutex::new(None));
    let url = origin.url();
    let first = command("first");
    let rc = Revcache::start_reloadable(
        &url,
        |s| {
            let mut gerrit = route("gerrit", "/", &url);
            gerrit.dialect = DialectName::Gerrit;
            gerrit.events = Some(EventSettings {
                trust: Some(Duration::from_secs(60)),
                heartbeat: None,
                command: Some(first),
                secret_file: None,
            });
            s.routes = vec![gerrit];
        },
        Some(source.clone()),
    )
    .await;
    let c = Client::default();
    feed_health_becomes(&c, &rc, "gerrit", true).await;

    // Unchanged: the command is not started again and stays trusted.
    edit(&source, |s| s.limits.max_fill_bytes = 1 << 20);
    let report = json(&reload(&c, &rc).await);
    assert_eq!(report["routes"]["kept"], serde_json::json!(["gerrit"]));
    let ready = c.get(&rc.admin_url("/readyz")).await.text();
    assert!(ready.contains("\"gerrit\":true"), "{ready}");
    assert_eq!(std::fs::read_to_string(&starts).unwrap(), "first\n");

    // A route changed elsewhere than its dialect keeps its feed too.
    edit(&source, |s| s.routes[0].sharing = Sharing::Rfc9111);
    let report = json(&reload(&c, &rc).await);
    assert_eq!(report["routes"]["changed"], serde_json::json!(["gerrit"]));
    let ready = c.get(&rc.admin_url("/readyz")).await.text();
    assert!(ready.contains("\"gerrit\":true"), "{ready}");
    assert_eq!(std::fs::read_to_string(&starts).unwrap(), "first\n");

    // A new command: the old one is stopped, the new one started.
    let second = command("second");
    edit(&source, |s| {
        s.routes[0].events.as_mut().unwrap().command = Some(second)
    });
    let report = json(&reload(&c, &rc).await);
    assert_eq!(report["routes"]["changed"], serde_json::json!(["gerrit"]));
    feed_health_becomes(&c, &rc, "gerrit", true).await;
    assert_eq!(std::fs::read_to_string(&starts).unwrap(), "first\nsecond\n");
    let _ = std::fs::remove_dir_all(dir);
}
