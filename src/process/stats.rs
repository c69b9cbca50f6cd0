//! CPU time and resident memory of a process and all its descendants, read from `/proc`.
//!
//! Descendants are found through `/proc/<pid>/task/<tid>/children`, so the cost grows with the
//! size of the tree, not with the number of processes on the host.

use std::sync::OnceLock;

/// Totals over one process tree at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeSample {
    /// User + system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident memory, in bytes.
    pub rss_bytes: u64,
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    // SAFETY: sysconf only reads a constant.
    *TICKS.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as u64,
        _ => 100,
    })
}

fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    // SAFETY: sysconf only reads a constant.
    *PAGE.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as u64,
        _ => 4096,
    })
}

/// Samples `pid` and its descendants; `None` when `pid` itself is gone.
pub fn sample_tree(pid: u32) -> Option<TreeSample> {
    let mut total = read_one(pid)?;
    let mut stack = children(pid);
    // Bounded walk: a tree larger than this is not worth stalling the daemon for.
    let mut budget = 4096;
    while let Some(p) = stack.pop() {
        budget -= 1;
        if budget == 0 {
            break;
        }
        if let Some(s) = read_one(p) {
            total.cpu_ticks += s.cpu_ticks;
            total.rss_bytes += s.rss_bytes;
            stack.extend(children(p));
        }
    }
    Some(total)
}

/// utime + stime and rss of one process.
fn read_one(pid: u32) -> Option<TreeSample> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    // Fields after ')': index 0 is field 3 (state); utime = 14, stime = 15, rss = 24.
    let mut f = rest.split_ascii_whitespace();
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    let rss_pages: u64 = f.nth(8)?.parse().ok()?;
    Some(TreeSample { cpu_ticks: utime + stime, rss_bytes: rss_pages * page_size() })
}

/// True while `pid` exists and has not exited (a zombie has).
pub fn is_live(pid: u32) -> bool {
    let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else { return false };
    let Some(close) = stat.iter().rposition(|&b| b == b')') else { return false };
    !matches!(stat.get(close + 2), Some(b'Z' | b'X'))
}

/// True if some process in the group `pgid` is not a zombie. Walks `/proc`, so it is only used
/// in the rare case where a group outlives its leader.
pub fn group_has_live_member(pgid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else { return true };
    dir.flatten().any(|entry| live_member_of(&entry, pgid).is_some())
}

/// Every process of the group `pgid` that is not a zombie. Walks `/proc`: for a command
/// (`pm3 signal`), not for a loop.
pub fn live_group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten().filter_map(|entry| live_member_of(&entry, pgid)).collect()
}

/// The pid of a `/proc` entry that is a live (not zombie) member of the group `pgid`.
fn live_member_of(entry: &std::fs::DirEntry, pgid: u32) -> Option<u32> {
    let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    // After ')': state (field 3), ppid (4), pgrp (5).
    let mut f = rest.split_ascii_whitespace();
    let state = f.next();
    let group = f.nth(1).and_then(|g| g.parse::<u32>().ok());
    (group == Some(pgid) && state != Some("Z") && state != Some("X")).then_some(pid)
}

/// True when `pid` has a handler for signal number `signo` (`SigCgt` in its status): it acts
/// on the signal instead of taking its default action (for most signals, ending).
pub fn catches_signal(pid: u32, signo: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return false };
    let Some(mask) = status.lines().find_map(|l| l.strip_prefix("SigCgt:")) else { return false };
    let Ok(mask) = u64::from_str_radix(mask.trim(), 16) else { return false };
    (1..=64).contains(&signo) && mask & (1 << (signo - 1)) != 0
}

/// Direct children of every thread of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let mut path = task.path();
        path.push("children");
        if let Ok(text) = std::fs::read_to_string(&path) {
            out.extend(text.split_ascii_whitespace().filter_map(|s| s.parse::<u32>().ok()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let s = sample_tree(std::process::id()).expect("own stats");
        assert!(s.rss_bytes > 0);
        assert!(ticks_per_second() > 0);
    }
}
