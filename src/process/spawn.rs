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
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
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

/// Words that, first in a command, only a shell can run: its reserved words, its special
/// built-ins, the built-ins that act on the shell itself or have no program of their own, and the
/// common ones of bash. (`echo`, `printf`, `test`, `true`, `kill`… are programs too, and run
/// directly the same.)
const SHELL_WORDS: &[&str] = &[
    // Reserved words.
    "!", "{", "}", "case", "do", "done", "elif", "else", "esac", "fi", "for", "if", "in", "then", "until",
    "while", "[[", "]]", "function", "select", "time", "coproc", // Special built-ins.
    ".", ":", "break", "continue", "eval", "exec", "exit", "export", "readonly", "return", "set", "shift",
    "times", "trap", "unset", // Built-ins that act on the shell, or have no program.
    "alias", "bg", "cd", "command", "fc", "fg", "getopts", "hash", "jobs", "read", "type", "ulimit", "umask",
    "unalias", "wait", // bash's.
    "source", "local", "let", "declare", "typeset", "builtin", "shopt", "pushd", "popd", "disown",
];

/// The argv pm3 executes for `command`: split like a POSIX shell splits words and run directly,
/// unless only a shell can run it, in which case `/bin/sh -c command`. A shell is needed for
/// shell syntax (pipes, `&&`, `;`, redirections, `$VAR`, globs…), for leading `VAR=value`
/// assignments, for a first word that is a reserved word or a built-in (`exec`, `cd`, `if`…),
/// and for what does not split (an unterminated quote, which the config loader refuses).
pub fn argv(command: &str) -> Vec<String> {
    if !needs_shell(command)
        && let Ok(words) = shell_words::split(command)
        && let Some(first) = words.first()
        && !is_assignment(first)
        && !SHELL_WORDS.contains(&first.as_str())
    {
        return words;
    }
    vec!["/bin/sh".into(), "-c".into(), command.into()]
}

/// True when `command` runs through `/bin/sh -c` (see [`argv`]).
pub fn runs_in_shell(command: &str) -> bool {
    argv(command).first().is_some_and(|p| p == "/bin/sh")
}

/// `NAME=value`, with a valid shell variable name: an assignment when it comes first.
fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        let mut chars = name.chars();
        chars.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
            && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
    })
}

/// Why `/bin/sh` cannot parse each of `scripts` (read with `sh -n`, never run), `None` for
/// those it can; the shells run side by side. Where no shell can be started, a script that does
/// not split into words (an unterminated quote) is the one error found.
pub fn shell_syntax_errors(scripts: &[&str]) -> Vec<Option<String>> {
    const AT_ONCE: usize = 64;
    let mut out = Vec::with_capacity(scripts.len());
    for chunk in scripts.chunks(AT_ONCE) {
        let children: Vec<io::Result<std::process::Child>> = chunk
            .iter()
            .map(|script| {
                Command::new("/bin/sh")
                    .args(["-n", "-c", script])
                    .env_clear()
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
            })
            .collect();
        for (script, child) in chunk.iter().zip(children) {
            let verdict = match child.and_then(std::process::Child::wait_with_output) {
                Ok(o) if o.status.success() => None,
                Ok(o) => Some(syntax_message(&String::from_utf8_lossy(&o.stderr))),
                Err(_) => shell_words::split(script).err().map(|_| "unterminated quoted string".to_string()),
            };
            out.push(verdict);
        }
    }
    out
}

