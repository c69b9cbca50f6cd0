//! Hostile input, hostile children, other users: absurd values are config errors (at their line
//! and column) or one-line command errors, never an abort; raw requests that skip the CLI are
//! checked again by the daemon; another user is refused by the daemon and cannot read its files;
//! an unsafe data directory is refused; a closed or full stdout never makes the CLI panic;
//! processes get the caller's descriptor limit and umask; ignored files cannot postpone a watch
//! restart.
//!
//! Tests that act as another user need root and `setpriv` (as CI has); elsewhere they say why
//! they are skipped and pass.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use pm3::protocol::{ConfigPayload, Envelope, Request, VERSION};
use pm3::spec::{ConfigFile, ProcessDef};
use serde_json::Value;

use crate::harness::{BIN, Pm3, alive, mode, names, stderr, stdout};

/// The uid of `nobody`, as `setpriv --reuid=nobody` runs it.
const NOBODY: u32 = 65534;

/// Sends one request line as the test's own user (the daemon's) and returns the answer.
fn raw(pm3: &Pm3, line: &str) -> Value {
    let mut s = UnixStream::connect(pm3.socket()).expect("connect to pm3.sock");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.write_all(format!("{line}\n").as_bytes()).expect("send");
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer).expect("read the answer");
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

/// A request as a client other than the CLI could send it, bypassing the loader's checks.
fn request(req: Request) -> String {
    serde_json::to_string(&Envelope { v: VERSION, req }).expect("encode")
}

/// A start of `defs` as if they came from the project's `pm3.toml`.
fn start_of(pm3: &Pm3, defs: Vec<ProcessDef>) -> String {
    let config = ConfigPayload {
        file: ConfigFile { path: pm3.config_path(), processes: defs },
        env: BTreeMap::from([("PATH".to_string(), "/usr/bin:/bin".to_string())]),
    };
    request(Request::Start { config: Some(config), targets: Vec::new() })
}

fn error_of(answer: &Value) -> String {
    match answer["error"]["message"].as_str() {
        Some(m) => m.to_string(),
        None => panic!("expected an error, got {answer}"),
    }
}

#[test]
fn an_absurd_instance_count_is_a_located_config_error_not_an_abort() {
    let pm3 = Pm3::with_config("[w]\ncommand = \"sleep 1000\"\ninstances = 4294967295\n");
    let out = pm3.fails(&["start"]);
    let path = pm3.config_path().display().to_string();
    assert_eq!(
        stderr(&out),
        format!(
            "error: `instances` must be at most 1024, got 4294967295\n \
             --> {path}:3:13\n  |\n3 | instances = 4294967295\n  |             ^^^^^^^^^^\n\n\
             error: could not load {path}: 1 error\n"
        ),
        "{}",
        pm3.explain(&out)
    );
    assert!(!pm3.socket().exists(), "nothing was sent, no daemon started");
}

#[test]
fn scale_beyond_the_maximum_is_one_line_and_the_daemon_keeps_serving() {
    let pm3 = Pm3::with_config("[w]\ncommand = \"sleep 1000\"\n");
    pm3.ok(&["start"]);
    let pid = pm3.pid_of("w");
    let out = pm3.fails(&["scale", "w", "4294967295"]);
    assert_eq!(
        stderr(&out),
        "error: cannot scale `w` to 4294967295 instances: the maximum is 1024\n",
        "{}",
        pm3.explain(&out)
    );
    // The same through the socket, skipping the CLI's check.
    let answer = raw(&pm3, &request(Request::Scale { process: "w".into(), count: u32::MAX }));
    assert!(error_of(&answer).contains("the maximum is 1024"), "{answer}");
    assert_eq!(names(&pm3.list()), ["w"], "nothing changed");
    assert_eq!(pm3.pid_of("w"), pid);
    let daemon = pm3.daemon_pid().expect("pm3.pid");
    assert!(alive(daemon), "the daemon still runs");
}

