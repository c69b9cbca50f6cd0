//! Chaos: the guarantees of spec §9 under hostile timing. A scale-down or a removal from the file
//! waits for a SIGTERM-ignoring group to be SIGKILLed and runs `post_stop`; `start` racing
//! `kill` leaves nothing behind; 16 clients mixing commands leave a table that matches /proc;
//! a daemon SIGKILLed in the middle of a command, or right after one, neither duplicates nor
//! loses a process; `pm3 kill` after a crash stops what the dead daemon recorded; restarting a
//! dependency restarts its dependents; a shutting-down daemon refuses changes but still lists;
//! SIGTERM to the daemon escalates before it removes its files.
//!
//! Every command names a script by its absolute path in the project (`sh /abs/project/w.sh`),
//! so the test's processes are found in /proc ([`Pm3::test_processes`]) without asking pm3.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::process::{Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{
    Pm3, alive, daemons_for, describe_processes, exited, group_members, pretty, proc_stat, read_lossy,
    run_with_timeout, send_signal, snapshot, stderr, stdout,
};

/// A long-running instance: ignores USR1 and HUP (they come from `pm3 signal`), dies on TERM.
const LOOP: &str = "trap 'echo usr1' USR1\ntrap 'echo hup' HUP\necho \"up $PM3_INSTANCE_ID\"\n\
                    while true; do sleep 1; done\n";

/// An instance that survives SIGTERM, says so in its log, and keeps running until SIGKILL.
const STUBBORN: &str = "trap 'echo \"TERM received by $PM3_INSTANCE_ID\"' TERM\n\
                        echo \"ready $PM3_INSTANCE_ID\"\nwhile true; do sleep 0.1; done\n";

/// An instance whose whole group ignores SIGTERM (the ignored disposition survives `exec`).
const DEAF: &str = "trap '' TERM\necho ready\nwhile true; do sleep 0.2; done\n";

/// A chaos instance that takes its time to stop: it finishes its work for 0.3 s after SIGTERM.
const SLOW_TO_STOP: &str = "trap 'sleep 0.3; exit 0' TERM\ntrap 'echo usr1' USR1\ntrap 'echo hup' HUP\n\
                            while true; do sleep 1; done\n";

/// A chaos instance that ignores SIGTERM (it needs the SIGKILL after kill_timeout).
const TERM_DEAF: &str = "trap '' TERM\ntrap 'echo usr1' USR1\ntrap 'echo hup' HUP\n\
                         while true; do sleep 1; done\n";

/// How long one command of a chaos loop may take before it counts as a hang.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);

/// Statuses a process passes through; a settled table has none of them.
const TRANSITIONAL: [&str; 3] = ["waiting", "starting", "stopping"];

/// Writes `<name>.sh` in the project and returns the command running it by absolute path.
fn abs_script(pm3: &Pm3, name: &str, body: &str) -> String {
    let path = pm3.write(&format!("{name}.sh"), body);
    format!("sh {}", path.display())
}

/// A small deterministic PRNG (xorshift64), seeded per round or per client.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Runs `pm3 ARGS` within `within`. Exit 0 or 1 is an answer; a hang, a panic, or any other exit
/// code is an error.
fn try_run(pm3: &Pm3, args: &[&str], within: Duration) -> Result<Output, String> {
    let out =
        run_with_timeout(pm3.command(args), within).map_err(|e| format!("`pm3 {}`: {e}", args.join(" ")))?;
    let (o, e) = (stdout(&out), stderr(&out));
    if o.contains("panicked at") || e.contains("panicked at") || !matches!(out.status.code(), Some(0 | 1)) {
        return Err(format!(
            "`pm3 {}` exited {:?}\nstdout: {o}\nstderr: {e}",
            args.join(" "),
            out.status.code()
        ));
    }
    Ok(out)
}

/// The test's processes that lead their own process group: what pm3 spawned (a shell's
/// not-yet-exec'd forks and the script's children stay in their parent's group).
fn leaders(pm3: &Pm3) -> Vec<i32> {
    pm3.test_processes().into_iter().filter(|&pid| proc_stat(pid).is_some_and(|s| s.pgrp == pid)).collect()
}

/// The command line of `pid`, arguments joined by spaces.
fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim_end().to_string())
        .unwrap_or_default()
}

