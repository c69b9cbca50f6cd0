//! Bad input in `pm3.toml` or on the command line: every error exits 1, prints `error: message`
//! and ` --> PATH:LINE:COL` pointing at the offending key or value (line 1, column 1 for an
//! `--env` no process defines), with the source line underlined, and starts nothing: no daemon
//! when none ran, and an unchanged `list` when one did. The exact text is pinned by the golden
//! files of `golden/` ([`golden_files`]).

use std::fs;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{Pm3, locations, snapshot, stderr, stdout};

/// Where an error may point: (line, column), column 0 meaning any column of that line.
type At = &'static [(u32, u32)];

/// Writes `config`, runs `pm3 start ARGS`, and checks the error: exit 1, every word of `words`
/// in the message, a `pm3.toml:LINE:COL` from `at` (unless `at` is empty), and no daemon.
fn rejected(config: &str, args: &[&str], words: &[&str], at: At) -> Pm3 {
    let pm3 = Pm3::with_config(config);
    let mut argv = vec!["start"];
    argv.extend_from_slice(args);
    let out = pm3.fails(&argv);
    let msg = stderr(&out);
    assert!(msg.contains("pm3.toml"), "the message names the file:\n{msg}");
    for w in words {
        assert!(msg.contains(w), "the message names `{w}`:\n{msg}");
    }
    if !at.is_empty() {
        let found = locations(&msg, "pm3.toml");
        let ok = found.iter().any(|&(l, c)| at.iter().any(|&(wl, wc)| wl == l && (wc == 0 || wc == c)));
        assert!(ok, "expected a location among {at:?} (0 = any column), found {found:?}:\n{msg}");
    }
    assert!(!pm3.socket().exists(), "a config error must not start the daemon");
    assert!(!pm3.home.join("pm3.pid").exists(), "a config error must not start the daemon");
    pm3
}

#[test]
fn unknown_key() {
    rejected("[web]\ncommand = \"sleep 1000\"\nrestrat = \"always\"\n", &[], &["restrat"], &[(3, 1)]);
}

#[test]
fn wrong_type() {
    rejected(
        "[web]\ncommand = \"sleep 1000\"\ninstances = \"four\"\n",
        &[],
        &["instances"],
        &[(3, 1), (3, 13)],
    );
    rejected("[web]\ncommand = 42\n", &[], &["command"], &[(2, 1), (2, 11)]);
    rejected(
        "[web]\ncommand = \"sleep 1000\"\nkill_timeout = \"fast\"\n",
        &[],
        &["kill_timeout"],
        &[(3, 1), (3, 16)],
    );
}

#[test]
fn bad_process_name() {
    rejected("[\"web:1\"]\ncommand = \"sleep 1000\"\n", &[], &["web:1"], &[(1, 1), (1, 2), (1, 3)]);
    rejected("[\".hidden\"]\ncommand = \"sleep 1000\"\n", &[], &[".hidden"], &[(1, 1), (1, 2), (1, 3)]);
    let long = "a".repeat(65);
    rejected(&format!("[{long}]\ncommand = \"sleep 1000\"\n"), &[], &[&long], &[(1, 1), (1, 2)]);
}

#[test]
fn zero_or_negative_instances() {
    rejected("[web]\ncommand = \"sleep 1000\"\ninstances = 0\n", &[], &["instances"], &[(3, 1), (3, 13)]);
    rejected("[web]\ncommand = \"sleep 1000\"\ninstances = -1\n", &[], &["instances"], &[(3, 1), (3, 13)]);
    rejected(
        "[web]\ncommand = \"sleep 1000\"\ninstances = \"lots\"\n",
        &[],
        &["instances"],
        &[(3, 1), (3, 13)],
    );
}

/// A value that is not a size is quoted as written, with the forms that work.
#[test]
fn bad_size() {
    let pm3 = rejected("[w]\ncommand = \"sleep 1000\"\nmax_memory = \"12X\"\n", &[], &[], &[(3, 14)]);
    let msg = stderr(&pm3.fails(&["start"]));
    assert!(msg.starts_with("error: `max_memory`: `12X` is not a size (use 512K, 200M, 1G)\n"), "{msg}");
    let msg = stderr(&Pm3::with_config("[w]\ncommand = \"x\"\nlog_max_size = -5\n").fails(&["start"]));
    assert!(msg.starts_with("error: `log_max_size`: `-5` is not a size (use 512K, 200M, 1G)\n"), "{msg}");
}

/// `[api.v2]` nests tables in TOML: the message says to quote the name, and quoted it works.
#[test]
fn a_dotted_process_name_must_be_quoted() {
    let pm3 = rejected("[api.v2]\ncommand = \"sleep 1000\"\n", &[], &[], &[(1, 1)]);
    let msg = stderr(&pm3.fails(&["start"]));
    assert!(
        msg.starts_with(
            "error: `[api.v2]` is not a process named `api.v2`: TOML reads a dot in a table name as \
             a table inside another; quote the name: `[\"api.v2\"]`\n"
        ) && msg.contains("pm3.toml:1:1\n"),
        "{msg}"
    );
    pm3.config("[\"api.v2\"]\ncommand = \"sleep 1000\"\n");
    pm3.ok(&["start"]);
    pm3.wait_online(&["api.v2"]);
}

