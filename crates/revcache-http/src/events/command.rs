//! A command feed: runs a command (for example `ssh -p 29418 ci@review
//! gerrit stream-events`) and reads one JSON event per line from its
//! standard output. The feed is healthy from the command's first line (a
//! command that is still connecting, or hangs doing so, is not trusted);
//! when the command exits it is unhealthy, and the command is restarted
//! with exponential backoff (1 s doubling to 60 s, reset after a run of a
//! minute or more). A line longer than 4 MiB is skipped as it streams,
//! never buffered whole.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::dialect::Dialect;
use crate::events::Event;
use crate::proxy::Proxy;
use crate::route::{Route, Router};

const MAX_LINE: usize = 4 << 20;

/// The command feeds running, one per route that has one. A reload keeps
/// a feed whose route kept its dialect (and so its feed state) and command,
/// and restarts or stops the others.
#[derive(Default)]
pub struct CommandFeeds {
    running: std::sync::Mutex<Vec<Running>>,
}

struct Running {
    dialect: Arc<dyn Dialect>,
    command: String,
    task: tokio::task::JoinHandle<()>,
}

impl CommandFeeds {
    /// Runs exactly the feeds `router`'s routes name.
    pub fn sync(&self, proxy: &Arc<Proxy>, router: &Router) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = Vec::new();
        for route in router.routes() {
            let Some(command) = route.events.as_ref().and_then(|e| e.command.clone()) else {
                continue;
            };
            let same = running
                .iter()
                .position(|r| Arc::ptr_eq(&r.dialect, &route.dialect) && r.command == command);
            match same {
                Some(i) => next.push(running.swap_remove(i)),
                None => next.push(Running {
                    dialect: route.dialect.clone(),
                    task: tokio::spawn(run(proxy.clone(), route.clone(), command.clone())),
                    command,
                }),
            }
        }
        for gone in running.drain(..) {
            gone.task.abort();
        }
        *running = next;
    }

    /// Stops every feed (their commands are killed).
    pub fn stop(&self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        for feed in running.drain(..) {
            feed.task.abort();
        }
    }
}

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
                tracing::info!(route = %route.name, "event feed command started");
                if let Some(stdout) = child.stdout.take() {
                    let mut lines = BufReader::new(stdout);
                    let mut line = Vec::new();
                    let mut first = true;
                    loop {
                        let read = read_line(&mut lines, &mut line, MAX_LINE).await;
                        if first && matches!(read, Ok(Line::Complete | Line::TooLong(_))) {
                            first = false;
                            feed.connected(proxy.cache().clock().now());
                            tracing::info!(route = %route.name, "event feed connected (first line read)");
                        }
                        match read {
                            Ok(Line::End) => break,
                            Ok(Line::TooLong(bytes)) => {
                                tracing::warn!(route = %route.name, bytes, limit = MAX_LINE, "event line too long; skipped");
                            }
                            Ok(Line::Complete) if line.iter().all(u8::is_ascii_whitespace) => {}
                            Ok(Line::Complete) => {
                                // Rejections are counted and logged inside;
                                // a bad line never stops the feed.
                                let _ = proxy
                                    .invalidator()
                                    .ingest(&route, &[Event::line(&line)])
                                    .await;
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

/// What [`read_line`] read.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A line (without its newline, or the last one without any) is in the buffer.
    Complete,
    /// A line of this many bytes was longer than the limit and skipped.
    TooLong(usize),
    /// End of output.
    End,
}

/// Reads one line into `line` (cleared first), holding at most `max`
/// bytes of it: a longer line is consumed and discarded as it arrives.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    line.clear();
    let mut total = 0usize;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(match total {
                0 => Line::End,
                n if n > max => Line::TooLong(n),
                _ => Line::Complete,
            });
        }
        let (part, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        total += part.len();
        if total <= max {
            line.extend_from_slice(part);
        } else {
            line.clear();
        }
        let used = done.unwrap_or(part.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(if total > max {
                Line::TooLong(total)
            } else {
                Line::Complete
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_line_over_the_limit_is_skipped_without_being_held() {
        let mut input = Vec::new();
        input.extend_from_slice(b"{\"a\":1}\n");
        input.extend(std::iter::repeat_n(b'x', 10_000));
        input.extend_from_slice(b"\n{\"b\":2}");
        let mut reader = BufReader::with_capacity(64, &input[..]);
        let mut line = Vec::new();
        assert_eq!(
            read_line(&mut reader, &mut line, 100).await.unwrap(),
            Line::Complete
        );
        assert_eq!(line, b"{\"a\":1}");
        assert_eq!(
            read_line(&mut reader, &mut line, 100).await.unwrap(),
            Line::TooLong(10_000)
        );
        assert!(
            line.capacity() <= 200,
            "held {} bytes of the long line",
            line.capacity()
        );
        assert_eq!(
            read_line(&mut reader, &mut line, 100).await.unwrap(),
            Line::Complete
        );
        assert_eq!(line, b"{\"b\":2}");
        assert_eq!(
            read_line(&mut reader, &mut line, 100).await.unwrap(),
            Line::End
        );
    }
}