/// `log_max_size` below 4K froze the daemon (a rotation per line); a NUL byte in `command`
/// reached the spawn. Both are config errors at their value.
#[test]
fn tiny_log_sizes_and_nul_bytes_are_config_errors_at_their_value() {
    let pm3 = Pm3::with_config(
        "[w]\ncommand = \"sleep\\u0000 1000\"\n\n[v]\ncommand = \"sleep 1000\"\nlog_max_size = \"1B\"\n",
    );
    let out = pm3.fails(&["start"]);
    let path = pm3.config_path().display().to_string();
    assert_eq!(
        stderr(&out),
        format!(
            "error: `command` must not contain a NUL character\n \
             --> {path}:2:11\n  |\n2 | command = \"sleep\\u0000 1000\"\n  |           ^^^^^^^^^^^^^^^^^^\n\n\
             error: `log_max_size` must be at least 4K (4096 bytes), got 1 bytes\n \
             --> {path}:6:16\n  |\n6 | log_max_size = \"1B\"\n  |                ^^^^\n\n\
             error: could not load {path}: 2 errors\n"
        ),
        "{}",
        pm3.explain(&out)
    );
}

/// The socket is an API: a start sent by something other than the CLI is checked again, field
/// by field, and refused before anything is removed or started. A name like `../../x` would
/// have put log files outside `logs/`.
#[test]
fn raw_requests_are_validated_by_the_daemon() {
    let pm3 = Pm3::with_config("[a]\ncommand = \"sleep 1000\"\n\n[b]\ncommand = \"sleep 1000\"\n");
    pm3.ok(&["start"]);
    let before = (pm3.pid_of("a"), pm3.pid_of("b"));
    let def = |name: &str| ProcessDef::new(name, "sleep 1000", pm3.project.clone());

    let escape = def("../../escape");
    let answer = raw(&pm3, &start_of(&pm3, vec![escape]));
    assert!(error_of(&answer).contains("invalid process name `../../escape`"), "{answer}");
    assert!(!pm3.root.join("escape-out.log").exists(), "no log file outside logs/");

    let mut many = def("many");
    many.instances = u32::MAX;
    let mut tiny_log = def("tiny");
    tiny_log.log_max_size = 0;
    let mut relative = def("rel");
    relative.cwd = PathBuf::from("project");
    for (bad, why) in [
        (many, "`instances` must be at most 1024, got 4294967295"),
        (tiny_log, "`log_max_size` must be at least 4K"),
        (relative, "`cwd` must be an absolute path"),
    ] {
        let answer = raw(&pm3, &start_of(&pm3, vec![bad]));
        assert!(error_of(&answer).contains(why), "{why}: {answer}");
    }

    // A whole-file start that drops `b` and breaks `a`: refused before `b` is removed.
    let mut broken = def("a");
    broken.command = "sleep\u{0}1000".into();
    let answer = raw(&pm3, &start_of(&pm3, vec![broken]));
    assert!(error_of(&answer).contains("`command` must not contain a NUL character"), "{answer}");
    assert_eq!(names(&pm3.list()), ["a", "b"], "nothing removed");
    assert_eq!((pm3.pid_of("a"), pm3.pid_of("b")), before, "nothing restarted");
}

/// Every file pm3 creates in its data directory is 0600 (the directories 0700), whatever the
/// umask of the command that started it.
#[test]
fn every_file_in_the_data_directory_is_private() {
    let pm3 = Pm3::with_config("[w]\ncommand = \"sh -c 'echo hello; echo oops >&2; exec sleep 1000'\"\n");
    let out = pm3.start_after("umask 000");
    assert_eq!(out.status.code(), Some(0), "{}", pm3.explain(&out));
    pm3.wait_log("w", "out", "hello");
    pm3.wait_log("w", "err", "oops");
    pm3.ok(&["save"]);
    pm3.wait_for("state.json", || pm3.home.join("state.json").exists());
    assert_eq!(mode(&pm3.home), 0o700);
    assert_eq!(mode(&pm3.home.join("logs")), 0o700);
    for file in [
        "state.json",
        "dump.json",
        "daemon.log",
        "pm3.pid",
        "pm3.lock",
        "pm3.sock",
        "logs/w-out.log",
        "logs/w-err.log",
    ] {
        assert_eq!(mode(&pm3.home.join(file)), 0o600, "{file}");
    }
    // The process itself keeps the umask it was started with.
    let pid = pm3.pid_of("w");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert!(status.contains("Umask:\t0000"), "{status}");
}

