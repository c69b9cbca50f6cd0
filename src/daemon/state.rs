//! `state.json`: what the daemon manages and which processes run, written atomically (temp
//! file, fsync, rename) whenever it changes, and read back by the next daemon so that a daemon
//! killed even with SIGKILL costs nothing: live processes are adopted (matched by pid *and*
//! kernel start time, never by pid alone), dead ones go through their restart policy, and
//! nothing is started twice.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::process::spawn;
use crate::protocol::Status;
use crate::spec::ProcessDef;
use crate::supervisor::{self, Instance, Prior};

use super::Daemon;
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

/// Writes `bytes` to `path` atomically: a reader sees the old file or the new one, never half.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut f = crate::paths::open_private(&tmp, File::options().write(true).create(true).truncate(true))?;
    f.write_all(bytes)?;
    f.sync_all()?;
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
/// Longest delay of a write while changes keep coming.
const MAX_DELAY: Duration = Duration::from_millis(50);

/// Keeps `state.json` in step with the table: after every burst of changes (quiet for a few
/// ms, or at most 50 ms later), if what would be saved differs from what was saved, hand it to
/// the writer thread, so the 5–10 ms of an fsync never stall the daemon's only thread.
pub async fn persist(d: Rc<Daemon>, writer: Writer) {
    let mut bus = d.ctx.bus.subscribe();
    let mut last: Vec<u8> = std::fs::read(d.ctx.paths.state_file()).unwrap_or_default();
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
        if bytes != last {
            writer.submit(bytes.clone());
            last = bytes;
        }
        // A burst (start or stop of many processes) leaves freed heap behind: give it back, so
        // the daemon's footprint returns to its idle size.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free memory at the top of glibc's heaps.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// The thread that writes `state.json` (atomically, with fsync), always the newest version.
#[derive(Clone)]
pub struct Writer {
    tx: std::sync::mpsc::Sender<Vec<u8>>,
    /// Held while writing; `close` takes it so no write lands after the file is removed.
    lock: std::sync::Arc<std::sync::Mutex<bool>>,
}

impl Writer {
    pub fn start(path: PathBuf) -> Writer {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let lock = std::sync::Arc::new(std::sync::Mutex::new(false));
        let thread_lock = lock.clone();
        let spawned =
            std::thread::Builder::new().name("pm3-state".into()).stack_size(64 * 1024).spawn(move || {
                while let Ok(mut bytes) = rx.recv() {
                    // Only the newest state matters.
                    while let Ok(newer) = rx.try_recv() {
                        bytes = newer;
                    }
                    let Ok(closed) = thread_lock.lock() else { return };
                    if *closed {
                        return;
                    }
                    if let Err(e) = write_atomic(&path, &bytes) {
                        tracing::warn!(path = %path.display(), "cannot save state: {e}");
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the state writer: {e}");
        }
        Writer { tx, lock }
    }

    fn submit(&self, bytes: Vec<u8>) {
        let _ = self.tx.send(bytes);
    }

    /// Stops writing for good (waiting for a write in progress) and removes the state file.
    pub fn close(&self, path: &Path) {
        if let Ok(mut closed) = self.lock.lock() {
            *closed = true;
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Rebuilds the table from the previous daemon's state file.
pub fn restore(d: &Rc<Daemon>) {
    let Some(saved) = read(&d.ctx.paths.state_file()) else { return };
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
        let prior = match (s.status.is_running(), s.pid, s.start_time) {
            (true, Some(pid), Some(t)) if spawn::start_time(pid) == Some(t) => Prior::Alive {
                pid,
                start_time: t,
                started_at: started_at.unwrap_or_else(SystemTime::now),
                status: match s.status {
                    // A stop was under way: it stays running until someone stops it again.
                    Status::Stopping => Status::Online,
                    other => other,
                },
            },
            (true, _, _) => Prior::Gone { started_at },
            // Waiting for dependencies or for a restart delay: start it again below.
            (false, _, _) if s.status == Status::Waiting => {
                Prior::Idle { status: Status::Stopped, error: None }
            }
            (false, _, _) => Prior::Idle { status: s.status, error: s.error },
        };
        let waiting = s.status == Status::Waiting;
        let inst = Rc::new(Instance {
            name: s.name.clone(),
            index: s.index,
            def: def.clone(),
            base_env: env.clone(),
            config,
        });
        let handle = supervisor::adopt(inst.clone(), d.ctx.clone(), prior, s.restarts);
        table.entries.insert(s.name.clone(), Entry { inst, handle });
        if waiting {
            d.resume.borrow_mut().push(s.name);
        }
    }
    tracing::info!(count = table.entries.len(), "restored state");
}
