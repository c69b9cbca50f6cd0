//! The daemon: one per data directory, started on demand by the CLI. It owns the control
//! socket, the table of managed instances and their supervisor tasks, all on one thread.
//!
//! Life cycle: take the lock file (a second daemon exits at once), bind `pm3.sock` (0600), write
//! `pm3.pid`, serve until `pm3 kill` or SIGTERM/SIGINT, stop everything, remove socket and pid file.

pub mod dump;
pub mod locks;
pub mod ops;
pub mod recover;
pub mod rollout;
pub mod server;
pub mod state;
pub mod table;
pub mod validate;
pub mod views;
pub mod watch;

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::rc::Rc;

use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch as channel;

use crate::paths::{Paths, PathsError};
use crate::supervisor::Ctx;

/// State shared by every connection of the daemon (single-threaded, hence `Rc`/`RefCell`).
pub struct Daemon {
    pub table: RefCell<table::Table>,
    pub ctx: Ctx,
    /// Writes `state.json` (the daemon only; `pm3 run` keeps no state).
    pub writer: Option<state::Writer>,
    /// Set once the daemon has cleaned up: the state file must not be written again.
    pub closed: std::cell::Cell<bool>,
    /// Instances that were waiting (for dependencies or a restart delay) when the previous
    /// daemon died; started again once the table is restored.
    pub resume: RefCell<Vec<String>>,
    /// File watchers of processes with `watch`, by process name.
    pub watchers: RefCell<std::collections::HashMap<String, watch::Watcher>>,
    /// Set to true once `pm3 kill` has been answered: the daemon then exits.
    pub shutdown: channel::Sender<bool>,
    /// Set when shutdown begins: mutations are refused from then on.
    pub closing: std::cell::Cell<bool>,
    /// Serializes mutations per config file.
    pub locks: Rc<locks::Locks>,
}

impl Daemon {
    /// An empty daemon state; `tee` receives every output line (foreground mode).
    pub fn new(
        paths: Paths,
        tee: Option<Rc<dyn crate::logs::capture::LineSink>>,
        writer: Option<state::Writer>,
    ) -> Rc<Daemon> {
        Rc::new(Daemon {
            writer,
            table: RefCell::new(table::Table::default()),
            ctx: Ctx {
                paths: Rc::new(paths),
                bus: Rc::new(channel::channel(0u64).0),
                stats: Rc::default(),
                tee,
                sockets: Rc::default(),
            },
            watchers: RefCell::default(),
            resume: RefCell::default(),
            closed: std::cell::Cell::new(false),
            shutdown: channel::channel(false).0,
            closing: std::cell::Cell::new(false),
            locks: Rc::default(),
        })
    }

    /// Refuses a mutation once shutdown has begun.
    pub fn check_open(&self) -> Result<(), crate::protocol::ErrorReply> {
        if self.closing.get() {
            return Err(crate::protocol::ErrorReply::new(
                crate::protocol::ErrorKind::ShuttingDown,
                "daemon is shutting down",
            ));
        }
        Ok(())
    }

