//! One process's life: start and the `--json` report, `already_running`, stop (waits for the
//! exit; `kill_signal`; SIGKILL after `kill_timeout`), restart, signal, exit codes and signals
//! recorded, spawn failures, process groups, inherited fds and stdin, the environment
//! (inherited from `pm3 start`, `env`, `env_file`, `--env`, `${VAR}`), `cwd`, command splitting,
//! and the fields of `list --json` and `info --json`.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::harness::{Pm3, alive, group_members, outcome, outcomes, python, read_lossy, row_in, send_signal};

#[test]
fn start_reports_each_process_and_a_second_start_is_already_running() {
    let pm3 = Pm3::with_config("[a]\ncommand = \"sleep 1000\"\n\n[b]\ncommand = \"sleep 1000\"\n");
    let report = pm3.json(&["start"]);
    let mut got = outcomes(&report, "start");
    got.sort();
    assert_eq!(got, [("a".into(), "started".into()), ("b".into(), "started".into())]);
    for name in ["a", "b"] {
        let o = outcome(&report, name);
        assert_eq!(o["status"], "online", "{o}");
        assert!(o["pid"].is_i64(), "{o}");
    }
    let rows = pm3.wait_online(&["a", "b"]);
    for name in ["a", "b"] {
        let listed = rows.iter().find(|r| r["name"] == name).unwrap();
        assert_eq!(listed["pid"], outcome(&report, name)["pid"], "report and list agree");
    }

    let again = pm3.json(&["start"]);
    let mut got = outcomes(&again, "start");
    got.sort();
    assert_eq!(got, [("a".into(), "already_running".into()), ("b".into(), "already_running".into())]);
    for name in ["a", "b"] {
        assert_eq!(outcome(&again, name)["pid"], outcome(&report, name)["pid"], "same pid");
    }
}

#[test]
fn stop_returns_after_the_process_has_exited() {
    let pm3 = Pm3::new();
    let slow = pm3.script("slow", "trap 'sleep 0.5; exit 0' TERM\nwhile true; do sleep 0.05; done\n");
    pm3.config(&format!("[slow]\ncommand = \"{slow}\"\nkill_timeout = 5000\n"));
    pm3.ok(&["start"]);
    let pid = pm3.pid_of("slow");

    let t = Instant::now();
    let report = pm3.json(&["stop", "slow"]);
    let took = t.elapsed();
    assert_eq!(outcomes(&report, "stop"), [("slow".into(), "stopped".into())]);
    assert!(took >= Duration::from_millis(400), "stop returned after {took:?}, before the exit");
    assert!(!alive(pid), "`stop` returned while pid {pid} still runs");
    assert!(group_members(pid).is_empty(), "its process group is gone");
    let r = pm3.row("slow");
    assert_eq!(r["status"], "stopped");
    assert!(r["pid"].is_null() && r["uptime_ms"].is_null(), "{r}");

    let again = pm3.json(&["stop", "slow"]);
    assert_eq!(outcomes(&again, "stop"), [("slow".into(), "already_stopped".into())]);
}

#[test]
fn a_process_that_ignores_sigterm_is_killed_after_kill_timeout() {
    let pm3 = Pm3::new();
    let stubborn = pm3.script("stubborn", "trap '' TERM\nsleep 1000\n");
    pm3.config(&format!("[stubborn]\ncommand = \"{stubborn}\"\nkill_timeout = 300\n"));
    pm3.ok(&["start"]);
    let pid = pm3.pid_of("stubborn");
    pm3.wait_for("the shell to start its sleep", || group_members(pid).len() >= 2);

    let t = Instant::now();
    pm3.ok(&["stop", "stubborn"]);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(250), "stop took {took:?}: SIGKILL came too early");
    assert!(took <= Duration::from_secs(3), "stop took {took:?}: kill_timeout is 300 ms");
    assert!(!alive(pid), "pid {pid} survived the stop");
    assert!(group_members(pid).is_empty(), "members of its group survived: {:?}", group_members(pid));
    let r = pm3.row("stubborn");
    assert_eq!(r["status"], "stopped");
    assert_eq!(r["exit_signal"], "SIGKILL", "{r}");
}

