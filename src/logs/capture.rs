//! Copying one output stream of a process (its pipe) into its log file.
//!
//! Reads go into one scratch buffer shared by every stream of the daemon (the daemon runs on a
//! single thread), so an idle process costs no buffer memory. Bytes are written as read: no
//! UTF-8 decoding, so nothing a process writes can stall or kill the copy; with
//! `log_date_format`, each line gets the time it was read in front.

use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use tokio::io::unix::AsyncFd;

use super::file::LogFile;

/// One read takes up to this much from a pipe (which holds up to 1 MiB). Reading, rather than
/// `splice`, keeps the pipe free for the writer while the file write happens.
const SCRATCH: usize = 256 * 1024;

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH]);
    /// Output with timestamps inserted, when `log_date_format` is set.
    static STAMPED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// One stream being copied: the daemon's read end of the pipe and the log it feeds.
pub struct Stream {
    /// `None` when the pipe could not be reopened (an adopted process whose pipe is gone).
    fd: Option<AsyncFd<OwnedFd>>,
    log: LogFile,
    eof: bool,
    /// strftime format prefixed to each line (`log_date_format`).
    date_format: Option<String>,
    /// Whether the next byte read starts a line (needs a timestamp).
    at_line_start: bool,
    /// Also hands complete lines to a sink (`pm3 run` prints them).
    tee: Option<Tee>,
}

/// Receives each complete line a process writes, besides its log file.
pub trait LineSink {
    fn line(&self, name: &str, is_err: bool, line: &[u8]);
}

/// A stream's connection to a [`LineSink`], with the unfinished last line.
pub struct Tee {
    sink: Rc<dyn LineSink>,
    name: Rc<str>,
    is_err: bool,
    partial: Vec<u8>,
}

impl Tee {
    pub fn new(sink: Rc<dyn LineSink>, name: Rc<str>, is_err: bool) -> Tee {
        Tee { sink, name, is_err, partial: Vec::new() }
    }

    fn feed(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                self.sink.line(&self.name, self.is_err, &rest[..nl]);
            } else {
                self.partial.extend_from_slice(&rest[..nl]);
                self.sink.line(&self.name, self.is_err, &self.partial);
                self.partial.clear();
            }
            rest = &rest[nl + 1..];
        }
        self.partial.extend_from_slice(rest);
    }

    fn finish(&mut self) {
        if !self.partial.is_empty() {
            self.sink.line(&self.name, self.is_err, &self.partial);
            self.partial.clear();
        }
    }
}

impl Stream {
    pub fn new(fd: OwnedFd, log: LogFile) -> io::Result<Stream> {
        Ok(Stream::with_fd(Some(crate::process::register(fd)?), log))
    }

    fn with_fd(fd: Option<AsyncFd<OwnedFd>>, log: LogFile) -> Stream {
        let eof = fd.is_none();
        Stream { fd, log, eof, date_format: None, at_line_start: true, tee: None }
    }

    /// Reopens the pipe of a process started by an earlier daemon. Whatever the process wrote
    /// while no daemon was reading is still in the pipe and is copied first.
    pub fn reopen(pid: u32, fd: u32, log: LogFile) -> Stream {
        match crate::process::spawn::reopen_output(pid, fd).and_then(crate::process::register) {
            Ok(fd) => Stream::with_fd(Some(fd), log),
            Err(e) => {
                tracing::warn!(pid, fd, "cannot reopen output pipe: {e}");
                Stream::with_fd(None, log)
            }
        }
    }

    /// Prefixes every line with the time it was read, in this strftime format.
    pub fn with_date_format(mut self, format: Option<String>) -> Stream {
        self.date_format = format;
        self
    }

    /// Also passes every line to `tee`.
    pub fn with_tee(mut self, tee: Option<Tee>) -> Stream {
        self.tee = tee;
        self
    }

    /// True once every writer has closed the pipe: nothing more will come.
    pub fn at_eof(&self) -> bool {
        self.eof
    }

    /// Waits until the pipe has data (or hung up), then copies what is there. Cancel-safe: the
    /// copy happens after the only await point.
    pub async fn pump(&mut self) {
        let Some(fd) = self.fd.as_ref().filter(|_| !self.eof) else {
            return std::future::pending().await;
        };
        match fd.readable().await {
            Ok(mut guard) => {
                guard.clear_ready();
                self.drain();
            }
            Err(_) => self.eof = true,
        }
    }

    /// Copies everything the pipe holds right now, without waiting.
    pub fn drain(&mut self) {
        let Some(fd) = self.fd.as_ref().filter(|_| !self.eof) else { return };
        self.log.refresh();
        BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            loop {
                match rustix::io::read(fd.get_ref(), &mut buf[..]) {
                    Ok(0) => {
                        self.eof = true;
                        if let Some(t) = &mut self.tee {
                            t.finish();
                        }
                        break;
                    }
                    Ok(n) => {
                        if let Some(t) = &mut self.tee {
                            t.feed(&buf[..n]);
                        }
                        let written = match &self.date_format {
                            None => self.log.write(&buf[..n]),
                            Some(fmt) => STAMPED.with(|out| {
                                let mut out = out.borrow_mut();
                                out.clear();
                                stamp(&buf[..n], fmt, &mut self.at_line_start, &mut out);
                                self.log.write(&out)
                            }),
                        };
                        if let Err(e) = written {
                            tracing::warn!(log = %self.log.path().display(), "cannot write log: {e}");
                        }
                    }
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(rustix::io::Errno::AGAIN) => break,
                    Err(_) => {
                        self.eof = true;
                        break;
                    }
                }
            }
        });
    }
}

/// Copies `bytes` to `out`, putting `now` formatted with `fmt` (and a space) before each line.
fn stamp(bytes: &[u8], fmt: &str, at_line_start: &mut bool, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let mut prefix = Vec::with_capacity(32);
    let _ = write!(prefix, "{} ", chrono::Local::now().format(fmt));
    out.reserve(bytes.len() + bytes.len() / 32 * prefix.len());
    let mut rest = bytes;
    while !rest.is_empty() {
        if *at_line_start {
            out.extend_from_slice(&prefix);
        }
        let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
        out.extend_from_slice(&rest[..end]);
        *at_line_start = rest[end - 1] == b'\n';
        rest = &rest[end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_every_line_start_even_across_reads() {
        let mut at_start = true;
        let mut out = Vec::new();
        stamp(b"a\nb", "T", &mut at_start, &mut out);
        stamp(b"c\n\nd\n", "T", &mut at_start, &mut out);
        assert_eq!(String::from_utf8_lossy(&out), "T a\nT bc\nT \nT d\n");
        assert!(at_start);
    }

    #[test]
    fn tee_hands_over_complete_lines_only() {
        struct Sink(RefCell<Vec<String>>);
        impl LineSink for Sink {
            fn line(&self, name: &str, is_err: bool, line: &[u8]) {
                self.0.borrow_mut().push(format!(
                    "{name}{}:{}",
                    if is_err { "!" } else { "" },
                    String::from_utf8_lossy(line)
                ));
            }
        }
        let sink = Rc::new(Sink(RefCell::new(Vec::new())));
        let mut tee = Tee::new(sink.clone(), Rc::from("w:0"), false);
        tee.feed(b"one\ntw");
        tee.feed(b"o\nthree");
        assert_eq!(*sink.0.borrow(), ["w:0:one", "w:0:two"]);
        tee.finish();
        assert_eq!(sink.0.borrow().last().map(String::as_str), Some("w:0:three"));
    }
}
