//! Starting one process: its argv (direct exec, or `/bin/sh -c` for shell syntax), its own
//! process group, a clean environment, stdin from /dev/null, and stdout/stderr on named pipes
//! whose read ends the daemon keeps.
//!
//! Why named pipes opened read-write on the child's side: the child's own descriptor counts as a
//! reader, so the child never gets SIGPIPE/EPIPE when no daemon is reading (the daemon died or is
//! being replaced), and whatever it writes meanwhile waits in the pipe. A new daemon reopens the
//! pipe by path and carries on reading. End of file still arrives when every writer (the child
//! and its descendants) has exited, because the daemon's read end holds no write side.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Capacity asked for each output pipe.
const PIPE_SIZE: libc::c_int = 1 << 20;

/// Characters that, outside quotes, make a command line need a shell.
const SHELL_CHARS: &[char] =
    &['|', '&', ';', '<', '>', '(', ')', '$', '`', '*', '?', '[', '#', '~', '\n', '{', '}'];

/// The argv pm3 executes for `command`: split like a POSIX shell splits words and run directly,
/// unless it uses shell syntax, in which case `/bin/sh -c command`.
pub fn argv(command: &str) -> Vec<String> {
    if !needs_shell(command)
        && let Ok(words) = shell_words::split(command)
        && !words.is_empty()
    {
        return words;
    }
    vec!["/bin/sh".into(), "-c".into(), command.into()]
}

/// True when `command` uses shell syntax outside quotes (or `$`/backquote inside double quotes,
/// where the shell still expands them). Quoted `|` or `;` are plain arguments.
fn needs_shell(command: &str) -> bool {
    #[derive(PartialEq)]
    enum Q {
        None,
        Single,
        Double,
    }
    let mut q = Q::None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match q {
            Q::None => match c {
                '\'' => q = Q::Single,
                '"' => q = Q::Double,
                '\\' => {
                    chars.next();
                }
                c if SHELL_CHARS.contains(&c) => return true,
                _ => {}
            },
            Q::Single => {
                if c == '\'' {
                    q = Q::None;
                }
            }
            Q::Double => match c {
                '"' => q = Q::None,
                '$' | '`' => return true,
                '\\' => {
                    chars.next();
                }
                _ => {}
            },
        }
    }
    // An unterminated quote: let the shell report it.
    q != Q::None
}

/// Everything needed to start one run of an instance.
pub struct Launch<'a> {
    pub argv: &'a [String],
    pub cwd: &'a Path,
    pub env: &'a BTreeMap<String, String>,
    /// Paths of the named pipes to create for stdout and stderr.
    pub out_pipe: &'a Path,
    pub err_pipe: &'a Path,
}

/// A process that was started: its pid (== its process group id) and the daemon's ends.
#[derive(Debug)]
pub struct Spawned {
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22): with the pid, the
    /// identity of this process that a pid reused later cannot fake.
    pub start_time: Option<u64>,
    pub out: OwnedFd,
    pub err: OwnedFd,
}

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot create pipe {path}: {source}")]
    Pipe { path: PathBuf, source: io::Error },
    #[error("cannot run `{program}` in {cwd}: {source}")]
    Exec { program: String, cwd: PathBuf, source: io::Error },
}

/// Starts the process described by `launch`.
pub fn spawn(launch: &Launch<'_>) -> Result<Spawned, SpawnError> {
    let (out_read, out_child) = fifo(launch.out_pipe)?;
    let (err_read, err_child) = match fifo(launch.err_pipe) {
        Ok(pair) => pair,
        Err(e) => {
            let _ = std::fs::remove_file(launch.out_pipe);
            return Err(e);
        }
    };
    let (program, args) = launch.argv.split_first().map_or(("", &[][..]), |(p, a)| (p.as_str(), a));
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(launch.cwd)
        .env_clear()
        .envs(launch.env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_child))
        .stderr(Stdio::from(err_child))
        .process_group(0);
    // `cmd` owns the child's ends; they are closed when it is dropped, right after the spawn,
    // so only the child holds the write side of its pipes.
    let child = cmd.spawn();
    drop(cmd);
    match child {
        Ok(child) => {
            let pid = child.id();
            // The Child is dropped without waiting: exits are collected through pidfds by the
            // supervisor, never through std.
            Ok(Spawned { pid, start_time: start_time(pid), out: out_read, err: err_read })
        }
        Err(source) => {
            let _ = std::fs::remove_file(launch.out_pipe);
            let _ = std::fs::remove_file(launch.err_pipe);
            Err(SpawnError::Exec { program: program.to_string(), cwd: launch.cwd.to_path_buf(), source })
        }
    }
}

/// Creates the named pipe at `path` and opens both ends: the daemon's non-blocking read end and
/// the child's read-write end.
fn fifo(path: &Path) -> Result<(OwnedFd, File), SpawnError> {
    let err = |source| SpawnError::Pipe { path: path.to_path_buf(), source };
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| err(io::Error::from(io::ErrorKind::InvalidInput)))?;
    let _ = std::fs::remove_file(path);
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    // Read-write first: opening a FIFO this way never blocks, and it is the child's end.
    let child = OpenOptions::new().read(true).write(true).open(path).map_err(err)?;
    let read = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(err)?;
    // A larger pipe lets a writer go on for longer while no daemon reads (one being replaced).
    // Pages are only used when filled; a refusal (over the user's pipe quota) is harmless.
    // SAFETY: fcntl on a descriptor we own, with an integer argument.
    unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&child), libc::F_SETPIPE_SZ, PIPE_SIZE) };
    Ok((OwnedFd::from(read), child))
}

/// Reopens the read end of an existing pipe (a daemon adopting a process started by another).
pub fn reopen_pipe(path: &Path) -> io::Result<OwnedFd> {
    let f = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    Ok(OwnedFd::from(f))
}

/// Start time of `pid` in clock ticks since boot, or `None` when it is gone or unreadable.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields start after the last ')'.
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    // After ')' come fields 3 (state) onwards; starttime is field 22.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_commands_are_split_shell_syntax_goes_to_sh() {
        assert_eq!(argv("python3 -m http.server 8000"), ["python3", "-m", "http.server", "8000"]);
        assert_eq!(argv("echo 'a b' \"c d\""), ["echo", "a b", "c d"]);
        assert_eq!(argv("sleep 1 && echo hi"), ["/bin/sh", "-c", "sleep 1 && echo hi"]);
        assert_eq!(argv("echo $HOME"), ["/bin/sh", "-c", "echo $HOME"]);
        assert_eq!(argv("cat < x"), ["/bin/sh", "-c", "cat < x"]);
        assert_eq!(argv("echo 'unterminated"), ["/bin/sh", "-c", "echo 'unterminated"]);
        assert_eq!(argv("printf '%s|' 'a b' c"), ["printf", "%s|", "a b", "c"]);
        assert_eq!(argv("echo \"a;b\" 'x$y'"), ["echo", "a;b", "x$y"]);
        assert_eq!(argv("echo \"$HOME\""), ["/bin/sh", "-c", "echo \"$HOME\""]);
        assert_eq!(argv("echo a\\;b"), ["echo", "a;b"]);
    }

    #[test]
    fn start_time_of_self_is_readable() {
        assert!(start_time(std::process::id()).is_some());
        assert_eq!(start_time(u32::MAX), None);
    }
}
