//! A command feed: runs a command (for example `ssh -p 29418 ci@review
//! gerrit stream-events`) and reads one JSON event per line from its
//! standard output. The feed is healthy from the command's first line (a
//! command that is still connecting, or hangs doing so, is not trusted);
//! when the command exits it is unhealthy, and the command is restarted
//! with exponential backoff (1 s doubling to 60 s, reset after a run of a
//! minute or more). A line longer than 4 MiB is skipped as it streams,
//! never buffered whole.
//!
//! With a shared tier the command runs on one node at a time, the holder
//! of the route's lease in Redis; the other nodes follow the health it
//! reports and take the lease over when it is not renewed (its holder
//! died, or lost Redis). While Redis cannot be reached nobody holds it,
//! and nobody trusts the feed.

use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use tokio::io::AsyncRead;
use tokio::process::Command;
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, Decoder, FramedRead};

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
    running: parking_lot::Mutex<Vec<Running>>,
}

struct Running {
    dialect: Arc<dyn Dialect>,
    command: String,
    task: tokio::task::JoinHandle<()>,
}

impl CommandFeeds {
    /// Runs exactly the feeds `router`'s routes name.
    pub fn sync(&self, proxy: &Arc<Proxy>, router: &Router) {
        let mut running = self.running.lock();
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
        let mut running = self.running.lock();
        for feed in running.drain(..) {
            feed.task.abort();
        }
    }
}

/// How long a command feed's lease lasts unrenewed: a dead holder's feed
/// is taken over within about this.
const LEASE_TTL: Duration = Duration::from_secs(3);
/// How often the holder renews it and the others try to take it.
const LEASE_RENEW: Duration = Duration::from_secs(1);

/// Runs the feed until the task is dropped. With a shared tier, only the
/// node holding the route's lease runs the command; the others follow the
/// health it reports (its events reach them as invalidations).
pub async fn run(proxy: Arc<Proxy>, route: Arc<Route>, command: String) {
    let Some(feed) = route.dialect.feed() else {
        return;
    };
    let Some(tier) = proxy.shared().cloned() else {
        return run_command(&proxy, &route, &command, feed).await;
    };
    let lease = format!("feed:{}", route.name);
    let now = || proxy.cache().clock().now();
    loop {
        // Taken, the feed is down until this node's command says something.
        if tier.hold_lease(&lease, LEASE_TTL, "down").await != Some(true) {
            feed.follow(tier.lease_state(&lease).await.as_deref(), now());
            tokio::time::sleep(LEASE_RENEW).await;
            continue;
        }
        tracing::info!(route = %route.name, "this node runs the event feed command (lease taken)");
        // Trust starts over with this node's own command.
        feed.disconnected();
        tokio::select! {
            () = run_command(&proxy, &route, &command, feed) => {}
            () = keep_lease(&tier, &lease, feed, &now) => {
                tracing::warn!(route = %route.name, "event feed lease lost; command stopped");
            }
        }
        feed.disconnected();
    }
}

/// Renews the lease with the feed's health until it is lost: another node
/// took it, or it could not be renewed before it expired.
async fn keep_lease(
    tier: &revcache_shared::SharedTier,
    lease: &str,
    feed: &crate::events::Feed,
    now: &impl Fn() -> std::time::SystemTime,
) {
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(LEASE_RENEW).await;
        match tier.hold_lease(lease, LEASE_TTL, &feed.report(now())).await {
            Some(true) => renewed = Instant::now(),
            Some(false) => return,
            None if renewed.elapsed() + LEASE_RENEW >= LEASE_TTL => return,
            None => {}
        }
    }
}

