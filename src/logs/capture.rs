//! Copying one output stream of a process (its pipe) into its log file.
//!
//! A plain log is copied in chunks through a staging pipe: `tee` from the process's pipe, a
//! `splice` into the file, then the chunk is dropped from the process's pipe, the chunk's place
//! noted meanwhile so that a daemon killed in between (SIGKILL) neither loses it nor has it
//! written twice ([`super::positions`]); without a note slot, `splice(2)` moves the bytes
//! straight from the pipe into the file. Near a rotation the pipe is peeked at (`tee`) to find
//! where the lines that fit end, and exactly those are spliced. Bytes that must pass through the daemon (timestamps with
//! `log_date_format`, the tee of `pm3 run`, a file system that refuses splice) are read into one
//! scratch buffer shared by every stream of the daemon (the daemon runs on a single thread, so
//! an idle process costs no buffer memory) and written before the next read: at most one read
//! ([`SCRATCH`] bytes) is ever out of the pipe and not yet in the file. Bytes are copied as they
//! are: no UTF-8 decoding, so nothing a process writes can stall or kill the copy; with
//! `log_date_format`, each line gets the time it was read in front.
//!
//! A stamped log (`log_date_format`, without a tee) is written on a thread of its own
//! (`pm3-logs`): the daemon reads the pipe, stamps the lines into a buffer of their own and hands
//! it over, and reads and stamps the next while the thread writes the previous one, so a fast
//! writer's pipe keeps draining while its log is written. At most [`MAX_QUEUED`] reads of a stream wait for that
//! thread, in order; an exit drain waits until every one is in the file.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, OnceLock, mpsc};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

use super::file::LogFile;
use super::positions::{Positions, Slot};

/// One read takes up to this much from a pipe (which holds up to 1 MiB): the most a daemon
/// killed between a read and its write can lose, when the bytes go through the buffer.
pub const SCRATCH: usize = 256 * 1024;

/// Most bytes of a plain log copied in one chunk (staged: the process's pipe is not locked
/// during the file write, so larger chunks only mean fewer calls; 256 KiB measured 57 ms for
/// 100 MB against 60 ms at 64 KiB and 72 ms at 16 KiB).
const SPLICE_CHUNK: usize = 256 * 1024;

/// Most bytes peeked at before a rotation cut (the lines that fit are found in them).
const PEEK: usize = super::file::SPLICE_MARGIN as usize;

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH]);
    /// Output with timestamps inserted, when `log_date_format` is set (on the thread that writes).
    static STAMPED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Where the bytes before a rotation cut are peeked at (`tee`), read and dropped.
    static SCRATCH_PIPE: RefCell<Option<(OwnedFd, OwnedFd)>> = const { RefCell::new(None) };
    /// Plain logs: the staging pipe a chunk is duplicated into (`tee`) and written from, and
    /// /dev/null, where the chunk then leaves the process's pipe.
    static STAGE: RefCell<Option<(OwnedFd, OwnedFd, OwnedFd)>> = const { RefCell::new(None) };
}

/// Every log's gaps (full disk), by path, for `info` (written by whichever thread writes the log).
static GAPS: LazyLock<Mutex<HashMap<PathBuf, GapRecord>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn gaps() -> MutexGuard<'static, HashMap<PathBuf, GapRecord>> {
    GAPS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Most reads of one stream handed to the `pm3-logs` thread and not yet in the file: the most a
/// daemon killed meanwhile can lose of a stamped log is this many times [`SCRATCH`].
pub const MAX_QUEUED: usize = 2;

/// One stream being copied: the daemon's read end of the pipe and the log it feeds.
pub struct Stream {
    /// `None` when the pipe could not be reopened (an adopted process whose pipe is gone).
    fd: Option<Rc<AsyncFd<OwnedFd>>>,
    /// The log, written here; `None` once it was handed to the `pm3-logs` thread (`thread`).
    sink: Option<Sink>,
    /// The log and its queue when the `pm3-logs` thread writes it.
    thread: Option<Arc<Shared>>,
    eof: bool,
    /// strftime format prefixed to each line (`log_date_format`).
    date_format: Option<String>,
    /// Whether the next byte read starts a line (needs a timestamp).
    at_line_start: bool,
    /// Also hands complete lines to a sink (`pm3 run` prints them).
    tee: Option<Tee>,
    /// Its slot in the position map, for the staged copy of a plain log.
    slot: SlotState,
}