#[test]
fn kill_signal_is_what_the_child_receives() {
    let pm3 = Pm3::new();
    let trap = |file: &str| {
        pm3.script(
            file,
            &format!(
                "for sig in INT HUP TERM; do trap \"echo $sig > {file}.sig; exit 0\" $sig; done\n\
                 while true; do sleep 0.05; done\n"
            ),
        )
    };
    pm3.config(&format!(
        "[a]\ncommand = \"{}\"\nkill_signal = \"SIGINT\"\nkill_timeout = 3000\n\n\
         [b]\ncommand = \"{}\"\nkill_signal = \"HUP\"\nkill_timeout = 3000\n",
        trap("a"),
        trap("b")
    ));
    pm3.ok(&["start"]);
    pm3.wait_online(&["a", "b"]);
    assert_eq!(pm3.info("a")["kill_signal"], "SIGINT");
    assert_eq!(pm3.info("b")["kill_signal"], "SIGHUP");

    pm3.ok(&["stop", "a"]);
    pm3.ok(&["stop", "b"]);
    assert_eq!(read_lossy(&pm3.project.join("a.sig")).trim(), "INT");
    assert_eq!(read_lossy(&pm3.project.join("b.sig")).trim(), "HUP");
}

#[test]
fn an_exit_code_is_recorded() {
    let pm3 = Pm3::with_config("[three]\ncommand = \"sh -c 'exit 3'\"\n");
    pm3.ok(&["start"]);
    let rows = pm3.wait_until("`three` shows exit_code 3", |rows| {
        rows.iter().any(|r| r["name"] == "three" && r["exit_code"] == 3)
    });
    let r = rows.iter().find(|r| r["name"] == "three").unwrap();
    assert!(r["exit_signal"].is_null(), "{r}");
}

#[test]
fn a_process_killed_from_outside_shows_the_signal() {
    let pm3 = Pm3::with_config("[victim]\ncommand = \"sleep 1000\"\n");
    pm3.ok(&["start"]);
    let pid = pm3.pid_of("victim");
    send_signal(pid, libc::SIGKILL);
    let rows = pm3.wait_until("`victim` shows exit_signal SIGKILL", |rows| {
        rows.iter().any(|r| r["name"] == "victim" && r["exit_signal"] == "SIGKILL")
    });
    let r = rows.iter().find(|r| r["name"] == "victim").unwrap();
    assert!(r["exit_code"].is_null(), "killed by a signal: no exit code: {r}");
}

/// With `restart = "never"`, a process that exits by itself (with a code, or killed from
/// outside) ends `stopped` or `errored` and stays there, its exit recorded.
#[test]
fn a_process_that_exits_by_itself_is_not_restarted_under_restart_never() {
    let pm3 = Pm3::with_config(
        "[three]\ncommand = \"sh -c 'exit 3'\"\nrestart = \"never\"\n\n\
         [victim]\ncommand = \"sleep 1000\"\nrestart = \"never\"\n",
    );
    pm3.ok(&["start"]);
    let pid = pm3.pid_of("victim");
    send_signal(pid, libc::SIGKILL);
    let ended = |r: &Value| (r["status"] == "stopped" || r["status"] == "errored") && r["pid"].is_null();
    let rows = pm3.wait_until("both processes ended", |rows| rows.iter().filter(|r| ended(r)).count() == 2);
    let three = rows.iter().find(|r| r["name"] == "three").unwrap();
    assert_eq!(three["exit_code"], 3, "{three}");
    assert_eq!(three["restarts"], 0, "{three}");
    let victim = rows.iter().find(|r| r["name"] == "victim").unwrap();
    assert_eq!(victim["exit_signal"], "SIGKILL", "{victim}");
    assert_eq!(victim["restarts"], 0, "{victim}");
}

#[test]
fn a_command_that_cannot_be_executed_is_errored() {
    let pm3 = Pm3::with_config("[ghost]\ncommand = \"/nonexistent/bin --flag\"\n");
    pm3.run(&["start"]);
    let r = pm3.wait_status("ghost", "errored");
    assert!(r["pid"].is_null(), "{r}");
    let info = pm3.info("ghost");
    let error = info["error"].as_str().unwrap_or_default();
    assert!(error.contains("/nonexistent/bin"), "info names the program: {info}");
}

