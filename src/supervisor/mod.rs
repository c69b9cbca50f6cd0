//! One task per instance owns everything about it: the child, its output pipes, its restarts and
//! its stop. The daemon talks to it only by message ([`Cmd`]) and reads its state from a watch
//! channel ([`Snapshot`]), so no lock is shared and a slow stop never blocks a `list`.
//!
//! # Theory of operation
//! The task sits in one [`Phase`] at a time and waits for whichever comes first: a command, the
//! child's exit (pidfd), output on its pipes, the kill timeout, a dependency coming online, or
//! the end of a restart delay. Every transition publishes a new snapshot and bumps the shared
//! status bus, which is how dependents waiting on this instance notice.

mod adopt;
pub mod health;
pub mod hooks;
pub mod policy;
pub mod triggers;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::sleep_until;

use crate::instances;
use crate::logs::capture::{LineSink, Stream, Tee};
use crate::logs::file::LogFile;
use crate::paths::Paths;
use crate::process::exit::{ExitStatus, ExitWatch};
use crate::process::signal::{self, Signal};
use crate::process::spawn::{self, Launch};
use crate::protocol::{Action, Outcome, Status};
use crate::spec::ProcessDef;
use crate::stats::StatsCache;
use health::Probe;
use policy::AfterExit;

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
    /// Send a signal to the main process.
    Signal { signal: Signal, reply: Reply },
    /// Use this definition from the next start on.
    Update { instance: Rc<Instance> },
    /// Restart because of a trigger (watch); ignored unless running.
    Trigger { cause: ExitCause },
    /// Stop, then end the task.
    Remove { reply: Reply },
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
}

impl Ctx {
    fn tee(&self, name: &str, is_err: bool) -> Option<Tee> {
        self.tee.as_ref().map(|sink| Tee::new(sink.clone(), Rc::from(name), is_err))
    }
}

/// The daemon's side of a supervisor task.
pub struct Handle {
    tx: mpsc::UnboundedSender<Cmd>,
    pub snapshot: watch::Receiver<Snapshot>,
}

impl Handle {
    /// Sends `cmd`; a task that has ended simply drops it (its reply channel closes).
    pub fn send(&self, cmd: Cmd) {
        let _ = self.tx.send(cmd);
    }
}

/// Starts the supervisor task of `instance` (idle, `stopped`) on the current local task set.
pub fn spawn(instance: Rc<Instance>, ctx: Ctx) -> Handle {
    let (tx, rx) = mpsc::unbounded_channel();
    let (snap_tx, snap_rx) = watch::channel(Snapshot::new());
    let sup = Supervisor {
        inst: instance,
        ctx,
        rx,
        snap: snap_tx,
        phase: Phase::Idle,
        short_runs: 0,
        stop_waiters: Vec::new(),
        after_stop: None,
    };
    tokio::task::spawn_local(sup.run());
    Handle { tx, snapshot: snap_rx }
}

/// Where the task is in the life of its instance.
enum Phase {
    /// Not running: `stopped` or `errored` (the snapshot says which).
    Idle,
    /// Waiting for dependencies to come online.
    Waiting {
        deps: Vec<watch::Receiver<Snapshot>>,
        bus: watch::Receiver<u64>,
    },
    Running(Box<Running>),
    /// Waiting out a restart delay.
    Backoff {
        until: tokio::time::Instant,
    },
}