/// Whether a stream has a slot in the position map ([`super::positions`]).
enum SlotState {
    /// Not asked for yet (a stamped log never asks).
    Unasked,
    /// None was free: the log is spliced.
    Unavailable,
    Held(Slot),
}

/// Where the bytes of a stream go: its log, and what it needs to write it.
struct Sink {
    log: LogFile,
    /// Output being dropped because the log cannot be written (a full disk).
    gap: Option<Gap>,
}

/// A stream's log while the `pm3-logs` thread writes it.
struct Shared {
    sink: Mutex<Sink>,
    /// Reads handed over and not yet written.
    queued: Mutex<usize>,
    /// Signalled (both) each time a read has been written.
    written: Condvar,
    room: tokio::sync::Notify,
}

impl Shared {
    fn queued(&self) -> MutexGuard<'_, usize> {
        self.queued.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks until fewer than `most` reads wait (at most `limit`); false if it timed out.
    fn wait_below(&self, most: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut q = self.queued();
        while *q >= most {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            q = match self.written.wait_timeout(q, left) {
                Ok((q, _)) => q,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }
}

/// A read handed to the `pm3-logs` thread, stamped.
struct Job {
    to: Arc<Shared>,
    bytes: Vec<u8>,
}

/// What the `pm3-logs` thread does: write a stamped read, or create a missing log file.
enum Task {
    Write(Job),
    Create(PathBuf),
}

impl Task {
    fn run(self) {
        match self {
            Task::Write(job) => write_job(job),
            Task::Create(path) => super::file::create_or_warn(&path),
        }
    }
}

/// The `pm3-logs` thread's queue; `None` if the thread could not be started (logs are then
/// written, and log files created, on the daemon's thread, as before).
static WORKER: OnceLock<Option<Mutex<mpsc::Sender<Task>>>> = OnceLock::new();

/// Buffers handed back by the `pm3-logs` thread, for the next reads (at most [`POOL`] kept).
static BUFFERS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
const POOL: usize = MAX_QUEUED + 1;

fn worker() -> Option<&'static Mutex<mpsc::Sender<Task>>> {
    WORKER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Task>();
            let spawned = std::thread::Builder::new().name("pm3-logs".into()).spawn(move || {
                while let Ok(task) = rx.recv() {
                    task.run();
                }
            });
            match spawned {
                Ok(_) => Some(Mutex::new(tx)),
                Err(e) => {
                    tracing::warn!(
                        "cannot start the log thread ({e}): stamped logs are written on the daemon's thread"
                    );
                    None
                }
            }
        })
        .as_ref()
}

/// Gives `task` to the `pm3-logs` thread, or runs it here when there is no such thread.
fn hand(task: Task) {
    match worker().map(|w| w.lock().unwrap_or_else(|e| e.into_inner()).send(task)) {
        Some(Ok(())) => {}
        // The thread is gone (it cannot be, short of a panic): run it here.
        Some(Err(mpsc::SendError(task))) => task.run(),
        None => {}
    }
}

/// Creates the (missing) log file `path` on the `pm3-logs` thread. A start of 1,000 instances
/// creates 2,000 files: on a busy ext4 each new inode can cost a scan of the inode table, which
/// then runs next to the spawns instead of between them. Both sides open with `O_CREAT` and
/// without `O_TRUNC`, so whichever comes first (this, or the log's first byte) makes the file.
pub(super) fn create_soon(path: &Path) {
    match worker() {
        Some(_) => hand(Task::Create(path.to_path_buf())),
        None => super::file::create_or_warn(path),
    }
}

/// On the `pm3-logs` thread: writes one stamped read, then gives its buffer back.
fn write_job(job: Job) {
    let Job { to, bytes } = job;
    {
        let mut sink = to.sink.lock().unwrap_or_else(|e| e.into_inner());
        // `pm3 flush` may have emptied the file, a hook appended to it.
        sink.log.refresh();
        sink.emit(&bytes);
    }
    {
        let mut pool = BUFFERS.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL {
            pool.push(bytes);
        }
    }
    let mut q = to.queued();
    *q = q.saturating_sub(1);
    drop(q);
    to.written.notify_all();
    to.room.notify_one();
}

