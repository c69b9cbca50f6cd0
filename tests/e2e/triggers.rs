//! Restart triggers: `max_memory` (the memory of the process and its descendants, sampled
//! every 2 s), `cron_restart` (6 fields, with seconds), `watch` (debounced: a burst of writes is
//! one restart; `watch_ignore` and its default list; a watched sub-directory). Each restart
//! counts in `restarts` and `info` gives its cause in `last_exit.reason`.

use std::fs;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Pm3, alive, python, row_in};

fn restarts(rows: &[Value], name: &str) -> u64 {
    rows.iter().find(|r| r["name"] == name).and_then(|r| r["restarts"].as_u64()).unwrap_or(0)
}

/// A shell whose python child holds 60 MB is restarted for `max_memory = "30M"` (the limit
/// covers descendants), with `last_exit.reason` "memory"; a small process beside it is not.
#[test]
fn a_process_over_max_memory_is_restarted() {
    let pm3 = Pm3::new();
    pm3.write(
        "hog.py",
        "import time\nblob = b'x' * (60 << 20)\nprint('allocated', len(blob), flush=True)\ntime.sleep(1000)\n",
    );
    let hog = pm3.script("hog", &format!("{} hog.py\n", python()));
    pm3.config(&format!(
        "[hog]\ncommand = \"{hog}\"\nmax_memory = \"30M\"\nkill_timeout = 500\n\n\
         [small]\ncommand = \"sleep 1000\"\nmax_memory = \"30M\"\n"
    ));
    pm3.ok(&["start"]);
    let first = pm3.pid_of("hog");
    let small = pm3.pid_of("small");
    pm3.wait_log("hog", "out", "allocated");
    let rows = pm3.wait_until("hog is restarted for its memory", |rows| restarts(rows, "hog") >= 1);
    let info = pm3.info("hog");
    assert_eq!(info["last_exit"]["reason"], "memory", "{info}");
    assert!(!alive(first), "the first run is gone");
    assert_eq!(row_in(&rows, "small")["restarts"], 0, "a process under the limit is left alone");
    assert_eq!(pm3.pid_of("small"), small);
}

/// `cron_restart = "*/2 * * * * *"` restarts every two seconds: at least two restarts within
/// ~5 s, reason "cron", and the process is back online after each.
#[test]
fn cron_restart_restarts_on_schedule() {
    let pm3 = Pm3::with_config(
        "[ticker]\ncommand = \"sleep 1000\"\ncron_restart = \"*/2 * * * * *\"\nkill_timeout = 500\n",
    );
    pm3.ok(&["start"]);
    let first = pm3.pid_of("ticker");
    let rows = pm3.wait_until_within("two cron restarts", Duration::from_millis(5500), |rows| {
        restarts(rows, "ticker") >= 2
    });
    assert!(restarts(&rows, "ticker") <= 3, "every 2 s, not more: {}", row_in(&rows, "ticker"));
    let info = pm3.info("ticker");
    assert_eq!(info["last_exit"]["reason"], "cron", "{info}");
    assert!(!alive(first), "the first run was stopped");
    pm3.wait_online(&["ticker"]);
}

/// `watch = true` (the cwd, here the project): a burst of 20 writes restarts the process once
/// (`restarts` == 1 well after the debounce), reason "watch"; writes under a default-ignored
/// directory (`node_modules`, `.git`) restart nothing. `watch = "conf"` only sees `conf/`.
#[test]
fn watch_restarts_once_per_burst_and_ignores_ignored_paths() {
    let pm3 = Pm3::new();
    for dir in ["src", "conf", "node_modules/pkg", ".git"] {
        fs::create_dir_all(pm3.project.join(dir)).unwrap();
    }
    pm3.config(
        "[app]\ncommand = \"sleep 1000\"\nwatch = true\nwatch_debounce = 300\nkill_timeout = 500\n\n\
         [confd]\ncommand = \"sleep 1000\"\nwatch = \"conf\"\nwatch_debounce = 300\nkill_timeout = 500\n",
    );
    pm3.ok(&["start"]);
    pm3.wait_online(&["app", "confd"]);
    let first = pm3.pid_of("app");

    for i in 0..20 {
        pm3.write(&format!("src/file{i}.txt"), &format!("version {i}\n"));
        thread::sleep(Duration::from_millis(5));
    }
    pm3.wait_until("app restarted for the burst", |rows| restarts(rows, "app") >= 1);
    let info = pm3.info("app");
    assert_eq!(info["last_exit"]["reason"], "watch", "{info}");
    assert!(!alive(first), "the first run was stopped");

    // Ignored paths; then well past the debounce: still one restart, none for confd.
    pm3.write("node_modules/pkg/index.js", "module.exports = 1;\n");
    pm3.write(".git/HEAD", "ref: refs/heads/main\n");
    pm3.holds_for("app at one restart and confd at none", Duration::from_millis(900), |rows| {
        restarts(rows, "app") == 1 && restarts(rows, "confd") == 0
    });

    pm3.write("conf/app.toml", "x = 1\n");
    pm3.wait_until("confd restarted for conf/", |rows| restarts(rows, "confd") == 1);
    assert_eq!(pm3.info("confd")["last_exit"]["reason"], "watch");
}
