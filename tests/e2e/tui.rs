//! The TUI, driven for real in a detached `tmux` pane (a private tmux server per test, killed on
//! drop): the table shows the processes, the selection's log follows, `s` stops the selected
//! process, `q` quits and gives the terminal back (exit 0, alternate screen left, tty settings as
//! before); bare `pm3` on a terminal opens the same TUI, and SIGTERM also restores the terminal.
//! Skipped when `tmux` is not installed.
//!
//! pm3 runs under a small shell script that reports its exit status and whether the tty settings
//! came back (`stty -g` before and after), rather than through tmux's `pane_dead_status`:
//! tmux 3.3 sometimes leaves an exited pane process unreaped, and the status never shows.

use std::fs;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Instant;

use crate::harness::{BIN, DEADLINE, POLL, Pm3, has_status, names, send_signal};

/// Runs its arguments, then prints how they ended and whether the tty settings are unchanged,
/// and waits (until tmux is killed): output written right before a pane's process exits can be
/// lost.
const WRAPPER: &str = r#"saved=$(stty -g)
"$@"
code=$?
if [ "$(stty -g)" = "$saved" ]; then tty=restored; else tty=changed; fi
echo "pm3 exited $code, terminal $tty"
read -r _
"#;

/// A detached tmux session running pm3, on a private tmux server.
struct Tmux {
    socket: String,
    session: String,
}

impl Tmux {
    /// Runs `pm3 ARGS` (under [`WRAPPER`]) in a 120x30 pane, from the project directory of
    /// `pm3`; `None` (and a message) when tmux is not installed.
    fn start(pm3: &Pm3, args: &[&str]) -> Option<Tmux> {
        Tmux::start_sized(pm3, args, 120, 30)
    }

    /// Like [`Tmux::start`], in a pane of `width` x `height`.
    fn start_sized(pm3: &Pm3, args: &[&str], width: u16, height: u16) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            eprintln!("skipping: `tmux` is not installed (the TUI test drives pm3 in a tmux pane)");
            return None;
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!("pm3e2e-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let tmux = Tmux { socket: id.clone(), session: id };
        // Keep the pane once the wrapper exits, to read what it printed.
        let conf = pm3.root.join("tmux.conf");
        fs::write(&conf, "set -g remain-on-exit on\n").expect("write tmux.conf");
        let wrapper = pm3.root.join("tui.sh");
        fs::write(&wrapper, WRAPPER).expect("write tui.sh");
        let mut cmd = tmux.command();
        let (width, height) = (width.to_string(), height.to_string());
        cmd.arg("-f").arg(&conf).args([
            "new-session",
            "-d",
            "-s",
            &tmux.session,
            "-x",
            &width,
            "-y",
            &height,
        ]);
        cmd.arg("-c").arg(&pm3.project).arg("-e").arg(format!("PM3_HOME={}", pm3.home.display()));
        cmd.arg("sh").arg(&wrapper).arg(BIN).args(args);
        let out = cmd.output().expect("run tmux");
        assert!(out.status.success(), "tmux new-session failed: {}", text(&out));
        Some(tmux)
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.env_remove("TMUX").args(["-L", &self.socket]);
        cmd
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().expect("run tmux");
        assert!(out.status.success(), "`tmux {}` failed: {}", args.join(" "), text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What the pane shows now.
    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", &self.session])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.session];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// The pid of pm3: the wrapper's child.
    fn pm3_pid(&self) -> i32 {
        let shell = self.tmux(&["display-message", "-p", "-t", &self.session, "#{pane_pid}"]);
        let shell: i32 = shell.trim().parse().expect("pane pid");
        child_of(shell).unwrap_or_else(|| panic!("no child of the pane's shell {shell}\n{}", self.screen()))
    }

    /// Polls the screen until `cond` holds; returns it. Every check polls: a capture may catch
    /// a frame half drawn. Fails with the screen at the deadline.
    fn wait_screen(&self, pm3: &Pm3, desc: &str, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let screen = self.screen();
            if cond(&screen) {
                return screen;
            }
            if Instant::now() >= deadline {
                panic!("timed out waiting for {desc}\n--- screen\n{screen}\n{}", pm3.diagnostics());
            }
            thread::sleep(POLL);
        }
    }

    /// Waits until pm3 has exited; returns the wrapper's line (`pm3 exited 0, terminal
    /// restored`) and the whole screen.
    fn wait_exit(&self, pm3: &Pm3) -> (String, String) {
        let screen = self.wait_screen(pm3, "pm3 to exit", |s| s.contains("pm3 exited"));
        let line = screen.lines().find(|l| l.contains("pm3 exited")).unwrap_or_default().trim().to_string();
        (line, screen)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").output();
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A live process whose parent is `parent`.
fn child_of(parent: i32) -> Option<i32> {
    fs::read_dir("/proc").ok()?.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()).find(
        |&pid| {
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
            // After the `(comm)`: state, then ppid.
            let fields: Vec<&str> =
                stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
            fields.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(parent) && fields.first() != Some(&"Z")
        },
    )
}

/// The screen line showing `name` in the table.
fn table_line<'a>(screen: &'a str, name: &str) -> Option<&'a str> {
    screen.lines().find(|l| l.split_whitespace().any(|w| w == name))
}

