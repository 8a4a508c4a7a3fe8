//! The dashboard in a real browser: `revcache serve` with 20 routes and an
//! admin token, traffic through two of them and a gerrit route with an
//! event feed, and headless Chromium (Debian's, driven by `playwright-core`
//! from `tests/browser/`) loading `GET /` of the admin listener. What the
//! page shows must be what `/metrics` says; its charts must follow new
//! traffic; it must ask for the token and the API must refuse it without;
//! and it must stay readable 400 pixels wide. Screenshots go to
//! `target/dashboard-screenshots/`.
//!
//! `scripts/test.sh` installs chromium and playwright-core
//! (`target/dashboard-browser/node`). Without them the test fails under CI
//! (`CI` set) and is skipped, with the reason printed, elsewhere.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;

const TOKEN: &str = "dashboard-admin-token-7f3a";
const CHROMIUM: &str = "/usr/bin/chromium";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The node_modules holding playwright-core, or why the test cannot run.
fn browser_driver() -> Result<PathBuf, String> {
    let modules = workspace().join("target/dashboard-browser/node/node_modules");
    if !modules.join("playwright-core/package.json").exists() {
        return Err(format!("no playwright-core under {}", modules.display()));
    }
    if !Path::new(CHROMIUM).exists() {
        return Err(format!("no {CHROMIUM} (Debian's chromium)"));
    }
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(modules),
        _ => Err("node is not installed".into()),
    }
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// An origin: `/…/etag…` is stale at once and answers a matching
/// `If-None-Match` with 304; everything else is fresh for a minute.
fn origin() -> SocketAddr {
    support::origin(|head| {
        let answer = if !head.first().is_some_and(|l| l.contains("etag")) {
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\n\r\nfresh"
        } else if head.iter().any(|h| h == "if-none-match: \"v1\"") {
            "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nCache-Control: max-age=0\r\n\r\n"
        } else {
            "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nCache-Control: max-age=0\r\nContent-Length: 5\r\n\r\nstale"
        };
        answer.into()
    })
}

/// GET `path` from `addr` with `headers`: (status, body).
fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request += &format!("{name}: {value}\r\n");
    }
    s.write_all(format!("{request}\r\n").as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_owned())
}

fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    get(
        admin,
        path,
        &[("Authorization", &format!("Bearer {TOKEN}"))],
    )
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The sum of the samples of `name` whose labels include every one of
/// `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            series.split('{').next() == Some(name)
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v.parse::<f64>().unwrap())
        .sum()
}

const CACHED: [&str; 6] = [
    "hit",
    "collapsed",
    "stale_while_revalidate",
    "stale_if_error",
    "rate_limited",
    "revalidated",
];

/// A number as the page prints it (`1,234`, `-5`).
fn shown_int(text: &str) -> i64 {
    text.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {text:?}"))
}