#[test]
fn each_process_leads_its_own_process_group() {
    let pm3 = Pm3::with_config("[a]\ncommand = \"sleep 1000\"\n\n[b]\ncommand = \"sleep 1000\"\n");
    pm3.ok(&["start"]);
    pm3.wait_online(&["a", "b"]);
    let daemon = pm3.daemon_pid().expect("pm3.pid");
    // SAFETY: getpgid only reads its argument.
    let daemon_pgid = unsafe { libc::getpgid(daemon) };
    for name in ["a", "b"] {
        let pid = pm3.pid_of(name);
        // SAFETY: as above.
        let pgid = unsafe { libc::getpgid(pid) };
        assert_eq!(pgid, pid, "{name}: pgid == pid");
        assert_ne!(pgid, daemon_pgid, "{name} is not in the daemon's group");
    }
}

#[test]
fn children_get_only_stdin_stdout_stderr_and_stdin_is_dev_null() {
    let pm3 = Pm3::with_config(
        "[plain]\ncommand = \"sleep 1000\"\n\n\
         [reader]\ncommand = \"sh -c 'cat; echo stdin-closed; exec sleep 1000'\"\n",
    );
    // Whatever fds the caller of `pm3 start` leaks (here fd 42, without CLOEXEC), the daemon it
    // starts must not pass them on.
    let devnull = fs::File::open("/dev/null").unwrap();
    let raw = devnull.as_raw_fd();
    let mut cmd = pm3.command(&["start"]);
    // SAFETY: dup2 is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 42) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = pm3.exec(cmd, &["start"]);
    assert_eq!(out.status.code(), Some(0), "{}", pm3.explain(&out));
    drop(devnull);
    pm3.wait_online(&["plain", "reader"]);
    let pid = pm3.pid_of("plain");
    let mut fds: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read fds")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    fds.sort();
    let detail: Vec<String> = fds
        .iter()
        .map(|fd| {
            let target = fs::read_link(format!("/proc/{pid}/fd/{fd}"));
            format!("{fd} -> {target:?}")
        })
        .collect();
    assert_eq!(fds, ["0", "1", "2"], "fds leaked into the child: {detail:#?}");
    let stdin = fs::read_link(format!("/proc/{pid}/fd/0")).unwrap();
    assert_eq!(stdin.to_str(), Some("/dev/null"), "stdin is /dev/null");
    pm3.wait_log("reader", "out", "stdin-closed");
}

/// `FDSize` in /proc/<pid>/status: how many slots the process's descriptor table has.
fn fd_table_size(pid: i32) -> usize {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status.lines().find(|l| l.starts_with("FDSize:")).expect("FDSize line");
    line["FDSize:".len()..].trim().parse().expect("FDSize number")
}

/// The daemon keeps its long-lived descriptors at 1024 and up, and a child takes a private table
/// of the low ones only: its table is not a copy of the daemon's (which made each spawn close
/// thousands of descriptors at exec when many processes ran).
#[test]
fn a_process_does_not_get_a_copy_of_the_daemons_descriptor_table() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one struct.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    if lim.rlim_max <= 2048 {
        eprintln!("skipped: the hard descriptor limit ({}) keeps every descriptor low", lim.rlim_max);
        return;
    }
    let pm3 = Pm3::with_config("[w]\ncommand = \"sleep 1000\"\ninstances = 3\n");
    pm3.ok(&["start"]);
    pm3.wait_online(&["w:0", "w:1", "w:2"]);
    let daemon = pm3.daemon_pid().expect("pm3.pid");
    assert!(fd_table_size(daemon) > 1024, "the daemon's table reaches its parked descriptors");
    for name in ["w:0", "w:1", "w:2"] {
        let pid = pm3.pid_of(name);
        let size = fd_table_size(pid);
        assert!(size < 1024, "{name}'s table has {size} slots: a copy of the daemon's");
    }
}

#[test]
fn the_environment_of_the_start_command_reaches_the_process() {
    let pm3 = Pm3::with_config("[env]\ncommand = \"sh -c 'echo caller=$PM3_E2E_CALLER; exec sleep 1000'\"\n");
    // The daemon starts without the variable: the process must get it from `pm3 start`.
    pm3.ok(&["list"]);
    let out = pm3.run_env(&["start"], &[("PM3_E2E_CALLER", "from-the-cli")]);
    assert_eq!(out.status.code(), Some(0), "{}", pm3.explain(&out));
    assert_eq!(pm3.wait_log("env", "out", "caller=").trim(), "caller=from-the-cli");
    let env = &pm3.info("env")["env"];
    assert_eq!(env["PM3_E2E_CALLER"], "from-the-cli");
    assert!(env["PATH"].is_string(), "PATH is inherited: {env}");
    assert_eq!(env["PM3_INSTANCE_ID"], "0");
    assert_eq!(env["PM3_INSTANCE_COUNT"], "1");
}

