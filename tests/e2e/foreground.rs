//! `pm3 run`: foreground mode without a daemon or socket. Output lines prefixed `NAME | ` (names
//! padded to one width, no color when stdout is not a terminal), status lines on stderr,
//! SIGTERM stopping everything in reverse dependency order with exit 0, a non-zero exit when a
//! process ended `errored`, and orphan reaping as PID 1 of a PID namespace.

use std::fs;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{
    BIN, DEADLINE, Pm3, alive, daemons_for, line_channel, proc_stat, read_lossy, send_signal,
};

/// A child this test started; killed (SIGKILL, by pid) if the test ends while it runs.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Guard {
    fn wait_exit(&mut self, what: &str) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(st) = self.0.try_wait().expect("try_wait") {
                return st;
            }
            assert!(Instant::now() < deadline, "{what} did not exit within {DEADLINE:?}");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// `pm3 run` in the project, stdout and stderr piped (not a terminal), `NO_COLOR` unset so the
/// absence of color comes from stdout not being a terminal.
fn spawn_run(pm3: &Pm3) -> (Guard, Receiver<String>, Receiver<String>) {
    let mut cmd = pm3.command(&["run"]);
    cmd.env_remove("NO_COLOR").stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn pm3 run");
    let out = line_channel(child.stdout.take().expect("stdout"));
    let err = line_channel(child.stderr.take().expect("stderr"));
    (Guard(child), out, err)
}

/// Collects lines from both streams until every wanted (stream, line) was seen; returns all
/// lines read as (is_err, line).
fn collect_until(
    out: &Receiver<String>,
    err: &Receiver<String>,
    want: &[(bool, &str)],
) -> Vec<(bool, String)> {
    let deadline = Instant::now() + DEADLINE;
    let mut got: Vec<(bool, String)> = Vec::new();
    loop {
        let missing: Vec<&(bool, &str)> =
            want.iter().filter(|(e, w)| !got.iter().any(|(ge, g)| ge == e && g == w)).collect();
        if missing.is_empty() {
            return got;
        }
        let mut idle = true;
        for (is_err, rx) in [(false, out), (true, err)] {
            while let Ok(line) = rx.try_recv() {
                got.push((is_err, line));
                idle = false;
            }
        }
        if Instant::now() >= deadline {
            let dump: Vec<String> =
                got.iter().map(|(e, l)| format!("{} {l}", if *e { "err" } else { "out" })).collect();
            panic!("missing {missing:?} within {DEADLINE:?}; read:\n{}", dump.join("\n"));
        }
        if idle {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The pid in a status line `NAME | [pm3] online (pid N)`.
fn online_pid(lines: &[(bool, String)], name: &str) -> Option<i32> {
    let prefix = format!("{name:<5} | [pm3] online (pid ");
    lines.iter().find_map(|(is_err, l)| {
        let rest = l.strip_prefix(&prefix).filter(|_| *is_err)?;
        rest.trim_end_matches(')').parse().ok()
    })
}

/// A clustered `web` (2 instances) depending on `db`: every instance's output with its aligned
/// prefix, no color, status lines on stderr, no daemon or socket; SIGTERM stops web before db
/// and exits 0 with every child gone.
#[test]
fn run_prefixes_every_instance_and_sigterm_stops_all_in_reverse_order() {
    let pm3 = Pm3::new();
    let body = |name: &str, hello: &str| {
        format!(
            "trap 'echo {name}-stop >> order.txt; exit 0' TERM\necho \"{hello}\"\necho \"{name} warming up\" >&2\n\
             while true; do sleep 0.05; done\n"
        )
    };
    let db = pm3.script("db", &body("db", "db ready"));
    let web = pm3.script("web", &body("web-$PM3_INSTANCE_ID", "hello from $PM3_INSTANCE_ID"));
    pm3.config(&format!(
        "[db]\ncommand = \"{db}\"\nkill_timeout = 3000\n\n\
         [web]\ncommand = \"{web}\"\ninstances = 2\ndepends_on = [\"db\"]\nkill_timeout = 3000\n"
    ));
    let (mut run, out, err) = spawn_run(&pm3);
    let got = collect_until(
        &out,
        &err,
        &[
            (false, "db    | db ready"),
            (false, "web:0 | hello from 0"),
            (false, "web:1 | hello from 1"),
            (true, "web:0 | web-0 warming up"),
            (true, "db    | db warming up"),
        ],
    );
    let mut pids = Vec::new();
    for name in ["db", "web:0", "web:1"] {
        let pid =
            online_pid(&got, name).unwrap_or_else(|| panic!("no `{name} | [pm3] online (pid N)` in {got:?}"));
        pm3.remember(pid);
        assert!(alive(pid), "{name} runs");
        pids.push(pid);
    }
    let db_online = got.iter().position(|(_, l)| l.starts_with("db    | [pm3] online")).unwrap();
    let web_online = got.iter().position(|(_, l)| l.starts_with("web:0 | [pm3] online")).unwrap();
    assert!(db_online < web_online, "db is online before web starts: {got:?}");
    assert!(
        got.iter().all(|(_, l)| !l.contains('\x1b')),
        "no ANSI color when stdout is not a terminal: {got:?}"
    );
    assert!(!pm3.socket().exists(), "pm3 run creates no socket");
    let others: Vec<i32> = daemons_for(&pm3.home).into_iter().filter(|&p| p != run.0.id() as i32).collect();
    assert!(others.is_empty(), "pm3 run starts no daemon, but pm3 processes {others:?} run");

    send_signal(run.0.id() as i32, libc::SIGTERM);
    let status = run.wait_exit("pm3 run after SIGTERM");
    assert_eq!(status.code(), Some(0), "a clean stop exits 0");
    for pid in &pids {
        assert!(!alive(*pid), "{pid} is gone after pm3 run exited");
    }
    let order: Vec<String> = read_lossy(&pm3.project.join("order.txt")).lines().map(String::from).collect();
    assert_eq!(order.len(), 3, "each process got the stop signal once: {order:?}");
    assert_eq!(order.last().map(String::as_str), Some("db-stop"), "dependents stop before db: {order:?}");
}

/// A process that crashes until `max_restarts` is used up ends `errored`; once nothing runs any
/// more `pm3 run` exits 1 by itself.
#[test]
fn run_exits_non_zero_when_a_process_ends_errored() {
    let pm3 = Pm3::with_config(
        "[crash]\ncommand = \"sh -c 'echo dying >&2; exit 2'\"\nmax_restarts = 1\nrestart_delay = 50\nmin_uptime = 5000\n\n\
         [quick]\ncommand = \"sh -c 'echo done'\"\n",
    );
    let (mut run, out, err) = spawn_run(&pm3);
    let got = collect_until(&out, &err, &[(false, "quick | done"), (true, "crash | dying")]);
    let status = run.wait_exit("pm3 run with an errored process");
    assert_eq!(status.code(), Some(1), "exit 1 when a process ended errored");
    let mut lines: Vec<String> = got.into_iter().map(|(_, l)| l).collect();
    lines.extend(err.try_iter());
    let dying = lines.iter().filter(|l| *l == "crash | dying").count();
    assert_eq!(dying, 2, "max_restarts = 1: two runs: {lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("crash | [pm3] errored")),
        "an errored status line: {lines:?}"
    );
}

/// The fields of `/proc/<pid>/stat`: (state, ppid).
fn state_and_ppid(pid: i32) -> Option<(char, i32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    Some((f.first()?.chars().next()?, f.get(1)?.parse().ok()?))
}

/// Live pids whose parent is `ppid`, with their argv joined by spaces.
fn children_of(ppid: i32) -> Vec<(i32, String)> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| state_and_ppid(pid).is_some_and(|(_, pp)| pp == ppid))
        .map(|pid| {
            let argv = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv: Vec<String> = argv
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into())
                .collect();
            (pid, argv.join(" "))
        })
        .collect()
}

