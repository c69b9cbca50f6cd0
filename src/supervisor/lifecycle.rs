//! The life of one instance as data: [`Machine::step`] maps a state and an event to the next
//! state and the effects to carry out. It does no I/O and reads no clock, so every transition
//! is a row of a unit test; the supervisor task around it only turns I/O into [`Event`]s and
//! [`Effect`]s into I/O.
//!
//! ```text
//!            Start/Restart                 DepsReady            (no pre_start)
//!  Stopped ───────────────▶ Waiting ─────────────────────▶ Spawning ──Spawned──▶ Starting ─ProbePassed─▶ Online
//!  Errored ◀── pre_start / spawn failed       │ pre_start ▲ HookDone(ok)            │ HealthTimeout
//!     ▲                                       └──▶ PreStart                         ▼
//!     │ GiveUp                                                                   Unhealthy
//!     │            Stop/Restart/Remove/Shutdown/Trigger, or Exited with the group still alive
//!  PostStop ◀── run over ── Stopping{killed} ◀───────────────────── (any running state)
//!     │ HookDone              │ KillTimeout: SIGKILL the group
//!     ▼
//!  after the run: Stopped (stop) · Removed (remove, task ends) · Waiting (restart)
//!                 · policy: Stopped / Errored / Spawning (at once) / Backoff ─BackoffOver─▶ Spawning
//! ```
//!
//! What follows the end of a run is decided when the stop begins ([`Then`]) and may be changed
//! by later commands while the stop is under way (a stop cancels a pending restart; a remove
//! overrides everything). Remove and daemon shutdown are lifecycle paths of their own: they
//! stop with the same escalation, run `post_stop`, and only then answer.

use std::time::Duration;

use super::ExitCause;
use super::policy::{self, AfterExit};
use crate::process::exit::ExitStatus;
use crate::protocol::{Action as Answer, Status};
use crate::spec::ProcessDef;

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not running, by command or by policy.
    Stopped,
    /// Gave up: restarts exhausted, `pre_start` failed or the program could not be spawned.
    Errored,
    /// Waiting for every dependency to be online.
    Waiting,
    /// `pre_start` runs.
    PreStart,
    /// The spawn was asked for; its result comes next.
    Spawning,
    /// Spawned; the health check has not passed yet.
    Starting,
    Online,
    /// The health check did not pass in time; the process keeps running.
    Unhealthy,
    /// The group is being stopped: `kill_signal` sent (SIGKILL once `killed`). `leader_gone`
    /// once the main process exited while other members of its group still run.
    Stopping { killed: bool, leader_gone: bool },
    /// `post_stop` runs after the run ended.
    PostStop,
    /// Waiting out a restart delay.
    Backoff,
    /// Stopped and forgotten: the task ends.
    Removed,
}

impl State {
    /// True while a process of this instance runs.
    pub fn is_running(self) -> bool {
        matches!(self, State::Starting | State::Online | State::Unhealthy | State::Stopping { .. })
    }
}

/// What happens once the current run (or hook) is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// The run ended by itself: the restart policy decided this.
    Policy(AfterExit),
    /// Stay stopped.
    Rest,
    /// Start again (a restart command or a trigger).
    Start,
    /// Forget the instance.
    Remove,
}

/// Something that happened to the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Start,
    Restart,
    Stop,
    Remove,
    /// The daemon shuts down: stop, and refuse every start from now on.
    Shutdown,
    /// Restart for a trigger (memory, cron, watch); only a running instance is restarted.
    Trigger(ExitCause),
    /// Every dependency is online (or gone).
    DepsReady,
    /// Some dependency is not online yet.
    DepsPending,
    HookDone(Result<(), String>),
    Spawned(Result<(), String>),
    /// The main process exited; `group_alive` when other members of its group still run.
    Exited { status: ExitStatus, ran_for: Duration, group_alive: bool },
    /// The rest of the group of an exited leader is gone.
    GroupGone,
    ProbePassed,
    ProbeFailed,
    HealthTimeout,
    KillTimeout,
    BackoffOver,
}

/// Which requests an answer goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiter {
    Start,
    Restart,
    Stop,
    Remove,
}

/// What the supervisor task must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Check the dependencies now; answer with `DepsReady` or `DepsPending`, then keep watching.
    AwaitDeps,
    RunPreStart,
    /// Kill the hook in progress (it then reports `HookDone`).
    AbortHook,
    /// Spawn the process; answer with `Spawned`.
    Spawn,
    /// `kill_signal` to the process group and arm the kill timer.
    Signal,
    /// SIGKILL to the process group.
    Kill,
    /// The leader exited but its group lives on: look until it is gone (`GroupGone`).
    WatchGroup,
    /// The run is over: forget the pid, record how it ended.
    RecordExit(ExitCause),
    RunPostStop,
    ArmBackoff(Duration),
    CancelBackoff,
    Publish(Status),
    /// Errored, with the reason.
    Fail(String),
    /// One more restart happened (counted when the new run is spawned).
    CountRestart,
    /// Answer every request of this kind that waits.
    Reply(Waiter, Answer),
    /// Answer every request of this kind that waits with a refusal (removed, shutting down).
    Refuse(Waiter),
    /// The task ends.
    Finish,
}