/// The message of `sh -n` without the shell's name and the words "syntax error", lowercase,
/// with the line of the script when it is not the first: `sh: 1: Syntax error: Unterminated
/// quoted string` (dash), `sh: -c: line 1: unexpected EOF while looking for matching `''` (bash).
fn syntax_message(stderr: &str) -> String {
    let last = stderr.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("");
    let mut rest = last.strip_prefix("/bin/sh: ").or_else(|| last.strip_prefix("sh: ")).unwrap_or(last);
    rest = rest.strip_prefix("-c: ").unwrap_or(rest);
    let mut line = None;
    let numbered = rest.strip_prefix("line ").unwrap_or(rest);
    if let Some((n, after)) = numbered.split_once(": ")
        && let Ok(n) = n.parse::<u32>()
    {
        line = Some(n);
        rest = after;
    }
    for prefix in ["Syntax error: ", "syntax error: "] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let mut message: String =
        rest.chars().take(1).flat_map(char::to_lowercase).chain(rest.chars().skip(1)).collect();
    if message.is_empty() {
        message = "/bin/sh cannot parse it".into();
    }
    match line {
        Some(n) if n > 1 => format!("{message} (line {n} of the script)"),
        _ => message,
    }
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
    /// Listening sockets handed on as descriptors 3, 4… with `LISTEN_FDS`, `LISTEN_PID` and
    /// `LISTEN_FDNAMES` (the systemd protocol); empty for most processes.
    pub sockets: &'a [RawFd],
    /// `LISTEN_FDNAMES`: one name per socket, `:`-separated.
    pub fd_names: &'a str,
}

/// The variables of the systemd protocol: pm3 sets them for a process with sockets, and
/// removes them from the environment of every other (they would describe someone else's
/// descriptors).
const LISTEN_VARS: [&str; 3] = ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"];

/// Room for the digits of any pid (`pid_max` is at most 2^22) and the NUL after them.
const PID_DIGITS: usize = 11;

/// `LISTEN_PID=` and room for the digits.
const PID_SLOT: usize = "LISTEN_PID=".len() + PID_DIGITS;

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
///
/// Through a vfork of our own (`clone` with `CLONE_VM | CLONE_VFORK | CLONE_FILES`: nothing of
/// the daemon is copied, not even its descriptor table), with every descriptor opened and
/// checked before the call, so that the child only moves them into place and executes.
///
/// Why not `posix_spawn`: its child gets a copy of the daemon's whole descriptor table and
/// closes it again at `execve`, one descriptor at a time. A daemon with 1,000 instances holds
/// about 5,000 descriptors, so each spawn then cost about 0.3 ms of kernel time, and a start of
/// 1,000 grew with the square of the count. Here the daemon keeps its long-lived descriptors
/// high ([`super::park`]) and the child takes a private table of only the low ones
/// (`close_range(…, CLOSE_RANGE_UNSHARE)`), where its pipes and sockets are. The child also sets
/// its own working directory, umask and descriptor limit (those of the command that started the
/// daemon), so the daemon never changes its own for a spawn while its other threads run.
pub fn spawn(launch: &Launch<'_>) -> Result<Spawned, SpawnError> {
    let (out_read, out_child) = pipe_pair().map_err(SpawnError::Pipe)?;
    let (err_read, err_child) = pipe_pair().map_err(SpawnError::Pipe)?;
    let (program, _) = launch.argv.split_first().map_or(("", &[][..]), |(p, a)| (p.as_str(), a));
    let exec_error =
        |source| SpawnError::Exec { program: program.to_string(), cwd: launch.cwd.to_path_buf(), source };
    // A bare name is looked up on the child's `PATH`; a path (`./server`) is used as written,
    // relative to the working directory.
    let path = if program.contains('/') {
        PathBuf::from(program)
    } else {
        find_program(program, launch.env).ok_or_else(|| exec_error(io::ErrorKind::NotFound.into()))?
    };
    let null = File::open("/dev/null").map_err(exec_error)?;
    let stdio = [null.as_raw_fd(), out_child.as_raw_fd(), err_child.as_raw_fd()];
    // Under a daemon the process carries its markers (`process::marker`), whatever the starting
    // environment said; elsewhere (`pm3 run`) it carries none, so no daemon ever takes it for one
    // of its own.
    // Passed to the child as it is built, without copying the map.
    let home = marker::home().and_then(|h| h.to_str());
    let count = launch.sockets.len().to_string();
    let sockets = (!launch.sockets.is_empty())
        .then_some([("LISTEN_FDS", count.as_str()), ("LISTEN_FDNAMES", launch.fd_names)])
        .into_iter()
        .flatten();
    let env = launch
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .filter(|(k, _)| *k != marker::HOME_VAR || home.is_none())
        .filter(|(k, _)| *k != marker::NAME_VAR || home.is_some())
        .filter(|(k, _)| !LISTEN_VARS.contains(k))
        .chain(home.map(|h| (marker::HOME_VAR, h)))
        .chain(sockets);
    let mut prepared = Prepared::new(&path, launch.argv, env, launch.cwd).map_err(exec_error)?;
    if !launch.sockets.is_empty() {
        prepared.reserve_pid_slot();
    }
    let spawned = prepared.clone_exec(stdio, launch.sockets);
    // Only the child holds the write side of its pipes from now on.
    drop((null, out_child, err_child));
    let pid = spawned.map_err(exec_error)?;
    // Exits are collected through pidfds by the supervisor.
    Ok(Spawned { pid, start_time: start_time(pid), out: out_read, err: err_read })
}

