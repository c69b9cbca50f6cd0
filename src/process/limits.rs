//! What the daemon changes for itself but not for the processes it starts.
//!
//! - Its umask becomes 0077, so every file it creates in the data directory (state, pid file,
//!   log files, whichever code creates them) is private to its user.
//! - Its soft `RLIMIT_NOFILE` is raised (up to 65536 within the hard limit): each instance
//!   costs it five descriptors.
//!
//! The processes it starts get back the umask and the soft limit of the command that started
//! the daemon (which `pm3 daemon` inherited from that command and records first thing): a
//! program that sizes tables by its descriptor limit, or relies on `select()` below 1024, sees
//! what it would see when started by hand.
//!
//! How: a spawn goes through `posix_spawn` (vfork), which cannot be given a umask or a limit,
//! and a `pre_exec` hook would force a full fork of the daemon; `prlimit` on the child after
//! the spawn would race with the program, which already runs by then. So the daemon sets its
//! own umask and soft limit back for the instant of the `posix_spawn` call ([`as_caller`]):
//! the vforked child inherits them, and the daemon restores its own right after. Everything
//! else of the spawn (pipes, `/dev/null`, the file actions, which glibc checks against the soft
//! limit in force when they are added) is prepared before, with the daemon's limit, so a daemon
//! holding more descriptors than the caller's limit still starts processes (`process::spawn`
//! calls `posix_spawn` itself for that reason). That is safe because the daemon runs on one
//! thread; its only other thread (the state writer) opens its file with an explicit mode and
//! needs one descriptor. Six syscalls per spawn (about 2 µs), and the vfork path is kept.
//! Hooks and `exec:` probes are started by std (a fork, with their working directory) and get
//! the values through [`restore_in_child`] before they execute.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::OnceLock;

/// The umask every file of the daemon is created with.
pub const PRIVATE_UMASK: libc::mode_t = 0o077;

/// Soft descriptor limit the daemon asks for (within the hard limit).
const DAEMON_NOFILE: libc::rlim_t = 65536;

/// What the command that started us had, and what we set instead.
#[derive(Debug, Clone, Copy)]
struct Saved {
    /// The caller's umask, when ours differs from it.
    umask: Option<libc::mode_t>,
    /// (the caller's soft limit, ours), when we raised it.
    nofile: Option<(libc::rlim_t, libc::rlim_t)>,
}

static SAVED: OnceLock<Saved> = OnceLock::new();

/// Records the caller's umask and soft descriptor limit, then sets the private umask and, with
/// `raise_fds`, a soft descriptor limit large enough for many processes. Call once, first thing,
/// before any other thread starts.
pub fn enter(raise_fds: bool) {
    // SAFETY: umask only swaps the process's file mode mask.
    let caller_umask = unsafe { libc::umask(PRIVATE_UMASK) };
    let mut nofile = None;
    if raise_fds && let Some(mut lim) = get_nofile() {
        let want = DAEMON_NOFILE.min(lim.rlim_max);
        if lim.rlim_cur < want {
            let caller = lim.rlim_cur;
            lim.rlim_cur = want;
            if set_nofile(&lim) {
                nofile = Some((caller, want));
            }
        }
    }
    let umask = (caller_umask != PRIVATE_UMASK).then_some(caller_umask);
    let _ = SAVED.set(Saved { umask, nofile });
}

/// The soft descriptor limit processes get (the caller's), when the daemon raised its own.
pub fn child_nofile() -> Option<u64> {
    SAVED.get().and_then(|s| s.nofile).map(|(caller, _)| caller)
}

/// Runs `spawn` with the caller's umask and soft descriptor limit in force, then restores the
/// daemon's. Without [`enter`], or when nothing differs, it only runs `spawn`.
pub fn as_caller<T>(spawn: impl FnOnce() -> T) -> T {
    let Some(saved) = SAVED.get().copied() else { return spawn() };
    apply(saved.umask, saved.nofile.map(|(caller, _)| caller));
    let out = spawn();
    apply(saved.umask.map(|_| PRIVATE_UMASK), saved.nofile.map(|(_, ours)| ours));
    out
}

/// Makes a child started through `cmd` (by a fork) take the caller's umask and soft descriptor
/// limit before it executes. Nothing is added when nothing differs, so `cmd` keeps std's
/// fastest spawn path then.
pub fn restore_in_child(cmd: &mut Command) {
    let Some(saved) = SAVED.get().copied() else { return };
    if saved.umask.is_none() && saved.nofile.is_none() {
        return;
    }
    let (umask, nofile) = (saved.umask, saved.nofile.map(|(caller, _)| caller));
    // SAFETY: the hook runs between fork and exec and only makes the async-signal-safe calls
    // umask, getrlimit and setrlimit on values copied in; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            apply(umask, nofile);
            Ok(())
        });
    }
}

/// Sets the umask and the soft descriptor limit (keeping the hard one) when given.
fn apply(umask: Option<libc::mode_t>, soft_nofile: Option<libc::rlim_t>) {
    if let Some(mask) = umask {
        // SAFETY: umask only swaps the process's file mode mask.
        unsafe { libc::umask(mask) };
    }
    if let Some(soft) = soft_nofile
        && let Some(mut lim) = get_nofile()
    {
        lim.rlim_cur = soft.min(lim.rlim_max);
        set_nofile(&lim);
    }
}

fn get_nofile() -> Option<libc::rlimit> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct we pass.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim)
}

fn set_nofile(lim: &libc::rlimit) -> bool {
    // SAFETY: setrlimit reads one rlimit from the struct we pass.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, lim) == 0 }
}
