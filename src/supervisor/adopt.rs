//! Taking over from a previous daemon: an instance it managed comes back with what the state
//! file says about it. A process that still runs (same pid, same kernel start time) is adopted,
//! not started again; one that ended meanwhile goes through its restart policy.

use std::rc::Rc;
use std::time::{Instant, SystemTime};

use tokio::sync::watch;

use super::lifecycle::{Event, State};
use super::{Ctx, Handle, HealthRun, Instance, Run, Snapshot, Supervisor, triggers};
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
    let (tx, rx) = super::inbox::inbox();
    let mut snap = Snapshot::new();
    snap.restarts = restarts;
    let mut sup = Supervisor::new(instance, ctx, rx, watch::channel(Snapshot::new()).0, State::Stopped);
    let mut first = None;
    match prior {
        Prior::Idle { status, error } => {
            snap.status = status;
            snap.error = error;
            sup.machine =
                super::Machine::new(if status == Status::Errored { State::Errored } else { State::Stopped });
        }
        Prior::Alive { pid, start_time, started_at, status } => {
            match sup.take_over(pid, start_time, started_at, status) {
                Ok(run) => {
                    snap.status = status;
                    snap.pid = Some(pid);
                    snap.start_time = Some(start_time);
                    snap.started_at = Some(started_at);
                    snap.launched =
                        Some(Rc::new(super::Launched::new(sup.inst.def.clone(), sup.inst.clone())));
                    sup.run = Some(Box::new(run));
                    // The sockets of `listen` live on in the process: take them back.
                    sup.ctx.sockets.recover_from(&sup.inst.def, pid);
                    sup.machine = super::Machine::new(running_state(status));
                    tracing::info!(name = %sup.inst.name, pid, "adopted");
                }
                Err(e) => {
                    tracing::warn!(name = %sup.inst.name, pid, "cannot adopt: {e}");
                    first = Some(lost(&mut sup, &mut snap, Some(started_at)));
                }
            }
        }
        Prior::Gone { started_at } => first = Some(lost(&mut sup, &mut snap, started_at)),
    }
    let (snap_tx, snap_rx) = watch::channel(snap);
    sup.snap = snap_tx;
    tokio::task::spawn_local(sup.run(first));
    Handle { tx, snapshot: snap_rx }
}

/// The lifecycle state of a process adopted with this status.
fn running_state(status: Status) -> State {
    match status {
        Status::Starting => State::Starting,
        Status::Unhealthy => State::Unhealthy,
        _ => State::Online,
    }
}

/// A process that was running under the previous daemon ended while none watched it: its exit
/// status is unknown, so the restart policy treats it as a failure. The lifecycle starts as
/// running and is told of the exit first.
fn lost(sup: &mut Supervisor, snap: &mut Snapshot, started_at: Option<SystemTime>) -> Event {
    tracing::info!(name = %sup.inst.name, "ended while no daemon ran");
    let ran_for = started_at.and_then(|t| SystemTime::now().duration_since(t).ok()).unwrap_or_default();
    sup.machine = super::Machine::new(State::Online);
    snap.status = Status::Online;
    Event::Exited { status: ExitStatus::Unknown, ran_for, group_alive: false }
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
    ) -> Result<Run, String> {
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
        Ok(Run {
            pid,
            start_time: Some(start_time),
            started: Instant::now().checked_sub(ran).unwrap_or_else(Instant::now),
            exit,
            out: self.dress(Stream::reopen(pid, 1, out_log), false),
            err: self.dress(Stream::reopen(pid, 2, err_log), true),
            exited: None,
            wrapped: super::wrapped(&def.command),
            health,
            memory_at: def.max_memory.map(|_| triggers::next_memory_check()),
            cron_at: self.next_cron(),
            launched: None,
        })
    }
}
