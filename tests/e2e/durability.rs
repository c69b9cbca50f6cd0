//! Durability: a daemon killed by SIGKILL is replaced by the next command, which adopts the live
//! processes (same pids, no second copy) without losing a line of their output and can still
//! stop them; `save` → `kill` → `resurrect` from any directory; `startup`/`unstartup`. And the
//! log guarantees it rests on: every line of a fast writer is in the log when its exit is
//! reported, also across rotation (`log_max_size`/`log_max_files`, `flush` removing rotated
//! files), `log -f` following across rotation and restarts, `log_date_format`.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use crate::harness::{
    BIN, Pm3, alive, daemons_for, group_members, line_channel, mode, proc_stat, read_lossy, read_rotated,
    read_until, row_in, send_signal, stderr, stdout, uncompressed,
};

/// Pids of live processes whose argv is exactly `argv` and whose cwd is `cwd`, leaving out
/// the shell's own forks (not yet `exec`ed into `sleep`): those stay in their parent's process
/// group, while every process pm3 starts leads its own.
fn processes_running(argv: &[&str], cwd: &Path) -> Vec<i32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| alive(pid))
        .filter(|&pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .filter(|&pid| fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|d| d == cwd))
        .filter(|&pid| proc_stat(pid).is_some_and(|s| s.pgrp == pid))
        .collect()
}

/// The numbers of a log of one number per line; fails on a line that is not one.
fn numbers(text: &str, what: &str) -> Vec<u64> {
    text.lines()
        .map(|l| l.trim().parse().unwrap_or_else(|_| panic!("{what}: line `{l}` is not a number")))
        .collect()
}

/// Fails unless `nums` is `first, first+1, …` (every number once, in order); returns the last.
fn assert_contiguous(nums: &[u64], first: u64, what: &str) -> u64 {
    assert!(!nums.is_empty(), "{what}: no lines");
    assert_eq!(nums[0], first, "{what} starts at {first}");
    if let Some(i) = (1..nums.len()).find(|&i| nums[i] != nums[i - 1] + 1) {
        panic!("{what}: after {} comes {} (line {})", nums[i - 1], nums[i], i + 1);
    }
    *nums.last().unwrap()
}

/// SIGKILL the daemon while 3 instances each write a numbered line every 10 ms; 2 s later
/// `pm3 list` runs a new daemon that shows the same pids, no process runs twice, and once they
/// are stopped each log holds every number from 0 to its last, none missing or repeated.
#[test]
fn a_sigkilled_daemon_is_replaced_without_duplicates_or_lost_lines() {
    let pm3 = Pm3::new();
    let cmd = pm3.script("count", "i=0\nwhile true; do echo $i; i=$((i+1)); sleep 0.01; done\n");
    pm3.config(&format!("[count]\ncommand = \"{cmd}\"\ninstances = 3\nkill_timeout = 1000\n"));
    pm3.ok(&["start"]);
    let names = ["count:0", "count:1", "count:2"];
    pm3.wait_online(&names);
    let pids: Vec<i32> = names.iter().map(|n| pm3.pid_of(n)).collect();
    for n in names {
        pm3.wait_log(n, "out", "\n5\n");
    }
    let daemon = pm3.daemon_pid().expect("pm3.pid");

    send_signal(daemon, libc::SIGKILL);
    pm3.wait_for("the daemon to die", || !alive(daemon));
    let at_kill: Vec<usize> = names.iter().map(|n| pm3.read_log(n, "out").lines().count()).collect();
    // Two seconds with no daemon: ~200 lines each wait in the pipes.
    thread::sleep(Duration::from_secs(2));
    for (n, pid) in names.iter().zip(&pids) {
        assert!(alive(*pid), "{n} ({pid}) survived the daemon");
    }

    let rows = pm3.list();
    let new_daemon = pm3.daemon_pid().expect("a new pm3.pid");
    assert_ne!(new_daemon, daemon);
    assert_eq!(daemons_for(&pm3.home), [new_daemon], "exactly one daemon");
    for (n, pid) in names.iter().zip(&pids) {
        let r = row_in(&rows, n);
        assert_eq!(r["pid"], *pid, "{n} adopted, not restarted: {r}");
        assert_eq!(r["status"], "online", "{r}");
    }
    let mut running = processes_running(&["sh", "count.sh"], &pm3.project);
    running.sort();
    let mut want = pids.clone();
    want.sort();
    assert_eq!(running, want, "exactly the three original writers run, no second copy");

    // What they wrote while no daemon ran reaches the logs.
    for (i, n) in names.iter().enumerate() {
        pm3.wait_for(&format!("{n}'s log to grow past the 2 s gap"), || {
            pm3.read_log(n, "out").lines().count() >= at_kill[i] + 200
        });
    }

    pm3.ok(&["stop", "count"]);
    for (n, pid) in names.iter().zip(&pids) {
        assert!(!alive(*pid), "{n} ({pid}) stopped by the new daemon");
        assert!(group_members(*pid).is_empty(), "{n}'s group is gone");
    }
    assert!(processes_running(&["sh", "count.sh"], &pm3.project).is_empty());
    for (i, n) in names.iter().enumerate() {
        let nums = numbers(&pm3.read_log(n, "out"), n);
        let last = assert_contiguous(&nums, 0, &format!("{n}-out.log"));
        assert!(last as usize + 1 >= at_kill[i] + 200, "{n} wrote through the gap: last {last}");
    }
}

