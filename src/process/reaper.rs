//! Reaping children nobody waits for. Every process pm3 starts is waited for by its own
//! [`ExitWatch`](super::exit::ExitWatch), which registers it here; any other child that exits is
//! reaped by [`reap_orphans`]: an abandoned probe, or, when pm3 is PID 1 or a subreaper
//! (`pm3 run` in a container), orphans of the whole tree that the kernel handed to us.

use std::collections::BTreeSet;
use std::sync::Mutex;

use tokio::signal::unix::{SignalKind, signal};

static OURS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// Marks `pid` as waited for by its own watcher.
pub fn register(pid: u32) {
    if let Ok(mut set) = OURS.lock() {
        set.insert(pid);
    }
}

/// `pid` has been reaped, or its watcher gave up: the reaper may take it from now on.
pub fn unregister(pid: u32) {
    if let Ok(mut set) = OURS.lock() {
        set.remove(&pid);
    }
}

fn is_ours(pid: u32) -> bool {
    OURS.lock().map(|set| set.contains(&pid)).unwrap_or(true)
}

/// Makes orphaned descendants become our children (so they can be reaped) even when we are not
/// PID 1. Linux only.
pub fn become_subreaper() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes a plain integer argument.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

/// On every SIGCHLD, reaps the exited children that no watcher waits for.
pub async fn reap_orphans() {
    let Ok(mut sigchld) = signal(SignalKind::child()) else { return };
    loop {
        reap_once();
        if sigchld.recv().await.is_none() {
            return;
        }
    }
}

fn reap_once() {
    for pid in children() {
        if is_ours(pid) {
            continue;
        }
        let mut status = 0;
        // SAFETY: waitpid on a specific child with WNOHANG; `status` is a valid out-pointer.
        unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
    }
}

/// Our direct children, from `/proc/self/task/*/children`.
fn children() -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for t in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(text.split_ascii_whitespace().filter_map(|s| s.parse::<u32>().ok()));
        }
    }
    out
}
