//! The access log: one line per request in the combined or JSON format,
//! credentials redacted, reopened by a reload after logrotate moved it.

mod support;

use std::path::{Path, PathBuf};

use revcache_http::{AccessLogDestination, AccessLogFormat, AccessLogSettings};
use support::{Client, Origin, Reply, Revcache};

async fn origin() -> Origin {
    Origin::start(|seen, _| {
        if seen.target.starts_with("/missing") {
            return Reply::status(404);
        }
        Reply::ok("from origin").header("cache-control", "max-age=60")
    })
    .await
}

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn logging(origin: &Origin, format: AccessLogFormat) -> (Revcache, PathBuf, TempDir) {
    let dir = support::temp_dir("access-log");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("access.log");
    let destination = AccessLogDestination::File(path.clone());
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.access_log = Some(AccessLogSettings {
            destination,
            format,
        })
    })
    .await;
    (rc, path, TempDir(dir))
}

/// The lines written so far, once every request answered has its line.
async fn lines(rc: &Revcache, path: &Path) -> Vec<String> {
    rc.proxy.access_log().unwrap().flush().await;
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn combined_lines_name_outcome_route_bytes_and_upstream_time_with_credentials_redacted() {
    let origin = origin().await;
    let (rc, path, _dir) = logging(&origin, AccessLogFormat::Combined).await;
    let c = Client::default();
    let url = rc.url("/a?access_token=s3cret&x=1");
    let headers = [
        ("user-agent", "ci-bot/1.0"),
        ("referer", "https://ci.example/job?private_token=s3cret"),
    ];
    assert!(!c.get_with(&url, &headers).await.is_hit());
    assert!(c.get_with(&url, &headers).await.is_hit());
    let lines = lines(&rc, &path).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in &lines {
        assert!(!line.contains("s3cret"), "a credential was logged: {line}");
        assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
        assert!(
            line.contains("\"GET /a?access_token=REDACTED&x=1 HTTP/1.1\" 200 11 \"https://ci.example/job?private_token=REDACTED\" \"ci-bot/1.0\" route=\"default\""),
            "{line}"
        );
    }
    assert!(
        lines[0].contains("cache=\"fwd=uri-miss; fwd-status=200; stored; ttl=60\""),
        "{}",
        lines[0]
    );
    let upstream_ms = lines[0].rsplit_once("upstream_ms=").unwrap().1;
    assert!(upstream_ms.parse::<f64>().is_ok(), "{}", lines[0]);
    assert!(lines[1].contains("cache=\"hit\""), "{}", lines[1]);
    assert!(
        lines[1].ends_with(" upstream_ms=-"),
        "a hit asks no upstream: {}",
        lines[1]
    );
}

#[tokio::test]
async fn json_lines_carry_every_field_including_for_errors_and_heads() {
    let origin = origin().await;
    let (rc, path, _dir) = logging(&origin, AccessLogFormat::Json).await;
    let c = Client::default();
    c.get(&rc.url("/b")).await;
    c.send("HEAD", &rc.url("/b"), &[], "").await;
    c.get(&rc.url("/missing?access_token=s3cret")).await;
    let lines = lines(&rc, &path).await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let miss = &parsed[0];
    assert_eq!(miss["client"], "127.0.0.1");
    assert_eq!(miss["method"], "GET");
    assert_eq!(miss["target"], "/b");
    assert_eq!(miss["status"], 200);
    assert_eq!(miss["bytes"], 11);
    assert_eq!(miss["route"], "default");
    assert!(miss["upstream_ms"].as_f64().is_some(), "{miss}");
    assert!(miss["duration_ms"].as_f64().is_some(), "{miss}");
    assert!(miss["time"].as_str().unwrap().ends_with('Z'), "{miss}");
    let head = &parsed[1];
    assert_eq!(head["method"], "HEAD");
    assert_eq!(head["bytes"], 0);
    assert_eq!(head["cache_status"], "hit");
    assert_eq!(head["upstream_ms"], serde_json::Value::Null);
    let missing = &parsed[2];
    assert_eq!(missing["status"], 404);
    assert_eq!(missing["target"], "/missing?access_token=REDACTED");
    assert!(
        missing["cache_status"]
            .as_str()
            .unwrap()
            .starts_with("fwd=uri-miss; fwd-status=404"),
        "{missing}"
    );
}

#[tokio::test]
async fn a_reload_reopens_the_log_after_logrotate_moved_it_away() {
    let origin = origin().await;
    let (rc, path, _dir) = logging(&origin, AccessLogFormat::Combined).await;
    let c = Client::default();
    c.get(&rc.url("/before")).await;
    assert_eq!(lines(&rc, &path).await.len(), 1);
    let rotated = path.with_extension("log.1");
    std::fs::rename(&path, &rotated).unwrap();
    let res = c.send("POST", &rc.admin_url("/reload"), &[], "").await;
    assert_eq!(res.status, 200, "{}", res.text());
    c.get(&rc.url("/after")).await;
    let now = lines(&rc, &path).await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert!(now[0].contains("GET /after"), "{now:?}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert_eq!(old.lines().count(), 1, "{old}");
    assert!(old.contains("GET /before"), "{old}");
    let metrics = c.get(&rc.admin_url("/metrics")).await.text();
    assert_eq!(
        support::metric(&metrics, "revcache_access_log_dropped_total"),
        0.0
    );
}

#[tokio::test]
async fn an_access_log_that_cannot_be_opened_stops_the_start_with_the_path() {
    let mut settings = revcache_http::Settings::for_upstream("http://127.0.0.1:1".parse().unwrap());
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.admin_listen = "127.0.0.1:0".parse().unwrap();
    let dir = support::temp_dir("access-log-missing");
    settings.data_dir = dir.join("data");
    settings.access_log = Some(AccessLogSettings {
        destination: AccessLogDestination::File(dir.join("no/such/dir/access.log")),
        format: AccessLogFormat::Combined,
    });
    let err = match revcache_http::Server::bind(settings).await {
        Ok(_) => panic!("started with an access log it cannot open"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("access_log.path") && err.contains("no/such/dir/access.log"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