/// Live process-group leaders whose command line mentions `dir`, with their arguments: the
/// test's own processes (every process pm3 starts leads its group; a script's `sleep` children
/// do not mention the project path).
fn leaders_mentioning(dir: &Path) -> Vec<(i32, Vec<String>)> {
    let needle = dir.as_os_str().as_encoded_bytes();
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| alive(pid) && proc_stat(pid).is_some_and(|s| s.pgrp == pid))
        .filter_map(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            cmdline.windows(needle.len()).any(|w| w == needle).then(|| {
                let args = cmdline.split(|&b| b == 0).filter(|a| !a.is_empty());
                (pid, args.map(|a| String::from_utf8_lossy(a).into_owned()).collect())
            })
        })
        .collect()
}

/// SIGKILLs the daemon of `pm3` and waits until it is gone with all its threads: a dead
/// leader shows as a zombie while its other threads still hold the socket and the lock.
pub(crate) fn kill_daemon(pm3: &Pm3) {
    let daemon = pm3.daemon_pid().expect("pm3.pid");
    send_signal(daemon, libc::SIGKILL);
    let leader = daemon.to_string();
    pm3.wait_for("the daemon to die", || {
        let threads_gone = fs::read_dir(format!("/proc/{daemon}/task"))
            .map_or(true, |tasks| tasks.flatten().all(|t| t.file_name().to_str() == Some(leader.as_str())));
        !alive(daemon) && threads_gone
    });
}

/// 20 rounds of: `pm3 start` of a file with 2 new processes (the previous round's 2 leave with
/// the file), SIGKILL of the daemon as soon as the command has returned, `pm3 list`. The new
/// daemon lists exactly the 2, online, with the pids that run; no other process of the test runs.
#[test]
fn a_daemon_killed_right_after_start_answered_knows_every_process() {
    let pm3 = Pm3::new();
    let hold = pm3.write("hold.sh", "while :; do sleep 1; done\n");
    for round in 0..20 {
        let names = [format!("r{round}a"), format!("r{round}b")];
        let config: String = names
            .iter()
            .map(|n| format!("[{n}]\ncommand = \"sh {} {n}\"\nkill_timeout = 1000\n\n", hold.display()))
            .collect();
        pm3.config(&config);
        pm3.ok(&["start"]);
        kill_daemon(&pm3);

        let rows = pm3.list();
        assert_eq!(rows.len(), 2, "round {round}: this round's two processes only: {rows:?}");
        let mut listed = Vec::new();
        for n in &names {
            let r = row_in(&rows, n);
            assert_eq!(r["status"], "online", "round {round}: {r}");
            let pid = r["pid"].as_i64().unwrap_or_else(|| panic!("round {round}: no pid: {r}")) as i32;
            assert!(alive(pid), "round {round}: {n}'s pid {pid} runs");
            listed.push(pid);
        }
        let mut running: Vec<i32> =
            leaders_mentioning(&pm3.project).into_iter().map(|(pid, _)| pid).collect();
        running.sort();
        listed.sort();
        assert_eq!(running, listed, "round {round}: every process of the test is listed, none runs unlisted");
    }
}