/// One instance's lifecycle.
#[derive(Debug, Clone)]
pub struct Machine {
    pub state: State,
    /// Decided when a stop begins (or the run ends by itself).
    then: Option<Then>,
    /// Why the current run is being ended, for `info`.
    cause: ExitCause,
    /// Consecutive runs shorter than `min_uptime` (the `max_restarts` budget).
    short_runs: u32,
    /// The next spawn is a restart (counted in `restarts` once it happens).
    restart_due: bool,
    /// Removed or shutting down: nothing starts again.
    closed: bool,
}

impl Machine {
    pub fn new(state: State) -> Machine {
        Machine {
            state,
            then: None,
            cause: ExitCause::Exited,
            short_runs: 0,
            restart_due: false,
            closed: false,
        }
    }

    /// Removed or shutting down.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Applies `event` and returns what to do, in order.
    pub fn step(&mut self, def: &ProcessDef, event: Event) -> Vec<Effect> {
        use State::*;
        let mut fx = Vec::new();
        match event {
            Event::Start => match self.state {
                _ if self.closed => fx.push(Effect::Refuse(Waiter::Start)),
                Stopped | Errored | Backoff => {
                    if self.state == Backoff {
                        fx.push(Effect::CancelBackoff);
                    }
                    self.short_runs = 0;
                    self.restart_due = false;
                    self.state = Waiting;
                    fx.push(Effect::AwaitDeps);
                }
                // New dependencies may all be online already.
                Waiting => fx.push(Effect::AwaitDeps),
                // Answered once the spawn is done.
                PreStart | Spawning => {}
                Starting | Online | Unhealthy => fx.push(Effect::Reply(Waiter::Start, Answer::AlreadyRunning)),
                Stopping { .. } | PostStop => self.start_after_stop(&mut fx, Waiter::Start),
                Removed => fx.push(Effect::Refuse(Waiter::Start)),
            },
            Event::Restart => match self.state {
                _ if self.closed => fx.push(Effect::Refuse(Waiter::Restart)),
                Stopped | Errored | Backoff | Waiting => {
                    if self.state == Backoff {
                        fx.push(Effect::CancelBackoff);
                    }
                    self.short_runs = 0;
                    self.restart_due = true;
                    self.state = Waiting;
                    fx.push(Effect::AwaitDeps);
                }
                PreStart | Spawning => {}
                Starting | Online | Unhealthy => {
                    self.short_runs = 0;
                    self.then = Some(Then::Start);
                    self.cause = ExitCause::Stopped;
                    self.begin_stop(&mut fx);
                }
                Stopping { .. } | PostStop => self.start_after_stop(&mut fx, Waiter::Restart),
                Removed => fx.push(Effect::Refuse(Waiter::Restart)),
            },
            Event::Stop => self.stop(&mut fx, Then::Rest),
            Event::Shutdown => {
                self.closed = true;
                self.stop(&mut fx, Then::Rest);
            }
            Event::Remove => {
                self.closed = true;
                self.stop(&mut fx, Then::Remove);
            }
            Event::Trigger(cause) => {
                if matches!(self.state, Starting | Online | Unhealthy) && !self.closed {
                    self.then = Some(Then::Start);
                    self.cause = cause;
                    self.begin_stop(&mut fx);
                }
            }
            Event::DepsReady => {
                if self.state == Waiting {
                    self.launch(def, &mut fx);
                }
            }
            Event::DepsPending => {
                if self.state == Waiting {
                    fx.push(Effect::Publish(Status::Waiting));
                    fx.push(Effect::Reply(Waiter::Start, Answer::Waiting));
                    fx.push(Effect::Reply(Waiter::Restart, Answer::Waiting));
                }
            }
            Event::HookDone(result) => match self.state {
                PreStart => match (self.then, result) {
                    (Some(Then::Remove), _) => self.finish_removed(&mut fx),
                    (Some(_), _) => self.come_to_rest(&mut fx),
                    (None, Ok(())) => {
                        self.state = Spawning;
                        fx.push(Effect::Spawn);
                    }
                    (None, Err(e)) => self.fail(&mut fx, format!("pre_start failed: {e}")),
                },
                PostStop => self.after_run(def, &mut fx),
                _ => {}
            },
            Event::Spawned(result) => {
                if self.state == Spawning {
                    match result {
                        Ok(()) => {
                            self.state = if def.health_check.is_some() { Starting } else { Online };
                            if std::mem::take(&mut self.restart_due) {
                                fx.push(Effect::CountRestart);
                            }
                            fx.push(Effect::Publish(self.status()));
                            fx.push(Effect::Reply(Waiter::Start, Answer::Started));
                            fx.push(Effect::Reply(Waiter::Restart, Answer::Restarted));
                            // A stop that came while spawning applies now.
                            if matches!(self.then, Some(Then::Rest | Then::Remove)) {
                                self.cause = ExitCause::Stopped;
                                self.begin_stop(&mut fx);
                            }
                        }
                        Err(e) => match self.then {
                            Some(Then::Remove) => self.finish_removed(&mut fx),
                            Some(Then::Rest) => self.come_to_rest(&mut fx),
                            _ => self.fail(&mut fx, e),
                        },
                    }
                }
            }
            Event::Exited { status, ran_for, group_alive } => match self.state {
                Starting | Online | Unhealthy => {
                    let verdict = policy::after_exit(def, status, ran_for, &mut self.short_runs);
                    self.then = Some(Then::Policy(verdict));
                    self.cause = ExitCause::Exited;
                    if group_alive {
                        // The rest of the group goes too: no orphans.
                        self.state = Stopping { killed: false, leader_gone: true };
                        fx.extend([Effect::Signal, Effect::Publish(Status::Stopping), Effect::WatchGroup]);
                    } else {
                        self.run_over(def, &mut fx);
                    }
                }
                Stopping { killed, .. } => {
                    if group_alive {
                        self.state = Stopping { killed, leader_gone: true };
                        fx.push(Effect::WatchGroup);
                    } else {
                        self.run_over(def, &mut fx);
                    }
                }
                _ => {}
            },
            Event::GroupGone => {
                if let Stopping { leader_gone: true, .. } = self.state {
                    self.run_over(def, &mut fx);
                }
            }
            Event::ProbePassed => {
                if matches!(self.state, Starting | Unhealthy) {
                    self.state = Online;
                    fx.push(Effect::Publish(Status::Online));
                }
            }
            // The reason is shown by the task; the state does not change.
            Event::ProbeFailed => {}
            Event::HealthTimeout => {
                if self.state == Starting {
                    self.state = Unhealthy;
                    fx.push(Effect::Publish(Status::Unhealthy));
                }
            }
            Event::KillTimeout => {
                if let Stopping { killed: false, leader_gone } = self.state {
                    self.state = Stopping { killed: true, leader_gone };
                    fx.push(Effect::Kill);
                }
            }
            Event::BackoffOver => {
                if self.state == Backoff {
                    self.launch(def, &mut fx);
                }
            }
        }
        fx
    }

