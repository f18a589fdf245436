//! Log capture: `tracing` lines written while the dashboard owns the screen are kept (the newest
//! is shown on the dashboard) and replayed on stderr when it closes.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::Mutex;

/// Log lines kept while the dashboard is shown, replayed on stderr when it closes.
const MAX_CAPTURED_LINES: usize = 1000;

#[derive(Default)]
struct LogSink {
    /// True while the dashboard owns the terminal.
    capturing: bool,
    partial: Vec<u8>,
    lines: VecDeque<String>,
    dropped: usize,
}

impl LogSink {
    fn push(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        while let Some(pos) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if self.lines.len() == MAX_CAPTURED_LINES {
                self.lines.pop_front();
                self.dropped += 1;
            }
            self.lines.push_back(line);
        }
    }

    /// The last `n` lines, without terminal escape sequences, for display.
    fn recent(&self, n: usize) -> Vec<String> {
        let skip = self.lines.len().saturating_sub(n);
        self.lines
            .iter()
            .skip(skip)
            .map(|l| strip_ansi(l))
            .collect()
    }

    /// Stops capturing and returns what was captured, as it was written.
    fn release(&mut self) -> (Vec<String>, usize) {
        self.capturing = false;
        if !self.partial.is_empty() {
            self.partial.push(b'\n');
            self.push(&[]);
        }
        let dropped = std::mem::take(&mut self.dropped);
        (self.lines.drain(..).collect(), dropped)
    }
}

static LOG_SINK: Mutex<LogSink> = Mutex::new(LogSink {
    capturing: false,
    partial: Vec::new(),
    lines: VecDeque::new(),
    dropped: 0,
});

/// Removes ANSI escape sequences (CSI `ESC [ ... final`, and two-byte `ESC x`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

/// A writer for `tracing_subscriber::fmt().with_writer(log_writer)`: writes to stderr, except while
/// a [`Dashboard`] owns the terminal, when lines are kept (the newest is shown on the dashboard)
/// and written to stderr when the dashboard closes, so that nothing is lost and nothing scribbles
/// over the screen.
pub fn log_writer() -> LogWriter {
    LogWriter
}

/// See [`log_writer`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Ok(mut sink) = LOG_SINK.lock()
            && sink.capturing
        {
            sink.push(buf);
            return Ok(buf.len());
        }
        io::stderr().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

pub(super) fn start_capturing_logs() {
    if let Ok(mut sink) = LOG_SINK.lock() {
        sink.capturing = true;
    }
}

pub(super) fn recent_logs(n: usize) -> Vec<String> {
    LOG_SINK
        .lock()
        .map(|sink| sink.recent(n))
        .unwrap_or_default()
}

/// Stops capturing and writes the captured lines to stderr. In the panic hook the lock is only
/// tried: the panicking thread may hold it.
pub(super) fn release_logs(from_panic_hook: bool) {
    let released = if from_panic_hook {
        LOG_SINK.try_lock().ok().map(|mut sink| sink.release())
    } else {
        LOG_SINK.lock().ok().map(|mut sink| sink.release())
    };
    if let Some((lines, dropped)) = released {
        let mut stderr = io::stderr().lock();
        if dropped > 0 {
            let _ = writeln!(stderr, "({dropped} earlier log lines were dropped)");
        }
        for line in lines {
            let _ = writeln!(stderr, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sink_keeps_lines_and_strips_colours_for_display() {
        let mut sink = LogSink {
            capturing: true,
            ..LogSink::default()
        };
        sink.push(b"\x1b[33m WARN\x1b[0m first\nsec");
        sink.push(b"ond\n");
        assert_eq!(sink.recent(5), vec![" WARN first", "second"]);
        sink.push(b"partial");
        let (lines, dropped) = sink.release();
        assert_eq!(
            lines,
            vec!["\x1b[33m WARN\x1b[0m first", "second", "partial"]
        );
        assert_eq!(dropped, 0);
        assert!(!sink.capturing);

        let mut sink = LogSink::default();
        for i in 0..MAX_CAPTURED_LINES + 5 {
            sink.push(format!("line {i}\n").as_bytes());
        }
        let (lines, dropped) = sink.release();
        assert_eq!((lines.len(), dropped), (MAX_CAPTURED_LINES, 5));
        assert_eq!(lines[0], "line 5");
    }
}
