//! `log_compress`: rotated logs gzipped on a thread of their own, never on the daemon's.
//!
//! The daemon's thread does every rename of a log's files (a rotation shifts them, so one thread
//! alone may decide where a file is). The worker thread only reads a rotated file through the
//! descriptor it was handed, writes `.NAME.gz.tmp` beside it and out to the disk
//! ([`write_out`]). When a job is done the daemon's thread is woken ([`finisher`]), finds where
//! the file is now (it may have shifted meanwhile: it is found by its inode, and the job keeps
//! it open until then, so no newer file can have been given that inode number), renames the
//! temporary file to `NAME.K.gz`, and only then removes `NAME.K`. So:
//!
//! - the daemon never waits for a compression: a rotation hands the file over and goes on;
//! - a rotation while a compression runs shifts the plain file as any other, and the result lands
//!   where the file is by then; a file shifted out or flushed meanwhile ends its job early;
//! - a daemon killed mid-compression leaves `NAME.K` whole and a partial temporary file that is
//!   never renamed: the next daemon removes it and compresses `NAME.K` again when it opens the
//!   log. Killed between the rename and the removal, it leaves `NAME.K` and a complete
//!   `NAME.K.gz` (written out before the rename): the plain copy goes then.
//!
//! One job per log at a time: when a job ends, the log's newest plain rotated file (if any) is
//! next. A burst of rotations therefore costs one descriptor per log, never a queue of them, and
//! the `.tmp` name of a log is never used by two jobs at once.
//!
//! The worker also closes for good the large log files the daemon removes (a rotation's oldest,
//! a compressed file's plain copy, `flush`): the daemon holds one open across its removal and
//! hands the descriptor over, so freeing 20 MiB of pages and blocks (milliseconds) is not done
//! on its thread. The two threads share no lock, only lock-free queues.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;

use super::file::{Rotation, rotated, rotated_gz};

/// gzip level 1, deflate's fastest. On service logs (timestamps, ids, JSON) it saves 65 % of
/// the bytes at ~240 MB/s of one core; level 6 saves 72 % at ~40 MB/s, six times the CPU for
/// 7 points (measured with this crate, see docs/architecture.md).
const LEVEL: u32 = 1;

/// The worker's nice value: compression takes what the managed processes leave of the CPU.
const NICE: i32 = 10;

/// Rotated files smaller than this are not written out to the disk before their `.gz` takes
/// their place (see [`write_out`]): a crash of the machine could lose less than this of old
/// output, while logs that small rotate so often (a `yes` writer with `log_max_size = "4K"`
/// rotates thousands of times a second) that writing each one out kept the file system's
/// journal busy enough to slow the daemon's own renames and removals (5× fewer calls, removals
/// of up to 16 ms). The default rotation (20 MiB) is always written out.
const WRITE_OUT_MIN: u64 = BIG;

/// A log file this large is closed for good on the worker's thread (see [`Task::Close`]).
const BIG: u64 = 1 << 20;

/// How much the worker reads at a time; after each read it checks its file is still there.
/// Allocated per job, like the compressor's state, so an idle daemon holds none of it.
const CHUNK: usize = 256 * 1024;

/// A file's identity, which renames keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> FileId {
        FileId { dev: meta.dev(), ino: meta.ino() }
    }
}

/// What the worker thread is handed.
enum Task {
    Compress(Job),
    /// The last descriptor of a removed file: closing it frees the file's pages and blocks,
    /// milliseconds for a rotation of 20 MiB, which the daemon's thread does not wait for.
    Close(File),
}

/// Compress `file`, a rotated file of `log`, into `tmp`.
struct Job {
    log: PathBuf,
    file: File,
    id: FileId,
    tmp: PathBuf,
    /// The thread that renames the files of `log` (the daemon's): it alone applies the result.
    owner: ThreadId,
}

