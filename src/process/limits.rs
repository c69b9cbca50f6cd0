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
//! How: the daemon's spawn is a vfork of its own ([`super::spawn`]), whose child sets the
//! caller's umask and soft limit itself between clone and exec ([`for_children`]); the daemon
//! never changes its own for a spawn, so its other threads (log writer, file creator, state
//! writer) never open a file under the caller's lower limit. Hooks and `exec:` probes are
//! started by std (a fork, with their working directory) and get the values through
//! [`restore_in_child`] before they execute. A unix socket file is given the mode the caller's
//! umask would give it right after its bind ([`caller_umask`]).

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

/// What a started process gets instead of the daemon's own: the caller's umask and descriptor
/// limit (soft: the caller's, hard: as it is), when they differ. The child sets them itself
/// between clone and exec ([`super::spawn`]).
pub fn for_children() -> (Option<libc::mode_t>, Option<libc::rlimit>) {
    let Some(saved) = SAVED.get().copied() else { return (None, None) };
    let nofile = saved.nofile.and_then(|(caller, _)| {
        let mut lim = get_nofile()?;
        lim.rlim_cur = caller.min(lim.rlim_max);
        Some(lim)
    });
    (saved.umask, nofile)
}

/// The umask of the command that started the daemon, when it differs from the daemon's.
pub fn caller_umask() -> Option<libc::mode_t> {
    SAVED.get().and_then(|s| s.umask)
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