/// Two processes crash-loop (`restart = "always"`, `min_uptime = 0`: each run lasts 0.4 s and is
/// respawned at once, long enough to outlive the daemon's replacement). 20 times the test waits
/// for a respawn in `/proc` and SIGKILLs the daemon right then or a few ms later (before or
/// after it could record the new pid), and the next `pm3 list` replaces it. Each run takes a
/// lock directory for its instance and notes a second copy if the lock is held; `/proc` is
/// checked after every kill and every `list`. Never two live copies of one instance, and
/// `pm3 kill` leaves none.
#[test]
fn daemons_killed_during_respawns_never_leave_two_copies_or_a_survivor() {
    let pm3 = Pm3::new();
    let crash = pm3.write(
        "crash.sh",
        "if ! mkdir \"$1.lock\" 2>/dev/null; then echo \"$1 $$\" >> dups; fi\n\
         trap 'rmdir \"$1.lock\" 2>/dev/null; exit 0' TERM INT\n\
         sleep 0.4\n\
         rmdir \"$1.lock\" 2>/dev/null\n",
    );
    let config: String = ["a", "b"]
        .iter()
        .map(|n| {
            format!(
                "[{n}]\ncommand = \"sh {} {n}\"\nrestart = \"always\"\nmin_uptime = 0\nkill_timeout = 2000\n\n",
                crash.display()
            )
        })
        .collect();
    pm3.config(&config);
    let runs_of = |n: &str| -> Vec<i32> {
        leaders_mentioning(&pm3.project)
            .into_iter()
            .filter(|(_, args)| args.last().is_some_and(|a| a == n))
            .map(|(pid, _)| pid)
            .collect()
    };
    let copies = |when: &str| {
        for n in ["a", "b"] {
            let pids = runs_of(n);
            assert!(pids.len() <= 1, "{when}: two live copies of {n}: {pids:?}\n{}", pm3.daemon_log());
        }
    };
    pm3.ok(&["start"]);
    for round in 0..20u64 {
        let n = if round % 2 == 0 { "a" } else { "b" };
        let before = runs_of(n);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while runs_of(n).iter().all(|p| before.contains(p)) {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: {n} was not respawned\n{}",
                pm3.daemon_log()
            );
            thread::sleep(Duration::from_millis(1));
        }
        // Right at the respawn, or a few ms later: before and after the new pid is written down.
        thread::sleep(Duration::from_millis([0, 0, 2, 5, 9][round as usize % 5]));
        kill_daemon(&pm3);
        copies(&format!("round {round}, daemon killed"));
        pm3.list();
        copies(&format!("round {round}, new daemon"));
    }
    let rows = pm3.list();
    for n in ["a", "b"] {
        row_in(&rows, n);
    }
    pm3.ok(&["kill"]);
    assert_eq!(leaders_mentioning(&pm3.project), [], "pm3 kill leaves no process of the test");
    let dups = pm3.project.join("dups");
    assert!(!dups.exists(), "a run found its instance's lock held: {}", read_lossy(&dups));
}