fn take_buffer() -> Vec<u8> {
    let mut b = BUFFERS.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default();
    b.clear();
    b
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

impl Sink {
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
            if let Some(r) = gaps().get_mut(self.log.path()) {
                r.ongoing = false;
            }
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
            {
                let mut g = gaps();
                let r = g.entry(self.log.path().to_path_buf()).or_default();
                r.episodes += 1;
                r.reason = reason;
                r.ongoing = true;
            }
            self.record_gap(bytes.len() as u64 + cut);
        }
    }

    /// Counts dropped bytes in the record `info` shows.
    fn record_gap(&self, bytes: u64) {
        if let Some(r) = gaps().get_mut(self.log.path()) {
            r.dropped_bytes += bytes;
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
        let sink = Sink { log, gap: None };
        Stream {
            fd,
            sink: Some(sink),
            thread: None,
            eof,
            date_format: None,
            at_line_start: true,
            tee: None,
            slot: SlotState::Unasked,
        }
    }

    /// Reopens the pipe of a process started by an earlier daemon. Whatever the process wrote
    /// while no daemon was reading is still in the pipe and is copied first.
    pub fn reopen(pid: u32, fd: u32, log: LogFile) -> Stream {
        match crate::process::spawn::reopen_output(pid, fd).and_then(|pipe| {
            drop_written_chunk(&pipe, &log);
            crate::process::register(pipe)
        }) {
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
    /// copy happens after the only await points.
    pub async fn pump(&mut self) {
        let Some(fd) = self.fd.clone().filter(|_| !self.eof) else {
            return std::future::pending().await;
        };
        // A stamped log whose thread is behind: wait for it before reading more.
        if let Some(t) = self.thread.clone() {
            while *t.queued() >= MAX_QUEUED {
                t.room.notified().await;
            }
        }
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
    /// `time`), without waiting for the pipe. True when it stopped at a limit with more in the
    /// pipe (or, for a stamped log, with its thread behind). Without `time` (a process that
    /// exited), a stamped log's thread is waited for, up to the last byte read.
    pub fn drain_up_to(&mut self, budget: usize, time: Option<Duration>) -> bool {
        let started = Instant::now();
        if self.fd.is_none() || self.eof {
            return false;
        }
        if self.thread.is_none() && self.date_format.is_some() && self.tee.is_none() {
            self.hand_to_thread();
        }
        let more = self.drain_inner(budget, time, started);
        if time.is_none()
            && let Some(t) = &self.thread
            && !t.wait_below(1, EXIT_WAIT)
        {
            tracing::warn!("log thread still behind after {EXIT_WAIT:?}");
        }
        more
    }

    fn drain_inner(&mut self, budget: usize, time: Option<Duration>, started: Instant) -> bool {
        if let Some(sink) = &mut self.sink {
            sink.log.refresh();
        }
        // Plain logs go from the pipe straight into the file, never through the daemon's memory.
        let mut splice = self.date_format.is_none()
            && self.tee.is_none()
            && self.sink.as_ref().is_some_and(|s| s.gap.is_none());
        let mut moved = 0;
        while moved < budget && time.is_none_or(|t| started.elapsed() < t) {
            let step = if splice {
                self.splice_some()
            } else if let Some(t) = self.thread.clone() {
                if *t.queued() >= MAX_QUEUED {
                    if time.is_some() {
                        return true;
                    }
                    t.wait_below(MAX_QUEUED, EXIT_WAIT);
                }
                self.hand_one_read(&t)
            } else {
                self.copy_one_read()
            };
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

    /// From now on this stream's log is stamped and written on the `pm3-logs` thread.
    fn hand_to_thread(&mut self) {
        if worker().is_none() {
            return;
        }
        let Some(sink) = self.sink.take() else { return };
        self.thread = Some(Arc::new(Shared {
            sink: Mutex::new(sink),
            queued: Mutex::new(0),
            written: Condvar::new(),
            room: tokio::sync::Notify::new(),
        }));
    }

    /// One read into the shared buffer, stamped into a buffer of its own that is handed to the
    /// `pm3-logs` thread.
    fn hand_one_read(&mut self, to: &Arc<Shared>) -> Step {
        let Some(fd) = self.fd.clone() else { return Step::Eof };
        let stamped = BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            let n = match rustix::io::read(fd.get_ref(), &mut buf[..]) {
                Ok(0) => return Err(Step::Eof),
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => return Err(Step::Moved(0)),
                Err(rustix::io::Errno::AGAIN) => return Err(Step::Empty),
                Err(_) => return Err(Step::Eof),
            };
            let prefix = prefix_now(self.date_format.as_deref().unwrap_or_default());
            let mut out = take_buffer();
            stamp_with(&buf[..n], &prefix, &mut self.at_line_start, &mut out);
            Ok((n, out))
        });
        let (n, bytes) = match stamped {
            Ok(read) => read,
            Err(step) => return step,
        };
        *to.queued() += 1;
        hand(Task::Write(Job { to: to.clone(), bytes }));
        Step::Moved(n)
    }

    /// One chunk from the pipe into the log. With a slot in the position map, the chunk is
    /// duplicated into a staging pipe, written into the file from there while the process goes
    /// on writing into its pipe, then dropped from its pipe ([`super::positions`]); without one,
    /// spliced straight from the pipe (which holds the pipe's lock during the file write).
    fn splice_some(&mut self) -> Step {
        let Some(fd) = self.fd.clone() else { return Step::Eof };
        let Some(sink) = self.sink.as_mut() else { return Step::Refused };
        let room =
            usize::try_from(sink.log.room().saturating_sub(super::file::SPLICE_MARGIN)).unwrap_or(usize::MAX);
        if room == 0 {
            return self.splice_to_cut();
        }
        let map = sink.log.path().parent().and_then(Positions::get);
        if let Some(map) = map
            && matches!(self.slot, SlotState::Unasked)
        {
            self.slot = map.claim().map_or(SlotState::Unavailable, SlotState::Held);
        }
        match (&self.slot, map) {
            (SlotState::Held(slot), Some(map)) => staged_chunk(fd.get_ref(), sink, map, slot, room),
            _ => match sink.log.splice_from(fd.get_ref(), SPLICE_CHUNK) {
                Ok(Some(0)) => Step::Eof,
                Ok(Some(n)) => Step::Moved(n),
                Err(rustix::io::Errno::INTR) => Step::Moved(0),
                Ok(None) => self.splice_to_cut(),
                Err(e) => splice_failed(e),
            },
        }
    }

    /// Close to the rotation size: peeks at what the pipe holds (`tee` into a scratch pipe,
    /// whose copy is read and dropped), splices the lines that fit, and rotates, as
    /// [`LogFile::write`] would with those bytes, while the bytes themselves still only ever
    /// go from the pipe to the file.
    fn splice_to_cut(&mut self) -> Step {
        let Some(fd) = self.fd.clone() else { return Step::Eof };
        let Some(sink) = self.sink.as_mut() else { return Step::Refused };
        let want = usize::try_from(sink.log.room()).unwrap_or(usize::MAX).min(PEEK) + 1;
        BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            let n = match peek(fd.get_ref(), &mut buf[..want]) {
                Ok(0) => return Step::Eof,
                Ok(n) => n,
                Err(step) => return step,
            };
            // Whether an unfinished last line may go in anyway: no one can finish it (every
            // writer is gone), or the peek could not see as far as the pipe holds (so waiting
            // could wait forever).
            let finish_anyway = || {
                let mut pfd = [rustix::event::PollFd::new(fd.get_ref(), rustix::event::PollFlags::IN)];
                let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
                let hung_up = rustix::event::poll(&mut pfd, Some(&zero)).is_ok()
                    && pfd[0].revents().contains(rustix::event::PollFlags::HUP);
                let unseen = n < want && rustix::io::ioctl_fionread(fd.get_ref()).is_ok_and(|q| q > n as u64);
                hung_up || unseen
            };
            let ends_a_line = buf[n - 1] == b'\n';
            let (take, rotate) = sink.log.cut_plan(&buf[..n], !ends_a_line && finish_anyway());
            if take == 0 && !rotate {
                // An unfinished line: its end (or the writers' exit) wakes the pipe again.
                return Step::Empty;
            }
            if let Err(e) = sink.log.splice_exact(fd.get_ref(), take) {
                return splice_failed(e);
            }
            if rotate && let Err(e) = sink.log.rotate() {
                tracing::warn!(log = %sink.log.path().display(), "cannot rotate log: {e}");
                return Step::Refused;
            }
            Step::Moved(take)
        })
    }

    /// One read into the shared buffer, written (stamped, teed) before anything else happens.
    fn copy_one_read(&mut self) -> Step {
        let Some(fd) = self.fd.clone() else { return Step::Eof };
        let Some(sink) = self.sink.as_mut() else { return Step::Refused };
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
            match self.date_format.as_deref() {
                None => sink.emit(&buf[..n]),
                Some(fmt) => {
                    STAMPED.with(|out| {
                        let mut out = out.borrow_mut();
                        out.clear();
                        stamp(&buf[..n], fmt, &mut self.at_line_start, &mut out);
                        sink.emit(&out);
                    });
                }
            }
            Step::Moved(n)
        })
    }
}