    /// The status users see for the current state.
    pub fn status(&self) -> Status {
        match self.state {
            State::Stopped | State::Removed => Status::Stopped,
            State::Errored => Status::Errored,
            State::Waiting | State::Backoff => Status::Waiting,
            State::PreStart | State::Spawning | State::Starting => Status::Starting,
            State::Online => Status::Online,
            State::Unhealthy => Status::Unhealthy,
            State::Stopping { .. } | State::PostStop => Status::Stopping,
        }
    }

    /// Stop, remove and shutdown: the run ends, then `then` (a remove is never downgraded).
    fn stop(&mut self, fx: &mut Vec<Effect>, then: Then) {
        use State::*;
        let waiter = if then == Then::Remove { Waiter::Remove } else { Waiter::Stop };
        match self.state {
            Stopped | Errored => {
                if then == Then::Remove {
                    self.finish_removed(fx);
                } else {
                    fx.push(Effect::Reply(Waiter::Stop, Answer::AlreadyStopped));
                }
            }
            Waiting | Backoff => {
                if self.state == Backoff {
                    fx.push(Effect::CancelBackoff);
                }
                self.then = Some(then);
                if then == Then::Remove { self.finish_removed(fx) } else { self.come_to_rest(fx) }
            }
            PreStart => {
                self.then = Some(self.merge_then(then, fx));
                fx.push(Effect::AbortHook);
            }
            // The spawn result comes next; the stop applies to the new run.
            Spawning => self.then = Some(self.merge_then(then, fx)),
            Starting | Online | Unhealthy => {
                self.then = Some(then);
                self.cause = ExitCause::Stopped;
                self.begin_stop(fx);
            }
            Stopping { .. } | PostStop => {
                let was = self.then;
                self.then = Some(self.merge_then(then, fx));
                // A user's stop overrides a trigger's cause; a run that ended by itself keeps it.
                if was == Some(Then::Start) && self.state != PostStop {
                    self.cause = ExitCause::Stopped;
                }
            }
            Removed => fx.push(Effect::Reply(waiter, Answer::Removed)),
        }
    }

