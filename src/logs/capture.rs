//! Copying one output stream of a process (its pipe) into its log file.
//!
//! A plain log is fed with `splice(2)`: the kernel moves the bytes from the pipe into the file,
//! and takes them out of the pipe only once they are in the file, so a daemon killed at any
//! moment (SIGKILL) loses nothing: what it had not copied is still in the pipe for the next
//! daemon. Near a rotation the pipe is peeked at (`tee`) to find where the lines that fit end,
//! and exactly those are spliced. Bytes that must pass through the daemon (timestamps with
//! `log_date_format`, the tee of `pm3 run`, a file system that refuses splice) are read into one
//! scratch buffer shared by every stream of the daemon (the daemon runs on a single thread, so
//! an idle process costs no buffer memory) and written before the next read: at most one read
//! ([`SCRATCH`] bytes) is ever out of the pipe and not yet in the file. Bytes are copied as they
//! are: no UTF-8 decoding, so nothing a process writes can stall or kill the copy; with
//! `log_date_format`, each line gets the time it was read in front.

use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use tokio::io::unix::AsyncFd;

use super::file::LogFile;

/// One read takes up to this much from a pipe (which holds up to 1 MiB): the most a daemon
/// killed between a read and its write can lose, when the bytes go through the buffer.
pub const SCRATCH: usize = 256 * 1024;

/// Most bytes one `splice` moves from a pipe into a file. The pipe stays locked while the kernel
/// writes them into the file, so its writer waits meanwhile: 64 KiB kept that wait shortest of
/// 32 KiB–1 MiB, for the same throughput (`bench/logs.sh`).
const SPLICE_CHUNK: usize = 64 * 1024;

/// Most bytes peeked at before a rotation cut (the lines that fit are found in them).
const PEEK: usize = super::file::SPLICE_MARGIN as usize;

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH]);
    /// Output with timestamps inserted, when `log_date_format` is set.
    static STAMPED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Every log's gaps (full disk), by path, for `info`.
    static GAPS: RefCell<std::collections::HashMap<std::path::PathBuf, GapRecord>> = RefCell::new(std::collections::HashMap::new());
    /// Where the bytes before a rotation cut are peeked at (`tee`), read and dropped.
    static SCRATCH_PIPE: RefCell<Option<(OwnedFd, OwnedFd)>> = const { RefCell::new(None) };
}

/// One stream being copied: the daemon's read end of the pipe and the log it feeds.
pub struct Stream {
    /// `None` when the pipe could not be reopened (an adopted process whose pipe is gone).
    fd: Option<Rc<AsyncFd<OwnedFd>>>,
    log: LogFile,
    eof: bool,
    /// strftime format prefixed to each line (`log_date_format`).
    date_format: Option<String>,
    /// Whether the next byte read starts a line (needs a timestamp).
    at_line_start: bool,
    /// Also hands complete lines to a sink (`pm3 run` prints them).
    tee: Option<Tee>,
    /// Output being dropped because the log cannot be written (a full disk).
    gap: Option<Gap>,
}

/// Output dropped while the log could not be written. The child is never blocked for it
/// (availability first): its bytes are read and counted, and once a write succeeds again the
/// log resumes at a line boundary after a line that says what was lost.
struct Gap {
    bytes: u64,
    /// Whether the bytes still to come start a line (dropping continues to the next newline).
    at_line_start: bool,
    reason: String,
}

/// What `info` shows of an instance's log gaps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GapRecord {
    /// Bytes dropped over the daemon's life.
    pub dropped_bytes: u64,
    /// Episodes: each began with a failed write and ended with a successful one.
    pub episodes: u32,
    /// Why the current (or last) episode began.
    pub reason: String,
    /// True while output is being dropped.
    pub ongoing: bool,
}

/// Most bytes one wake-up of a stream copies: a writer faster than the copy can no longer keep
/// the daemon's only thread to itself (the stream stays ready and is served again after
/// everything else that is ready).
pub const PUMP_BUDGET: usize = 256 * 1024;

