//! The harness every e2e test uses: one [`Pm3`] per test, owning a temp directory with its own
//! `PM3_HOME` (`<tmp>/home`, left for pm3 to create) and project directory (`<tmp>/project`, where
//! the test writes `pm3.toml`). It runs the real `pm3` binary with `NO_COLOR=1`, polls with
//! deadlines instead of sleeping, and on drop runs `pm3 kill`, then SIGKILLs every process this
//! test saw (in `list --json`, `info --json` or `pm3.pid`) that is still alive, any daemon still
//! running for its `PM3_HOME`, and every process still found in its directory
//! ([`Pm3::test_processes`]).
//!
//! Every failure message carries the command's output, the last `pm3 list --json` and
//! `daemon.log`, so a red test explains itself.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_pm3");
/// How often a condition is polled.
pub const POLL: Duration = Duration::from_millis(20);
/// How long a condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// How long one CLI invocation may take before the test fails.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// One test's pm3 world: a data directory, a project directory and the processes seen in it.
pub struct Pm3 {
    _tmp: TempDir,
    /// The temp directory holding `home` and `project` (canonical path).
    pub root: PathBuf,
    /// `PM3_HOME`.
    pub home: PathBuf,
    /// The directory the CLI runs in; `pm3.toml` lives here.
    pub project: PathBuf,
    /// (pid, start time) of every process seen, for the safety net in `Drop`.
    seen: Mutex<BTreeSet<(i32, u64)>>,
}

impl Pm3 {
    pub fn new() -> Pm3 {
        let tmp = tempfile::Builder::new().prefix("pm3e2e-").tempdir().expect("create temp dir");
        let root = tmp.path().canonicalize().expect("canonical temp dir");
        let home = root.join("home");
        let project = root.join("project");
        fs::create_dir(&project).expect("create project dir");
        Pm3 { _tmp: tmp, root, home, project, seen: Mutex::new(BTreeSet::new()) }
    }

    /// A fresh world whose `pm3.toml` holds `text`.
    pub fn with_config(text: &str) -> Pm3 {
        let pm3 = Pm3::new();
        pm3.config(text);
        pm3
    }

    /// (Re)writes the project's `pm3.toml`.
    pub fn config(&self, text: &str) {
        self.write("pm3.toml", text);
    }