/// What a daemon killed before recording leaves behind, made by hand: the run recorded for
/// `api` has died and another process carrying `api`'s markers runs (a respawn nobody wrote
/// down); processes marked `idle` (a stopped instance) and `ghost` (an unknown one) run too.
/// The next daemon adopts the first as `api`'s run, stops the other two, and says so in
/// `daemon.log`.
#[test]
fn unrecorded_processes_are_adopted_by_their_instance_or_stopped() {
    let pm3 = Pm3::with_config(
        "[api]\ncommand = \"sleep 1000\"\nkill_timeout = 1000\n\n[idle]\ncommand = \"sleep 1000\"\nkill_timeout = 1000\n",
    );
    pm3.ok(&["start", "api"]);
    let recorded = pm3.pid_of("api");
    assert_eq!(pm3.row("idle")["status"], "stopped");
    kill_daemon(&pm3);

    let marked = |name: &str| {
        use std::os::unix::process::CommandExt;
        let child = std::process::Command::new("sleep")
            .arg("1000")
            .env("PM3_HOME", &pm3.home)
            .env("PM3_NAME", name)
            .process_group(0)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn a marked sleep");
        pm3.remember(child.id() as i32);
        child
    };
    let mut children = [marked("api"), marked("idle"), marked("ghost")];
    let [respawned, idle, ghost] = [0, 1, 2].map(|i| children[i].id() as i32);
    send_signal(recorded, libc::SIGKILL);
    pm3.wait_for("the recorded run to end", || !alive(recorded));

    let rows = pm3.list();
    let api = row_in(&rows, "api");
    assert_eq!(api["pid"], respawned, "the unrecorded run is adopted, not a third copy started: {api}");
    assert_eq!(api["status"], "online", "{api}");
    assert_eq!(row_in(&rows, "idle")["status"], "stopped", "a stopped instance stays stopped");
    pm3.wait_for("the idle and ghost processes to be stopped", || !alive(idle) && !alive(ghost));
    assert!(alive(respawned), "the adopted run keeps running");
    let log = read_lossy(&pm3.home.join("daemon.log"));
    for name in ["idle", "ghost"] {
        assert!(
            log.lines().any(|l| l.contains("no state file recorded") && l.contains(name)),
            "daemon.log says why {name} was stopped:\n{log}"
        );
    }

    pm3.ok(&["stop", "api"]);
    assert!(!alive(respawned), "the adopted run is managed: stop ends it");
    for c in &mut children {
        let _ = c.wait();
    }
}

/// Three writers each write numbered lines of 50 bytes, one `echo` (one write) per line, as
/// fast as a shell loop goes, into logs that rotate every 2 MB, until the test tells them to
/// stop (they then write `done N`). The daemon is SIGKILLed 3 times while they write and
/// replaced by the next `pm3 list` (a writer cannot end while no daemon reads: it blocks once its
/// pipe is full). Once they have exited, each writer's files (`.N` … `.1`, then the current one)
/// hold every number from 1 to its last exactly once, in order, then `done` with that number.
#[test]
fn no_line_is_lost_or_doubled_when_the_daemon_is_sigkilled_during_fast_writes() {
    const FILES: u32 = 60;
    let pm3 = Pm3::new();
    let pad = "x".repeat(40);
    let writer = pm3.write(
        "write.sh",
        &format!(
            "i=1\nwhile :; do\n  echo \"$i {pad}\"\n  \
             if [ $((i % 1000)) -eq 0 ] && [ -e stop ]; then break; fi\n  i=$((i+1))\ndone\necho \"done $i\"\n"
        ),
    );
    pm3.config(&format!(
        "[w]\ncommand = \"sh {}\"\ninstances = 3\nrestart = \"never\"\nlog_max_size = \"2M\"\nlog_max_files = {FILES}\n",
        writer.display()
    ));
    let names = ["w:0", "w:1", "w:2"];
    // Rotated files are compressed as they come (`log_compress` is on by default), so daemons
    // are also killed in the middle of compressions.
    let log_of = |n: &str| -> String {
        let mut all = String::new();
        for k in (1..=FILES).rev() {
            let bytes = read_rotated(&pm3.log_path(n, "out"), k).unwrap_or_default();
            all.push_str(&String::from_utf8_lossy(&bytes));
        }
        all.push_str(&pm3.read_log(n, "out"));
        all
    };
    pm3.ok(&["start"]);
    for n in names {
        pm3.wait_log(n, "out", "\n100 ");
    }
    for _ in 0..3 {
        thread::sleep(Duration::from_millis(80));
        kill_daemon(&pm3);
        // The writers fill their pipes meanwhile, then wait.
        thread::sleep(Duration::from_millis(50));
        pm3.list();
    }
    pm3.write("stop", "");
    pm3.wait_until("the writers have exited", |rows| {
        names.iter().all(|n| rows.iter().any(|r| r["name"] == *n && r["status"] == "stopped"))
    });
    // What a killed daemon left half-compressed is compressed again by the next one.
    pm3.wait_for("every rotated file to be compressed", || {
        names.iter().all(|n| uncompressed(&pm3.log_path(n, "out"), FILES) == (vec![], false))
    });
    let mut lost = 0;
    let mut report = Vec::new();
    for n in names {
        let text = log_of(n);
        let Some(body) = text.strip_suffix('\n') else { panic!("{n}: the log does not end with a line") };
        let (lines, last) = body.rsplit_once('\n').unwrap_or(("", body));
        let Some(total) = last.strip_prefix("done ").and_then(|t| t.parse::<u64>().ok()) else {
            panic!("{n}: the last line is `{last}`, not `done N`\n{}", pm3.daemon_log())
        };
        let got = numbers_of(lines);
        lost += total.saturating_sub(got.len() as u64);
        report.push(format!("{n}: {} of {total} lines", got.len()));
        if let Some((at, (g, w))) = got.iter().zip(1..).enumerate().find(|(_, (g, w))| **g != *w) {
            panic!(
                "{n}: line {} is {g}, not {w} ({} lines for {total})\n{}",
                at + 1,
                got.len(),
                pm3.daemon_log()
            );
        }
        assert_eq!(got.len() as u64, total, "{n}: every line up to {total}");
    }
    assert_eq!(lost, 0, "{}", report.join(", "));
}