/// A data directory others could write to, or reached through their symlink, is refused with
/// its name and the fix; nothing is created in it.
#[test]
fn an_unsafe_data_directory_is_refused() {
    let pm3 = Pm3::new();
    fs::create_dir(&pm3.home).expect("mkdir home");
    fs::set_permissions(&pm3.home, fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = pm3.fails(&["list"]);
    let home = pm3.home.display().to_string();
    assert_eq!(
        stderr(&out),
        format!(
            "error: refusing to use {home}: it is writable by group and others (mode 0777); fix it with `chmod 700 {home}`\n"
        ),
        "{}",
        pm3.explain(&out)
    );
    assert!(fs::read_dir(&pm3.home).expect("read home").next().is_none(), "nothing created");

    // Through a symlink of ours, the target is what counts.
    let real = pm3.root.join("real");
    fs::create_dir(&real).expect("mkdir");
    fs::set_permissions(&real, fs::Permissions::from_mode(0o770)).expect("chmod");
    fs::remove_dir(&pm3.home).expect("rmdir");
    std::os::unix::fs::symlink(&real, &pm3.home).expect("symlink");
    let out = pm3.fails(&["list"]);
    assert!(stderr(&out).contains("it is writable by its group (mode 0770)"), "{}", pm3.explain(&out));
    fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).expect("chmod");
    pm3.ok(&["list"]);
    pm3.ok(&["kill"]);

    let Some(_) = other_user("symlinks owned by another user") else { return };
    // A symlink owned by someone else could be pointed anywhere: refused, even to our directory.
    std::os::unix::fs::lchown(&pm3.home, Some(NOBODY), None).expect("lchown");
    let out = pm3.fails(&["list"]);
    assert!(
        stderr(&out).contains(&format!("refusing to use {home}: the symlink is owned by uid {NOBODY}")),
        "{}",
        pm3.explain(&out)
    );
    // Our symlink to a directory another user owns: refused.
    std::os::unix::fs::lchown(&pm3.home, Some(0), None).expect("lchown");
    std::os::unix::fs::chown(&real, Some(NOBODY), None).expect("chown");
    let out = pm3.fails(&["list"]);
    assert!(
        stderr(&out).contains(&format!("it is owned by uid {NOBODY}, not by you")),
        "{}",
        pm3.explain(&out)
    );
    std::os::unix::fs::chown(&real, Some(0), None).expect("chown back");
}

