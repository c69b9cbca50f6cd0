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
    Stopping {
        killed: bool,
        leader_gone: bool,
    },
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
    Exited {
        status: ExitStatus,
        ran_for: Duration,
        group_alive: bool,
    },
    /// The rest of the group of an exited leader is gone.
    GroupGone,
    ProbePassed,
    ProbeFailed,
    HealthTimeout,
    KillTimeout,
    BackoffOver,
    /// A surge reload swapped the current run for its replacement, which is ready (online)
    /// while the old run drains on the side (see [`super::surge`]).
    Replaced,
    /// The current run exited by itself while a surge replacement was coming up: the
    /// replacement, not ready yet, becomes the current run (a restart), and what is left of
    /// the old run is stopped on the side (see [`super::surge`]).
    Superseded,
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
                Starting | Online | Unhealthy => {
                    fx.push(Effect::Reply(Waiter::Start, Answer::AlreadyRunning))
                }
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
                    (None, _) if self.closed => self.come_to_rest(&mut fx),
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
            // Only a running instance that nothing is stopping can take a replacement; the
            // surge never promotes otherwise (it is interrupted first).
            Event::Replaced => {
                if matches!(self.state, Starting | Online | Unhealthy) && !self.closed {
                    self.state = Online;
                    self.short_runs = 0;
                    fx.extend([Effect::CountRestart, Effect::Publish(Status::Online)]);
                }
            }
            // As if the policy had restarted the instance at once: the new run is starting
            // (online without a health check) and a restart is counted. A reload is a command,
            // so the `max_restarts` budget starts again.
            Event::Superseded => {
                if matches!(self.state, Starting | Online | Unhealthy) && !self.closed {
                    self.state = if def.health_check.is_some() { Starting } else { Online };
                    self.short_runs = 0;
                    self.cause = ExitCause::Exited;
                    fx.extend([Effect::CountRestart, Effect::Publish(self.status())]);
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
        if self.closed {
            return self.come_to_rest(fx);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use Effect::*;
    use State::*;
    use std::path::PathBuf;

    const SHORT: Duration = Duration::from_millis(10);
    const LONG: Duration = Duration::from_secs(60);

    fn def() -> ProcessDef {
        ProcessDef::new("p", "x", PathBuf::from("/"))
    }
    /// A definition with both hooks and a health check.
    fn full() -> ProcessDef {
        let mut d = def();
        d.pre_start = Some("true".into());
        d.post_stop = Some("true".into());
        d.health_check = Some("tcp://127.0.0.1:1".into());
        d
    }
    fn at(state: State) -> Machine {
        Machine::new(state)
    }
    fn exited(group_alive: bool) -> Event {
        Event::Exited { status: ExitStatus::Code(1), ran_for: LONG, group_alive }
    }
    fn stopping() -> State {
        Stopping { killed: false, leader_gone: false }
    }

    fn all_states() -> Vec<State> {
        let mut v = vec![
            Stopped, Errored, Waiting, PreStart, Spawning, Starting, Online, Unhealthy, PostStop, Backoff,
            Removed,
        ];
        for killed in [false, true] {
            for leader_gone in [false, true] {
                v.push(Stopping { killed, leader_gone });
            }
        }
        v
    }

    fn all_events() -> Vec<Event> {
        vec![
            Event::Start,
            Event::Restart,
            Event::Stop,
            Event::Remove,
            Event::Shutdown,
            Event::Trigger(ExitCause::Memory),
            Event::DepsReady,
            Event::DepsPending,
            Event::HookDone(Ok(())),
            Event::HookDone(Err("no".into())),
            Event::Spawned(Ok(())),
            Event::Spawned(Err("no".into())),
            exited(false),
            exited(true),
            Event::Exited { status: ExitStatus::Code(1), ran_for: SHORT, group_alive: false },
            Event::GroupGone,
            Event::ProbePassed,
            Event::ProbeFailed,
            Event::HealthTimeout,
            Event::KillTimeout,
            Event::BackoffOver,
            Event::Replaced,
            Event::Superseded,
        ]
    }

    fn all_thens() -> Vec<Option<Then>> {
        vec![
            None,
            Some(Then::Rest),
            Some(Then::Start),
            Some(Then::Remove),
            Some(Then::Policy(AfterExit::Stay)),
            Some(Then::Policy(AfterExit::GiveUp)),
            Some(Then::Policy(AfterExit::Restart { delay: Duration::ZERO })),
            Some(Then::Policy(AfterExit::Restart { delay: SHORT })),
        ]
    }

    /// Every (state, pending decision, closed, event) combination, with and without hooks and
    /// a health check, keeps the rules that make "no orphans" hold.
    #[test]
    fn every_state_and_event_keeps_the_invariants() {
        let mut rows = 0;
        for d in [def(), full()] {
            for state in all_states() {
                for then in all_thens() {
                    for closed in [false, true] {
                        for event in all_events() {
                            let mut m = at(state);
                            m.then = then;
                            m.closed = closed;
                            let fx = m.step(&d, event.clone());
                            let row = format!(
                                "{state:?} then={then:?} closed={closed} + {event:?} -> {:?} {fx:?}",
                                m.state
                            );
                            check(state, &event, closed, &m, &fx, &row);
                            rows += 1;
                        }
                    }
                }
            }
        }
        assert!(rows > 5000, "{rows}");
    }

    fn check(from: State, event: &Event, closed: bool, m: &Machine, fx: &[Effect], row: &str) {
        let to = m.state;
        // A run ends only when its whole group is gone: the main process exited with nothing left
        // in its group, or the rest of the group was seen gone.
        let group_gone = matches!(event, Event::Exited { group_alive: false, .. } | Event::GroupGone);
        if from.is_running() && !to.is_running() {
            assert!(group_gone, "a run was dropped while its group may live: {row}");
            assert!(fx.iter().any(|f| matches!(f, RecordExit(_))), "exit not recorded: {row}");
        }
        // Commands never skip the escalation: a running instance goes through Stopping.
        let stops = matches!(event, Event::Stop | Event::Remove | Event::Shutdown);
        if (stops || (*event == Event::Restart && !closed)) && from.is_running() {
            assert!(matches!(to, Stopping { .. }), "{row}");
        }
        // Stopping only ever escalates.
        if let (Stopping { killed: true, .. }, Stopping { killed, .. }) = (from, to) {
            assert!(killed, "SIGKILL forgotten: {row}");
        }
        // The task ends exactly when the instance is removed, and a removal is never undone.
        assert_eq!(fx.contains(&Finish), to == Removed && from != Removed, "{row}");
        if from == Removed {
            assert_eq!(to, Removed, "{row}");
        }
        // Nothing starts once removed or shutting down.
        if closed || matches!(event, Event::Remove | Event::Shutdown) {
            assert!(
                !fx.iter().any(|f| matches!(f, Spawn | RunPreStart | AwaitDeps | ArmBackoff(_))),
                "{row}"
            );
        }
        // A spawn is asked for exactly when entering Spawning.
        assert_eq!(fx.contains(&Spawn), to == Spawning && from != Spawning, "{row}");
        // Every status published is the status of the state reached.
        for f in fx {
            if let Publish(s) = f
                && f == fx.iter().rev().find(|f| matches!(f, Publish(_))).unwrap_or(f)
                && !matches!(to, Spawning | Removed)
            {
                assert_eq!(*s, m.status(), "{row}");
            }
        }
    }

    #[test]
    fn a_replacement_is_online_at_once_and_counts_as_a_restart() {
        let d = def();
        for from in [Starting, Online, Unhealthy] {
            let (m, fx) = run(&d, from, &[Event::Replaced]);
            assert_eq!(m.state, Online);
            assert_eq!(fx, [CountRestart, Publish(Status::Online)]);
        }
        // Nothing to replace, or being stopped: no change.
        for from in [Stopped, Errored, Waiting, Backoff, PostStop, stopping()] {
            let (m, fx) = run(&d, from, &[Event::Replaced]);
            assert_eq!((m.state, fx), (from, vec![]));
        }
        let mut m = at(Online);
        m.closed = true;
        assert_eq!(m.step(&d, Event::Replaced), []);
    }

    #[test]
    fn a_replacement_that_outlived_the_old_run_is_taken_over_still_starting() {
        for d in [def(), full()] {
            let want = if d.health_check.is_some() { Starting } else { Online };
            for from in [Starting, Online, Unhealthy] {
                let (m, fx) = run(&d, from, &[Event::Superseded]);
                assert_eq!(m.state, want);
                assert_eq!(fx, [CountRestart, Publish(m.status())]);
            }
            for from in [Stopped, Errored, Waiting, Backoff, PostStop, stopping()] {
                let (m, fx) = run(&d, from, &[Event::Superseded]);
                assert_eq!((m.state, fx), (from, vec![]));
            }
        }
        let mut m = at(Online);
        m.closed = true;
        assert_eq!(m.step(&def(), Event::Superseded), []);
    }

    /// Runs `events` from `state` and returns the state reached and every effect, in order.
    fn run(d: &ProcessDef, state: State, events: &[Event]) -> (Machine, Vec<Effect>) {
        let mut m = at(state);
        let mut all = Vec::new();
        for e in events {
            all.extend(m.step(d, e.clone()));
        }
        (m, all)
    }

    /// The rows the lifecycle must get right, as (from, events, to, effects in order).
    #[test]
    fn transition_table() {
        let d = def();
        let f = full();
        #[allow(clippy::type_complexity)]
        let rows: Vec<(&str, &ProcessDef, State, Vec<Event>, State, Vec<Effect>)> = vec![
            ("start: look at the dependencies", &d, Stopped, vec![Event::Start], Waiting, vec![AwaitDeps]),
            ("dependencies ready: spawn", &d, Waiting, vec![Event::DepsReady], Spawning, vec![Spawn]),
            (
                "dependencies pending: answer waiting",
                &d,
                Waiting,
                vec![Event::DepsPending],
                Waiting,
                vec![
                    Publish(Status::Waiting),
                    Reply(Waiter::Start, Answer::Waiting),
                    Reply(Waiter::Restart, Answer::Waiting),
                ],
            ),
            (
                "pre_start first",
                &f,
                Waiting,
                vec![Event::DepsReady],
                PreStart,
                vec![Publish(Status::Starting), RunPreStart],
            ),
            (
                "pre_start fails: errored",
                &f,
                PreStart,
                vec![Event::HookDone(Err("x".into()))],
                Errored,
                vec![
                    Fail("pre_start failed: x".into()),
                    Reply(Waiter::Start, Answer::Failed),
                    Reply(Waiter::Restart, Answer::Failed),
                    Reply(Waiter::Stop, Answer::Stopped),
                ],
            ),
            (
                "spawned without health check: online",
                &d,
                Spawning,
                vec![Event::Spawned(Ok(()))],
                Online,
                vec![
                    Publish(Status::Online),
                    Reply(Waiter::Start, Answer::Started),
                    Reply(Waiter::Restart, Answer::Restarted),
                ],
            ),
            (
                "spawned with health check: starting",
                &f,
                Spawning,
                vec![Event::Spawned(Ok(()))],
                Starting,
                vec![
                    Publish(Status::Starting),
                    Reply(Waiter::Start, Answer::Started),
                    Reply(Waiter::Restart, Answer::Restarted),
                ],
            ),
            (
                "start while running",
                &d,
                Online,
                vec![Event::Start],
                Online,
                vec![Reply(Waiter::Start, Answer::AlreadyRunning)],
            ),
            (
                "stop while running: signal, stopping",
                &d,
                Online,
                vec![Event::Stop],
                stopping(),
                vec![Signal, Publish(Status::Stopping)],
            ),
            (
                "kill timeout: SIGKILL",
                &d,
                stopping(),
                vec![Event::KillTimeout],
                Stopping { killed: true, leader_gone: false },
                vec![Kill],
            ),
            (
                "exit during stop, group alive: watch it",
                &d,
                stopping(),
                vec![exited(true)],
                Stopping { killed: false, leader_gone: true },
                vec![WatchGroup],
            ),
            (
                "stop of a stopped process",
                &d,
                Stopped,
                vec![Event::Stop],
                Stopped,
                vec![Reply(Waiter::Stop, Answer::AlreadyStopped)],
            ),
            ("health passes", &f, Starting, vec![Event::ProbePassed], Online, vec![Publish(Status::Online)]),
            (
                "health times out",
                &f,
                Starting,
                vec![Event::HealthTimeout],
                Unhealthy,
                vec![Publish(Status::Unhealthy)],
            ),
            (
                "a trigger restarts a running process",
                &d,
                Online,
                vec![Event::Trigger(ExitCause::Cron)],
                stopping(),
                vec![Signal, Publish(Status::Stopping)],
            ),
            (
                "a trigger does nothing while stopped",
                &d,
                Stopped,
                vec![Event::Trigger(ExitCause::Cron)],
                Stopped,
                vec![],
            ),
            (
                "crash after a long run: restart at once",
                &d,
                Online,
                vec![exited(false)],
                Spawning,
                vec![RecordExit(ExitCause::Exited), Spawn],
            ),
            (
                "crash, rest of the group alive: stop it first",
                &d,
                Online,
                vec![exited(true)],
                Stopping { killed: false, leader_gone: true },
                vec![Signal, Publish(Status::Stopping), WatchGroup],
            ),
            (
                "short run: back off",
                &d,
                Online,
                vec![Event::Exited { status: ExitStatus::Code(1), ran_for: SHORT, group_alive: false }],
                Backoff,
                vec![
                    RecordExit(ExitCause::Exited),
                    ArmBackoff(Duration::from_millis(100)),
                    Publish(Status::Waiting),
                ],
            ),
            (
                "restart during backoff: at once",
                &d,
                Backoff,
                vec![Event::Restart],
                Waiting,
                vec![CancelBackoff, AwaitDeps],
            ),
            (
                "stop during backoff",
                &d,
                Backoff,
                vec![Event::Stop],
                Stopped,
                vec![
                    CancelBackoff,
                    Publish(Status::Stopped),
                    Reply(Waiter::Stop, Answer::Stopped),
                    Reply(Waiter::Start, Answer::Stopped),
                    Reply(Waiter::Restart, Answer::Stopped),
                ],
            ),
            (
                "stop during pre_start kills the hook",
                &f,
                PreStart,
                vec![Event::Stop],
                PreStart,
                vec![AbortHook],
            ),
            (
                "... and the aborted hook leaves it stopped, never spawned",
                &f,
                PreStart,
                vec![Event::Stop, Event::HookDone(Err("killed".into()))],
                Stopped,
                vec![
                    AbortHook,
                    Publish(Status::Stopped),
                    Reply(Waiter::Stop, Answer::Stopped),
                    Reply(Waiter::Start, Answer::Stopped),
                    Reply(Waiter::Restart, Answer::Stopped),
                ],
            ),
            (
                "stop during pre_start even if the hook succeeds",
                &f,
                PreStart,
                vec![Event::Stop, Event::HookDone(Ok(()))],
                Stopped,
                vec![
                    AbortHook,
                    Publish(Status::Stopped),
                    Reply(Waiter::Stop, Answer::Stopped),
                    Reply(Waiter::Start, Answer::Stopped),
                    Reply(Waiter::Restart, Answer::Stopped),
                ],
            ),
        ];
        for (what, d, from, events, to, want) in rows {
            let (m, fx) = run(d, from, &events);
            assert_eq!((m.state, &fx), (to, &want), "{what}: {from:?} + {events:?}");
        }
    }

    /// The end of a removal, wherever it began: stopped with escalation, `post_stop` run, then
    /// answered and finished.
    fn removed_after_stop(fx: &[Effect]) {
        let pos = |want: &Effect| fx.iter().position(|f| f == want);
        let record = fx.iter().position(|f| matches!(f, RecordExit(_))).expect("exit recorded");
        let post = pos(&RunPostStop).expect("post_stop ran");
        let answered = pos(&Reply(Waiter::Remove, Answer::Removed)).expect("remove answered");
        let finish = pos(&Finish).expect("task finished");
        assert!(record < post && post < answered && answered < finish, "{fx:?}");
        assert!(!fx.contains(&Spawn), "{fx:?}");
    }

    #[test]
    fn remove_while_running_stops_escalates_runs_post_stop_then_answers() {
        let f = full();
        for from in [Starting, Online, Unhealthy] {
            let (m, fx) = run(&f, from, &[Event::Remove]);
            assert_eq!(m.state, stopping());
            assert!(
                !fx.contains(&Finish) && !fx.iter().any(|f| matches!(f, Reply(Waiter::Remove, _))),
                "{fx:?}"
            );
            // A child that ignores SIGTERM: SIGKILL after kill_timeout, then it is gone.
            let (m, fx) =
                run(&f, from, &[Event::Remove, Event::KillTimeout, exited(false), Event::HookDone(Ok(()))]);
            assert_eq!(m.state, Removed);
            assert!(fx.contains(&Kill), "{fx:?}");
            assert!(fx.contains(&RecordExit(ExitCause::Stopped)), "{fx:?}");
            removed_after_stop(&fx);
        }
    }

    #[test]
    fn remove_while_stopping_waiting_to_restart_or_in_pre_start() {
        let f = full();
        // Stopping for a restart: the removal wins, the restart is answered `stopped`.
        let (m, fx) =
            run(&f, Online, &[Event::Restart, Event::Remove, exited(false), Event::HookDone(Ok(()))]);
        assert_eq!(m.state, Removed);
        assert!(fx.contains(&Reply(Waiter::Restart, Answer::Stopped)), "{fx:?}");
        removed_after_stop(&fx);
        // Waiting out a restart delay: nothing runs, so it is forgotten at once.
        let (m, fx) = run(&f, Backoff, &[Event::Remove]);
        assert_eq!(m.state, Removed);
        assert!(fx.contains(&CancelBackoff) && fx.contains(&Finish), "{fx:?}");
        // Inside pre_start: the hook is killed, nothing is spawned, then it is forgotten.
        let (m, fx) = run(&f, PreStart, &[Event::Remove, Event::HookDone(Ok(()))]);
        assert_eq!(m.state, Removed);
        assert!(fx.contains(&AbortHook) && !fx.contains(&Spawn) && fx.contains(&Finish), "{fx:?}");
        // Waiting for dependencies.
        let (m, fx) = run(&f, Waiting, &[Event::Remove, Event::DepsReady]);
        assert_eq!(m.state, Removed);
        assert!(!fx.contains(&Spawn), "{fx:?}");
    }

    #[test]
    fn exit_during_stop_ends_the_run_once_the_group_is_gone() {
        let d = def();
        let (m, fx) = run(&d, Online, &[Event::Stop, exited(true)]);
        assert_eq!(m.state, Stopping { killed: false, leader_gone: true });
        assert!(!fx.iter().any(|f| matches!(f, RecordExit(_))), "{fx:?}");
        let (m, fx) = run(&d, Online, &[Event::Stop, exited(true), Event::KillTimeout, Event::GroupGone]);
        assert_eq!(m.state, Stopped);
        assert!(fx.contains(&Kill) && fx.contains(&RecordExit(ExitCause::Stopped)), "{fx:?}");
        // An exit during a stop is not a crash: no restart.
        assert!(!fx.contains(&Spawn), "{fx:?}");
    }

    #[test]
    fn shutdown_during_a_rolling_reload_stops_and_refuses_the_restart() {
        let f = full();
        // The reload restarted this instance; the daemon shuts down while it stops.
        let (m, fx) =
            run(&f, Online, &[Event::Restart, Event::Shutdown, exited(false), Event::HookDone(Ok(()))]);
        assert_eq!(m.state, Stopped);
        assert!(!fx.contains(&Spawn) && !fx.contains(&AwaitDeps), "{fx:?}");
        assert!(fx.contains(&Reply(Waiter::Restart, Answer::Stopped)), "{fx:?}");
        // The next instance of the rollout is refused.
        let (m, fx) = run(&f, Online, &[Event::Shutdown, Event::Restart]);
        assert_eq!(m.state, stopping());
        assert!(fx.contains(&Refuse(Waiter::Restart)), "{fx:?}");
        // A crash after shutdown began is not restarted.
        let (m, fx) = run(&def(), Online, &[Event::Shutdown, exited(false)]);
        assert_eq!(m.state, Stopped);
        assert!(!fx.contains(&Spawn), "{fx:?}");
    }

    #[test]
    fn restarts_are_counted_when_they_happen() {
        let d = def();
        let (_, fx) = run(&d, Online, &[Event::Restart, exited(false)]);
        assert!(!fx.contains(&CountRestart), "counted before the new run: {fx:?}");
        let (_, fx) =
            run(&d, Online, &[Event::Restart, exited(false), Event::DepsReady, Event::Spawned(Ok(()))]);
        assert_eq!(fx.iter().filter(|f| **f == CountRestart).count(), 1, "{fx:?}");
        // Stopped during the restart delay: the restart never happened.
        let short = Event::Exited { status: ExitStatus::Code(1), ran_for: SHORT, group_alive: false };
        let (_, fx) = run(&d, Online, &[short, Event::Stop]);
        assert!(!fx.contains(&CountRestart), "{fx:?}");
        // A start (not a restart) is not counted.
        let (_, fx) = run(&d, Stopped, &[Event::Start, Event::DepsReady, Event::Spawned(Ok(()))]);
        assert!(!fx.contains(&CountRestart), "{fx:?}");
    }

    #[test]
    fn a_stop_cancels_a_pending_restart_and_a_start_after_a_stop_waits_for_it() {
        let d = def();
        let (m, fx) = run(&d, Online, &[Event::Restart, Event::Stop, exited(false)]);
        assert_eq!(m.state, Stopped);
        assert!(fx.contains(&Reply(Waiter::Restart, Answer::Stopped)), "{fx:?}");
        let (m, fx) = run(&d, Online, &[Event::Stop, Event::Start, exited(false)]);
        assert_eq!(m.state, Waiting);
        let stop_answered = fx.iter().position(|f| *f == Reply(Waiter::Stop, Answer::Stopped));
        let deps = fx.iter().position(|f| *f == AwaitDeps);
        assert!(stop_answered.is_some() && stop_answered < deps, "{fx:?}");
    }

    #[test]
    fn crash_loop_gives_up_after_max_restarts() {
        let mut d = def();
        d.max_restarts = 2;
        let short = Event::Exited { status: ExitStatus::Code(1), ran_for: SHORT, group_alive: false };
        let mut m = at(Online);
        for _ in 0..2 {
            m.step(&d, short.clone());
            assert_eq!(m.state, Backoff);
            m.step(&d, Event::BackoffOver);
            m.step(&d, Event::Spawned(Ok(())));
        }
        let fx = m.step(&d, short);
        assert_eq!(m.state, Errored, "{fx:?}");
        assert!(matches!(&fx[1], Fail(r) if r.contains("3 runs")), "{fx:?}");
    }
}