/// A writer as fast as the daemon can copy (`seq`, 10,000,000 lines, 79 MB, no rotation) and
/// its daemon SIGKILLed every few milliseconds while it writes, each time replaced by the next
/// `pm3 list`. (The writer then waits for a file, so that its pipe outlives the last kill.) A plain log is copied through a staging pipe, and a daemon killed between
/// writing a chunk into the file and dropping it from the pipe leaves it in both: the next one
/// must drop it (noted in `logs/.positions`), so that the log holds 1 to 10,000,000 exactly once.
#[test]
fn a_chunk_written_by_a_killed_daemon_is_not_written_again() {
    const LINES: u64 = 10_000_000;
    let pm3 = Pm3::with_config(&format!(
        "[w]\ncommand = \"sh -c 'seq 1 {LINES}; while [ ! -e stop ]; do sleep 0.02; done'\"\n\
         restart = \"never\"\nlog_max_size = \"1G\"\nlog_compress = false\n"
    ));
    // Bytes of `seq 1 LINES`: each number's digits and a newline.
    let total: u64 = (1..=LINES).map(|n| n.to_string().len() as u64 + 1).sum();
    pm3.ok(&["start"]);
    let mut kills = 0;
    let dropped = |pm3: &Pm3| pm3.daemon_log().matches("dropped a chunk").count();
    while kills < 40 && dropped(&pm3) < 3 {
        thread::sleep(Duration::from_millis(2 + kills % 5));
        kill_daemon(&pm3);
        kills += 1;
        // The next daemon adopts the writer.
        pm3.list();
        if fs::metadata(pm3.log_path("w", "out")).is_ok_and(|m| m.len() >= total) {
            break;
        }
    }
    // The writer holds its pipe (and whatever a killed daemon left in it) until a daemon runs.
    pm3.write("stop", "");
    pm3.wait_until("the writer has exited", |rows| {
        rows.iter().any(|r| r["name"] == "w" && r["status"] == "stopped")
    });
    let log = pm3.read_log("w", "out");
    let mut expected = 1u64;
    for line in log.lines() {
        let n: u64 = line.parse().unwrap_or_else(|_| panic!("line `{line}`"));
        assert_eq!(n, expected, "after {kills} kills: line {expected} is {n}\n{}", pm3.daemon_log());
        expected += 1;
    }
    assert_eq!(expected - 1, LINES, "after {kills} kills: every line, once");
    eprintln!("{kills} kills, {} chunks dropped by the next daemon", dropped(&pm3));
}

/// The first number of every line of a log (`1234 xxx…`); fails on a line without one.
fn numbers_of(text: &str) -> Vec<u64> {
    text.lines()
        .map(|l| {
            l.split_whitespace().next().and_then(|w| w.parse().ok()).unwrap_or_else(|| panic!("line `{l}`"))
        })
        .collect()
}