/// As PID 1 of a new PID namespace, `pm3 run` reaps orphans: a process leaves a background
/// `sleep 1.5` whose parent exits at once; the sleep is reparented to pm3 and, once it exits,
/// disappears from /proc instead of staying a zombie.
#[test]
fn run_as_pid_1_reaps_orphans() {
    let probe = Command::new("unshare")
        .args(["--fork", "--pid", "--mount-proc", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipped: `unshare --fork --pid --mount-proc` is not available here");
        return;
    }
    let pm3 = Pm3::new();
    let orphaner = pm3.script("orphaner", "(sleep 1.5 &)\nexec sleep 1000\n");
    pm3.config(&format!("[orphaner]\ncommand = \"{orphaner}\"\nkill_timeout = 1000\n"));
    let mut cmd = Command::new("unshare");
    cmd.args(["--fork", "--pid", "--mount-proc", BIN, "run"])
        .current_dir(&pm3.project)
        .env("PM3_HOME", &pm3.home)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut unshare = Guard(cmd.spawn().expect("spawn unshare"));
    let unshare_pid = unshare.0.id() as i32;

    // pm3 (PID 1 inside) is the child of unshare; the orphan becomes pm3's child.
    let mut pm3_pid = 0;
    pm3.wait_for("pm3 run under unshare", || {
        pm3_pid = children_of(unshare_pid).first().map_or(0, |c| c.0);
        pm3_pid != 0
    });
    pm3.remember(pm3_pid);
    let mut orphan = 0;
    pm3.wait_for("the orphaned `sleep 1.5` to be reparented to pm3", || {
        orphan = children_of(pm3_pid).iter().find(|(_, argv)| argv == "sleep 1.5").map_or(0, |c| c.0);
        orphan != 0
    });
    pm3.wait_for("the orphan to exit and be reaped (no zombie left)", || proc_stat(orphan).is_none());
    let zombies: Vec<(i32, String)> = children_of(pm3_pid)
        .into_iter()
        .filter(|(pid, _)| state_and_ppid(*pid).is_some_and(|s| s.0 == 'Z'))
        .collect();
    assert!(zombies.is_empty(), "zombie children of pm3: {zombies:?}");

    send_signal(pm3_pid, libc::SIGTERM);
    let status = unshare.wait_exit("unshare … pm3 run after SIGTERM");
    assert_eq!(status.code(), Some(0), "pm3 run as PID 1 stops cleanly on SIGTERM");
}
