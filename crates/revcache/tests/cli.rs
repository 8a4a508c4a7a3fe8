//! The `revcache` binary as a user runs it: help, flag and config errors,
//! serving, JSON logs and graceful shutdown on SIGTERM.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

mod support;

fn revcache() -> Command {
    Command::new(env!("CARGO_BIN_EXE_revcache"))
}

fn run(args: &[&str]) -> Output {
    revcache().args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "revcache-cli-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn help_reads_like_a_unix_tool() {
    let top = run(&["--help"]);
    assert!(top.status.success());
    let text = String::from_utf8_lossy(&top.stdout);
    assert!(text.contains("Usage: revcache"), "{text}");
    assert!(text.contains("serve"), "{text}");
    let serve = run(&["serve", "--help"]);
    let text = String::from_utf8_lossy(&serve.stdout);
    for flag in [
        "--upstream <URL>",
        "--listen <ADDR>",
        "--admin-listen <ADDR>",
        "--data-dir <DIR>",
        "--config <FILE>",
        "--memory-limit <SIZE>",
        "Examples:",
    ] {
        assert!(text.contains(flag), "serve --help lacks {flag}:\n{text}");
    }
    assert!(run(&["--version"]).status.success());
}

#[test]
fn unknown_flags_exit_2_with_usage() {
    let o = run(&["serve", "--upstreams", "http://x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--upstream"), "{}", stderr(&o));
}