/// `save` writes `dump.json`; after `kill`, `resurrect` from a directory without any pm3.toml
/// brings back the same names: those that were running online (new pids), the stopped one
/// stopped.
#[test]
fn save_kill_resurrect_from_another_directory() {
    let pm3 = Pm3::with_config(
        "[api]\ncommand = \"sleep 1000\"\n\n[worker]\ncommand = \"sleep 1000\"\ninstances = 2\n\n\
         [idle]\ncommand = \"sleep 1000\"\n",
    );
    pm3.ok(&["start"]);
    let running = ["api", "worker:0", "worker:1"];
    pm3.wait_online(&running);
    pm3.ok(&["stop", "idle"]);
    let before: Vec<i32> = running.iter().map(|n| pm3.pid_of(n)).collect();
    pm3.ok(&["save"]);
    assert!(pm3.home.join("dump.json").is_file(), "save writes dump.json");
    pm3.ok(&["kill"]);
    for pid in &before {
        assert!(!alive(*pid), "kill stopped {pid}");
    }

    let elsewhere = pm3.root.join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let out = pm3.run_in(&elsewhere, &["resurrect"]);
    assert_eq!(out.status.code(), Some(0), "{}", pm3.explain(&out));
    let rows = pm3.wait_online(&running);
    let mut names = crate::harness::names(&rows);
    names.sort();
    assert_eq!(names, ["api", "idle", "worker:0", "worker:1"], "the same names come back");
    for (n, old) in running.iter().zip(&before) {
        assert_ne!(row_in(&rows, n)["pid"], *old, "{n} is a new process");
        assert_eq!(row_in(&rows, n)["config"], pm3.config_path().display().to_string().as_str());
    }
    assert_eq!(row_in(&rows, "idle")["status"], "stopped", "what was stopped stays stopped");
}

