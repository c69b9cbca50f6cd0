//! The daemon and its data directory: started on demand, 0700 directory and 0600 socket,
//! `pm3.pid`, a directory or socket owned by another user refused, `pm3 kill` (stops everything,
//! removes socket and pid file, leaves no process of any group, never starts a daemon), many
//! clients at once (also racing to start the daemon), garbage and oversized requests, and one
//! daemon serving two config files.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread;
use std::time::Duration;

use crate::harness::{Pm3, alive, daemons_for, group_members, mode, names, row_in, stderr, stdout};

#[test]
fn list_starts_the_daemon_with_a_private_directory_and_socket() {
    let pm3 = Pm3::new();
    let rows = pm3.list();
    assert!(rows.is_empty(), "nothing managed yet: {rows:?}");
    assert_eq!(mode(&pm3.home), 0o700, "PM3_HOME is created 0700");
    let sock = pm3.socket();
    assert!(fs::metadata(&sock).unwrap().file_type().is_socket(), "pm3.sock is a socket");
    assert_eq!(mode(&sock), 0o600, "pm3.sock is 0600");
    let pid = pm3.daemon_pid().expect("pm3.pid holds the daemon pid");
    assert!(alive(pid), "the daemon in pm3.pid runs");
    assert_eq!(daemons_for(&pm3.home), [pid], "exactly one daemon, the one in pm3.pid");
}

#[test]
fn kill_stops_everything_and_removes_socket_and_pid_file() {
    let pm3 =
        Pm3::with_config("[a]\ncommand = \"sleep 1000\"\n\n[b]\ncommand = \"sleep 1000\"\ninstances = 2\n");
    pm3.ok(&["start"]);
    pm3.wait_online(&["a", "b:0", "b:1"]);
    let pids: Vec<i32> = ["a", "b:0", "b:1"].iter().map(|n| pm3.pid_of(n)).collect();
    let daemon = pm3.daemon_pid().expect("pm3.pid");

    pm3.ok(&["kill"]);
    for pid in &pids {
        assert!(!alive(*pid), "pid {pid} survived `pm3 kill`");
    }
    pm3.wait_for("the daemon to exit", || !alive(daemon));
    assert!(!pm3.socket().exists(), "pm3.sock is removed");
    assert!(!pm3.home.join("pm3.pid").exists(), "pm3.pid is removed");
}