#[test]
fn missing_command() {
    rejected("[web]\ninstances = 2\n", &[], &["command", "web"], &[(1, 0)]);
}

#[test]
fn bad_kill_signal() {
    rejected(
        "[web]\ncommand = \"sleep 1000\"\nkill_signal = \"SIGFOO\"\n",
        &[],
        &["SIGFOO"],
        &[(3, 1), (3, 15)],
    );
}

#[test]
fn unknown_dependency() {
    rejected(
        "[web]\ncommand = \"sleep 1000\"\ndepends_on = [\"nope\"]\n",
        &[],
        &["nope"],
        &[(3, 1), (3, 14), (3, 15)],
    );
}

#[test]
fn dependency_cycle_names_the_cycle() {
    rejected(
        "[alpha]\ncommand = \"sleep 1000\"\ndepends_on = [\"beta\"]\n\n\
         [beta]\ncommand = \"sleep 1000\"\ndepends_on = [\"gamma\"]\n\n\
         [gamma]\ncommand = \"sleep 1000\"\ndepends_on = [\"alpha\"]\n",
        &[],
        &["alpha", "beta", "gamma"],
        &[(3, 0), (7, 0), (11, 0)],
    );
    rejected(
        "[selfish]\ncommand = \"sleep 1000\"\ndepends_on = [\"selfish\"]\n",
        &[],
        &["selfish"],
        &[(3, 0)],
    );
}

#[test]
fn missing_env_file() {
    rejected(
        "[web]\ncommand = \"sleep 1000\"\nenv_file = \"missing.env\"\n",
        &[],
        &["missing.env"],
        &[(3, 1), (3, 12)],
    );
}

#[test]
fn unknown_env_name() {
    rejected(
        "[web]\ncommand = \"sleep 1000\"\nenv_production = { MODE = \"prod\" }\n",
        &["--env", "staging"],
        &["staging"],
        &[],
    );
}

#[test]
fn shell_syntax_error_in_command() {
    rejected(
        "[web]\ncommand = \"echo 'unterminated\"\n",
        &[],
        &["command", "shell syntax error"],
        &[(2, 11)],
    );
}

#[test]
fn undefined_variable() {
    rejected(
        "[web]\ncommand = \"sleep 1000\"\nenv = { URL = \"http://localhost:${PM3_E2E_UNDEFINED}/\" }\n",
        &[],
        &["env.URL", "${PM3_E2E_UNDEFINED}", "is not defined"],
        &[(3, 15)],
    );
    rejected(
        "[web]\ncommand = \"sleep 1000\"\nhealth_check = \"http://localhost:${PORT:?required}/\"\n",
        &[],
        &["health_check", "${PORT:?required}"],
        &[(3, 16)],
    );
}

#[test]
fn toml_syntax_error() {
    rejected("[web]\ncommand = \"sleep 1000\nkill_timeout = 5\n", &[], &[], &[(2, 0)]);
}

#[test]
fn no_config_file_found() {
    let pm3 = Pm3::new();
    let out = pm3.fails(&["start"]);
    assert!(stderr(&out).contains("pm3.toml"), "{}", pm3.explain(&out));
    assert!(!pm3.socket().exists(), "no config, no daemon");
}

#[test]
fn json_error_shape_for_a_config_error() {
    let pm3 = Pm3::with_config("[web]\ncommand = \"sleep 1000\"\nrestrat = \"always\"\n");
    let msg = pm3.json_error(&["start"]);
    // One line per problem, `PATH:LINE:COL: message`, with the suggestion.
    let want = format!(
        "{}:3:1: unknown key `restrat` in [web] (did you mean `restart`?)",
        pm3.config_path().display()
    );
    assert_eq!(msg, want);
}