/// How to run a command as `nobody`, when this test can: root, `setpriv`, and a python3 that
/// `nobody` may execute. `None` (with a note on stderr) otherwise.
fn other_user(what: &str) -> Option<PathBuf> {
    // SAFETY: geteuid only reads the caller's effective uid.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped ({what}): needs root to act as another user");
        return None;
    }
    let works = |py: &Path| {
        Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(py)
            .args(["-c", "pass"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let found = ["/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists() && works(p));
    if found.is_none() {
        eprintln!("skipped ({what}): setpriv is missing, or nobody can run python3");
    }
    found
}

/// Runs `args` as `nobody` (and group `nogroup`, no other groups).
fn as_nobody(args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv")
}

/// One request line to `socket` as `nobody`, with python's socket module; the answer line.
const CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
try:
    s.sendall((sys.argv[2] + "\n").encode())
except OSError:
    pass
data = b""
while not data.endswith(b"\n"):
    try:
        chunk = s.recv(65536)
    except OSError:
        break
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode())
"#;

/// Another user who can reach the socket (a directory opened up, a socket chmod'ed 0666) is
/// still refused by the daemon itself, with one line naming both uids, and changes nothing;
/// it cannot read the state file; and its own pm3 refuses a data directory that is not its own.
#[test]
fn another_user_is_refused_and_cannot_read_the_state() {
    let Some(py) = other_user("another user talking to the daemon") else { return };
    let py = py.display().to_string();
    let pm3 = Pm3::with_config("[w]\ncommand = \"sleep 1000\"\n");
    pm3.ok(&["start"]);
    let pid = pm3.pid_of("w");
    pm3.wait_for("state.json", || pm3.home.join("state.json").exists());
    // Open the way to the socket as a careless administrator would.
    for dir in [&pm3.root, &pm3.home] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o711)).expect("chmod dir");
    }
    let socket = pm3.socket().display().to_string();
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o666)).expect("chmod socket");

    let list = as_nobody(&[&py, "-c", CLIENT, &socket, r#"{"v":1,"req":{"cmd":"list"}}"#]);
    let answer = stdout(&list);
    assert_eq!(answer.lines().count(), 1, "one line: {answer:?} {}", stderr(&list));
    let v: Value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"));
    assert_eq!(v["error"]["kind"], "permission_denied", "{v}");
    assert_eq!(
        error_of(&v),
        format!(
            "permission denied: this pm3 daemon runs as uid 0 and answers only its own user, not uid {NOBODY}; \
             use your own data directory (PM3_HOME)"
        )
    );

    // A start from `nobody` starts nothing.
    let mut def = ProcessDef::new("intruder", "sleep 1000", pm3.project.clone());
    def.instances = 2;
    let start = start_of(&pm3, vec![def]);
    let answer = stdout(&as_nobody(&[&py, "-c", CLIENT, &socket, &start]));
    assert!(answer.contains("permission denied"), "{answer}");
    assert_eq!(names(&pm3.list()), ["w"], "nothing started");
    assert_eq!(pm3.pid_of("w"), pid);

    let state = pm3.home.join("state.json").display().to_string();
    let cat = as_nobody(&["cat", &state]);
    assert_ne!(cat.status.code(), Some(0), "nobody read state.json: {}", stdout(&cat));
    assert!(stderr(&cat).contains("Permission denied"), "{}", stderr(&cat));

    // `nobody`'s own pm3, pointed at this data directory, refuses it before touching anything.
    let bin_dir = tempfile::Builder::new().prefix("pm3bin-").tempdir().expect("tempdir");
    fs::set_permissions(bin_dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let bin = bin_dir.path().join("pm3");
    fs::copy(BIN, &bin).expect("copy pm3");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod");
    let home = pm3.home.display().to_string();
    let out = as_nobody(&["env", &format!("PM3_HOME={home}"), &bin.display().to_string(), "list"]);
    assert_eq!(out.status.code(), Some(1), "{} {}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out)
            .contains(&format!("refusing to use {home}: it is owned by uid 0, not by you (uid {NOBODY})")),
        "{}",
        stderr(&out)
    );
    let log = fs::read_to_string(pm3.home.join("daemon.log")).unwrap_or_default();
    assert!(log.contains("refused a connection from another user"), "{log}");
}

/// `pm3 completions bash | head -1` exited 101 with "internal error": a reader that went away
/// now ends the command quietly, like other Unix tools.
#[test]
fn a_closed_stdout_ends_quietly() {
    let pm3 = Pm3::with_config("[w]\ncommand = \"sleep 1000\"\n");
    pm3.ok(&["start"]);
    for args in [&["completions", "bash"][..], &["list"], &["list", "--json"], &["log", "w"]] {
        let mut fds = [0; 2];
        // SAFETY: pipe writes two descriptors into the array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors are ours; the read end is closed at once, the write end is
        // handed over to the Stdio.
        let write_end = unsafe {
            libc::close(fds[0]);
            <Stdio as std::os::fd::FromRawFd>::from_raw_fd(fds[1])
        };
        let mut cmd = pm3.command(args);
        cmd.stdout(write_end).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn pm3");
        let mut err = String::new();
        child.stderr.take().expect("stderr").read_to_string(&mut err).expect("read stderr");
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), Some(0), "`pm3 {}` into a closed pipe: {err}", args.join(" "));
        assert_eq!(err, "", "`pm3 {}` is quiet", args.join(" "));
    }
}

