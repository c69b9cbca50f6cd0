//! The command line as a user and a script see it: human output of `start`, the `list` table
//! (and its `ls`/`view` aliases), `--json` anywhere on the line, `-c/--config`, usage errors
//! (exit 2), `--version`/`--help`, no color with `NO_COLOR`.

use crate::harness::{Pm3, names, stderr, stdout};

#[test]
fn start_prints_one_line_per_process() {
    let pm3 = Pm3::with_config(
        "[api]\ncommand = \"sleep 1000\"\n\n[worker]\ncommand = \"sleep 1000\"\ninstances = 2\n",
    );
    let out = stdout(&pm3.ok(&["start"]));
    let rows = pm3.wait_online(&["api", "worker:0", "worker:1"]);
    for name in ["api", "worker:0", "worker:1"] {
        let pid = rows.iter().find(|r| r["name"] == name).unwrap()["pid"].clone();
        let want = format!("started {name} (pid {pid})");
        assert!(out.lines().any(|l| l.trim() == want), "no line `{want}` in:\n{out}");
    }
    assert_eq!(out.lines().filter(|l| !l.trim().is_empty()).count(), 3, "one line each:\n{out}");

    let again = stdout(&pm3.ok(&["start"]));
    for name in ["api", "worker:0", "worker:1"] {
        assert!(
            again.lines().any(|l| l.contains(name) && l.contains("already running")),
            "`{name}` already running:\n{again}"
        );
    }
}

#[test]
fn list_prints_a_table_with_one_row_per_process() {
    let pm3 = Pm3::with_config(
        "[api]\ncommand = \"sleep 1000\"\n\n[worker]\ncommand = \"sleep 1000\"\ninstances = 2\n",
    );
    pm3.ok(&["start"]);
    let rows = pm3.wait_online(&["api", "worker:0", "worker:1"]);
    let table = stdout(&pm3.ok(&["list"]));
    assert!(!table.contains('\x1b'), "NO_COLOR: no escape sequences:\n{table}");
    let mut lines = table.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "GROUP", "STATUS", "PID", "UPTIME", "RESTARTS", "CPU", "MEM"], "{table}");
    let body: Vec<&str> = lines.collect();
    for name in names(&rows) {
        let pid = rows.iter().find(|r| r["name"] == name.as_str()).unwrap()["pid"].to_string();
        let line = body
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("no row for {name}:\n{table}"));
        assert!(line.contains("online") && line.contains(&pid), "row of {name}: {line}");
    }
    assert_eq!(body.len(), 3, "one row per process:\n{table}");
    let worker_row = body.iter().find(|l| l.starts_with("worker:0")).unwrap();
    assert_eq!(worker_row.split_whitespace().nth(1), Some("worker"), "GROUP column: {worker_row}");

    for alias in ["ls", "view"] {
        let other = stdout(&pm3.ok(&[alias]));
        let first = other.lines().next().unwrap_or_default().split_whitespace().collect::<Vec<_>>();
        assert_eq!(first, header, "`pm3 {alias}` prints the same table:\n{other}");
    }
}

#[test]
fn json_flag_works_anywhere_on_the_line() {
    let pm3 = Pm3::with_config("[api]\ncommand = \"sleep 1000\"\n");
    let report = pm3.json(&["--json", "start"]);
    assert_eq!(report["command"], "start");
    for args in [&["--json", "list"][..], &["list", "--json"][..], &["ls", "--json"][..]] {
        let v = pm3.json(args);
        assert_eq!(v.as_array().map(Vec::len), Some(1), "`pm3 {}`: {v}", args.join(" "));
    }
    let info = pm3.json(&["--json", "info", "api"]);
    assert_eq!(info["name"], "api");
}

#[test]
fn config_flag_picks_the_file() {
    let pm3 = Pm3::new();
    let file = pm3.write("conf/other.toml", "[from_flag]\ncommand = \"sleep 1000\"\n");
    // The project directory holds no pm3.toml; the root has none either.
    let out = pm3.run_in(&pm3.root, &["-c", "project/conf/other.toml", "start"]);
    assert_eq!(out.status.code(), Some(0), "{}", pm3.explain(&out));
    let row = pm3.wait_status("from_flag", "online");
    assert_eq!(row["config"], file.display().to_string().as_str(), "config is absolute");

    pm3.ok(&["--config", file.to_str().unwrap(), "stop", "from_flag"]);
    let out = pm3.run(&["--config", "no/such/file.toml", "start"]);
    assert_eq!(out.status.code(), Some(1), "{}", pm3.explain(&out));
    assert!(stderr(&out).contains("no/such/file.toml"), "names the file:\n{}", stderr(&out));
}