/// The value of `key` in the environment `pid` was started with.
fn environ_var(pid: i32, key: &str) -> Option<String> {
    crate::harness::environ(pid)?.remove(key)
}

/// Live group leaders of the test that run the same command with the same `PM3_INSTANCE_ID`:
/// two copies of one instance.
fn duplicates(pm3: &Pm3) -> Vec<String> {
    let mut by_key: BTreeMap<(String, Option<String>), Vec<i32>> = BTreeMap::new();
    for pid in leaders(pm3) {
        by_key.entry((cmdline(pid), environ_var(pid, "PM3_INSTANCE_ID"))).or_default().push(pid);
    }
    by_key
        .into_iter()
        .filter(|(_, pids)| pids.len() > 1)
        .map(|((cmd, id), pids)| {
            format!(
                "`{cmd}` with PM3_INSTANCE_ID={id:?} runs {} times:\n{}",
                pids.len(),
                describe_processes(&pids)
            )
        })
        .collect()
}

/// Where the list and /proc disagree: a listed pid that is not a live group leader of this
/// test, a live process of the test that is neither listed nor in the group of a listed pid,
/// or a process whose rows do not name exactly its `instances` instances.
fn table_vs_proc(rows: &[Value], procs: &[i32]) -> Vec<String> {
    let mut problems = Vec::new();
    let listed: BTreeSet<i32> = rows.iter().filter_map(|r| r["pid"].as_i64()).map(|p| p as i32).collect();
    for r in rows {
        let Some(pid) = r["pid"].as_i64().map(|p| p as i32) else { continue };
        if !procs.contains(&pid) {
            problems.push(format!("{} lists pid {pid}, which is not a live process of this test", r["name"]));
        } else if proc_stat(pid).is_none_or(|s| s.pgrp != pid) {
            problems.push(format!("{} lists pid {pid}, which does not lead its process group", r["name"]));
        }
    }
    let unlisted: Vec<i32> = procs
        .iter()
        .copied()
        .filter(|pid| !listed.contains(pid) && proc_stat(*pid).is_none_or(|s| !listed.contains(&s.pgrp)))
        .filter(|&pid| alive(pid))
        .collect();
    if !unlisted.is_empty() {
        problems.push(format!("processes of this test run unlisted:\n{}", describe_processes(&unlisted)));
    }
    let mut by_process: BTreeMap<String, (Vec<String>, Option<i64>)> = BTreeMap::new();
    for r in rows {
        let entry = by_process.entry(r["process"].as_str().unwrap_or_default().to_string()).or_default();
        entry.0.push(r["name"].as_str().unwrap_or_default().to_string());
        entry.1 = r["instances"].as_i64();
    }
    for (process, (mut names, count)) in by_process {
        names.sort();
        let n = count.unwrap_or(0);
        let mut want: Vec<String> =
            if n == 1 { vec![process.clone()] } else { (0..n).map(|i| format!("{process}:{i}")).collect() };
        want.sort();
        if names != want {
            problems.push(format!("`{process}` has instances = {n} but the list names {names:?}"));
        }
    }
    problems
}

/// Waits until no row is in a transitional status; returns the list.
fn settle(pm3: &Pm3, within: Duration) -> Vec<Value> {
    pm3.wait_until_within("no process is waiting, starting or stopping", within, |rows| {
        rows.iter().all(|r| !TRANSITIONAL.iter().any(|s| r["status"] == *s))
    })
}

/// Fails unless nothing of the test runs within `within`.
fn assert_no_survivors(pm3: &Pm3, within: Duration, context: &str) {
    let left = pm3.survivors(within);
    assert!(left.is_empty(), "{context}: processes of this test survive:\n{}", describe_processes(&left));
}

