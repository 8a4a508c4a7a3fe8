//! The access log's writer thread: takes lines off the queue, formats and
//! writes them, flushes whenever the queue runs empty, and reopens the
//! file when asked. It owns the only handle to the destination; it exits
//! once every sender is gone.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use super::{Message, format};
use crate::settings::AccessLogFormat;

pub(super) enum Output {
    Stdout(BufWriter<std::io::Stdout>),
    File {
        path: PathBuf,
        file: BufWriter<File>,
    },
}

impl Output {
    pub(super) fn stdout() -> Self {
        Output::Stdout(BufWriter::new(std::io::stdout()))
    }

    pub(super) fn file(path: &Path) -> std::io::Result<Self> {
        Ok(Output::File {
            path: path.to_owned(),
            file: BufWriter::new(open(path)?),
        })
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Output::Stdout(w) => w,
            Output::File { file, .. } => file,
        }
    }

    /// Opens the path anew; on failure keeps writing to the old file.
    fn reopen(&mut self) {
        let Output::File { path, file } = self else {
            return;
        };
        let _ = file.flush();
        match open(path) {
            Ok(reopened) => *file = BufWriter::new(reopened),
            Err(e) => tracing::warn!(
                path = %path.display(), error = %e,
                "cannot reopen the access log; still writing to the file opened before"
            ),
        }
    }
}

/// Appends, creating the file readable by its owner and group only
/// (client addresses and targets are personal data).
fn open(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

pub(super) fn spawn(
    rx: mpsc::Receiver<Message>,
    output: Output,
    format: AccessLogFormat,
    reopen: Arc<AtomicBool>,
    errors: Counter,
) {
    let run = move || {
        Writer {
            output,
            format,
            reopen,
            errors,
            failing: false,
            buf: Vec::with_capacity(512),
        }
        .run(rx)
    };
    if let Err(e) = std::thread::Builder::new()
        .name("revcache-access-log".into())
        .spawn(run)
    {
        tracing::error!(error = %e, "cannot start the access log writer; no access log lines are written");
    }
}

struct Writer {
    output: Output,
    format: AccessLogFormat,
    reopen: Arc<AtomicBool>,
    errors: Counter,
    /// The last write failed (warned once until one succeeds).
    failing: bool,
    buf: Vec<u8>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        loop {
            let message = match rx.try_recv() {
                Ok(m) => m,
                Err(mpsc::error::TryRecvError::Empty) => {
                    self.flush();
                    match rx.blocking_recv() {
                        Some(m) => m,
                        None => break,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            };
            if self.reopen.swap(false, Ordering::SeqCst) {
                self.output.reopen();
            }
            match message {
                Message::Line(record) => {
                    self.buf.clear();
                    format::line(&record, self.format, &mut self.buf);
                    let written = self.output.writer().write_all(&self.buf);
                    self.result(written);
                }
                Message::Flush(done) => {
                    self.flush();
                    let _ = done.send(());
                }
                Message::Wake => {}
            }
        }
        self.flush();
    }

    fn flush(&mut self) {
        let flushed = self.output.writer().flush();
        self.result(flushed);
    }

    fn result(&mut self, r: std::io::Result<()>) {
        match r {
            Ok(()) => self.failing = false,
            Err(e) => {
                self.errors.inc();
                if !self.failing {
                    tracing::warn!(error = %e, "cannot write the access log; lines are lost until it works again");
                }
                self.failing = true;
            }
        }
    }
}