impl Drop for Stream {
    /// A stamped log's last reads are written before the stream goes (bounded).
    fn drop(&mut self) {
        if let Some(t) = &self.thread {
            t.wait_below(1, EXIT_WAIT);
        }
    }
}

/// Longest an exit drain (or a stream going away) waits for the `pm3-logs` thread.
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// Copies the first bytes `pipe` holds into `out` (as many as fit) without taking them: `tee`
/// into the scratch pipe, read back at once. `Ok(0)` at end of file; `Err` is the step to take
/// instead (a scratch pipe that could not be read back whole is never used again).
fn peek(pipe: &OwnedFd, out: &mut [u8]) -> Result<usize, Step> {
    SCRATCH_PIPE.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        if scratch.is_none() {
            let flags = rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK;
            let Ok(pair) = rustix::pipe::pipe_with(flags) else { return Err(Step::Refused) };
            // Room for a whole peek even in small pieces (`tee` copies whole pipe buffers); at
            // the default 16 buffers it may see less.
            let _ = rustix::pipe::fcntl_setpipe_size(&pair.1, 4 * PEEK);
            *scratch = Some(pair);
        }
        let Some((peek_read, peek_write)) = scratch.as_ref() else { return Err(Step::Refused) };
        let n = match rustix::pipe::tee(pipe, peek_write, out.len(), rustix::pipe::SpliceFlags::NONBLOCK) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => return Err(Step::Moved(0)),
            Err(e) => return Err(splice_failed(e)),
        };
        let mut seen = 0;
        while seen < n {
            match rustix::io::read(peek_read, &mut out[seen..n]) {
                Ok(0) | Err(rustix::io::Errno::AGAIN) => break,
                Ok(k) => seen += k,
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => break,
            }
        }
        if seen < n {
            *scratch = None;
            return Err(Step::Refused);
        }
        Ok(n)
    })
}