    /// Writes a file under the project directory, creating its parents.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.project.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create parent dir");
        }
        fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Writes `<name>.sh` in the project and returns the command that runs it (`sh <name>.sh`):
    /// no shell syntax, so the shell that runs the script is the managed process itself.
    pub fn script(&self, name: &str, body: &str) -> String {
        self.write(&format!("{name}.sh"), body);
        format!("sh {name}.sh")
    }

    /// The absolute path of the project's `pm3.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.project.join("pm3.toml")
    }

    /// A `pm3` command with this world's environment, run from the project directory.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(&self.project)
            .env("PM3_HOME", &self.home)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `pm3 ARGS` and returns its output, whatever the exit code. Fails the test on a hang,
    /// on output left open after exit, and on a panic or backtrace in the output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.exec(self.command(args), args)
    }

    /// Like [`Pm3::run`], with extra environment variables for the CLI.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
        self.exec(cmd, args)
    }

    /// Like [`Pm3::run`], from another working directory.
    pub fn run_in(&self, dir: &Path, args: &[&str]) -> Output {
        let mut cmd = self.command(args);
        cmd.current_dir(dir);
        self.exec(cmd, args)
    }

    /// `pm3 start` run by `sh` after `setup` (`umask 027`, `ulimit -Sn 777`…), in the project
    /// with this test's home: the daemon it starts inherits what `setup` set.
    pub fn start_after(&self, setup: &str) -> Output {
        let mut start = Command::new("sh");
        start
            .args(["-c", &format!("{setup}; exec \"$0\" start"), BIN])
            .current_dir(&self.project)
            .env("PM3_HOME", &self.home)
            .env("NO_COLOR", "1");
        self.exec(start, &["start"])
    }

    /// Runs a prepared command with the harness checks.
    pub fn exec(&self, cmd: Command, args: &[&str]) -> Output {
        let out = run_with_timeout(cmd, CLI_TIMEOUT)
            .unwrap_or_else(|e| panic!("`pm3 {}`: {e}\n{}", args.join(" "), self.diagnostics()));
        // RUST_BACKTRACE=1 may be set around the tests: a panic then also prints a backtrace.
        let (o, e) = (stdout(&out), stderr(&out));
        if o.contains("panicked at") || e.contains("panicked at") || e.contains("stack backtrace:") {
            panic!("`pm3 {}` printed a panic or backtrace\n{}", args.join(" "), self.explain(&out));
        }
        out
    }

    /// Runs `pm3 ARGS` and requires exit code 0.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        if out.status.code() != Some(0) {
            panic!("`pm3 {}` should succeed\n{}", args.join(" "), self.explain(&out));
        }
        out
    }

    /// Runs `pm3 ARGS` and requires exit code 1.
    pub fn fails(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        if out.status.code() != Some(1) {
            panic!("`pm3 {}` should exit 1\n{}", args.join(" "), self.explain(&out));
        }
        out
    }

    /// Runs `pm3 ARGS --json`, requires exit 0 and returns the parsed document.
    pub fn json(&self, args: &[&str]) -> Value {
        let args = with_json(args);
        let out = self.ok(&args);
        let v = parse_json(&out)
            .unwrap_or_else(|e| panic!("`pm3 {}`: {e}\n{}", args.join(" "), self.explain(&out)));
        self.remember_json(&v);
        v
    }

    /// Runs `pm3 ARGS --json`, requires exit 1 and `{"error": "..."}` on stdout; returns the
    /// message.
    pub fn json_error(&self, args: &[&str]) -> String {
        let args = with_json(args);
        let out = self.fails(&args);
        let v = parse_json(&out)
            .unwrap_or_else(|e| panic!("`pm3 {}`: {e}\n{}", args.join(" "), self.explain(&out)));
        match v.get("error").and_then(Value::as_str) {
            Some(msg) if !msg.is_empty() => msg.to_string(),
            _ => {
                panic!("`pm3 {}` should print {{\"error\": \"...\"}}\n{}", args.join(" "), self.explain(&out))
            }
        }
    }

    /// `pm3 list --json`.
    pub fn list(&self) -> Vec<Value> {
        match self.json(&["list"]) {
            Value::Array(rows) => rows,
            other => panic!("`pm3 list --json` is not an array: {other}"),
        }
    }

    /// `pm3 list --json` without failing the test: for polling and diagnostics.
    pub fn try_list(&self) -> Result<Vec<Value>, String> {
        let out = run_with_timeout(self.command(&["list", "--json"]), CLI_TIMEOUT)?;
        if out.status.code() != Some(0) {
            return Err(format!(
                "`pm3 list --json` exited {:?}\nstdout: {}\nstderr: {}",
                out.status.code(),
                stdout(&out),
                stderr(&out)
            ));
        }
        match parse_json(&out)? {
            Value::Array(rows) => {
                for row in &rows {
                    self.remember_json(row);
                }
                Ok(rows)
            }
            other => Err(format!("`pm3 list --json` is not an array: {other}")),
        }
    }

    /// The `list --json` row of `name`; fails the test when it is missing.
    pub fn row(&self, name: &str) -> Value {
        let list = self.list();
        match list.iter().find(|r| r["name"] == name) {
            Some(r) => r.clone(),
            None => panic!(
                "no process `{name}` in the list\n{}\n{}",
                pretty(&Value::Array(list.clone())),
                self.daemon_log()
            ),
        }
    }

    /// The live pid of `name`; fails the test when it has none.
    pub fn pid_of(&self, name: &str) -> i32 {
        let row = self.row(name);
        match row["pid"].as_i64() {
            Some(pid) => pid as i32,
            None => panic!("`{name}` has no pid: {}\n{}", pretty(&row), self.diagnostics()),
        }
    }

    /// `pm3 info NAME --json`.
    pub fn info(&self, name: &str) -> Value {
        self.json(&["info", name])
    }

    /// Polls `list --json` until `cond` holds; returns that list. At the deadline, fails with
    /// the last list and the daemon log.
    pub fn wait_until(&self, desc: &str, cond: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        self.wait_until_within(desc, DEADLINE, cond)
    }

    pub fn wait_until_within(
        &self,
        desc: &str,
        within: Duration,
        cond: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let last = match self.try_list() {
                Ok(rows) => {
                    if cond(&rows) {
                        return rows;
                    }
                    pretty(&Value::Array(rows))
                }
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {within:?} waiting until {desc}\n--- last pm3 list --json\n{last}\n{}",
                    self.daemon_log()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Waits until `name` has status `status`; returns its row.
    pub fn wait_status(&self, name: &str, status: &str) -> Value {
        let rows = self.wait_until(&format!("`{name}` is {status}"), |rows| {
            rows.iter().any(|r| r["name"] == name && r["status"] == status)
        });
        rows.into_iter().find(|r| r["name"] == name).expect("row")
    }

    /// Waits until every name in `names` is online with a pid; returns the list.
    pub fn wait_online(&self, names: &[&str]) -> Vec<Value> {
        self.wait_until(&format!("{names:?} are online"), |rows| {
            names
                .iter()
                .all(|n| rows.iter().any(|r| r["name"] == *n && r["status"] == "online" && r["pid"].is_i64()))
        })
    }

    /// Polls `cond` (anything but the list) until it holds; fails with diagnostics at the deadline.
    pub fn wait_for(&self, desc: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !cond() {
            if Instant::now() >= deadline {
                panic!("timed out after {DEADLINE:?} waiting for {desc}\n{}", self.diagnostics());
            }
            thread::sleep(POLL);
        }
    }

    /// Path of a process's log file; `stream` is `out` or `err`.
    pub fn log_path(&self, name: &str, stream: &str) -> PathBuf {
        self.home.join("logs").join(format!("{name}-{stream}.log"))
    }

    /// The content of a log file, empty when it does not exist.
    pub fn read_log(&self, name: &str, stream: &str) -> String {
        read_lossy(&self.log_path(name, stream))
    }

    /// Waits until the log file of `name` contains `needle`; returns its content.
    pub fn wait_log(&self, name: &str, stream: &str, needle: &str) -> String {
        let path = self.log_path(name, stream);
        let mut text = String::new();
        self.wait_for(&format!("{} to contain {needle:?}", path.display()), || {
            text = read_lossy(&path);
            text.contains(needle)
        });
        text
    }

    /// The daemon pid written in `pm3.pid`, if the file exists and parses.
    pub fn daemon_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.home.join("pm3.pid")).ok()?;
        let pid = text.trim().parse().ok()?;
        self.remember(pid);
        Some(pid)
    }

    pub fn socket(&self) -> PathBuf {
        self.home.join("pm3.sock")
    }

    /// `daemon.log`, labelled, for failure messages.
    pub fn daemon_log(&self) -> String {
        let path = self.home.join("daemon.log");
        match fs::read(&path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let tail: Vec<&str> = text.lines().rev().take(80).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {} (last 80 lines)\n{}", path.display(), tail.join("\n"))
            }
            Err(e) => format!("--- {}: {e}", path.display()),
        }
    }

    /// The last list (only when a daemon socket exists: a report must not start a daemon) and
    /// the daemon log.
    pub fn diagnostics(&self) -> String {
        let list = if self.socket().exists() {
            match self.try_list() {
                Ok(rows) => pretty(&Value::Array(rows)),
                Err(e) => e,
            }
        } else {
            "(no pm3.sock: no daemon)".to_string()
        };
        format!("--- pm3 list --json\n{list}\n{}", self.daemon_log())
    }

    /// A command's outcome plus the diagnostics.
    pub fn explain(&self, out: &Output) -> String {
        format!(
            "exit: {:?}\n--- stdout\n{}\n--- stderr\n{}\n{}",
            out.status.code(),
            stdout(out),
            stderr(out),
            self.diagnostics()
        )
    }

    /// Spawns `pm3 ARGS` in the background with piped stdout (for `log -f`); the test kills it.
    pub fn spawn(&self, args: &[&str]) -> Child {
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().expect("spawn pm3")
    }

    /// Records every `pid` found in a JSON document.
    pub fn remember_json(&self, v: &Value) {
        match v {
            Value::Object(map) => {
                if let Some(pid) = map.get("pid").and_then(Value::as_i64) {
                    self.remember(pid as i32);
                }
                map.values().for_each(|v| self.remember_json(v));
            }
            Value::Array(items) => items.iter().for_each(|v| self.remember_json(v)),
            _ => {}
        }
    }

    /// Records a pid with its start time, so the safety net never kills a recycled pid.
    pub fn remember(&self, pid: i32) {
        if let Some(stat) = proc_stat(pid) {
            self.seen.lock().unwrap().insert((pid, stat.starttime));
        }
    }
}

