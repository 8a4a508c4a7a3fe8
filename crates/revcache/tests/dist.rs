//! What packagers install: the systemd unit in `dist/` (hardened, reloads
//! with SIGHUP, its command line one revcache accepts, and clean under
//! `systemd-analyze`), shell completions and man pages generated from the
//! CLI definition.

use std::path::{Path, PathBuf};
use std::process::Command;

fn revcache() -> Command {
    Command::new(env!("CARGO_BIN_EXE_revcache"))
}

fn dist(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../dist")
        .join(file)
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("revcache-dist-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The unit's `Key=value` lines (comments and sections left out).
fn unit_settings() -> Vec<(String, String)> {
    std::fs::read_to_string(dist("revcache.service"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn setting(settings: &[(String, String)], key: &str) -> String {
    settings
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("the unit sets no {key}"))
}

#[test]
fn the_systemd_unit_is_hardened_and_reloads_with_sighup() {
    let unit = unit_settings();
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("StateDirectory", "revcache"),
        ("LogsDirectory", "revcache"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ] {
        assert_eq!(setting(&unit, key), value, "{key}");
    }
    // The data dir is the state directory, so revcache may write there.
    assert!(setting(&unit, "ExecStart").contains("--data-dir /var/lib/revcache"));
}

#[test]
fn the_units_command_lines_are_ones_revcache_accepts() {
    let unit = unit_settings();
    for key in ["ExecStartPre", "ExecStart"] {
        let line = setting(&unit, key);
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some("/usr/bin/revcache"), "{line}");
        // --help after the unit's own flags: clap refuses an unknown flag
        // or a missing value before it prints help.
        let out = revcache().args(words).arg("--help").output().unwrap();
        assert!(
            out.status.success(),
            "{key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn systemd_analyze_finds_the_unit_valid_and_its_exposure_low() {
    // The unit as installed, with the binary where this build put it.
    let dir = temp_dir("unit");
    let unit = std::fs::read_to_string(dist("revcache.service"))
        .unwrap()
        .replace("/usr/bin/revcache", env!("CARGO_BIN_EXE_revcache"));
    let path = dir.join("revcache.service");
    std::fs::write(&path, unit).unwrap();
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian's systemd; scripts/test.sh installs it)");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    // Exposure 0.0 (locked down) to 10.0 (unprotected), in tenths.
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        security.status.success(),
        "exposure above 2.0: {}",
        String::from_utf8_lossy(&security.stdout)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn completions_are_generated_for_every_shell_clap_knows() {
    for (shell, marker) in [
        ("bash", "complete -F _revcache"),
        ("zsh", "#compdef revcache"),
        ("fish", "complete -c revcache"),
        ("elvish", "edit:completion:arg-completer[revcache]"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = revcache().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("upstream"),
            "{shell} completes serve's flags"
        );
    }
    let bad = revcache().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("possible values"));
}

#[test]
fn man_pages_are_generated_for_revcache_and_each_command() {
    let out = revcache().arg("man").output().unwrap();
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH revcache 1"), "{page}");
    assert!(page.contains("SIGUSR1 reopens the access log"), "{page}");

    let dir = temp_dir("man");
    let out = revcache()
        .args(["man", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "revcache",
        "revcache-serve",
        "revcache-sweep",
        "revcache-inspect",
        "revcache-check",
    ] {
        let page = std::fs::read_to_string(dir.join(format!("{name}.1"))).unwrap();
        assert!(page.contains(&format!(".TH {name} 1")), "{name}: {page}");
    }
    let serve = std::fs::read_to_string(dir.join("revcache-serve.1")).unwrap();
    assert!(serve.contains("upstream"), "{serve}");
    let _ = std::fs::remove_dir_all(dir);
}