/// Everything the child needs, allocated and checked up front, so that between `clone` and
/// `execve` it only makes system calls.
struct Prepared {
    path: CString,
    cwd: CString,
    _strings: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// The umask and descriptor limit of the command that started the daemon, when the daemon
    /// runs with others ([`super::limits`]).
    umask: Option<libc::mode_t>,
    nofile: Option<libc::rlimit>,
    /// `LISTEN_PID=` and room for the digits, which the child writes itself (in a cell: it is
    /// written through a shared borrow of the whole).
    pid_slot: Option<Box<std::cell::UnsafeCell<[u8; PID_SLOT]>>>,
}

impl Prepared {
    /// `argv[0]` stays the name as written (`sleep`), the program is `path`, run in `cwd`.
    fn new<'a>(
        path: &Path,
        argv: &[String],
        env: impl Iterator<Item = (&'a str, &'a str)>,
        cwd: &Path,
    ) -> io::Result<Prepared> {
        use std::os::unix::ffi::OsStrExt;
        let nul = |_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the command or environment");
        let path = CString::new(path.as_os_str().as_bytes()).map_err(nul)?;
        let cwd = CString::new(cwd.as_os_str().as_bytes()).map_err(nul)?;
        let args: Vec<CString> =
            argv.iter().map(|a| CString::new(a.as_bytes())).collect::<Result<_, _>>().map_err(nul)?;
        let vars: Vec<CString> =
            env.map(|(k, v)| CString::new(format!("{k}={v}"))).collect::<Result<_, _>>().map_err(nul)?;
        // The pointers stay valid: a CString's buffer does not move when the CString does.
        let pointers = |list: &[CString]| -> Vec<*const libc::c_char> {
            list.iter().map(|c| c.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
        };
        let (argv, envp) = (pointers(&args), pointers(&vars));
        let mut strings = args;
        strings.extend(vars);
        let (umask, nofile) = super::limits::for_children();
        Ok(Prepared { path, cwd, _strings: strings, argv, envp, umask, nofile, pid_slot: None })
    }

    /// Adds `LISTEN_PID=` to the environment with room for the child's pid, which only the
    /// child knows (it writes it between clone and exec: [`Prepared::clone_exec`]).
    fn reserve_pid_slot(&mut self) {
        let mut text = [0u8; PID_SLOT];
        text[.."LISTEN_PID=".len()].copy_from_slice(b"LISTEN_PID=");
        let slot = Box::new(std::cell::UnsafeCell::new(text));
        // The pointer stays valid: a box's contents do not move when the box does.
        let at = self.envp.len().saturating_sub(1);
        self.envp.insert(at, slot.get().cast::<libc::c_char>().cast_const());
        self.pid_slot = Some(slot);
    }

    /// A vfork of our own (`clone` with `CLONE_VM | CLONE_VFORK | CLONE_FILES`, on a stack of
    /// its own, as `posix_spawn` does it), then in the child: a private descriptor table of the
    /// low descriptors only, its working directory, umask and descriptor limit, own process
    /// group, default signal handlers, empty signal mask, `stdio` on 0-2 and the sockets on 3…,
    /// its own pid written into `LISTEN_PID`, then `execve`. The child shares our memory until
    /// it execs: it only makes async-signal-safe calls on what was prepared before, allocates
    /// nothing, and reports a failure by writing its errno where we read it once it is gone.
    fn clone_exec(&self, stdio: [RawFd; 3], sockets: &[RawFd]) -> io::Result<u32> {
        const STACK: usize = 64 << 10;
        if sockets.len() > crate::listen::MAX_LISTEN {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many listening sockets"));
        }
        let mut sources = [-1 as RawFd; 3 + crate::listen::MAX_LISTEN];
        let count = 3 + sockets.len();
        sources[..3].copy_from_slice(&stdio);
        sources[3..count].copy_from_slice(sockets);
        let slot: *mut u8 = match &self.pid_slot {
            // SAFETY: within the cell's array; only the child writes there, before it execs.
            Some(s) => unsafe { s.get().cast::<u8>().add("LISTEN_PID=".len()) },
            None => std::ptr::null_mut(),
        };
        let mut args = ChildArgs { sources, count, slot, prepared: self, errno: 0 };
        let mut stack = vec![0u8; STACK];
        // The stack grows down from its end, 16-byte aligned.
        let top = (stack.as_mut_ptr() as usize + STACK) & !15;
        // Signals stay blocked across the clone so that no handler of the daemon runs in the
        // child (on our memory); the child resets the handlers, then unblocks.
        // SAFETY: sigset_t is a plain bit set, filled by sigfillset.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: fills and installs a signal mask we own.
        unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        }
        // SAFETY: the child runs `child_entry` on `stack` with `args`, both alive until it has
        // exec'd or exited (CLONE_VFORK suspends us until then).
        let pid = unsafe {
            libc::clone(
                child_entry,
                top as *mut libc::c_void,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_FILES | libc::SIGCHLD,
                (&mut args as *mut ChildArgs<'_>).cast(),
            )
        };
        let clone_error = io::Error::last_os_error();
        // SAFETY: restores the mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        drop(stack);
        if pid < 0 {
            return Err(clone_error);
        }
        // SAFETY: the child wrote it (or not) before it exec'd or exited; read it from memory.
        let errno = unsafe { std::ptr::read_volatile(&args.errno) };
        if errno == 0 {
            return u32::try_from(pid).map_err(|_| io::Error::other("clone returned no pid"));
        }
        // The exec failed and the child has exited: reap it.
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        Err(io::Error::from_raw_os_error(errno))
    }
}