/// A live run of the instance.
struct Running {
    pid: u32,
    /// Kernel start time of `pid`, read once at spawn.
    start_time: Option<u64>,
    started: Instant,
    exit: ExitWatch,
    out: Stream,
    err: Stream,
    stopping: Option<Stopping>,
    /// Set once the main process has exited while other members of its group still run: the
    /// run ends when the whole group is gone.
    exited: Option<ExitStatus>,
    /// The readiness probe, until it first passes.
    health: Option<HealthRun>,
    /// Next `max_memory` sample.
    memory_at: Option<tokio::time::Instant>,
    /// Next `cron_restart` time.
    cron_at: Option<tokio::time::Instant>,
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

struct Stopping {
    deadline: tokio::time::Instant,
    killed: bool,
    cause: ExitCause,
}

/// How often a group whose leader has exited is checked for remaining members. Only used in
/// that rare case; a normal exit is an event (pidfd), not a poll.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// What to do once the current run has ended because it was stopped.
enum AfterStop {
    /// Start again; `reply` is answered once started (a trigger has no one to answer).
    Start {
        deps: Vec<watch::Receiver<Snapshot>>,
        reply: Option<Reply>,
        action: Action,
    },
    Remove {
        reply: Reply,
    },
}

enum Event {
    Cmd(Option<Cmd>),
    Exited(ExitStatus),
    Output,
    KillTimeout,
    /// Time to check whether the rest of an exited leader's group is gone.
    GroupCheck,
    ProbeDue,
    ProbeDone(Result<(), String>),
    HealthTimeout,
    MemoryCheck,
    CronDue,
    DepsChanged,
    BackoffOver,
}

struct Supervisor {
    inst: Rc<Instance>,
    ctx: Ctx,
    rx: mpsc::UnboundedReceiver<Cmd>,
    snap: watch::Sender<Snapshot>,
    phase: Phase,
    /// Consecutive runs shorter than `min_uptime` (the `max_restarts` budget).
    short_runs: u32,
    stop_waiters: Vec<Reply>,
    after_stop: Option<AfterStop>,
}

impl Supervisor {
    async fn run(mut self) {
        loop {
            let event = match &mut self.phase {
                Phase::Idle => Event::Cmd(self.rx.recv().await),
                Phase::Waiting { bus, .. } => tokio::select! {
                    cmd = self.rx.recv() => Event::Cmd(cmd),
                    _ = bus.changed() => Event::DepsChanged,
                },
                Phase::Backoff { until } => tokio::select! {
                    cmd = self.rx.recv() => Event::Cmd(cmd),
                    _ = sleep_until(*until) => Event::BackoffOver,
                },
                Phase::Running(r) => {
                    let kill_at = r.stopping.as_ref().filter(|s| !s.killed).map(|s| s.deadline);
                    let leader_gone = r.exited.is_some();
                    let calm = r.stopping.is_none();
                    let probe_idle = r.health.as_ref().is_some_and(|h| h.attempt.is_none());
                    let probe_busy = r.health.as_ref().is_some_and(|h| h.attempt.is_some());
                    let probe_next = r.health.as_ref().map(|h| h.next);
                    let unhealthy_at = r.health.as_ref().map(|h| h.unhealthy_at);
                    let starting = self.snap.borrow().status == Status::Starting;
                    tokio::select! {
                        biased;
                        status = r.exit.exited(), if !leader_gone => Event::Exited(status),
                        _ = r.out.pump() => Event::Output,
                        _ = r.err.pump() => Event::Output,
                        cmd = self.rx.recv() => Event::Cmd(cmd),
                        _ = sleep_until(kill_at.unwrap_or_else(far_future)), if kill_at.is_some() => Event::KillTimeout,
                        _ = tokio::time::sleep(GROUP_POLL), if leader_gone => Event::GroupCheck,
                        res = poll_attempt(&mut r.health), if probe_busy && calm => Event::ProbeDone(res),
                        _ = sleep_until(probe_next.unwrap_or_else(far_future)), if probe_idle && calm => Event::ProbeDue,
                        _ = sleep_until(unhealthy_at.unwrap_or_else(far_future)), if starting && calm => Event::HealthTimeout,
                        _ = sleep_until(r.memory_at.unwrap_or_else(far_future)), if r.memory_at.is_some() && calm => Event::MemoryCheck,
                        _ = sleep_until(r.cron_at.unwrap_or_else(far_future)), if r.cron_at.is_some() && calm => Event::CronDue,
                    }
                }
            };
            match event {
                Event::Cmd(Some(cmd)) => self.on_cmd(cmd).await,
                // The daemon dropped its handle: the task ends, the process is left running.
                Event::Cmd(None) => break,
                Event::Exited(status) => self.on_exit(status).await,
                Event::Output => {}
                Event::KillTimeout => self.on_kill_timeout(),
                Event::GroupCheck => self.on_group_check().await,
                Event::ProbeDue => self.on_probe_due(),
                Event::ProbeDone(res) => self.on_probe_done(res),
                Event::HealthTimeout => self.publish(|s| s.status = Status::Unhealthy),
                Event::MemoryCheck => self.on_memory_check(),
                Event::CronDue => self.on_cron(),
                Event::DepsChanged => self.on_deps_changed().await,
                Event::BackoffOver => {
                    self.phase = Phase::Idle;
                    self.spawn_now().await;
                }
            }
            if self.is_done() {
                break;
            }
        }
    }