/// `pm3 scale s 2` of three instances that ignore SIGTERM returns only once s:2's group was
/// SIGKILLed after kill_timeout (1 s) and its post_stop ran; what s:2 wrote after SIGTERM is in
/// its log; s:0 and s:1 are untouched.
#[test]
fn scale_down_of_a_sigterm_ignoring_instance_returns_after_sigkill_and_post_stop() {
    let pm3 = Pm3::new();
    let cmd = abs_script(&pm3, "stubborn", STUBBORN);
    let post = pm3.project.join("post.txt");
    pm3.config(&format!(
        "[s]\ncommand = \"{cmd}\"\ninstances = 3\nkill_timeout = 1000\n\
         post_stop = \"echo post_stop ran for $PM3_INSTANCE_ID >> {}\"\n",
        post.display()
    ));
    pm3.ok(&["start"]);
    let names = ["s:0", "s:1", "s:2"];
    pm3.wait_online(&names);
    for (i, n) in names.iter().enumerate() {
        pm3.wait_log(n, "out", &format!("ready {i}"));
    }
    let pids: Vec<i32> = names.iter().map(|n| pm3.pid_of(n)).collect();

    let t = Instant::now();
    pm3.ok(&["scale", "s", "2"]);
    let took = t.elapsed();

    let victim = pids[2];
    let left = group_members(victim);
    assert!(
        left.is_empty(),
        "`scale` returned after {took:?} while s:2's group (pid {victim}) runs:\n{}\n{}",
        describe_processes(&left),
        pm3.diagnostics()
    );
    assert!(
        took >= Duration::from_millis(900),
        "scale took {took:?}: s:2 ignores SIGTERM, kill_timeout is 1 s"
    );
    assert!(took <= Duration::from_secs(8), "scale took {took:?}: SIGKILL is due after 1 s");
    let ran = read_lossy(&post);
    assert!(ran.contains("post_stop ran for 2"), "post_stop of s:2 ran before `scale` returned: {ran:?}");
    assert!(!ran.contains("for 0") && !ran.contains("for 1"), "only s:2 stopped: {ran:?}");
    let log = pm3.read_log("s:2", "out");
    assert!(log.contains("TERM received by 2"), "what s:2 wrote after SIGTERM reached its log:\n{log}");

    let rows = pm3.list();
    assert_eq!(crate::harness::names(&rows), ["s:0", "s:1"], "s:2 is gone from the list");
    for (n, pid) in names.iter().zip(&pids).take(2) {
        assert_eq!(crate::harness::row_in(&rows, n)["pid"], *pid, "{n} untouched");
        assert!(alive(*pid), "{n} ({pid}) still runs");
    }
}

/// Removing a SIGTERM-ignoring process from pm3.toml and running `pm3 start` (a whole-file
/// start forgets what the file no longer has) SIGKILLs its group after kill_timeout and runs its
/// post_stop before returning; the process that stays is untouched.
#[test]
fn a_process_removed_from_the_file_is_killed_with_its_group_and_post_stop_runs() {
    let pm3 = Pm3::new();
    let stubborn = abs_script(&pm3, "stubborn", STUBBORN);
    let keep = abs_script(&pm3, "keep", LOOP);
    let post = pm3.project.join("post.txt");
    let keep_only = format!("[keep]\ncommand = \"{keep}\"\n");
    pm3.config(&format!(
        "{keep_only}\n[gone]\ncommand = \"{stubborn}\"\nkill_timeout = 1000\n\
         post_stop = \"echo post_stop ran for gone >> {}\"\n",
        post.display()
    ));
    pm3.ok(&["start"]);
    pm3.wait_online(&["keep", "gone"]);
    pm3.wait_log("gone", "out", "ready 0");
    let (keep_pid, gone_pid) = (pm3.pid_of("keep"), pm3.pid_of("gone"));

    pm3.config(&keep_only);
    let t = Instant::now();
    pm3.ok(&["start"]);
    let took = t.elapsed();

    let left = group_members(gone_pid);
    assert!(
        left.is_empty(),
        "`start` returned after {took:?} while the removed `gone`'s group (pid {gone_pid}) runs:\n{}\n{}",
        describe_processes(&left),
        pm3.diagnostics()
    );
    assert!(took >= Duration::from_millis(900), "start took {took:?}: `gone` ignores SIGTERM for 1 s");
    let ran = read_lossy(&post);
    assert!(ran.contains("post_stop ran for gone"), "post_stop of the removed process ran: {ran:?}");
    let log = pm3.read_log("gone", "out");
    assert!(log.contains("TERM received by 0"), "what `gone` wrote after SIGTERM reached its log:\n{log}");

    let rows = pm3.list();
    assert_eq!(crate::harness::names(&rows), ["keep"], "the removed process is forgotten");
    assert_eq!(crate::harness::row_in(&rows, "keep")["pid"], keep_pid, "`keep` untouched");
    assert!(alive(keep_pid));
}

