//! `state.json`: what the daemon manages and which processes run, replaced atomically (temp
//! file, rename) whenever it changes, and read back by the next daemon so that a daemon
//! killed even with SIGKILL costs nothing: live processes are adopted (matched by pid *and*
//! kernel start time, never by pid alone), dead ones go through their restart policy, and
//! nothing is started twice.
//!
//! Durable before acknowledged: a request that changes what runs (start, stop, restart,
//! reload, scale, resurrect) is answered only once the state that reflects it is in the file
//! ([`handle_durably`]). What changes without a request (a crashed process respawned) is
//! written after the burst settles; a daemon killed in that window leaves a process the file
//! does not name, which the next daemon finds by its markers (`super::recover`).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::process::marker;
use crate::protocol::{Request, Response, Status};
use crate::spec::ProcessDef;
use crate::supervisor::{self, Instance, Prior};

use super::Daemon;
use super::recover::{self, Strays};
use super::table::Entry;

/// Bumped when the file's shape changes; a file of another version is ignored.
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedState {
    pub version: u32,
    /// Definitions and environments are stored once and referred to by index.
    pub defs: Vec<ProcessDef>,
    pub envs: Vec<BTreeMap<String, String>>,
    pub instances: Vec<SavedInstance>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedInstance {
    pub name: String,
    pub index: u32,
    pub def: usize,
    pub env: usize,
    pub config: PathBuf,
    pub status: Status,
    pub pid: Option<u32>,
    pub start_time: Option<u64>,
    pub started_at_ms: Option<u64>,
    pub restarts: u32,
    pub error: Option<String>,
}

/// The current table as it would be saved.
pub fn capture(d: &Daemon) -> SavedState {
    let table = d.table.borrow();
    let mut defs: Vec<Rc<ProcessDef>> = Vec::new();
    let mut envs: Vec<Rc<BTreeMap<String, String>>> = Vec::new();
    let mut index_of = |e: &Entry| {
        let def = defs.iter().position(|x| Rc::ptr_eq(x, &e.inst.def)).unwrap_or_else(|| {
            defs.push(e.inst.def.clone());
            defs.len() - 1
        });
        let env = envs.iter().position(|x| Rc::ptr_eq(x, &e.inst.base_env)).unwrap_or_else(|| {
            envs.push(e.inst.base_env.clone());
            envs.len() - 1
        });
        (def, env)
    };
    let instances = table
        .ordered()
        .into_iter()
        .map(|e| {
            let (def, env) = index_of(e);
            let s = e.handle.snapshot.borrow();
            SavedInstance {
                name: e.inst.name.clone(),
                index: e.inst.index,
                def,
                env,
                config: (*e.inst.config).clone(),
                status: s.status,
                pid: s.pid,
                start_time: s.start_time,
                started_at_ms: s.started_at.map(super::views::unix_ms),
                restarts: s.restarts,
                error: s.error.clone(),
            }
        })
        .collect();
    SavedState {
        version: VERSION,
        defs: defs.iter().map(|d| (**d).clone()).collect(),
        envs: envs.iter().map(|e| (**e).clone()).collect(),
        instances,
    }
}

/// Writes `bytes` to `path` atomically and durably (fsync before the rename): a reader sees the
/// old file or the new one, never half, also after a power loss (`dump.json`).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace(path, bytes, true)
}

/// Writes `bytes` to a temp file next to `path` and renames it over `path`, with or without an
/// fsync of the data first.
fn replace(path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut f = crate::paths::open_private(&tmp, File::options().write(true).create(true).truncate(true))?;
    f.write_all(bytes)?;
    if sync {
        f.sync_all()?;
    }
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Reads a state file; a missing, unreadable or foreign one means "nothing to restore".
pub fn read(path: &Path) -> Option<SavedState> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice::<SavedState>(&bytes) {
        Ok(s) if s.version == VERSION => Some(s),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(path = %path.display(), "ignoring unreadable state: {e}");
            None
        }
    }
}