enum Outcome {
    /// `tmp` holds, compressed and written out, the first this many bytes of the file: all of it
    /// when it was read.
    Compressed(u64),
    /// The file was removed meanwhile (shifted out, flushed): nothing to keep.
    Gone,
    Failed(io::Error),
}

struct Done {
    log: PathBuf,
    /// Still open: while it is, no other file can take its inode number, so `id` finds this
    /// file or none (a file removed meanwhile keeps its inode until it is closed).
    file: File,
    id: FileId,
    tmp: PathBuf,
    owner: ThreadId,
    outcome: Outcome,
}

/// The daemon's side (its thread alone uses it; a mutex because unit tests run on many). The
/// worker shares no lock with it: tasks go one way and finished jobs the other way through
/// lock-free queues, so neither thread ever waits for the other (the worker runs at a lower
/// priority, and a lock it held while preempted would hold the daemon).
struct State {
    /// Logs with a job at the worker, and the file it compresses.
    busy: HashMap<PathBuf, FileId>,
    /// Logs whose rotated files are compressed.
    wanted: HashSet<PathBuf>,
    /// The worker's queue, once it runs.
    tasks: Option<tokio::sync::mpsc::UnboundedSender<Task>>,
    /// Where the worker reports finished jobs.
    done_tx: DoneSender,
    /// Their receiving end, until [`finisher`] takes it.
    done_rx: Option<tokio::sync::mpsc::UnboundedReceiver<Done>>,
    /// Finished jobs that another thread started (unit tests), kept for it.
    parked: Vec<Done>,
}

type DoneSender = tokio::sync::mpsc::UnboundedSender<Done>;

static STATE: LazyLock<Mutex<State>> = LazyLock::new(|| {
    let (done_tx, done_rx) = tokio::sync::mpsc::unbounded_channel();
    Mutex::new(State {
        busy: HashMap::new(),
        wanted: HashSet::new(),
        tasks: None,
        done_tx,
        done_rx: Some(done_rx),
        parked: Vec::new(),
    })
});

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `.x.log.gz.tmp` beside `x.log`: where a job of `x.log` writes. No process name starts with a
/// dot, so it never collides with a log, and `ls` does not show it.
pub fn tmp_path(log: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(log.file_name().unwrap_or_default());
    name.push(".gz.tmp");
    log.with_file_name(name)
}

/// `log` was opened (its process starts or is adopted). What a daemon killed mid-compression
/// left is put right, and with `compress` its plain rotated files are compressed, newest first.
pub fn opened(log: &Path, rotation: Rotation) {
    let mut st = lock(&STATE);
    if rotation.compress && rotation.max_files > 0 {
        st.wanted.insert(log.to_path_buf());
    } else {
        st.wanted.remove(log);
    }
    if st.busy.contains_key(log) {
        return;
    }
    // Looked up before it is removed: an unlink takes the directory's lock even when there is
    // nothing to remove, and a start of many instances opens their logs in one directory.
    let tmp = tmp_path(log);
    if tmp.symlink_metadata().is_ok() {
        let _ = std::fs::remove_file(tmp);
    }
    start_next(&mut st, log);
}

/// `file` has just become `log.1`: it is compressed now, or when the log's running job ends.
pub fn hand_over(log: &Path, file: File) {
    let mut st = lock(&STATE);
    st.wanted.insert(log.to_path_buf());
    if st.busy.contains_key(log) {
        return;
    }
    match file.metadata() {
        Ok(meta) => start(&mut st, log, file, FileId::of(&meta)),
        Err(e) => tracing::warn!(log = %log.display(), "cannot compress the rotated log: {e}"),
    }
}

/// Applies every finished job: renames each result into place and starts the next job of its log.
/// Runs on the daemon's thread, the only one that renames log files (jobs started on another
/// thread, as unit tests do, are left to theirs).
pub fn finish() {
    let me = std::thread::current().id();
    let mut st = lock(&STATE);
    let mut done = std::mem::take(&mut st.parked);
    if let Some(rx) = st.done_rx.as_mut() {
        while let Ok(d) = rx.try_recv() {
            done.push(d);
        }
    }
    for d in done {
        if d.owner == me {
            apply(&mut st, d);
        } else {
            st.parked.push(d);
        }
    }
}

