//! A failing disk end to end: revcache starts memory-only on a full disk,
//! and a purge the disk did not commit answers 5xx. The disk is a real
//! tmpfs, filled up (mounting needs root, as CI runs tests); each mount is
//! undone when its test ends, passed or failed.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use revcache_http::{Server, Settings};
use support::{Client, Origin, Reply, Revcache, metric, temp_dir};

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = temp_dir("tmpfs");
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = Tmpfs(dir);
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&mounted.0)
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs needs root");
        mounted
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Writes a file until the filesystem is full.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cacheable() -> impl Fn(&support::Seen, usize) -> Reply + Send + Sync + 'static {
    |req, _| {
        let size = if req.target.starts_with("/fill/") {
            16 << 10
        } else {
            10
        };
        Reply::ok(vec![b'x'; size]).header("cache-control", "max-age=600")
    }
}

async fn readyz(c: &Client, rc: &Revcache) -> serde_json::Value {
    let res = c.get(&rc.admin_url("/readyz")).await;
    assert_eq!(
        res.status, 200,
        "a disabled disk tier leaves revcache ready"
    );
    serde_json::from_slice(&res.body).unwrap()
}

/// Stores responses on the full disk until the disk tier gives up.
async fn fill_until_disabled(c: &Client, rc: &Revcache) {
    let until = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        let res = c.get(&rc.admin_url("/readyz")).await;
        let ready: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
        if ready["disk_tier"]["state"] != "enabled" {
            return;
        }
        assert!(
            Instant::now() < until,
            "a full disk never disabled the disk tier"
        );
        for _ in 0..20 {
            c.get(&rc.url(&format!("/fill/{n}"))).await;
            n += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A revcache whose data dir is on a disk full before it starts.
async fn start_on_a_full_disk(origin: &Origin) -> (Tmpfs, Revcache) {
    let fs = Tmpfs::mount("1m");
    fs.fill();
    let dir = fs.path().join("data");
    let rc = Revcache::start_with(&origin.url(), |s| s.data_dir = dir).await;
    (fs, rc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_at_start_up_serves_from_memory_and_says_so() {
    let origin = Origin::start(cacheable()).await;
    let (_fs, rc) = start_on_a_full_disk(&origin).await;
    let c = Client::default();
    let ready = readyz(&c, &rc).await;
    assert_eq!(ready["disk_tier"]["state"], "disabled", "{ready}");
    let reason = ready["disk_tier"]["reason"].as_str().unwrap();
    assert!(reason.contains("space"), "{reason}");
    let metrics = c.get(&rc.admin_url("/metrics")).await.text();
    assert_eq!(metric(&metrics, "revcache_disk_tier_enabled "), 0.0);
    // It caches in memory all the same.
    assert!(!c.get(&rc.url("/a")).await.is_hit());
    assert!(c.get(&rc.url("/a")).await.is_hit());
    assert_eq!(origin.requests(), 1);
}

/// What revcache logs at `warn` and above, kept for the test to read.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    /// Captures this process's logs (nextest runs each test in its own).
    fn capture() -> Logs {
        let logs = Logs::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        logs
    }

    fn lines_with(&self, text: &str) -> usize {
        let logs = self.0.lock().unwrap();
        String::from_utf8_lossy(&logs)
            .lines()
            .filter(|l| l.contains(text))
            .count()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_only_revcache_says_once_that_the_disk_fails_not_at_every_invalidation() {
    let logs = Logs::capture();
    let origin = Origin::start(cacheable()).await;
    let (_fs, rc) = start_on_a_full_disk(&origin).await;
    let c = Client::default();
    for _ in 0..5 {
        assert!(!c.get(&rc.url("/a")).await.is_hit());
        assert!(c.get(&rc.url("/a")).await.is_hit());
        // A write invalidates what it changed, in memory all the same.
        assert_eq!(c.send("DELETE", &rc.url("/a"), &[], "").await.status, 200);
    }
    assert_eq!(logs.lines_with("running memory-only"), 1);
    assert_eq!(logs.lines_with("did not reach"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_the_full_disk_did_not_commit_answers_503_and_says_why() {
    let origin = Origin::start(cacheable()).await;
    let fs = Tmpfs::mount("8m");
    let dir = fs.path().join("data");
    let rc = Revcache::start_with(&origin.url(), |s| s.data_dir = dir.clone()).await;
    let c = Client::default();
    assert!(!c.get(&rc.url("/a")).await.is_hit());
    assert_eq!(readyz(&c, &rc).await["disk_tier"]["state"], "enabled");
    let metrics = c.get(&rc.admin_url("/metrics")).await.text();
    assert_eq!(metric(&metrics, "revcache_disk_tier_enabled "), 1.0);

    fs.fill();
    // Responses stored after the disk filled up make the disk tier fail.
    fill_until_disabled(&c, &rc).await;
    assert_eq!(readyz(&c, &rc).await["disk_tier"]["state"], "disabled");
    let metrics = c.get(&rc.admin_url("/metrics")).await.text();
    assert_eq!(metric(&metrics, "revcache_disk_tier_enabled "), 0.0);
    assert!(
        metric(&metrics, "revcache_disk_errors_total") >= 1.0,
        "{metrics}"
    );

    let res = c
        .send("POST", &rc.admin_url("/purge?url=/a"), &[], "")
        .await;
    assert_eq!(res.status, 503, "{}", res.text());
    let answer: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    assert_eq!(answer["purged_from_memory"], 1, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("did not reach the disk tier"), "{error}");
    // Gone from memory, and the disk's copy is not promoted back.
    assert!(!c.get(&rc.url("/a")).await.is_hit());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_disk_tier_disabled_by_a_full_disk_makes_revcache_not_ready() {
    let origin = Origin::start(cacheable()).await;
    let fs = Tmpfs::mount("8m");
    let dir = fs.path().join("data");
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.data_dir = dir.clone();
        s.disk.required = true;
    })
    .await;
    let c = Client::default();
    assert_eq!(c.get(&rc.admin_url("/readyz")).await.status, 200);
    fs.fill();
    fill_until_disabled(&c, &rc).await;
    let res = c.get(&rc.admin_url("/readyz")).await;
    assert_eq!(res.status, 503, "{}", res.text());
    assert!(res.text().contains("disk tier disabled"), "{}", res.text());
}

#[tokio::test]
async fn a_required_disk_tier_on_a_full_disk_stops_the_start_with_the_reason() {
    let fs = Tmpfs::mount("1m");
    fs.fill();
    let mut settings = Settings::for_upstream("http://127.0.0.1:9".parse().unwrap());
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.admin_listen = "127.0.0.1:0".parse().unwrap();
    settings.data_dir = fs.path().join("data");
    settings.disk.required = true;
    let err = Server::bind(settings)
        .await
        .err()
        .expect("a required disk tier on a full disk must stop the start");
    assert!(err.to_string().contains("No space left"), "{err}");
}
