//! Bad input in `pm3.toml` or on the command line: every error exits 1, prints
//! `PATH:LINE:COL: message` naming the offending key or value (the file only, for `--env`), and
//! starts nothing: no daemon when none ran, and an unchanged `list` when one did.

use crate::harness::{Pm3, locations, snapshot, stderr};

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
    assert!(msg.ends_with("`max_memory`: `12X` is not a size (use 512K, 200M, 1G)\n"), "{msg}");
    let msg = stderr(&Pm3::with_config("[w]\ncommand = \"x\"\nlog_max_size = -5\n").fails(&["start"]));
    assert!(msg.ends_with("`log_max_size`: `-5` is not a size (use 512K, 200M, 1G)\n"), "{msg}");
}

/// `[api.v2]` nests tables in TOML: the message says to quote the name, and quoted it works.
#[test]
fn a_dotted_process_name_must_be_quoted() {
    let pm3 = rejected("[api.v2]\ncommand = \"sleep 1000\"\n", &[], &[], &[(1, 1)]);
    let msg = stderr(&pm3.fails(&["start"]));
    assert!(
        msg.ends_with(
            "pm3.toml:1:1: `[api.v2]` is not a process named `api.v2`: TOML reads a dot in a table name as \
             a table inside another; quote the name: `[\"api.v2\"]`\n"
        ),
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
    assert!(msg.contains("restrat"), "{msg}");
    assert!(locations(&msg, "pm3.toml").contains(&(3, 1)), "{msg}");
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