    /// True once a `Remove` has completed.
    fn is_done(&self) -> bool {
        self.rx.is_closed() && matches!(self.phase, Phase::Idle)
    }

    fn outcome(&self, action: Action, detail: Option<String>) -> Outcome {
        let snap = self.snap.borrow();
        Outcome { name: self.inst.name.clone(), action, status: snap.status, pid: snap.pid, detail }
    }

    fn publish(&self, f: impl FnOnce(&mut Snapshot)) {
        self.snap.send_modify(f);
        self.ctx.bus.send_modify(|n| *n = n.wrapping_add(1));
    }

    async fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Start { deps, reply } => match &self.phase {
                Phase::Idle | Phase::Backoff { .. } => {
                    self.short_runs = 0;
                    self.begin_start(deps, Some(reply), Action::Started).await;
                }
                Phase::Waiting { .. } => {
                    // New dependency list: they may all be online already.
                    self.phase = Phase::Idle;
                    self.begin_start(deps, Some(reply), Action::Started).await;
                }
                Phase::Running(r) if r.stopping.is_some() => {
                    self.after_stop =
                        Some(AfterStop::Start { deps, reply: Some(reply), action: Action::Started });
                }
                Phase::Running(_) => {
                    let _ = reply.send(self.outcome(Action::AlreadyRunning, None));
                }
            },
            Cmd::Restart { deps, reply } => {
                self.short_runs = 0;
                match &self.phase {
                    Phase::Running(_) => {
                        self.after_stop =
                            Some(AfterStop::Start { deps, reply: Some(reply), action: Action::Restarted });
                        self.begin_stop(ExitCause::Stopped);
                    }
                    Phase::Idle | Phase::Waiting { .. } | Phase::Backoff { .. } => {
                        self.phase = Phase::Idle;
                        self.publish(|s| s.restarts += 1);
                        self.begin_start(deps, Some(reply), Action::Restarted).await;
                    }
                }
            }
            Cmd::Trigger { cause } => self.restart_for(cause),
            Cmd::Stop { reply } => match &self.phase {
                Phase::Idle => {
                    let _ = reply.send(self.outcome(Action::AlreadyStopped, None));
                }
                Phase::Waiting { .. } | Phase::Backoff { .. } => {
                    self.phase = Phase::Idle;
                    self.publish(|s| {
                        s.status = Status::Stopped;
                        s.restart_at = None;
                    });
                    let _ = reply.send(self.outcome(Action::Stopped, None));
                }
                Phase::Running(_) => {
                    // A pending start after this stop is cancelled by the stop.
                    if let Some(AfterStop::Start { reply: Some(r), .. }) = self.after_stop.take() {
                        let _ = r.send(self.outcome(Action::Stopped, None));
                    }
                    self.stop_waiters.push(reply);
                    self.begin_stop(ExitCause::Stopped);
                    // A stop overrides a trigger's cause: the user asked for it.
                    if let Phase::Running(r) = &mut self.phase
                        && let Some(s) = &mut r.stopping
                    {
                        s.cause = ExitCause::Stopped;
                    }
                }
            },
            Cmd::Signal { signal, reply } => {
                let outcome = match &self.phase {
                    Phase::Running(r) => match signal::signal_pid(r.pid, signal) {
                        Ok(()) => self.outcome(Action::Signalled, Some(signal.to_string())),
                        Err(e) => self.outcome(Action::Failed, Some(format!("cannot send {signal}: {e}"))),
                    },
                    _ => self.outcome(Action::Failed, Some("not running".into())),
                };
                let _ = reply.send(outcome);
            }
            Cmd::Update { instance } => self.inst = instance,
            Cmd::Remove { reply } => {
                self.rx.close();
                match &self.phase {
                    Phase::Running(_) => {
                        self.after_stop = Some(AfterStop::Remove { reply });
                        self.begin_stop(ExitCause::Stopped);
                    }
                    _ => {
                        self.phase = Phase::Idle;
                        self.publish(|s| s.status = Status::Stopped);
                        let _ = reply.send(self.outcome(Action::Removed, None));
                    }
                }
            }
        }
    }

    /// Restarts a running instance because of a trigger (memory, cron, watch).
    fn restart_for(&mut self, cause: ExitCause) {
        let Phase::Running(r) = &self.phase else { return };
        if r.stopping.is_some() {
            return;
        }
        tracing::info!(name = %self.inst.name, reason = cause.as_str(), "restarting");
        self.after_stop = Some(AfterStop::Start { deps: Vec::new(), reply: None, action: Action::Restarted });
        self.begin_stop(cause);
    }

    /// Starts now if every dependency is online, else waits for them.
    async fn begin_start(
        &mut self,
        deps: Vec<watch::Receiver<Snapshot>>,
        reply: Option<Reply>,
        action: Action,
    ) {
        if deps_online(&deps) {
            self.spawn_now().await;
            let failed = self.snap.borrow().status == Status::Errored;
            let detail = self.snap.borrow().error.clone();
            if let Some(reply) = reply {
                let _ = reply.send(self.outcome(if failed { Action::Failed } else { action }, detail));
            }
        } else {
            self.phase = Phase::Waiting { deps, bus: self.ctx.bus.subscribe() };
            self.publish(|s| {
                s.status = Status::Waiting;
                s.pid = None;
                s.restart_at = None;
            });
            if let Some(reply) = reply {
                let _ = reply.send(self.outcome(Action::Waiting, None));
            }
        }
    }

    async fn on_deps_changed(&mut self) {
        if let Phase::Waiting { deps, .. } = &self.phase
            && deps_online(deps)
        {
            self.phase = Phase::Idle;
            self.spawn_now().await;
        }
    }

    /// Runs `pre_start`, then spawns a new run; on failure the instance is `errored` with the
    /// reason.
    async fn spawn_now(&mut self) {
        let env = Rc::new(self.inst.env());
        let result = match self.pre_start(&env).await {
            Ok(()) => self.try_spawn(env),
            Err(e) => Err(format!("pre_start failed: {e}")),
        };
        match result {
            Ok(running) => {
                let pid = running.pid;
                let start_time = running.start_time;
                let status = if running.health.is_some() { Status::Starting } else { Status::Online };
                self.phase = Phase::Running(Box::new(running));
                self.publish(|s| {
                    s.status = status;
                    s.pid = Some(pid);
                    s.start_time = start_time;
                    s.started_at = Some(SystemTime::now());
                    s.error = None;
                    s.restart_at = None;
                    s.health_error = None;
                });
                tracing::info!(name = %self.inst.name, pid, "started");
            }
            Err(e) => {
                tracing::warn!(name = %self.inst.name, "cannot start: {e}");
                self.phase = Phase::Idle;
                self.publish(|s| {
                    s.status = Status::Errored;
                    s.pid = None;
                    s.error = Some(e);
                    s.restart_at = None;
                });
            }
        }
    }

    async fn pre_start(&self, env: &BTreeMap<String, String>) -> Result<(), String> {
        let Some(cmd) = &self.inst.def.pre_start else { return Ok(()) };
        let paths = &self.ctx.paths;
        hooks::run(
            cmd,
            &self.inst.def.cwd,
            env,
            &paths.out_log(&self.inst.name),
            &paths.err_log(&self.inst.name),
        )
        .await
    }

    async fn post_stop(&self) {
        let Some(cmd) = &self.inst.def.post_stop else { return };
        let paths = &self.ctx.paths;
        let env = self.inst.env();
        let (out, err) = (paths.out_log(&self.inst.name), paths.err_log(&self.inst.name));
        if let Err(e) = hooks::run(cmd, &self.inst.def.cwd, &env, &out, &err).await {
            tracing::warn!(name = %self.inst.name, "post_stop failed: {e}");
        }
    }

    fn try_spawn(&self, env: Rc<BTreeMap<String, String>>) -> Result<Running, String> {
        let def = &self.inst.def;
        let probe = self.probe(&env)?;
        let argv = spawn::argv(&def.command);
        let (out_log, err_log) = self.open_logs()?;
        let launch = Launch { argv: &argv, cwd: &def.cwd, env: &env };
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
        Ok(Running {
            pid,
            start_time: spawned.start_time,
            started: Instant::now(),
            exit,
            out,
            err,
            stopping: None,
            exited: None,
            health,
            memory_at: def.max_memory.map(|_| triggers::next_memory_check()),
            cron_at: self.next_cron(),
        })
    }

    /// The instance's readiness probe, with its `${VAR}`s taken from `env`.
    fn probe(&self, env: &BTreeMap<String, String>) -> Result<Option<Rc<Probe>>, String> {
        let Some(text) = &self.inst.def.health_check else { return Ok(None) };
        let expanded = instances::expand(text, &mut |k| env.get(k).cloned().unwrap_or_default());
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

    fn on_probe_due(&mut self) {
        let Phase::Running(r) = &mut self.phase else { return };
        let Some(h) = &mut r.health else { return };
        let probe = h.probe.clone();
        let env = h.env.clone();
        let cwd = self.inst.def.cwd.clone();
        let interval = Duration::from_millis(self.inst.def.health_interval_ms);
        let timeout =
            interval.max(Duration::from_secs(1)).min(Duration::from_millis(self.inst.def.health_timeout_ms));
        h.attempt = Some(Box::pin(async move { probe.check(&cwd, &env, timeout).await }));
    }

    fn on_probe_done(&mut self, res: Result<(), String>) {
        let Phase::Running(r) = &mut self.phase else { return };
        match res {
            Ok(()) => {
                r.health = None;
                tracing::info!(name = %self.inst.name, "health check passed");
                self.publish(|s| {
                    s.status = Status::Online;
                    s.health_error = None;
                });
            }
            Err(e) => {
                if let Some(h) = &mut r.health {
                    h.attempt = None;
                    h.next =
                        tokio::time::Instant::now() + Duration::from_millis(self.inst.def.health_interval_ms);
                }
                self.publish(|s| s.health_error = Some(e));
            }
        }
    }

    fn on_memory_check(&mut self) {
        let Phase::Running(r) = &mut self.phase else { return };
        let Some(limit) = self.inst.def.max_memory else { return };
        r.memory_at = Some(triggers::next_memory_check());
        let pid = r.pid;
        let uptime = r.started.elapsed();
        let rss = self.ctx.stats.borrow_mut().get(pid, uptime).map(|(_, rss)| rss);
        if let Some(rss) = rss
            && rss > limit
        {
            tracing::warn!(name = %self.inst.name, rss, limit, "memory limit exceeded");
            self.restart_for(ExitCause::Memory);
        }
    }

    fn on_cron(&mut self) {
        let next = self.next_cron();
        if let Phase::Running(r) = &mut self.phase {
            r.cron_at = next;
        }
        self.restart_for(ExitCause::Cron);
    }

    /// Sends the stop signal to the process group and arms the kill timeout.
    fn begin_stop(&mut self, cause: ExitCause) {
        let Phase::Running(r) = &mut self.phase else { return };
        if r.stopping.is_some() {
            return;
        }
        let sig = self.inst.def.kill_signal;
        if let Err(e) = signal::signal_group(r.pid, sig) {
            tracing::warn!(name = %self.inst.name, "cannot send {sig}: {e}");
        }
        // SIGCONT too, so a stopped (SIGSTOP) group can act on the signal.
        let _ = signal::signal_group(r.pid, Signal::from_number(libc::SIGCONT).unwrap_or(sig));
        let deadline = tokio::time::Instant::now() + self.inst.def.kill_timeout();
        r.stopping = Some(Stopping { deadline, killed: false, cause });
        self.publish(|s| s.status = Status::Stopping);
    }

    fn on_kill_timeout(&mut self) {
        if let Phase::Running(r) = &mut self.phase
            && let Some(stopping) = &mut r.stopping
        {
            tracing::info!(name = %self.inst.name, pid = r.pid, "kill timeout: SIGKILL");
            let _ = signal::signal_group(r.pid, Signal::KILL);
            stopping.killed = true;
        }
    }

    /// The main process exited. Its output is copied first; if other members of its group
    /// still run they get `kill_signal` (unless a stop already sent it) and the grace period,
    /// and the run ends only when the whole group is gone: no orphans, and `stop` returns when
    /// everything has exited.
    async fn on_exit(&mut self, status: ExitStatus) {
        let Phase::Running(r) = &mut self.phase else { return };
        // Everything the process wrote before it exited is in the pipes now: copy it before the
        // exit is recorded.
        r.out.drain();
        r.err.drain();
        if group_alive(r.pid) {
            r.exited = Some(status);
            if r.stopping.is_none() {
                let _ = signal::signal_group(r.pid, self.inst.def.kill_signal);
                let deadline = tokio::time::Instant::now() + self.inst.def.kill_timeout();
                r.stopping = Some(Stopping { deadline, killed: false, cause: ExitCause::Exited });
            }
            return;
        }
        self.finish_run(status).await;
    }

    async fn on_group_check(&mut self) {
        if let Phase::Running(r) = &self.phase
            && let Some(status) = r.exited
            && !group_alive(r.pid)
        {
            self.finish_run(status).await;
        }
    }

    /// The whole group is gone: record the exit, run `post_stop`, decide what comes next.
    async fn finish_run(&mut self, status: ExitStatus) {
        let Phase::Running(mut r) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return;
        };
        r.out.drain();
        r.err.drain();
        let ran_for = r.started.elapsed();
        let cause = r.stopping.as_ref().map_or(ExitCause::Exited, |s| s.cause);
        linger(r.out, r.err);
        tracing::info!(name = %self.inst.name, pid = r.pid, ?status, cause = cause.as_str(), "exited");
        let stderr = last_stderr(&self.ctx.paths.err_log(&self.inst.name));
        self.publish(|s| {
            s.pid = None;
            s.start_time = None;
            s.health_error = None;
            s.last_exit = Some(LastExit { status, cause, at: SystemTime::now(), stderr });
        });
        self.post_stop().await;

        if cause != ExitCause::Exited {
            self.publish(|s| s.status = Status::Stopped);
            for w in self.stop_waiters.drain(..) {
                let _ = w.send(Outcome {
                    name: self.inst.name.clone(),
                    action: Action::Stopped,
                    status: Status::Stopped,
                    pid: None,
                    detail: None,
                });
            }
            match self.after_stop.take() {
                Some(AfterStop::Start { deps, reply, action }) => {
                    if action == Action::Restarted {
                        self.publish(|s| s.restarts += 1);
                    }
                    self.begin_start(deps, reply, action).await;
                }
                Some(AfterStop::Remove { reply }) => {
                    let _ = reply.send(self.outcome(Action::Removed, None));
                }
                None => {}
            }
            return;
        }

        self.after_policy(status, ran_for).await;
    }

    /// Applies the restart policy to a run that ended by itself.
    async fn after_policy(&mut self, status: ExitStatus, ran_for: Duration) {
        match policy::after_exit(&self.inst.def, status, ran_for, &mut self.short_runs) {
            AfterExit::Stay => self.publish(|s| s.status = Status::Stopped),
            AfterExit::GiveUp => self.publish(|s| {
                s.status = Status::Errored;
                s.error = Some(format!(
                    "gave up: {} runs in a row ended within min_uptime ({}ms)",
                    self.short_runs, self.inst.def.min_uptime_ms
                ));
            }),
            AfterExit::Restart { delay } => {
                self.publish(|s| s.restarts += 1);
                if delay.is_zero() {
                    self.spawn_now().await;
                } else {
                    let until = tokio::time::Instant::now() + delay;
                    self.phase = Phase::Backoff { until };
                    self.publish(|s| {
                        s.status = Status::Waiting;
                        s.restart_at = Some(until.into_std());
                    });
                }
            }
        }
    }
}

/// Drives the probe attempt in progress.
async fn poll_attempt(health: &mut Option<HealthRun>) -> Result<(), String> {
    match health.as_mut().and_then(|h| h.attempt.as_mut()) {
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

/// True when every dependency instance is online.
fn deps_online(deps: &[watch::Receiver<Snapshot>]) -> bool {
    deps.iter().all(|d| d.borrow().status == Status::Online)
}

/// Keeps copying output that descendants still write after the main process exited, until the
/// pipes close (the group was just sent SIGKILL, so that is soon).
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

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86400 * 365)
}