/// How long the table must be quiet before the state is written: a start of 100 is one write.
const QUIET: Duration = Duration::from_millis(5);
/// Least time between two drops of the daemon's clean code pages after a burst.
const TRIM_EVERY: Duration = Duration::from_secs(1);
/// How long after a burst its code pages are dropped.
const TRIM_AFTER: Duration = Duration::from_millis(200);
/// Longest delay of a write while changes keep coming.
const MAX_DELAY: Duration = Duration::from_millis(50);

/// Keeps `state.json` in step with the table: after every burst of changes (quiet for a few
/// ms, or at most 50 ms later), if what would be saved differs from what was saved, hand it to
/// the writer thread, so file system latency never stalls the daemon's only thread.
pub async fn persist(d: Rc<Daemon>, writer: Writer) {
    let mut bus = d.ctx.bus.subscribe();
    let mut trimmed: Option<Instant> = None;
    loop {
        if bus.changed().await.is_err() {
            return;
        }
        let deadline = tokio::time::Instant::now() + MAX_DELAY;
        loop {
            tokio::select! {
                changed = bus.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(QUIET) => break,
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        bus.borrow_and_update();
        if d.closed.get() {
            return;
        }
        let Ok(bytes) = serde_json::to_vec(&capture(&d)) else { continue };
        writer.submit(bytes);
        // A burst (start or stop of many processes) leaves freed heap behind: give it back, so
        // the daemon's footprint returns to its idle size.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free memory at the top of glibc's heaps.
        unsafe {
            libc::malloc_trim(0);
        }
        // And the code pages the burst ran (spawning, adopting, stopping): the steady state
        // runs little of it. A moment later, so that the answer to the request that caused the
        // burst, and the first output of what it started, do not wait for it; and at most every
        // few seconds, so a crash loop does not fault the same pages in again and again.
        if trimmed.is_none_or(|at: Instant| at.elapsed() >= TRIM_EVERY) {
            trimmed = Some(Instant::now() + TRIM_AFTER);
            tokio::task::spawn_local(async {
                tokio::time::sleep(TRIM_AFTER).await;
                crate::process::trim_clean_file_pages();
            });
        }
    }
}

/// Which requests change what runs, and so are answered only once `state.json` reflects them.
pub fn changes_state(req: &Request) -> bool {
    matches!(
        req,
        Request::Start { .. }
            | Request::Stop { .. }
            | Request::Restart { .. }
            | Request::Reload { .. }
            | Request::Scale { .. }
            | Request::Resurrect
    )
}

/// Handles a request (`ops::handle`); one that changes what runs is answered only once the
/// state that reflects it is in `state.json`, so a daemon killed right after it answered leaves
/// the next one a file that names every process it started.
pub async fn handle_durably(d: &Rc<Daemon>, req: Request) -> Response {
    let durable = changes_state(&req);
    let response = super::ops::handle(d, req).await;
    if durable {
        flush(d).await;
    }
    response
}

/// Waits until `state.json` holds the table as it is now: hands the state to the writer thread
/// (unless it was handed over already) and waits for that write, or for the one in progress,
/// to land. Returns at once when the daemon keeps no state or has closed it.
pub async fn flush(d: &Daemon) {
    let Some(writer) = &d.writer else { return };
    if d.closed.get() {
        return;
    }
    let Ok(bytes) = serde_json::to_vec(&capture(d)) else { return };
    if let Some(done) = writer.write_and_wait(bytes) {
        // An error means the thread is gone (closed, or never started): nothing to wait for.
        let _ = done.await;
    }
}

/// One hand-over to the writer thread: a new state (numbered), and/or someone to tell once
/// everything handed over before is written.
struct Job {
    seq: u64,
    bytes: Option<Vec<u8>>,
    done: Option<oneshot::Sender<()>>,
}

/// The thread that replaces `state.json`, always with the newest version it was handed.
///
/// No fsync. The file is for the next daemon *on the same boot*: a daemon that dies in any way
/// (SIGKILL, a crash) leaves the kernel's page cache as it was, and the rename makes each new
/// version visible atomically, so the next daemon reads what was last written — whatever was
/// acknowledged. Only a crash of the whole machine can lose a write that was not synced, and
/// that kills every process the file describes as well: nothing is left to adopt or to
/// duplicate. The file read after such a reboot is then at worst older (what it says was
/// running goes through the restart policy, as after any reboot) or unreadable (ignored: a
/// fresh start). Bringing a set back after a reboot is `pm3 save` / `resurrect`, whose
/// `dump.json` is fsynced. An fsync costs 5–25 ms on the machine this was measured on, and
/// every acknowledged start and stop would wait for it.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
    /// Held while writing; `close` takes it so no write lands after the file is removed.
    lock: Arc<Mutex<bool>>,
    /// The last state handed to the thread (the daemon's thread only).
    last: Rc<RefCell<Vec<u8>>>,
    /// Number of the last state handed over, and of the last one written.
    sent: Rc<Cell<u64>>,
    written: Arc<AtomicU64>,
}

impl Writer {
    pub fn start(path: PathBuf) -> Writer {
        let (tx, rx) = mpsc::channel::<Job>();
        let lock = Arc::new(Mutex::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let last = std::fs::read(&path).unwrap_or_default();
        let (thread_lock, thread_written) = (lock.clone(), written.clone());
        let spawned =
            std::thread::Builder::new().name("pm3-state".into()).stack_size(64 * 1024).spawn(move || {
                while let Ok(first) = rx.recv() {
                    // Only the newest state matters; everyone waiting is told after it is written.
                    let mut newest: Option<(u64, Vec<u8>)> = None;
                    let mut waiting = Vec::new();
                    for job in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                        if let Some(bytes) = job.bytes {
                            newest = Some((job.seq, bytes));
                        }
                        waiting.extend(job.done);
                    }
                    let Ok(closed) = thread_lock.lock() else { return };
                    if *closed {
                        return;
                    }
                    if let Some((seq, bytes)) = newest {
                        if let Err(e) = replace(&path, &bytes, false) {
                            tracing::warn!(path = %path.display(), "cannot save state: {e}");
                        }
                        thread_written.store(seq, Ordering::Release);
                    }
                    drop(closed);
                    for w in waiting {
                        let _ = w.send(());
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the state writer: {e}");
        }
        Writer { tx, lock, last: Rc::new(RefCell::new(last)), sent: Rc::new(Cell::new(0)), written }
    }

    /// Hands `bytes` over unless they are what was handed over last.
    fn submit(&self, bytes: Vec<u8>) {
        let _ = self.hand_over(bytes, None);
    }

    /// Hands `bytes` over (unless they were already) and returns what resolves once they are
    /// written; `None` when they already are.
    fn write_and_wait(&self, bytes: Vec<u8>) -> Option<oneshot::Receiver<()>> {
        let (tx, rx) = oneshot::channel();
        self.hand_over(bytes, Some(tx)).then_some(rx)
    }

    /// True when a job was sent that `done` (if any) will be told about.
    fn hand_over(&self, bytes: Vec<u8>, done: Option<oneshot::Sender<()>>) -> bool {
        let changed = *self.last.borrow() != bytes;
        let job = if changed {
            let seq = self.sent.get() + 1;
            self.sent.set(seq);
            Job { seq, bytes: Some(bytes.clone()), done }
        } else if done.is_some() && self.written.load(Ordering::Acquire) < self.sent.get() {
            // Already handed over but not written yet: wait for that write.
            Job { seq: 0, bytes: None, done }
        } else {
            return false;
        };
        if changed {
            *self.last.borrow_mut() = bytes;
        }
        self.tx.send(job).is_ok()
    }

    /// Stops writing for good (waiting for a write in progress) and removes the state file.
    pub fn close(&self, path: &Path) {
        if let Ok(mut closed) = self.lock.lock() {
            *closed = true;
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Rebuilds the table from the previous daemon's state file. `strays` are the marked processes
/// found after an unclean end (`super::recover`): one whose instance's recorded run is gone, or
/// was waiting, is adopted as that run; every other one is stopped.
pub fn restore(d: &Rc<Daemon>, mut strays: Strays) {
    let Some(saved) = read(&d.ctx.paths.state_file()) else {
        strays.stop_the_rest();
        return;
    };
    let defs: Vec<Rc<ProcessDef>> = saved.defs.into_iter().map(Rc::new).collect();
    let envs: Vec<Rc<BTreeMap<String, String>>> = saved.envs.into_iter().map(Rc::new).collect();
    let mut configs: Vec<Rc<PathBuf>> = Vec::new();
    let mut table = d.table.borrow_mut();
    for s in saved.instances {
        let (Some(def), Some(env)) = (defs.get(s.def), envs.get(s.env)) else { continue };
        let config = match configs.iter().find(|c| ***c == s.config) {
            Some(c) => c.clone(),
            None => {
                configs.push(Rc::new(s.config.clone()));
                configs[configs.len() - 1].clone()
            }
        };
        let started_at = s.started_at_ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
        let mut found = strays.take(&s.name);
        let mut restarts = s.restarts;
        let recorded_alive = match (s.status.is_running(), s.pid, s.start_time) {
            (true, Some(pid), Some(t)) if marker::live_start_time(pid) == Some(t) => Some((pid, t)),
            _ => None,
        };
        let prior = match recorded_alive {
            Some((pid, t)) => {
                found.retain(|m| m.pid != pid);
                Prior::Alive {
                    pid,
                    start_time: t,
                    started_at: started_at.unwrap_or_else(SystemTime::now),
                    status: match s.status {
                        // A stop was under way: it stays running until someone stops it again.
                        Status::Stopping => Status::Online,
                        other => other,
                    },
                }
            }
            // The recorded run is gone (or there was none yet: waiting for dependencies or a
            // restart delay), and a process started for this instance runs: that is its run.
            None if (s.status.is_running() || s.status == Status::Waiting) && !found.is_empty() => {
                let m = found.remove(0);
                tracing::warn!(name = %s.name, pid = m.pid, "adopting a process the state file did not record");
                // A recorded run that ended was followed by this one: a restart nobody counted.
                if s.status.is_running() && s.pid.is_some() {
                    restarts = restarts.saturating_add(1);
                }
                Prior::Alive {
                    pid: m.pid,
                    start_time: m.start_time,
                    started_at: recover::started_at(m.start_time),
                    // Whether a health check had passed is unknown: the probe runs again.
                    status: if def.health_check.is_some() { Status::Starting } else { Status::Online },
                }
            }
            None if s.status.is_running() => Prior::Gone { started_at },
            // Waiting for dependencies or for a restart delay: start it again below.
            None if s.status == Status::Waiting => Prior::Idle { status: Status::Stopped, error: None },
            None => Prior::Idle { status: s.status, error: s.error },
        };
        let waiting = s.status == Status::Waiting && !matches!(prior, Prior::Alive { .. });
        for m in found {
            recover::stop(
                m,
                def.kill_signal,
                def.kill_timeout(),
                "its instance runs another process or is stopped",
            );
        }
        let inst = Rc::new(Instance {
            name: s.name.clone(),
            index: s.index,
            def: def.clone(),
            base_env: env.clone(),
            config,
        });
        let handle = supervisor::adopt(inst.clone(), d.ctx.clone(), prior, restarts);
        table.entries.insert(s.name.clone(), Entry { inst, handle });
        if waiting {
            d.resume.borrow_mut().push(s.name);
        }
    }
    strays.stop_the_rest();
    tracing::info!(count = table.entries.len(), "restored state");
}
