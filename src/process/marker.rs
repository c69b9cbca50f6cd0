//! Environment markers on the processes a daemon starts, and finding marked processes in `/proc`.
//!
//! Every process the daemon starts (not its hooks or health-check commands) gets
//! `PM3_HOME=<the daemon's data directory, resolved>` and `PM3_NAME=<instance name>`. A daemon
//! that dies between starting a process and writing `state.json` leaves a process no state
//! file mentions; the next daemon, when it starts after such an unclean end, looks through
//! `/proc` once for processes that carry its own `PM3_HOME` and a `PM3_NAME` (and lead their
//! own process group, as everything pm3 starts does), and adopts or stops them
//! (`daemon::recover`).
//!
//! `/proc/<pid>/environ` is the environment the process was started with, so what it does
//! with its variables later does not hide it.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::OnceLock;

/// The data directory of the daemon that started the process.
pub const HOME_VAR: &str = "PM3_HOME";
/// The full instance name (`worker:2`).
pub const NAME_VAR: &str = "PM3_NAME";

static HOME: OnceLock<OsString> = OnceLock::new();

/// From now on, every process [`super::spawn::spawn`] starts is marked as started by the daemon
/// of `home` (called once by the daemon; `pm3 run` marks nothing, no daemon looks for its
/// processes).
pub fn mark_children(home: &Path) {
    let _ = HOME.set(home.as_os_str().to_owned());
}

/// The data directory processes are marked with, when this is a daemon.
pub fn home() -> Option<&'static OsStr> {
    HOME.get().map(OsString::as_os_str)
}

/// The `PM3_NAME` of an environment block (`KEY=value\0…`, as `/proc/<pid>/environ` holds
/// it) whose `PM3_HOME` is exactly `home`; `None` for any other process.
pub fn name_in<'a>(environ: &'a [u8], home: &[u8]) -> Option<&'a [u8]> {
    let mut ours = false;
    let mut name = None;
    for var in environ.split(|&b| b == 0) {
        if let Some(v) = var.strip_prefix(b"PM3_HOME=") {
            ours = v == home;
        } else if let Some(v) = var.strip_prefix(b"PM3_NAME=") {
            name = Some(v);
        }
    }
    name.filter(|n| ours && !n.is_empty())
}

/// Whether a process is a start of the previous daemon of `home` caught between its fork and
/// its exec: it still has that daemon's memory, so its arguments are the daemon's own
/// (`pm3 daemon`) and its environment has `PM3_HOME` but no `PM3_NAME` yet. A daemon SIGKILLed
/// while it waits for a child to exec (a vfork) leaves such a process, which gets its markers only
/// once it has exec'd.
pub fn in_flight(environ: &[u8], cmdline: &[u8], home: &[u8]) -> bool {
    let mut args = cmdline.split(|&b| b == 0).filter(|a| !a.is_empty());
    let daemon_args = args.next().is_some() && args.next() == Some(b"daemon") && args.next().is_none();
    let mut ours = false;
    let mut named = false;
    for var in environ.split(|&b| b == 0) {
        if let Some(v) = var.strip_prefix(b"PM3_HOME=") {
            ours = v == home;
        } else if var.starts_with(b"PM3_NAME=") {
            named = true;
        }
    }
    daemon_args && ours && !named
}

/// A live process that carries the markers of a data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marked {
    pub pid: u32,
    /// Kernel start time (clock ticks since boot): with the pid, its identity.
    pub start_time: u64,
    pub name: String,
}

/// The fields of `/proc/<pid>/stat` the scan needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    state: u8,
    ppid: u32,
    pgrp: u32,
    start_time: u64,
}

/// Parses `/proc/<pid>/stat`; the command name (field 2) may hold spaces and parentheses, so
/// fields are counted from the last `)`.
fn parse_stat(stat: &[u8]) -> Option<Stat> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(stat.get(close + 1..)?).ok()?;
    let mut f = rest.split_ascii_whitespace();
    let state = *f.next()?.as_bytes().first()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    // Fields 6 (session) to 21 come before starttime (field 22).
    let start_time = f.nth(16)?.parse().ok()?;
    Some(Stat { state, ppid, pgrp, start_time })
}

fn stat_of(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read(format!("/proc/{pid}/stat")).ok()?)
}

fn is_dead(state: u8) -> bool {
    matches!(state, b'Z' | b'X' | b'x')
}

/// Start time of `pid` while it runs; `None` once it has exited, also while it is a zombie that
/// nobody reaps (the parent of an orphan may be an init that never calls `wait`).
pub fn live_start_time(pid: u32) -> Option<u64> {
    stat_of(pid).filter(|s| !is_dead(s.state)).map(|s| s.start_time)
}

/// What one pass over `/proc` found.
#[derive(Debug, Default)]
pub struct Scan {
    /// The marked processes.
    pub marked: Vec<Marked>,
    /// Starts of the previous daemon that have not exec'd yet ([`in_flight`]).
    pub in_flight: usize,
}

