//! Learning that a process ended, and how.
//!
//! A pidfd becomes readable when its process exits, for children and for processes adopted from
//! a previous daemon alike, so one mechanism serves both; no polling, no SIGCHLD bookkeeping.
//! For our own children `waitid(P_PIDFD)` then reaps the zombie and yields the exit status; an
//! adopted process is not our child, so its status is unknown.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::process::{Pid, PidfdFlags, WaitId, WaitIdOptions};
use tokio::io::unix::AsyncFd;

use crate::process::signal::Signal;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(Signal),
    /// The process was adopted (not our child), so the kernel does not tell us.
    Unknown,
}

impl ExitStatus {
    pub fn code(self) -> Option<i32> {
        match self {
            ExitStatus::Code(c) => Some(c),
            _ => None,
        }
    }
    pub fn signal(self) -> Option<Signal> {
        match self {
            ExitStatus::Signal(s) => Some(s),
            _ => None,
        }
    }
    /// Exit 0 is the only clean end.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s}"),
            ExitStatus::Unknown => f.write_str("an unknown status"),
        }
    }
}

/// Readiness handle on one process's exit.
pub struct ExitWatch {
    fd: AsyncFd<OwnedFd>,
    pid: u32,
}

impl Drop for ExitWatch {
    fn drop(&mut self) {
        // Reaped, or abandoned: either way the orphan reaper may have it now.
        super::reaper::unregister(self.pid);
    }
}

impl ExitWatch {
    /// Watches `pid`. Fails when the process is already gone (adoption) or the kernel has no
    /// pidfds (Linux < 5.3).
    pub fn new(pid: u32) -> io::Result<ExitWatch> {
        let pid = Pid::from_raw(pid as i32).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let fd = super::park(rustix::process::pidfd_open(pid, PidfdFlags::NONBLOCK)?);
        let raw = pid.as_raw_nonzero().get() as u32;
        super::reaper::register(raw);
        Ok(ExitWatch { fd: super::register(fd)?, pid: raw })
    }

    /// Resolves when the process has exited; reaps it when it is our child.
    pub async fn exited(&self) -> ExitStatus {
        loop {
            match self.fd.readable().await {
                Ok(mut guard) => {
                    guard.clear_ready();
                    if let Some(status) = self.try_reap() {
                        return status;
                    }
                }
                // The reactor cannot watch the fd: nothing sensible to wait on, treat as gone.
                Err(_) => return ExitStatus::Unknown,
            }
        }
    }

    /// Reaps the process when it has exited; `None` while it runs.
    fn try_reap(&self) -> Option<ExitStatus> {
        let opts = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
        match rustix::process::waitid(WaitId::PidFd(self.fd.get_ref().as_fd()), opts) {
            Ok(Some(st)) => Some(match (st.exit_status(), st.terminating_signal()) {
                (Some(code), _) => ExitStatus::Code(code),
                (None, Some(sig)) => Signal::from_number(sig).map_or(ExitStatus::Unknown, ExitStatus::Signal),
                (None, None) => ExitStatus::Unknown,
            }),
            // A child that has not exited yet (spurious wake-up).
            Ok(None) => None,
            // ECHILD: not our child (adopted). Readable pidfd means it has exited.
            Err(_) => Some(ExitStatus::Unknown),
        }
    }
}