    /// Removes the socket, the pid file and the state (once everything is stopped: a daemon
    /// that shut down cleanly leaves nothing to adopt; `pm3 save`/`resurrect` bring a set back).
    pub fn cleanup_files(&self) {
        self.closed.set(true);
        // Unrecorded processes found at start-up and still in their grace period go too.
        recover::kill_stopping();
        let _ = std::fs::remove_file(self.ctx.paths.socket());
        let _ = std::fs::remove_file(self.ctx.paths.pid_file());
        match &self.writer {
            Some(w) => w.close(&self.ctx.paths.state_file()),
            None => {
                let _ = std::fs::remove_file(self.ctx.paths.state_file());
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Paths(#[from] PathsError),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: std::path::PathBuf, source: io::Error },
    #[error("another daemon already runs for {0}")]
    AlreadyRunning(std::path::PathBuf),
}

/// Entry point of `pm3 daemon`: sets up logging and the runtime, runs until shut down.
pub fn main(paths: Paths) -> i32 {
    // Whatever the first client's parent left open (pipes, sockets) must neither stay open here
    // nor reach the processes we start.
    crate::process::close_inherited_fds();
    tracing_subscriber::fmt().with_ansi(false).with_target(false).init();
    // Own session: no terminal, no signals from the shell that started us.
    let _ = rustix::process::setsid();
    let _ = std::env::set_current_dir("/");
    // Private files, room for many descriptors; children get the caller's values back.
    crate::process::limits::enter(true);
    crate::process::reserve_fd_table();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start runtime: {e}");
            return 1;
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&rt, run(paths)) {
        Ok(()) => 0,
        Err(DaemonError::AlreadyRunning(_)) => 0,
        Err(e) => {
            tracing::error!("{e}");
            1
        }
    }
}

/// Runs the daemon until `pm3 kill` or a termination signal.
pub async fn run(paths: Paths) -> Result<(), DaemonError> {
    paths.ensure()?;
    let _lock = take_lock(&paths)?;
    // A daemon that ended cleanly removed both; either one left means it died (SIGKILL, crash).
    let unclean = paths.pid_file().exists() || paths.state_file().exists();
    // Every process started from here on carries the data directory, resolved, so the next
    // daemon recognises it whichever spelling of the path it is given.
    let home = std::fs::canonicalize(&paths.home).unwrap_or_else(|_| paths.home.clone());
    crate::process::marker::mark_children(&home);
    let socket = paths.socket();
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).map_err(|source| DaemonError::Io {
        what: "cannot bind",
        path: socket.clone(),
        source,
    })?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|source| DaemonError::Io { what: "cannot chmod", path: socket.clone(), source })?;
    let pid_file = paths.pid_file();
    crate::paths::open_private(&pid_file, OpenOptions::new().write(true).create(true).truncate(true))
        .and_then(|mut f| io::Write::write_all(&mut f, format!("{}\n", std::process::id()).as_bytes()))
        .map_err(|source| DaemonError::Io { what: "cannot write", path: pid_file.clone(), source })?;
    tracing::info!(pid = std::process::id(), home = %paths.home.display(), "daemon started");

    let writer = state::Writer::start(paths.state_file());
    let daemon = Daemon::new(paths, None, Some(writer.clone()));

    let mut term = signal(SignalKind::terminate()).map_err(|source| DaemonError::Io {
        what: "cannot handle signals",
        path: socket.clone(),
        source,
    })?;
    let mut int = signal(SignalKind::interrupt()).map_err(|source| DaemonError::Io {
        what: "cannot handle signals",
        path: socket.clone(),
        source,
    })?;
    // SIGHUP (a closed terminal) must not end the daemon.
    let mut hup = signal(SignalKind::hangup()).map_err(|source| DaemonError::Io {
        what: "cannot handle signals",
        path: socket.clone(),
        source,
    })?;
    tokio::task::spawn_local(crate::process::reaper::reap_orphans());
    tokio::task::spawn_local(crate::logs::compress::finisher());
    // Processes the previous daemon started but never recorded are adopted or stopped before
    // anything waiting is started again.
    let strays = if unclean { recover::Strays::find(&home) } else { recover::Strays::none() };
    state::restore(&daemon, strays);
    ops::resume(&daemon).await;
    // What was restored, adopted and resumed is on disk before the first request is answered.
    state::flush(&daemon).await;
    tokio::task::spawn_local(state::persist(daemon.clone(), writer));
    let served = tokio::task::spawn_local(server::serve(listener, daemon.clone()));
    // Start-up code (argument parsing, logging set-up) is not needed again.
    crate::process::trim_clean_file_pages();
    let mut shutdown = daemon.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => continue,
            _ = shutdown.wait_for(|&down| down) => {
                let _ = served.await;
                tracing::info!("daemon stopped by kill");
                return Ok(());
            }
        }
    }
    tracing::info!("termination signal");
    ops::shutdown(&daemon).await;
    daemon.shutdown.send_replace(true);
    let _ = served.await;
    Ok(())
}

/// Holds an exclusive lock for the daemon's whole life: at most one daemon per data directory.
/// Taken before the socket is bound and released only at exit, after the socket is gone.
fn take_lock(paths: &Paths) -> Result<File, DaemonError> {
    let path = paths.lock_file();
    let file = crate::paths::open_private(&path, OpenOptions::new().create(true).truncate(false).write(true))
        .map_err(|source| DaemonError::Io { what: "cannot open", path: path.clone(), source })?;
    // A daemon that holds the lock but no longer answers is shutting down: wait for it to
    // finish (bounded), so that a client racing `pm3 kill` gets a fresh daemon, not a time-out.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok() {
            return Ok(file);
        }
        let serving = std::os::unix::net::UnixStream::connect(paths.socket()).is_ok();
        if serving || std::time::Instant::now() > deadline {
            return Err(DaemonError::AlreadyRunning(paths.home.clone()));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