/// What the child of [`Prepared::clone_exec`] needs; `errno` is its answer when the exec fails.
struct ChildArgs<'a> {
    sources: [RawFd; 3 + crate::listen::MAX_LISTEN],
    count: usize,
    slot: *mut u8,
    prepared: &'a Prepared,
    errno: i32,
}

/// The child between `clone` and `execve`: async-signal-safe calls only, no allocation, and
/// nothing of the parent's state changed but `args.errno` and the pid slot.
extern "C" fn child_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `clone_exec` passes a `ChildArgs` that outlives this child's use of it.
    let args = unsafe { &mut *arg.cast::<ChildArgs<'_>>() };
    // SAFETY: a freshly cloned child, with the descriptors and buffers `clone_exec` prepared.
    let errno = unsafe { exec_child(&args.sources[..args.count], args.slot, args.prepared) };
    // SAFETY: plain writes and _exit.
    unsafe {
        std::ptr::write_volatile(&mut args.errno, errno.max(1));
        libc::_exit(127)
    }
}

/// Sets the child up and executes the program; returns only on failure, with the errno.
///
/// # Safety
/// Call only in a child cloned with `CLONE_VM | CLONE_FILES`; `sources` are open descriptors
/// (stdio then sockets), `slot` is null or points to `PID_DIGITS` writable bytes inside
/// `prepared`'s environment.
unsafe fn exec_child(sources: &[RawFd], slot: *mut u8, prepared: &Prepared) -> i32 {
    // SAFETY: the caller's contract; every call below is async-signal-safe.
    unsafe {
        let errno = || *libc::__errno_location();
        // First, a descriptor table of our own, the parent's stays as it is. Only descriptors
        // below the highest source are copied (the daemon keeps its many long-lived ones above
        // them); every copied one but the sources is close-on-exec. A kernel without
        // `CLOSE_RANGE_UNSHARE` (before 5.9) copies the whole table instead.
        let low = sources.iter().copied().max().unwrap_or(2).max(2) as libc::c_uint + 1;
        if libc::syscall(libc::SYS_close_range, low, libc::c_uint::MAX, libc::CLOSE_RANGE_UNSHARE) != 0
            && libc::unshare(libc::CLONE_FILES) != 0
        {
            return errno();
        }
        if libc::chdir(prepared.cwd.as_ptr()) != 0 {
            return errno();
        }
        if let Some(mask) = prepared.umask {
            libc::umask(mask);
        }
        if let Some(lim) = &prepared.nofile {
            libc::setrlimit(libc::RLIMIT_NOFILE, lim);
        }
        // Handlers of the daemon (tokio's signal pipes) are not the program's: back to default.
        // SIGPIPE too, which Rust ignores; other ignored signals stay ignored, as with posix_spawn.
        for sig in 1..libc::SIGRTMIN() {
            let mut current: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut current) == 0
                && current.sa_sigaction != libc::SIG_DFL
                && (current.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)
            {
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &default, std::ptr::null_mut());
            }
        }
        if libc::setpgid(0, 0) != 0 {
            return errno();
        }
        // Every source above the targets first, so that moving one never overwrites another.
        let floor = sources.len() as libc::c_int;
        let mut high = [-1 as RawFd; 3 + crate::listen::MAX_LISTEN];
        for (i, &fd) in sources.iter().enumerate() {
            high[i] = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, floor);
            if high[i] < 0 {
                return errno();
            }
        }
        // dup2 leaves the new descriptor without close-on-exec: these, and only these, pass.
        for (target, &fd) in high[..sources.len()].iter().enumerate() {
            if libc::dup2(fd, target as libc::c_int) < 0 {
                return errno();
            }
        }
        if !slot.is_null() {
            let mut pid = libc::getpid() as u32;
            let mut digits = [0u8; PID_DIGITS];
            let mut n = 0;
            loop {
                digits[n] = b'0' + (pid % 10) as u8;
                n += 1;
                pid /= 10;
                if pid == 0 || n == PID_DIGITS - 1 {
                    break;
                }
            }
            for i in 0..n {
                *slot.add(i) = digits[n - 1 - i];
            }
            *slot.add(n) = 0;
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::execve(prepared.path.as_ptr(), prepared.argv.as_ptr(), prepared.envp.as_ptr());
        errno()
    }
}