/// Every live process other than this one, owned by our user, leading its own process group,
/// and marked with `home`, except those whose parent carries the same markers (a descendant
/// that made itself a group leader belongs to the tree of the process that started it).
/// One pass over `/proc`; only group leaders of our user have their environment read.
pub fn scan(home: &Path) -> Scan {
    let me = std::process::id();
    let uid = rustix::process::geteuid().as_raw();
    let home = home.as_os_str().as_bytes();
    let Ok(dir) = std::fs::read_dir("/proc") else { return Scan::default() };
    let mut found = Scan::default();
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me || !entry.metadata().is_ok_and(|m| m.uid() == uid) {
            continue;
        }
        let Some(stat) = stat_of(pid) else { continue };
        if stat.pgrp != pid || is_dead(stat.state) {
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
        let Some(name) = name_in(&environ, home) else {
            if std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| in_flight(&environ, &c, home)) {
                found.in_flight += 1;
            }
            continue;
        };
        let parent_marked = stat.ppid > 1
            && std::fs::read(format!("/proc/{}/environ", stat.ppid))
                .is_ok_and(|env| name_in(&env, home) == Some(name));
        if parent_marked {
            continue;
        }
        // Read again: the process may have exec'd or ended since (a recycled pid would not
        // keep the start time).
        if live_start_time(pid) == Some(stat.start_time) {
            found.marked.push(Marked {
                pid,
                start_time: stat.start_time,
                name: String::from_utf8_lossy(name).into_owned(),
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_caught_before_its_exec_is_told_from_a_cli_and_a_marked_process() {
        let home = b"/srv/pm3";
        let env = b"PATH=/bin\0PM3_HOME=/srv/pm3\0";
        assert!(in_flight(env, b"/usr/bin/pm3\0daemon\0", home));
        // A `pm3 list` run from a shell, another home's daemon, a process that has exec'd.
        assert!(!in_flight(env, b"/usr/bin/pm3\0list\0", home));
        assert!(!in_flight(env, b"/usr/bin/pm3\0daemon\0extra\0", home));
        assert!(!in_flight(b"PM3_HOME=/srv/other\0", b"pm3\0daemon\0", home));
        assert!(!in_flight(b"PM3_HOME=/srv/pm3\0PM3_NAME=web:0\0", b"pm3\0daemon\0", home));
        assert!(!in_flight(env, b"", home));
    }

    #[test]
    fn the_name_counts_only_with_our_home() {
        let env = b"PATH=/bin\0PM3_HOME=/srv/pm3\0PM3_NAME=web:2\0HOME=/root\0";
        assert_eq!(name_in(env, b"/srv/pm3"), Some(&b"web:2"[..]));
        // Another daemon's process, a prefix of our home, or no home at all.
        assert_eq!(name_in(env, b"/srv/pm3b"), None);
        assert_eq!(name_in(env, b"/srv"), None);
        assert_eq!(name_in(b"PM3_NAME=web\0", b"/srv/pm3"), None);
        // No name (a hook, a `pm3` CLI run from a shell), or an empty one.
        assert_eq!(name_in(b"PM3_HOME=/srv/pm3\0", b"/srv/pm3"), None);
        assert_eq!(name_in(b"PM3_HOME=/srv/pm3\0PM3_NAME=\0", b"/srv/pm3"), None);
        // Order does not matter, a value mentioning the variable does not count, no trailing NUL.
        assert_eq!(
            name_in(b"PM3_NAME=api\0X=PM3_HOME=/x\0PM3_HOME=/srv/pm3", b"/srv/pm3"),
            Some(&b"api"[..])
        );
        assert_eq!(name_in(b"XPM3_HOME=/srv/pm3\0PM3_NAME=api\0", b"/srv/pm3"), None);
        assert_eq!(name_in(b"", b"/srv/pm3"), None);
    }

    #[test]
    fn stat_fields_are_found_after_the_command_name() {
        let line = b"4242 (we(i)rd) name) S 1 4242 4242 0 -1 4194560 120 0 0 0 3 1 0 0 20 0 1 0 987654 \
                     1000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(parse_stat(line), Some(Stat { state: b'S', ppid: 1, pgrp: 4242, start_time: 987654 }));
        assert_eq!(parse_stat(b"1 (x) S 0"), None);
    }

    #[test]
    fn our_own_stat_parses_and_the_test_process_is_not_marked() {
        let me = stat_of(std::process::id()).expect("own stat");
        assert_eq!(Some(me.start_time), super::super::spawn::start_time(std::process::id()));
        // A directory nothing is marked with finds nothing (and the scan does not fail).
        assert!(scan(Path::new("/nonexistent/pm3-home-for-tests")).marked.is_empty());
    }
}