/// Longest one wake-up of a stream copies: what bounds a log that rotates every few KiB
/// (each rotation is a few file-system calls), where the byte budget would not.
pub const PUMP_TIME: std::time::Duration = std::time::Duration::from_micros(500);

/// Most bytes copied when a process has exited: everything it wrote is in its pipe (at most the
/// pipe's 1 MiB), while a descendant that keeps writing cannot hold the copy forever.
pub const EXIT_BUDGET: usize = 4 << 20;

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
        let fd = fd.map(Rc::new);
        let eof = fd.is_none();
        Stream { fd, log, eof, date_format: None, at_line_start: true, tee: None, gap: None }
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
        let Some(fd) = self.fd.clone().filter(|_| !self.eof) else {
            return std::future::pending().await;
        };
        let mut guard = match fd.readable().await {
            Ok(guard) => guard,
            Err(_) => {
                self.eof = true;
                return;
            }
        };
        // Readiness is cleared only once the pipe was seen empty. A stream stopped by its
        // budget stays ready, and gives the rest of the daemon its turn first: waiting on a
        // readiness that is already set would not yield by itself.
        if self.drain_up_to(PUMP_BUDGET, Some(PUMP_TIME)) {
            drop(guard);
            tokio::task::yield_now().await;
        } else {
            guard.clear_ready();
        }
    }

    /// Copies what the pipe holds right now, up to `budget` bytes (and, if given, for at most
    /// `time`), without waiting. True when it stopped at a limit with more in the pipe.
    pub fn drain_up_to(&mut self, budget: usize, time: Option<std::time::Duration>) -> bool {
        let started = std::time::Instant::now();
        if self.fd.is_none() || self.eof {
            return false;
        }
        self.log.refresh();
        // Plain logs go from the pipe straight into the file, never through the daemon's memory.
        let mut splice = self.date_format.is_none() && self.tee.is_none() && self.gap.is_none();
        let mut moved = 0;
        while moved < budget && time.is_none_or(|t| started.elapsed() < t) {
            let step = if splice { self.splice_some() } else { self.copy_one_read() };
            match step {
                Step::Moved(n) => moved += n.max(1),
                Step::Refused => splice = false,
                Step::Empty => return false,
                Step::Eof => {
                    self.eof = true;
                    if let Some(t) = &mut self.tee {
                        t.finish();
                    }
                    return false;
                }
            }
        }
        true
    }

    /// Writes `bytes` to the log, or counts them as dropped while it cannot be written.
    fn emit(&mut self, bytes: &[u8]) {
        let mut bytes = bytes;
        if let Some(gap) = &mut self.gap {
            if !gap.at_line_start {
                match memchr::memchr(b'\n', bytes) {
                    None => {
                        gap.bytes += bytes.len() as u64;
                        self.record_gap(bytes.len() as u64);
                        return;
                    }
                    Some(i) => {
                        gap.bytes += i as u64 + 1;
                        self.record_gap(i as u64 + 1);
                        bytes = &bytes[i + 1..];
                        if let Some(gap) = &mut self.gap {
                            gap.at_line_start = true;
                        }
                    }
                }
            }
            if bytes.is_empty() {
                return;
            }
            let Some(gap) = &self.gap else { return };
            let newline = if self.log.ends_mid_line() { "\n" } else { "" };
            let marker = format!("{newline}[pm3: {} dropped: {}]\n", human_bytes(gap.bytes), gap.reason);
            if self.log.write(marker.as_bytes()).is_err() {
                let n = bytes.len() as u64;
                if let Some(gap) = &mut self.gap {
                    gap.bytes += n;
                    gap.at_line_start = bytes.ends_with(b"\n");
                }
                self.record_gap(n);
                return;
            }
            tracing::info!(log = %self.log.path().display(), dropped = gap.bytes, "log writable again");
            self.gap = None;
            GAPS.with(|g| {
                if let Some(r) = g.borrow_mut().get_mut(self.log.path()) {
                    r.ongoing = false;
                }
            });
        }
        if let Err(e) = self.log.write(bytes) {
            let reason = if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) {
                "no space left".to_string()
            } else {
                e.to_string()
            };
            // One warning per episode, not one per write.
            tracing::warn!(log = %self.log.path().display(), "cannot write log ({reason}): dropping output until it can be written again");
            // A line the failure (or an earlier splice) cut short goes too: the log keeps only
            // whole lines, then says what is missing.
            let cut = self.log.cut_partial_line();
            self.gap = Some(Gap {
                bytes: bytes.len() as u64 + cut,
                at_line_start: bytes.ends_with(b"\n"),
                reason: reason.clone(),
            });
            GAPS.with(|g| {
                let mut g = g.borrow_mut();
                let r = g.entry(self.log.path().to_path_buf()).or_default();
                r.episodes += 1;
                r.reason = reason;
                r.ongoing = true;
            });
            self.record_gap(bytes.len() as u64 + cut);
        }
    }

    /// Counts dropped bytes in the record `info` shows.
    fn record_gap(&self, bytes: u64) {
        GAPS.with(|g| {
            if let Some(r) = g.borrow_mut().get_mut(self.log.path()) {
                r.dropped_bytes += bytes;
            }
        });
    }

    /// One `splice` from the pipe into the log.
    fn splice_some(&mut self) -> Step {
        let Some(fd) = self.fd.as_ref() else { return Step::Eof };
        match self.log.splice_from(fd.get_ref(), SPLICE_CHUNK) {
            Ok(Some(0)) => Step::Eof,
            Ok(Some(n)) => Step::Moved(n),
            Err(rustix::io::Errno::INTR) => Step::Moved(0),
            Ok(None) => self.splice_to_cut(),
            Err(e) => splice_failed(e),
        }
    }

    /// Close to the rotation size: peeks at what the pipe holds (`tee` into a scratch pipe,
    /// whose copy is read and dropped), splices the lines that fit, and rotates, as
    /// [`LogFile::write`] would with those bytes, while the bytes themselves still only ever
    /// go from the pipe to the file.
    fn splice_to_cut(&mut self) -> Step {
        let Some(fd) = self.fd.as_ref() else { return Step::Eof };
        let want = usize::try_from(self.log.room()).unwrap_or(usize::MAX).min(PEEK) + 1;
        SCRATCH_PIPE.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            if scratch.is_none() {
                match rustix::pipe::pipe_with(
                    rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
                ) {
                    Ok(pair) => {
                        // Room for a whole peek even in small pieces (`tee` copies whole pipe
                        // buffers); at the default 16 buffers it may see less.
                        let _ = rustix::pipe::fcntl_setpipe_size(&pair.1, 4 * PEEK);
                        *scratch = Some(pair);
                    }
                    Err(_) => return Step::Refused,
                }
            }
            let Some((peek_read, peek_write)) = scratch.as_ref() else { return Step::Refused };
            let n = match rustix::pipe::tee(
                fd.get_ref(),
                peek_write,
                want,
                rustix::pipe::SpliceFlags::NONBLOCK,
            ) {
                Ok(0) => return Step::Eof,
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => return Step::Moved(0),
                Err(e) => return splice_failed(e),
            };
            let taken = std::cell::Cell::new(0usize);
            let step = BUF.with(|buf| {
                let mut buf = buf.borrow_mut();
                let mut seen = 0;
                while seen < n {
                    match rustix::io::read(peek_read, &mut buf[seen..n]) {
                        Ok(0) | Err(rustix::io::Errno::AGAIN) => break,
                        Ok(k) => seen += k,
                        Err(rustix::io::Errno::INTR) => {}
                        Err(_) => break,
                    }
                }
                if seen < n {
                    return None;
                }
                // Whether an unfinished last line may go in anyway: no one can finish it (every
                // writer is gone), or the peek could not see as far as the pipe holds (so
                // waiting could wait forever).
                let finish_anyway = || {
                    let mut pfd = [rustix::event::PollFd::new(fd.get_ref(), rustix::event::PollFlags::IN)];
                    let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
                    let hung_up = rustix::event::poll(&mut pfd, Some(&zero)).is_ok()
                        && pfd[0].revents().contains(rustix::event::PollFlags::HUP);
                    let unseen =
                        n < want && rustix::io::ioctl_fionread(fd.get_ref()).is_ok_and(|q| q > n as u64);
                    hung_up || unseen
                };
                let ends_a_line = buf[n - 1] == b'\n';
                let (take, rotate) = self.log.cut_plan(&buf[..n], !ends_a_line && finish_anyway());
                if take == 0 && !rotate {
                    // An unfinished line: its end (or the writers' exit) wakes the pipe again.
                    return Some(Step::Empty);
                }
                if let Err(e) = self.log.splice_exact(fd.get_ref(), take) {
                    return Some(splice_failed(e));
                }
                taken.set(take);
                if rotate && let Err(e) = self.log.rotate() {
                    tracing::warn!(log = %self.log.path().display(), "cannot rotate log: {e}");
                    return Some(Step::Refused);
                }
                Some(Step::Moved(taken.get()))
            });
            step.unwrap_or_else(|| {
                // The copy could not be read back whole: never use this scratch pipe again.
                *scratch = None;
                Step::Refused
            })
        })
    }

    /// One read into the shared buffer, written (stamped, teed) before anything else happens.
    fn copy_one_read(&mut self) -> Step {
        let Some(fd) = self.fd.clone() else { return Step::Eof };
        BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            let n = match rustix::io::read(fd.get_ref(), &mut buf[..]) {
                Ok(0) => return Step::Eof,
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => return Step::Moved(0),
                Err(rustix::io::Errno::AGAIN) => return Step::Empty,
                Err(_) => return Step::Eof,
            };
            if let Some(t) = &mut self.tee {
                t.feed(&buf[..n]);
            }
            match self.date_format.take() {
                None => self.emit(&buf[..n]),
                Some(fmt) => {
                    STAMPED.with(|out| {
                        let mut out = out.borrow_mut();
                        out.clear();
                        stamp(&buf[..n], &fmt, &mut self.at_line_start, &mut out);
                        self.emit(&out);
                    });
                    self.date_format = Some(fmt);
                }
            }
            Step::Moved(n)
        })
    }
}

