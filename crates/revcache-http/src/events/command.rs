//! A command feed: runs a command (for example `ssh -p 29418 ci@review
//! gerrit stream-events`) and reads one JSON event per line from its
//! standard output. When the command exits the feed is unhealthy; it is
//! restarted with exponential backoff (1 s doubling to 60 s, reset after a
//! run of a minute or more).

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::proxy::Proxy;
use crate::route::Route;

const MAX_LINE: usize = 4 << 20;

/// Runs the feed until the task is dropped.
pub async fn run(proxy: Arc<Proxy>, route: Arc<Route>, command: String) {
    let Some(feed) = route.dialect.feed() else {
        return;
    };
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        match Command::new("sh")
            .arg("-c")
            .arg(&command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(mut child) => {
                feed.connected(SystemTime::now());
                tracing::info!(route = %route.name, "event feed command started");
                if let Some(stdout) = child.stdout.take() {
                    let mut lines = BufReader::new(stdout);
                    let mut line = Vec::new();
                    loop {
                        line.clear();
                        match lines.read_until(b'\n', &mut line).await {
                            Ok(0) => break,
                            Ok(_) if line.len() > MAX_LINE => {
                                tracing::warn!(route = %route.name, bytes = line.len(), "event line too long; skipped");
                            }
                            Ok(_) if line.iter().all(u8::is_ascii_whitespace) => {}
                            Ok(_) => {
                                // Rejections are counted and logged inside;
                                // a bad line never stops the feed.
                                let _ = proxy.ingest_event(&route, &line).await;
                            }
                            Err(e) => {
                                tracing::warn!(route = %route.name, error = %e, "event feed read failed");
                                break;
                            }
                        }
                    }
                }
                let status = child.wait().await;
                feed.disconnected();
                tracing::warn!(route = %route.name, ?status, "event feed command exited; entries will be revalidated");
            }
            Err(e) => {
                feed.disconnected();
                tracing::warn!(route = %route.name, error = %e, "cannot start event feed command");
            }
        }
        if started.elapsed() >= Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}