/// `startup --print` shows a systemd user unit that runs `<pm3> resurrect` with a PIDFile;
/// `startup` / `unstartup` (HOME and XDG_CONFIG_HOME in a temp dir, no session bus) write and
/// remove `systemd/user/pm3.service`, exiting 0 even when systemctl cannot be reached.
#[test]
fn startup_prints_installs_and_removes_a_user_unit() {
    let pm3 = Pm3::new();
    let fake_home = pm3.root.join("fakehome");
    let xdg = pm3.root.join("xdg");
    fs::create_dir_all(&fake_home).unwrap();
    let env: Vec<(&str, String)> = vec![
        ("HOME", fake_home.display().to_string()),
        ("XDG_CONFIG_HOME", xdg.display().to_string()),
        ("XDG_RUNTIME_DIR", pm3.root.join("no-runtime").display().to_string()),
        ("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/pm3-e2e-bus".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let exe = fs::canonicalize(BIN).unwrap_or_else(|_| PathBuf::from(BIN));

    let out = pm3.run_env(&["startup", "--print"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", pm3.explain(&out));
    let unit = stdout(&out);
    assert!(unit.contains(&format!("ExecStart={} resurrect", exe.display())), "{unit}");
    assert!(unit.lines().any(|l| l.starts_with("PIDFile=") && l.ends_with("pm3.pid")), "{unit}");
    assert!(unit.contains(&pm3.home.display().to_string()), "the unit points at this PM3_HOME:\n{unit}");
    // The user manager has no network-online.target: ordering after it would never be met.
    assert!(!unit.contains("network-online"), "{unit}");
    let path = xdg.join("systemd/user/pm3.service");
    assert!(!path.exists(), "--print writes nothing");

    let out = pm3.run_env(&["startup"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", pm3.explain(&out));
    assert!(stdout(&out).contains("loginctl enable-linger"), "the boot hint: {}", stdout(&out));
    assert_eq!(read_lossy(&path), unit, "startup writes the printed unit to {}", path.display());

    let out = pm3.run_env(&["unstartup"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", pm3.explain(&out));
    assert!(!path.exists(), "unstartup removes {}", path.display());
    assert!(!fake_home.join(".config").exists(), "nothing written to HOME/.config");
}

/// A writer of 200,000 numbered lines as fast as it can: when its exit is reported, every line is
/// already in the log, in order.
#[test]
fn every_line_of_a_fast_writer_is_logged_when_its_exit_is_reported() {
    let pm3 = Pm3::with_config("[fast]\ncommand = \"seq 1 200000\"\nrestart = \"never\"\n");
    pm3.ok(&["start"]);
    pm3.wait_until("fast has exited", |rows| {
        rows.iter().any(|r| r["name"] == "fast" && r["status"] == "stopped" && r["exit_code"] == 0)
    });
    let got = pm3.read_log("fast", "out");
    let nums = numbers(&got, "fast-out.log");
    assert_eq!(nums.len(), 200_000, "every line is logged when the exit is reported");
    assert_contiguous(&nums, 1, "fast-out.log");
}

/// The same writer with `log_max_size = "200K"`, `log_max_files = 3` and `log_compress = false`
/// (compressed rotations: `retention`): at most 4 files, none over 200K, and the numbers across `.3`, `.2`, `.1` and the current file are contiguous up to
/// 200000. `flush` empties the current file and removes the rotated ones.
#[test]
fn rotation_cuts_at_lines_keeps_max_files_and_loses_nothing_in_between() {
    let pm3 = Pm3::with_config(
        "[fast]\ncommand = \"seq 1 200000\"\nrestart = \"never\"\nlog_max_size = \"200K\"\nlog_max_files = 3\n\
         log_compress = false\n",
    );
    pm3.ok(&["start"]);
    pm3.wait_until("fast has exited", |rows| {
        rows.iter().any(|r| r["name"] == "fast" && r["status"] == "stopped" && r["exit_code"] == 0)
    });
    let logs = pm3.home.join("logs");
    let mut files: Vec<String> = fs::read_dir(&logs)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("fast-out.log"))
        .collect();
    files.sort();
    assert_eq!(files, ["fast-out.log", "fast-out.log.1", "fast-out.log.2", "fast-out.log.3"]);
    let mut all = Vec::new();
    for name in ["fast-out.log.3", "fast-out.log.2", "fast-out.log.1", "fast-out.log"] {
        let path = logs.join(name);
        let size = fs::metadata(&path).unwrap().len();
        assert!(size <= 200 * 1024, "{name} is {size} bytes, over log_max_size");
        let text = read_lossy(&path);
        assert!(text.ends_with('\n'), "{name} is cut at a line boundary");
        all.extend(numbers(&text, name));
    }
    let first = all[0];
    assert!(first > 1, "the oldest lines were rotated away");
    assert_eq!(assert_contiguous(&all, first, "fast-out.log.3 … fast-out.log"), 200_000);

    pm3.ok(&["flush", "fast"]);
    assert_eq!(fs::metadata(logs.join("fast-out.log")).map(|m| m.len()).unwrap_or(0), 0);
    for n in 1..=3 {
        assert!(!logs.join(format!("fast-out.log.{n}")).exists(), "flush removes fast-out.log.{n}");
    }
}

/// `pm3 log -f` keeps streaming across a rotation (a burst of 300 lines past `log_max_size`
/// "10K") and across a restart (the new run's first line, with its new pid).
#[test]
fn log_follow_survives_rotation_and_restart() {
    let pm3 = Pm3::new();
    let tick = pm3.script(
        "tick",
        "echo \"boot $$\"\ni=0\nwhile true; do\n  if [ -f burst ]; then\n    rm -f burst\n    j=1\n    \
         while [ $j -le 300 ]; do echo \"burst $j ........................................\"; j=$((j+1)); done\n  \
         fi\n  echo \"tick $i\"\n  i=$((i+1))\n  sleep 0.02\ndone\n",
    );
    pm3.config(&format!("[tick]\ncommand = \"{tick}\"\nlog_max_size = \"10K\"\nkill_timeout = 1000\n"));
    pm3.ok(&["start"]);
    pm3.wait_log("tick", "out", "tick 2\n");
    let rotated = pm3.home.join("logs/tick-out.log.1");
    let rotated_gz = pm3.home.join("logs/tick-out.log.1.gz");
    assert!(!rotated.exists() && !rotated_gz.exists(), "no rotation yet");

    let mut follower = pm3.spawn(&["log", "tick", "-f"]);
    let rx = line_channel(follower.stdout.take().expect("stdout"));
    read_until(&rx, "a tick", |l| l.contains("tick "));

    pm3.write("burst", "");
    let got = read_until(&rx, "the burst's last line", |l| l.contains("burst 300 "));
    let burst: Vec<&String> = got.iter().filter(|l| l.contains("burst ")).collect();
    assert_eq!(burst.len(), 300, "every burst line streamed once");
    read_until(&rx, "a tick after the burst", |l| l.contains("tick "));
    assert!(rotated.exists() || rotated_gz.exists(), "the burst rotated tick-out.log");

    pm3.ok(&["restart", "tick"]);
    let pid = pm3.pid_of("tick");
    read_until(&rx, &format!("`boot {pid}` from the restarted process"), |l| {
        l.contains(&format!("boot {pid}"))
    });
    read_until(&rx, "a tick after the restart", |l| l.contains("tick "));
    let _ = follower.kill();
    let _ = follower.wait();
}

/// `log_date_format` prefixes every line, stdout and stderr, with the time and a space.
#[test]
fn log_date_format_prefixes_each_line() {
    let pm3 = Pm3::with_config(
        "[stamped]\ncommand = \"sh -c 'echo hello; echo oops >&2; exec sleep 1000'\"\n\
         log_date_format = \"%Y-%m-%d %H:%M:%S\"\n",
    );
    pm3.ok(&["start"]);
    for (stream, text) in [("out", "hello"), ("err", "oops")] {
        let log = pm3.wait_log("stamped", stream, text);
        let line = log.lines().find(|l| l.ends_with(text)).expect("the line");
        let (stamp, rest) = line.split_at(line.len().min(19));
        let shape: String = stamp.chars().map(|c| if c.is_ascii_digit() { '9' } else { c }).collect();
        assert_eq!(shape, "9999-99-99 99:99:99", "`{line}` starts with a %Y-%m-%d %H:%M:%S time");
        assert_eq!(rest, format!(" {text}"), "then a space and the line: `{line}`");
        assert!(stamp >= "2024", "a current date: `{line}`");
    }
}

/// `pm3 save` keeps the dump it replaces as `dump.json.bak` (0600). With nothing managed (after
/// `pm3 kill`, say) it refuses to replace a dump that holds processes, exit 1 naming the fix,
/// and leaves the dump as it was; `--force` saves the empty set, and the good dump is in the
/// backup.
#[test]
fn save_keeps_the_previous_dump_and_never_wipes_it_by_accident() {
    let pm3 = Pm3::with_config("[api]\ncommand = \"sleep 1000\"\n");
    let (dump, bak) = (pm3.home.join("dump.json"), pm3.home.join("dump.json.bak"));
    pm3.ok(&["start"]);
    pm3.wait_online(&["api"]);
    pm3.ok(&["save"]);
    assert!(!bak.exists(), "nothing to keep on the first save");
    let good = fs::read(&dump).expect("dump.json");
    pm3.ok(&["save"]);
    assert_eq!(fs::read(&bak).expect("dump.json.bak"), good, "the replaced dump is kept");
    assert_eq!(mode(&bak), 0o600);

    pm3.ok(&["kill"]);
    let out = pm3.fails(&["save"]);
    let err = stderr(&out);
    assert!(err.contains("nothing is managed") && err.contains("pm3 save --force"), "{}", pm3.explain(&out));
    assert!(err.contains(&dump.display().to_string()), "names the dump: {err}");
    assert!(pm3.json_error(&["save"]).contains("--force"));
    let kept = fs::read(&dump).expect("dump.json");
    assert!(String::from_utf8_lossy(&kept).contains("\"api\""), "the dump is untouched");

    let out = pm3.ok(&["save", "--force"]);
    assert!(stdout(&out).contains("saved an empty set"), "{}", pm3.explain(&out));
    assert!(!read_lossy(&dump).contains("\"api\""), "--force saves the empty set");
    assert_eq!(fs::read(&bak).expect("dump.json.bak"), kept, "and keeps the good dump");

    fs::copy(&bak, &dump).expect("restore the backup");
    pm3.ok(&["resurrect"]);
    pm3.wait_online(&["api"]);
}
