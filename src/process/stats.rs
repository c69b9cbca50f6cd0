//! CPU time and resident memory of a process and all its descendants, read from `/proc`.
//!
//! Descendants are found through `/proc/<pid>/task/<tid>/children` (where the kernel has it), so
//! the cost grows with the size of the tree, not with the number of processes on the host.

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
    Sampler::new().tree(pid)
}

/// Reads `/proc` for [`sample_tree`] at the least cost, for a daemon that samples a thousand
/// processes in one go: every file is opened relative to one `/proc` descriptor opened once, each
/// `stat` is read with a single `read` into a reused buffer, and descendants are looked for only
/// where the kernel can list them (`CONFIG_PROC_CHILDREN`, checked once) and, for a
/// single-threaded process, in its one task without listing `task/`. Six system calls per
/// process: open, read, close of `stat` and of its `children`.
pub struct Sampler {
    proc_dir: Option<std::os::fd::OwnedFd>,
    /// Whether `/proc/<pid>/task/<tid>/children` exists on this kernel.
    children_file: bool,
    buf: Vec<u8>,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::new()
    }
}

impl Sampler {
    pub fn new() -> Sampler {
        use rustix::fs::{Mode, OFlags};
        let proc_dir =
            rustix::fs::open("/proc", OFlags::DIRECTORY | OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).ok();
        // The main thread's task id is the process id.
        let children_file =
            std::path::Path::new(&format!("/proc/self/task/{}/children", std::process::id())).exists();
        Sampler { proc_dir, children_file, buf: Vec::with_capacity(1024) }
    }

    /// Samples `pid` and its descendants; `None` when `pid` itself is gone.
    pub fn tree(&mut self, pid: u32) -> Option<TreeSample> {
        let (mut total, threads) = self.read_one(pid)?;
        if !self.children_file {
            return Some(total);
        }
        let mut stack = self.children(pid, threads);
        // Bounded walk: a tree larger than this is not worth stalling the daemon for.
        let mut budget = 4096;
        while let Some(p) = stack.pop() {
            budget -= 1;
            if budget == 0 {
                break;
            }
            if let Some((s, threads)) = self.read_one(p) {
                total.cpu_ticks += s.cpu_ticks;
                total.rss_bytes += s.rss_bytes;
                stack.extend(self.children(p, threads));
            }
        }
        Some(total)
    }

    /// Reads the whole of `/proc/<rel>` into the buffer (one `read` when it fits, as `stat`
    /// always does in 1 KiB); false when it cannot be read.
    fn read_rel(&mut self, rel: &str) -> bool {
        use rustix::fs::{Mode, OFlags};
        self.buf.clear();
        let opened = match &self.proc_dir {
            Some(dir) => rustix::fs::openat(dir, rel, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()),
            None => rustix::fs::open(
                format!("/proc/{rel}").as_str(),
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            ),
        };
        let Ok(fd) = opened else { return false };
        loop {
            if self.buf.capacity() - self.buf.len() < 256 {
                self.buf.reserve(1024);
            }
            let room = self.buf.capacity() - self.buf.len();
            match rustix::io::read(&fd, self.buf.spare_capacity_mut()) {
                Ok(([], _)) => return true,
                Ok((filled, _)) => {
                    let n = filled.len();
                    // SAFETY: `read` initialized the first `n` bytes of the spare capacity.
                    unsafe { self.buf.set_len(self.buf.len() + n) };
                    // A `/proc` file is generated whole on each read and a read fills what it
                    // can: a short one was the end (no second `read` to see end of file).
                    if n < room {
                        return true;
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return false,
            }
        }
    }

    /// utime + stime and rss of one process, and its number of threads.
    fn read_one(&mut self, pid: u32) -> Option<(TreeSample, u64)> {
        if !self.read_rel(&format!("{pid}/stat")) {
            return None;
        }
        parse_stat(&self.buf)
    }

    /// Direct children of every thread of `pid` (one file for a single-threaded process).
    fn children(&mut self, pid: u32, threads: u64) -> Vec<u32> {
        let mut out = Vec::new();
        if threads <= 1 {
            if self.read_rel(&format!("{pid}/task/{pid}/children")) {
                out.extend(pids_in(&self.buf));
            }
            return out;
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return out;
        };
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else { continue };
            if self.read_rel(&format!("{pid}/task/{tid}/children")) {
                out.extend(pids_in(&self.buf));
            }
        }
        out
    }
}

fn pids_in(text: &[u8]) -> impl Iterator<Item = u32> + '_ {
    text.split(|b| b.is_ascii_whitespace()).filter_map(|s| std::str::from_utf8(s).ok()?.parse::<u32>().ok())
}

/// utime + stime, rss and the number of threads, from the text of `/proc/<pid>/stat`.
fn parse_stat(stat: &[u8]) -> Option<(TreeSample, u64)> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    // Fields after ')': index 0 is field 3 (state); utime = 14, stime = 15, num_threads = 20,
    // rss = 24.
    let mut f = rest.split_ascii_whitespace();
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    let threads: u64 = f.nth(4)?.parse().ok()?;
    let rss_pages: u64 = f.nth(3)?.parse().ok()?;
    Some((TreeSample { cpu_ticks: utime + stime, rss_bytes: rss_pages * page_size() }, threads))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let s = sample_tree(std::process::id()).expect("own stats");
        assert!(s.rss_bytes > 0);
        assert!(ticks_per_second() > 0);
    }

    #[test]
    fn parses_stat_fields_after_the_last_parenthesis() {
        // A command name with spaces and parentheses; utime 7, stime 5, 3 threads, 100 pages.
        let line = b"42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 3 0 1000 4096000 100 184467";
        let (s, threads) = parse_stat(line).expect("parsed");
        assert_eq!(s.cpu_ticks, 12);
        assert_eq!(s.rss_bytes, 100 * page_size());
        assert_eq!(threads, 3);
        assert_eq!(parse_stat(b"42 (a) S 1"), None);
    }

    #[test]
    fn a_sampler_sees_its_own_children() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().expect("sleep");
        let mut sampler = Sampler::new();
        let me = std::process::id();
        let (_, threads) = sampler.read_one(me).expect("own stat");
        assert!(threads >= 1);
        if sampler.children_file {
            assert!(sampler.children(me, threads).contains(&child.id()));
        }
        // A just-exec'd process's resident count is synced lazily by the kernel: it may read
        // 0 for a moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while sampler.tree(child.id()).is_none_or(|s| s.rss_bytes == 0) {
            assert!(std::time::Instant::now() < deadline, "the child's memory is never seen");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(sampler.tree(child.id()), None);
    }
}
