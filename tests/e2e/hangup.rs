//! When the terminal or the pipe goes away: every long-running command run in a `tmux` pane
//! (a private tmux server per test) is checked when its session is killed, which hangs up its
//! terminal. None may spin, hang or leave processes behind. Skipped when `tmux` is missing.

use std::fs;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{BIN, Pm3, alive, proc_stat, send_signal};

/// A detached tmux session whose pane runs pm3 itself (no shell in between).
struct Pane {
    socket: String,
    pid: i32,
}

impl Pane {
    fn start(pm3: &Pm3, args: &[&str]) -> Option<Pane> {
        if Command::new("tmux").arg("-V").output().is_err() {
            eprintln!("skipping: `tmux` is not installed");
            return None;
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let socket = format!("pm3hup-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let out = Command::new("tmux")
            .env_remove("TMUX")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d", "-s", "s", "-x", "120", "-y", "30"])
            .arg("-c")
            .arg(&pm3.project)
            .arg("-e")
            .arg(format!("PM3_HOME={}", pm3.home.display()))
            .arg(BIN)
            .args(args)
            .output()
            .expect("run tmux");
        assert!(out.status.success(), "tmux: {}", String::from_utf8_lossy(&out.stderr));
        let listed = Command::new("tmux")
            .args(["-L", &socket, "list-panes", "-t", "s", "-F", "#{pane_pid}"])
            .output()
            .expect("list panes");
        let pid = String::from_utf8_lossy(&listed.stdout).trim().parse().expect("pane pid");
        pm3.remember(pid);
        Some(Pane { socket, pid })
    }

    fn keys(&self, keys: &[&str]) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "send-keys", "-t", "s"]).args(keys).status();
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux").args(["-L", &self.socket, "capture-pane", "-p", "-t", "s"]).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
    }

    /// Kills the session: the pane's terminal hangs up.
    fn hang_up(&self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).stderr(Stdio::null()).status();
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        self.hang_up();
    }
}

/// CPU time (utime + stime, in clock ticks) of `pid`.
fn cpu_ticks(pid: i32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Waits until `pid` is gone (or a zombie); returns how long it took, or `None` past `limit`.
/// Returns as well the CPU ticks it spent meanwhile (as last seen).
fn gone_within(pid: i32, limit: Duration) -> (Option<Duration>, u64) {
    let t = Instant::now();
    let first = cpu_ticks(pid).unwrap_or(0);
    let mut last = first;
    while t.elapsed() < limit {
        if !alive(pid) {
            return (Some(t.elapsed()), last - first);
        }
        last = cpu_ticks(pid).unwrap_or(last);
        thread::sleep(Duration::from_millis(5));
    }
    (None, last - first)
}

fn wait(desc: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < limit, "timed out waiting for {desc}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Live processes of this test's scripts (their command line names the project directory).
fn scripts(pm3: &Pm3) -> Vec<i32> {
    let marker = pm3.project.display().to_string();
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| alive(pid))
        .filter(|&pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.starts_with(b"sh\0") && String::from_utf8_lossy(&c).contains(&marker))
        })
        .collect()
}

const TICKS_PER_100MS: u64 = 10;