/// 20 rounds: `pm3 start`, then a second `pm3 start` and `pm3 kill` at once. The start may be
/// refused ("shutting down") or succeed (then it ran after the kill, on a new daemon, which a
/// final `pm3 kill` stops); either way nothing of the test runs once the kills are done.
#[test]
fn start_racing_kill_leaves_no_process_behind() {
    let pm3 = Pm3::new();
    let (a, b, c) = (abs_script(&pm3, "a", LOOP), abs_script(&pm3, "b", LOOP), abs_script(&pm3, "c", LOOP));
    pm3.config(&format!(
        "[a]\ncommand = \"{a}\"\nkill_timeout = 1000\n\n[b]\ncommand = \"{b}\"\ninstances = 2\n\
         kill_timeout = 1000\n\n[c]\ncommand = \"{c}\"\nkill_timeout = 1000\n"
    ));
    for round in 0..20 {
        pm3.ok(&["start"]);
        let daemon = pm3.daemon_pid().expect("pm3.pid after start");
        let (started, killed) = thread::scope(|s| {
            let start = s.spawn(|| try_run(&pm3, &["start"], CLIENT_TIMEOUT));
            let kill = s.spawn(|| try_run(&pm3, &["kill"], CLIENT_TIMEOUT));
            (start.join().expect("start thread"), kill.join().expect("kill thread"))
        });
        let started = started.unwrap_or_else(|e| panic!("round {round}: {e}"));
        let killed = killed.unwrap_or_else(|e| panic!("round {round}: {e}"));
        let outputs = format!(
            "round {round}\n--- racing start: exit {:?}\n{}{}\n--- kill: exit {:?}\n{}{}",
            started.status.code(),
            stdout(&started),
            stderr(&started),
            killed.status.code(),
            stdout(&killed),
            stderr(&killed)
        );
        assert_eq!(killed.status.code(), Some(0), "`pm3 kill` succeeds\n{outputs}");
        pm3.wait_for(&format!("round {round}: the killed daemon {daemon} to exit"), || exited(daemon));
        // A start that ran after the kill started a new daemon: stop it too.
        if !daemons_for(&pm3.home).is_empty() {
            let out = try_run(&pm3, &["kill"], CLIENT_TIMEOUT).unwrap_or_else(|e| panic!("{e}\n{outputs}"));
            assert_eq!(out.status.code(), Some(0), "final `pm3 kill`: {}\n{outputs}", stderr(&out));
        }
        pm3.wait_for(&format!("round {round}: no daemon left"), || daemons_for(&pm3.home).is_empty());
        let left = pm3.survivors(Duration::from_secs(2));
        assert!(
            left.is_empty(),
            "{outputs}\nprocesses of this test survive the kill:\n{}\n{}",
            describe_processes(&left),
            pm3.daemon_log()
        );
        let refused = started.status.code() == Some(1) && stderr(&started).contains("shutting down");
        assert!(
            started.status.code() == Some(0) || refused,
            "the racing start either succeeds or is refused with \"shutting down\"\n{outputs}"
        );
    }
}

/// One chaos client's command, drawn from `rng`: scale, start, stop, restart and signal on the
/// overlapping names of `web` (2 instances in the file) and `api`.
fn chaos_command(rng: &mut Rng) -> &'static [&'static str] {
    const OPS: [&[&str]; 16] = [
        &["scale", "web", "1"],
        &["scale", "web", "2"],
        &["scale", "web", "3"],
        &["scale", "api", "2"],
        &["scale", "api", "1"],
        &["start"],
        &["start", "web"],
        &["start", "api"],
        &["stop", "web"],
        &["stop", "api"],
        &["stop", "web:1"],
        &["restart", "web"],
        &["restart"],
        &["signal", "web", "USR1"],
        &["signal", "api", "HUP"],
        &["list", "--json"],
    ];
    OPS[rng.below(OPS.len() as u64) as usize]
}

