//! Crash safety: revcache runs as a child process under continuous load
//! while the origin keeps changing its resources; it is killed with
//! SIGKILL at random moments and restarted on the same data dir, again and
//! again. Every response served at any point must be byte-identical to what
//! the origin served for the version its ETag names: no torn bodies, no
//! body under the wrong ETag, and every start-up must succeed. Meanwhile
//! resources are written through revcache (PUT) and purged through its
//! admin API: once either was acknowledged, no request sent later gets a
//! version older than the one it made current, whatever crashed since.

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

/// Each path's current version at the origin.
type Versions = Arc<Mutex<HashMap<&'static str, u64>>>;

/// An origin whose resources change version all the time; a PUT makes a
/// new version of its path.
fn origin(stop: Arc<AtomicBool>) -> (SocketAddr, Versions) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let versions: Versions = Arc::default();
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
    let served = versions.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let versions = served.clone();
            thread::spawn(move || serve_origin(stream, &versions));
        }
    });
    (addr, versions)
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
        if first.starts_with("PUT ") {
            *versions.lock().unwrap().entry(known).or_insert(0) += 1;
            if stream
                .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .is_err()
            {
                return;
            }
            continue;
        }
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

/// A revcache child: the process, its proxy and its admin address.
fn start(upstream: SocketAddr, dir: &std::path::Path) -> (Child, SocketAddr, SocketAddr) {
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
    (child, listen, admin)
}

/// Sends `method path` (no body) to `addr` (named in `Host`, as the
/// admin API wants); the status, or `None` when nothing answered whole
/// (revcache was killed).
fn send(addr: SocketAddr, method: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let head = String::from_utf8_lossy(&raw);
    head.split(' ').nth(1)?.parse().ok()
}

/// The newest version each path must be served at, at least, by requests
/// sent after `Instant`: what an acknowledged write or purge made current.
type Floors = Arc<Mutex<HashMap<&'static str, (u64, Instant)>>>;

#[test]
fn sigkill_at_random_moments_never_serves_a_wrong_or_torn_body() {
    let rounds = std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let stop = Arc::new(AtomicBool::new(false));
    let (upstream, versions) = origin(stop.clone());
    let floors: Floors = Arc::default();
    let admin: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let dir = std::env::temp_dir().join(format!("revcache-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let current: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let (verified, hits) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..3)
        .map(|i| {
            let (current, failures, stop) = (current.clone(), failures.clone(), stop.clone());
            let (verified, hits) = (verified.clone(), hits.clone());
            let floors = floors.clone();
            thread::spawn(move || {
                let mut rng = Rng(0xdead_beef + i);
                while !stop.load(Ordering::Relaxed) {
                    let Some(addr) = *current.lock().unwrap() else {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let (path, _) = PATHS[rng.below(PATHS.len() as u64) as usize];
                    let sent = Instant::now();
                    match fetch(addr, path) {
                        Ok(Some((hit, version))) => {
                            verified.fetch_add(1, Ordering::Relaxed);
                            if hit {
                                hits.fetch_add(1, Ordering::Relaxed);
                            }
                            if let Some((floor, acked)) = floors.lock().unwrap().get(path)
                                && *acked < sent
                                && version < *floor
                            {
                                failures.lock().unwrap().push(format!(
                                    "{path}: version {version} served after a write or purge made {floor} current"
                                ));
                            }
                        }
                        Ok(None) => {}
                        Err(e) => failures.lock().unwrap().push(e),
                    }
                }
            })
        })
        .collect();
    // Writes through revcache and purges through its admin API.
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (current, admin, stop) = (current.clone(), admin.clone(), stop.clone());
        let (versions, floors, writes) = (versions.clone(), floors.clone(), writes.clone());
        thread::spawn(move || {
            let mut rng = Rng(0xfeed);
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(20));
                let (Some(proxy), Some(admin)) = (*current.lock().unwrap(), *admin.lock().unwrap())
                else {
                    continue;
                };
                let (path, _) = PATHS[rng.below(PATHS.len() as u64) as usize];
                // Versions only grow: what is current once the write or
                // purge is acknowledged is at least `floor`.
                let (acked, floor) = if rng.below(2) == 0 {
                    let before = versions.lock().unwrap().get(path).copied().unwrap_or(0);
                    (
                        send(proxy, "PUT", path).is_some_and(|s| s == 204),
                        before + 1,
                    )
                } else {
                    // The origin changes behind revcache's back; the
                    // operator purges.
                    let bumped = {
                        let mut v = versions.lock().unwrap();
                        let n = v.entry(path).or_insert(0);
                        *n += 1;
                        *n
                    };
                    let purged = send(admin, "POST", &format!("/purge?url={path}"));
                    (purged.is_some_and(|s| s == 200), bumped)
                };
                if acked {
                    floors.lock().unwrap().insert(path, (floor, Instant::now()));
                    writes.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let mut rng = Rng(0x5eed);
    for _ in 0..rounds {
        let (mut child, listen, admin_addr) = start(upstream, &dir);
        *admin.lock().unwrap() = Some(admin_addr);
        *current.lock().unwrap() = Some(listen);
        thread::sleep(Duration::from_millis(300 + rng.below(700)));
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        *current.lock().unwrap() = None;
        *admin.lock().unwrap() = None;
        let mut stderr = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
        assert!(!stderr.contains("panicked"), "revcache panicked:\n{stderr}");
    }
    // A last, clean run: every path is served correctly after all that.
    let (mut child, listen, _) = start(upstream, &dir);
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
    writer.join().unwrap();
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
    let writes = writes.load(Ordering::Relaxed);
    assert!(writes > 10, "only {writes} writes and purges acknowledged");
    eprintln!(
        "crash test: {rounds} kills, {verified} responses verified, {hits} hits, {writes} writes and purges acknowledged, 0 wrong"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