impl Drop for Pm3 {
    fn drop(&mut self) {
        let _ = self.daemon_pid();
        let _ = run_with_timeout(self.command(&["kill"]), Duration::from_secs(20));
        // After `pm3 kill`, a daemon still running for this home, or a process still running in
        // this test's directory, is a leak: the test failed, but it leaves nothing behind.
        for pid in daemons_for(&self.home) {
            send_signal(pid, libc::SIGKILL);
        }
        for _ in 0..3 {
            let left = self.test_processes();
            if left.is_empty() {
                break;
            }
            for pid in left {
                let Some(stat) = proc_stat(pid) else { continue };
                // SAFETY: kill/killpg only read their integer arguments.
                unsafe {
                    if stat.pgrp == pid {
                        libc::killpg(pid, libc::SIGKILL);
                    }
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            thread::sleep(POLL);
        }
        let seen = std::mem::take(&mut *self.seen.lock().unwrap_or_else(|e| e.into_inner()));
        for (pid, start) in seen {
            let Some(stat) = proc_stat(pid) else { continue };
            if stat.starttime != start || stat.state == 'Z' {
                continue;
            }
            // SAFETY: kill/killpg only read their integer arguments.
            unsafe {
                if stat.pgrp == pid {
                    libc::killpg(pid, libc::SIGKILL);
                }
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Runs `cmd` with piped output, failing on a hang or on output left open after it exits.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<Output, String> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot spawn: {e}"))?;
    let out_rx = read_all(child.stdout.take().expect("stdout"));
    let err_rx = read_all(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => {}
            Err(e) => return Err(format!("wait failed: {e}")),
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let partial_out = out_rx.recv_timeout(Duration::from_secs(1)).unwrap_or_default();
            let partial_err = err_rx.recv_timeout(Duration::from_secs(1)).unwrap_or_default();
            return Err(format!(
                "did not exit within {timeout:?}\nstdout so far: {}\nstderr so far: {}",
                String::from_utf8_lossy(&partial_out),
                String::from_utf8_lossy(&partial_err)
            ));
        }
        thread::sleep(Duration::from_millis(5));
    };
    let grace = Duration::from_secs(5);
    let open = "exited but its stdout/stderr stayed open (did the daemon inherit the pipe?)";
    let stdout = out_rx.recv_timeout(grace).map_err(|_| open.to_string())?;
    let stderr = err_rx.recv_timeout(grace).map_err(|_| open.to_string())?;
    Ok(Output { status, stdout, stderr })
}

fn read_all(mut r: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// Streams the lines of a reader into a channel (for `log -f`).
pub fn line_channel(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        use std::io::BufRead;
        let reader = std::io::BufReader::new(r);
        for line in reader.split(b'\n') {
            let Ok(line) = line else { break };
            if tx.send(String::from_utf8_lossy(&line).into_owned()).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads lines from `rx` until one satisfies `want`; returns every line read. Fails at the
/// deadline with what was read.
pub fn read_until(rx: &mpsc::Receiver<String>, desc: &str, want: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + DEADLINE;
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = want(&line);
                got.push(line);
                if done {
                    return got;
                }
            }
            Err(_) => panic!("no line {desc} within {DEADLINE:?}; read so far:\n{}", got.join("\n")),
        }
    }
}

fn with_json<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = args.to_vec();
    if !v.contains(&"--json") {
        v.push("--json");
    }
    v
}

fn parse_json(out: &Output) -> Result<Value, String> {
    serde_json::from_slice(&out.stdout).map_err(|e| format!("stdout is not one JSON document: {e}"))
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

pub fn read_lossy(path: &Path) -> String {
    fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

/// `log.k` or `log.k.gz`: a rotated log file, plain or compressed.
pub fn rotated(log: &Path, k: u32, gz: bool) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(if gz { format!(".{k}.gz") } else { format!(".{k}") });
    PathBuf::from(name)
}

/// The bytes of rotated file `k` of `log`, from `log.k` or else `log.k.gz` (decompressed), as
/// `pm3 log` reads them; `None` when neither is there. Safe while the daemon compresses: it
/// renames the `.gz` into place before it removes the plain file.
pub fn read_rotated(log: &Path, k: u32) -> Option<Vec<u8>> {
    match fs::read(rotated(log, k, false)) {
        Ok(bytes) => Some(bytes),
        Err(_) => {
            let file = fs::File::open(rotated(log, k, true)).ok()?;
            let mut bytes = Vec::new();
            flate2::read::MultiGzDecoder::new(file).read_to_end(&mut bytes).expect("a whole .gz");
            Some(bytes)
        }
    }
}

/// Rotated files of `log` not compressed yet, and whether a compression is under way (its
/// temporary file exists).
pub fn uncompressed(log: &Path, max_files: u32) -> (Vec<u32>, bool) {
    let plain = (1..=max_files).filter(|&k| rotated(log, k, false).exists()).collect();
    let name = log.file_name().expect("a file name").to_string_lossy();
    (plain, log.with_file_name(format!(".{name}.gz.tmp")).exists())
}

/// The names of a list, in order.
pub fn names(rows: &[Value]) -> Vec<String> {
    rows.iter().filter_map(|r| r["name"].as_str().map(String::from)).collect()
}

/// The row of `name` in `rows`; panics when missing.
pub fn row_in<'a>(rows: &'a [Value], name: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no `{name}` in {}", pretty(&Value::Array(rows.to_vec()))))
}

/// True when `name` is in `rows` with status `status`.
pub fn has_status(rows: &[Value], name: &str, status: &str) -> bool {
    rows.iter().any(|r| r["name"] == name && r["status"] == status)
}

/// (name, status, pid) of every row: what "nothing changed" compares.
pub fn snapshot(rows: &[Value]) -> Vec<(String, String, Option<i64>)> {
    let mut v: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default().to_string(),
                r["status"].as_str().unwrap_or_default().to_string(),
                r["pid"].as_i64(),
            )
        })
        .collect();
    v.sort();
    v
}

