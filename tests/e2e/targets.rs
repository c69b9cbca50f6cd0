//! Targets: instance names, process names, groups, `all`, mixes of them, exact names winning over
//! groups, and unknown targets (exit 1, the known names listed, nothing changed, the `--json`
//! error shape).

use crate::harness::{Pm3, has_status, row_in, snapshot, stderr};

const CONFIG: &str = r#"
[api]
command = "sleep 1000"

[worker]
command = "sleep 1000"
instances = 2
"#;

const ALL: [&str; 3] = ["api", "worker:0", "worker:1"];

fn started() -> Pm3 {
    let pm3 = Pm3::with_config(CONFIG);
    pm3.ok(&["start"]);
    pm3.wait_online(&ALL);
    pm3
}

#[test]
fn an_unknown_target_fails_listing_the_known_names_and_changes_nothing() {
    let pm3 = started();
    let before = snapshot(&pm3.list());
    let commands: [&[&str]; 9] = [
        &["stop", "nosuch"],
        &["restart", "nosuch"],
        &["start", "nosuch"],
        &["signal", "nosuch", "USR1"],
        &["flush", "nosuch"],
        &["info", "nosuch"],
        &["log", "nosuch"],
        &["stop", "api", "nosuch"],
        &["restart", "worker:0", "worker:7"],
    ];
    for args in commands {
        let out = pm3.fails(args);
        let msg = stderr(&out);
        let bad = args.iter().find(|a| **a == "nosuch" || **a == "worker:7").unwrap();
        assert!(msg.contains(bad), "`pm3 {}` names `{bad}`:\n{msg}", args.join(" "));
        for known in ["api", "worker"] {
            assert!(msg.contains(known), "`pm3 {}` lists `{known}`:\n{msg}", args.join(" "));
        }
        assert_eq!(snapshot(&pm3.list()), before, "`pm3 {}` changed something", args.join(" "));
    }
}

#[test]
fn an_unknown_target_on_a_first_start_starts_nothing() {
    let pm3 = Pm3::with_config(CONFIG);
    let out = pm3.fails(&["start", "nosuch"]);
    assert!(stderr(&out).contains("nosuch"), "{}", pm3.explain(&out));
    let rows = pm3.list();
    assert!(rows.is_empty(), "nothing is started or registered: {rows:?}");
}

#[test]
fn unknown_target_json_error_shape() {
    let pm3 = started();
    let msg = pm3.json_error(&["stop", "nosuch"]);
    assert!(msg.contains("nosuch"), "{msg}");
    let msg = pm3.json_error(&["--json", "restart", "nosuch"]);
    assert!(msg.contains("nosuch"), "{msg}");
    for name in ALL {
        assert!(has_status(&pm3.list(), name, "online"), "{name} untouched");
    }
}

#[test]
fn all_means_every_process() {
    let pm3 = started();
    let before: Vec<i32> = ALL.iter().map(|n| pm3.pid_of(n)).collect();

    pm3.ok(&["restart", "all"]);
    let rows = pm3.wait_online(&ALL);
    for (name, old) in ALL.iter().zip(&before) {
        assert_ne!(row_in(&rows, name)["pid"], *old, "{name} was restarted");
    }

    pm3.ok(&["stop", "all"]);
    let rows = pm3.list();
    for name in ALL {
        assert!(has_status(&rows, name, "stopped"), "{name} is stopped");
    }

    pm3.ok(&["start", "all"]);
    pm3.wait_online(&ALL);
}

#[test]
fn targets_mix_instances_processes_and_groups() {
    let pm3 = Pm3::with_config(&format!(
        "{CONFIG}\n[cron]\ncommand = \"sleep 1000\"\ngroup = \"jobs\"\n\n[mail]\ncommand = \"sleep 1000\"\ngroup = \"jobs\"\n"
    ));
    pm3.ok(&["start"]);
    pm3.wait_online(&["api", "worker:0", "worker:1", "cron", "mail"]);

    pm3.ok(&["stop", "worker:1", "jobs"]);
    let rows = pm3.list();
    for name in ["worker:1", "cron", "mail"] {
        assert!(has_status(&rows, name, "stopped"), "{name} is stopped");
    }
    for name in ["api", "worker:0"] {
        assert!(has_status(&rows, name, "online"), "{name} untouched");
    }

    pm3.ok(&["start", "jobs", "worker"]);
    pm3.wait_online(&["worker:1", "cron", "mail"]);
}

#[test]
fn an_exact_process_name_wins_over_a_group_of_the_same_name() {
    let pm3 = Pm3::with_config(
        "[web]\ncommand = \"sleep 1000\"\n\n[worker]\ncommand = \"sleep 1000\"\ninstances = 2\ngroup = \"web\"\n",
    );
    pm3.ok(&["start"]);
    pm3.wait_online(&["web", "worker:0", "worker:1"]);
    pm3.ok(&["stop", "web"]);
    let rows = pm3.list();
    assert!(has_status(&rows, "web", "stopped"), "`web` is stopped");
    for name in ["worker:0", "worker:1"] {
        assert!(has_status(&rows, name, "online"), "{name}, in group `web`, is untouched");
    }
}

/// `pm3 restart old` for a process removed from the file while it runs: exit 1 with what to do
/// instead (`pm3 stop old`, `pm3 start`), and the process untouched; both ways out work. A
/// process of another config file is named with that file.
#[test]
fn a_process_removed_from_the_file_is_named_as_such() {
    let pm3 = Pm3::with_config("[app]\ncommand = \"sleep 1000\"\n\n[old]\ncommand = \"sleep 1000\"\n");
    pm3.ok(&["start"]);
    pm3.wait_online(&["app", "old"]);
    let pid = pm3.pid_of("old");
    pm3.config("[app]\ncommand = \"sleep 1000\"\n");
    let file = pm3.config_path().display().to_string();
    for args in [&["restart", "old"][..], &["reload", "old"], &["start", "old"]] {
        let out = pm3.fails(args);
        let want = format!(
            "error: `old` is no longer in {file}; `pm3 stop old` stops it, `pm3 start` (the whole file) stops and forgets it\n"
        );
        assert_eq!(stderr(&out), want, "`pm3 {}`", args.join(" "));
        assert_eq!(pm3.pid_of("old"), pid, "`pm3 {}` leaves it running", args.join(" "));
    }

    let other = pm3.root.join("other");
    std::fs::create_dir(&other).expect("mkdir");
    std::fs::write(other.join("pm3.toml"), "[side]\ncommand = \"sleep 1000\"\n").expect("write");
    let out = pm3.run_in(&other, &["restart", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", pm3.explain(&out));
    let other_file = other.join("pm3.toml").display().to_string();
    assert_eq!(
        stderr(&out),
        format!(
            "error: `app` is managed from {file}, not {other_file}; run the command there, or with `-c {file}`\n"
        )
    );

    pm3.ok(&["stop", "old"]);
    assert_eq!(pm3.row("old")["status"], "stopped");
    pm3.ok(&["start"]);
    let rows = pm3.list();
    assert!(rows.iter().all(|r| r["name"] != "old"), "`pm3 start` forgets it: {rows:?}");
    assert!(has_status(&rows, "app", "online"));
}
