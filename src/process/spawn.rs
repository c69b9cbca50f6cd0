//! Starting one process: its argv (direct exec, or `/bin/sh -c` for shell syntax), its own
//! process group, a clean environment, stdin from /dev/null, and stdout/stderr on pipes whose
//! read ends the daemon keeps.
//!
//! Why the child's end of each pipe is opened read-write (through `/proc/self/fd`): the child's
//! own descriptor then counts as a reader, so the child never gets SIGPIPE/EPIPE when no daemon
//! is reading (the daemon died or is being replaced), and whatever it writes meanwhile waits in
//! the pipe. A new daemon opens `/proc/<pid>/fd/1` and `/2` to get a read end of the very same
//! pipes and carries on. End of file still arrives when every writer (the child and its
//! descendants) has exited, because the daemon's read end holds no write side. Anonymous pipes
//! cost no file-system inode: creating named pipes made a start of 100 processes 4× slower.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::marker;

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
    #[error("cannot create an output pipe: {0}")]
    Pipe(io::Error),
    #[error("cannot run `{program}` in {cwd}: {source}")]
    Exec { program: String, cwd: PathBuf, source: io::Error },
}

/// Starts the process described by `launch`.
pub fn spawn(launch: &Launch<'_>) -> Result<Spawned, SpawnError> {
    let (out_read, out_child) = pipe_pair().map_err(SpawnError::Pipe)?;
    let (err_read, err_child) = pipe_pair().map_err(SpawnError::Pipe)?;
    let (program, args) = launch.argv.split_first().map_or(("", &[][..]), |(p, a)| (p.as_str(), a));
    // With an absolute path std can use posix_spawn (vfork); a bare name under a replaced
    // environment makes it fall back to a full fork, which costs the daemon ~0.1 ms and a
    // hundred copy-on-write faults per start.
    let mut cmd = match find_program(program, launch.env) {
        Some(path) => {
            let mut c = Command::new(path);
            c.arg0(program);
            c
        }
        None => Command::new(program),
    };
    cmd.args(args).env_clear().envs(launch.env);
    // Under a daemon the process carries its markers (`process::marker`), whatever the starting
    // environment said; elsewhere (`pm3 run`) it carries none, so no daemon ever takes it for one
    // of its own.
    match marker::home() {
        Some(home) => cmd.env(marker::HOME_VAR, home),
        None => cmd.env_remove(marker::NAME_VAR),
    };
    cmd.stdin(Stdio::null()).stdout(Stdio::from(out_child)).stderr(Stdio::from(err_child)).process_group(0);
    // The child inherits our working directory instead of being given one: with a working
    // directory std can only use posix_spawn through a libc symbol a static binary cannot look
    // up, and falls back to a full fork of the daemon. The daemon itself only uses absolute
    // paths, and returns to `/` right after.
    let entered = std::env::set_current_dir(launch.cwd);
    // `cmd` owns the child's ends; they are closed when it is dropped, right after the spawn,
    // so only the child holds the write side of its pipes.
    let child = match entered {
        Ok(()) => cmd.spawn(),
        Err(e) => Err(e),
    };
    let _ = std::env::set_current_dir("/");
    drop(cmd);
    match child {
        Ok(child) => {
            let pid = child.id();
            // The Child is dropped without waiting: exits are collected through pidfds by the
            // supervisor, never through std.
            Ok(Spawned { pid, start_time: start_time(pid), out: out_read, err: err_read })
        }
        Err(source) => {
            Err(SpawnError::Exec { program: program.to_string(), cwd: launch.cwd.to_path_buf(), source })
        }
    }
}

/// `/bin/sh -c command` in its own process group, with `cwd` and `env` (less `PM3_NAME`), stdin
/// from /dev/null: how hooks and `exec:` health checks run.
pub fn shell(command: &str, cwd: &Path, env: &BTreeMap<String, String>) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(command).current_dir(cwd).env_clear().envs(env).stdin(Stdio::null()).process_group(0);
    // Only an instance's own process carries its name: a hook left running by a daemon that
    // died must not be taken for the instance by the next one.
    cmd.env_remove(marker::NAME_VAR);
    cmd
}

/// Where `program` is found on the `PATH` of `env` (as `execvp` would look), when it is a bare
/// name.
///
/// The answer is remembered for the same program and `PATH` (a start of 100 instances looks it up
/// once), and checked with one `stat` before it is used again.
fn find_program(program: &str, env: &BTreeMap<String, String>) -> Option<PathBuf> {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;
    thread_local! {
        static FOUND: RefCell<HashMap<(String, String), PathBuf>> = RefCell::new(HashMap::new());
    }
    if program.is_empty() || program.contains('/') {
        return None;
    }
    let executable =
        |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    let path = env.get("PATH").map_or("/usr/local/bin:/usr/bin:/bin", String::as_str);
    let key = (path.to_string(), program.to_string());
    if let Some(hit) = FOUND.with(|f| f.borrow().get(&key).cloned())
        && executable(&hit)
    {
        return Some(hit);
    }
    let found = path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| executable(p))?;
    FOUND.with(|f| {
        let mut f = f.borrow_mut();
        // Bounded: a daemon runs a handful of distinct programs.
        if f.len() > 256 {
            f.clear();
        }
        f.insert(key, found.clone());
    });
    Some(found)
}

/// A pipe: the daemon's non-blocking read end, and the child's read-write end.
fn pipe_pair() -> io::Result<(OwnedFd, File)> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    rustix::io::ioctl_fionbio(&read, true)?;
    // Reopening the write end read-write makes the child a reader of its own pipe too.
    let child =
        OpenOptions::new().read(true).write(true).open(format!("/proc/self/fd/{}", write.as_raw_fd()))?;
    drop(write);
    // A larger pipe lets a writer go on for longer while no daemon reads (one being replaced).
    // Pages are only used when filled; a refusal (over the user's pipe quota) is harmless.
    // SAFETY: fcntl on a descriptor we own, with an integer argument.
    unsafe { libc::fcntl(child.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
    Ok((read, child))
}

/// A read end of the pipe behind descriptor `fd` of process `pid` (a daemon adopting a process
/// started by another).
pub fn reopen_output(pid: u32, fd: u32) -> io::Result<OwnedFd> {
    let f =
        OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(format!("/proc/{pid}/fd/{fd}"))?;
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
