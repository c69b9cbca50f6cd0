//! Operating-system side of one process: spawning it in its own group, signalling it, learning
//! how it ended, and measuring it. No policy lives here; the supervisor decides.

pub mod exit;
pub mod reaper;
pub mod signal;
pub mod spawn;
pub mod stats;

use std::io;
use std::os::fd::OwnedFd;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Registers a descriptor we own with the reactor, for readability.
pub fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd stays open and refers to the same file description until it is
    // dropped together with the AsyncFd that owns it.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into_parts().1)
}
