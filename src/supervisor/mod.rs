//! One task per instance owns everything about it: the child, its output pipes, its restarts and
//! its stop. The daemon talks to it only by message ([`Cmd`]) and reads its state from a watch
//! channel ([`Snapshot`]), so no lock is shared and a slow stop never blocks a `list`.
//!
//! # Theory of operation
//! The lifecycle is data: [`lifecycle::Machine`] decides every transition, without I/O. This
//! task waits for whichever comes first (a command, the child's exit through its pidfd, output
//! on its pipes, a timer, a hook ending, a dependency coming online, a probe), turns it into a
//! [`lifecycle::Event`], and carries out the [`lifecycle::Effect`]s the machine returns. Every
//! status change publishes a new snapshot and bumps the shared status bus, which is how
//! dependents waiting on this instance notice.

mod adopt;
pub mod health;
pub mod hooks;
mod inbox;
pub mod lifecycle;
pub mod policy;
pub mod surge;
pub mod triggers;

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{oneshot, watch};
use tokio::time::sleep_until;

use crate::instances;
use crate::logs::capture::{EXIT_BUDGET, LineSink, Stream, Tee};
use crate::logs::file::LogFile;
use crate::paths::Paths;
use crate::process::exit::{ExitStatus, ExitWatch};
use crate::process::signal::{self, Signal};
use crate::process::spawn::{self, Launch};
use crate::protocol::{Action, Outcome, Status};
use crate::spec::ProcessDef;
use crate::stats::StatsCache;
use health::Probe;
use lifecycle::{Effect, Event, Machine, State, Waiter};
use surge::{Hooks, Surge, SurgeEffect, SurgeEvent};

pub use adopt::{Prior, adopt};

/// Everything that defines one instance; replaced wholesale when the config changes.
#[derive(Debug)]
pub struct Instance {
    pub name: String,
    pub index: u32,
    pub def: Rc<ProcessDef>,
    /// Environment of the command that applied the config.
    pub base_env: Rc<BTreeMap<String, String>>,
    /// The config file this instance comes from.
    pub config: Rc<PathBuf>,
}

impl Instance {
    pub fn env(&self) -> BTreeMap<String, String> {
        instances::environment(&self.def, &self.base_env, self.index)
    }
    pub fn group(&self) -> Option<String> {
        instances::group_of(&self.def)
    }
}

/// Why the last run ended (or was ended), as `info` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCause {
    /// The process exited on its own.
    Exited,
    /// A command (stop, restart, reload, kill) stopped it.
    Stopped,
    /// Its memory passed `max_memory`.
    Memory,
    /// Its `cron_restart` schedule came due.
    Cron,
    /// A watched file changed.
    Watch,
}

impl ExitCause {
    pub fn as_str(self) -> &'static str {
        match self {
            ExitCause::Exited => "exited",
            ExitCause::Stopped => "stopped",
            ExitCause::Memory => "memory",
            ExitCause::Cron => "cron",
            ExitCause::Watch => "watch",
        }
    }
}

/// The end of the previous run.
#[derive(Debug, Clone)]
pub struct LastExit {
    pub status: ExitStatus,
    pub cause: ExitCause,
    pub at: SystemTime,
    /// The last lines of stderr before the exit, so a crash loop explains itself in `info`.
    pub stderr: Vec<String>,
}

/// What the daemon can see of an instance at any moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub status: Status,
    pub pid: Option<u32>,
    /// Kernel start time of `pid` (clock ticks since boot): the pid's identity.
    pub start_time: Option<u64>,
    pub started_at: Option<SystemTime>,
    pub restarts: u32,
    pub last_exit: Option<LastExit>,
    /// Why it is `errored`.
    pub error: Option<String>,
    /// When a delayed restart is due.
    pub restart_at: Option<Instant>,
    /// Why the last health probe failed, while not yet online.
    pub health_error: Option<String>,
    /// What the current run was started with (the file may have changed since).
    pub launched: Option<Rc<Launched>>,
}

/// The definition and environment a run was started with: what `info` shows as running.
///
/// The environment is kept as the instance it was computed from (definition, the starting
/// environment shared by every instance of a start, index) and computed again when asked for:
/// a copy of the whole environment per running instance was the largest part of the daemon's
/// memory (about 5 KiB each with a 40-variable environment, 5 MiB at 1,000 instances).
#[derive(Debug)]
pub struct Launched {
    pub def: Rc<ProcessDef>,
    inst: Rc<Instance>,
}

impl Launched {
    pub fn new(def: Rc<ProcessDef>, inst: Rc<Instance>) -> Launched {
        Launched { def, inst }
    }

    /// The environment the run was started with.
    pub fn env(&self) -> BTreeMap<String, String> {
        self.inst.env()
    }

