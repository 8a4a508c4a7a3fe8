//! Fault injection for the disk tier's tests: a countdown makes the Nth
//! disk operation (an index read, write, resize or sync; a body file's
//! write, sync or rename) fail with ENOSPC or EIO, write only half, or
//! "crash": the index drops every write not yet synced, and from then on
//! nothing reaches the disk until the tier is opened again.
//!
//! It is process-wide, off unless a test arms it, and costs one atomic
//! load per operation while off. The index goes through [`Faulty`] (a redb
//! storage backend keeping unsynced writes aside, as a page cache would
//! lose them) only in a process that armed a fault once.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use redb::StorageBackend;

/// What the Nth operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Fails with ENOSPC (the filesystem is full).
    NoSpace,
    /// Fails with EIO.
    Io,
    /// Writes half of what it was given, then fails with EIO.
    ShortWrite,
    /// Loses every index write not yet synced; every later operation fails.
    Crash,
}

/// Operations left before the fault (0: none armed).
static COUNTDOWN: AtomicU64 = AtomicU64::new(0);
static KIND: AtomicU8 = AtomicU8::new(0);
static CRASHED: AtomicBool = AtomicBool::new(false);
static EVER_ARMED: AtomicBool = AtomicBool::new(false);
static FIRED: AtomicBool = AtomicBool::new(false);

/// Routes every index opened from now on through [`Faulty`], so a
/// fault armed later reaches it too.
pub fn enable() {
    EVER_ARMED.store(true, Ordering::SeqCst);
}

/// Makes operation number `after` (1 = the next) fail with `fault`.
pub fn arm(after: u64, fault: Fault) {
    EVER_ARMED.store(true, Ordering::SeqCst);
    CRASHED.store(false, Ordering::SeqCst);
    FIRED.store(false, Ordering::SeqCst);
    KIND.store(fault as u8, Ordering::SeqCst);
    COUNTDOWN.store(after.max(1), Ordering::SeqCst);
}

/// No fault any more, and the crash (if any) is over: a tier opened from
/// now on reaches the disk again.
pub fn disarm() {
    COUNTDOWN.store(0, Ordering::SeqCst);
    CRASHED.store(false, Ordering::SeqCst);
}

/// Whether the fault armed last has happened.
pub fn fired() -> bool {
    FIRED.load(Ordering::SeqCst)
}

pub(crate) fn enabled() -> bool {
    EVER_ARMED.load(Ordering::Relaxed)
}

/// What an operation must do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Now {
    Proceed,
    Fail(Fault),
}

/// Counts one operation.
pub(crate) fn next() -> Now {
    if CRASHED.load(Ordering::SeqCst) {
        return Now::Fail(Fault::Crash);
    }
    let left = COUNTDOWN.load(Ordering::SeqCst);
    if left == 0 {
        return Now::Proceed;
    }
    if COUNTDOWN
        .compare_exchange(left, left - 1, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
        || left > 1
    {
        return Now::Proceed;
    }
    let fault = match KIND.load(Ordering::SeqCst) {
        0 => Fault::NoSpace,
        1 => Fault::Io,
        2 => Fault::ShortWrite,
        _ => Fault::Crash,
    };
    if fault == Fault::Crash {
        CRASHED.store(true, Ordering::SeqCst);
    }
    FIRED.store(true, Ordering::SeqCst);
    Now::Fail(fault)
}

pub(crate) fn error(fault: Fault) -> io::Error {
    match fault {
        Fault::NoSpace => io::Error::from_raw_os_error(libc_enospc()),
        _ => io::Error::from_raw_os_error(libc_eio()),
    }
}

const fn libc_enospc() -> i32 {
    28
}

const fn libc_eio() -> i32 {
    5
}

/// Fails the operation when the countdown says so.
pub(crate) fn check() -> io::Result<()> {
    match next() {
        Now::Proceed => Ok(()),
        Now::Fail(f) => Err(error(f)),
    }
}

/// Writes `bytes` with `write`, or half of them and an error when the
/// countdown says so.
pub(crate) fn write_with(
    bytes: &[u8],
    mut write: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    match next() {
        Now::Proceed => write(bytes),
        Now::Fail(Fault::ShortWrite) => {
            write(&bytes[..bytes.len() / 2])?;
            Err(error(Fault::ShortWrite))
        }
        Now::Fail(f) => Err(error(f)),
    }
}

/// The index's storage with faults: writes and resizes wait in memory
/// until a sync applies them to the file, so a crash loses exactly what a
/// power cut would.
pub(crate) struct Faulty {
    file: redb::backends::FileBackend,
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    len: Option<u64>,
    /// Unsynced bytes by offset, newest written last.
    writes: BTreeMap<u64, Vec<u8>>,
}

impl Faulty {
    pub(crate) fn new(file: redb::backends::FileBackend) -> Self {
        Faulty {
            file,
            pending: Mutex::new(Pending::default()),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Faulty")
    }
}

impl StorageBackend for Faulty {
    fn len(&self) -> io::Result<u64> {
        check()?;
        match self.pending().len {
            Some(len) => Ok(len),
            None => self.file.len(),
        }
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        check()?;
        let pending = self.pending();
        let on_disk = self.file.len()?;
        let len = pending.len.unwrap_or(on_disk);
        let end = offset + out.len() as u64;
        if end > len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end",
            ));
        }
        out.fill(0);
        let readable = on_disk.min(len);
        if offset < readable {
            let n = (readable - offset).min(out.len() as u64) as usize;
            self.file.read(offset, &mut out[..n])?;
        }
        for (at, bytes) in &pending.writes {
            let (at, w_end) = (*at, *at + bytes.len() as u64);
            if w_end <= offset || at >= end {
                continue;
            }
            let from = offset.max(at);
            let to = end.min(w_end);
            out[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&bytes[(from - at) as usize..(to - at) as usize]);
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        check()?;
        let mut pending = self.pending();
        pending.len = Some(len);
        // Bytes past the new end are gone (a later growth reads zeros).
        pending.writes.retain(|at, _| *at < len);
        for (at, bytes) in pending.writes.iter_mut() {
            bytes.truncate((len - at) as usize);
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        check()?;
        let mut pending = self.pending();
        if let Some(len) = pending.len.take() {
            self.file.set_len(len)?;
        }
        for (at, bytes) in std::mem::take(&mut pending.writes) {
            self.file.write(at, &bytes)?;
        }
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut pending = self.pending();
        write_with(data, |bytes| {
            // Overlapping earlier writes: the newest bytes win when read
            // and when applied (later offsets apply after, so split them).
            let end = offset + bytes.len() as u64;
            let overlapped: Vec<u64> = pending
                .writes
                .range(..end)
                .filter(|(at, b)| **at + b.len() as u64 > offset)
                .map(|(at, _)| *at)
                .collect();
            for at in overlapped {
                let old = pending.writes.remove(&at).unwrap_or_default();
                let old_end = at + old.len() as u64;
                if at < offset {
                    pending
                        .writes
                        .insert(at, old[..(offset - at) as usize].to_vec());
                }
                if old_end > end {
                    pending
                        .writes
                        .insert(end, old[(end - at) as usize..].to_vec());
                }
            }
            pending.writes.insert(offset, bytes.to_vec());
            if let Some(len) = pending.len
                && end > len
            {
                pending.len = Some(end);
            }
            Ok(())
        })
    }

    fn close(&self) -> io::Result<()> {
        self.file.close()
    }
}