/// Golden files: each directory of `tests/e2e/golden/` is a project (`pm3.toml` and the files it
/// names; `args`, if present, holds more arguments for `pm3 start`). `start.stderr` is the exact
/// stderr of `pm3 start` and `start.json` the exact stdout of `pm3 start --json`, the project
/// directory written `$DIR`. After a deliberate change of wording or layout, regenerate them
/// with `PM3_BLESS=1 cargo test --test e2e golden_files` and review the diff.
#[test]
fn golden_files() {
    let cases = crate::harness::golden_cases("golden", 7);
    let mut failed = Vec::new();
    for case in &cases {
        let name = case.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let pm3 = Pm3::new();
        let mut args = vec!["start".to_string()];
        for entry in fs::read_dir(case).expect("read a golden case") {
            let path = entry.expect("directory entry").path();
            let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            match file.as_str() {
                "start.stderr" | "start.json" => {}
                "args" => args.extend(text.split_whitespace().map(String::from)),
                _ => {
                    pm3.write(&file, &text);
                }
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let dir = pm3.project.display().to_string();
        let human = pm3.fails(&args);
        assert_eq!(stdout(&human), "", "{name}: nothing on stdout\n{}", pm3.explain(&human));
        let json = pm3.fails(&[&args[..], &["--json"]].concat());
        assert_eq!(stderr(&json), "", "{name}: nothing on stderr with --json\n{}", pm3.explain(&json));
        assert!(!pm3.socket().exists(), "{name}: a config error must not start the daemon");
        for (file, got) in [("start.stderr", stderr(&human)), ("start.json", stdout(&json))] {
            crate::harness::golden(case, &name, file, &got.replace(&dir, "$DIR"), &mut failed);
        }
    }
    crate::harness::assert_golden(&failed);
}

/// Colors on a terminal only, and not with `NO_COLOR` set (an empty one does not count).
#[test]
fn config_errors_are_colored_on_a_terminal_only() {
    let pm3 = Pm3::with_config("[web]\ncommand = 1\n");
    for (no_color, colored) in [(None, true), (Some("1"), false), (Some(""), true)] {
        let text = stderr_on_a_terminal(&pm3, &["start"], no_color);
        assert!(text.contains("command = 1"), "{text:?}");
        assert_eq!(text.contains("\u{1b}["), colored, "NO_COLOR={no_color:?}: {text:?}");
    }
    // Not a terminal: no colors even without `NO_COLOR`.
    let mut cmd = pm3.command(&["start"]);
    cmd.env_remove("NO_COLOR");
    let out = pm3.exec(cmd, &["start"]);
    assert!(!stderr(&out).contains('\u{1b}'), "{}", pm3.explain(&out));
}

/// What `pm3 ARGS` writes to stderr when stderr is a terminal (a pseudo-terminal here), with
/// `NO_COLOR` set to `no_color` (or unset).
fn stderr_on_a_terminal(pm3: &Pm3, args: &[&str], no_color: Option<&str>) -> String {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors into the integers given; the other arguments may
    // be null.
    let rc = unsafe {
        libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null())
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned by nothing else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut cmd = pm3.command(args);
    match no_color {
        Some(v) => cmd.env("NO_COLOR", v),
        None => cmd.env_remove("NO_COLOR"),
    };
    cmd.stdout(Stdio::null()).stderr(Stdio::from(slave));
    let mut child = cmd.spawn().expect("spawn pm3");
    // Our copy of the slave end went into `cmd`: drop it so the master reads EOF once pm3 exits.
    drop(cmd);
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait for pm3").is_none() {
        assert!(Instant::now() < deadline, "pm3 {args:?} did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut out = Vec::new();
    // Reading past what was written ends in EIO once the slave end is closed.
    let _ = fs::File::from(master).read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_bad_config_changes_nothing_in_a_running_daemon() {
    const GOOD: &str =
        "[web]\ncommand = \"sleep 1000\"\n\n[worker]\ncommand = \"sleep 1000\"\ninstances = 2\n";
    let pm3 = Pm3::with_config(GOOD);
    pm3.ok(&["start"]);
    let before = snapshot(&pm3.wait_online(&["web", "worker:0", "worker:1"]));

    // Each variant also grows `worker` to 3 instances: a half-applied config would show worker:2.
    let grown = GOOD.replace("instances = 2", "instances = 3");
    let bad = [
        "\n[bad]\ncommand = \"sleep 1\"\nrestrat = \"always\"\n",
        "\n[bad]\ncommand = \"sleep 1\"\ninstances = \"four\"\n",
        "\n[\"bad:1\"]\ncommand = \"sleep 1\"\n",
        "\n[bad]\ncommand = \"sleep 1\"\ninstances = 0\n",
        "\n[bad]\ncommand = \"sleep 1\"\ndepends_on = [\"nope\"]\n",
        "\n[bad]\ncommand = \"sleep 1\"\ndepends_on = [\"worse\"]\n\n[worse]\ncommand = \"sleep 1\"\ndepends_on = [\"bad\"]\n",
        "\n[bad]\ncommand = \"sleep 1\"\nenv_file = \"missing.env\"\n",
        "\n[bad]\ncommand = \"echo 'unterminated\"\n",
        "\n[bad]\ncommand = \"sleep 1\"\nenv = { URL = \"http://localhost:${PM3_E2E_UNDEFINED}/\" }\n",
    ];
    for tail in bad {
        pm3.config(&format!("{grown}{tail}"));
        for args in [&["start"][..], &["restart"][..]] {
            let out = pm3.fails(args);
            assert!(stderr(&out).contains("pm3.toml:"), "{}", pm3.explain(&out));
            assert_eq!(snapshot(&pm3.list()), before, "`pm3 {args:?}` with {tail:?} changed the list");
        }
    }

    pm3.config(&format!("{grown}env_production = {{ MODE = \"prod\" }}\n"));
    let out = pm3.fails(&["start", "--env", "staging"]);
    assert!(stderr(&out).contains("staging"), "{}", pm3.explain(&out));
    assert_eq!(snapshot(&pm3.list()), before, "an unknown --env changed the list");
}