/// `/bin/sh -c command` in its own process group, with `cwd` and `env` (less `PM3_NAME`), stdin
/// from /dev/null: how hooks and `exec:` health checks run.
pub fn shell(command: &str, cwd: &Path, env: &BTreeMap<String, String>) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(command).current_dir(cwd).env_clear().envs(env).stdin(Stdio::null()).process_group(0);
    super::limits::restore_in_child(&mut cmd);
    // Only an instance's own process carries its name: a hook left running by a daemon that
    // died must not be taken for the instance by the next one.
    cmd.env_remove(marker::NAME_VAR);
    // Sockets are the instance's, not its hooks' or probes'.
    for var in LISTEN_VARS {
        cmd.env_remove(var);
    }
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
    let read = super::park(read);
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
    Ok(super::park(OwnedFd::from(f)))
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
    fn assignments_reserved_words_and_built_ins_go_to_sh() {
        let sh = |c: &str| vec!["/bin/sh".to_string(), "-c".into(), c.into()];
        for c in [
            "PORT=5000 python3 app.py",
            "A= B='x y' env",
            "_X1=1 sleep 1",
            "exec sleep 1000",
            "exec",
            "cd sub",
            "export A=1",
            ". ./env.sh",
            "source env.sh",
            "eval 'echo hi; exec sleep 1'",
            "set -e",
            "ulimit -n 64",
            "umask 077",
            "trap '' TERM",
            "time sleep 1",
            "! false",
            "if",
            "while",
            "'exec' sleep 1",
        ] {
            assert_eq!(argv(c), sh(c), "{c}");
            assert!(runs_in_shell(c), "{c}");
        }
        // Assignments elsewhere, names that only start like one, and programs that are also
        // built-ins run directly.
        assert_eq!(argv("env A=1 sleep 1"), ["env", "A=1", "sleep", "1"]);
        assert_eq!(argv("./A=1 x"), ["./A=1", "x"]);
        assert_eq!(argv("1A=2 x"), ["1A=2", "x"]);
        assert_eq!(argv("=x y"), ["=x", "y"]);
        assert_eq!(argv("echo exec"), ["echo", "exec"]);
        assert_eq!(argv("true"), ["true"]);
        assert_eq!(argv("executor run"), ["executor", "run"]);
        assert!(!runs_in_shell("sleep 1000"));
    }

    #[test]
    fn shell_syntax_is_checked_by_sh_itself() {
        let got = shell_syntax_errors(&[
            "echo 'oops",
            "echo ok && sleep 1",
            "if true; then echo x",
            "cat <<EOF\nit's\nEOF",
            "echo \"$(echo \"a'b\")\"",
            "echo hi # it's",
        ]);
        let verdicts: Vec<bool> = got.iter().map(Option::is_some).collect();
        assert_eq!(verdicts, [true, false, true, false, false, false], "{got:?}");
        assert!(shell_syntax_errors(&[]).is_empty());
    }

    #[test]
    fn syntax_messages_lose_the_shell_name() {
        assert_eq!(
            syntax_message("sh: 1: Syntax error: Unterminated quoted string\n"),
            "unterminated quoted string"
        );
        assert_eq!(
            syntax_message("sh: 3: Syntax error: end of file unexpected (expecting \"fi\")\n"),
            "end of file unexpected (expecting \"fi\") (line 3 of the script)"
        );
        assert_eq!(
            syntax_message("sh: -c: line 1: unexpected EOF while looking for matching `''\n"),
            "unexpected EOF while looking for matching `''"
        );
        assert_eq!(
            syntax_message("sh: syntax error: unterminated quoted string"),
            "unterminated quoted string"
        );
        assert_eq!(syntax_message(""), "/bin/sh cannot parse it");
    }

    /// The child gets its sockets on 3… and its own pid in `LISTEN_PID`, the descriptors in
    /// any order of numbers (a socket whose number is one of the targets is moved first).
    #[test]
    fn the_socket_path_hands_on_descriptors_and_its_own_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out_file = dir.path().join("out");
        let script = format!(
            "echo \"$LISTEN_PID $LISTEN_FDS $LISTEN_FDNAMES $$\" > {}; exec ls /proc/self/fd >> {}",
            out_file.display(),
            out_file.display()
        );
        let argv = vec!["/bin/sh".to_string(), "-c".into(), script];
        let mut env = BTreeMap::new();
        env.insert("PATH".to_string(), "/usr/bin:/bin".to_string());
        env.insert("LISTEN_FDS".to_string(), "7".to_string());
        let a = std::net::TcpListener::bind("127.0.0.1:0").expect("a");
        let b = std::net::TcpListener::bind("127.0.0.1:0").expect("b");
        let fds = [b.as_raw_fd(), a.as_raw_fd()];
        let launch = Launch { argv: &argv, cwd: dir.path(), env: &env, sockets: &fds, fd_names: "b:a" };
        let spawned = spawn(&launch).expect("spawn");
        let mut status = 0;
        // SAFETY: waits for the child we just started.
        unsafe { libc::waitpid(spawned.pid as libc::pid_t, &mut status, 0) };
        let text = std::fs::read_to_string(&out_file).expect("output");
        let mut lines = text.lines();
        let first: Vec<&str> = lines.next().expect("line").split(' ').collect();
        assert_eq!(first, [spawned.pid.to_string().as_str(), "2", "b:a", spawned.pid.to_string().as_str()]);
        // `ls` itself opens its directory: 0-2, the two sockets, and that one; descriptors the
        // test runner itself inherited without close-on-exec pass through any spawn, leave them.
        let leaked = |fd: u32| {
            // SAFETY: F_GETFD only reads the flags of a descriptor number.
            let flags = unsafe { libc::fcntl(fd as RawFd, libc::F_GETFD) };
            fd > 5 && flags >= 0 && flags & libc::FD_CLOEXEC == 0
        };
        let mut fds: Vec<u32> =
            lines.filter_map(|l| l.trim().parse().ok()).filter(|&fd| !leaked(fd)).collect();
        fds.sort();
        assert_eq!(fds, [0, 1, 2, 3, 4, 5], "{text}");
        // A program that cannot run is an error of the spawn, not a child that exits.
        let bad = vec!["/nonexistent/program".to_string()];
        let launch = Launch { argv: &bad, cwd: dir.path(), env: &env, sockets: &fds_of(&a), fd_names: "a" };
        let e = spawn(&launch).expect_err("no such program");
        assert!(e.to_string().contains("No such file"), "{e}");
    }

    fn fds_of(l: &std::net::TcpListener) -> [RawFd; 1] {
        [l.as_raw_fd()]
    }

    /// How long a spawn takes with and without sockets (run with `--ignored --nocapture`).
    #[test]
    #[ignore]
    fn spawn_cost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let argv = vec!["/bin/true".to_string()];
        let mut env = BTreeMap::new();
        env.insert("PATH".to_string(), "/usr/bin:/bin".to_string());
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let fds = [l.as_raw_fd()];
        // Interleaved, one of each in turn, so that the machine's load weighs on both alike.
        let n = 1000;
        let mut times: [Vec<std::time::Duration>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..n {
            for (i, sockets) in [&[][..], &fds[..]].into_iter().enumerate() {
                let launch = Launch { argv: &argv, cwd: dir.path(), env: &env, sockets, fd_names: "web" };
                let t = std::time::Instant::now();
                let s = spawn(&launch).expect("spawn");
                times[i].push(t.elapsed());
                let mut status = 0;
                // SAFETY: waits for the child we just started.
                unsafe { libc::waitpid(s.pid as libc::pid_t, &mut status, 0) };
            }
        }
        for (what, mut t) in ["without sockets", "with a socket (LISTEN_PID)"].into_iter().zip(times) {
            t.sort();
            let us = |d: std::time::Duration| d.as_secs_f64() * 1e6;
            println!(
                "{what}: median {:.0} µs, p10 {:.0} µs, p90 {:.0} µs",
                us(t[n / 2]),
                us(t[n / 10]),
                us(t[n * 9 / 10])
            );
        }
    }

    #[test]
    fn start_time_of_self_is_readable() {
        assert!(start_time(std::process::id()).is_some());
        assert_eq!(start_time(u32::MAX), None);
    }
}