/// The parent pid of `pid` (field 4 of `/proc/<pid>/stat`).
fn parent_of(pid: i32) -> Option<i32> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    text[text.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn the_tui_leaves_at_once_and_idle_when_its_terminal_goes() {
    let pm3 = Pm3::with_config("[a]\ncommand = \"sleep 1000\"\n");
    pm3.ok(&["start"]);
    let Some(pane) = Pane::start(&pm3, &["tui"]) else { return };
    wait("the table", Duration::from_secs(10), || pane.screen().contains("online"));
    pane.hang_up();
    let (gone, ticks) = gone_within(pane.pid, Duration::from_secs(1));
    assert!(gone.is_some(), "the TUI still runs 1 s after its terminal went (spent {ticks} ticks)");
    assert!(ticks <= TICKS_PER_100MS, "the TUI spent {ticks} ticks after the hang-up");
}

#[test]
fn the_tui_ends_quickly_on_sigterm_in_every_state() {
    let pm3 = Pm3::with_config(
        "[a]\ncommand = \"sleep 1000\"\n\n[r]\ncommand = \"sleep 1000\"\nmin_uptime = 5000\n\n[slow]\ncommand = \"sh -c 'trap \\\"\\\" TERM; while true; do sleep 0.1; done'\"\nkill_timeout = 3000\n",
    );
    pm3.ok(&["start"]);
    let states: [(&str, &[&str]); 4] = [
        ("the table", &[]),
        ("help open", &["?"]),
        ("a filter being typed", &["/", "s", "l"]),
        ("a stop in flight", &["j", "s"]),
    ];
    let mut took = Vec::new();
    for (state, keys) in states {
        let Some(pane) = Pane::start(&pm3, &["tui"]) else { return };
        wait("the table", Duration::from_secs(10), || pane.screen().contains("online"));
        pane.keys(keys);
        thread::sleep(Duration::from_millis(300));
        send_signal(pane.pid, libc::SIGTERM);
        let (gone, _) = gone_within(pane.pid, Duration::from_secs(2));
        let gone = gone.unwrap_or_else(|| panic!("the TUI ignored SIGTERM with {state}"));
        took.push((state, gone));
        pm3.ok(&["start"]);
    }
    eprintln!("SIGTERM to exit: {took:?}");
    // 100 ms is the promise; the margin is for a loaded CI machine.
    for (state, t) in took {
        assert!(t < Duration::from_millis(250), "with {state}, the TUI took {t:?} to end on SIGTERM");
    }
}

/// A script that ignores SIGTERM, so a stop must escalate.
fn stubborn(pm3: &Pm3) -> String {
    pm3.write("w.sh", "trap '' TERM\nwhile true; do echo tick; sleep 0.2; done\n");
    format!("sh {}/w.sh", pm3.project.display())
}

#[test]
fn run_stops_everything_when_its_terminal_goes() {
    let pm3 = Pm3::new();
    let cmd = stubborn(&pm3);
    pm3.config(&format!("[s]\ncommand = \"{cmd}\"\ninstances = 2\nkill_timeout = 1000\n"));
    let Some(pane) = Pane::start(&pm3, &["run"]) else { return };
    wait("both instances", Duration::from_secs(10), || scripts(&pm3).len() == 2);
    let children = scripts(&pm3);
    children.iter().for_each(|&p| pm3.remember(p));
    pane.hang_up();
    let t = Instant::now();
    wait("the children to be stopped", Duration::from_secs(3), || children.iter().all(|&p| !alive(p)));
    assert!(
        t.elapsed() >= Duration::from_millis(800),
        "they were stopped gracefully (kill_timeout), not at once"
    );
    let (gone, _) = gone_within(pane.pid, Duration::from_secs(2));
    assert!(gone.is_some(), "pm3 run still runs after stopping everything");
}

#[test]
fn run_with_a_closed_output_pipe_still_stops_everything_on_a_signal() {
    let pm3 = Pm3::new();
    let cmd = stubborn(&pm3);
    pm3.config(&format!("[s]\ncommand = \"{cmd}\"\ninstances = 2\nkill_timeout = 1000\n"));
    let mut pipeline = Command::new("sh")
        .arg("-c")
        .arg(format!("'{BIN}' run 2>&1 | head -3 > /dev/null"))
        .current_dir(&pm3.project)
        .env("PM3_HOME", &pm3.home)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn the pipeline");
    wait("both instances", Duration::from_secs(10), || scripts(&pm3).len() == 2);
    let children = scripts(&pm3);
    children.iter().for_each(|&p| pm3.remember(p));
    // head has printed its three lines and exited: pm3 run's output pipe is closed.
    thread::sleep(Duration::from_millis(500));
    let shell = pipeline.id() as i32;
    let run = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|&pid| {
            proc_stat(pid).is_some_and(|s| s.state != 'Z')
                && parent_of(pid) == Some(shell)
                && fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.ends_with(b"run\0"))
        })
        .expect("the pm3 run process");
    assert!(children.iter().all(|&p| alive(p)), "a closed pipe alone stops nothing");
    send_signal(run, libc::SIGTERM);
    wait("the children to be stopped", Duration::from_secs(3), || children.iter().all(|&p| !alive(p)));
    let status = pipeline.wait().expect("the pipeline ends");
    assert!(status.code().is_some(), "{status:?}");
}