#[test]
fn the_dashboard_shows_what_metrics_says_and_follows_live_traffic() {
    let modules = match browser_driver() {
        Ok(m) => m,
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("dashboard browser test: {why}; scripts/test.sh installs it")
        }
        Err(why) => {
            eprintln!("skipped: {why}; scripts/test.sh installs it");
            return;
        }
    };
    let upstream = origin();
    let dir = std::env::temp_dir().join(format!("revcache-dashboard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (listen, admin) = (free_port(), free_port());
    let mut config = format!(
        "listen = \"{listen}\"\ndata_dir = \"{}/data\"\n[admin]\nlisten = \"{admin}\"\ntoken = \"{TOKEN}\"\n",
        dir.display()
    );
    // Twenty routes: nineteen plain ones and a gerrit route with a feed.
    for n in 1..=19 {
        config += &format!(
            "[[routes]]\nname = \"route-{n:02}\"\npath_prefix = \"/r{n:02}\"\nupstream = \"http://{upstream}\"\n"
        );
    }
    config += &format!(
        "[[routes]]\nname = \"gerrit\"\npath_prefix = \"/g\"\nupstream = \"http://{upstream}\"\ndialect = \"gerrit\"\n[routes.events]\ntrust = \"5m\"\nheartbeat = \"30m\"\n"
    );
    std::fs::write(dir.join("revcache.toml"), config).unwrap();
    let _rc = Running(
        Command::new(env!("CARGO_BIN_EXE_revcache"))
            .args(["serve", "--config"])
            .arg(dir.join("revcache.toml"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(admin).is_err() {
        assert!(Instant::now() < deadline, "revcache did not start");
        thread::sleep(Duration::from_millis(50));
    }

    // Misses, hits and 304s on two routes, and the gerrit route.
    for path in [
        "/r01/a",
        "/r01/a",
        "/r01/b",
        "/r01/b",
        "/r01/b",
        "/r02/etag",
        "/r02/etag",
        "/r02/etag",
        "/r02/x",
        "/g/changes/1",
        "/g/changes/1",
    ] {
        assert_eq!(get(listen, path, &[]).0, 200, "{path}");
    }
    // The API refuses without the token; the page itself needs none.
    assert_eq!(get(admin, "/stats", &[]).0, 401);
    assert_eq!(get(admin, "/stats/history", &[]).0, 401);
    let (status, page) = get(admin, "/", &[]);
    assert_eq!(status, 200);
    assert!(page.contains("dashboard.js"), "{page}");

    let screenshots = workspace().join("target/dashboard-screenshots");
    let args = serde_json::json!({
        "modules": modules,
        "admin": format!("http://{admin}"),
        "proxy": format!("http://{listen}"),
        "token": TOKEN,
        "traffic": ["/r01/a", "/r02/etag", "/r03/new"],
        "screenshots": screenshots,
    });
    let run = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.mjs"))
        .arg(args.to_string())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "the browser script failed: {}\n{}",
        String::from_utf8_lossy(&run.stderr),
        String::from_utf8_lossy(&run.stdout)
    );
    let seen: Value = serde_json::from_slice(&run.stdout).unwrap();
    let metrics = admin_get(admin, "/metrics").1;

    // Without the token the page asks for it, and the API refuses it.
    let without = &seen["without_token"];
    assert_eq!(without["stats_status"], 401, "{without}");
    assert_eq!(without["refreshes"], 0, "{without}");
    assert!(
        without["error"].as_str().unwrap().contains("401"),
        "{without}"
    );
    assert_eq!(seen["with_token"]["form_hidden"], true);

    // The hit ratio and every route's numbers are /metrics'.
    let shown = &seen["shown"];
    let requests: HashMap<&str, f64> = [
        "hit",
        "collapsed",
        "stale_while_revalidate",
        "stale_if_error",
        "rate_limited",
        "miss",
        "revalidated",
        "refetched",
        "bypass",
        "method",
        "rejected",
        "error",
    ]
    .into_iter()
    .map(|o| {
        (
            o,
            metric(&metrics, "revcache_requests_total", &[("outcome", o)]),
        )
    })
    .collect();
    let all: f64 = requests.values().sum();
    let cached: f64 = CACHED.iter().map(|o| requests[o]).sum();
    let ratio = cached / all;
    assert!(requests["revalidated"] >= 2.0, "no 304s:\n{metrics}");
    assert_eq!(
        shown["hit_ratio"]["text"].as_str().unwrap(),
        format!("{:.1} %", ratio * 100.0),
        "{shown}"
    );
    let shown_ratio: f64 = shown["hit_ratio"]["value"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((shown_ratio - ratio).abs() < 1e-9, "{shown_ratio} {ratio}");
    assert_eq!(
        shown_int(shown["requests"]["text"].as_str().unwrap()) as f64,
        all
    );
    let routes = shown["routes"].as_object().unwrap();
    assert_eq!(routes.len(), 20, "{shown}");
    for name in ["route-01", "route-02", "route-03", "route-04", "gerrit"] {
        let row = &routes[name];
        let client = metric(
            &metrics,
            "revcache_route_requests_total",
            &[("route", name)],
        );
        let upstream = metric(
            &metrics,
            "revcache_route_upstream_requests_total",
            &[("route", name)],
        );
        let not_modified = metric(
            &metrics,
            "revcache_route_upstream_requests_total",
            &[("route", name), ("status", "304")],
        );
        for (field, expected) in [
            ("requests", client),
            ("upstream", upstream),
            ("saved", client - upstream),
            ("not_modified", not_modified),
        ] {
            let cell = &row[field];
            assert_eq!(
                shown_int(cell["text"].as_str().unwrap()) as f64,
                expected,
                "{name} {field}: {row}\n{metrics}"
            );
            assert_eq!(
                shown_int(cell["value"].as_str().unwrap()) as f64,
                expected,
                "{name} {field}"
            );
        }
    }
    let r01 = &routes["route-01"];
    assert_eq!(r01["requests"]["text"], "8", "{r01}");
    assert_eq!(r01["saved"]["text"], "6", "{r01}");
    assert_eq!(routes["route-02"]["not_modified"]["text"], "5");
    assert_eq!(shown["feeds"]["gerrit"], "healthy");
    assert_eq!(shown["disk"], "disk: enabled");
    assert_eq!(shown["shared"], "shared: off");

    // The charts follow the traffic made while the page watched.
    let (before, after) = (&seen["charts_before"], &seen["charts_after"]);
    for chart in ["requests", "hit-ratio", "upstream", "tiers", "evictions"] {
        assert_eq!(after[chart]["canvas"], true, "{chart}: {after}");
        assert!(
            after[chart]["draws"].as_u64() > before[chart]["draws"].as_u64(),
            "{chart} was not redrawn: {before} {after}"
        );
        assert!(
            after[chart]["last"].as_f64() > before[chart]["last"].as_f64(),
            "{chart} has no newer sample: {before} {after}"
        );
    }
    assert_eq!(seen["requests_chart_redrawn"], true);

    // 400 pixels wide: nothing wider than the window, every route there.
    let narrow = &seen["narrow"];
    assert!(
        narrow["scroll_width"].as_u64() <= narrow["client_width"].as_u64(),
        "{narrow}"
    );
    assert!(
        narrow["widest_chart"].as_f64().unwrap() <= 400.0,
        "{narrow}"
    );
    assert_eq!(narrow["routes"], 20, "{narrow}");

    // A link with the token in its fragment works and drops it.
    let fragment = &seen["fragment"];
    assert_eq!(fragment["form_hidden"], true, "{fragment}");
    assert_eq!(
        fragment["url"].as_str().unwrap(),
        format!("http://{admin}/"),
        "{fragment}"
    );
    assert_eq!(
        shown_int(fragment["requests"]["text"].as_str().unwrap()) as f64,
        all
    );

    // Nothing broke on the page: no script error, no CSP violation.
    assert_eq!(seen["page_errors"], serde_json::json!([]), "{seen}");
    for line in seen["console"].as_array().unwrap() {
        let line = line.as_str().unwrap();
        assert!(
            !line.contains("Content Security Policy") && !line.contains("Refused"),
            "{line}"
        );
    }
    for shot in ["dashboard-1280.png", "dashboard-400.png"] {
        assert!(screenshots.join(shot).exists(), "{shot}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