/// Any other write error on stdout (`> /dev/full`) exits 1 with a message that names stdout.
#[test]
fn a_full_stdout_is_an_error_naming_stdout() {
    let pm3 = Pm3::with_config("[w]\ncommand = \"sleep 1000\"\n");
    pm3.ok(&["start"]);
    for args in [&["completions", "bash"][..], &["list"], &["list", "--json"], &["info", "w"]] {
        let full = fs::OpenOptions::new().write(true).open("/dev/full").expect("open /dev/full");
        let mut cmd = pm3.command(args);
        cmd.stdout(full).stderr(Stdio::piped());
        let out = cmd.output().expect("run pm3");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "`pm3 {}` > /dev/full: {err}", args.join(" "));
        assert!(err.starts_with("error: cannot write to stdout: No space left on device"), "{err}");
        assert!(!err.contains("panicked") && !err.contains("internal error"), "{err}");
    }
}

/// A failed `pm3 reload` exits 1 with its reason on stderr (spec §5, §8), not on stdout.
#[test]
fn a_failed_reload_gives_its_reason_on_stderr() {
    let pm3 = Pm3::with_config("[w]\ncommand = \"sleep 1000\"\n");
    pm3.ok(&["start"]);
    pm3.wait_online(&["w"]);
    pm3.config("[w]\ncommand = \"/nonexistent/program\"\n");
    let out = pm3.fails(&["reload"]);
    let (o, e) = (stdout(&out), stderr(&out));
    assert!(!o.contains("failed"), "the failure is not on stdout: {}", pm3.explain(&out));
    assert!(e.starts_with("error: failed w: "), "{}", pm3.explain(&out));
    assert!(e.contains("/nonexistent/program"), "the reason names the program: {e}");
}

/// A 50 MB `env` value cannot be sent in one request: the CLI says so before sending, naming
/// the config file, the limit and the value, instead of "lost the connection: Broken pipe".
#[test]
fn a_huge_env_value_names_the_limit_and_the_config_file() {
    let pm3 = Pm3::new();
    let big = "x".repeat(50 << 20);
    pm3.config(&format!("[w]\ncommand = \"sleep 1000\"\nenv = {{ BIG = \"{big}\" }}\n"));
    drop(big);
    let out = pm3.fails(&["start"]);
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "error: {}: too large to send to the daemon: ",
            pm3.config_path().display()
        )),
        "{err}"
    );
    assert!(err.contains("more than the 8.0MiB a request may have"), "{err}");
    assert!(err.contains("its largest value is `env.BIG` of [w] (50.0MiB)"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!pm3.socket().exists(), "no daemon was started for nothing");
}

/// Processes (and hooks) get the soft descriptor limit and the umask of the command that
/// started the daemon, not the daemon's raised limit (20000 or 65536) and private umask.
#[test]
fn processes_get_the_callers_descriptor_limit_and_umask() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one struct.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let soft = 777.min(lim.rlim_max / 2);
    if soft < 64 {
        eprintln!(
            "skipped: the hard descriptor limit ({}) leaves no room to tell limits apart",
            lim.rlim_max
        );
        return;
    }
    let pm3 = Pm3::with_config(
        "[w]\ncommand = \"sleep 1000\"\ninstances = 2\n\
         pre_start = \"echo hook nofile $(ulimit -Sn) umask $(umask)\"\n",
    );
    let out = pm3.start_after(&format!("ulimit -Sn {soft}; umask 027"));
    assert_eq!(out.status.code(), Some(0), "{}", pm3.explain(&out));
    pm3.wait_online(&["w:0", "w:1"]);
    for name in ["w:0", "w:1"] {
        let pid = pm3.pid_of(name);
        let limits = fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
        let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("open files line");
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[3], soft.to_string(), "{name}: {line}");
        let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        assert!(status.contains("Umask:\t0027"), "{name}: {status}");
    }
    let hook = pm3.wait_log("w:0", "out", "hook nofile");
    assert!(hook.contains(&format!("hook nofile {soft} umask 0027")), "{hook}");
    // The daemon itself keeps its room.
    let daemon = pm3.daemon_pid().expect("pm3.pid");
    let limits = fs::read_to_string(format!("/proc/{daemon}/limits")).expect("limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("open files line");
    assert_ne!(line.split_whitespace().nth(3), Some(soft.to_string().as_str()), "{line}");
}