/// The daemon's task that applies finished jobs as they come.
pub async fn finisher() {
    let Some(mut rx) = lock(&STATE).done_rx.take() else { return };
    while let Some(first) = rx.recv().await {
        let mut st = lock(&STATE);
        apply(&mut st, first);
        while let Ok(d) = rx.try_recv() {
            apply(&mut st, d);
        }
    }
}

/// Closes `file` on the worker's thread when it is large (see [`Task::Close`]), here otherwise.
pub fn close_later(file: File) {
    let big = file.metadata().is_ok_and(|m| m.len() >= BIG);
    if big {
        let mut st = lock(&STATE);
        if let Some(Task::Close(file)) = hand(&mut st, Task::Close(file)) {
            drop(st);
            drop(file);
        }
    }
}

/// Removes `path`, a log file; when it may be `large` (its log rotates at 1 MiB or more), it is
/// held open across the removal and freed off the daemon's thread ([`close_later`]).
pub fn remove(path: &Path, large: bool) -> io::Result<()> {
    if !large {
        return std::fs::remove_file(path);
    }
    match File::open(path) {
        Ok(file) => {
            std::fs::remove_file(path)?;
            close_later(file);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(e),
        // Not readable (not made by pm3): removed all the same.
        Err(_) => std::fs::remove_file(path),
    }
}

/// Whether the files of a log rotating at `max_size` are worth freeing off the daemon's thread.
pub fn large(max_size: u64) -> bool {
    max_size >= BIG
}

fn apply(st: &mut State, d: Done) {
    if st.busy.get(&d.log) == Some(&d.id) {
        st.busy.remove(&d.log);
    }
    match d.outcome {
        Outcome::Compressed(read) => {
            // Its size now, through the descriptor held since: more than was read if appended to.
            let whole = d.file.metadata().is_ok_and(|m| m.len() == read);
            match locate(&d.log, d.id) {
                Some(k) if whole => {
                    let gz = rotated_gz(&d.log, k);
                    if let Err(e) = std::fs::rename(&d.tmp, &gz) {
                        tracing::warn!(log = %gz.display(), "cannot put the compressed log in place: {e}");
                        let _ = std::fs::remove_file(&d.tmp);
                    } else if let Err(e) = std::fs::remove_file(rotated(&d.log, k))
                        && e.kind() != io::ErrorKind::NotFound
                    {
                        tracing::warn!(log = %gz.display(), "cannot remove the uncompressed copy: {e}");
                    }
                }
                // Gone meanwhile; or appended to since (a hook that still had it open): it is
                // compressed again, whole.
                _ => {
                    let _ = std::fs::remove_file(&d.tmp);
                }
            }
            start_next(st, &d.log);
        }
        Outcome::Gone => {
            let _ = std::fs::remove_file(&d.tmp);
            start_next(st, &d.log);
        }
        // Not retried at once (a full disk would make it spin): the next rotation or start of
        // the process tries again.
        Outcome::Failed(e) => {
            let _ = std::fs::remove_file(&d.tmp);
            tracing::warn!(log = %d.log.display(), "cannot compress a rotated log, it stays uncompressed: {e}");
        }
    }
    // Its plain file is removed by now, or was shifted out: this may be its last descriptor.
    if d.file.metadata().is_ok_and(|m| m.len() >= BIG)
        && let Some(Task::Close(file)) = hand(st, Task::Close(d.file))
    {
        drop(file);
    }
}

/// Where the file `id` is among the rotated files of `log` (they are numbered without gaps).
fn locate(log: &Path, id: FileId) -> Option<u32> {
    for k in 1..=crate::spec::MAX_LOG_FILES + 1 {
        match std::fs::symlink_metadata(rotated(log, k)) {
            Ok(meta) if FileId::of(&meta) == id => return Some(k),
            Ok(_) => {}
            Err(_) if !rotated_gz(log, k).exists() => return None,
            Err(_) => {}
        }
    }
    None
}

/// Starts a job for the newest plain rotated file of `log`, if it wants compression and has one.
fn start_next(st: &mut State, log: &Path) {
    if !st.wanted.contains(log) || st.busy.contains_key(log) {
        return;
    }
    for k in 1..=crate::spec::MAX_LOG_FILES + 1 {
        let plain = rotated(log, k);
        let gz = rotated_gz(log, k);
        let file = match File::open(&plain) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound && gz.exists() => continue,
            Err(_) => return,
        };
        if gz.exists() {
            // A daemon killed between the rename and the removal: the `.gz` is complete.
            let _ = std::fs::remove_file(&plain);
            continue;
        }
        if let Ok(meta) = file.metadata() {
            start(st, log, file, FileId::of(&meta));
        }
        return;
    }
}

