//! The progress line of long maintenance commands (`sweep`, `inspect`):
//! drawn on standard error when it is a terminal, redrawn in place at most
//! ten times a second, cleared when the command ends. Nothing is written
//! when standard error is a pipe or a file, so scripts and logs see only
//! the command's output.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often the line is redrawn at most.
const REDRAW: Duration = Duration::from_millis(100);

pub struct Progress {
    out: Option<Box<dyn Write + Send>>,
    drawn: Option<Instant>,
}

impl Progress {
    /// On standard error when it is a terminal; silent otherwise.
    pub fn on_terminal() -> Self {
        let stderr = std::io::stderr();
        let out: Option<Box<dyn Write + Send>> = if stderr.is_terminal() {
            Some(Box::new(stderr))
        } else {
            None
        };
        Self::to(out)
    }

    fn to(out: Option<Box<dyn Write + Send>>) -> Self {
        Progress { out, drawn: None }
    }

    /// Shows `line()` unless the line was drawn less than 100 ms ago (so a
    /// tight loop pays for a clock read, not a write).
    pub fn show(&mut self, line: impl FnOnce() -> String) {
        let Some(out) = &mut self.out else { return };
        let now = Instant::now();
        if self.drawn.is_some_and(|at| now.duration_since(at) < REDRAW) {
            return;
        }
        self.drawn = Some(now);
        // Carriage return, the line, then erase what a longer line left.
        let _ = write!(out, "\r{}\x1b[K", line());
        let _ = out.flush();
    }

    /// Clears the line, so the command's output starts on a clean one.
    pub fn finish(&mut self) {
        if let (Some(out), Some(_)) = (&mut self.out, self.drawn) {
            let _ = write!(out, "\r\x1b[K");
            let _ = out.flush();
        }
        self.drawn = None;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `n` with thousands separators: 1,234,567.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Screen(Arc<Mutex<Vec<u8>>>);

    impl Write for Screen {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Screen {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn a_terminal_sees_the_line_redrawn_in_place_then_cleared() {
        let screen = Screen::default();
        let mut p = Progress::to(Some(Box::new(screen.clone())));
        p.show(|| "inspect: 1 of 3 entries".into());
        // Within 100 ms of the last draw: skipped, and not even formatted.
        p.show(|| unreachable!("redrawn too soon"));
        p.finish();
        assert_eq!(screen.text(), "\rinspect: 1 of 3 entries\x1b[K\r\x1b[K");
    }

    #[test]
    fn without_a_terminal_nothing_is_written_or_formatted() {
        let mut p = Progress::to(None);
        p.show(|| unreachable!("formatted for nobody"));
        p.finish();
    }

    #[test]
    fn a_command_that_drew_nothing_clears_nothing() {
        let screen = Screen::default();
        Progress::to(Some(Box::new(screen.clone()))).finish();
        assert_eq!(screen.text(), "");
    }

    #[test]
    fn counts_read_with_thousands_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
    }
}