/// The fields of `/proc/<pid>/stat` the tests need.
#[derive(Debug, Clone, Copy)]
pub struct ProcStat {
    pub state: char,
    pub pgrp: i32,
    pub starttime: u64,
}

pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_stat(text: &str) -> Option<ProcStat> {
    let after = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    Some(ProcStat {
        state: f.first()?.chars().next()?,
        pgrp: f.get(2)?.parse().ok()?,
        starttime: f.get(19)?.parse().ok()?,
    })
}

/// True when `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|s| s.state != 'Z')
}

/// True once every thread of `pid` has exited. A SIGKILLed process whose main thread is already
/// a zombie (so [`alive`] is false) still holds its files and sockets until its last thread is
/// gone: wait for this before expecting its socket to be closed.
pub fn exited(pid: i32) -> bool {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else { return true };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()).all(|tid| {
        fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
            .ok()
            .and_then(|text| parse_stat(&text))
            .is_none_or(|s| matches!(s.state, 'Z' | 'X'))
    })
}

/// The environment `pid` was started with, read from `/proc`; `None` when it cannot be read.
pub fn environ(pid: i32) -> Option<std::collections::BTreeMap<String, String>> {
    let raw = fs::read(format!("/proc/{pid}/environ")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                let (k, v) = kv.split_once('=')?;
                Some((k.to_string(), v.to_string()))
            })
            .collect(),
    )
}