#[test]
fn kill_without_a_daemon_does_not_start_one() {
    let pm3 = Pm3::new();
    let out = pm3.run(&["kill"]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", pm3.explain(&out));
    assert!(!pm3.socket().exists(), "`pm3 kill` started a daemon");
    assert!(daemons_for(&pm3.home).is_empty(), "`pm3 kill` started a daemon");
}

#[test]
fn kill_leaves_no_process_of_a_group_behind() {
    let pm3 = Pm3::with_config("[bg]\ncommand = \"sh -c 'sleep 1000 & sleep 1000 & wait'\"\n");
    pm3.ok(&["start"]);
    let pgid = pm3.pid_of("bg");
    pm3.wait_for("the shell and its two sleeps", || group_members(pgid).len() >= 3);

    pm3.ok(&["kill"]);
    // Zombies waiting for their reaper are not alive: scan /proc instead of kill(-pgid, 0).
    pm3.wait_for("every process of the group to be gone", || group_members(pgid).is_empty());
}

#[test]
fn stop_leaves_no_process_of_a_group_behind() {
    let pm3 = Pm3::with_config("[bg]\ncommand = \"sh -c 'sleep 1000 & sleep 1000 & wait'\"\n");
    pm3.ok(&["start"]);
    let pgid = pm3.pid_of("bg");
    pm3.wait_for("the shell and its two sleeps", || group_members(pgid).len() >= 3);
    pm3.ok(&["stop", "bg"]);
    assert!(group_members(pgid).is_empty(), "left behind: {:?}", group_members(pgid));
}

fn is_root() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn a_data_directory_owned_by_another_user_is_refused() {
    if !is_root() {
        eprintln!("skipped: needs root to chown a directory to another user");
        return;
    }
    let pm3 = Pm3::with_config("[a]\ncommand = \"sleep 1000\"\n");
    fs::create_dir(&pm3.home).unwrap();
    std::os::unix::fs::chown(&pm3.home, Some(65534), Some(65534)).unwrap();
    for args in [&["list"][..], &["start"][..]] {
        let out = pm3.fails(args);
        let home = pm3.home.display().to_string();
        assert!(stderr(&out).contains(&home), "the message names {home}:\n{}", pm3.explain(&out));
    }
    assert!(!pm3.socket().exists(), "no daemon in a foreign directory");
    assert!(daemons_for(&pm3.home).is_empty(), "no daemon in a foreign directory");
}

#[test]
fn a_socket_owned_by_another_user_is_refused() {
    if !is_root() {
        eprintln!("skipped: needs root to chown a socket to another user");
        return;
    }
    let pm3 = Pm3::new();
    fs::create_dir(&pm3.home).unwrap();
    fs::set_permissions(&pm3.home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let listener = UnixListener::bind(pm3.socket()).unwrap();
    std::os::unix::fs::chown(pm3.socket(), Some(65534), Some(65534)).unwrap();
    drop(listener);
    let out = pm3.fails(&["list"]);
    assert!(stderr(&out).contains("pm3.sock"), "the message names the socket:\n{}", pm3.explain(&out));
}

#[test]
fn twenty_clients_at_once_are_all_served() {
    let pm3 = Pm3::with_config("[a]\ncommand = \"sleep 1000\"\n");
    pm3.ok(&["start"]);
    let pid = pm3.pid_of("a");
    let outs: Vec<_> = thread::scope(|s| {
        let handles: Vec<_> = (0..20).map(|_| s.spawn(|| pm3.run(&["list", "--json"]))).collect();
        handles.into_iter().map(|h| h.join().expect("client thread")).collect()
    });
    for out in outs {
        assert_eq!(out.status.code(), Some(0), "{}", pm3.explain(&out));
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(rows[0]["pid"], pid, "{rows}");
    }
}

#[test]
fn clients_racing_to_start_the_daemon_start_exactly_one() {
    let pm3 = Pm3::new();
    let outs: Vec<_> = thread::scope(|s| {
        let handles: Vec<_> = (0..20).map(|_| s.spawn(|| pm3.run(&["list", "--json"]))).collect();
        handles.into_iter().map(|h| h.join().expect("client thread")).collect()
    });
    for out in outs {
        assert_eq!(out.status.code(), Some(0), "{}", pm3.explain(&out));
        assert_eq!(stdout(&out).trim(), "[]", "{}", pm3.explain(&out));
    }
    let daemon = pm3.daemon_pid().expect("pm3.pid");
    pm3.wait_for("exactly one daemon", || daemons_for(&pm3.home) == [daemon]);
}

/// Sends raw bytes to the daemon socket, then reads whatever comes back (with a time limit).
fn raw(pm3: &Pm3, bytes: &[u8], close_write: bool) {
    let mut s = UnixStream::connect(pm3.socket()).expect("connect to pm3.sock");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    if close_write {
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
}

#[test]
fn garbage_and_huge_requests_do_not_take_the_daemon_down() {
    let pm3 = Pm3::with_config("[a]\ncommand = \"sleep 1000\"\n");
    pm3.ok(&["start"]);
    let pid = pm3.pid_of("a");
    let daemon = pm3.daemon_pid().expect("pm3.pid");
    let same_daemon = |what: &str| {
        let rows = pm3.list();
        assert_eq!(row_in(&rows, "a")["pid"], pid, "after {what}: the process is untouched");
        assert_eq!(pm3.daemon_pid(), Some(daemon), "after {what}: the same daemon answers");
        assert!(alive(daemon), "after {what}: the daemon died");
    };

    raw(&pm3, b"\x00\xff\xfe garbage {{{ not json\n\n}\n", true);
    same_daemon("garbage bytes");

    raw(&pm3, b"{\"v\":1,\"req\":{\"cmd\":\"nonsense\"}}\n{\"v\":99,\"req\":{\"cmd\":\"list\"}}\n", true);
    same_daemon("unknown requests");

    raw(&pm3, b"{\"v\":1,\"req\":{\"cmd\":\"li", false);
    same_daemon("an abrupt disconnect");

    raw(&pm3, &vec![b'a'; 10 << 20], true);
    same_daemon("an unterminated 10 MB line");
}

#[test]
fn one_daemon_serves_two_config_files() {
    let pm3 = Pm3::with_config("[api]\ncommand = \"sleep 1000\"\n");
    let other = pm3.root.join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("pm3.toml"), "[jobs]\ncommand = \"sleep 1000\"\n").unwrap();

    pm3.ok(&["start"]);
    let out = pm3.run_in(&other, &["start"]);
    assert_eq!(out.status.code(), Some(0), "{}", pm3.explain(&out));
    let rows = pm3.wait_online(&["api", "jobs"]);
    assert_eq!(names(&rows).len(), 2);
    assert_eq!(row_in(&rows, "api")["config"], pm3.config_path().display().to_string().as_str());
    let jobs_cfg = other.join("pm3.toml").display().to_string();
    assert_eq!(row_in(&rows, "jobs")["config"], jobs_cfg.as_str());

    // The same name from a third file is refused, naming both files.
    let third = pm3.root.join("third");
    fs::create_dir(&third).unwrap();
    fs::write(third.join("pm3.toml"), "[api]\ncommand = \"sleep 1000\"\n").unwrap();
    let out = pm3.run_in(&third, &["start"]);
    assert_eq!(out.status.code(), Some(1), "{}", pm3.explain(&out));
    let msg = stderr(&out);
    assert!(msg.contains(&pm3.config_path().display().to_string()), "names the first file:\n{msg}");
    assert!(msg.contains(&third.join("pm3.toml").display().to_string()), "names the second file:\n{msg}");
    let after = pm3.list();
    assert_eq!(row_in(&after, "api")["pid"], row_in(&rows, "api")["pid"], "api untouched");
}

#[test]
fn a_daemon_killed_by_sigkill_is_replaced_and_adopts_its_processes() {
    let pm3 = Pm3::new();
    let tick = pm3.script("tick", "i=0\nwhile true; do echo tick $i; i=$((i+1)); sleep 0.05; done\n");
    pm3.config(&format!(
        "[tick]\ncommand = \"{tick}\"\nkill_timeout = 1000\n\n[worker]\ncommand = \"sleep 1000\"\ninstances = 2\n"
    ));
    pm3.ok(&["start"]);
    let names = ["tick", "worker:0", "worker:1"];
    pm3.wait_online(&names);
    let pids: Vec<i32> = names.iter().map(|n| pm3.pid_of(n)).collect();
    let daemon = pm3.daemon_pid().expect("pm3.pid");
    pm3.wait_log("tick", "out", "tick 2\n");

    crate::harness::send_signal(daemon, libc::SIGKILL);
    pm3.wait_for("the old daemon to die", || !alive(daemon));

    // Any command brings a daemon back; it adopts the live processes instead of starting copies.
    let rows = pm3.wait_online(&names);
    let new_daemon = pm3.daemon_pid().expect("pm3.pid");
    assert_ne!(new_daemon, daemon, "a new daemon runs");
    for (name, pid) in names.iter().zip(&pids) {
        assert_eq!(row_in(&rows, name)["pid"], *pid, "{name} is adopted, not restarted");
        assert!(alive(*pid), "{name} survived the daemon's death");
    }
    assert_eq!(daemons_for(&pm3.home), [new_daemon], "exactly one daemon");

    // The writer did not die of a broken pipe, and its output still reaches the log.
    let seen = pm3.read_log("tick", "out").lines().count();
    pm3.wait_for("new ticks in tick-out.log after the adoption", || {
        pm3.read_log("tick", "out").lines().count() >= seen + 5
    });
    assert_eq!(pm3.pid_of("tick"), pids[0], "the writer is still the same process");
}