#[test]
fn run_exits_when_its_processes_have_ended_for_good() {
    // All ended cleanly under restart = "never": exit 0.
    let pm3 = Pm3::with_config("[once]\ncommand = \"true\"\nrestart = \"never\"\n");
    let out = pm3.run(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", pm3.explain(&out));
    // One gave up (errored): the rest is stopped and run exits 1.
    let pm3 = Pm3::with_config(
        "[bad]\ncommand = \"false\"\nmax_restarts = 0\n\n[good]\ncommand = \"sleep 1000\"\n",
    );
    let t = Instant::now();
    let out = pm3.run(&["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", pm3.explain(&out));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(scripts(&pm3).is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("errored"), "{err}");
}

#[test]
fn log_follow_and_start_wait_leave_when_their_terminal_goes() {
    let pm3 = Pm3::new();
    pm3.write("slow.sh", "sleep 2\nexec sleep 1000\n");
    pm3.config(&format!(
        "[a]\ncommand = \"sleep 1000\"\n\n[r]\ncommand = \"sleep 1000\"\nmin_uptime = 5000\n\n[slow]\ncommand = \"sh {}/slow.sh\"\nhealth_check = \"exec:test -e {}/never\"\nhealth_timeout = 60000\n",
        pm3.project.display(),
        pm3.project.display()
    ));
    pm3.ok(&["start", "a"]);
    let Some(follow) = Pane::start(&pm3, &["log", "a", "-f"]) else { return };
    thread::sleep(Duration::from_millis(300));
    follow.hang_up();
    let (gone, ticks) = gone_within(follow.pid, Duration::from_secs(1));
    assert!(
        gone.is_some() && ticks <= TICKS_PER_100MS,
        "`log -f` after the hang-up: {gone:?}, {ticks} ticks"
    );
    // `start --wait` leaves; the start itself goes on in the daemon.
    let Some(waiting) = Pane::start(&pm3, &["start", "slow", "--wait"]) else { return };
    wait("slow to be started", Duration::from_secs(10), || {
        pm3.list().iter().any(|r| r["name"] == "slow" && r["status"] == "starting")
    });
    waiting.hang_up();
    let (gone, ticks) = gone_within(waiting.pid, Duration::from_secs(1));
    assert!(
        gone.is_some() && ticks <= TICKS_PER_100MS,
        "`start --wait` after the hang-up: {gone:?}, {ticks} ticks"
    );
    assert_eq!(pm3.row("slow")["status"], "starting", "the daemon keeps the process it started");
    // `reload` waits for each replacement (here 5 s of min_uptime); the rollout goes on.
    pm3.ok(&["start", "r"]);
    let before = pm3.pid_of("r");
    let Some(reloading) = Pane::start(&pm3, &["reload", "r"]) else { return };
    wait("the replacement", Duration::from_secs(10), || {
        pm3.list()
            .iter()
            .any(|row| row["name"] == "r" && row["pid"].as_i64().is_some_and(|p| p != i64::from(before)))
    });
    reloading.hang_up();
    let (gone, ticks) = gone_within(reloading.pid, Duration::from_secs(1));
    assert!(
        gone.is_some() && ticks <= TICKS_PER_100MS,
        "`reload` after the hang-up: {gone:?}, {ticks} ticks"
    );
    assert_eq!(pm3.row("r")["status"], "online", "the replacement keeps running");
}

#[test]
fn the_init_wizard_leaves_when_its_terminal_goes() {
    let pm3 = Pm3::new();
    pm3.write("Procfile", "web: sleep 1000\nworker: sleep 1000\n");
    let Some(pane) = Pane::start(&pm3, &["init"]) else { return };
    wait("the wizard's first question", Duration::from_secs(10), || !pane.screen().trim().is_empty());
    pane.hang_up();
    let (gone, ticks) = gone_within(pane.pid, Duration::from_secs(1));
    assert!(gone.is_some() && ticks <= TICKS_PER_100MS, "`init` after the hang-up: {gone:?}, {ticks} ticks");
    assert!(!pm3.project.join("pm3.toml").exists(), "a half-answered wizard writes nothing");
}