/// A process that writes an ignored file (`*.log`) more often than `watch_debounce` used to
/// postpone every watch restart forever: only watched, non-ignored paths start or extend the
/// quiet period.
#[test]
fn ignored_writes_do_not_postpone_a_watch_restart() {
    let pm3 = Pm3::with_config(
        "[app]\ncommand = \"sleep 1000\"\nwatch = true\nwatch_ignore = [\"*.log\"]\nwatch_debounce = 300\n",
    );
    pm3.write("app.js", "1\n");
    pm3.ok(&["start"]);
    pm3.wait_online(&["app"]);
    let stop = Arc::new(AtomicBool::new(false));
    let noise = {
        let (stop, path) = (stop.clone(), pm3.project.join("noise.log"));
        thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let _ = fs::write(&path, format!("{i}\n"));
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // Let the noise run on its own for a while: it must not restart anything.
    let quiet = pm3.holds_for("no restart from ignored writes", Duration::from_millis(800), |rows| {
        rows.iter().all(|r| r["restarts"] == 0)
    });
    assert_eq!(quiet.len(), 1);
    let touched = Instant::now();
    pm3.write("app.js", "2\n");
    let restarted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pm3.wait_until_within("a restart after the watched write", Duration::from_secs(3), |rows| {
            rows.iter().any(|r| r["name"] == "app" && r["restarts"] == 1)
        })
    }));
    stop.store(true, Ordering::Relaxed);
    let _ = noise.join();
    if let Err(e) = restarted {
        std::panic::resume_unwind(e);
    }
    assert!(touched.elapsed() < Duration::from_secs(3));
    assert_eq!(pm3.info("app")["last_exit"]["reason"], "watch");
}

