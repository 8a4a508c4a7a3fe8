//! Every ready-made config in `examples/` passes `revcache check`.
//!
//! The files name secrets under `/etc/revcache/`; the test writes stand-ins
//! in a temp dir and points the config there, as an operator's own paths
//! would be.

use std::path::{Path, PathBuf};
use std::process::Command;

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// `text` with every `/etc/revcache/NAME` moved under `dir`, where a
/// stand-in file is written.
fn with_local_files(text: &str, dir: &Path) -> String {
    const ETC: &str = "/etc/revcache/";
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(ETC) {
        out.push_str(&rest[..at]);
        let after = &rest[at + ETC.len()..];
        let end = after.find(['"', '\'', ' ', '\n']).unwrap_or(after.len());
        let name = &after[..end];
        std::fs::write(dir.join(name), "example-secret-value\n").unwrap();
        out.push_str(&dir.join(name).display().to_string());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn every_example_config_passes_revcache_check() {
    let files = examples();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "gerrit-stream-events.toml",
        "gerrit-webhooks.toml",
        "github.toml",
        "webdav-apache.toml",
        "http-api.toml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "no {expected} in {names:?}"
        );
    }
    let dir = std::env::temp_dir().join(format!("revcache-examples-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let config = dir.join(file.file_name().unwrap());
        std::fs::write(&config, with_local_files(&text, &dir)).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_revcache"))
            .args(["check", "--config", config.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} fails revcache check: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("is valid"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_stream_events_example_makes_a_dead_ssh_connection_visible() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gerrit-stream-events.toml"),
    )
    .unwrap();
    let command = text
        .lines()
        .find(|l| l.starts_with("command = "))
        .expect("a command feed");
    for option in [
        "ServerAliveInterval=15",
        "ServerAliveCountMax=3",
        "BatchMode=yes",
    ] {
        assert!(command.contains(option), "{command}");
    }
}