/// 16 clients for ~10 s of mixed commands on overlapping names; `web` takes 0.3 s to stop and
/// `api` ignores SIGTERM (SIGKILL after 300 ms), so stops overlap other commands. No command hangs, panics or
/// exits other than 0/1, the daemon survives, and once settled the list matches /proc: every
/// listed pid is a live process of the test, every live process of the test is listed (or in a
/// listed group), every process names exactly its instances. `pm3 kill` then leaves nothing.
#[test]
fn sixteen_concurrent_clients_leave_a_table_that_matches_proc() {
    let pm3 = Pm3::new();
    let (web, api) = (abs_script(&pm3, "web", SLOW_TO_STOP), abs_script(&pm3, "api", TERM_DEAF));
    pm3.config(&format!(
        "[web]\ncommand = \"{web}\"\ninstances = 2\nkill_timeout = 2000\n\n\
         [api]\ncommand = \"{api}\"\nkill_timeout = 300\n"
    ));
    pm3.ok(&["start"]);
    pm3.wait_online(&["web:0", "web:1", "api"]);
    let daemon = pm3.daemon_pid().expect("pm3.pid");

    let until = Instant::now() + Duration::from_secs(10);
    let results: Vec<(Vec<String>, usize, usize)> = thread::scope(|s| {
        let clients: Vec<_> = (0..16u64)
            .map(|client| {
                let pm3 = &pm3;
                s.spawn(move || {
                    let mut rng = Rng::new(client + 1);
                    let (mut errors, mut ok, mut refused) = (Vec::new(), 0, 0);
                    for _ in 0..150 {
                        if Instant::now() >= until {
                            break;
                        }
                        let args = chaos_command(&mut rng);
                        match try_run(pm3, args, CLIENT_TIMEOUT) {
                            Ok(out) if out.status.code() == Some(0) => ok += 1,
                            Ok(_) => refused += 1,
                            Err(e) => errors.push(format!("client {client}: {e}")),
                        }
                        thread::sleep(Duration::from_millis(5 + rng.below(25)));
                    }
                    (errors, ok, refused)
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().expect("client thread")).collect()
    });
    let errors: Vec<String> = results.iter().flat_map(|r| r.0.clone()).collect();
    let (ok, refused): (usize, usize) = results.iter().fold((0, 0), |acc, r| (acc.0 + r.1, acc.1 + r.2));
    assert!(
        errors.is_empty(),
        "commands hung, panicked or crashed:\n{}\n{}",
        errors.join("\n"),
        pm3.daemon_log()
    );
    assert!(ok > 16, "the clients got work done: {ok} succeeded, {refused} refused");
    assert!(alive(daemon), "the daemon {daemon} survived the clients\n{}", pm3.daemon_log());
    assert_eq!(daemons_for(&pm3.home), [daemon], "still exactly the one daemon");

    settle(&pm3, Duration::from_secs(15));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let before = pm3.list();
        let procs = pm3.test_processes();
        let after = pm3.list();
        let mut problems = table_vs_proc(&after, &procs);
        if snapshot(&before) != snapshot(&after) {
            problems.push("the list changed while /proc was read".into());
        }
        if problems.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            panic!(
                "after {ok} commands succeeded and {refused} were refused, the settled list does not match /proc:\n{}\n--- pm3 list --json\n{}\n--- processes\n{}\n{}",
                problems.join("\n"),
                pretty(&Value::Array(after)),
                describe_processes(&procs),
                pm3.daemon_log()
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
    pm3.ok(&["kill"]);
    assert_no_survivors(&pm3, Duration::from_secs(2), "after `pm3 kill`");
}

/// Waits up to `within` for a spawned client to exit; fails the test if it hangs.
fn wait_child(pm3: &Pm3, child: &mut std::process::Child, what: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not exit within {within:?}\n{}", pm3.diagnostics());
            }
        }
    }
}

/// 20 rounds of `start`, `scale` or `restart` with the daemon SIGKILLed 0–50 ms after the client
/// is spawned. After each round `pm3 list` brings up a new daemon that adopts; no instance
/// (command and PM3_INSTANCE_ID) ever runs twice, right away or once the table has settled; at
/// the end `pm3 kill` leaves nothing.
#[test]
fn sigkill_of_the_daemon_during_start_scale_restart_never_duplicates() {
    let pm3 = Pm3::new();
    let (w, v) = (abs_script(&pm3, "w", LOOP), abs_script(&pm3, "v", LOOP));
    pm3.config(&format!(
        "[w]\ncommand = \"{w}\"\ninstances = 2\nkill_timeout = 1000\n\n[v]\ncommand = \"{v}\"\nkill_timeout = 1000\n"
    ));
    pm3.ok(&["start"]);
    pm3.wait_online(&["w:0", "w:1", "v"]);
    for round in 0..20u64 {
        let mut rng = Rng::new(round + 1);
        let delay = Duration::from_millis(rng.below(51));
        let args: &[&str] = match round % 3 {
            0 => &["start"],
            1 => &["scale", "w", if round % 2 == 0 { "2" } else { "3" }],
            _ => &["restart"],
        };
        let daemon = match pm3.daemon_pid() {
            Some(pid) if alive(pid) => pid,
            _ => panic!("round {round}: no live daemon in pm3.pid\n{}", pm3.diagnostics()),
        };
        let mut cmd = pm3.command(args);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let mut client = cmd.spawn().expect("spawn pm3");
        thread::sleep(delay);
        send_signal(daemon, libc::SIGKILL);
        let what =
            format!("round {round}: `pm3 {}` with the daemon SIGKILLed after {delay:?}", args.join(" "));
        wait_child(&pm3, &mut client, &what, CLIENT_TIMEOUT);
        pm3.wait_for(&format!("{what}: the daemon to die"), || exited(daemon));

        pm3.list();
        let dups = duplicates(&pm3);
        assert!(dups.is_empty(), "{what}: after adoption\n{}\n{}", dups.join("\n"), pm3.diagnostics());
        settle(&pm3, Duration::from_secs(10));
        let dups = duplicates(&pm3);
        assert!(dups.is_empty(), "{what}: once settled\n{}\n{}", dups.join("\n"), pm3.diagnostics());
    }
    pm3.ok(&["kill"]);
    assert_no_survivors(&pm3, Duration::from_secs(2), "after the final `pm3 kill`");
}

/// Three processes run, the daemon is SIGKILLed, and `pm3 kill` (no daemon running) stops what
/// state.json records as alive: exit 0, nothing of the test left, no daemon left.
#[test]
fn kill_after_a_daemon_crash_stops_the_recorded_processes() {
    let pm3 = Pm3::new();
    let (a, b) = (abs_script(&pm3, "a", LOOP), abs_script(&pm3, "b", LOOP));
    pm3.config(&format!("[a]\ncommand = \"{a}\"\n\n[b]\ncommand = \"{b}\"\ninstances = 2\n"));
    pm3.ok(&["start"]);
    let names = ["a", "b:0", "b:1"];
    pm3.wait_online(&names);
    let pids: Vec<i32> = names.iter().map(|n| pm3.pid_of(n)).collect();
    let daemon = pm3.daemon_pid().expect("pm3.pid");
    send_signal(daemon, libc::SIGKILL);
    pm3.wait_for("the daemon to die", || exited(daemon));
    for (n, pid) in names.iter().zip(&pids) {
        assert!(alive(*pid), "{n} ({pid}) outlives the daemon");
    }

    let out = pm3.run(&["kill"]);
    assert_eq!(out.status.code(), Some(0), "`pm3 kill` after a crash\n{}", pm3.explain(&out));
    for (n, pid) in names.iter().zip(&pids) {
        assert!(
            !alive(*pid),
            "{n} ({pid}), recorded in state.json, survives `pm3 kill`\n--- stdout\n{}\n--- stderr\n{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(group_members(*pid).is_empty(), "{n}'s group is gone");
    }
    assert_no_survivors(&pm3, Duration::from_secs(2), "after `pm3 kill`");
    pm3.wait_for("no daemon left after `pm3 kill`", || daemons_for(&pm3.home).is_empty());
}

/// 20 rounds: `pm3 start`, SIGKILL of the daemon the moment it returns, `pm3 list`: the new
/// daemon lists every process online with the pid that runs in /proc, and nothing of the test
/// runs unlisted. `pm3 stop` between rounds.
#[test]
fn sigkill_right_after_start_loses_no_process() {
    let pm3 = Pm3::new();
    let (a, b) = (abs_script(&pm3, "a", LOOP), abs_script(&pm3, "b", LOOP));
    pm3.config(&format!(
        "[a]\ncommand = \"{a}\"\nkill_timeout = 1000\n\n[b]\ncommand = \"{b}\"\ninstances = 2\nkill_timeout = 1000\n"
    ));
    for round in 0..20 {
        pm3.ok(&["start"]);
        let daemon = pm3.daemon_pid().expect("pm3.pid");
        send_signal(daemon, libc::SIGKILL);
        pm3.wait_for(&format!("round {round}: the daemon to die"), || exited(daemon));

        let rows = pm3.list();
        let procs = pm3.test_processes();
        let mut problems = table_vs_proc(&rows, &procs);
        for r in &rows {
            if r["status"] != "online" || !r["pid"].is_i64() {
                problems.push(format!("{} is not listed online with a pid", r["name"]));
            }
        }
        if rows.len() != 3 {
            problems.push(format!("{} rows listed, 3 expected", rows.len()));
        }
        assert!(
            problems.is_empty(),
            "round {round}: after a SIGKILL right after `start`, the new daemon's list does not match \
             /proc:\n{}\n--- pm3 list --json\n{}\n--- processes\n{}\n{}",
            problems.join("\n"),
            pretty(&Value::Array(rows)),
            describe_processes(&procs),
            pm3.daemon_log()
        );
        pm3.ok(&["stop"]);
        assert_no_survivors(&pm3, Duration::from_secs(5), &format!("round {round}: after `pm3 stop`"));
    }
}

/// True when `name` is online with a pid other than `old`.
fn online_with_new_pid(rows: &[Value], name: &str, old: i32) -> bool {
    rows.iter().any(|r| r["name"] == name && r["status"] == "online" && r["pid"].is_i64() && r["pid"] != old)
}

/// `pm3 restart db` restarts `api`, which depends on it: both get new pids and are online, and
/// api's old process is gone. `pm3 reload db` gives api a new pid too.
#[test]
fn restarting_or_reloading_a_dependency_restarts_its_dependents() {
    let pm3 = Pm3::new();
    let (db, api) = (abs_script(&pm3, "db", LOOP), abs_script(&pm3, "api", LOOP));
    pm3.config(&format!(
        "[db]\ncommand = \"{db}\"\nkill_timeout = 1000\n\n\
         [api]\ncommand = \"{api}\"\ndepends_on = [\"db\"]\nkill_timeout = 1000\n"
    ));
    pm3.ok(&["start"]);
    pm3.wait_online(&["db", "api"]);
    let (db0, api0) = (pm3.pid_of("db"), pm3.pid_of("api"));

    pm3.ok(&["restart", "db"]);
    let rows = pm3.wait_until("after `restart db`, db and api are online with new pids", |rows| {
        online_with_new_pid(rows, "db", db0) && online_with_new_pid(rows, "api", api0)
    });
    assert!(!alive(db0), "db's old process ({db0}) is gone");
    assert!(!alive(api0), "api's old process ({api0}) is gone");
    assert!(group_members(api0).is_empty(), "api's old group is gone");
    let pid = |name: &str| crate::harness::row_in(&rows, name)["pid"].as_i64().expect("pid") as i32;
    let (db1, api1) = (pid("db"), pid("api"));

    pm3.ok(&["reload", "db"]);
    pm3.wait_until("after `reload db`, db and api are online with new pids", |rows| {
        online_with_new_pid(rows, "db", db1) && online_with_new_pid(rows, "api", api1)
    });
    assert!(!alive(api1), "api's previous process ({api1}) is gone after `reload db`");
}

/// While `pm3 kill` waits out the kill_timeout (2 s) of a SIGTERM-ignoring process, `pm3 list`
/// answers (the process shows `stopping`) and a mutating request (`pm3 start`) is refused with
/// exit 1 and "shutting down"; once the kill is done nothing of the test runs and no daemon is
/// left.
#[test]
fn kill_refuses_changes_while_shutting_down_and_list_still_answers() {
    let pm3 = Pm3::new();
    let (slow, other) = (abs_script(&pm3, "slow", DEAF), abs_script(&pm3, "other", LOOP));
    pm3.config(&format!(
        "[slow]\ncommand = \"{slow}\"\nkill_timeout = 2000\n\n[other]\ncommand = \"{other}\"\n"
    ));
    pm3.ok(&["start"]);
    pm3.wait_online(&["slow", "other"]);
    pm3.wait_log("slow", "out", "ready");
    let daemon = pm3.daemon_pid().expect("pm3.pid");

    let mut kill = pm3.spawn(&["kill"]);
    let began = Instant::now();
    pm3.wait_until_within("`slow` is stopping (the kill has begun)", Duration::from_secs(2), |rows| {
        rows.iter().any(|r| r["name"] == "slow" && r["status"] == "stopping")
    });
    let killing_before = matches!(kill.try_wait(), Ok(None));
    let refused = pm3.run(&["start"]);
    let listed = pm3.try_list();
    let killing_after = matches!(kill.try_wait(), Ok(None));
    let window = began.elapsed();
    wait_child(&pm3, &mut kill, "`pm3 kill`", Duration::from_secs(15));
    let kill_status = kill.wait().expect("kill status");

    assert!(
        killing_before,
        "`pm3 kill` returned within {window:?}, before slow's kill_timeout (2 s) ran out"
    );
    let answer = format!(
        "after {window:?}, exit {:?}\n--- stdout\n{}\n--- stderr\n{}\n{}",
        refused.status.code(),
        stdout(&refused),
        stderr(&refused),
        pm3.daemon_log()
    );
    assert_eq!(refused.status.code(), Some(1), "`pm3 start` during `pm3 kill` is refused: {answer}");
    assert!(stderr(&refused).contains("shutting down"), "the refusal says \"shutting down\": {answer}");
    let rows = listed.unwrap_or_else(|e| panic!("`pm3 list` during the shutdown: {e}"));
    assert!(
        rows.iter().any(|r| r["name"] == "slow"),
        "the list during the shutdown: {}",
        pretty(&Value::Array(rows))
    );
    assert!(
        killing_after,
        "the list was answered while the kill ran (kill_timeout is 2 s; {window:?} passed)"
    );
    assert!(kill_status.success(), "`pm3 kill` exits 0: {kill_status:?}");
    pm3.wait_for("the daemon to exit", || exited(daemon));
    assert_no_survivors(&pm3, Duration::from_secs(2), "after `pm3 kill`");
    assert!(daemons_for(&pm3.home).is_empty(), "the refused start left a daemon running");
}

/// SIGTERM to the daemon with a child whose group ignores SIGTERM (kill_timeout 1 s): the daemon
/// escalates to SIGKILL, and only once the group is gone removes pm3.sock, pm3.pid and
/// state.json and exits; nothing of the test survives.
#[test]
fn sigterm_to_the_daemon_escalates_and_removes_its_files_after_the_group_is_gone() {
    let pm3 = Pm3::new();
    let deaf = abs_script(&pm3, "deaf", DEAF);
    pm3.config(&format!("[deaf]\ncommand = \"{deaf}\"\nkill_timeout = 1000\n"));
    pm3.ok(&["start"]);
    pm3.wait_online(&["deaf"]);
    pm3.wait_log("deaf", "out", "ready");
    let pid = pm3.pid_of("deaf");
    let daemon = pm3.daemon_pid().expect("pm3.pid");
    let (sock, state, pidfile) = (pm3.socket(), pm3.home.join("state.json"), pm3.home.join("pm3.pid"));
    pm3.wait_for("state.json to be written", || state.exists());

    let t = Instant::now();
    send_signal(daemon, libc::SIGTERM);
    let deadline = t + Duration::from_secs(10);
    let mut early = Vec::new();
    while !exited(daemon) && Instant::now() < deadline {
        // Files first, then the group: a member alive now was alive when a file was found gone.
        let gone: Vec<&str> = [(&sock, "pm3.sock"), (&state, "state.json"), (&pidfile, "pm3.pid")]
            .into_iter()
            .filter(|(p, _)| !p.exists())
            .map(|(_, n)| n)
            .collect();
        let members = group_members(pid);
        if !gone.is_empty() && !members.is_empty() && early.is_empty() {
            early.push(format!(
                "{gone:?} removed {:?} after SIGTERM while the group still ran:\n{}",
                t.elapsed(),
                describe_processes(&members)
            ));
        }
        thread::sleep(Duration::from_millis(5));
    }
    let took = t.elapsed();
    assert!(exited(daemon), "the daemon still runs {took:?} after SIGTERM\n{}", pm3.daemon_log());
    let left = group_members(pid);
    assert!(left.is_empty(), "the daemon exited while deaf's group runs:\n{}", describe_processes(&left));
    assert!(early.is_empty(), "{}", early.join("\n"));
    assert!(
        took >= Duration::from_millis(900),
        "the daemon exited {took:?} after SIGTERM, before kill_timeout"
    );
    for (p, n) in [(&sock, "pm3.sock"), (&state, "state.json"), (&pidfile, "pm3.pid")] {
        assert!(!p.exists(), "{n} is removed when the daemon exits");
    }
    assert_no_survivors(&pm3, Duration::from_secs(2), "after SIGTERM to the daemon");
}