/// One chunk of a plain log through the staging pipe, its place noted in `map` meanwhile.
fn staged_chunk(pipe: &OwnedFd, sink: &mut Sink, map: &Positions, slot: &Slot, room: usize) -> Step {
    STAGE.with(|stage| {
        let mut stage = stage.borrow_mut();
        if stage.is_none() {
            let flags = rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK;
            let null = std::fs::OpenOptions::new().write(true).open("/dev/null");
            match (rustix::pipe::pipe_with(flags), null) {
                (Ok((r, w)), Ok(null)) => {
                    let _ = rustix::pipe::fcntl_setpipe_size(&w, 2 * SPLICE_CHUNK);
                    *stage = Some((r, w, null.into()));
                }
                _ => return Step::Refused,
            }
        }
        let Some((stage_read, stage_write, null)) = stage.as_ref() else { return Step::Refused };
        let Ok(inode) = sink.log.inode() else { return Step::Refused };
        let nonblock = rustix::pipe::SpliceFlags::NONBLOCK;
        let n = match rustix::pipe::tee(pipe, stage_write, SPLICE_CHUNK.min(room), nonblock) {
            Ok(0) => return Step::Eof,
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => return Step::Moved(0),
            Err(e) => return splice_failed(e),
        };
        let start = sink.log.size();
        map.begin(slot, inode, start, n as u64);
        let written = sink.log.splice_exact(stage_read, n);
        // What reached the file leaves the pipe; on a failure (a full disk) the rest stays there
        // for the copy path, and the stage is emptied.
        let done = usize::try_from(sink.log.size() - start).unwrap_or(n).min(n);
        discard(stage_read, null, n - done);
        discard(pipe, null, done);
        map.end(slot);
        match written {
            Ok(()) => Step::Moved(n),
            Err(e) => splice_failed(e),
        }
    })
}