    /// What a stop turns a pending `then` into; a cancelled restart is answered `stopped`.
    fn merge_then(&self, then: Then, fx: &mut Vec<Effect>) -> Then {
        if self.then == Some(Then::Start) {
            fx.push(Effect::Reply(Waiter::Start, Answer::Stopped));
            fx.push(Effect::Reply(Waiter::Restart, Answer::Stopped));
        }
        if self.then == Some(Then::Remove) { Then::Remove } else { then }
    }

    /// A start or restart asked while the run is ending: start once it has.
    fn start_after_stop(&mut self, fx: &mut Vec<Effect>, waiter: Waiter) {
        if self.then == Some(Then::Remove) {
            fx.push(Effect::Refuse(waiter));
        } else {
            // Waiting stops are answered when the run ends; the start comes after that.
            self.short_runs = 0;
            self.then = Some(Then::Start);
        }
    }

    fn begin_stop(&mut self, fx: &mut Vec<Effect>) {
        self.state = State::Stopping { killed: false, leader_gone: false };
        fx.push(Effect::Signal);
        fx.push(Effect::Publish(Status::Stopping));
    }

    /// `pre_start` (when there is one), then the spawn.
    fn launch(&mut self, def: &ProcessDef, fx: &mut Vec<Effect>) {
        self.then = None;
        if def.pre_start.is_some() {
            self.state = State::PreStart;
            fx.push(Effect::Publish(Status::Starting));
            fx.push(Effect::RunPreStart);
        } else {
            self.state = State::Spawning;
            fx.push(Effect::Spawn);
        }
    }

    /// The whole group is gone.
    fn run_over(&mut self, def: &ProcessDef, fx: &mut Vec<Effect>) {
        fx.push(Effect::RecordExit(self.cause));
        if def.post_stop.is_some() {
            self.state = State::PostStop;
            fx.push(Effect::RunPostStop);
        } else {
            self.after_run(def, fx);
        }
    }

    /// After the run and its `post_stop`: what was decided happens.
    fn after_run(&mut self, def: &ProcessDef, fx: &mut Vec<Effect>) {
        match self.then.take() {
            Some(Then::Remove) => {
                self.then = Some(Then::Remove);
                self.finish_removed(fx);
            }
            None | Some(Then::Rest) => self.come_to_rest(fx),
            Some(_) if self.closed => self.come_to_rest(fx),
            Some(Then::Start) => {
                // A stop answered before the start that followed it.
                fx.push(Effect::Reply(Waiter::Stop, Answer::Stopped));
                self.restart_due = true;
                self.state = State::Waiting;
                fx.push(Effect::AwaitDeps);
            }
            Some(Then::Policy(AfterExit::Stay)) => self.come_to_rest(fx),
            Some(Then::Policy(AfterExit::GiveUp)) => {
                let reason = format!(
                    "gave up: {} runs in a row ended within min_uptime ({}ms)",
                    self.short_runs, def.min_uptime_ms
                );
                self.fail(fx, reason);
            }
            Some(Then::Policy(AfterExit::Restart { delay })) => {
                self.restart_due = true;
                if delay.is_zero() {
                    self.launch(def, fx);
                } else {
                    self.state = State::Backoff;
                    fx.push(Effect::ArmBackoff(delay));
                    fx.push(Effect::Publish(Status::Waiting));
                }
            }
        }
    }

    /// Stopped: every request waiting on this instance is answered.
    fn come_to_rest(&mut self, fx: &mut Vec<Effect>) {
        self.state = State::Stopped;
        self.then = None;
        self.restart_due = false;
        fx.push(Effect::Publish(Status::Stopped));
        fx.push(Effect::Reply(Waiter::Stop, Answer::Stopped));
        if self.closed {
            fx.push(Effect::Refuse(Waiter::Start));
            fx.push(Effect::Refuse(Waiter::Restart));
        } else {
            fx.push(Effect::Reply(Waiter::Start, Answer::Stopped));
            fx.push(Effect::Reply(Waiter::Restart, Answer::Stopped));
        }
    }

    fn finish_removed(&mut self, fx: &mut Vec<Effect>) {
        self.come_to_rest(fx);
        self.state = State::Removed;
        fx.push(Effect::Reply(Waiter::Remove, Answer::Removed));
        fx.push(Effect::Finish);
    }

    fn fail(&mut self, fx: &mut Vec<Effect>, reason: String) {
        self.state = State::Errored;
        self.then = None;
        self.restart_due = false;
        fx.push(Effect::Fail(reason));
        fx.push(Effect::Reply(Waiter::Start, Answer::Failed));
        fx.push(Effect::Reply(Waiter::Restart, Answer::Failed));
        fx.push(Effect::Reply(Waiter::Stop, Answer::Stopped));
    }
}
