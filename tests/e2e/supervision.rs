//! Supervision: the restart policy (`restart`, `max_restarts`, `min_uptime`, `restart_delay`
//! doubling per short run, `stop_exit_codes`), what `list`/`info` show about it (`restarts`,
//! `restart_in_ms` while `waiting`, `last_exit` with the last stderr lines, `error`), a user's
//! `stop` never undone by the supervisor, and the `pre_start`/`post_stop` hooks.

use std::cell::RefCell;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Pm3, alive, has_status, read_lossy, row_in};

/// The lines of a file in the project directory.
fn lines(pm3: &Pm3, rel: &str) -> Vec<String> {
    read_lossy(&pm3.project.join(rel)).lines().map(String::from).collect()
}

/// `date +%s%N` stamps (one per line) of a file, in ms.
fn stamps_ms(pm3: &Pm3, rel: &str) -> Vec<u64> {
    lines(pm3, rel)
        .iter()
        .map(|l| {
            let ns: u64 = l
                .split_whitespace()
                .last()
                .and_then(|w| w.parse().ok())
                .unwrap_or_else(|| panic!("{rel}: `{l}` is not a `date +%s%N` stamp"));
            ns / 1_000_000
        })
        .collect()
}

fn gaps(stamps: &[u64]) -> Vec<u64> {
    stamps.windows(2).map(|w| w[1].saturating_sub(w[0])).collect()
}

/// A crash loop: each short run is restarted after `restart_delay` doubled per consecutive
/// short run (100, 200, 400 ms), `restarts` rises, `restart_in_ms` counts down while `waiting`,
/// and after `max_restarts` (3: four runs) it gives up, `errored`, with the reason and the last
/// stderr lines in `info`.
#[test]
fn a_crash_loop_backs_off_with_doubling_delays_then_errors() {
    let pm3 = Pm3::new();
    let crash = pm3.script(
        "crash",
        "date +%s%N >> runs.txt\necho \"fatal: cannot open db (run $(wc -l < runs.txt))\" >&2\nexit 3\n",
    );
    pm3.config(&format!(
        "[crash]\ncommand = \"{crash}\"\nmax_restarts = 3\nmin_uptime = 5000\nrestart_delay = 100\n"
    ));
    pm3.ok(&["start"]);

    // Every row seen while it loops: (restarts, status, restart_in_ms).
    let seen: RefCell<Vec<(u64, String, Option<u64>)>> = RefCell::new(Vec::new());
    let rows = pm3.wait_until("`crash` gives up (errored)", |rows| {
        let Some(r) = rows.iter().find(|r| r["name"] == "crash") else { return false };
        seen.borrow_mut().push((
            r["restarts"].as_u64().unwrap_or(u64::MAX),
            r["status"].as_str().unwrap_or_default().to_string(),
            r["restart_in_ms"].as_u64(),
        ));
        r["status"] == "errored"
    });
    let seen = seen.into_inner();
    let r = row_in(&rows, "crash");
    assert_eq!(r["restarts"], 3, "max_restarts = 3: three restarts, then it gives up: {r}");
    assert!(r["pid"].is_null() && r["restart_in_ms"].is_null(), "{r}");
    assert_eq!(r["exit_code"], 3, "{r}");

    // `restarts` never goes down and counts restarts that happened (not the one being waited
    // for); while waiting, restart_in_ms is set and within the delay due.
    let counts: Vec<u64> = seen.iter().map(|s| s.0).collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "restarts went down: {seen:?}");
    let waits: Vec<&(u64, String, Option<u64>)> = seen.iter().filter(|s| s.1 == "waiting").collect();
    assert!(!waits.is_empty(), "never saw `waiting` during a restart delay: {seen:?}");
    for (restarts, _, in_ms) in &waits {
        let in_ms = in_ms.unwrap_or_else(|| panic!("`waiting` without restart_in_ms: {seen:?}"));
        let due = 100u64 << restarts;
        assert!(
            in_ms <= due + 20,
            "before restart #{} the delay is {due} ms, list says {in_ms}: {seen:?}",
            restarts + 1
        );
    }

    // The delays between runs double: ~100, ~200, ~400 ms.
    let stamps = stamps_ms(&pm3, "runs.txt");
    assert_eq!(stamps.len(), 4, "max_restarts = 3 allows 4 runs: {stamps:?}");
    let g = gaps(&stamps);
    // Each gap is the run (a few ms) plus the delay: at least the delay, whatever the load.
    assert!(g[0] >= 98, "first restart after restart_delay (100 ms), gaps {g:?} ms");
    assert!(g[1] >= 198, "second delay doubles to 200 ms, gaps {g:?} ms");
    assert!(g[2] >= 398, "third delay doubles to 400 ms, gaps {g:?} ms");

    let info = pm3.info("crash");
    let error = info["error"].as_str().unwrap_or_default();
    assert!(!error.is_empty(), "info says why it is errored: {info}");
    let last = &info["last_exit"];
    assert_eq!(last["exit_code"], 3, "{info}");
    assert_eq!(last["reason"], "exited", "{info}");
    assert!(last["at_ms"].as_u64().is_some_and(|at| at >= stamps[3]), "{info}");
    let stderr: Vec<&str> =
        last["stderr"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    assert!(
        stderr.iter().any(|l| l.contains("fatal: cannot open db (run 4)")),
        "last_exit.stderr holds the last run's stderr: {info}"
    );
    assert_eq!(lines(&pm3, "runs.txt").len(), 4, "no run after giving up");
}

