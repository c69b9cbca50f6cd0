//! Taking over from a previous daemon: an instance it managed comes back with what the state
//! file says about it. A process that still runs (same pid, same kernel start time) is adopted,
//! not started again; one that ended meanwhile goes through its restart policy.

use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};

use super::health::Probe;
use super::{
    Ctx, ExitCause, Handle, HealthRun, Instance, LastExit, Phase, Running, Snapshot, Supervisor, triggers,
};
use crate::instances;
use crate::logs::capture::Stream;
use crate::logs::file::LogFile;
use crate::process::exit::{ExitStatus, ExitWatch};
use crate::process::spawn;
use crate::protocol::Status;

/// What a new daemon knows of an instance from the state file of the previous one.
pub enum Prior {
    /// It was not running.
    Idle { status: Status, error: Option<String> },
    /// It was running and still is (same pid and start time).
    Alive { pid: u32, started_at: SystemTime, status: Status },
    /// It was running but ended while no daemon watched it.
    Gone { started_at: Option<SystemTime> },
}

/// Starts the supervisor task of an instance the previous daemon managed, taking over a process
/// that still runs instead of starting a second copy.
pub fn adopt(instance: Rc<Instance>, ctx: Ctx, prior: Prior, restarts: u32) -> Handle {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut snap = Snapshot::new();
    snap.restarts = restarts;
    let mut sup = Supervisor {
        inst: instance,
        ctx,
        rx,
        snap: watch::channel(Snapshot::new()).0,
        phase: Phase::Idle,
        short_runs: 0,
        stop_waiters: Vec::new(),
        after_stop: None,
    };
    let mut gone = None;
    match prior {
        Prior::Idle { status, error } => {
            snap.status = status;
            snap.error = error;
        }
        Prior::Alive { pid, started_at, status } => match sup.take_over(pid, started_at, status) {
            Ok(running) => {
                snap.status = status;
                snap.pid = Some(pid);
                snap.start_time = spawn::start_time(pid);
                snap.started_at = Some(started_at);
                sup.phase = Phase::Running(Box::new(running));
                tracing::info!(name = %sup.inst.name, pid, "adopted");
            }
            Err(e) => {
                tracing::warn!(name = %sup.inst.name, pid, "cannot adopt: {e}");
                gone = Some(Some(started_at));
            }
        },
        Prior::Gone { started_at } => gone = Some(started_at),
    }
    let (snap_tx, snap_rx) = watch::channel(snap);
    sup.snap = snap_tx;
    tokio::task::spawn_local(async move {
        if let Some(started_at) = gone {
            sup.on_lost(started_at).await;
        }
        sup.run().await;
    });
    Handle { tx, snapshot: snap_rx }
}

impl Supervisor {
    /// Builds the run of a live process started by an earlier daemon: exit watch by pidfd,
    /// output pipes reopened through `/proc/<pid>/fd`, the health probe resumed if it had not passed yet.
    fn take_over(&self, pid: u32, started_at: SystemTime, status: Status) -> Result<Running, String> {
        let exit = ExitWatch::new(pid).map_err(|e| e.to_string())?;
        let paths = &self.ctx.paths;
        let open_log = |p: PathBuf| {
            LogFile::open(&p, self.inst.def.rotation())
                .map_err(|e| format!("cannot open {}: {e}", p.display()))
        };
        let out_log = open_log(paths.out_log(&self.inst.name))?;
        let err_log = open_log(paths.err_log(&self.inst.name))?;
        let ran = SystemTime::now().duration_since(started_at).unwrap_or_default();
        let def = &self.inst.def;
        let now = tokio::time::Instant::now();
        let health = match (&def.health_check, status) {
            (Some(text), Status::Starting | Status::Unhealthy) => {
                let env = Rc::new(self.inst.env());
                let expanded = instances::expand(text, &mut |k| env.get(k).cloned().unwrap_or_default());
                Probe::parse(&expanded).ok().map(|probe| HealthRun {
                    probe: Rc::new(probe),
                    env,
                    next: now,
                    unhealthy_at: now + Duration::from_millis(def.health_timeout_ms).saturating_sub(ran),
                    attempt: None,
                })
            }
            _ => None,
        };
        Ok(Running {
            pid,
            start_time: spawn::start_time(pid),
            started: Instant::now().checked_sub(ran).unwrap_or_else(Instant::now),
            exit,
            out: Stream::reopen(pid, 1, out_log).with_date_format(def.log_date_format.clone()),
            err: Stream::reopen(pid, 2, err_log).with_date_format(def.log_date_format.clone()),
            stopping: None,
            exited: None,
            health,
            memory_at: def.max_memory.map(|_| triggers::next_memory_check()),
            cron_at: self.next_cron(),
        })
    }

    /// A process that was running under the previous daemon ended while none watched it: its
    /// exit status is unknown, so the restart policy treats it as a failure.
    async fn on_lost(&mut self, started_at: Option<SystemTime>) {
        let ran_for = started_at.and_then(|t| SystemTime::now().duration_since(t).ok()).unwrap_or_default();
        tracing::info!(name = %self.inst.name, "ended while no daemon ran");
        self.publish(|s| {
            s.pid = None;
            s.last_exit = Some(LastExit {
                status: ExitStatus::Unknown,
                cause: ExitCause::Exited,
                at: SystemTime::now(),
                stderr: Vec::new(),
            });
        });
        self.after_policy(ExitStatus::Unknown, ran_for).await;
    }
}
