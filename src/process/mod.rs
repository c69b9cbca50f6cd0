//! Operating-system side of one process: spawning it in its own group, signalling it, learning
//! how it ended, and measuring it. No policy lives here; the supervisor decides.

pub mod exit;
pub mod limits;
pub mod marker;
pub mod reaper;
pub mod signal;
pub mod spawn;
pub mod stats;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Registers a descriptor we own with the reactor, for readability.
pub fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd stays open and refers to the same file description until it is
    // dropped together with the AsyncFd that owns it.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into_parts().1)
}

/// Where the daemon keeps its long-lived descriptors (pipes' read ends, pidfds, log files):
/// from here up, away from the low numbers where the few a spawn passes on are made. A child
/// then takes a copy of the low ones only ([`spawn::spawn`]).
pub const PARK_FLOOR: RawFd = 1024;

/// `fd` moved to [`PARK_FLOOR`] or above (close-on-exec); as it is when that is refused (a
/// descriptor limit of 1024 or less).
pub fn park(fd: OwnedFd) -> OwnedFd {
    if fd.as_raw_fd() >= PARK_FLOOR {
        return fd;
    }
    rustix::io::fcntl_dupfd_cloexec(&fd, PARK_FLOOR).unwrap_or(fd)
}

/// Grows the descriptor table past [`PARK_FLOOR`] while the daemon still has one thread. The
/// kernel grows a table that several threads share only after an RCU grace period (8-15 ms on
/// the 2-CPU VM measured), so the first parked descriptor would otherwise hold up the first
/// start by that much. The table is kernel memory (64 KiB for 8,192 slots), not the daemon's.
pub fn reserve_fd_table() {
    let Ok(null) = std::fs::File::open("/dev/null") else { return };
    for top in [4 * PARK_FLOOR - 1, 2 * PARK_FLOOR - 1] {
        if rustix::io::fcntl_dupfd_cloexec(&null, top).is_ok() {
            return;
        }
    }
}

/// Closes every descriptor above stderr. Called first thing in the daemon, before it opens
/// anything of its own.
pub fn close_inherited_fds() {
    above_stderr(0, |fd| {
        // SAFETY: closing a descriptor number; one already closed just fails.
        unsafe { libc::close(fd) };
    });
}

/// Marks every descriptor above stderr close-on-exec, so `pm3 run` keeps what it inherited
/// but its children do not get it.
pub fn cloexec_inherited_fds() {
    above_stderr(CLOSE_RANGE_CLOEXEC, |fd| {
        // SAFETY: F_SETFD on a descriptor number; one already closed just fails.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    });
}

#[cfg(target_os = "linux")]
const CLOSE_RANGE_CLOEXEC: u32 = libc::CLOSE_RANGE_CLOEXEC;
#[cfg(not(target_os = "linux"))]
const CLOSE_RANGE_CLOEXEC: u32 = 0;

/// `close_range(3, ~0, flags)` where the kernel has it, else `each` on every open descriptor
/// above 2.
fn above_stderr(flags: u32, each: impl Fn(i32)) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: close_range takes plain integers and only closes or flags descriptors.
        if unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, flags) } == 0 {
            return;
        }
    }
    let _ = flags;
    let fds: Vec<i32> = std::fs::read_dir("/dev/fd")
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    fds.into_iter().filter(|&fd| fd > 2).for_each(each);
}

/// Drops from this process's resident set the pages of read-only file mappings (the pm3 binary,
/// libc) that nothing modified: the code that parsed arguments and set the daemon up, or that a
/// burst of spawns ran. They stay in the page cache and come back on their next use; what the
/// idle daemon keeps resident is then only what it really runs. Mappings with private
/// (modified) pages are left alone.
pub fn trim_clean_file_pages() {
    #[cfg(target_os = "linux")]
    {
        let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else { return };
        let mut current: Option<(usize, usize, bool)> = None;
        let mut candidates = Vec::new();
        for line in smaps.lines() {
            let mut fields = line.split_ascii_whitespace();
            let Some(first) = fields.next() else { continue };
            if let Some((start, end)) = first.split_once('-')
                && let (Ok(start), Ok(end)) =
                    (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16))
            {
                let perms = fields.next().unwrap_or("");
                let path = fields.nth(3).unwrap_or("");
                let file_backed = path.starts_with('/');
                current = Some((start, end, file_backed && !perms.contains('w')));
            } else if first == "Anonymous:"
                && let Some((start, end, eligible)) = current.take()
                && eligible
                && fields.next() == Some("0")
            {
                candidates.push((start, end - start));
            }
        }
        for (start, len) in candidates {
            // SAFETY: the range is a whole read-only, unmodified file mapping of this process;
            // dropping its pages only means they are read from the page cache again when used.
            unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        }
    }
}