/// Runs the command, restarting it with backoff, until the future is
/// dropped (which kills it).
async fn run_command(
    proxy: &Arc<Proxy>,
    route: &Arc<Route>,
    command: &str,
    feed: &crate::events::Feed,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        match Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(mut child) => {
                tracing::info!(route = %route.name, "event feed command started");
                if let Some(stdout) = child.stdout.take() {
                    let mut lines = FramedRead::new(stdout, LineCodec::new(MAX_LINE));
                    let mut first = true;
                    loop {
                        let read = next_line(&mut lines).await;
                        if first && matches!(read, Some(Ok(_))) {
                            first = false;
                            feed.connected(proxy.cache().clock().now());
                            tracing::info!(route = %route.name, "event feed connected (first line read)");
                        }
                        match read {
                            None => break,
                            Some(Ok(Line::TooLong)) => {
                                tracing::warn!(route = %route.name, limit = MAX_LINE, "event line too long; skipped");
                            }
                            Some(Ok(Line::Complete(line)))
                                if line.iter().all(u8::is_ascii_whitespace) => {}
                            Some(Ok(Line::Complete(line))) => {
                                // Lines the command has already written
                                // reach the disk in one commit.
                                let mut batch = vec![line];
                                let end = ready_lines(&mut lines, &mut batch).await;
                                let events: Vec<Event<'_>> =
                                    batch.iter().map(|l| Event::line(l)).collect();
                                // Rejections are counted and logged inside;
                                // a bad line never stops the feed.
                                let _ = proxy.invalidator().ingest(route, &events).await;
                                match end {
                                    None => {}
                                    Some(Ok(())) => break,
                                    Some(Err(e)) => {
                                        tracing::warn!(route = %route.name, error = %e, "event feed read failed");
                                        break;
                                    }
                                }
                            }
                            Some(Err(e)) => {
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

/// One line of the command's output.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A line without its newline (the last one may have none).
    Complete(Bytes),
    /// A line longer than the limit, skipped as it streamed.
    TooLong,
}

/// tokio-util's newline codec bounded to `max` bytes a line, with an
/// over-long line as an item rather than an error: `FramedRead` ends its
/// stream at a decoder error, but an over-long line only skips that line
/// (the codec discards the rest of it as it arrives). Lines stay bytes, as
/// the invalidator takes them.
struct LineCodec(AnyDelimiterCodec);

impl LineCodec {
    fn new(max: usize) -> Self {
        LineCodec(AnyDelimiterCodec::new_with_max_length(
            b"\n".to_vec(),
            Vec::new(),
            max,
        ))
    }

    fn line(read: Result<Option<Bytes>, AnyDelimiterCodecError>) -> std::io::Result<Option<Line>> {
        match read {
            Ok(line) => Ok(line.map(Line::Complete)),
            Err(AnyDelimiterCodecError::MaxChunkLengthExceeded) => Ok(Some(Line::TooLong)),
            Err(AnyDelimiterCodecError::Io(e)) => Err(e),
        }
    }
}

impl Decoder for LineCodec {
    type Item = Line;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> std::io::Result<Option<Line>> {
        Self::line(self.0.decode(buf))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> std::io::Result<Option<Line>> {
        Self::line(self.0.decode_eof(buf))
    }
}

/// The next line, or `None` at the end of the output.
/// Most lines one commit takes.
const MAX_BATCH: usize = 1000;

/// Moves the lines already read from the command (up to [`MAX_BATCH`]) into
/// `batch` without waiting for more. `Some` when the output ended (`Ok`)
/// or failed meanwhile.
async fn ready_lines<R: AsyncRead + Unpin>(
    lines: &mut FramedRead<R, LineCodec>,
    batch: &mut Vec<Bytes>,
) -> Option<std::io::Result<()>> {
    while batch.len() < MAX_BATCH {
        // A zero timeout polls the read once: a line already buffered or
        // written is taken, and nothing is waited for. Reading a frame is
        // cancel-safe, so an unfinished line stays for the next read.
        match tokio::time::timeout(Duration::ZERO, next_line(lines)).await {
            Err(_nothing_ready) => return None,
            Ok(None) => return Some(Ok(())),
            Ok(Some(Err(e))) => return Some(Err(e)),
            Ok(Some(Ok(Line::TooLong))) => {
                tracing::warn!(limit = MAX_LINE, "event line too long; skipped");
            }
            Ok(Some(Ok(Line::Complete(line)))) => {
                if !line.iter().all(u8::is_ascii_whitespace) {
                    batch.push(line);
                }
            }
        }
    }
    None
}

async fn next_line<R: AsyncRead + Unpin>(
    lines: &mut FramedRead<R, LineCodec>,
) -> Option<std::io::Result<Line>> {
    std::future::poll_fn(|cx| Pin::new(&mut *lines).poll_next(cx)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_line_over_the_limit_is_skipped_without_being_held() {
        let mut input = Vec::new();
        input.extend_from_slice(b"{\"a\":1}\n");
        input.extend(std::iter::repeat_n(b'x', 1 << 20));
        input.extend_from_slice(b"\n \r\n{\"b\":2}\n");
        input.extend(std::iter::repeat_n(b'y', 1000));
        let mut lines = FramedRead::new(&input[..], LineCodec::new(100));
        let mut next = async || next_line(&mut lines).await.map(Result::unwrap);
        assert_eq!(next().await, Some(Line::Complete("{\"a\":1}".into())));
        assert_eq!(next().await, Some(Line::TooLong));
        assert_eq!(next().await, Some(Line::Complete(" \r".into())));
        assert_eq!(next().await, Some(Line::Complete("{\"b\":2}".into())));
        // The last line, over the limit and without a newline.
        assert_eq!(next().await, Some(Line::TooLong));
        assert_eq!(next().await, None);
        assert!(
            lines.read_buffer().capacity() < 64 << 10,
            "held {} bytes of a 1 MiB line",
            lines.read_buffer().capacity()
        );
    }

    #[tokio::test]
    async fn lines_already_written_are_taken_together_without_waiting_for_more() {
        use tokio::io::AsyncWriteExt;
        let (mut writer, reader) = tokio::io::duplex(1 << 16);
        writer.write_all(b"one\ntwo\n\nthree\nfou").await.unwrap();
        let mut lines = FramedRead::new(reader, LineCodec::new(100));
        let mut batch = Vec::new();
        let wait = Duration::from_secs(5);
        let end = tokio::time::timeout(wait, ready_lines(&mut lines, &mut batch))
            .await
            .expect("waited for a line nobody wrote");
        assert!(end.is_none(), "the output goes on");
        assert_eq!(batch, ["one", "two", "three"]);
        writer.write_all(b"r\n").await.unwrap();
        drop(writer);
        batch.clear();
        let end = tokio::time::timeout(wait, ready_lines(&mut lines, &mut batch))
            .await
            .expect("waited after the output ended");
        assert!(matches!(end, Some(Ok(()))), "{end:?}");
        assert_eq!(batch, ["four"]);
    }
}
