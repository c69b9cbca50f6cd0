//! `${VAR}` and `${VAR:-default}`, the one expansion syntax of `env` values, `.env` files and
//! `health_check`, seen from the processes themselves (`/proc/<pid>/environ`): defaults apply
//! when a variable is unset or empty, the environment of `pm3 start` counts as defined, `.env`
//! files follow python-dotenv (single quotes literal, bare `$VAR` literal), and an undefined
//! variable is a config error at its line and column, before anything starts.

use std::collections::BTreeMap;

use crate::harness::{Pm3, locations, stderr};

/// The environment `pid` runs with, read from `/proc`.
fn environ(pid: i32) -> BTreeMap<String, String> {
    crate::harness::environ(pid).unwrap_or_else(|| panic!("cannot read the environment of {pid}"))
}

#[test]
fn defaults_apply_when_a_variable_is_unset_or_empty() {
    let pm3 = Pm3::with_config(
        r#"
[app]
command = "sleep 1000"
instances = 2
increment_var = "PORT"
env = { PORT = 4000, UNSET = "${PM3_E2E_UNSET:-fallback}", SET = "${PM3_E2E_SET:-unused}", EMPTY = "${PM3_E2E_EMPTY:-was-empty}", NESTED = "${PM3_E2E_UNSET:-${PORT}-${PM3_NAME}}", DOLLAR = "$$HOME and $HOME" }
health_check = "exec:test ${PM3_E2E_UNSET:-ok} = ok"
"#,
    );
    let out = pm3.run_env(&["start"], &[("PM3_E2E_SET", "from-the-cli"), ("PM3_E2E_EMPTY", "")]);
    assert_eq!(out.status.code(), Some(0), "{}", pm3.explain(&out));
    pm3.wait_online(&["app:0", "app:1"]);
    let env = environ(pm3.pid_of("app:1"));
    assert_eq!(env["UNSET"], "fallback");
    assert_eq!(env["SET"], "from-the-cli");
    assert_eq!(env["EMPTY"], "was-empty");
    assert_eq!(env["NESTED"], "4001-app:1");
    assert_eq!(env["DOLLAR"], "$HOME and $HOME");
}

#[test]
fn env_files_follow_python_dotenv() {
    let pm3 = Pm3::new();
    pm3.write(
        ".env",
        "HOST=db.internal\n\
         UNQUOTED=${HOST}:${DB_PORT:-5432}\n\
         DOUBLE=\"postgres://${HOST}/${PM3_INSTANCE_ID} $HOST \\${HOST}\"\n\
         SINGLE='${HOST} $HOST'\n\
         CALLER=\"${PM3_E2E_CALLER}\"\n",
    );
    pm3.config("[app]\ncommand = \"sleep 1000\"\nenv_file = \".env\"\n");
    let out = pm3.run_env(&["start"], &[("PM3_E2E_CALLER", "caller")]);
    assert_eq!(out.status.code(), Some(0), "{}", pm3.explain(&out));
    pm3.wait_online(&["app"]);
    let env = environ(pm3.pid_of("app"));
    assert_eq!(env["UNQUOTED"], "db.internal:5432");
    assert_eq!(env["DOUBLE"], "postgres://db.internal/0 $HOST ${HOST}");
    assert_eq!(env["SINGLE"], "${HOST} $HOST");
    assert_eq!(env["CALLER"], "caller");
}

#[test]
fn an_undefined_variable_is_a_config_error_where_it_is_written() {
    let pm3 = Pm3::new();
    pm3.write(".env", "A=1\nDB_URL=postgres://${DB_HOST}/app\n");
    pm3.config(
        "[web]\ncommand = \"sleep 1000\"\nenv_file = \".env\"\nenv = { NAME = \"web\" }\n\
         health_check = \"http://localhost:${PORT}/health\"\n",
    );
    let out = pm3.fails(&["start"]);
    let msg = stderr(&out);
    assert!(locations(&msg, "pm3.toml").contains(&(5, 16)), "{msg}");
    assert!(msg.contains("`health_check`: `${PORT}` is not defined"), "{msg}");
    assert!(locations(&msg, ".env").contains(&(2, 1)), "{msg}");
    assert!(msg.contains("`DB_URL`: `${DB_HOST}` is not defined"), "{msg}");
    assert!(!pm3.socket().exists(), "a config error must not start the daemon");

    // Defined by the environment of `pm3 start`, the same file starts.
    let out = pm3.run_env(&["start"], &[("PORT", "1"), ("DB_HOST", "db")]);
    assert_eq!(out.status.code(), Some(0), "{}", pm3.explain(&out));
    pm3.wait_until("web is running", |rows| rows.iter().any(|r| r["name"] == "web" && r["pid"].is_i64()));
    assert_eq!(environ(pm3.pid_of("web"))["DB_URL"], "postgres://db/app");
}