/// Every live (non-zombie) process whose process group is `pgid`.
pub fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| proc_stat(pid).is_some_and(|s| s.pgrp == pgid && s.state != 'Z'))
        .collect()
}

/// Every live process whose environment has `PM3_HOME=home` and whose executable is pm3.
pub fn daemons_for(home: &Path) -> Vec<i32> {
    let want = format!("PM3_HOME={}", home.display());
    let bin = fs::canonicalize(BIN).unwrap_or_else(|_| PathBuf::from(BIN));
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| alive(pid))
        .filter(|&pid| fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == bin))
        .filter(|&pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|kv| kv == want.as_bytes()))
        })
        .collect()
}

/// Sends `sig` to `pid` (a process this test started or saw).
pub fn send_signal(pid: i32, sig: i32) {
    // SAFETY: kill only reads its integer arguments.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// The absolute path of the real python3 interpreter (not a pyenv shim), resolved once.
pub fn python() -> &'static str {
    static PY: OnceLock<String> = OnceLock::new();
    PY.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 is needed by the e2e tests");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

/// A loopback port that is free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A base port such that `base .. base + n` are all free right now.
pub fn free_port_range(n: u16) -> u16 {
    for _ in 0..200 {
        let base = free_port();
        if base.checked_add(n).is_none() {
            continue;
        }
        let all_free = (base..base + n).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("found no {n} consecutive free ports");
}

/// `GET /` on a loopback port; the whole answer, or `None` when nothing answers.
pub fn http_get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Every `LINE:COL` that follows `file:` in `text`: ` --> pm3.toml:3:1` (and ` ::: ` lines) in
/// what a person reads, `pm3.toml:3:1: ...` in the one-line form of `--json`.
pub fn locations(text: &str, file: &str) -> Vec<(u32, u32)> {
    let mut found = Vec::new();
    let pat = format!("{file}:");
    let mut rest = text;
    while let Some(pos) = rest.find(&pat) {
        rest = &rest[pos + pat.len()..];
        let mut parts = rest.splitn(3, ':');
        let line = parts.next().and_then(|s| s.parse().ok());
        let col = parts
            .next()
            .map(|s| s.chars().take_while(char::is_ascii_digit).collect::<String>())
            .and_then(|s| s.parse().ok());
        if let (Some(l), Some(c)) = (line, col) {
            found.push((l, c));
        }
    }
    found
}

/// The mode bits (`0o777`) of a path.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display())).permissions().mode() & 0o777
}

/// (name, action) of every entry of a command's `--json` report, in order; also checks the
/// report's shape (`command`, and `name`/`action`/`status`/`pid`/`detail` on every entry).
pub fn outcomes(report: &Value, command: &str) -> Vec<(String, String)> {
    assert_eq!(report["command"], command, "report of `{command}`: {}", pretty(report));
    let Some(items) = report["processes"].as_array() else {
        panic!("report has no `processes` array: {}", pretty(report));
    };
    items
        .iter()
        .map(|p| {
            for key in ["name", "action", "status", "pid", "detail"] {
                assert!(p.get(key).is_some(), "entry without `{key}`: {}", pretty(report));
            }
            (
                p["name"].as_str().unwrap_or_default().to_string(),
                p["action"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The entry of `name` in a command's `--json` report.
pub fn outcome<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["processes"]
        .as_array()
        .and_then(|items| items.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no `{name}` in report {}", pretty(report)))
}

impl Pm3 {
    /// Every live process of this test found without asking pm3: its command line mentions the
    /// test's temp directory, or its working directory is inside it. pm3 itself (the CLI and the
    /// daemon run the pm3 binary) and the test binary are left out. Put the project's absolute
    /// path in a command (`sh /abs/project/loop.sh`) and its processes are found, children
    /// included (they inherit the cwd).
    pub fn test_processes(&self) -> Vec<i32> {
        // The root and a slash: a sibling temp dir whose name merely starts the same is not ours.
        let mut root = self.root.as_os_str().as_bytes().to_vec();
        root.push(b'/');
        let skip: Vec<PathBuf> =
            [fs::canonicalize(BIN).ok(), std::env::current_exe().ok()].into_iter().flatten().collect();
        let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
        let mut found: Vec<i32> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| pid != std::process::id() as i32 && alive(pid))
            .filter(|&pid| !fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| skip.contains(&exe)))
            .filter(|&pid| {
                let in_cmdline = fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.windows(root.len()).any(|w| w == root.as_slice()));
                in_cmdline
                    || fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|d| d.starts_with(&self.root))
            })
            .collect();
        found.sort();
        found
    }

    /// Polls [`Pm3::test_processes`] until none is left or `within` has passed; returns what is
    /// left (empty when everything is gone).
    pub fn survivors(&self, within: Duration) -> Vec<i32> {
        let deadline = Instant::now() + within;
        loop {
            let left = self.test_processes();
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            thread::sleep(POLL);
        }
    }

    /// Polls `list --json` for `dur` and fails as soon as `cond` does not hold: for what must
    /// *not* happen (a restart after a user's stop, a second restart for one burst of writes).
    /// Returns the last list.
    pub fn holds_for(&self, desc: &str, dur: Duration, cond: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let end = Instant::now() + dur;
        loop {
            let rows = self.try_list().unwrap_or_else(|e| panic!("{e}\n{}", self.daemon_log()));
            if !cond(&rows) {
                panic!(
                    "expected {desc} for {dur:?}, but:\n--- pm3 list --json\n{}\n{}",
                    pretty(&Value::Array(rows)),
                    self.daemon_log()
                );
            }
            if Instant::now() >= end {
                return rows;
            }
            thread::sleep(POLL);
        }
    }
}

/// One line per pid (the first 30): pid, process group, state and command line, for failure
/// messages.
pub fn describe_processes(pids: &[i32]) -> String {
    const SHOWN: usize = 30;
    let more = match pids.len().saturating_sub(SHOWN) {
        0 => String::new(),
        n => format!("\n  … and {n} more"),
    };
    pids.iter()
        .take(SHOWN)
        .map(|&pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim_end().to_string())
                .unwrap_or_else(|_| "(gone)".to_string());
            match proc_stat(pid) {
                Some(s) => format!("  pid {pid} pgrp {} state {}: {cmdline}", s.pgrp, s.state),
                None => format!("  pid {pid} (gone): {cmdline}"),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + &more
}

/// The golden-file cases under `tests/e2e/<dir>`: its subdirectories, sorted; at least
/// `at_least` of them, so that a lost directory cannot pass as an empty list.
pub fn golden_cases(dir: &str, at_least: usize) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e").join(dir);
    let mut cases: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("read {}: {e}", root.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= at_least, "golden cases missing in {}", root.display());
    cases
}

/// Whether golden files are to be written instead of compared (`PM3_BLESS=1`).
pub fn blessing() -> bool {
    std::env::var_os("PM3_BLESS").is_some_and(|v| !v.is_empty())
}

/// Compares `got` with the golden file `case/file` (or writes it, when blessing); a difference
/// is added to `failed`, named `name/file`, with both texts.
pub fn golden(case: &Path, name: &str, file: &str, got: &str, failed: &mut Vec<String>) {
    let path = case.join(file);
    if blessing() {
        fs::write(&path, got).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        return;
    }
    let want = fs::read_to_string(&path).unwrap_or_default();
    if got != want {
        failed.push(format!("{name}/{file}:\n--- want\n{want}--- got\n{got}"));
    }
}

/// Fails with every golden file that differed.
pub fn assert_golden(failed: &[String]) {
    assert!(
        failed.is_empty(),
        "golden files differ (PM3_BLESS=1 regenerates them):\n\n{}",
        failed.join("\n")
    );
}
