//! `pm3 run`: the same engine as the daemon, in the foreground and without a socket, for
//! containers and development. Output of every process is printed with an aligned, colored name
//! prefix (and still written to the log files); status changes are reported on stderr;
//! SIGINT, SIGTERM and SIGHUP (a closed terminal) stop everything gracefully in reverse
//! dependency order, a second one kills. A closed output pipe only stops the printing: the logs
//! get everything and supervision goes on until a signal or the processes end. As PID 1 (or
//! anywhere, as a subreaper) it also reaps orphaned zombies.
//!
//! It ends by itself, stopping whatever still runs, once a process ended `errored` (exit 1) or
//! every process has ended for good (exit 0 when each ended with exit code 0 or was stopped,
//! 1 otherwise), so a container whose service gave up exits and its orchestrator can act.

use std::collections::BTreeMap;
use std::io::Write;
use std::rc::Rc;

use owo_colors::{AnsiColors, OwoColorize};
use tokio::signal::unix::{SignalKind, signal};

use crate::daemon::{Daemon, ops};
use crate::logs::capture::LineSink;
use crate::paths::Paths;
use crate::process::reaper;
use crate::process::signal::{self as sig, Signal};
use crate::protocol::{Action, ConfigPayload, Status};

/// Colors given to process names in turn.
const PALETTE: [AnsiColors; 6] = [
    AnsiColors::Cyan,
    AnsiColors::Green,
    AnsiColors::Yellow,
    AnsiColors::Blue,
    AnsiColors::Magenta,
    AnsiColors::Red,
];

/// Prints each output line as `name | line`.
struct Printer {
    width: usize,
    colors: Option<BTreeMap<String, AnsiColors>>,
}

impl Printer {
    fn prefix(&self, name: &str) -> String {
        let padded = format!("{name:<w$}", w = self.width);
        match self.colors.as_ref().and_then(|c| c.get(name)) {
            Some(color) => format!("{} | ", padded.color(*color)),
            None => format!("{padded} | "),
        }
    }
}

impl LineSink for Printer {
    fn line(&self, name: &str, is_err: bool, line: &[u8]) {
        let mut buf = self.prefix(name).into_bytes();
        buf.extend_from_slice(line);
        buf.push(b'\n');
        // A closed stdout (piped into `head`) must not kill the supervisor.
        let _ = if is_err { std::io::stderr().write_all(&buf) } else { std::io::stdout().write_all(&buf) };
    }
}

/// Whether to color output: a terminal, and `NO_COLOR` unset.
pub fn use_color() -> bool {
    super::output::color_on(&std::io::stdout())
}

/// Runs the targets of `config` in the foreground until they all end or a signal stops them.
/// Returns the exit code: 0 after a clean stop, 1 if a process ended `errored`.
pub fn run(paths: Paths, config: ConfigPayload, targets: Vec<String>) -> Result<i32, String> {
    paths.ensure().map_err(|e| e.to_string())?;
    // Log files private to the user, as under the daemon; children keep the caller's umask.
    crate::process::limits::enter(false);
    crate::process::cloexec_inherited_fds();
    reaper::become_subreaper();
    let names: Vec<String> = config
        .file
        .processes
        .iter()
        .flat_map(|d| (0..d.instances).map(|i| crate::instances::instance_name(&d.name, i, d.instances)))
        .collect();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0).max(3);
    let colors = use_color()
        .then(|| names.iter().enumerate().map(|(i, n)| (n.clone(), PALETTE[i % PALETTE.len()])).collect());
    let printer = Rc::new(Printer { width, colors });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let d = Daemon::new(paths, Some(printer.clone()), None);
        tokio::task::spawn_local(reaper::reap_orphans());
        tokio::task::spawn_local(crate::logs::compress::finisher());
        let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
        let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
        // The terminal going away must not leave the processes behind (they run in their own
        // process groups, so its hangup never reaches them).
        let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
        let file = config.file.path.clone();
        let report = match ops::start(&d, Some(config), &targets, None).await {
            Ok(report) => report,
            // A socket that cannot be bound: shown at its `listen` entry, like a config error.
            Err(e) => match (&e.kind, &e.listen) {
                (crate::protocol::ErrorKind::Bind, Some((process, index))) => {
                    let located = crate::config::locate(&file, process, "listen", *index, &e.message);
                    super::to_stderr(&format!(
                        "{}\n",
                        located.render(super::output::color_on(&std::io::stderr()))
                    ));
                    return Ok(1);
                }
                _ => return Err(e.message),
            },
        };
        for o in report.processes.iter().filter(|o| o.action == Action::Failed) {
            announce(&printer, &o.name, &format!("failed: {}", o.detail.as_deref().unwrap_or("?")));
        }
        let mut bus = d.ctx.bus.subscribe();
        let mut seen: BTreeMap<String, (Status, Option<u32>)> = BTreeMap::new();
        report_changes(&d, &printer, &mut seen);
        let mut why = "stopping (press Ctrl-C again to kill)";
        if !any_errored(&d) && !all_ended(&d) {
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                    _ = hup.recv() => break,
                    changed = bus.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        report_changes(&d, &printer, &mut seen);
                        if any_errored(&d) {
                            why = "a process is errored: stopping the rest";
                            break;
                        }
                        if all_ended(&d) {
                            return Ok(exit_code(&d));
                        }
                    }
                }
            }
        }
        super::to_stderr(&format!("pm3: {why}\n"));
        let stopping = tokio::task::spawn_local({
            let d = d.clone();
            async move { ops::stop_all(&d).await }
        });
        tokio::pin!(stopping);
        loop {
            tokio::select! {
                _ = &mut stopping => break,
                _ = int.recv() => kill_all(&d),
                _ = term.recv() => kill_all(&d),
                _ = hup.recv() => kill_all(&d),
                changed = bus.changed() => {
                    if changed.is_ok() {
                        report_changes(&d, &printer, &mut seen);
                    }
                }
            }
        }
        report_changes(&d, &printer, &mut seen);
        Ok(exit_code(&d))
    })
}