#[test]
fn env_env_file_and_expansion_build_the_environment() {
    let pm3 = Pm3::new();
    pm3.write(
        ".env",
        "# a comment\nexport FROM_FILE=file-value\nQUOTED=\"quoted value\"\nOVERRIDDEN=from-file\nLAYERED=first\n",
    );
    pm3.write("second.env", "LAYERED=second\n");
    pm3.config(
        r#"
[app]
command = "sleep 1000"
env_file = [".env", "second.env"]
env = { OVERRIDDEN = "from-inline", EXPANDED = "${FROM_FILE}+${PM3_E2E_CALLER}+${PM3_INSTANCE_ID}" }
"#,
    );
    let out = pm3.run_env(&["start"], &[("PM3_E2E_CALLER", "caller")]);
    assert_eq!(out.status.code(), Some(0), "{}", pm3.explain(&out));
    let env = &pm3.info("app")["env"];
    assert_eq!(env["FROM_FILE"], "file-value", "{env}");
    assert_eq!(env["QUOTED"], "quoted value", "{env}");
    assert_eq!(env["OVERRIDDEN"], "from-inline", "inline env wins over env_file: {env}");
    assert_eq!(env["LAYERED"], "second", "env files load in order: {env}");
    assert_eq!(env["EXPANDED"], "file-value+caller+0", "{env}");
}

#[test]
fn dash_dash_env_applies_the_named_overrides() {
    let pm3 = Pm3::with_config(
        r#"
[app]
command = "sleep 1000"
env = { MODE = "dev", KEEP = "kept" }
env_production = { MODE = "prod" }
"#,
    );
    pm3.ok(&["start"]);
    assert_eq!(pm3.info("app")["env"]["MODE"], "dev");
    pm3.ok(&["stop"]);
    pm3.ok(&["start", "--env", "production"]);
    let env = &pm3.info("app")["env"];
    assert_eq!(env["MODE"], "prod", "{env}");
    assert_eq!(env["KEEP"], "kept", "{env}");
}

#[test]
fn cwd_defaults_to_the_config_directory_and_relative_cwd_is_resolved_from_it() {
    let pm3 = Pm3::with_config(
        "[here]\ncommand = \"sh -c 'pwd; exec sleep 1000'\"\n\n\
         [there]\ncommand = \"sh -c 'pwd; exec sleep 1000'\"\ncwd = \"sub\"\n",
    );
    fs::create_dir_all(pm3.project.join("sub/deeper")).unwrap();
    // Run from a subdirectory: the config is found in a parent, and cwd still follows the file.
    let out = pm3.run_in(&pm3.project.join("sub/deeper"), &["start"]);
    assert_eq!(out.status.code(), Some(0), "{}", pm3.explain(&out));
    let here = pm3.project.display().to_string();
    let there = pm3.project.join("sub").display().to_string();
    assert_eq!(pm3.wait_log("here", "out", "/").trim(), here);
    assert_eq!(pm3.wait_log("there", "out", "/").trim(), there);
    assert_eq!(pm3.info("here")["cwd"], here.as_str());
    assert_eq!(pm3.info("there")["cwd"], there.as_str());
}

#[test]
fn commands_are_split_like_a_shell_and_shell_syntax_runs_through_sh() {
    let pm3 = Pm3::with_config(
        r#"
[split]
command = "printf '%s|' 'a b' c"

[shell]
command = "echo one && echo two"
"#,
    );
    pm3.ok(&["start"]);
    assert_eq!(pm3.wait_log("split", "out", "c|").trim_end(), "a b|c|");
    assert_eq!(pm3.wait_log("shell", "out", "two").lines().collect::<Vec<_>>(), ["one", "two"]);
    assert_eq!(pm3.info("split")["argv"], serde_json::json!(["printf", "%s|", "a b", "c"]));
    let argv = pm3.info("shell")["argv"].clone();
    assert_eq!(argv, serde_json::json!(["/bin/sh", "-c", "echo one && echo two"]));
}