/// Exit 0 under `on_failure` → `stopped`; `always` restarts an exit 0; a code in
/// `stop_exit_codes` is never restarted, even under `always`; `on-failure` is accepted and
/// `max_restarts = 1` allows two runs.
#[test]
fn exit_codes_and_policies_decide_what_restarts() {
    let pm3 = Pm3::new();
    let run = |name: &str, code: u32| pm3.script(name, &format!("echo run >> {name}.runs\nexit {code}\n"));
    let (clean, again, spared, dashed) =
        (run("clean", 0), run("again", 0), run("spared", 7), run("dashed", 1));
    pm3.config(&format!(
        r#"
[clean]
command = "{clean}"
restart_delay = 50

[again]
command = "{again}"
restart = "always"
max_restarts = 2
min_uptime = 5000
restart_delay = 50

[spared]
command = "{spared}"
restart = "always"
stop_exit_codes = [7]
restart_delay = 50

[dashed]
command = "{dashed}"
restart = "on-failure"
max_restarts = 1
min_uptime = 5000
restart_delay = 50
"#
    ));
    pm3.ok(&["start"]);
    let rows = pm3.wait_until("`again` and `dashed` run out of restarts", |rows| {
        has_status(rows, "again", "errored") && has_status(rows, "dashed", "errored")
    });
    assert_eq!(row_in(&rows, "again")["restarts"], 2, "`always` restarts an exit 0");
    assert_eq!(row_in(&rows, "dashed")["restarts"], 1, "`on-failure` restarts exit 1");
    assert_eq!(lines(&pm3, "again.runs").len(), 3);
    assert_eq!(lines(&pm3, "dashed.runs").len(), 2);

    // Meanwhile (≥ 150 ms of 50 ms delays) the other two were not restarted.
    for (name, code) in [("clean", 0), ("spared", 7)] {
        let r = row_in(&rows, name);
        assert_eq!(r["status"], "stopped", "{r}");
        assert_eq!(r["exit_code"], code, "{r}");
        assert_eq!(r["restarts"], 0, "{r}");
        assert!(r["pid"].is_null(), "{r}");
        assert_eq!(lines(&pm3, &format!("{name}.runs")).len(), 1, "{name} ran once");
    }
}

/// `min_uptime = 300`, `max_restarts = 2`, `restart_delay = 200`: runs 1-2 are short, run 3
/// lasts 0.5 s, runs 4-6 are short. The long run resets the budget (six runs in all, not three)
/// and the delay: run 4 starts at once, run 5 after the base 200 ms again.
#[test]
fn a_run_longer_than_min_uptime_resets_the_budget_and_the_delay() {
    let pm3 = Pm3::new();
    let flaky = pm3.script(
        "flaky",
        "date +%s%N >> starts.txt\nn=$(wc -l < starts.txt)\n\
         if [ \"$n\" -eq 3 ]; then sleep 0.5; date +%s%N >> long-end.txt; fi\nexit 1\n",
    );
    pm3.config(&format!(
        "[flaky]\ncommand = \"{flaky}\"\nmax_restarts = 2\nmin_uptime = 300\nrestart_delay = 200\n"
    ));
    pm3.ok(&["start"]);
    let rows = pm3.wait_until("`flaky` gives up", |rows| has_status(rows, "flaky", "errored"));
    let starts = stamps_ms(&pm3, "starts.txt");
    assert_eq!(starts.len(), 6, "the long third run reset the count of short runs: {starts:?}");
    assert_eq!(row_in(&rows, "flaky")["restarts"], 5);

    let g = gaps(&starts);
    assert!(g[0] >= 190 && g[1] >= g[0] + 120, "delays 200, 400 before the long run: {g:?}");
    let long_end = stamps_ms(&pm3, "long-end.txt")[0];
    let after_long = starts[3].saturating_sub(long_end);
    assert!(after_long < 150, "a run longer than min_uptime restarts at once, not after {after_long} ms");
    assert!(g[3] >= 190 && g[3] < 700, "the delay starts again from the base 200 ms: gaps {g:?}");
}