/// Prints `name | [pm3] message` on stderr.
fn announce(p: &Printer, name: &str, message: &str) {
    super::to_stderr(&format!("{}[pm3] {message}\n", p.prefix(name)));
}

/// Reports each instance whose status or pid changed since last time.
fn report_changes(d: &Daemon, p: &Printer, seen: &mut BTreeMap<String, (Status, Option<u32>)>) {
    let table = d.table.borrow();
    for e in table.ordered() {
        let s = e.handle.snapshot.borrow();
        let now = (s.status, s.pid);
        if seen.get(&e.inst.name) == Some(&now) {
            continue;
        }
        seen.insert(e.inst.name.clone(), now);
        let mut msg = s.status.as_str().to_string();
        if let Some(pid) = s.pid {
            msg.push_str(&format!(" (pid {pid})"));
        }
        if matches!(s.status, Status::Stopped | Status::Errored | Status::Waiting)
            && let Some(last) = &s.last_exit
        {
            match (last.status.code(), last.status.signal()) {
                (Some(c), _) => msg.push_str(&format!(", exit code {c}")),
                (None, Some(sg)) => msg.push_str(&format!(", killed by {sg}")),
                _ => {}
            }
        }
        if let Some(e) = &s.error {
            msg.push_str(&format!(": {e}"));
        }
        announce(p, &e.inst.name, &msg);
    }
}

/// Nothing runs or waits any more.
fn all_ended(d: &Daemon) -> bool {
    d.table.borrow().entries.values().all(|e| {
        let s = e.handle.snapshot.borrow().status;
        matches!(s, Status::Stopped | Status::Errored)
    })
}

fn any_errored(d: &Daemon) -> bool {
    d.table.borrow().entries.values().any(|e| e.handle.snapshot.borrow().status == Status::Errored)
}

/// 0 when every process was stopped by a command or ended with exit code 0; 1 otherwise.
fn exit_code(d: &Daemon) -> i32 {
    let clean = d.table.borrow().entries.values().all(|e| {
        let s = e.handle.snapshot.borrow();
        s.status != Status::Errored
            && s.last_exit
                .as_ref()
                .is_none_or(|l| l.cause != crate::supervisor::ExitCause::Exited || l.status.success())
    });
    i32::from(!clean)
}

/// Second Ctrl-C: SIGKILL every process group still running.
fn kill_all(d: &Daemon) {
    super::to_stderr("pm3: killing\n");
    for e in d.table.borrow().entries.values() {
        if let Some(pid) = e.handle.snapshot.borrow().pid {
            let _ = sig::signal_group(pid, Signal::KILL);
        }
    }
}
