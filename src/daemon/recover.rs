//! After an unclean end: the processes the previous daemon started but never recorded.
//!
//! Every answer to a request that changes what runs waits until `state.json` says so
//! ([`super::state::flush`]), but a daemon can still die between starting a process and
//! recording it: before answering a `start`, or while it respawns a crashed process on its own.
//! Each process it starts carries `PM3_HOME` and `PM3_NAME` (`process::marker`), so a daemon
//! that finds `state.json` or `pm3.pid` left behind scans `/proc` once, before it restores the
//! table, and settles every marked process no state file mentions:
//!
//! - its instance is in the table and the run recorded for it is gone (or it was `waiting`,
//!   for a dependency or a restart delay): that process *is* the instance's run, and is
//!   adopted instead of starting a second copy;
//! - otherwise (an unknown name, an instance that is stopped, or one whose recorded process
//!   still runs): it is stopped like any process pm3 stops, `kill_signal` to its group, then
//!   SIGKILL after `kill_timeout` (SIGTERM and 5 s for an unknown name), in the background, and
//!   logged in `daemon.log`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::process::exit::ExitWatch;
use crate::process::marker::{self, Marked};
use crate::process::signal::{self, Signal};

/// How long a scan waits for the previous daemon's starts caught between fork and exec.
const IN_FLIGHT_WAIT: Duration = Duration::from_millis(500);

/// Grace period of a marked process whose instance no state file knows.
const UNKNOWN_GRACE: Duration = Duration::from_secs(5);

/// The marked processes found at start-up, by instance name, newest first.
#[derive(Debug, Default)]
pub struct Strays {
    by_name: BTreeMap<String, Vec<Marked>>,
}

impl Strays {
    /// Nothing to settle (a daemon that follows a clean end does not look).
    pub fn none() -> Strays {
        Strays::default()
    }

    /// Scans `/proc` for processes marked with `home`. A start the previous daemon had not
    /// seen through to its exec is waited for (briefly), so that it is found with its markers
    /// instead of being missed and started a second time.
    pub fn find(home: &Path) -> Strays {
        let t = Instant::now();
        let mut scan = marker::scan(home);
        while scan.in_flight > 0 && t.elapsed() < IN_FLIGHT_WAIT {
            std::thread::sleep(Duration::from_millis(2));
            scan = marker::scan(home);
        }
        if scan.in_flight > 0 {
            tracing::warn!(count = scan.in_flight, "starts of the previous daemon still have not exec'd");
        }
        let found = scan.marked;
        tracing::info!(
            found = found.len(),
            took_us = t.elapsed().as_micros() as u64,
            "looked for unrecorded processes"
        );
        let mut by_name: BTreeMap<String, Vec<Marked>> = BTreeMap::new();
        for m in found {
            by_name.entry(m.name.clone()).or_default().push(m);
        }
        for list in by_name.values_mut() {
            list.sort_by_key(|m| std::cmp::Reverse(m.start_time));
        }
        Strays { by_name }
    }

    /// The marked processes of instance `name`, newest first.
    pub fn take(&mut self, name: &str) -> Vec<Marked> {
        self.by_name.remove(name).unwrap_or_default()
    }

    /// Stops every process no instance has taken.
    pub fn stop_the_rest(self) {
        for m in self.by_name.into_values().flatten() {
            stop(m, Signal::TERM, UNKNOWN_GRACE, "its instance is not managed");
        }
    }
}

/// When a process started, from its kernel start time (clock ticks since boot).
pub fn started_at(start_time: u64) -> SystemTime {
    let now = SystemTime::now();
    let uptime = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_ascii_whitespace().next()?.parse::<f64>().ok())
        .filter(|u| u.is_finite() && *u >= 0.0);
    let Some(uptime) = uptime else { return now };
    let since_boot = start_time as f64 / crate::process::stats::ticks_per_second() as f64;
    let ago = Duration::try_from_secs_f64((uptime - since_boot).max(0.0)).unwrap_or_default();
    now.checked_sub(ago).unwrap_or(now)
}

thread_local! {
    /// Marked processes being stopped (between their `kill_signal` and the end of their grace).
    static STOPPING: std::cell::RefCell<Vec<Marked>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Stops a marked process that no instance takes: `sig` to its group (and SIGCONT, for a
/// stopped one), SIGKILL to the group after `grace` or once its leader is gone. Runs in a task
/// of its own, so the daemon starts serving meanwhile.
pub fn stop(m: Marked, sig: Signal, grace: Duration, why: &'static str) {
    // The pidfd, opened before the start time is checked, is this very process: its exit is
    // the one awaited. Until it exits its pid, which is its group's id, cannot be recycled.
    let watch = match ExitWatch::new(m.pid) {
        Ok(w) if marker::live_start_time(m.pid) == Some(m.start_time) => w,
        _ => return,
    };
    tracing::warn!(name = %m.name, pid = m.pid, "stopping a process no state file recorded ({why}): {sig}");
    if let Err(e) = signal::signal_group(m.pid, sig) {
        tracing::warn!(name = %m.name, pid = m.pid, "cannot send {sig}: {e}");
    }
    let _ = signal::signal_group(m.pid, Signal::from_number(libc::SIGCONT).unwrap_or(sig));
    STOPPING.with(|s| s.borrow_mut().push(m.clone()));
    tokio::task::spawn_local(async move {
        let exited = tokio::time::timeout(grace, watch.exited()).await.is_ok();
        if !exited {
            tracing::warn!(name = %m.name, pid = m.pid, "still running after {grace:?}: SIGKILL");
            let _ = signal::signal_group(m.pid, Signal::KILL);
        } else if crate::process::stats::group_has_live_member(m.pid) {
            // Whatever is left of its group goes too, as after any stop.
            let _ = signal::signal_group(m.pid, Signal::KILL);
        }
        STOPPING.with(|s| s.borrow_mut().retain(|x| x != &m));
    });
}

/// SIGKILL to the groups of marked processes still in their grace period: the daemon is
/// shutting down, and nothing may outlive it.
pub fn kill_stopping() {
    for m in STOPPING.with(|s| std::mem::take(&mut *s.borrow_mut())) {
        if marker::live_start_time(m.pid) == Some(m.start_time) {
            let _ = signal::signal_group(m.pid, Signal::KILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    /// A start of a dead daemon caught before its exec: a group leader whose arguments are
    /// `… daemon` and whose environment has the home but no name yet; 0.2 s later it execs into
    /// the marked process. The scan must wait for it instead of missing it.
    #[test]
    fn a_start_caught_before_its_exec_is_waited_for_and_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("home");
        std::fs::create_dir(&home).expect("home");
        // `sh daemon` runs the script named `daemon`: its arguments read as a daemon's.
        std::fs::write(dir.path().join("daemon"), "sleep 0.2\nexec env PM3_NAME=api sleep 30\n")
            .expect("script");
        let mut child = std::process::Command::new("sh")
            .arg("daemon")
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PM3_HOME", &home)
            .process_group(0)
            .spawn()
            .expect("spawn");
        // Until the shell has started for sure, its environ may still be the test's.
        let deadline = Instant::now() + Duration::from_secs(5);
        while marker::scan(&home).in_flight == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut strays = Strays::find(&home);
        let found = strays.take("api");
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found.len(), 1, "the start is found once it has exec'd");
        assert_eq!(found[0].pid, child.id());
    }
}
