//! Which commands run through `/bin/sh -c`, seen from the processes: leading `VAR=value`
//! assignments, `exec`, reserved words and built-ins start (instead of "cannot run `PORT=…`"),
//! `exec` leaves the program itself as the group leader, and a command `/bin/sh` cannot parse (an
//! unterminated quote) is refused at its line and column instead of crash-looping.

use std::collections::BTreeMap;

use crate::harness::{Pm3, free_port, http_get, locations, python, stderr};

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}

fn environ(pid: i32) -> BTreeMap<String, String> {
    crate::harness::environ(pid).unwrap_or_default()
}

#[test]
fn a_leading_assignment_runs_through_sh() {
    let port = free_port();
    let py = python();
    let pm3 = Pm3::with_config(&format!(
        "[web]\ncommand = \"PORT={port} GREETING='hello world' {py} -m http.server {port} --bind 127.0.0.1\"\n"
    ));
    let out = pm3.run(&["start"]);
    assert_eq!(out.status.code(), Some(0), "{}", pm3.explain(&out));
    pm3.wait_online(&["web"]);
    pm3.wait_for("the server to answer", || http_get(port).is_some_and(|a| a.starts_with("HTTP/1.0 200")));
    let argv = &pm3.info("web")["argv"];
    assert_eq!(argv[0], "/bin/sh", "{argv}");
    // The server (the shell's child, or the shell itself if it execs) has the variables.
    let leader = pm3.pid_of("web");
    let server = crate::harness::group_members(leader)
        .into_iter()
        .find(|&p| environ(p).contains_key("PORT"))
        .expect("a process of the group with PORT");
    let env = environ(server);
    assert_eq!((env["PORT"].as_str(), env["GREETING"].as_str()), (port.to_string().as_str(), "hello world"));
}

#[test]
fn exec_leaves_the_program_as_the_group_leader() {
    let pm3 = Pm3::with_config(
        "[plain]\ncommand = \"exec sleep 1000\"\n\n[assigned]\ncommand = \"MODE=exec exec sleep 1001\"\n",
    );
    let out = pm3.run(&["start"]);
    assert_eq!(out.status.code(), Some(0), "{}", pm3.explain(&out));
    pm3.wait_online(&["plain", "assigned"]);
    for name in ["plain", "assigned"] {
        let pid = pm3.pid_of(name);
        pm3.wait_for("the shell to exec", || comm(pid) == "sleep");
        // SAFETY: getpgid only reads its argument.
        assert_eq!(unsafe { libc::getpgid(pid) }, pid, "{name} leads its group");
        assert_eq!(crate::harness::group_members(pid), [pid], "{name}: no shell left around it");
    }
    assert_eq!(environ(pm3.pid_of("assigned"))["MODE"], "exec");
    // A stop ends it as any process.
    pm3.ok(&["stop", "plain"]);
    assert_eq!(pm3.row("plain")["status"], "stopped");
}

#[test]
fn reserved_words_and_built_ins_run_through_sh() {
    let pm3 = Pm3::new();
    pm3.write("vars.sh", "echo sourced\n");
    std::fs::create_dir(pm3.project.join("sub")).expect("mkdir");
    let commands = [
        ("cd", "cd sub"),
        ("umask", "umask 077"),
        ("export", "export A=1"),
        ("dot", ". ./vars.sh"),
        ("eval", "eval 'echo evaluated'"),
        ("bang", "! false"),
        ("set", "set -e"),
        ("ulimit", "ulimit -n 64"),
        ("trap", "trap '' TERM"),
        ("colon", ": nothing to do"),
    ];
    let config: String = commands
        .iter()
        .map(|(name, cmd)| format!("[{name}]\ncommand = \"{cmd}\"\nrestart = \"never\"\n\n"))
        .collect();
    pm3.config(&config);
    let out = pm3.run(&["start"]);
    assert_eq!(out.status.code(), Some(0), "{}", pm3.explain(&out));
    let rows = pm3.wait_until("every command ran and exited", |rows| {
        rows.len() == commands.len() && rows.iter().all(|r| r["pid"].is_null() && !r["exit_code"].is_null())
    });
    for r in &rows {
        assert_eq!((&r["status"], &r["exit_code"]), (&"stopped".into(), &0.into()), "{r}");
    }
    pm3.wait_log("dot", "out", "sourced");
    pm3.wait_log("eval", "out", "evaluated");
}

#[test]
fn an_unterminated_quote_is_a_config_error() {
    let pm3 = Pm3::with_config(
        "[web]\ncommand = \"sleep 1000\"\n\n[broken]\ncommand = \"echo 'it is\"\n\
         pre_start = \"if true; then echo x\"\n",
    );
    let out = pm3.fails(&["start"]);
    let msg = stderr(&out);
    assert!(msg.contains("`command`: shell syntax error"), "{msg}");
    assert!(msg.contains("`pre_start`: shell syntax error"), "{msg}");
    let at = locations(&msg, "pm3.toml");
    assert!(at.contains(&(5, 11)) && at.contains(&(6, 13)), "{at:?}\n{msg}");
    assert!(!pm3.socket().exists(), "a config error must not start the daemon");
}
