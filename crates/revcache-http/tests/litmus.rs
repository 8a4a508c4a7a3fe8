//! Real-server suite: Apache httpd with mod_dav/mod_dav_fs on a loopback
//! port, the `litmus` WebDAV compliance suite run directly against it and
//! through revcache's `webdav` dialect in both trust modes (every suite must
//! pass through revcache exactly as it passes directly), and a real client
//! (cadaver) doing put / list / propset / get / move / delete through
//! revcache. `scripts/test.sh` installs apache2, litmus and cadaver.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use revcache_http::{DialectName, EventSettings};
use support::{Revcache, temp_dir};

fn need(tool: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{tool} is not installed; scripts/test.sh installs it (apt-get install apache2 litmus cadaver)"
    );
}

struct Apache {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Apache {
    /// SIGTERM first: Apache then stops its worker processes. A SIGKILL
    /// would leave them running, orphaned, after every test run.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The uid and gid Apache drops to when started as root.
fn www_data() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("www-data:"))?;
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

fn start_apache() -> Apache {
    let binary = need("apache2");
    let dir = temp_dir("apache");
    let (dav, lock) = (dir.join("dav"), dir.join("lock"));
    std::fs::create_dir_all(&dav).unwrap();
    std::fs::create_dir_all(&lock).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let user = match (root, www_data()) {
        (true, Some((uid, gid))) => {
            for d in [&dav, &lock] {
                std::os::unix::fs::chown(d, Some(uid), Some(gid)).unwrap();
            }
            "User www-data\nGroup www-data\n"
        }
        _ => "",
    };
    let modules = "/usr/lib/apache2/modules";
    let conf = format!(
        "ServerRoot {dir}\nServerName localhost\nListen 127.0.0.1:{port}\n\
         LoadModule mpm_event_module {modules}/mod_mpm_event.so\n\
         LoadModule authz_core_module {modules}/mod_authz_core.so\n\
         LoadModule dav_module {modules}/mod_dav.so\n\
         LoadModule dav_fs_module {modules}/mod_dav_fs.so\n\
         {user}PidFile {dir}/httpd.pid\nErrorLog {dir}/error.log\n\
         DAVLockDB {lock}/DAVLock\nDocumentRoot {dav}\n\
         <Directory {dav}>\n  Dav On\n  Require all granted\n</Directory>\n",
        dir = dir.display(),
        lock = lock.display(),
        dav = dav.display(),
    );
    let conf_path = dir.join("httpd.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(binary)
        .args(["-f", conf_path.to_str().unwrap(), "-DFOREGROUND"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("apache2 starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "apache did not start; see {}/error.log",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Apache { child, port, dir }
}

/// Per suite: (passed, failed) and the names of failing tests.
#[derive(Debug, PartialEq)]
struct Litmus {
    suites: BTreeMap<String, (u32, u32)>,
    failures: Vec<String>,
}

async fn litmus(url: &str) -> Litmus {
    let binary = need("litmus");
    let cwd = temp_dir("litmus");
    std::fs::create_dir_all(&cwd).unwrap();
    let url = url.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        let output = Command::new(binary)
            .arg(&url)
            .current_dir(&cwd)
            .output()
            .expect("litmus runs");
        let _ = std::fs::remove_dir_all(&cwd);
        output
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let mut suites = BTreeMap::new();
    let mut failures = Vec::new();
    let mut suite = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("-> running `") {
            suite = rest.trim_end_matches("':").to_owned();
        }
        if let Some(rest) = line.strip_prefix("<- summary for `") {
            let nums: Vec<u32> = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            // "of N tests run: P passed, F failed. X.Y%"
            if let [_, passed, failed, ..] = nums.as_slice() {
                suites.insert(suite.clone(), (*passed, *failed));
            }
        }
        if line.contains(" FAIL") {
            failures.push(format!("{suite}: {}", line.trim()));
        }
    }
    assert!(!suites.is_empty(), "litmus printed no summary:\n{text}");
    Litmus { suites, failures }
}

async fn revcache(port: u16, trust: Option<Duration>) -> Revcache {
    Revcache::start_with(&format!("http://127.0.0.1:{port}"), |s| {
        s.routes[0].name = "dav".into();
        s.routes[0].dialect = DialectName::Webdav;
        s.routes[0].events = Some(EventSettings {
            trust,
            heartbeat: None,
            command: None,
            secret_file: None,
        });
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litmus_passes_through_revcache_exactly_as_it_passes_directly() {
    let apache = start_apache();
    let direct = litmus(&format!("http://127.0.0.1:{}/", apache.port)).await;
    assert!(
        direct.failures.is_empty(),
        "Apache itself fails litmus: {direct:?}"
    );
    for expected in ["basic", "copymove", "props", "locks", "http"] {
        assert!(
            direct.suites.contains_key(expected),
            "suite {expected} did not run: {direct:?}"
        );
    }
    for trust in [None, Some(Duration::from_secs(300))] {
        let rc = revcache(apache.port, trust).await;
        let through = litmus(&rc.url("/")).await;
        assert_eq!(
            through, direct,
            "through revcache (trust {trust:?}) differs from direct"
        );
        let m = support::Client::default()
            .get(&rc.admin_url("/metrics"))
            .await
            .text();
        assert!(
            support::metric(&m, "revcache_requests_total{outcome=\"method\"}") > 50.0,
            "writes went through"
        );
    }
}

/// Runs cadaver with `commands` against `url`; returns what it printed.
async fn cadaver(url: &str, commands: &str) -> String {
    let binary = need("cadaver");
    let cwd = temp_dir("cadaver");
    std::fs::create_dir_all(&cwd).unwrap();
    let (url, commands) = (url.to_owned(), format!("{commands}\nquit\n"));
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new(binary)
            .arg(&url)
            .current_dir(&cwd)
            .env("HOME", &cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cadaver runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(commands.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let _ = std::fs::remove_dir_all(&cwd);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
    .await
    .unwrap()
}

/// What cadaver printed after its last `command`.
fn after<'a>(out: &'a str, command: &str) -> &'a str {
    out.rfind(&format!("> {command}"))
        .map_or(out, |i| &out[i + command.len() + 2..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_client_sees_every_step_through_a_trusting_cache() {
    let apache = start_apache();
    let rc = revcache(apache.port, Some(Duration::from_secs(300))).await;
    let url = rc.url("/");
    let local = temp_dir("cadaver-files");
    std::fs::create_dir_all(&local).unwrap();
    let file = local.join("note.txt");
    std::fs::write(&file, "first draft\n").unwrap();
    let f = file.display();

    let out = cadaver(&url, &format!("mkcol docs\nput {f} docs/note.txt\nls docs")).await;
    assert!(
        after(&out, "ls docs").contains("note.txt"),
        "listing after put:\n{out}"
    );
    let out = cadaver(
        &url,
        "propset docs/note.txt author Ada\npropget docs/note.txt author",
    )
    .await;
    assert!(
        after(&out, "propget docs/note.txt author").contains("Ada"),
        "property after propset:\n{out}"
    );
    let out = cadaver(&url, "cat docs/note.txt").await;
    assert!(out.contains("first draft"), "body:\n{out}");
    std::fs::write(&file, "second draft\n").unwrap();
    let out = cadaver(&url, &format!("put {f} docs/note.txt\ncat docs/note.txt")).await;
    let body = after(&out, "cat docs/note.txt");
    assert!(
        body.contains("second draft") && !body.contains("first draft"),
        "body after overwrite:\n{out}"
    );
    let out = cadaver(&url, "move docs/note.txt docs/moved.txt\nls docs").await;
    let listing = after(&out, "ls docs");
    assert!(
        listing.contains("moved.txt") && !listing.contains("note.txt"),
        "listing after move:\n{out}"
    );
    let out = cadaver(&url, "cat docs/moved.txt\npropget docs/moved.txt author").await;
    assert!(
        after(&out, "cat docs/moved.txt").contains("second draft"),
        "moved body:\n{out}"
    );
    assert!(
        after(&out, "propget docs/moved.txt author").contains("Ada"),
        "moved property:\n{out}"
    );
    let out = cadaver(&url, "delete docs/moved.txt\nls docs").await;
    assert!(
        !after(&out, "ls docs").contains("moved.txt"),
        "listing after delete:\n{out}"
    );
    let _ = std::fs::remove_dir_all(local);
}
