//! Crash safety: revcache runs as a child process under continuous load
//! while the origin keeps changing its resources; it is killed with
//! SIGKILL at random moments and restarted on the same data dir, again and
//! again. Every response served at any point must be byte-identical to what
//! the origin served for the version its ETag names: no torn bodies, no
//! body under the wrong ETag, and every start-up must succeed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Paths and body sizes: inline bodies, body files, and streamed files.
const PATHS: [(&str, usize); 8] = [
    ("/s/a", 100),
    ("/s/b", 3_000),
    ("/s/c", 16 << 10),
    ("/m/a", 40 << 10),
    ("/m/b", 300 << 10),
    ("/m/c", 700 << 10),
    ("/l/a", 1_500 << 10),
    ("/l/b", 2_500 << 10),
];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The bytes the origin serves for `path` at `version`.
fn body(path: &str, version: u64) -> Vec<u8> {
    let size = PATHS
        .iter()
        .find(|(p, _)| *p == path)
        .map_or(0, |(_, s)| *s);
    let mut x = path
        .bytes()
        .fold(version.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1, |h, b| {
            h.rotate_left(5) ^ u64::from(b)
        });
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An origin whose resources change version all the time.
fn origin(stop: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let versions: Arc<Mutex<HashMap<&'static str, u64>>> = Arc::default();
    {
        let versions = versions.clone();
        let stop = stop.clone();
        thread::spawn(move || {
            let mut rng = Rng(0x1234_5678);
            while !stop.load(Ordering::Relaxed) {
                let (path, _) = PATHS[rng.below(PATHS.len() as u64) as usize];
                *versions.lock().unwrap().entry(path).or_insert(0) += 1;
                thread::sleep(Duration::from_millis(15));
            }
        });
    }
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let versions = versions.clone();
            thread::spawn(move || serve_origin(stream, &versions));
        }
    });
    addr
}

fn serve_origin(mut stream: TcpStream, versions: &Mutex<HashMap<&'static str, u64>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut first = String::new();
        if reader.read_line(&mut first).unwrap_or(0) == 0 {
            return;
        }
        let mut if_none_match = None;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("if-none-match:") {
                if_none_match = Some(v.trim().to_owned());
            }
        }
        let path = first.split(' ').nth(1).unwrap_or("/").to_owned();
        let Some((known, _)) = PATHS.iter().find(|(p, _)| *p == path) else {
            let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            continue;
        };
        let version = *versions.lock().unwrap().get(known).unwrap_or(&0);
        let etag = format!("\"{version}\"");
        let head = |status: &str, len: usize| {
            format!(
                "HTTP/1.1 {status}\r\nETag: {etag}\r\nCache-Control: max-age=1\r\nContent-Length: {len}\r\n\r\n"
            )
        };
        let ok = if if_none_match.as_deref() == Some(etag.as_str()) {
            stream.write_all(head("304 Not Modified", 0).as_bytes())
        } else {
            let b = body(known, version);
            stream
                .write_all(head("200 OK", b.len()).as_bytes())
                .and_then(|_| stream.write_all(&b))
        };
        if ok.is_err() {
            return;
        }
    }
}

/// GET through revcache; `Ok(None)` when revcache is not there (killed).
fn fetch(addr: SocketAddr, path: &str) -> Result<Option<(bool, u64)>, String> {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return Ok(None);
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    if write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: crash-test\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return Ok(None);
    }
    let mut raw = Vec::new();
    if s.read_to_end(&mut raw).is_err() {
        return Ok(None);
    }
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let payload = &raw[split + 4..];
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.strip_prefix(&format!("{name}:"))
                .map(|v| v.trim().to_owned())
        })
    };
    if !head.starts_with("http/1.1 200") {
        // 502/504 while the origin is slow are fine; a wrong body is not.
        return Ok(None);
    }
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or("no content-length")?;
    if payload.len() < length {
        // The connection died mid-body (revcache was killed): not served.
        return Ok(None);
    }
    let etag = header("etag").ok_or("200 without etag")?;
    let version: u64 = etag
        .trim_matches('"')
        .parse()
        .map_err(|_| format!("odd etag {etag}"))?;
    if payload[..length] != body(path, version)[..] {
        return Err(format!(
            "{path}: body does not match ETag {etag} ({length} bytes)"
        ));
    }
    let hit = header("cache-status").is_some_and(|v| v.contains("hit"));
    Ok(Some((hit, version)))
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn start(upstream: SocketAddr, dir: &std::path::Path) -> (Child, SocketAddr) {
    let (listen, admin) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_revcache"))
        .args(["serve", "--upstream", &format!("http://{upstream}")])
        .args([
            "--listen",
            &listen.to_string(),
            "--admin-listen",
            &admin.to_string(),
        ])
        .args(["--data-dir", dir.to_str().unwrap(), "--log-level", "warn"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(listen).is_err() {
        assert!(
            Instant::now() < deadline,
            "revcache did not start after a crash"
        );
        thread::sleep(Duration::from_millis(20));
    }
    (child, listen)
}

#[test]
fn sigkill_at_random_moments_never_serves_a_wrong_or_torn_body() {
    let rounds = std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let stop = Arc::new(AtomicBool::new(false));
    let upstream = origin(stop.clone());
    let dir = std::env::temp_dir().join(format!("revcache-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let current: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let (verified, hits) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..3)
        .map(|i| {
            let (current, failures, stop) = (current.clone(), failures.clone(), stop.clone());
            let (verified, hits) = (verified.clone(), hits.clone());
            thread::spawn(move || {
                let mut rng = Rng(0xdead_beef + i);
                while !stop.load(Ordering::Relaxed) {
                    let Some(addr) = *current.lock().unwrap() else {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let (path, _) = PATHS[rng.below(PATHS.len() as u64) as usize];
                    match fetch(addr, path) {
                        Ok(Some((hit, _))) => {
                            verified.fetch_add(1, Ordering::Relaxed);
                            if hit {
                                hits.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(None) => {}
                        Err(e) => failures.lock().unwrap().push(e),
                    }
                }
            })
        })
        .collect();

    let mut rng = Rng(0x5eed);
    for _ in 0..rounds {
        let (mut child, listen) = start(upstream, &dir);
        *current.lock().unwrap() = Some(listen);
        thread::sleep(Duration::from_millis(300 + rng.below(700)));
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        *current.lock().unwrap() = None;
        let mut stderr = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
        assert!(!stderr.contains("panicked"), "revcache panicked:\n{stderr}");
    }
    // A last, clean run: every path is served correctly after all that.
    let (mut child, listen) = start(upstream, &dir);
    *current.lock().unwrap() = Some(listen);
    for (path, _) in PATHS {
        for _ in 0..3 {
            if let Err(e) = fetch(listen, path) {
                failures.lock().unwrap().push(e);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "clean shutdown after the crashes"
    );
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} wrong responses, first: {:?}",
        failures.len(),
        failures.first()
    );
    let (verified, hits) = (
        verified.load(Ordering::Relaxed),
        hits.load(Ordering::Relaxed),
    );
    assert!(verified > 100, "only {verified} responses verified");
    assert!(
        hits > 10,
        "only {hits} cache hits among {verified} responses"
    );
    eprintln!("crash test: {rounds} kills, {verified} responses verified, {hits} hits, 0 wrong");
    let _ = std::fs::remove_dir_all(&dir);
}
