//! Taking over from a previous daemon: an instance it managed comes back with what the state
//! file says about it. A process that still runs (same pid, same kernel start time) is adopted,
//! not started again; one that ended meanwhile goes through its restart policy.

use std::rc::Rc;
use std::time::{Instant, SystemTime};

use tokio::sync::{mpsc, watch};

use super::{
    Ctx, ExitCause, Handle, HealthRun, Instance, LastExit, Phase, Running, Snapshot, Supervisor, triggers,
};
use crate::logs::capture::Stream;
use crate::process::exit::{ExitStatus, ExitWatch};
use crate::protocol::Status;

/// What a new daemon knows of an instance from the state file of the previous one.
pub enum Prior {
    /// It was not running.
    Idle { status: Status, error: Option<String> },
    /// It was running and still is (same pid and start time).
    Alive { pid: u32, start_time: u64, started_at: SystemTime, status: Status },
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
        Prior::Alive { pid, start_time, started_at, status } => {
            match sup.take_over(pid, start_time, started_at, status) {
                Ok(running) => {
                    snap.status = status;
                    snap.pid = Some(pid);
                    snap.start_time = Some(start_time);
                    snap.started_at = Some(started_at);
                    sup.phase = Phase::Running(Box::new(running));
                    tracing::info!(name = %sup.inst.name, pid, "adopted");
                }
                Err(e) => {
                    tracing::warn!(name = %sup.inst.name, pid, "cannot adopt: {e}");
                    gone = Some(Some(started_at));
                }
            }
        }
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
    fn take_over(
        &self,
        pid: u32,
        start_time: u64,
        started_at: SystemTime,
        status: Status,
    ) -> Result<Running, String> {
        let exit = ExitWatch::new(pid).map_err(|e| e.to_string())?;
        let (out_log, err_log) = self.open_logs()?;
        let ran = SystemTime::now().duration_since(started_at).unwrap_or_default();
        let def = &self.inst.def;
        // A probe that had not passed yet resumes, with what is left of its time.
        let health = match status {
            Status::Starting | Status::Unhealthy => {
                let env = Rc::new(self.inst.env());
                self.probe(&env)
                    .ok()
                    .flatten()
                    .map(|probe| HealthRun::new(probe, env, self.health_timeout().saturating_sub(ran)))
            }
            _ => None,
        };
        Ok(Running {
            pid,
            start_time: Some(start_time),
            started: Instant::now().checked_sub(ran).unwrap_or_else(Instant::now),
            exit,
            out: self.dress(Stream::reopen(pid, 1, out_log), false),
            err: self.dress(Stream::reopen(pid, 2, err_log), true),
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
