//! Signal names as users write them (`TERM`, `SIGTERM`, `15`) and sending them to whole process groups.
//!
//! The config, the CLI (`pm3 signal`) and the supervisor all go through [`Signal`], so a name that
//! parses in one place parses everywhere.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A POSIX signal number, parsed from a name or a number and shown by its canonical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(i32);

/// Name (without the `SIG` prefix) and number of every signal pm3 accepts by name.
const NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("SYS", libc::SIGSYS),
];

impl Signal {
    pub const TERM: Signal = Signal(libc::SIGTERM);
    pub const KILL: Signal = Signal(libc::SIGKILL);
    pub const INT: Signal = Signal(libc::SIGINT);

    /// The raw signal number.
    pub fn number(self) -> i32 {
        self.0
    }

    /// Builds a signal from a number, if the number is a valid signal on this system.
    pub fn from_number(n: i32) -> Option<Signal> {
        (1..=max_signal()).contains(&n).then_some(Signal(n))
    }
}

#[cfg(target_os = "linux")]
fn max_signal() -> i32 {
    libc::SIGRTMAX()
}

#[cfg(not(target_os = "linux"))]
fn max_signal() -> i32 {
    31
}

/// Why a signal name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signal `{0}` (use a name like `TERM`, `SIGHUP`, `USR1` or a number)")]
pub struct UnknownSignal(pub String);

impl FromStr for Signal {
    type Err = UnknownSignal;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        if let Ok(n) = trimmed.parse::<i32>() {
            return Signal::from_number(n).ok_or_else(|| UnknownSignal(s.to_string()));
        }
        let upper = trimmed.to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        NAMES
            .iter()
            .find(|(name, _)| *name == bare)
            .map(|&(_, n)| Signal(n))
            .ok_or_else(|| UnknownSignal(s.to_string()))
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match NAMES.iter().find(|&&(_, n)| n == self.0) {
            Some((name, _)) => write!(f, "SIG{name}"),
            None => write!(f, "{}", self.0),
        }
    }
}

impl Serialize for Signal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Signal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Sends `sig` to every process of the group `pgid`. A group that is already gone is not an error.
pub fn signal_group(pgid: u32, sig: Signal) -> std::io::Result<()> {
    // SAFETY: killpg only reads its two integer arguments.
    gone_is_fine(unsafe { libc::killpg(pgid as libc::pid_t, sig.0) })
}

/// Sends `sig` to one process. A process that is already gone is not an error.
pub fn signal_pid(pid: u32, sig: Signal) -> std::io::Result<()> {
    // SAFETY: kill only reads its two integer arguments.
    gone_is_fine(unsafe { libc::kill(pid as libc::pid_t, sig.0) })
}

/// The result of kill/killpg, with "no such process" counted as done.
fn gone_is_fine(rc: libc::c_int) -> std::io::Result<()> {
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ESRCH) => Ok(()),
        _ => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_prefixes_and_numbers() {
        assert_eq!("TERM".parse::<Signal>(), Ok(Signal::TERM));
        assert_eq!("SIGTERM".parse::<Signal>(), Ok(Signal::TERM));
        assert_eq!("sigint".parse::<Signal>(), Ok(Signal::INT));
        assert_eq!("9".parse::<Signal>(), Ok(Signal::KILL));
        assert_eq!(Signal::from_number(libc::SIGUSR1).map(|s| s.to_string()).as_deref(), Some("SIGUSR1"));
        assert!("TERMINATE".parse::<Signal>().is_err());
        assert!("0".parse::<Signal>().is_err());
        assert!("-3".parse::<Signal>().is_err());
    }
}