    /// The keys whose values differ between this run's definition and `now` (the file's).
    pub fn changed_in(&self, now: &ProcessDef) -> Vec<String> {
        let (Ok(serde_json::Value::Object(was)), Ok(serde_json::Value::Object(is))) =
            (serde_json::to_value(&*self.def), serde_json::to_value(now))
        else {
            return Vec::new();
        };
        // The instance count is the cluster's, not this run's.
        is.iter()
            .filter(|(k, v)| k.as_str() != "instances" && was.get(k.as_str()) != Some(v))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

impl Snapshot {
    fn new() -> Snapshot {
        Snapshot {
            status: Status::Stopped,
            pid: None,
            start_time: None,
            started_at: None,
            restarts: 0,
            last_exit: None,
            error: None,
            restart_at: None,
            health_error: None,
            launched: None,
        }
    }
}

/// The answer to a command, sent when the command has taken effect.
pub type Reply = oneshot::Sender<Outcome>;

/// Messages to a supervisor task.
pub enum Cmd {
    /// Start unless running; `deps` are the snapshots of every instance it must wait for.
    Start { deps: Vec<watch::Receiver<Snapshot>>, reply: Reply },
    /// Graceful stop; the reply comes once the process group is gone.
    Stop { reply: Reply },
    /// Stop (if running) then start; counts as a restart.
    Restart { deps: Vec<watch::Receiver<Snapshot>>, reply: Reply },
    /// Send a signal to the process group (see [`deliver`]).
    Signal { signal: Signal, reply: Reply },
    /// Use this definition from the next start on.
    Update { instance: Rc<Instance> },
    /// Restart because of a trigger (watch); ignored unless running.
    Trigger { cause: ExitCause },
    /// Stop (with escalation and `post_stop`), then end the task; the reply comes last.
    Remove { reply: Reply },
    /// The daemon shuts down: stop like `Stop`, and refuse every start from now on.
    Shutdown { reply: Reply },
    /// Reload by surge (a process with `listen`): start a replacement beside the running
    /// process and stop the old one once the new one is ready; the reply comes then (`online`),
    /// or `failed` with the old one still running. Not running: a plain restart.
    Surge { deps: Vec<watch::Receiver<Snapshot>>, reply: Reply },
}

/// Daemon-wide things every supervisor needs.
#[derive(Clone)]
pub struct Ctx {
    pub paths: Rc<Paths>,
    /// Bumped on every status change of any instance; dependents wait on it.
    pub bus: Rc<watch::Sender<u64>>,
    /// CPU/memory samples, shared with `list` so both read the same numbers.
    pub stats: Rc<RefCell<StatsCache>>,
    /// Where complete output lines also go (`pm3 run` prints them); `None` in the daemon.
    pub tee: Option<Rc<dyn LineSink>>,
    /// The listening sockets of processes with `listen`.
    pub sockets: Rc<crate::listen::Sockets>,
}

impl Ctx {
    fn tee(&self, name: &str, is_err: bool) -> Option<Tee> {
        self.tee.as_ref().map(|sink| Tee::new(sink.clone(), Rc::from(name), is_err))
    }
}

/// The daemon's side of a supervisor task.
pub struct Handle {
    tx: inbox::Sender,
    pub snapshot: watch::Receiver<Snapshot>,
}

impl Handle {
    /// Sends `cmd`; a task that has ended simply drops it (its reply channel closes).
    pub fn send(&self, cmd: Cmd) {
        self.tx.send(cmd);
    }
}

/// Starts the supervisor task of `instance` (idle, `stopped`) on the current local task set.
pub fn spawn(instance: Rc<Instance>, ctx: Ctx) -> Handle {
    let (tx, rx) = inbox::inbox();
    let (snap_tx, snap_rx) = watch::channel(Snapshot::new());
    let sup = Supervisor::new(instance, ctx, rx, snap_tx, State::Stopped);
    tokio::task::spawn_local(sup.run(None));
    Handle { tx, snapshot: snap_rx }
}

/// A live run of the instance.
struct Run {
    pid: u32,
    /// Kernel start time of `pid`, read once at spawn.
    start_time: Option<u64>,
    started: Instant,
    exit: ExitWatch,
    out: Stream,
    err: Stream,
    /// Set once the main process has exited (the rest of its group may still run).
    exited: Option<ExitStatus>,
    /// The main process is the `/bin/sh -c` pm3 put around a command with shell syntax.
    wrapped: bool,
    /// The readiness probe, until it first passes.
    health: Option<HealthRun>,
    /// Next `max_memory` sample.
    memory_at: Option<tokio::time::Instant>,
    /// Next `cron_restart` time.
    cron_at: Option<tokio::time::Instant>,
    /// What a surge replacement was started with, until it becomes the current run.
    launched: Option<Rc<Launched>>,
}

/// One run of a probe.
type ProbeAttempt = Pin<Box<dyn Future<Output = Result<(), String>>>>;

/// A probe in progress: its schedule and, while one attempt runs, that attempt.
struct HealthRun {
    probe: Rc<Probe>,
    env: Rc<BTreeMap<String, String>>,
    next: tokio::time::Instant,
    /// When `starting` turns `unhealthy`.
    unhealthy_at: tokio::time::Instant,
    attempt: Option<ProbeAttempt>,
}

impl HealthRun {
    /// A probe due at once, turning `unhealthy` after `timeout`.
    fn new(probe: Rc<Probe>, env: Rc<BTreeMap<String, String>>, timeout: Duration) -> HealthRun {
        let now = tokio::time::Instant::now();
        HealthRun { probe, env, next: now, unhealthy_at: now + timeout, attempt: None }
    }
}

/// A hook (`pre_start` or `post_stop`) that runs, and its pid so a stop can kill it.
struct HookRun {
    pid: Option<u32>,
    done: Pin<Box<dyn Future<Output = Result<(), String>>>>,
}

/// How often a group whose leader has exited is checked for remaining members. Only used in
/// that rare case; a normal exit is an event (pidfd), not a poll.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// The task: the lifecycle [`Machine`] plus the I/O it asks for.
struct Supervisor {
    inst: Rc<Instance>,
    ctx: Ctx,
    rx: inbox::Receiver,
    /// False once the daemon dropped its handle: the task then stops the process and ends.
    rx_open: bool,
    snap: watch::Sender<Snapshot>,
    machine: Machine,
    run: Option<Box<Run>>,
    hook: Option<HookRun>,
    /// The dependencies of the last start, and the bus that says when to look at them again.
    deps: Vec<watch::Receiver<Snapshot>>,
    deps_bus: Option<watch::Receiver<u64>>,
    kill_at: Option<tokio::time::Instant>,
    backoff_until: Option<tokio::time::Instant>,
    group_poll: bool,
    /// The instance `pre_start` ran as: the spawn that follows it uses the same environment.
    launch_inst: Option<Rc<Instance>>,
    /// Requests waiting for the lifecycle to answer them.
    waiters: Vec<(Waiter, Reply)>,
    shutting_down: bool,
    done: bool,
    /// The surge reload, and the run it owns beside the current one (see [`surge`]).
    surge: Surge,
    side: Option<Box<Run>>,
    side_kill_at: Option<tokio::time::Instant>,
    side_poll: bool,
    /// When a candidate without a health check counts as ready (`min_uptime`).
    side_ready_at: Option<tokio::time::Instant>,
    surge_reply: Option<Reply>,
    /// Answers to stops and removals, held until the side run is gone too.
    held: Vec<(Reply, Outcome)>,
    /// The lifecycle ended the task while a side run was still being stopped.
    finish_pending: bool,
    /// A reload that came while the previous one's old run still drained.
    queued_surge: Option<(Vec<watch::Receiver<Snapshot>>, Reply)>,
    /// The surge's own hook (the candidate's `pre_start`, the side run's `post_stop`), which
    /// may run while the lifecycle runs one of its own.
    side_hook: Option<HookRun>,
    /// The environment the candidate's `pre_start` ran with, used by its spawn.
    side_env: Option<Rc<BTreeMap<String, String>>>,
    /// Set when the candidate took over from a current run that exited by itself.
    handed_over: bool,
}

impl Supervisor {
    fn new(
        inst: Rc<Instance>,
        ctx: Ctx,
        rx: inbox::Receiver,
        snap: watch::Sender<Snapshot>,
        state: State,
    ) -> Supervisor {
        Supervisor {
            inst,
            ctx,
            rx,
            rx_open: true,
            snap,
            machine: Machine::new(state),
            run: None,
            hook: None,
            deps: Vec::new(),
            deps_bus: None,
            kill_at: None,
            backoff_until: None,
            group_poll: false,
            launch_inst: None,
            waiters: Vec::new(),
            shutting_down: false,
            done: false,
            surge: Surge::Idle,
            side: None,
            side_kill_at: None,
            side_poll: false,
            side_ready_at: None,
            surge_reply: None,
            held: Vec::new(),
            finish_pending: false,
            queued_surge: None,
            side_hook: None,
            side_env: None,
            handed_over: false,
        }
    }

    /// Feeds `first` (if any), then events as they come, until the instance is removed (or its
    /// handle dropped and the process stopped).
    async fn run(mut self, first: Option<Event>) {
        if let Some(event) = first {
            self.feed(event);
        }
        while !self.done {
            if let Some(event) = self.next_event().await {
                self.feed(event);
            }
            if !self.rx_open
                && matches!(self.machine.state, State::Stopped | State::Errored)
                && !self.surge.busy()
            {
                break;
            }
        }
    }

    /// Runs `event` through the machine and carries out its effects; effects that answer at
    /// once (a spawn, a look at the dependencies) feed their events in turn.
    fn feed(&mut self, event: Event) {
        let mut queue = VecDeque::from([event]);
        while let Some(event) = queue.pop_front() {
            let def = self.inst.def.clone();
            for effect in self.machine.step(&def, event) {
                if let Some(next) = self.apply(effect) {
                    queue.push_back(next);
                }
            }
        }
    }

    /// Waits for the next thing that happens and turns it into an event (`None` when it was
    /// handled without the lifecycle: output copied, a signal sent, a definition updated).
    async fn next_event(&mut self) -> Option<Event> {
        let state = self.machine.state;
        let calm = matches!(state, State::Starting | State::Online | State::Unhealthy);
        let waiting = state == State::Waiting;
        let kill_at = self.kill_at;
        let backoff_until = self.backoff_until;
        let group_poll = self.group_poll;
        let side_timers = SideTimers {
            kill_at: self.side_kill_at,
            poll: self.side_poll,
            ready_at: self.side_ready_at,
            candidate: self.surge == Surge::Candidate,
        };
        let Supervisor { rx, rx_open, run, hook, deps_bus, side, side_hook, .. } = self;
        // The side run's output is copied last, like the current run's; its exit, probe and
        // timers come with the other events.
        let (side_ctl, side_out, side_err) = match side.as_deref_mut() {
            Some(Run { exit, out, err, exited, health, .. }) => (
                Some(SideCtl { exit, leader_up: exited.is_none(), health: health.as_mut() }),
                Some(out),
                Some(err),
            ),
            None => (None, None, None),
        };
        let side_live = side_ctl.is_some();
        let (exit, out, err, health, memory_at, cron_at, leader_up) = match run.as_deref_mut() {
            Some(r) => (
                Some(&r.exit),
                Some(&mut r.out),
                Some(&mut r.err),
                r.health.as_mut(),
                r.memory_at,
                r.cron_at,
                r.exited.is_none(),
            ),
            None => (None, None, None, None, None, None, false),
        };
        let probe_busy = health.as_ref().is_some_and(|h| h.attempt.is_some());
        let probe_next = health.as_ref().map(|h| h.next);
        let unhealthy_at = health.as_ref().map(|h| h.unhealthy_at);
        // The timers share two sleeps, each firing for the first of its timers that is due, in
        // the order a branch of its own would have had: a sleep is ~100 bytes of every
        // supervisor's future, and most timers are off most of the time.
        let early = Timers::new([
            (|| Io::KillTimeout, kill_at),
            (|| Io::GroupCheck, group_poll.then(|| tokio::time::Instant::now() + GROUP_POLL)),
            (|| Io::BackoffOver, backoff_until),
        ]);
        let late = Timers::new([
            (|| Io::ProbeDue, probe_next.filter(|_| !probe_busy && calm)),
            (|| Io::HealthTimeout, unhealthy_at.filter(|_| state == State::Starting)),
            (|| Io::MemoryCheck, memory_at.filter(|_| calm)),
            (|| Io::CronDue, cron_at.filter(|_| calm)),
        ]);
        let io = tokio::select! {
            biased;
            status = async { match exit { Some(x) => x.exited().await, None => std::future::pending().await } }, if leader_up => Io::Exited(status),
            cmd = rx.recv(), if *rx_open => Io::Cmd(cmd),
            // A surge's side run is rare: its future is only allocated while there is one.
            side_io = async { match side_ctl { Some(c) => Box::pin(side_next(Some(c), side_timers)).await, None => std::future::pending().await } }, if side_live => Io::Side(side_io),
            res = async { match hook.as_mut() { Some(h) => h.done.as_mut().await, None => std::future::pending().await } }, if hook.is_some() => Io::HookDone(res),
            res = async { match side_hook.as_mut() { Some(h) => h.done.as_mut().await, None => std::future::pending().await } }, if side_hook.is_some() => Io::SideHookDone(res),
            _ = sleep_until(early.next.unwrap_or_else(far_future)), if early.next.is_some() => early.due(),
            changed = async { match deps_bus.as_mut() { Some(b) => b.changed().await, None => std::future::pending().await } }, if waiting && deps_bus.is_some() => Io::DepsChanged(changed.is_ok()),
            res = poll_attempt(health), if probe_busy && calm => Io::ProbeDone(res),
            _ = sleep_until(late.next.unwrap_or_else(far_future)), if late.next.is_some() => late.due(),
            // Output last: a writer that never pauses still lets commands and timers through
            // (each wake-up copies at most `PUMP_BUDGET` bytes per stream).
            _ = pump(out) => Io::Output,
            _ = pump(err) => Io::Output,
            _ = async { match side_out { Some(s) => Box::pin(s.pump()).await, None => std::future::pending().await } } => Io::Output,
            _ = async { match side_err { Some(s) => Box::pin(s.pump()).await, None => std::future::pending().await } } => Io::Output,
        };
        match io {
            Io::Output => None,
            Io::Side(side_io) => self.on_side(side_io),
            Io::Cmd(Some(cmd)) => self.on_cmd(cmd),
            Io::Cmd(None) => {
                // The daemon dropped its handle: nothing may be left running behind it.
                self.rx_open = false;
                self.surge_event(SurgeEvent::Halt);
                Some(Event::Shutdown)
            }
            Io::Exited(status) => self.on_current_exit(status),
            Io::HookDone(result) => {
                self.hook = None;
                Some(Event::HookDone(result))
            }
            Io::SideHookDone(result) => {
                self.side_hook = None;
                if let Err(e) = &result {
                    tracing::warn!(name = %self.inst.name, "surge: hook failed: {e}");
                }
                self.surge_event(SurgeEvent::HookDone(result));
                None
            }
            Io::KillTimeout => {
                self.kill_at = None;
                Some(Event::KillTimeout)
            }
            Io::GroupCheck => {
                let pid = self.run.as_ref().map(|r| r.pid)?;
                (!group_alive(pid)).then_some(Event::GroupGone)
            }
            Io::BackoffOver => {
                self.backoff_until = None;
                Some(Event::BackoffOver)
            }
            Io::DepsChanged(true) => deps_ready(&self.deps).then_some(Event::DepsReady),
            Io::DepsChanged(false) => {
                self.deps_bus = None;
                None
            }
            Io::ProbeDue => {
                self.start_probe();
                None
            }
            Io::ProbeDone(result) => Some(self.on_probe_done(result)),
            Io::HealthTimeout => Some(Event::HealthTimeout),
            Io::MemoryCheck => self.on_memory_check(),
            Io::CronDue => {
                let next = self.next_cron();
                if let Some(r) = &mut self.run {
                    r.cron_at = next;
                }
                Some(Event::Trigger(ExitCause::Cron))
            }
        }
    }

    /// A command from the daemon: queue its reply, hand the lifecycle its event.
    fn on_cmd(&mut self, cmd: Cmd) -> Option<Event> {
        // Any command that changes what runs comes before a replacement that is not ready yet.
        // (A start leaves a running instance as it is: not among them.)
        // A stop, removal or shutdown also kills a surge hook that runs.
        let interrupt = match cmd {
            Cmd::Stop { .. } | Cmd::Remove { .. } | Cmd::Shutdown { .. } => Some(SurgeEvent::Halt),
            Cmd::Restart { .. } | Cmd::Trigger { .. } => Some(SurgeEvent::Interrupt),
            _ => None,
        };
        if let Some(event) = interrupt {
            self.surge_event(event);
            if let Some((_, reply)) = self.queued_surge.take() {
                let _ =
                    reply.send(self.outcome(Action::Failed, Some("interrupted by another command".into())));
            }
        }
        let (waiter, reply, event) = match cmd {
            Cmd::Surge { deps, reply } => {
                // The old run of a previous reload still drains (or its `post_stop` runs): this
                // one begins once it is gone.
                if self.surge_reply.is_none()
                    && matches!(self.surge, Surge::Draining { .. } | Surge::PostStop { .. })
                {
                    self.queued_surge = Some((deps, reply));
                    return None;
                }
                if self.surge_reply.is_some() || self.surge.busy() {
                    let _ = reply.send(self.outcome(
                        Action::Failed,
                        Some("a reload of this instance is already under way".into()),
                    ));
                    return None;
                }
                let running =
                    matches!(self.machine.state, State::Starting | State::Online | State::Unhealthy)
                        && !self.machine.closed()
                        && self.run.as_ref().is_some_and(|r| r.exited.is_none());
                if !running {
                    self.deps = deps;
                    self.waiters.push((Waiter::Restart, reply));
                    return Some(Event::Restart);
                }
                self.surge_reply = Some(reply);
                self.surge_event(SurgeEvent::Begin { running });
                return None;
            }
            Cmd::Start { deps, reply } => {
                self.deps = deps;
                (Waiter::Start, reply, Event::Start)
            }
            Cmd::Restart { deps, reply } => {
                self.deps = deps;
                (Waiter::Restart, reply, Event::Restart)
            }
            Cmd::Stop { reply } => (Waiter::Stop, reply, Event::Stop),
            Cmd::Remove { reply } => (Waiter::Remove, reply, Event::Remove),
            Cmd::Shutdown { reply } => {
                self.shutting_down = true;
                (Waiter::Stop, reply, Event::Shutdown)
            }
            Cmd::Trigger { cause } => return Some(Event::Trigger(cause)),
            Cmd::Update { instance } => {
                self.inst = instance;
                return None;
            }
            Cmd::Signal { signal, reply } => {
                let outcome = match &self.run {
                    Some(r) if r.exited.is_none() => match deliver(r.pid, r.wrapped, signal) {
                        Ok(()) => self.outcome(Action::Signalled, Some(signal.to_string())),
                        Err(e) => self.outcome(Action::Failed, Some(format!("cannot send {signal}: {e}"))),
                    },
                    _ => self.outcome(Action::Failed, Some("not running".into())),
                };
                let _ = reply.send(outcome);
                return None;
            }
        };
        self.waiters.push((waiter, reply));
        Some(event)
    }

    /// Carries out one effect; returns the event it answers with at once, if any.
    fn apply(&mut self, effect: Effect) -> Option<Event> {
        match effect {
            Effect::AwaitDeps => {
                if deps_ready(&self.deps) {
                    self.deps_bus = None;
                    return Some(Event::DepsReady);
                }
                self.deps_bus = Some(self.ctx.bus.subscribe());
                return Some(Event::DepsPending);
            }
            Effect::RunPreStart => {
                let env = self.inst.env();
                self.launch_inst = Some(self.inst.clone());
                let command = self.inst.def.pre_start.clone().unwrap_or_default();
                self.start_hook(&command, &env);
            }
            Effect::RunPostStop => {
                let env = self.inst.env();
                let command = self.inst.def.post_stop.clone().unwrap_or_default();
                self.start_hook(&command, &env);
            }
            Effect::AbortHook => {
                if let Some(pid) = self.hook.as_ref().and_then(|h| h.pid) {
                    let _ = signal::signal_group(pid, Signal::KILL);
                }
            }
            Effect::Spawn => {
                let from = self.launch_inst.take().unwrap_or_else(|| self.inst.clone());
                let env = Rc::new(from.env());
                return Some(Event::Spawned(self.spawn_run(env, from)));
            }
            Effect::Signal => self.signal_stop(),
            Effect::Kill => {
                if let Some(r) = &self.run {
                    tracing::info!(name = %self.inst.name, pid = r.pid, "kill timeout: SIGKILL");
                    let _ = signal::signal_group(r.pid, Signal::KILL);
                }
                self.kill_at = None;
            }
            Effect::WatchGroup => self.group_poll = true,
            Effect::RecordExit(cause) => self.record_exit(cause),
            Effect::ArmBackoff(delay) => {
                let until = tokio::time::Instant::now() + delay;
                self.backoff_until = Some(until);
                self.snap.send_modify(|s| s.restart_at = Some(until.into_std()));
            }
            Effect::CancelBackoff => {
                self.backoff_until = None;
                self.snap.send_modify(|s| s.restart_at = None);
            }
            Effect::Publish(status) => self.publish(|s| {
                s.status = status;
                if status != Status::Waiting {
                    s.restart_at = None;
                }
                if !status.is_running() {
                    s.pid = None;
                    s.start_time = None;
                }
            }),
            Effect::Fail(reason) => {
                tracing::warn!(name = %self.inst.name, "errored: {reason}");
                self.publish(|s| {
                    s.status = Status::Errored;
                    s.pid = None;
                    s.start_time = None;
                    s.error = Some(reason);
                    s.restart_at = None;
                });
            }
            Effect::CountRestart => self.snap.send_modify(|s| s.restarts = s.restarts.saturating_add(1)),
            Effect::Reply(waiter, action) => {
                let detail = match action {
                    Action::Failed => self.snap.borrow().error.clone(),
                    // `start` does not apply an edited definition to a running process: say so.
                    Action::AlreadyRunning => self
                        .snap
                        .borrow()
                        .launched
                        .as_ref()
                        .filter(|l| !l.changed_in(&self.inst.def).is_empty())
                        .map(|_| "config changed: restart to apply".to_string()),
                    _ => None,
                };
                self.answer(waiter, action, detail);
            }
            Effect::Refuse(waiter) => {
                let why = if self.shutting_down { "daemon is shutting down" } else { "removed" };
                self.answer(waiter, Action::Failed, Some(why.into()));
            }
            Effect::Finish => {
                if self.surge.busy() {
                    self.finish_pending = true;
                } else {
                    self.done = true;
                }
            }
        }
        None
    }

    /// Answers every waiting request of one kind.
    fn answer(&mut self, waiter: Waiter, action: Action, detail: Option<String>) {
        let mut i = 0;
        while i < self.waiters.len() {
            if self.waiters[i].0 == waiter {
                let (_, reply) = self.waiters.swap_remove(i);
                let outcome = self.outcome(action, detail.clone());
                // "Stopped" means every process of the instance is gone, the side run too.
                if self.surge.busy() && matches!(waiter, Waiter::Stop | Waiter::Remove) {
                    self.held.push((reply, outcome));
                    continue;
                }
                let _ = reply.send(outcome);
            } else {
                i += 1;
            }
        }
    }

    /// Runs a surge event and carries out its effects.
    fn surge_event(&mut self, event: SurgeEvent) {
        let mut queue = VecDeque::from([event]);
        while let Some(event) = queue.pop_front() {
            let hooks = self.surge_hooks();
            for effect in self.surge.step(hooks, event) {
                if let Some(next) = self.apply_surge(effect) {
                    queue.push_back(next);
                }
            }
        }
        if !self.surge.busy() {
            self.side_env = None;
            self.side_kill_at = None;
            self.side_poll = false;
            self.side_ready_at = None;
            if let Some(r) = self.side.take() {
                linger(r.out, r.err);
            }
            for (reply, outcome) in std::mem::take(&mut self.held) {
                let _ = reply.send(outcome);
            }
            if std::mem::take(&mut self.finish_pending) {
                self.done = true;
            }
            if let Some((deps, reply)) = self.queued_surge.take() {
                if let Some(event) = self.on_cmd(Cmd::Surge { deps, reply }) {
                    self.feed(event);
                }
            }
        }
    }

    /// Which hooks the surge runs around its side run.
    fn surge_hooks(&self) -> Hooks {
        Hooks { pre_start: self.inst.def.pre_start.is_some(), post_stop: self.inst.def.post_stop.is_some() }
    }

    /// The current run's main process exited by itself. During a surge whose replacement runs
    /// beside it, the replacement carries on as the instance (`HandOver`); otherwise the
    /// lifecycle handles the exit (its restart policy), and a surge still in `pre_start` stops.
    fn on_current_exit(&mut self, status: ExitStatus) -> Option<Event> {
        let running = matches!(self.machine.state, State::Starting | State::Online | State::Unhealthy)
            && !self.machine.closed();
        let event =
            if running && self.surge.pending() { SurgeEvent::CurrentExited } else { SurgeEvent::Interrupt };
        if event == SurgeEvent::CurrentExited
            && let Some(r) = self.run.as_mut()
        {
            r.out.drain_up_to(EXIT_BUDGET, None);
            r.err.drain_up_to(EXIT_BUDGET, None);
            r.exited = Some(status);
        }
        self.handed_over = false;
        self.surge_event(event);
        if std::mem::take(&mut self.handed_over) {
            return None;
        }
        self.on_exit(status)
    }

    /// The surge's replacement, just made the current run, as the instance's process in the
    /// snapshot: its pid, start, and what it was launched with. Its pid, if there is a run.
    fn publish_replacement(&mut self) -> Option<u32> {
        let r = self.run.as_mut()?;
        let (pid, start_time, since) = (r.pid, r.start_time, spawned_at(r.started));
        let launched = r.launched.take();
        self.snap.send_modify(|s| {
            s.pid = Some(pid);
            s.start_time = start_time;
            s.started_at = Some(since);
            s.error = None;
            s.health_error = None;
            s.launched = launched;
        });
        Some(pid)
    }

    fn apply_surge(&mut self, effect: SurgeEffect) -> Option<SurgeEvent> {
        match effect {
            SurgeEffect::RunPreStart => {
                let env = Rc::new(self.inst.env());
                self.side_env = Some(env.clone());
                let command = self.inst.def.pre_start.clone().unwrap_or_default();
                tracing::info!(name = %self.inst.name, "surge: pre_start");
                self.side_hook = Some(self.launch_hook(&command, &env));
            }
            SurgeEffect::RunPostStop => {
                let env = self.inst.env();
                let command = self.inst.def.post_stop.clone().unwrap_or_default();
                self.side_hook = Some(self.launch_hook(&command, &env));
            }
            SurgeEffect::AbortHook => {
                if let Some(pid) = self.side_hook.as_ref().and_then(|h| h.pid) {
                    tracing::info!(name = %self.inst.name, pid, "surge: killing the hook");
                    let _ = signal::signal_group(pid, Signal::KILL);
                }
            }
            SurgeEffect::HandOver => {
                std::mem::swap(&mut self.run, &mut self.side);
                self.side_ready_at = None;
                self.handed_over = true;
                let old = self.side.as_ref().map(|r| (r.pid, r.exited.unwrap_or(ExitStatus::Unknown)));
                let stderr = last_stderr(&self.ctx.paths.err_log(&self.inst.name));
                if let Some(pid) = self.publish_replacement() {
                    tracing::info!(
                        name = %self.inst.name,
                        pid,
                        old = ?old.map(|o| o.0),
                        "surge: the running process exited; its replacement carries on"
                    );
                    if let Some((_, status)) = old {
                        self.snap.send_modify(|s| {
                            s.last_exit = Some(LastExit {
                                status,
                                cause: ExitCause::Exited,
                                at: SystemTime::now(),
                                stderr,
                            });
                        });
                    }
                }
                self.feed(Event::Superseded);
                // The reload waits for the new run like for any restarted process.
                if let Some(reply) = self.surge_reply.take() {
                    let _ = reply.send(self.outcome(Action::Restarted, None));
                }
            }
            SurgeEffect::SpawnCandidate => {
                let env = self.side_env.take().unwrap_or_else(|| Rc::new(self.inst.env()));
                let launched = Rc::new(Launched::new(self.inst.def.clone(), self.inst.clone()));
                match self.try_spawn(env) {
                    Ok(mut run) => {
                        tracing::info!(
                            name = %self.inst.name,
                            pid = run.pid,
                            beside = ?self.run.as_ref().map(|r| r.pid),
                            "surge: replacement started"
                        );
                        run.launched = Some(launched);
                        if run.health.is_none() {
                            self.side_ready_at =
                                Some(tokio::time::Instant::now() + self.inst.def.min_uptime());
                        }
                        self.side = Some(Box::new(run));
                        return Some(SurgeEvent::Spawned(Ok(())));
                    }
                    Err(e) => {
                        tracing::warn!(name = %self.inst.name, "surge: cannot start the replacement: {e}");
                        return Some(SurgeEvent::Spawned(Err(e)));
                    }
                }
            }
            SurgeEffect::Promote => {
                std::mem::swap(&mut self.run, &mut self.side);
                self.side_ready_at = None;
                if let Some(pid) = self.publish_replacement() {
                    tracing::info!(name = %self.inst.name, pid, "surge: replacement online");
                }
                self.feed(Event::Replaced);
            }
            SurgeEffect::StopSide => {
                self.side_ready_at = None;
                if let Some(r) = &self.side {
                    let sig = self.inst.def.kill_signal;
                    tracing::info!(name = %self.inst.name, pid = r.pid, "surge: stopping {sig}");
                    let _ = signal::signal_group(r.pid, sig);
                    let _ = signal::signal_group(r.pid, Signal::from_number(libc::SIGCONT).unwrap_or(sig));
                    self.side_kill_at = Some(tokio::time::Instant::now() + self.inst.def.kill_timeout());
                    if r.exited.is_some() {
                        self.side_poll = true;
                    }
                } else {
                    return Some(SurgeEvent::SideGone);
                }
            }
            SurgeEffect::KillSide => {
                self.side_kill_at = None;
                if let Some(r) = &self.side {
                    tracing::info!(name = %self.inst.name, pid = r.pid, "surge: kill timeout: SIGKILL");
                    let _ = signal::signal_group(r.pid, Signal::KILL);
                }
            }
            SurgeEffect::Answer(result) => {
                if let Some(reply) = self.surge_reply.take() {
                    let outcome = match result {
                        Ok(()) => self.outcome(Action::Online, None),
                        Err(why) => {
                            self.outcome(Action::Failed, Some(format!("the replacement failed: {why}")))
                        }
                    };
                    let _ = reply.send(outcome);
                }
            }
            SurgeEffect::FallBack => {}
        }
        None
    }

    /// Something happened to the side run.
    fn on_side(&mut self, io: SideIo) -> Option<Event> {
        match io {
            SideIo::Exited(status) => {
                let r = self.side.as_mut()?;
                r.out.drain_up_to(EXIT_BUDGET, None);
                r.err.drain_up_to(EXIT_BUDGET, None);
                r.exited = Some(status);
                let (pid, gone) = (r.pid, !group_alive(r.pid));
                tracing::info!(name = %self.inst.name, pid, ?status, "surge: side run exited");
                if self.surge == Surge::Candidate {
                    let why = format!("exited ({status}) before it was ready");
                    self.surge_event(SurgeEvent::Failed(why));
                }
                if gone {
                    self.surge_event(SurgeEvent::SideGone);
                } else if self.side.is_some() {
                    self.side_poll = true;
                }
            }
            SideIo::GroupCheck => {
                let pid = self.side.as_ref()?.pid;
                if !group_alive(pid) {
                    self.surge_event(SurgeEvent::SideGone);
                }
            }
            SideIo::KillTimeout => {
                self.side_kill_at = None;
                self.surge_event(SurgeEvent::KillTimeout);
            }
            SideIo::ReadyTimer => {
                self.side_ready_at = None;
                self.surge_event(SurgeEvent::Ready);
            }
            SideIo::ProbeDue => {
                let cwd = self.inst.def.cwd.clone();
                let timeout = self.inst.def.probe_timeout();
                let h = self.side.as_mut()?.health.as_mut()?;
                let (probe, env) = (h.probe.clone(), h.env.clone());
                h.attempt = Some(Box::pin(async move { probe.check(&cwd, &env, timeout).await }));
            }
            SideIo::ProbeDone(Ok(())) => {
                if let Some(r) = self.side.as_mut() {
                    r.health = None;
                }
                self.surge_event(SurgeEvent::Ready);
            }
            SideIo::ProbeDone(Err(e)) => {
                let interval = Duration::from_millis(self.inst.def.health_interval_ms);
                if let Some(h) = self.side.as_mut().and_then(|r| r.health.as_mut()) {
                    h.attempt = None;
                    h.next = tokio::time::Instant::now() + interval;
                }
                tracing::debug!(name = %self.inst.name, "surge: replacement not healthy yet: {e}");
            }
            SideIo::HealthTimeout => {
                let why = format!("health check did not pass within {}ms", self.inst.def.health_timeout_ms);
                self.surge_event(SurgeEvent::Failed(why));
            }
        }
        None
    }

    fn outcome(&self, action: Action, detail: Option<String>) -> Outcome {
        let snap = self.snap.borrow();
        Outcome { name: self.inst.name.clone(), action, status: snap.status, pid: snap.pid, detail }
    }

    /// Changes the snapshot and tells everyone waiting on a status change (dependents, state).
    fn publish(&self, f: impl FnOnce(&mut Snapshot)) {
        self.snap.send_modify(f);
        self.ctx.bus.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn start_hook(&mut self, command: &str, env: &BTreeMap<String, String>) {
        self.hook = Some(self.launch_hook(command, env));
    }

    /// Starts a hook of the instance (cwd, environment, output into its logs); one that cannot
    /// be started ends at once with the reason.
    fn launch_hook(&self, command: &str, env: &BTreeMap<String, String>) -> HookRun {
        let paths = &self.ctx.paths;
        let (out, err) = (paths.out_log(&self.inst.name), paths.err_log(&self.inst.name));
        match hooks::start(command, &self.inst.def.cwd, env, &out, &err) {
            Ok(hook) => HookRun { pid: Some(hook.pid), done: Box::pin(hook.wait()) },
            Err(e) => HookRun { pid: None, done: Box::pin(std::future::ready(Err(e))) },
        }
    }

    /// Spawns a new run and records its pid.
    fn spawn_run(&mut self, env: Rc<BTreeMap<String, String>>, from: Rc<Instance>) -> Result<(), String> {
        let launched = Rc::new(Launched::new(self.inst.def.clone(), from));
        let run = self
            .try_spawn(env)
            .inspect_err(|e| tracing::warn!(name = %self.inst.name, "cannot start: {e}"))?;
        let (pid, start_time) = (run.pid, run.start_time);
        self.run = Some(Box::new(run));
        self.snap.send_modify(|s| {
            s.pid = Some(pid);
            s.start_time = start_time;
            s.started_at = Some(SystemTime::now());
            s.error = None;
            s.health_error = None;
            s.launched = Some(launched);
        });
        tracing::info!(name = %self.inst.name, pid, "started");
        Ok(())
    }

    /// `kill_signal` (and SIGCONT, so a stopped group can act on it) to the process group, and
    /// the kill timer.
    fn signal_stop(&mut self) {
        let Some(r) = &self.run else { return };
        let sig = self.inst.def.kill_signal;
        if let Err(e) = signal::signal_group(r.pid, sig) {
            tracing::warn!(name = %self.inst.name, "cannot send {sig}: {e}");
        }
        let _ = signal::signal_group(r.pid, Signal::from_number(libc::SIGCONT).unwrap_or(sig));
        self.kill_at = Some(tokio::time::Instant::now() + self.inst.def.kill_timeout());
    }

    /// The main process exited: copy what it wrote, then tell the lifecycle whether the rest of
    /// its group still runs.
    fn on_exit(&mut self, status: ExitStatus) -> Option<Event> {
        let r = self.run.as_mut()?;
        r.out.drain_up_to(EXIT_BUDGET, None);
        r.err.drain_up_to(EXIT_BUDGET, None);
        r.exited = Some(status);
        Some(Event::Exited { status, ran_for: r.started.elapsed(), group_alive: group_alive(r.pid) })
    }

    /// The whole group is gone: the run's output is copied to the end, its exit recorded.
    fn record_exit(&mut self, cause: ExitCause) {
        self.kill_at = None;
        self.group_poll = false;
        let status = match self.run.take() {
            Some(mut r) => {
                r.out.drain_up_to(EXIT_BUDGET, None);
                r.err.drain_up_to(EXIT_BUDGET, None);
                let status = r.exited.unwrap_or(ExitStatus::Unknown);
                tracing::info!(name = %self.inst.name, pid = r.pid, ?status, cause = cause.as_str(), "exited");
                linger(r.out, r.err);
                status
            }
            None => ExitStatus::Unknown,
        };
        let stderr = last_stderr(&self.ctx.paths.err_log(&self.inst.name));
        self.snap.send_modify(|s| {
            s.pid = None;
            s.start_time = None;
            s.health_error = None;
            s.last_exit = Some(LastExit { status, cause, at: SystemTime::now(), stderr });
        });
    }

    fn try_spawn(&self, env: Rc<BTreeMap<String, String>>) -> Result<Run, String> {
        let def = &self.inst.def;
        let probe = self.probe(&env)?;
        let argv = spawn::argv(&def.command);
        let (out_log, err_log) = self.open_logs()?;
        let bound = self.ctx.sockets.for_spawn(def)?;
        let sockets = bound.as_ref().map(|b| b.raw_fds()).unwrap_or_default();
        let fd_names = bound.as_ref().map_or("", |b| b.names.as_str());
        let launch = Launch { argv: &argv, cwd: &def.cwd, env: &env, sockets: &sockets, fd_names };
        let spawned = spawn::spawn(&launch).map_err(|e| e.to_string())?;
        let pid = spawned.pid;
        let watch_and_streams = ExitWatch::new(pid).and_then(|exit| {
            let out = self.dress(Stream::new(spawned.out, out_log)?, false);
            let err = self.dress(Stream::new(spawned.err, err_log)?, true);
            Ok((exit, out, err))
        });
        let (exit, out, err) = match watch_and_streams {
            Ok(parts) => parts,
            Err(e) => {
                // Without an exit watch the process cannot be supervised: do not leave it behind.
                let _ = signal::signal_group(pid, Signal::KILL);
                return Err(format!("cannot watch process {pid}: {e}"));
            }
        };
        let health = probe.map(|probe| HealthRun::new(probe, env.clone(), self.health_timeout()));
        Ok(Run {
            pid,
            start_time: spawned.start_time,
            started: Instant::now(),
            exit,
            out,
            err,
            exited: None,
            wrapped: wrapped(&def.command),
            health,
            memory_at: def.max_memory.map(|_| triggers::next_memory_check()),
            cron_at: self.next_cron(),
            launched: None,
        })
    }

    /// The instance's readiness probe, with its `${VAR}`s taken from `env`.
    fn probe(&self, env: &BTreeMap<String, String>) -> Result<Option<Rc<Probe>>, String> {
        let Some(text) = &self.inst.def.health_check else { return Ok(None) };
        let expanded = instances::expand_in(text, env);
        Probe::parse(&expanded).map(|p| Some(Rc::new(p))).map_err(|e| format!("health_check: {e}"))
    }

    fn health_timeout(&self) -> Duration {
        Duration::from_millis(self.inst.def.health_timeout_ms)
    }

    /// Opens (creating if needed) the instance's stdout and stderr logs.
    fn open_logs(&self) -> Result<(LogFile, LogFile), String> {
        let paths = &self.ctx.paths;
        let open = |p: PathBuf| {
            LogFile::open(&p, self.inst.def.rotation())
                .map_err(|e| format!("cannot open {}: {e}", p.display()))
        };
        Ok((open(paths.out_log(&self.inst.name))?, open(paths.err_log(&self.inst.name))?))
    }

    /// Gives an output stream the instance's timestamp format and, in the foreground, the printer.
    fn dress(&self, stream: Stream, is_err: bool) -> Stream {
        stream
            .with_date_format(self.inst.def.log_date_format.clone())
            .with_tee(self.ctx.tee(&self.inst.name, is_err))
    }

    fn next_cron(&self) -> Option<tokio::time::Instant> {
        let text = self.inst.def.cron_restart.as_ref()?;
        let cron = triggers::parse_cron(text).ok()?;
        triggers::until_next(&cron).map(|d| tokio::time::Instant::now() + d)
    }

    fn start_probe(&mut self) {
        let Some(h) = self.run.as_mut().and_then(|r| r.health.as_mut()) else { return };
        let probe = h.probe.clone();
        let env = h.env.clone();
        let cwd = self.inst.def.cwd.clone();
        let timeout = self.inst.def.probe_timeout();
        h.attempt = Some(Box::pin(async move { probe.check(&cwd, &env, timeout).await }));
    }

    fn on_probe_done(&mut self, res: Result<(), String>) -> Event {
        let interval = Duration::from_millis(self.inst.def.health_interval_ms);
        let Some(r) = self.run.as_mut() else { return Event::ProbeFailed };
        match res {
            Ok(()) => {
                r.health = None;
                tracing::info!(name = %self.inst.name, "health check passed");
                self.snap.send_modify(|s| s.health_error = None);
                Event::ProbePassed
            }
            Err(e) => {
                if let Some(h) = &mut r.health {
                    h.attempt = None;
                    h.next = tokio::time::Instant::now() + interval;
                }
                self.publish(|s| s.health_error = Some(e));
                Event::ProbeFailed
            }
        }
    }

    fn on_memory_check(&mut self) -> Option<Event> {
        let limit = self.inst.def.max_memory?;
        let r = self.run.as_mut()?;
        r.memory_at = Some(triggers::next_memory_check());
        let (pid, uptime) = (r.pid, r.started.elapsed());
        let rss = self.ctx.stats.borrow_mut().get(pid, uptime).map(|(_, rss)| rss)?;
        if rss <= limit {
            return None;
        }
        tracing::warn!(name = %self.inst.name, rss, limit, "memory limit exceeded");
        Some(Event::Trigger(ExitCause::Memory))
    }
}

/// What woke the task.
enum Io {
    Cmd(Option<Cmd>),
    Side(SideIo),
    Exited(ExitStatus),
    Output,
    HookDone(Result<(), String>),
    /// The surge's hook ended.
    SideHookDone(Result<(), String>),
    KillTimeout,
    /// Time to check whether the rest of an exited leader's group is gone.
    GroupCheck,
    BackoffOver,
    /// The status bus moved (`false`: it closed).
    DepsChanged(bool),
    ProbeDue,
    ProbeDone(Result<(), String>),
    HealthTimeout,
    MemoryCheck,
    CronDue,
}

/// What happened to the side run of a surge.
enum SideIo {
    Exited(ExitStatus),
    GroupCheck,
    KillTimeout,
    /// A candidate without a health check has been up for `min_uptime`.
    ReadyTimer,
    ProbeDue,
    ProbeDone(Result<(), String>),
    HealthTimeout,
}

/// The side run's timers, copied out of the task for one wait.
#[derive(Clone, Copy)]
struct SideTimers {
    kill_at: Option<tokio::time::Instant>,
    poll: bool,
    ready_at: Option<tokio::time::Instant>,
    /// The side run is a candidate (probed, timed) rather than a run being stopped.
    candidate: bool,
}

/// What of the side run [`side_next`] waits on (its output is copied apart).
struct SideCtl<'a> {
    exit: &'a ExitWatch,
    leader_up: bool,
    health: Option<&'a mut HealthRun>,
}

/// Waits for the next thing that happens to the side run, but output (never resolves without
/// a side run).
async fn side_next(side: Option<SideCtl<'_>>, t: SideTimers) -> SideIo {
    let Some(SideCtl { exit, leader_up, health }) = side else {
        return std::future::pending().await;
    };
    let health = if t.candidate { health } else { None };
    let probe_busy = health.as_ref().is_some_and(|h| h.attempt.is_some());
    let probe_next = health.as_ref().map(|h| h.next);
    let unhealthy_at = health.as_ref().map(|h| h.unhealthy_at);
    tokio::select! {
        biased;
        status = exit.exited(), if leader_up => SideIo::Exited(status),
        _ = sleep_until(t.kill_at.unwrap_or_else(far_future)), if t.kill_at.is_some() => SideIo::KillTimeout,
        _ = tokio::time::sleep(GROUP_POLL), if t.poll => SideIo::GroupCheck,
        _ = sleep_until(t.ready_at.unwrap_or_else(far_future)), if t.ready_at.is_some() && t.candidate => SideIo::ReadyTimer,
        res = poll_attempt(health), if probe_busy => SideIo::ProbeDone(res),
        _ = sleep_until(probe_next.unwrap_or_else(far_future)), if probe_next.is_some() && !probe_busy => SideIo::ProbeDue,
        _ = sleep_until(unhealthy_at.unwrap_or_else(far_future)), if unhealthy_at.is_some() => SideIo::HealthTimeout,
    }
}

/// Copies what is ready on a stream of the current run (never resolves without one).
async fn pump(stream: Option<&mut Stream>) {
    match stream {
        Some(s) => s.pump().await,
        None => std::future::pending().await,
    }
}

/// Drives the probe attempt in progress.
async fn poll_attempt(health: Option<&mut HealthRun>) -> Result<(), String> {
    match health.and_then(|h| h.attempt.as_mut()) {
        Some(fut) => fut.await,
        None => std::future::pending().await,
    }
}

/// The last lines of the stderr log, for `info` after a crash.
fn last_stderr(path: &std::path::Path) -> Vec<String> {
    crate::logs::tail::last_lines(path, 5)
        .map(|lines| lines.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect())
        .unwrap_or_default()
}

/// True when pm3 runs `command` through its own `/bin/sh -c` (it uses shell syntax).
fn wrapped(command: &str) -> bool {
    matches!(spawn::argv(command).as_slice(), [sh, c, cmd] if sh == "/bin/sh" && c == "-c" && cmd == command)
}

/// Sends `signal` to the process group of a run (spec §5), so that a wrapper shell cannot
/// swallow it: the program it started gets it too.
///
/// The one exception is the `/bin/sh -c` pm3 itself put around a command with shell syntax
/// (`cd app && ./server`): while the programs it started run, they get the signal, and the shell
/// only if it has a handler for it (a `trap` in the command). Most signals (`HUP`, `USR1`) end a
/// shell, and its end would end the run (a restart) when the program meant to act on the signal
/// (a reload). A shell alone in its group gets it.
fn deliver(pid: u32, wrapped: bool, signal: Signal) -> std::io::Result<()> {
    use crate::process::stats;
    if wrapped {
        let others: Vec<u32> = stats::live_group_members(pid).into_iter().filter(|&p| p != pid).collect();
        if !others.is_empty() {
            if stats::catches_signal(pid, signal.number()) {
                signal::signal_pid(pid, signal)?;
            }
            for p in others {
                signal::signal_pid(p, signal)?;
            }
            return Ok(());
        }
    }
    signal::signal_group(pid, signal)
}

/// True while any live (not zombie) process of the group `pgid` exists.
fn group_alive(pgid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    if unsafe { libc::killpg(pgid as libc::pid_t, 0) } != 0 {
        return false;
    }
    // Something answers, but it may only be zombies waiting for a parent that does not reap
    // (an init that never calls wait): look for a member that still runs.
    crate::process::stats::group_has_live_member(pgid)
}

/// True when every dependency instance is online; one that was removed meanwhile no longer
/// counts.
fn deps_ready(deps: &[watch::Receiver<Snapshot>]) -> bool {
    deps.iter().all(|d| d.has_changed().is_err() || d.borrow().status == Status::Online)
}

/// Keeps copying output that descendants still write after the main process exited, until the
/// pipes close (the group was just sent SIGKILL, so that is soon).
/// The wall-clock time a run was spawned: a surge replacement that takes over has been running
/// since then, and its uptime (and the CPU % averaged over it) counts from there.
fn spawned_at(started: Instant) -> SystemTime {
    SystemTime::now().checked_sub(started.elapsed()).unwrap_or_else(SystemTime::now)
}

fn linger(mut out: Stream, mut err: Stream) {
    if out.at_eof() && err.at_eof() {
        return;
    }
    tokio::task::spawn_local(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !(out.at_eof() && err.at_eof()) {
            tokio::select! {
                _ = out.pump() => {}
                _ = err.pump() => {}
                _ = sleep_until(deadline) => break,
            }
        }
    });
}

/// What a timer means when it fires, and when it fires (`None`: not set).
type Timer = (fn() -> Io, Option<tokio::time::Instant>);

/// Timers waited on by one sleep: the earliest of those that are set, and which is due when it
/// fires (the first due one in their order).
struct Timers<const N: usize> {
    timers: [Timer; N],
    next: Option<tokio::time::Instant>,
}

impl<const N: usize> Timers<N> {
    fn new(timers: [Timer; N]) -> Timers<N> {
        let next = timers.iter().filter_map(|(_, at)| *at).min();
        Timers { timers, next }
    }

    /// What the sleep until [`Timers::next`] means, once it has fired.
    fn due(&self) -> Io {
        let now = tokio::time::Instant::now();
        let first = self.timers.iter().find(|(_, at)| at.is_some_and(|at| at <= now));
        let (event, _) =
            first.or_else(|| self.timers.iter().find(|(_, at)| *at == self.next)).unwrap_or(&self.timers[0]);
        event()
    }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86400 * 365)
}