fn start(st: &mut State, log: &Path, file: File, id: FileId) {
    let job =
        Job { log: log.to_path_buf(), file, id, tmp: tmp_path(log), owner: std::thread::current().id() };
    if hand(st, Task::Compress(job)).is_none() {
        st.busy.insert(log.to_path_buf(), id);
    }
}

/// Hands `task` to the worker, starting it first if needed; gives the task back when it cannot.
fn hand(st: &mut State, task: Task) -> Option<Task> {
    let tx = match &st.tasks {
        Some(tx) => tx.clone(),
        None => match spawn_worker(st.done_tx.clone()) {
            Ok(tx) => st.tasks.insert(tx).clone(),
            Err(e) => {
                tracing::warn!("cannot start the log compressor: {e}");
                return Some(task);
            }
        },
    };
    match tx.send(task) {
        Ok(()) => None,
        Err(tokio::sync::mpsc::error::SendError(task)) => {
            // The worker is gone: the next task starts another.
            st.tasks = None;
            Some(task)
        }
    }
}

fn spawn_worker(done: DoneSender) -> io::Result<tokio::sync::mpsc::UnboundedSender<Task>> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Task>();
    std::thread::Builder::new()
        .name("pm3-gzip".into())
        .stack_size(256 * 1024)
        .spawn(move || work(&mut rx, &done))?;
    Ok(tx)
}

/// The worker: one task after another, each job reported back whatever happened.
fn work(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Task>, done: &DoneSender) {
    lower_priority();
    while let Some(task) = rx.blocking_recv() {
        let job = match task {
            Task::Compress(job) => job,
            Task::Close(file) => {
                drop(file);
                continue;
            }
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| compress(&job)))
            .unwrap_or_else(|_| Outcome::Failed(io::Error::other("the compressor panicked")));
        let Job { log, file, id, tmp, owner } = job;
        // Nothing to report to once the daemon's side is gone (the process is ending).
        let _ = done.send(Done { log, file, id, tmp, owner, outcome });
    }
}

fn compress(job: &Job) -> Outcome {
    match gzip(job, &mut vec![0u8; CHUNK]) {
        Ok(Some(read)) => Outcome::Compressed(read),
        Ok(None) => Outcome::Gone,
        Err(e) => Outcome::Failed(e),
    }
}

/// Writes `job.file` gzipped to `job.tmp` and out to the disk; `None` when the file was removed
/// meanwhile (no one would see the result).
fn gzip(job: &Job, buf: &mut [u8]) -> io::Result<Option<u64>> {
    let gone = || job.file.metadata().is_ok_and(|m| m.nlink() == 0);
    let meta = job.file.metadata()?;
    if meta.nlink() == 0 {
        return Ok(None);
    }
    let out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&job.tmp)?;
    let mtime = u32::try_from(meta.mtime()).unwrap_or(0);
    let mut gz = flate2::GzBuilder::new()
        .mtime(mtime)
        .write(BufWriter::with_capacity(64 * 1024, out), flate2::Compression::new(LEVEL));
    let mut read = 0u64;
    loop {
        let n = match job.file.read_at(buf, read) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        gz.write_all(&buf[..n])?;
        read += n as u64;
        if gone() {
            return Ok(None);
        }
    }
    let out = gz.finish()?.into_inner().map_err(io::IntoInnerError::into_error)?;
    write_out(&out, read)?;
    Ok(Some(read))
}