/// True when the TUI is on screen: its header, both processes online, and the help line.
fn shows_table(s: &str, procs: [&str; 2]) -> bool {
    s.contains("NAME")
        && s.contains("STATUS")
        && procs.iter().all(|n| table_line(s, n).is_some_and(|l| l.contains("online")))
        && s.lines().any(|l| l.contains("s stop") && l.contains("q quit"))
}

fn two_processes() -> Pm3 {
    let pm3 = Pm3::with_config(
        "[alpha]\ncommand = \"sh -c 'echo hello from alpha; exec sleep 1000'\"\n\n\
         [bravo]\ncommand = \"sh -c 'echo hello from bravo; exec sleep 1000'\"\n",
    );
    pm3.ok(&["start"]);
    pm3.wait_online(&["alpha", "bravo"]);
    pm3.wait_log("alpha", "out", "hello from alpha");
    pm3.wait_log("bravo", "out", "hello from bravo");
    pm3
}

#[test]
fn tui_shows_the_table_and_logs_stops_the_selection_and_restores_the_terminal() {
    let pm3 = two_processes();
    let order = names(&pm3.list());
    let (first, second) = (order[0].as_str(), order[1].as_str());
    let Some(tmux) = Tmux::start(&pm3, &["tui"]) else { return };

    tmux.wait_screen(&pm3, "the table with both processes online", |s| shows_table(s, [first, second]));
    tmux.wait_screen(&pm3, &format!("the log of `{first}`, selected first"), |s| {
        s.contains(&format!("logs: {first} ")) && s.contains(&format!("hello from {first}"))
    });

    tmux.keys(&["j"]);
    tmux.wait_screen(&pm3, &format!("the log of `{second}` once it is selected"), |s| {
        s.contains(&format!("logs: {second} ")) && s.contains(&format!("hello from {second}"))
    });

    tmux.keys(&["s"]);
    let rows = pm3.wait_until(&format!("`{second}` is stopped"), |rows| has_status(rows, second, "stopped"));
    assert!(has_status(&rows, first, "online"), "only the selection stops: {rows:?}");
    tmux.wait_screen(&pm3, "the outcome and the new status", |s| {
        s.contains(&format!("stopped {second}"))
            && table_line(s, second).is_some_and(|l| l.contains("stopped"))
    });

    tmux.keys(&["q"]);
    let (line, screen) = tmux.wait_exit(&pm3);
    assert_eq!(line, "pm3 exited 0, terminal restored", "on `q`:\n{screen}");
    assert!(
        !screen.contains("NAME") && !screen.contains("logs:"),
        "the alternate screen was left, the table is gone:\n{screen}"
    );
    assert!(has_status(&pm3.list(), first, "online"), "quitting leaves the processes running");
}

/// On a 40-column terminal the table drops columns to fit, but every pid is shown whole.
#[test]
fn a_narrow_terminal_shows_whole_pids() {
    let pm3 = two_processes();
    let pids: Vec<(String, String)> =
        ["alpha", "bravo"].iter().map(|n| (n.to_string(), pm3.pid_of(n).to_string())).collect();
    let Some(tmux) = Tmux::start_sized(&pm3, &["tui"], 40, 20) else { return };
    let screen = tmux.wait_screen(&pm3, "the table with both processes online", |s| {
        s.contains("NAME")
            && ["alpha", "bravo"].iter().all(|n| table_line(s, n).is_some_and(|l| l.contains("online")))
    });
    for (name, pid) in &pids {
        let line = table_line(&screen, name).unwrap_or_default();
        assert!(
            line.split_whitespace().any(|w| w == pid),
            "pid {pid} of {name}, whole, in {line:?}:\n{screen}"
        );
    }
    tmux.keys(&["q"]);
    tmux.wait_exit(&pm3);
}

#[test]
fn bare_pm3_on_a_terminal_opens_the_tui_and_sigterm_restores_the_terminal() {
    let pm3 = two_processes();
    let Some(tmux) = Tmux::start(&pm3, &[]) else { return };
    tmux.wait_screen(&pm3, "the table", |s| shows_table(s, ["alpha", "bravo"]));
    send_signal(tmux.pm3_pid(), libc::SIGTERM);
    let (line, screen) = tmux.wait_exit(&pm3);
    // 143 = 128 + SIGTERM: pm3 restores the terminal, then dies of the signal it got.
    assert_eq!(line, "pm3 exited 143, terminal restored", "on SIGTERM:\n{screen}");
    assert!(
        !screen.contains("NAME") && !screen.contains("logs:"),
        "the alternate screen was left:\n{screen}"
    );
}
