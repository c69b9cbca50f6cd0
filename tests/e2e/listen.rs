//! `listen`: pm3 binds the sockets, every instance inherits them with the systemd protocol,
//! they outlive the processes (restarts, a daemon SIGKILL), and `pm3 reload` of a process with
//! sockets starts each replacement beside the old instance (surge), so no connection fails.

use std::collections::BTreeSet;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use crate::harness::*;

/// The sockets `pid` holds: (descriptor, `socket:[inode]`).
fn sockets_of(pid: i32) -> Vec<(u32, String)> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    let mut out: Vec<(u32, String)> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = fs::read_link(e.path()).ok()?.to_string_lossy().into_owned();
            target.starts_with("socket:").then_some((fd, target))
        })
        .collect();
    out.sort();
    out
}

/// Every descriptor `pid` has open.
fn fds_of(pid: i32) -> BTreeSet<u32> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

fn connects(port: u16) -> bool {
    TcpStream::connect_timeout(&std::net::SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(2))
        .is_ok()
}

/// Each instance gets exactly the declared sockets on 3 and 4, shared by all instances (the
/// same kernel socket), with `LISTEN_FDS`, its own pid in `LISTEN_PID` and the names; the
/// sockets stay the same across a restart, and `pm3 stop` of the process closes them.
#[test]
fn instances_inherit_the_declared_sockets_and_nothing_else() {
    let pm3 = Pm3::new();
    let port = free_port();
    let sock = pm3.root.join("ctl.sock");
    pm3.config(&format!(
        "[web]\ncommand = \"sleep 1000\"\ninstances = 2\nlisten = [\"tcp://127.0.0.1:{port}\", \"unix:{}?name=ctl\"]\n",
        sock.display()
    ));
    // A stale variable of the caller's environment never reaches a process.
    let out = pm3.run_env(&["start"], &[("LISTEN_FDS", "9"), ("LISTEN_PID", "1")]);
    assert!(out.status.success(), "{}", pm3.explain(&out));
    pm3.wait_online(&["web:0", "web:1"]);
    let pids = [pm3.pid_of("web:0"), pm3.pid_of("web:1")];
    let mut inodes = Vec::new();
    for pid in pids {
        pm3.remember(pid);
        let env = environ(pid).expect("environ");
        assert_eq!(env.get("LISTEN_FDS").map(String::as_str), Some("2"), "{env:?}");
        assert_eq!(env.get("LISTEN_PID"), Some(&pid.to_string()), "LISTEN_PID is the child's own pid");
        assert_eq!(env.get("LISTEN_FDNAMES").map(String::as_str), Some("web:ctl"));
        assert_eq!(fds_of(pid), BTreeSet::from([0, 1, 2, 3, 4]), "only stdio and the declared sockets");
        let socks = sockets_of(pid);
        assert_eq!(socks.iter().map(|s| s.0).collect::<Vec<_>>(), [3, 4], "{socks:?}");
        inodes.push(socks);
    }
    assert_eq!(inodes[0], inodes[1], "both instances hold the very same sockets");
    // Nothing accepts (sleep), yet the kernel completes connections: the sockets listen.
    assert!(connects(port));
    assert!(std::os::unix::net::UnixStream::connect(&sock).is_ok());
    let info = pm3.info("web:0");
    let listen = info["listen"].as_array().expect("listen in info");
    assert_eq!(listen.len(), 2, "{}", pretty(&info));
    assert_eq!(listen[0]["address"], format!("tcp://127.0.0.1:{port}"));
    assert_eq!(listen[1]["name"], "ctl");
    assert_eq!(listen[1]["fd"], 4);
    assert_eq!(listen[0]["bound"], true);
    let text = stdout(&pm3.ok(&["info", "web:0"]));
    assert!(text.contains(&format!("tcp://127.0.0.1:{port} (fd 3, name web, bound)")), "{text}");

    // A restart keeps the sockets: the new processes get the same ones.
    pm3.ok(&["restart", "web"]);
    pm3.wait_online(&["web:0", "web:1"]);
    let new = pm3.pid_of("web:0");
    assert_ne!(new, pids[0]);
    pm3.remember(new);
    assert_eq!(sockets_of(new), inodes[0], "the same sockets after a restart");
    assert_eq!(environ(new).expect("environ").get("LISTEN_PID"), Some(&new.to_string()));

    // Stopping one instance keeps them; stopping the process closes them.
    pm3.ok(&["stop", "web:1"]);
    assert!(connects(port));
    pm3.ok(&["stop", "web"]);
    pm3.wait_for("the port to close", || !connects(port));
    assert!(!sock.exists(), "the unix socket file goes with the socket");
    assert!(TcpListener::bind(("127.0.0.1", port)).is_ok(), "the port is free again");
    assert_eq!(pm3.info("web:0")["listen"][0]["bound"], false);
}

/// A socket that cannot be bound is an error at its `listen` entry in the file, naming the
/// address and the reason; nothing starts.
#[test]
fn a_taken_port_is_an_error_located_in_the_file() {
    let pm3 = Pm3::new();
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let free = free_port();
    pm3.config(&format!(
        "[ok]\ncommand = \"sleep 1000\"\n\n[web]\ncommand = \"sleep 1000\"\nlisten = [\n  \"tcp://127.0.0.1:{free}\",\n  \"tcp://127.0.0.1:{port}\",\n]\n"
    ));
    let out = pm3.fails(&["start"]);
    let err = stderr(&out);
    assert_eq!(locations(&err, "pm3.toml"), [(8, 3)], "{err}");
    assert!(err.contains(&format!("tcp://127.0.0.1:{port}")), "{err}");
    assert!(err.contains("listen[1]") && err.contains("in use"), "{err}");
    for row in pm3.list() {
        assert_eq!(row["status"], "stopped", "nothing starts: {}", pretty(&row));
    }
    // Nothing half-applied: the first socket was not kept either.
    assert!(TcpListener::bind(("127.0.0.1", free)).is_ok(), "the other socket was released");
    let json = pm3.json_error(&["start"]);
    assert!(json.contains("pm3.toml:8:3"), "{json}");
    // Bad addresses are config errors before anything is sent.
    pm3.config("[web]\ncommand = \"sleep 1000\"\nlisten = \"tcp://127.0.0.1:99999\"\n");
    let err = stderr(&pm3.fails(&["start"]));
    assert_eq!(locations(&err, "pm3.toml"), [(3, 10)], "{err}");
}