#[test]
fn restart_gives_a_new_pid_counts_and_applies_config_edits() {
    let cfg = |v: &str| format!("[app]\ncommand = \"sleep 1000\"\nenv = {{ VERSION = \"{v}\" }}\n");
    let pm3 = Pm3::with_config(&cfg("one"));
    pm3.ok(&["start"]);
    let old = pm3.pid_of("app");
    assert_eq!(pm3.row("app")["restarts"], 0);

    pm3.config(&cfg("two"));
    let report = pm3.json(&["restart", "app"]);
    assert_eq!(outcomes(&report, "restart"), [("app".into(), "restarted".into())]);
    let r = pm3.wait_status("app", "online");
    let new = r["pid"].as_i64().unwrap() as i32;
    assert_ne!(new, old);
    assert!(!alive(old), "the old run is gone");
    assert_eq!(r["restarts"], 1, "a restart command counts: {r}");
    assert_eq!(pm3.info("app")["env"]["VERSION"], "two", "restart uses the edited file");

    // Restarting a stopped process starts it.
    pm3.ok(&["stop", "app"]);
    pm3.ok(&["restart", "app"]);
    pm3.wait_status("app", "online");
}

#[test]
fn signal_sends_a_signal_to_the_process() {
    let pm3 = Pm3::new();
    let sig = pm3.script(
        "sig",
        "trap 'echo got-usr1' USR1\ntrap 'echo got-usr2' USR2\nwhile true; do sleep 0.05; done\n",
    );
    pm3.config(&format!("[sig]\ncommand = \"{sig}\"\nkill_timeout = 1000\n"));
    pm3.ok(&["start"]);
    let pid = pm3.pid_of("sig");
    let report = pm3.json(&["signal", "sig", "USR1"]);
    assert_eq!(outcomes(&report, "signal"), [("sig".into(), "signalled".into())]);
    pm3.wait_log("sig", "out", "got-usr1");
    pm3.ok(&["signal", "sig", "SIGUSR2"]);
    pm3.wait_log("sig", "out", "got-usr2");
    assert_eq!(pm3.pid_of("sig"), pid, "a trapped signal does not end the process");

    let bad = pm3.run(&["signal", "sig", "NOPE"]);
    assert!(matches!(bad.status.code(), Some(1 | 2)), "{}", pm3.explain(&bad));
}

/// `pm3 signal` goes to the process group, so a program behind a shell gets it: with pm3's own
/// `/bin/sh -c` around a command with shell syntax, the python program's SIGHUP handler runs and
/// the run goes on (same pid, no restart); a `trap` in such a command still runs too.
#[test]
fn signal_reaches_the_program_behind_a_shell() {
    let pm3 = Pm3::new();
    pm3.write(
        "h.py",
        "import signal, time\n\
         def hup(*_):\n    open('hup.log', 'a').write('hup\\n')\n\
         signal.signal(signal.SIGHUP, hup)\n\
         print('ready', flush=True)\n\
         while True:\n    time.sleep(0.05)\n",
    );
    let py = python();
    pm3.config(&format!(
        "[app]\ncommand = \"cd . && {py} h.py\"\n\n\
         [trapper]\ncommand = \"trap 'echo got-hup' HUP; while true; do sleep 0.05; done\"\n"
    ));
    pm3.ok(&["start"]);
    pm3.wait_log("app", "out", "ready");
    let (app, trapper) = (pm3.pid_of("app"), pm3.pid_of("trapper"));
    let hups = || read_lossy(&pm3.project.join("hup.log")).lines().count();
    pm3.ok(&["signal", "app", "HUP"]);
    pm3.wait_for("the HUP handler of h.py to run", || hups() == 1);
    pm3.ok(&["signal", "app", "SIGHUP"]);
    pm3.wait_for("the HUP handler of h.py to run again", || hups() == 2);
    pm3.ok(&["signal", "trapper", "HUP"]);
    pm3.wait_log("trapper", "out", "got-hup");
    pm3.holds_for("both to keep running, unrestarted", Duration::from_millis(500), |rows| {
        [("app", app), ("trapper", trapper)].iter().all(|(name, pid)| {
            let r = row_in(rows, name);
            r["status"] == "online" && r["pid"] == *pid && r["restarts"] == 0
        })
    });
}