#[test]
fn usage_errors_exit_2() {
    let pm3 = Pm3::with_config("[api]\ncommand = \"sleep 1000\"\n");
    let cases: [&[&str]; 5] = [
        &["frobnicate"],
        &["start", "--no-such-flag"],
        &["log", "-n", "lots"],
        &["signal"],
        &["scale", "api"],
    ];
    for args in cases {
        let out = pm3.run(args);
        assert_eq!(out.status.code(), Some(2), "`pm3 {}`\n{}", args.join(" "), pm3.explain(&out));
        assert!(!stderr(&out).trim().is_empty(), "`pm3 {}` explains itself", args.join(" "));
    }
    assert!(!pm3.socket().exists(), "a usage error starts no daemon");
}

#[test]
fn version_and_help() {
    let pm3 = Pm3::new();
    let v = stdout(&pm3.ok(&["--version"]));
    assert!(v.contains("pm3"), "{v}");
    let help = stdout(&pm3.ok(&["--help"]));
    for cmd in ["start", "stop", "restart", "list", "log", "kill", "scale"] {
        assert!(help.contains(cmd), "--help mentions `{cmd}`:\n{help}");
    }
    assert!(!pm3.socket().exists(), "--help starts no daemon");
}

/// Every argument and option of every command says what it is in `--help`.
#[test]
fn every_argument_has_help() {
    let pm3 = Pm3::new();
    let commands = [
        "start",
        "stop",
        "restart",
        "reload",
        "run",
        "list",
        "info",
        "log",
        "flush",
        "signal",
        "scale",
        "save",
        "resurrect",
        "startup",
        "unstartup",
        "kill",
        "export",
        "init",
        "completions",
        "tui",
        "man",
    ];
    for cmd in commands {
        let help = stdout(&pm3.ok(&[cmd, "--help"]));
        let entries: Vec<&str> = help
            .lines()
            .filter(|l| l.starts_with("  ") && matches!(l.trim_start().chars().next(), Some('[' | '<' | '-')))
            .collect();
        assert!(!entries.is_empty(), "`pm3 {cmd} --help` lists arguments or options:\n{help}");
        for entry in entries {
            let parts: Vec<&str> = entry.trim().split("  ").filter(|p| !p.trim().is_empty()).collect();
            assert!(parts.len() >= 2, "`pm3 {cmd} --help`: `{}` has no help text:\n{help}", entry.trim());
        }
    }
    let start = stdout(&pm3.ok(&["start", "--help"]));
    assert!(
        start.contains("[TARGETS]...  What to start: instances (`web:2`), processes, groups or `all`"),
        "{start}"
    );
    assert!(start.contains("--env <NAME>     Apply the `env_<NAME>` tables of pm3.toml"), "{start}");
}

#[test]
fn info_prints_a_readable_summary() {
    let pm3 = Pm3::with_config("[api]\ncommand = \"sleep 1000\"\n");
    pm3.ok(&["start"]);
    let pid = pm3.pid_of("api");
    let out = stdout(&pm3.ok(&["info", "api"]));
    for want in ["api", &pid.to_string(), "online", "sleep 1000", "api-out.log"] {
        assert!(out.contains(want), "`pm3 info api` shows {want}:\n{out}");
    }
}

#[test]
fn completions_and_man_page_come_from_the_command_definitions() {
    let pm3 = Pm3::new();
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout(&pm3.ok(&["completions", shell]));
        for sub in ["start", "reload", "resurrect", "tui"] {
            assert!(script.contains(sub), "{shell} completions lack `{sub}`");
        }
    }
    let out = pm3.run(&["completions", "powershell-ish"]);
    assert_eq!(out.status.code(), Some(2), "an unknown shell is a usage error");
    let man = stdout(&pm3.ok(&["man"]));
    assert!(man.starts_with(".ie") || man.contains(".TH pm3"), "roff output: {}", &man[..man.len().min(200)]);
    assert!(man.contains("scale"), "the man page lists the subcommands");
    // None of these needs a daemon.
    assert!(!pm3.home.join("pm3.sock").exists(), "no daemon was started");
}

#[test]
fn list_json_works_with_the_flag_before_or_after() {
    let pm3 = Pm3::with_config("[api]\ncommand = \"sleep 1000\"\n");
    pm3.ok(&["start"]);
    for args in [["list", "--json"], ["--json", "list"], ["ls", "--json"], ["--json", "view"]] {
        let rows: serde_json::Value = serde_json::from_str(&stdout(&pm3.ok(&args))).expect("json array");
        assert_eq!(names(rows.as_array().expect("array")), ["api"], "{args:?}");
    }
}