/// A process stopped by `pm3 stop` stays stopped: stopped during its restart delay, it is not
/// started when the delay runs out; stopped while running under `restart = "always"`, it is not
/// restarted.
#[test]
fn a_user_stop_is_never_undone_by_the_supervisor() {
    let pm3 = Pm3::new();
    let crashy = pm3.script("crashy", "echo run >> crashy.runs\nexit 1\n");
    pm3.config(&format!(
        "[crashy]\ncommand = \"{crashy}\"\nmin_uptime = 5000\nrestart_delay = 700\n\n\
         [steady]\ncommand = \"sleep 1000\"\nrestart = \"always\"\nrestart_delay = 50\n"
    ));
    pm3.ok(&["start"]);
    pm3.wait_until("`crashy` waits out its restart delay", |rows| {
        rows.iter().any(|r| r["name"] == "crashy" && r["status"] == "waiting" && r["restart_in_ms"].is_u64())
    });
    let steady = pm3.pid_of("steady");

    let report = pm3.json(&["stop", "crashy", "steady"]);
    let mut got = crate::harness::outcomes(&report, "stop");
    got.sort();
    assert_eq!(got, [("crashy".into(), "stopped".into()), ("steady".into(), "stopped".into())]);
    assert!(!alive(steady), "steady's pid {steady} is gone after stop");

    let both_stopped = |rows: &[Value]| {
        ["crashy", "steady"].iter().all(|n| {
            rows.iter().any(|r| {
                r["name"] == *n
                    && r["status"] == "stopped"
                    && r["pid"].is_null()
                    && r["restart_in_ms"].is_null()
            })
        })
    };
    // Past crashy's 700 ms delay, and many times steady's 50 ms.
    let rows = pm3.holds_for("both to stay stopped", Duration::from_millis(1000), both_stopped);
    assert_eq!(row_in(&rows, "steady")["restarts"], 0);
    assert_eq!(lines(&pm3, "crashy.runs").len(), 1, "crashy did not run again");
}

/// `pre_start` runs before every start and `post_stop` after every exit, in the order
/// post_stop → pre_start → start on a restart; hook output goes to the process's log, before the
/// process's own output.
#[test]
fn hooks_run_around_every_run_and_log_before_the_process() {
    let pm3 = Pm3::new();
    let app = pm3.script(
        "app",
        "echo run >> hooks.txt\necho main-output\n\
         if [ ! -f crashed-once ]; then touch crashed-once; exit 1; fi\nexec sleep 1000\n",
    );
    pm3.config(&format!(
        r#"
[app]
command = "{app}"
pre_start = "echo pre >> hooks.txt; echo pre-start-output; echo pre-start-err >&2"
post_stop = "echo post >> hooks.txt; echo post-stop-output"
restart_delay = 50
"#
    ));
    pm3.ok(&["start"]);
    pm3.wait_until("`app` runs again after its crash", |rows| {
        rows.iter().any(|r| r["name"] == "app" && r["status"] == "online" && r["restarts"] == 1)
    });
    pm3.wait_for("the second run's line in hooks.txt", || lines(&pm3, "hooks.txt").len() >= 5);
    assert_eq!(
        lines(&pm3, "hooks.txt"),
        ["pre", "run", "post", "pre", "run"],
        "post_stop → pre_start → start"
    );

    let out = pm3.wait_log("app", "out", "main-output\npost-stop-output\npre-start-output\nmain-output\n");
    let first_pre = out.find("pre-start-output").expect("pre_start output in app-out.log");
    let first_main = out.find("main-output").expect("process output in app-out.log");
    assert!(first_pre < first_main, "pre_start output comes before the process's own:\n{out}");
    assert!(pm3.read_log("app", "err").contains("pre-start-err"), "hook stderr goes to app-err.log");

    pm3.ok(&["stop", "app"]);
    pm3.wait_for("post_stop after the stop", || lines(&pm3, "hooks.txt").len() == 6);
    assert_eq!(lines(&pm3, "hooks.txt").last().map(String::as_str), Some("post"));
    assert_eq!(pm3.row("app")["status"], "stopped");
}

/// A failing `pre_start` leaves the process `errored`, never started, with the reason in `info`
/// and the hook's output in the logs.
#[test]
fn a_failing_pre_start_is_errored_and_the_process_never_starts() {
    let pm3 = Pm3::new();
    let app = pm3.script("app", "touch ran.txt\nexec sleep 1000\n");
    pm3.config(&format!(
        "[app]\ncommand = \"{app}\"\npre_start = \"echo cannot-prepare >&2; exit 4\"\nrestart_delay = 50\n"
    ));
    let out = pm3.run(&["start"]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", pm3.explain(&out));
    let r = pm3.wait_status("app", "errored");
    assert!(r["pid"].is_null(), "{r}");
    let info = pm3.info("app");
    let error = info["error"].as_str().unwrap_or_default();
    assert!(error.contains("pre_start"), "info names the failed pre_start: {info}");
    pm3.wait_log("app", "err", "cannot-prepare");
    let r = pm3.row("app");
    assert_eq!(r["status"], "errored", "{r}");
    assert_eq!(r["restarts"], 0, "{r}");
    assert!(!pm3.project.join("ran.txt").exists(), "the process itself never ran");
}
