//! The randomized leak test: many requests from a mix of tokens, cookies,
//! auth-proxy users, query tokens and anonymous callers, concurrently,
//! against an origin that puts the caller in every body it does not mark
//! shareable, across the http, gerrit and webdav dialects and through
//! restarts on one data dir. No body and no cookie may reach a caller the
//! origin would not have given it to.
//!
//! `REVCACHE_LEAK_REQUESTS` (default 10,000) and `REVCACHE_LEAK_SEED` size
//! and vary the run; `bench/leak-storm/run.sh` runs a large one.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use revcache_http::{DialectName, EventSettings, RouteSettings};
use support::{Client, Origin, Reply, Revcache, Seen, temp_dir};

/// How the origin answers a path of the http route: index = path % len.
const POLICIES: [&str; 9] = [
    "max-age=600",
    "public, max-age=600",
    "no-cache",
    "private, max-age=600",
    "max-age=600, must-revalidate",
    "max-age=600; set-cookie",
    "s-maxage=600",
    "max-age=600; vary-cookie",
    "public, no-cache; cookie-on-304",
];

/// Who the origin takes the caller for. On the http route it knows
/// callers by Authorization, the `session` cookie (partition material),
/// an auth proxy's user header and a query token; gerrit and webdav know
/// them by any cookie too (those dialects store per caller).
fn identity(host: &str, req: &Seen) -> String {
    let h = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok());
    if let Some(a) = h("authorization") {
        return format!("auth:{a}");
    }
    if let Some(c) = h("cookie") {
        if host != "http" {
            return format!("cookie:{c}");
        }
        if let Some(s) = c
            .split(';')
            .map(str::trim)
            .find(|p| p.starts_with("session="))
        {
            return format!("cookie:{s}");
        }
    }
    if let Some(u) = h("x-forwarded-user") {
        return format!("user:{u}");
    }
    if let Some((_, t)) = req.target.split_once("access_token=") {
        return format!("query:{}", t.split('&').next().unwrap_or(""));
    }
    "anonymous".into()
}

fn host_of(req: &Seen) -> &'static str {
    match req
        .headers
        .get("x-test-route")
        .and_then(|v| v.to_str().ok())
    {
        Some("gerrit") => "gerrit",
        Some("dav") => "dav",
        _ => "http",
    }
}

fn path_of(target: &str) -> &str {
    target.split('?').next().unwrap_or(target)
}

fn origin_reply(req: &Seen) -> Reply {
    let host = host_of(req);
    let who = identity(host, req);
    let path = path_of(&req.target).to_owned();
    let mine = format!("who={who}|path={path}|");
    match host {
        "gerrit" => {
            let n: u64 = path
                .rsplit('/')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let body = format!(
                ")]}}'\n{{\"_number\":{n},\"project\":\"p\",\"branch\":\"main\",\"change_id\":\"I{n}\",\"meta_rev_id\":\"m{n}\",\"subject\":\"{mine}\"}}"
            );
            Reply::ok(body).header("cache-control", "no-cache, no-store")
        }
        "dav" => {
            let etag = format!("\"{:x}\"", digest(&mine));
            let matches = req
                .headers
                .get("if-none-match")
                .is_some_and(|v| v.as_bytes() == etag.as_bytes());
            let r = if matches {
                Reply::status(304)
            } else {
                Reply::ok(mine)
            };
            r.header("etag", etag)
        }
        _ => {
            let i: usize = path
                .rsplit('/')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let policy = POLICIES[i % POLICIES.len()];
            let (cc, extra) = policy.split_once("; ").unwrap_or((policy, ""));
            let shared = cc.contains("public") || cc.contains("s-maxage");
            let body = if shared {
                format!("who=public|path={path}|")
            } else {
                mine
            };
            let etag = format!("\"{:x}\"", digest(&body));
            let conditional = req
                .headers
                .get("if-none-match")
                .is_some_and(|v| v.as_bytes() == etag.as_bytes());
            let mut r = if conditional {
                Reply::status(304)
            } else {
                Reply::ok(body)
            };
            r = r.header("cache-control", cc).header("etag", etag);
            match extra {
                "set-cookie" => r = r.header("set-cookie", format!("sid={who}")),
                "vary-cookie" => r = r.header("vary", "cookie"),
                "cookie-on-304" if conditional && who != "anonymous" => {
                    r = r.header("set-cookie", format!("sid={who}"))
                }
                _ => {}
            }
            r
        }
    }
}