/// Drops `len` bytes from the head of `pipe` (into /dev/null, which copies nothing).
fn discard(pipe: &OwnedFd, null: &OwnedFd, mut len: usize) {
    while len > 0 {
        match rustix::pipe::splice(pipe, None, null, None, len, rustix::pipe::SpliceFlags::NONBLOCK) {
            Ok(0) => break,
            Ok(k) => len -= k.min(len),
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => break,
        }
    }
}

/// On adopting a process: drops from the head of its pipe what a killed daemon had already
/// written into `log` but not yet dropped (the chunk noted in the position map). The chunk's
/// bytes from `offset` that are in the file are compared with the pipe's head; the drop may
/// have been cut short too, so the pipe may hold only the end of them. Returns the bytes dropped.
fn drop_written_chunk(pipe: &OwnedFd, log: &LogFile) -> usize {
    let Some(map) = log.path().parent().and_then(Positions::get) else { return 0 };
    let Some(inode) = log.existing_inode() else { return 0 };
    let Some((offset, len)) = map.take_pending(inode) else { return 0 };
    let in_file = log.size().saturating_sub(offset).min(len) as usize;
    if in_file == 0 {
        return 0;
    }
    let mut file = vec![0u8; in_file];
    if !log.read_exact_at(&mut file, offset) {
        return 0;
    }
    let head = BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        let want = in_file.min(buf.len());
        peek(pipe, &mut buf[..want]).map(|n| buf[..n].to_vec()).unwrap_or_default()
    });
    // The longest end of the file's chunk that the pipe starts with. Bounded: output built to
    // make every candidate compare long gets no drop (a chunk written twice, never one lost).
    let mut budget: usize = 64 << 20;
    let Some(&first) = head.first() else { return 0 };
    let Some(dup) = (1..=in_file.min(head.len())).rev().find(|&len| {
        if file[in_file - len] != first || budget == 0 {
            return false;
        }
        budget = budget.saturating_sub(len);
        head[..len] == file[in_file - len..]
    }) else {
        return 0;
    };
    let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else { return 0 };
    discard(pipe, &null.into(), dup);
    tracing::info!(log = %log.path().display(), bytes = dup, "dropped a chunk the previous daemon had already written");
    dup
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
pub fn gaps_of(path: &Path) -> GapRecord {
    gaps().get(path).cloned().unwrap_or_default()
}

/// The stamp of this moment: `now` formatted with `fmt`, and a space.
fn prefix_now(fmt: &str) -> Vec<u8> {
    use std::io::Write as _;
    let mut prefix = Vec::with_capacity(32);
    let _ = write!(prefix, "{} ", chrono::Local::now().format(fmt));
    prefix
}

/// Copies `bytes` to `out`, putting `now` formatted with `fmt` (and a space) before each line.
fn stamp(bytes: &[u8], fmt: &str, at_line_start: &mut bool, out: &mut Vec<u8>) {
    stamp_with(bytes, &prefix_now(fmt), at_line_start, out);
}

/// Copies `bytes` to `out`, putting `prefix` before each line.
fn stamp_with(bytes: &[u8], prefix: &[u8], at_line_start: &mut bool, out: &mut Vec<u8>) {
    out.reserve(bytes.len() + bytes.len() / 32 * prefix.len());
    let mut rest = bytes;
    while !rest.is_empty() {
        if *at_line_start {
            out.extend_from_slice(prefix);
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