#[test]
fn serve_without_an_upstream_says_how_to_fix_it() {
    let o = run(&["serve"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("pass --upstream URL"), "{}", stderr(&o));
}

#[test]
fn invalid_config_values_name_the_key() {
    let dir = temp_dir("cfg");
    let cases = [
        (
            "upstream = \"http://127.0.0.1:1\"\n[limits]\nupstream_read_timeout = \"soon\"\n",
            "limits.upstream_read_timeout",
        ),
        (
            "upstream = \"http://127.0.0.1:1\"\n[limits]\nmax_body = 3\n",
            "max_body",
        ),
        ("[[routes]]\nupstream = \"ftp://x\"\n", "routes[0].upstream"),
        (
            "upstream = \"http://127.0.0.1:1\"\nlisten = 8080\n",
            "listen",
        ),
        ("this is not toml", "config file"),
    ];
    for (text, key) in cases {
        let path = dir.join("revcache.toml");
        std::fs::write(&path, text).unwrap();
        let o = run(&["serve", "--config", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{text}");
        let err = stderr(&o);
        assert!(
            err.contains(key),
            "{text:?}: error should name {key}: {err}"
        );
        assert!(err.starts_with("revcache: error:"), "{err}");
    }
    let o = run(&[
        "serve",
        "--upstream",
        "http://127.0.0.1:1",
        "--memory-limit",
        "lots",
    ]);
    assert!(stderr(&o).contains("--memory-limit"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(dir);
}

/// A tiny HTTP/1.1 origin: `/slow` answers after 800 ms, the rest at once.
fn origin() -> SocketAddr {
    support::origin(|head| {
        if head.first().is_some_and(|l| l.contains("/slow")) {
            thread::sleep(Duration::from_millis(800));
        }
        "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nCache-Control: max-age=60\r\n\r\nfrom origin"
            .into()
    })
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

struct Running {
    child: Child,
    listen: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(upstream: SocketAddr, data_dir: &Path, extra: &[&str]) -> Running {
    let (listen, admin) = (free_port(), free_port());
    let child = revcache()
        .args(["serve", "--upstream", &format!("http://{upstream}")])
        .args([
            "--listen",
            &listen.to_string(),
            "--admin-listen",
            &admin.to_string(),
        ])
        .args(["--data-dir", data_dir.to_str().unwrap()])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(admin).is_err() {
        assert!(Instant::now() < deadline, "revcache did not start");
        thread::sleep(Duration::from_millis(50));
    }
    assert!(get(admin, "/healthz").contains("200 OK"));
    Running { child, listen }
}

#[test]
fn serve_caches_and_logs_json_lines_when_asked() {
    let upstream = origin();
    let dir = temp_dir("json");
    let mut rc = serve(
        upstream,
        &dir,
        &["--log-format", "json", "--log-level", "debug"],
    );
    assert!(get(rc.listen, "/a").contains("fwd=uri-miss"));
    let hit = get(rc.listen, "/a");
    assert!(hit.contains("cache-status: revcache; hit"), "{hit}");
    assert!(hit.ends_with("from origin"));
    send_signal(&rc.child, "TERM");
    let status = rc.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let logs = stderr_of(&mut rc.child);
    let request_lines: Vec<_> = logs
        .lines()
        .filter(|l| l.contains("\"message\":\"request\""))
        .collect();
    assert_eq!(request_lines.len(), 2, "{logs}");
    for line in logs.lines() {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "not a JSON line: {line}"
        );
    }
    assert!(std::fs::metadata(dir.join("partition.key")).is_ok());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let upstream = origin();
    let dir = temp_dir("term");
    let mut rc = serve(upstream, &dir, &[]);
    let listen = rc.listen;
    let slow = thread::spawn(move || get(listen, "/slow"));
    thread::sleep(Duration::from_millis(200));
    send_signal(&rc.child, "TERM");
    let answer = slow.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("from origin"));
    let status = rc.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(TcpStream::connect(listen).is_err());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_busy_port_is_reported_with_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = temp_dir("busy");
    let o = run(&[
        "serve",
        "--upstream",
        "http://127.0.0.1:1",
        "--listen",
        &addr,
        "--data-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(&addr), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(dir);
}

/// Everything an exited child wrote to its (piped) standard error.
fn stderr_of(child: &mut Child) -> String {
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    logs
}

/// Sends a signal with the system's `kill`, so the test needs no libc crate.
fn send_signal(child: &Child, signal: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// What `revcache ARGS` shows on a terminal: run under `script` (util-linux),
/// which gives it a pseudo-terminal and copies what it writes there.
fn on_a_terminal(args: &str) -> String {
    let command = format!("{} {args}", env!("CARGO_BIN_EXE_revcache"));
    let o = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs a command on a pseudo-terminal");
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn inspect_and_sweep_work_on_a_stopped_data_dir() {
    let upstream = origin();
    let dir = temp_dir("maint");
    let config = dir.join("revcache.toml");
    let data = dir.join("data");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[disk]\naccess_bucket = \"1s\"\nmax_idle = \"1s\"\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut rc = serve(upstream, &data, &["--config", config.to_str().unwrap()]);
    get(rc.listen, "/one");
    get(rc.listen, "/two?x=1");
    send_signal(&rc.child, "TERM");
    assert!(rc.child.wait().unwrap().success());

    let o = run(&["inspect", "--config", config.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(text.contains("/one") && text.contains("/two?x=1"), "{text}");
    assert!(text.contains("2 entries"), "{text}");
    assert_eq!(stderr(&o), "", "no progress line when stderr is a pipe");
    let on_terminal = on_a_terminal(&format!("inspect --config {}", config.display()));
    assert!(
        on_terminal.contains("\rinspect: 0 of 2 disk entries read (0%)\x1b[K"),
        "{on_terminal:?}"
    );
    assert!(
        on_terminal.contains("\r\x1b[K"),
        "the line is cleared: {on_terminal:?}"
    );
    assert!(on_terminal.contains("2 entries"), "{on_terminal:?}");
    let o = run(&[
        "inspect",
        "--config",
        config.to_str().unwrap(),
        "--url",
        "/one",
        "--json",
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("\"tier\":\"l2\""), "{text}");

    thread::sleep(Duration::from_millis(2100));
    let o = run(&["sweep", "--config", config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("swept 2 idle"), "{text}");
    assert_eq!(stderr(&o), "", "no progress line when stderr is a pipe");
    let on_terminal = on_a_terminal(&format!("sweep --config {}", config.display()));
    assert!(
        on_terminal.contains("\rsweep: 0 idle and 0 over-budget entries removed, 0 left"),
        "{on_terminal:?}"
    );
    let o = run(&["inspect", "--data-dir", data.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 entries"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn inspect_and_sweep_ask_the_running_instance_that_holds_the_data_dir() {
    let upstream = origin();
    let dir = temp_dir("running");
    let admin = free_port();
    let listen = free_port();
    let mut child = revcache()
        .args(["serve", "--upstream", &format!("http://{upstream}")])
        .args([
            "--listen",
            &listen.to_string(),
            "--admin-listen",
            &admin.to_string(),
        ])
        .args(["--data-dir", dir.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(admin).is_err() {
        assert!(Instant::now() < deadline);
        thread::sleep(Duration::from_millis(50));
    }
    get(listen, "/held");
    let admin_flag = admin.to_string();
    let o = run(&[
        "inspect",
        "--data-dir",
        dir.to_str().unwrap(),
        "--admin-listen",
        &admin_flag,
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(text.contains("/held"), "{text}");
    let o = run(&[
        "sweep",
        "--data-dir",
        dir.to_str().unwrap(),
        "--admin-listen",
        &admin_flag,
    ]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("by the running instance"),
        "{}",
        stderr(&o)
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn maintenance_commands_refuse_a_directory_that_is_not_a_data_dir() {
    let dir = temp_dir("notdata");
    let o = run(&["inspect", "--data-dir", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a revcache data dir"),
        "{}",
        stderr(&o)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn out_of_file_descriptors_the_accept_loop_backs_off_and_recovers() {
    let upstream = origin();
    let dir = temp_dir("emfile");
    let (listen, admin) = (free_port(), free_port());
    // The cap (1024 by default) is above this open-file limit, so accepts
    // fail with EMFILE once the hogs below take the spare descriptors.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 64 && exec '{}' serve --upstream http://{upstream} --listen {listen} --admin-listen {admin} --data-dir '{}' --log-level warn",
            env!("CARGO_BIN_EXE_revcache"),
            dir.display()
        ))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(admin).is_err() {
        assert!(Instant::now() < deadline, "revcache did not start");
        thread::sleep(Duration::from_millis(50));
    }
    let hogs: Vec<TcpStream> = (0..120)
        .filter_map(|_| TcpStream::connect(listen).ok())
        .collect();
    thread::sleep(Duration::from_millis(1500));
    drop(hogs);
    // Recovered: the next client is served.
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let a = get(listen, "/a");
        if a.starts_with("HTTP/1.1 200") || Instant::now() > deadline {
            break a;
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let metrics = get(admin, "/metrics");
    let errors: f64 = metrics
        .lines()
        .find(|l| l.starts_with("revcache_accept_errors_total{listener=\"proxy\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    let _ = child.kill();
    let _ = child.wait();
    let logs = stderr_of(&mut child);
    assert!(
        errors >= 1.0,
        "no accept failed; the test did not exhaust descriptors"
    );
    // 1.5 s of EMFILE at 5 ms doubling to 1 s is about 10 attempts; a
    // spinning loop makes thousands.
    assert!(errors <= 40.0, "{errors} failed accepts in 1.5 s");
    let warnings = logs.lines().filter(|l| l.contains("accept failed")).count();
    // One warning per episode and listener (both listeners share the
    // descriptor limit, and the recovery may briefly start a second
    // episode); a spinning loop logs thousands.
    assert!(warnings <= 6, "{warnings} accept warnings:\n{logs}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn check_validates_a_config_and_its_tls_files_without_starting() {
    let dir = temp_dir("check");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("revcache.toml");
    let write = |text: &str| std::fs::write(&config, text).unwrap();
    let check = || run(&["check", "--config", config.to_str().unwrap()]);

    write("upstream = \"https://review.example.org\"\nlisten = \"127.0.0.1:1\"\n");
    let ok = check();
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("is valid (1 route)"));

    write("upstream = \"http://127.0.0.1:1\"\n[limits]\nupstream_read_timeout = \"soon\"\n");
    let bad = check();
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("limits.upstream_read_timeout"),
        "{}",
        stderr(&bad)
    );

    write(&format!(
        "upstream = \"http://127.0.0.1:1\"\n[tls]\ncert_file = \"{0}/missing.pem\"\nkey_file = \"{0}/missing.key\"\n",
        dir.display()
    ));
    let tls = check();
    assert_eq!(tls.status.code(), Some(1));
    assert!(stderr(&tls).contains("tls.cert_file"), "{}", stderr(&tls));

    write(
        "[[routes]]\nupstream = \"https://x.example\"\n[routes.tls]\nca_file = \"/nonexistent/ca.pem\"\n",
    );
    let ca = check();
    assert_eq!(ca.status.code(), Some(1));
    assert!(stderr(&ca).contains("tls.ca_file"), "{}", stderr(&ca));
    let _ = std::fs::remove_dir_all(dir);
}

/// A throwaway CA and a certificate for localhost it signs, written as
/// `<name>-ca.pem`, and `cert.pem`/`key.pem` (what the config names).
fn issue_listener_certificate(dir: &Path, name: &str) -> PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf = leaf.signed_by(&key, &ca, &ca_key).unwrap();
    let ca_file = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    ca_file
}

/// `curl` over the TLS listener trusting only `ca_file`: the response
/// head and body, or `None` when the handshake is refused.
fn curl_tls(addr: SocketAddr, path: &str, ca_file: &Path) -> Option<String> {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "10", "--cacert"])
        .arg(ca_file)
        .arg(format!("https://localhost:{}{path}", addr.port()))
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits until the instance has counted `n` reloads with `result`.
fn wait_for_reloads(admin: SocketAddr, result: &str, n: u32) {
    let line = format!("revcache_config_reloads_total{{result=\"{result}\"}} {n}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if get(admin, "/metrics").contains(&line) {
            return;
        }
        assert!(Instant::now() < deadline, "no {line}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_reloads_routes_refuses_a_bad_config_and_renews_the_listener_certificate() {
    let upstream = origin();
    let dir = temp_dir("reload");
    let first_ca = issue_listener_certificate(&dir, "first");
    let (listen, admin, tls) = (free_port(), free_port(), free_port());
    let config = dir.join("revcache.toml");
    let write_config = |routes: &[(&str, &str)]| {
        let mut text = format!(
            "listen = \"{listen}\"\ndata_dir = \"{0}/data\"\n[admin]\nlisten = \"{admin}\"\n[tls]\nlisten = \"{tls}\"\ncert_file = \"{0}/cert.pem\"\nkey_file = \"{0}/key.pem\"\n",
            dir.display()
        );
        for (name, prefix) in routes {
            text += &format!(
                "[[routes]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\nupstream = \"http://{upstream}\"\n"
            );
        }
        std::fs::write(&config, text).unwrap();
    };
    write_config(&[("a", "/a"), ("b", "/b")]);
    let mut rc = Running {
        child: revcache()
            .args(["serve", "--config", config.to_str().unwrap()])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        listen,
    };
    let child = &mut rc.child;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(admin).is_err() {
        assert!(Instant::now() < deadline, "revcache did not start");
        thread::sleep(Duration::from_millis(50));
    }
    let hit = |path: &str| get(listen, path).contains("cache-status: revcache; hit");
    assert!(get(listen, "/a/x").contains("fwd=uri-miss"));
    assert!(hit("/a/x"));
    assert!(get(listen, "/b/y").starts_with("HTTP/1.1 200"));

    // A changed route set: b goes, c comes, a keeps serving its entries.
    write_config(&[("a", "/a"), ("c", "/c")]);
    send_signal(child, "HUP");
    wait_for_reloads(admin, "applied", 1);
    assert!(get(listen, "/b/y").starts_with("HTTP/1.1 404"));
    assert!(get(listen, "/c/z").starts_with("HTTP/1.1 200"));
    assert!(hit("/a/x"), "a kept route keeps its cached entries");

    // An invalid config is refused; the previous one stays in force.
    std::fs::write(&config, "[[routes]]\nupstream = \"ftp://nowhere\"\n").unwrap();
    send_signal(child, "HUP");
    wait_for_reloads(admin, "rejected", 1);
    assert!(hit("/a/x"));
    assert!(get(listen, "/c/z").starts_with("HTTP/1.1 200"));
    assert!(curl_tls(tls, "/a/x", &first_ca).is_some());

    // Renewed listener certificate (a new CA, same files): new handshakes
    // get it, and the cache still answers over TLS.
    let second_ca = issue_listener_certificate(&dir, "second");
    write_config(&[("a", "/a"), ("c", "/c")]);
    send_signal(child, "HUP");
    wait_for_reloads(admin, "applied", 2);
    let over_tls = curl_tls(tls, "/a/x", &second_ca).expect("the renewed certificate is served");
    assert!(
        over_tls.contains("cache-status: revcache; hit"),
        "{over_tls}"
    );
    assert!(curl_tls(tls, "/a/x", &first_ca).is_none());

    send_signal(child, "TERM");
    assert!(child.wait().unwrap().success());
    let logs = stderr_of(child);
    assert!(
        logs.contains("config reload refused") && logs.contains("routes[0].upstream"),
        "{logs}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Waits until `path` holds `n` lines (the child writes them).
fn wait_for_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= n {
            return text.lines().map(str::to_owned).collect();
        }
        assert!(
            Instant::now() < deadline,
            "{} has no {n} lines: {text}",
            path.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigusr1_reopens_the_access_log_after_logrotate_moved_it() {
    let upstream = origin();
    let dir = temp_dir("access-log");
    let (listen, admin) = (free_port(), free_port());
    let config = dir.join("revcache.toml");
    let log = dir.join("access.log");
    std::fs::write(
        &config,
        format!(
            "upstream = \"http://{upstream}\"\nlisten = \"{listen}\"\ndata_dir = \"{0}/data\"\n[admin]\nlisten = \"{admin}\"\n[access_log]\npath = \"{1}\"\nformat = \"json\"\n",
            dir.display(),
            log.display()
        ),
    )
    .unwrap();
    let rc = Running {
        child: revcache()
            .args(["serve", "--config", config.to_str().unwrap()])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        listen,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(admin).is_err() {
        assert!(Instant::now() < deadline, "revcache did not start");
        thread::sleep(Duration::from_millis(50));
    }
    get(listen, "/first?access_token=s3cret");
    let first = wait_for_lines(&log, 1);
    assert!(
        first[0].contains("\"target\":\"/first?access_token=REDACTED\""),
        "{first:?}"
    );
    let rotated = dir.join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    send_signal(&rc.child, "USR1");
    // The signal is handled at some point after `kill` returns: ask until
    // a line lands in the new file.
    let deadline = Instant::now() + Duration::from_secs(10);
    let second = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            break vec![line.to_owned()];
        }
        assert!(Instant::now() < deadline, "the access log was not reopened");
        get(listen, "/second");
        thread::sleep(Duration::from_millis(20));
    };
    assert!(second[0].contains("\"target\":\"/second\""), "{second:?}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("/first"), "{old}");
    drop(rc);
    let _ = std::fs::remove_dir_all(dir);
}