/// Times `pm3 list --json` `n` times; returns the sorted latencies in ms.
fn list_latencies(pm3: &Pm3, n: usize) -> Vec<f64> {
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            pm3.ok(&["list", "--json"]);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

#[test]
fn fast_writers_do_not_starve_the_daemon() {
    let pm3 = Pm3::with_config(
        "[plain]\ncommand = \"yes\"\nkill_signal = \"SIGINT\"\n\n\
         [stamped]\ncommand = \"yes stamped\"\nlog_date_format = \"%H:%M:%S%.3f\"\n\n\
         [tiny]\ncommand = \"yes tiny\"\nlog_max_size = \"4K\"\nlog_max_files = 1\n\n\
         [quiet]\ncommand = \"sleep 1000\"\n",
    );
    let idle = {
        pm3.ok(&["start", "quiet"]);
        list_latencies(&pm3, 10)
    };
    pm3.ok(&["start"]);
    pm3.wait_for("every writer has written", || {
        ["plain", "stamped", "tiny"]
            .iter()
            .all(|n| fs::metadata(pm3.log_path(n, "out")).is_ok_and(|m| m.len() > 0))
    });
    let busy = list_latencies(&pm3, 30);
    let (median, max) = (busy[busy.len() / 2], busy[busy.len() - 1]);
    eprintln!(
        "list with 3 `yes` writers: median {median:.1} ms, max {max:.1} ms (idle median {:.1} ms)",
        idle[idle.len() / 2]
    );
    // Generous bounds: a debug build on a loaded 2-CPU CI machine, next to the rest of the suite
    // (`bench/fairness.sh` has the release figures: a few ms). A daemon that reads until the
    // pipe is empty never answers at all.
    assert!(median < 300.0 && max < 3000.0, "list under fast writers: {busy:?}");
    // The tiny log rotates at line boundaries and keeps its size, whatever the pace.
    let tiny = fs::metadata(pm3.log_path("tiny", "out")).map(|m| m.len()).unwrap_or(0);
    assert!(tiny <= 4096, "tiny log grew to {tiny} bytes");
    // Stop and kill work under the flood.
    let t = Instant::now();
    pm3.ok(&["stop", "plain", "stamped", "tiny"]);
    assert!(t.elapsed() < Duration::from_secs(10), "stop took {:?}", t.elapsed());
    let rows = pm3.list();
    for n in ["plain", "stamped", "tiny"] {
        assert_eq!(crate::harness::row_in(&rows, n)["status"], "stopped");
    }
    pm3.ok(&["start"]);
    let t = Instant::now();
    pm3.ok(&["kill"]);
    assert!(t.elapsed() < Duration::from_secs(10), "kill took {:?}", t.elapsed());
}

/// A small tmpfs mounted at a path until dropped (lazily unmounted, so a daemon still holding
/// files there cannot keep it busy).
struct SmallDisk(PathBuf);

impl SmallDisk {
    /// `None` (the test is skipped) where mounting is not allowed.
    fn mount(at: &Path, size: &str) -> Option<SmallDisk> {
        fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(at.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_marks_the_gap_and_keeps_the_child_running() {
    let pm3 = Pm3::new();
    let Some(_disk) = SmallDisk::mount(&pm3.home, "1m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let progress = pm3.project.join("progress");
    let writer = pm3.write(
        "writer.py",
        &format!(
            "import sys, time\ni = 0\nwhile True:\n    i += 1\n    sys.stdout.write(f'line {{i}}\\n')\n    sys.stdout.flush()\n    if i % 200 == 0:\n        open({progress:?}, 'w').write(str(i))\n        time.sleep(0.005)\n",
            progress = progress.display().to_string()
        ),
    );
    pm3.config(&format!(
        "[w]\ncommand = \"{} -u {}\"\nlog_max_size = \"64K\"\nlog_max_files = 1\n",
        crate::harness::python(),
        writer.display()
    ));
    pm3.ok(&["start"]);
    let count = || fs::read_to_string(&progress).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0);
    pm3.wait_for("the writer runs", || count() > 1000);
    // Fill the disk: every byte that is left goes to a filler file.
    let filler = pm3.home.join("filler");
    let _ = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", filler.display()))
        .args(["bs=4k"])
        .stderr(Stdio::null())
        .status();
    let full_at = count();
    // The child is never blocked: it keeps writing (its output is dropped), far past what its
    // pipe could hold (1 MiB, about 90,000 lines of this size).
    pm3.wait_for("the child keeps writing while the disk is full", || count() > full_at + 100_000);
    let info = pm3.info("w");
    let gaps = info["log_gaps"].as_array().cloned().unwrap_or_default();
    assert!(
        gaps.iter().any(|g| g["ongoing"] == true
            && g["reason"] == "no space left"
            && g["dropped_bytes"].as_u64() > Some(0)),
        "info shows the gap: {info}"
    );
    assert!(alive(info["pid"].as_i64().unwrap_or(0) as i32), "the child still runs: {info}");
    // Space comes back: the log resumes at a line boundary, after a line that says what was lost.
    fs::remove_file(&filler).expect("remove the filler");
    let resumed_at = count();
    pm3.wait_for("output is logged again", || {
        count() > resumed_at + 2000 && pm3.read_log("w", "out").contains("[pm3: ")
    });
    let log = pm3.read_log("w", "out");
    let marker = log.lines().position(|l| l.starts_with("[pm3: ")).expect("a gap line");
    let gap_line = log.lines().nth(marker).unwrap_or_default().to_string();
    assert!(gap_line.ends_with("dropped: no space left]"), "{gap_line}");
    // Every line around the gap is whole.
    for l in log.lines().filter(|l| !l.starts_with("[pm3: ")) {
        assert!(
            l.strip_prefix("line ").is_some_and(|n| n.parse::<u64>().is_ok()),
            "a cut line in the log: {l:?}"
        );
    }
    let info = pm3.info("w");
    let gap = &info["log_gaps"][0];
    assert_eq!(gap["ongoing"], false, "{info}");
    assert_eq!(gap["episodes"], 1, "one episode: {info}");
    let warnings = pm3.daemon_log().matches("cannot write log").count();
    assert!(warnings <= 2, "one warning per stream per episode, got {warnings}");
    pm3.ok(&["kill"]);
}