fn digest(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// A small deterministic generator (xorshift64*), so a failing seed replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One caller: headers and a query token, as a client would send them.
fn caller(i: usize) -> (Vec<(&'static str, String)>, Option<String>) {
    let names = ["alice", "bob", "carol"];
    let name = names[i % 3];
    match i / 3 {
        0 => (vec![("authorization", format!("Bearer {name}"))], None),
        1 => (
            vec![("cookie", format!("theme=dark; session={name}"))],
            None,
        ),
        2 => (vec![("cookie", format!("GerritAccount={name}"))], None),
        3 => (vec![("cookie", format!("sso={name}"))], None),
        4 => (vec![("x-forwarded-user", name.to_owned())], None),
        5 => (vec![], Some(name.to_owned())),
        _ => (vec![], None),
    }
}
const CALLERS: usize = 3 * 6 + 1;

fn settings_for(s: &mut revcache_http::Settings, dir: &std::path::Path) {
    s.data_dir = dir.to_owned();
    s.partition.cookies = vec!["session".into()];
    let base = s.routes[0].clone();
    let with = |name: &str, dialect, trust| RouteSettings {
        name: name.into(),
        host: Some(format!("{name}.test")),
        dialect,
        events: Some(EventSettings {
            trust,
            heartbeat: None,
            command: None,
            secret_file: None,
        }),
        ..base.clone()
    };
    s.routes.push(with(
        "gerrit",
        DialectName::Gerrit,
        Some(Duration::from_secs(300)),
    ));
    s.routes.push(with("dav", DialectName::Webdav, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_body_or_cookie_reaches_the_wrong_caller() {
    let total: usize = std::env::var("REVCACHE_LEAK_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let seed: u64 = std::env::var("REVCACHE_LEAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_1eaf);
    let origin = Origin::start(|req, _| origin_reply(req)).await;
    let dir = temp_dir("leak-storm");
    let phases = 3;
    let checked = Arc::new(AtomicUsize::new(0));
    let hits = Arc::new(AtomicUsize::new(0));
    let mut leaks: Vec<String> = Vec::new();
    for phase in 0..phases {
        let rc = Revcache::start_with(&origin.url(), |s| settings_for(s, &dir)).await;
        let client = Client::default();
        let workers = 16;
        let per_worker = total / phases / workers;
        let mut tasks = Vec::new();
        for w in 0..workers {
            let mut rng = Rng(seed ^ ((phase * workers + w) as u64 + 1).wrapping_mul(0x9E37_79B9));
            let (client, base) = (client.clone(), rc.url(""));
            let (checked, hits) = (checked.clone(), hits.clone());
            tasks.push(tokio::spawn(async move {
                let mut found = Vec::new();
                for _ in 0..per_worker {
                    let (host, path) = match rng.below(3) {
                        0 => ("http", format!("/h/{}", rng.below(27))),
                        1 => ("gerrit", format!("/changes/{}", 1 + rng.below(6))),
                        _ => ("dav", format!("/d/{}", rng.below(6))),
                    };
                    let (mut headers, token) = caller(rng.below(CALLERS));
                    headers.push(("host", format!("{host}.test")));
                    // The origin sees the route in a header revcache passes on.
                    headers.push(("x-test-route", host.to_owned()));
                    let target = match &token {
                        Some(t) => format!("{path}?access_token={t}"),
                        None => path.clone(),
                    };
                    let h: Vec<(&str, &str)> =
                        headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                    let got = client.get_with(&format!("{base}{target}"), &h).await;
                    let seen = Seen {
                        method: http::Method::GET,
                        target: target.clone(),
                        headers: h
                            .iter()
                            .map(|(n, v)| {
                                (
                                    http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                                    v.parse().unwrap(),
                                )
                            })
                            .collect(),
                        body: Default::default(),
                    };
                    let expected = identity(host, &seen);
                    let text = got.text();
                    let who = text
                        .split("who=")
                        .nth(1)
                        .and_then(|r| r.split('|').next())
                        .unwrap_or("<none>");
                    let right_path = text.contains(&format!("|path={path}|"));
                    if got.status != 200 || !right_path || (who != expected && who != "public") {
                        found.push(format!(
                            "{host} {target} as {expected}: {} {:?} ({})",
                            got.status,
                            text,
                            got.cache_status()
                        ));
                    }
                    for c in got.headers.get_all("set-cookie") {
                        if c.to_str().ok() != Some(&format!("sid={expected}")) {
                            found.push(format!("{host} {target} as {expected}: cookie {c:?}"));
                        }
                    }
                    if got.is_hit() {
                        hits.fetch_add(1, Ordering::Relaxed);
                    }
                    checked.fetch_add(1, Ordering::Relaxed);
                }
                found
            }));
        }
        for t in tasks {
            leaks.extend(t.await.unwrap());
        }
        rc.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (checked, hits) = (
        checked.load(Ordering::Relaxed),
        hits.load(Ordering::Relaxed),
    );
    println!(
        "leak storm: {checked} requests, {CALLERS} callers, {phases} runs on one data dir, {hits} hits, {} upstream requests, {} leaks (seed {seed})",
        origin.requests(),
        leaks.len()
    );
    assert!(checked >= total - phases * 16, "ran {checked} of {total}");
    assert!(
        hits > checked / 10,
        "too few hits ({hits}) to mean anything"
    );
    assert!(
        leaks.is_empty(),
        "{} leaks, first: {:#?}",
        leaks.len(),
        &leaks[..leaks.len().min(10)]
    );
}