/// Writes the file's data to the disk and waits for it, so that a crash of the machine after
/// the rename cannot leave an empty `.gz` where the plain file was; a daemon's death needs none
/// of it (the page cache outlives the process). Not `fsync`: that also commits the file
/// system's journal, and the daemon's own renames and removals then waited behind it (12 ms and
/// more with fast writers); the journal commits the rename later, after the blocks this
/// allocates. Files under [`WRITE_OUT_MIN`] are left to the kernel's writeback.
fn write_out(file: &File, len: u64) -> io::Result<()> {
    if len < WRITE_OUT_MIN {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        // SAFETY: a plain system call on a descriptor we own; offset 0 and length 0 mean the
        // whole file.
        if unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, flags) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    file.sync_data()
}

/// Lowers the calling thread's priority (on Linux a nice value is per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on this thread's own id; no memory is involved.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, NICE);
    }
}

/// Tests: applies finished jobs until `log` has none left (false after `timeout`).
#[cfg(test)]
pub(crate) fn settle(log: &Path, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        finish();
        if !lock(&STATE).busy.contains_key(log) {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::time::Duration;

    use super::*;
    use crate::logs::file::LogFile;

    const SETTLE: Duration = Duration::from_secs(20);

    fn gunzip(path: &Path) -> String {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(File::open(path).expect("open .gz"))
            .read_to_string(&mut text)
            .expect("gunzip");
        text
    }

    /// Every line of the log at `p`, oldest first, from `.n(.gz)` … `.1(.gz)` and the current
    /// file, and which of the rotated files are compressed.
    fn all_lines(p: &Path, n: u32) -> (Vec<u32>, Vec<bool>) {
        let mut text = String::new();
        let mut compressed = Vec::new();
        for k in (1..=n).rev() {
            let (plain, gz) = (rotated(p, k), rotated_gz(p, k));
            assert!(!(plain.exists() && gz.exists()), "{} is there twice", plain.display());
            if gz.exists() {
                text += &gunzip(&gz);
                compressed.push(true);
            } else if let Ok(t) = std::fs::read_to_string(&plain) {
                text += &t;
                compressed.push(false);
            }
        }
        text += &std::fs::read_to_string(p).unwrap_or_default();
        (text.lines().map(|l| l.parse().expect("a number")).collect(), compressed)
    }

    fn contiguous(nums: &[u32], last: u32) {
        assert_eq!(nums.last(), Some(&last), "ends with the last line written");
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "contiguous: {:?}…", &nums[..nums.len().min(20)]);
    }

    fn rotation(max_size: u64, max_files: u32) -> Rotation {
        Rotation { max_size, max_files, compress: true }
    }

    #[test]
    fn rotated_files_become_gz_with_exactly_their_lines_even_while_rotations_go_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("w-out.log");
        let mut f = LogFile::open(&p, rotation(64 * 1024, 4)).expect("open");
        // About 15 rotations in a row, none waiting for a compression: jobs finish while their
        // files shift, and files shifted out end theirs. Every rotated file has the same size
        // here, so a result put in place by an inode number that a newer file reused would show
        // (it did, before jobs kept their file open until applied).
        let mut chunk = String::new();
        for i in 0..150_000u32 {
            chunk += &format!("{i}\n");
            if chunk.len() > 5000 {
                f.write(chunk.as_bytes()).expect("write");
                chunk.clear();
            }
        }
        f.write(chunk.as_bytes()).expect("write");
        assert!(settle(&p, SETTLE), "every job ends");
        let (nums, compressed) = all_lines(&p, 4);
        assert_eq!(compressed, [true; 4], "every rotated file is compressed");
        contiguous(&nums, 149_999);
        assert!(!tmp_path(&p).exists(), "no temporary file is left");
        assert!(!rotated(&p, 5).exists() && !rotated_gz(&p, 5).exists(), "at most max_files");
        let mode = std::fs::metadata(rotated_gz(&p, 1)).expect("gz").permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600, "private like every log");
    }

    #[test]
    fn a_daemon_killed_mid_compression_leaves_the_plain_file_which_is_compressed_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("k-out.log");
        // What a SIGKILL leaves: `.1` whole, a half-written temporary file (never renamed); and,
        // killed between the rename and the removal, `.2` next to its complete `.2.gz`.
        std::fs::write(rotated(&p, 1), "3\n4\n").expect("write");
        std::fs::write(tmp_path(&p), b"\x1f\x8b\x08half").expect("write");
        std::fs::write(rotated(&p, 2), "1\n2\n").expect("write");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"1\n2\n").expect("gzip");
        std::fs::write(rotated_gz(&p, 2), gz.finish().expect("gzip")).expect("write");
        std::fs::write(&p, "5\n").expect("write");

        let _f = LogFile::open(&p, rotation(1 << 20, 3)).expect("open");
        assert!(settle(&p, SETTLE));
        assert!(!rotated(&p, 2).exists(), "the plain duplicate goes");
        assert!(!rotated(&p, 1).exists(), "replaced by its .gz");
        assert_eq!(gunzip(&rotated_gz(&p, 1)), "3\n4\n");
        assert!(!tmp_path(&p).exists());
        let (nums, _) = all_lines(&p, 3);
        assert_eq!(nums, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn without_compression_a_leftover_temporary_file_goes_and_plain_files_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("n-out.log");
        std::fs::write(rotated(&p, 1), "1\n").expect("write");
        std::fs::write(tmp_path(&p), "partial").expect("write");
        let _f =
            LogFile::open(&p, Rotation { max_size: 1 << 20, max_files: 3, compress: false }).expect("open");
        assert!(settle(&p, SETTLE));
        assert!(!tmp_path(&p).exists());
        assert!(rotated(&p, 1).exists() && !rotated_gz(&p, 1).exists());
    }

    #[test]
    fn a_flush_during_a_compression_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f-out.log");
        let mut f = LogFile::open(&p, rotation(4 << 20, 2)).expect("open");
        let line = format!("{}\n", "x".repeat(99));
        for _ in 0..(4 << 20) / 100 + 10 {
            f.write(line.as_bytes()).expect("write");
        }
        // The job may be anywhere: queued, compressing, or finished but not applied.
        crate::logs::file::remove_rotated(&p, 2);
        assert!(settle(&p, SETTLE));
        for k in 1..=3 {
            assert!(!rotated(&p, k).exists() && !rotated_gz(&p, k).exists(), "rotation {k} is gone");
        }
        assert!(!tmp_path(&p).exists(), "no temporary file is left");
    }

    #[test]
    fn a_file_appended_to_after_its_rotation_is_compressed_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("h-out.log");
        let mut f = LogFile::open(&p, rotation(8 * 1024, 2)).expect("open");
        for i in 0..2000u32 {
            f.write(format!("{i}\n").as_bytes()).expect("write");
        }
        // A hook that still had the file open writes on after the rotation.
        let mut late = std::fs::OpenOptions::new().append(true).open(rotated(&p, 1)).expect("open .1");
        late.write_all(b"late\n").expect("append");
        assert!(settle(&p, SETTLE));
        let gz = rotated_gz(&p, 1);
        assert!(gz.exists() && !rotated(&p, 1).exists());
        assert!(gunzip(&gz).ends_with("late\n"), "the late line is in the .gz");
    }
}
