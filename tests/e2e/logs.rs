//! Logs: `logs/<name>-out.log` / `-err.log`, `pm3 log` (last N lines, stdout then stderr,
//! `--out`/`--err`, `NAME | ` prefixes when several processes are shown), `-f` following across a
//! restart, `flush`, appending across runs, and no lost or mangled output (fast writer, invalid
//! UTF-8).

use std::fs;

use crate::harness::{Pm3, line_channel, read_until, stdout};

/// The lines of `out` that are exactly one of the markers this module writes (`o7`, `e12`).
fn marked(out: &str, prefix: char) -> Vec<String> {
    out.lines()
        .map(str::trim_end)
        .filter(|l| {
            l.strip_prefix(prefix).is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        })
        .map(String::from)
        .collect()
}

fn range(prefix: char, from: u32, to: u32) -> Vec<String> {
    (from..=to).map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn log_shows_the_last_lines_of_stdout_then_stderr() {
    let pm3 = Pm3::with_config(
        "[chatty]\ncommand = \"sh -c 'for i in $(seq 1 30); do echo o$i; echo e$i >&2; done; exec sleep 1000'\"\n",
    );
    pm3.ok(&["start"]);
    pm3.wait_log("chatty", "out", "o30\n");
    pm3.wait_log("chatty", "err", "e30\n");
    assert_eq!(marked(&pm3.read_log("chatty", "out"), 'o'), range('o', 1, 30));
    assert!(marked(&pm3.read_log("chatty", "out"), 'e').is_empty(), "stderr kept out of -out.log");
    assert_eq!(marked(&pm3.read_log("chatty", "err"), 'e'), range('e', 1, 30));

    let out = stdout(&pm3.ok(&["log", "chatty"]));
    assert_eq!(marked(&out, 'o'), range('o', 16, 30), "default is 15 lines:\n{out}");
    assert_eq!(marked(&out, 'e'), range('e', 16, 30), "default is 15 lines:\n{out}");
    let last_out = out.find("o30").unwrap();
    let first_err = out.find("e16").unwrap();
    assert!(last_out < first_err, "stdout lines come before stderr lines:\n{out}");

    let out = stdout(&pm3.ok(&["log", "chatty", "-n", "5"]));
    assert_eq!(marked(&out, 'o'), range('o', 26, 30), "{out}");
    assert_eq!(marked(&out, 'e'), range('e', 26, 30), "{out}");

    let out = stdout(&pm3.ok(&["log", "chatty", "--lines", "3", "--out"]));
    assert_eq!(marked(&out, 'o'), range('o', 28, 30), "{out}");
    assert!(marked(&out, 'e').is_empty(), "--out shows no stderr:\n{out}");

    let out = stdout(&pm3.ok(&["log", "chatty", "--err", "-n", "2"]));
    assert_eq!(marked(&out, 'e'), range('e', 29, 30), "{out}");
    assert!(marked(&out, 'o').is_empty(), "--err shows no stdout:\n{out}");
}

/// Splits `NAME | text` (the name may be padded) into its two parts.
fn prefixed(line: &str) -> Option<(&str, &str)> {
    line.split_once(" | ").map(|(name, text)| (name.trim(), text.trim_end()))
}

#[test]
fn log_of_several_processes_prefixes_each_line_with_its_name() {
    let pm3 = Pm3::with_config(
        r#"
[alpha]
command = "sh -c 'echo from-alpha; exec sleep 1000'"
group = "pair"

[beta]
command = "sh -c 'echo from-beta; exec sleep 1000'"
group = "pair"

[worker]
command = "sh -c 'echo from-w$PM3_INSTANCE_ID; exec sleep 1000'"
instances = 2
"#,
    );
    pm3.ok(&["start"]);
    pm3.wait_log("alpha", "out", "from-alpha");
    pm3.wait_log("beta", "out", "from-beta");
    pm3.wait_log("worker:0", "out", "from-w0");
    pm3.wait_log("worker:1", "out", "from-w1");

    let check = |args: &[&str], want: &[(&str, &str)], absent: &[&str]| {
        let out = stdout(&pm3.ok(args));
        let pairs: Vec<(&str, &str)> = out.lines().filter_map(prefixed).collect();
        for w in want {
            assert!(pairs.contains(w), "`pm3 {}` lacks `{} | {}`:\n{out}", args.join(" "), w.0, w.1);
        }
        for a in absent {
            assert!(!out.contains(a), "`pm3 {}` shows {a}:\n{out}", args.join(" "));
        }
        for line in out.lines().filter(|l| l.contains("from-")) {
            assert!(prefixed(line).is_some(), "unprefixed line `{line}` in:\n{out}");
        }
    };
    let everything =
        [("alpha", "from-alpha"), ("beta", "from-beta"), ("worker:0", "from-w0"), ("worker:1", "from-w1")];
    check(&["log"], &everything, &[]);
    check(&["log", "worker"], &everything[2..], &["from-alpha", "from-beta"]);
    check(&["log", "pair"], &everything[..2], &["from-w0", "from-w1"]);
}

#[test]
fn log_follow_streams_new_lines_and_survives_a_restart() {
    let pm3 = Pm3::with_config(
        "[tick]\ncommand = \"sh -c 'echo boot; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done'\"\nkill_timeout = 1000\n",
    );
    pm3.ok(&["start"]);
    pm3.wait_log("tick", "out", "tick 3\n");
    let tick_of = |line: &str| -> Option<u32> { line.rsplit("tick ").next()?.trim().parse().ok() };
    let written = pm3.read_log("tick", "out");
    let last = written.lines().filter_map(tick_of).max().unwrap_or(0);

    let mut follower = pm3.spawn(&["log", "tick", "-f"]);
    let rx = line_channel(follower.stdout.take().expect("stdout"));
    read_until(&rx, &format!("with a tick beyond {}", last + 5), |l| {
        l.contains("tick ") && tick_of(l).is_some_and(|n| n >= last + 5)
    });

    pm3.ok(&["restart", "tick"]);
    read_until(&rx, "`boot` from the restarted process", |l| l.trim_end().ends_with("boot"));
    read_until(&rx, "a tick after the restart", |l| l.contains("tick "));

    let _ = follower.kill();
    let _ = follower.wait();
}

#[test]
fn flush_empties_the_log_files() {
    let pm3 = Pm3::with_config(
        "[noisy]\ncommand = \"sh -c 'echo before-flush; echo err-before-flush >&2; exec sleep 1000'\"\n",
    );
    pm3.ok(&["start"]);
    pm3.wait_log("noisy", "out", "before-flush");
    pm3.wait_log("noisy", "err", "err-before-flush");

    let report = pm3.json(&["flush", "noisy"]);
    assert_eq!(crate::harness::outcomes(&report, "flush"), [("noisy".into(), "flushed".into())]);
    for stream in ["out", "err"] {
        let len = fs::metadata(pm3.log_path("noisy", stream)).map(|m| m.len()).unwrap_or(0);
        assert_eq!(len, 0, "noisy-{stream}.log is empty after flush");
    }
    let out = stdout(&pm3.ok(&["log", "noisy"]));
    assert!(!out.contains("before-flush"), "flushed lines are gone:\n{out}");
    assert!(pm3.row("noisy")["status"] == "online", "flush does not touch the process");
}

#[test]
fn logs_are_appended_across_runs() {
    let pm3 = Pm3::with_config("[app]\ncommand = \"sh -c 'echo run; exec sleep 1000'\"\n");
    pm3.ok(&["start"]);
    pm3.wait_log("app", "out", "run\n");
    pm3.ok(&["restart", "app"]);
    pm3.wait_for("a second `run` line in app-out.log", || {
        pm3.read_log("app", "out").lines().filter(|l| *l == "run").count() == 2
    });
}

#[test]
fn no_output_is_lost_from_a_fast_writer() {
    let pm3 = Pm3::with_config("[fast]\ncommand = \"seq 1 50000\"\n");
    pm3.ok(&["start"]);
    pm3.wait_until("`fast` has exited", |rows| {
        rows.iter().any(|r| r["name"] == "fast" && r["exit_code"] == 0)
    });
    pm3.wait_log("fast", "out", "\n50000\n");
    let want: String = (1..=50000).map(|i| format!("{i}\n")).collect();
    let got = pm3.read_log("fast", "out");
    assert!(got == want, "the log differs from `seq 1 50000` ({} vs {} bytes)", got.len(), want.len());
}

#[test]
fn invalid_utf8_output_is_kept_and_does_not_hurt_the_process() {
    let pm3 = Pm3::new();
    pm3.write("bad.sh", "printf 'bad \\377\\376 bytes\\n'\necho after-bad\nexec sleep 1000\n");
    pm3.config("[bad]\ncommand = \"sh bad.sh\"\n");
    pm3.ok(&["start"]);
    pm3.wait_log("bad", "out", "after-bad");
    let bytes = fs::read(pm3.log_path("bad", "out")).unwrap();
    let want: &[u8] = b"bad \xff\xfe bytes\n";
    assert!(
        bytes.windows(want.len()).any(|w| w == want),
        "the bytes are logged as written: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    pm3.wait_status("bad", "online");
}

#[test]
fn log_without_a_target_merges_stamped_lines_by_time() {
    let pm3 = Pm3::new();
    let a = pm3.script("a", "for i in 1 2 3; do echo a$i; sleep 0.3; done\nexec sleep 1000\n");
    let b = pm3.script("b", "sleep 0.15\nfor i in 1 2 3; do echo b$i; sleep 0.3; done\nexec sleep 1000\n");
    pm3.config(&format!(
        "[a]\ncommand = \"{a}\"\nlog_date_format = \"%H:%M:%S%.3f\"\n\n[b]\ncommand = \"{b}\"\nlog_date_format = \"%H:%M:%S%.3f\"\n"
    ));
    pm3.ok(&["start"]);
    pm3.wait_log("b", "out", "b3");
    let out = stdout(&pm3.ok(&["log", "--out", "-n", "5"]));
    let order: Vec<&str> =
        out.lines().filter_map(|l| l.split_whitespace().last()).filter(|w| w.len() == 2).collect();
    assert_eq!(order, ["a1", "b1", "a2", "b2", "a3", "b3"], "in time order, not process by process:\n{out}");
}

#[test]
fn log_follow_without_a_target_picks_up_processes_started_later() {
    let pm3 = Pm3::new();
    let late = pm3.script("late", "echo hello-from-late\nexec sleep 1000\n");
    pm3.config(&format!("[first]\ncommand = \"sleep 1000\"\n\n[late]\ncommand = \"{late}\"\n"));
    pm3.ok(&["start", "first"]);
    let mut follower = pm3.spawn(&["log", "-f"]);
    let rx = line_channel(follower.stdout.take().expect("stdout"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    pm3.ok(&["start", "late"]);
    read_until(&rx, "the later process's first line", |l| {
        l.contains("late") && l.contains("hello-from-late")
    });
    let _ = follower.kill();
    let _ = follower.wait();
}

/// A fast writer into a stamped log (written on the log thread while the pipe keeps draining):
/// every line once, in order, each with its stamp, and the last line, which has no newline,
/// is in the file once the process shows as exited.
#[test]
fn a_stamped_log_keeps_every_line_of_a_fast_writer_in_order_and_the_unfinished_last_one() {
    let pm3 = Pm3::with_config(
        "[fast]\ncommand = \"sh -c 'seq 1 200000; printf tail-without-newline'\"\nrestart = \"never\"\n\
         log_date_format = \"%H:%M:%S%.3f\"\n",
    );
    pm3.ok(&["start"]);
    pm3.wait_until("`fast` has exited", |rows| {
        rows.iter().any(|r| r["name"] == "fast" && r["exit_code"] == 0)
    });
    // Exit is recorded once the log thread has written everything read.
    let got = pm3.read_log("fast", "out");
    let mut lines = got.split('\n');
    for i in 1..=200000 {
        let line = lines.next().unwrap_or_default();
        let (stamp, rest) = line.split_once(' ').unwrap_or_default();
        assert!(stamp.len() == 12 && stamp.as_bytes()[2] == b':', "line {i} has no stamp: {line:?}");
        assert_eq!(rest, i.to_string(), "line {i} of the stamped log");
    }
    let last = lines.next().unwrap_or_default();
    assert!(last.ends_with(" tail-without-newline"), "the unfinished last line: {last:?}");
    assert_eq!(lines.next(), None, "nothing after the last line");
}