#[test]
fn list_json_has_every_field() {
    let pm3 = Pm3::with_config("[app]\ncommand = \"sleep 1000\"\n");
    pm3.ok(&["start"]);
    let rows = pm3.wait_until("`app` has memory and cpu figures", |rows| {
        rows.iter().any(|r| {
            r["name"] == "app"
                && r["memory_bytes"].as_u64().is_some_and(|m| m > 0)
                && r["cpu_percent"].as_f64().is_some_and(|c| c >= 0.0)
        })
    });
    let r = rows.iter().find(|r| r["name"] == "app").unwrap();
    let Value::Object(map) = r else { panic!("row is not an object: {r}") };
    for key in [
        "name",
        "process",
        "instance",
        "instances",
        "group",
        "status",
        "pid",
        "restarts",
        "uptime_ms",
        "exit_code",
        "exit_signal",
        "cpu_percent",
        "memory_bytes",
        "config",
    ] {
        assert!(map.contains_key(key), "list row without `{key}`: {r}");
    }
    assert_eq!(r["status"], "online");
    assert!(r["uptime_ms"].is_u64(), "{r}");
    assert!(r["exit_code"].is_null(), "{r}");
    assert_eq!(r["config"], pm3.config_path().display().to_string().as_str());

    pm3.ok(&["stop"]);
    let r = pm3.row("app");
    for key in ["pid", "uptime_ms", "cpu_percent", "memory_bytes"] {
        assert!(r[key].is_null(), "`{key}` of a stopped process is null: {r}");
    }
}

#[test]
fn info_json_has_everything_about_a_process() {
    let pm3 = Pm3::with_config(
        "[dep]\ncommand = \"sleep 1000\"\n\n[app]\ncommand = \"sleep 1000\"\ndepends_on = [\"dep\"]\n",
    );
    pm3.ok(&["start"]);
    pm3.wait_online(&["dep", "app"]);
    let info = pm3.info("app");
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    assert_eq!(info["name"], "app");
    assert_eq!(info["status"], "online");
    assert!(info["pid"].is_i64());
    assert_eq!(info["command"], "sleep 1000");
    assert_eq!(info["argv"], serde_json::json!(["sleep", "1000"]));
    assert_eq!(info["cwd"], pm3.project.display().to_string().as_str());
    assert!(info["env"].is_object());
    let logs = pm3.home.join("logs");
    assert_eq!(info["out_log"], logs.join("app-out.log").display().to_string().as_str());
    assert_eq!(info["err_log"], logs.join("app-err.log").display().to_string().as_str());
    assert_eq!(info["depends_on"], serde_json::json!(["dep"]));
    assert_eq!(info["kill_signal"], "SIGTERM");
    assert_eq!(info["kill_timeout_ms"], 5000);
    let started = info["started_at_ms"].as_u64().expect("started_at_ms");
    assert!(started <= now_ms && now_ms - started < 60_000, "started_at_ms {started} vs now {now_ms}");
    assert!(info["error"].is_null(), "{info}");
    assert_eq!(info["config"], pm3.config_path().display().to_string().as_str());
}

#[test]
fn a_stop_during_pre_start_kills_the_hook_and_never_spawns() {
    let pm3 = Pm3::with_config(
        "[slow]\ncommand = \"sh -c 'touch spawned; exec sleep 1000'\"\npre_start = \"echo hook-$$ > hook.pid; exec sleep 30\"\n",
    );
    let start = pm3.spawn(&["start"]);
    // The shell creates the file before `echo` writes into it: wait for the whole line.
    let hook_pid =
        || read_lossy(&pm3.project.join("hook.pid")).trim().trim_start_matches("hook-").parse::<i32>();
    pm3.wait_for("pre_start running", || hook_pid().is_ok());
    let hook = hook_pid().unwrap();
    pm3.remember(hook);
    assert_eq!(pm3.row("slow")["status"], "starting");
    let t = Instant::now();
    pm3.ok(&["stop", "slow"]);
    assert!(t.elapsed() < Duration::from_secs(5), "stop waited for the hook: {:?}", t.elapsed());
    let out = start.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("stopped"), "the interrupted start says it was stopped: {said}");
    pm3.wait_for("the hook is killed", || !alive(hook));
    assert_eq!(pm3.row("slow")["status"], "stopped");
    assert!(!pm3.project.join("spawned").exists(), "the process was spawned after its stop");
}