/// A `splice` or `tee` that failed for another reason than an empty pipe.
fn splice_failed(e: rustix::io::Errno) -> Step {
    match e {
        rustix::io::Errno::AGAIN => Step::Empty,
        rustix::io::Errno::INTR => Step::Moved(0),
        // Refused (a file system without splice) or failed (a full disk): the buffer copies,
        // or reports and drops, as for any log.
        _ => Step::Refused,
    }
}

/// What one copy step did.
enum Step {
    /// This many bytes went from the pipe to the file (0: a signal interrupted the call).
    Moved(usize),
    /// The pipe is empty for now.
    Empty,
    /// Every writer has closed the pipe and it is empty.
    Eof,
    /// `splice` cannot be used for this log (for the rest of this drain).
    Refused,
}

/// `52 KiB`, `3.1 MiB`: how much was dropped.
fn human_bytes(n: u64) -> String {
    const KIB: u64 = 1024;
    match n {
        n if n < KIB => format!("{n} B"),
        n if n < KIB * KIB => format!("{} KiB", n.div_ceil(KIB)),
        n => format!("{:.1} MiB", n as f64 / (KIB * KIB) as f64),
    }
}

/// What `info` shows of the log gaps of the log at `path`.
pub fn gaps_of(path: &std::path::Path) -> GapRecord {
    GAPS.with(|g| g.borrow().get(path).cloned().unwrap_or_default())
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
