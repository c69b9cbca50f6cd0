//! From a checked table to a [`ProcessDef`]: resolves `cwd` and `env_file` against the config
//! file's directory and checks they exist, reads the env files, lays the environment out in apply
//! order (`env_file` files, `env`, then the `env_<name>` picked by `--env`), checks
//! `increment_var` against it, turns `instances = "max"` into the CPU count, and checks every
//! `${VAR}` against the environment the processes will start from.
//!
//! The only module of the loader that touches the file system besides reading `pm3.toml`.

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::envfile::{self, EnvFileError};
use super::error::{ErrorKind, Excerpt, Lines, Located, Pos, Problems, show};
use super::parse::{Instances, RawProcess, Watch};
use crate::instances::{self, Expanding};
use crate::spec::ProcessDef;

/// Where one entry of [`ProcessDef::env`] was written.
enum Origin {
    /// In `pm3.toml`: the key as messages name it (`env.PORT`, `env_prod.PORT`) and the value.
    Config { key: String, span: Range<usize> },
    /// In an env file, at `line`; `order` is the offset of the `env_file` value that loaded it.
    File { path: PathBuf, line: usize, order: usize },
}

/// Builds the definition of `raw`, recording every problem found on the way; `base` is the
/// environment its processes start from (the `pm3` command's own).
pub fn process(
    raw: RawProcess,
    dir: &Path,
    env_name: Option<&str>,
    base: &BTreeMap<String, String>,
    problems: &mut Problems<'_>,
) -> ProcessDef {
    let cwd = match &raw.cwd {
        Some(given) => cwd(given, dir, problems),
        None => dir.to_path_buf(),
    };

    let mut env = Vec::new();
    let mut origins = Vec::new();
    for file in &raw.env_files {
        let path = resolve_path(dir, file.get_ref());
        for e in env_file(file, &path, &raw.name, problems) {
            origins.push(Origin::File { path: path.clone(), line: e.line, order: file.span().start });
            env.push((e.key, e.value));
        }
    }
    let overrides = raw.env_overrides.into_iter().filter(|o| Some(o.name.as_str()) == env_name);
    let tables = std::iter::once(("env".to_string(), raw.env))
        .chain(overrides.map(|o| (format!("env_{}", o.name), o.vars)));
    for (table, vars) in tables {
        for v in vars {
            origins.push(Origin::Config { key: format!("{table}.{}", v.name), span: v.span });
            env.push((v.name, v.value));
        }
    }
    if let Some(var) = &raw.increment_var {
        increment_var(var, &env, problems);
    }
    let health_span = raw.spans.iter().find(|(k, _)| k == "health_check").map(|(_, s)| s.clone());

    // Start from the defaults, so keys this loader does not know yet keep them.
    let mut def = ProcessDef::new(raw.name, raw.command, cwd);
    def.env = env;
    match raw.instances {
        Some(Instances::Count(n)) => def.instances = n,
        Some(Instances::Max) => def.instances = cpu_count(),
        None => {}
    }
    def.increment_var = raw.increment_var.map(Spanned::into_inner);
    def.group = raw.group;
    def.depends_on = raw.depends_on.into_iter().map(Spanned::into_inner).collect();
    if let Some(sig) = raw.kill_signal {
        def.kill_signal = sig;
    }
    if let Some(ms) = raw.kill_timeout_ms {
        def.kill_timeout_ms = ms;
    }
    if let Some(policy) = raw.restart {
        def.restart = policy;
    }
    if let Some(n) = raw.max_restarts {
        def.max_restarts = n;
    }
    if let Some(ms) = raw.min_uptime_ms {
        def.min_uptime_ms = ms;
    }
    if let Some(ms) = raw.restart_delay_ms {
        def.restart_delay_ms = ms;
    }
    if let Some(codes) = raw.stop_exit_codes {
        def.stop_exit_codes = codes;
    }
    def.health_check = raw.health_check;
    if let Some(ms) = raw.health_interval_ms {
        def.health_interval_ms = ms;
    }
    if let Some(ms) = raw.health_timeout_ms {
        def.health_timeout_ms = ms;
    }
    def.health_probe_timeout_ms = raw.health_probe_timeout_ms;
    def.pre_start = raw.pre_start;
    def.post_stop = raw.post_stop;
    def.max_memory = raw.max_memory;
    def.watch = match raw.watch {
        None | Some(Watch::Off) => None,
        Some(Watch::Cwd) => Some(def.cwd.clone()),
        Some(Watch::Path(given)) => {
            let path = resolve_path(dir, given.get_ref());
            if !path.is_dir() {
                let resolved = show(&path.display().to_string());
                problems.at(given.span(), ErrorKind::WatchMissing { given: show(given.get_ref()), resolved });
            }
            Some(path)
        }
    };
    if let Some(globs) = raw.watch_ignore {
        def.watch_ignore = globs;
    }
    if let Some(ms) = raw.watch_debounce_ms {
        def.watch_debounce_ms = ms;
    }
    def.cron_restart = raw.cron_restart;
    def.log_date_format = raw.log_date_format;
    if let Some(n) = raw.log_max_size {
        def.log_max_size = n;
    }
    if let Some(n) = raw.log_max_files {
        def.log_max_files = n;
    }
    def.listen = raw.listen.iter().map(|l| l.get_ref().clone()).collect();
    if let Some(b) = raw.log_compress {
        def.log_compress = b;
    }
    expansions(&def, &origins, health_span, base, problems);
    def
}

/// Every `${VAR}` of `def` (its variables that apply, its `health_check`) must expand in the
/// environment `base` its processes start from: a problem is reported where the value is
/// written, in `pm3.toml` or in an env file. A `health_check` that expands must then be a probe.
fn expansions(
    def: &ProcessDef,
    origins: &[Origin],
    health_span: Option<Range<usize>>,
    base: &BTreeMap<String, String>,
    problems: &mut Problems<'_>,
) {
    let found = instances::expansion_problems(def, base);
    for (what, problem) in &found {
        let reason = problem.to_string();
        match what {
            Expanding::Env(name) => {
                // The value that applies is the last one written.
                let Some(i) = def.env.iter().rposition(|(k, _)| k == name) else { continue };
                match origins.get(i) {
                    Some(Origin::Config { key, span }) => {
                        problems.at(span.clone(), ErrorKind::BadValue { key: show(key), reason })
                    }
                    Some(Origin::File { path, line, order }) => problems.elsewhere(
                        *order,
                        Located::new(
                            path,
                            Some(Pos { line: *line, col: 1 }),
                            ErrorKind::BadValue {
                                key: show(name),
                                reason: format!("{reason} (env file of [{}])", show(&def.name)),
                            },
                        ),
                    ),
                    None => {}
                }
            }
            Expanding::HealthCheck => {
                if let Some(span) = &health_span {
                    problems.at(span.clone(), ErrorKind::BadValue { key: "health_check".into(), reason });
                }
            }
        }
    }
    if let (Some(text), Some(span)) = (&def.health_check, health_span)
        && text.contains('$')
        && !found.iter().any(|(w, _)| *w == Expanding::HealthCheck)
    {
        let expanded = instances::expand_in(text, &instances::environment(def, base, 0));
        if let Err(reason) = crate::supervisor::health::Probe::parse(&expanded) {
            let reason = format!("{reason} (expanded from `{}`)", show(text));
            problems.at(span, ErrorKind::BadValue { key: "health_check".into(), reason });
        }
    }
}

/// The number of CPUs, for `instances = "max"` (1 when the system cannot tell).
pub fn cpu_count() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}

/// `given` relative to `dir` (an absolute `given` stays as it is), without `.` components.
fn resolve_path(dir: &Path, given: &str) -> PathBuf {
    dir.join(given).components().collect()
}

fn cwd(given: &Spanned<String>, dir: &Path, problems: &mut Problems<'_>) -> PathBuf {
    let path = resolve_path(dir, given.get_ref());
    let names = || (show(given.get_ref()), show(&path.display().to_string()));
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            let (given_s, resolved) = names();
            problems.at(given.span(), ErrorKind::CwdNotDir { given: given_s, resolved });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let (given_s, resolved) = names();
            problems.at(given.span(), ErrorKind::CwdMissing { given: given_s, resolved });
        }
        Err(e) => {
            let (given_s, resolved) = names();
            problems
                .at(given.span(), ErrorKind::CwdUnusable { given: given_s, resolved, reason: e.to_string() });
        }
    }
    path
}

fn env_file(
    given: &Spanned<String>,
    path: &Path,
    process: &str,
    problems: &mut Problems<'_>,
) -> Vec<envfile::Entry> {
    let path = path.to_path_buf();
    let names = || (show(given.get_ref()), show(&path.display().to_string()));
    match envfile::read(&path) {
        Ok(vars) => return vars,
        Err(EnvFileError::Missing) => {
            let (given_s, resolved) = names();
            problems.at(given.span(), ErrorKind::EnvFileMissing { given: given_s, resolved });
        }
        Err(EnvFileError::Unreadable(reason)) => {
            let (given_s, resolved) = names();
            problems.at(given.span(), ErrorKind::EnvFileUnreadable { given: given_s, resolved, reason });
        }
        Err(EnvFileError::Syntax { line, text }) => problems.elsewhere(
            given.span().start,
            Located {
                pos: Some(Pos { line, col: 1 }),
                path,
                kind: ErrorKind::EnvFileSyntax { line: show(&text), process: show(process) },
                help: None,
                excerpt: Some(Excerpt { first_line: line, span: 0..text.len(), lines: Lines::Text(text) }),
                label: None,
                notes: Vec::new(),
            },
        ),
    }
    Vec::new()
}

/// `increment_var` must name a variable the config defines, holding an integer.
fn increment_var(var: &Spanned<String>, env: &[(String, String)], problems: &mut Problems<'_>) {
    let name = var.get_ref();
    match env.iter().rev().find(|(k, _)| k == name) {
        None => problems.at(var.span(), ErrorKind::IncrementVarUndefined(show(name))),
        Some((_, value)) if value.trim().parse::<i64>().is_err() => {
            problems.at(var.span(), ErrorKind::IncrementVarNotInteger { var: show(name), value: show(value) })
        }
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{Fixture, load_errors};

    #[test]
    fn file_system_errors() {
        let fx = Fixture::new();
        fx.write("file.txt", "");
        fx.write("bad.env", "A=1\n\nNOT VALID\n");
        let text = "[web]\ncommand = \"x\"\ncwd = \"nope\"\nenv_file = [\"missing.env\", \"bad.env\"]\n\
                    [api]\ncommand = \"y\"\ncwd = \"file.txt\"\n";
        let dir = fx.dir().display().to_string();
        let config = fx.config_path().display().to_string();
        assert_eq!(
            fx.load_err(text, None),
            [
                format!("{config}:3:7: `cwd` directory `nope` does not exist ({dir}/nope)"),
                format!("{config}:4:13: `env_file` `missing.env` not found ({dir}/missing.env)"),
                format!("{dir}/bad.env:3:1: cannot parse `NOT VALID` (env file of [web])"),
                format!("{config}:7:7: `cwd` `file.txt` is not a directory ({dir}/file.txt)"),
            ]
            .join("\n")
        );
    }

    #[test]
    fn increment_var_errors() {
        let cases: &[(&str, &[&str])] = &[
            (
                "[web]\ncommand = \"x\"\nincrement_var = \"PORT\"\nenv = { HOST = \"a\" }\n",
                &["3:17: `increment_var` names `PORT`, which `env` and `env_file` do not define"],
            ),
            (
                "[web]\ncommand = \"x\"\nincrement_var = \"PORT\"\nenv = { PORT = \"http\" }\n",
                &["3:17: `increment_var` `PORT` must hold an integer, got `http`"],
            ),
            (
                // Only the `env_<name>` picked by `--env` counts, and none is picked here.
                "[web]\ncommand = \"x\"\nincrement_var = \"PORT\"\nenv_prod = { PORT = 80 }\n",
                &["3:17: `increment_var` names `PORT`, which `env` and `env_file` do not define"],
            ),
        ];
        for (toml, want) in cases {
            assert_eq!(load_errors(toml), *want, "for file:\n{toml}");
        }
    }

    #[test]
    fn undefined_variables_are_located_where_they_are_written() {
        let fx = Fixture::new();
        fx.write("app.env", "A=1\nURL=\"http://${DB_HOST}/x\"\nOK=${A}${HOME}\nLIT='${LITERAL}' \n");
        let text = "[web]\ncommand = \"x\"\nenv_file = \"app.env\"\n\
                    env = { P = \"${HOME}/${NOPE}\", Q = \"${NOPE:-d}\", I = \"${PM3_NAME}${PM3_INSTANCE_ID}\" }\n\
                    env_prod = { R = \"${PROD_ONLY}\", S = \"${A:+x}\" }\n\
                    health_check = \"http://localhost:${PORT}/\"\n";
        let base = [("HOME", "/home/u")];
        let dir = fx.dir().display().to_string();
        let config = fx.config_path().display().to_string();
        let undefined = |name: &str| {
            format!(
                "`${{{name}}}` is not defined (define `{name}` in `env`, or give a default: `${{{name}:-value}}`)"
            )
        };
        let want = [
            format!("{dir}/app.env:2:1: `URL`: {} (env file of [web])", undefined("DB_HOST")),
            format!("{config}:4:13: `env.P`: {}", undefined("NOPE")),
            format!("{config}:6:16: `health_check`: {}", undefined("PORT")),
        ];
        assert_eq!(fx.load_err_in(text, None, &base), want.join("\n"));
        let want = [
            want[0].clone(),
            want[1].clone(),
            format!("{config}:5:18: `env_prod.R`: {}", undefined("PROD_ONLY")),
            format!(
                "{config}:5:38: `env_prod.S`: `${{A:+x}}` is not an expansion pm3 knows: write `${{VAR}}` or \
                 `${{VAR:-default}}`, and `$$` for a literal `$`"
            ),
            want[2].clone(),
        ];
        assert_eq!(fx.load_err_in(text, Some("prod"), &base), want.join("\n"));

        // Defined by the starting environment, the config or `increment_var`, all is well; a
        // shadowed value is never expanded, so it is not checked.
        let text = "[web]\ncommand = \"x\"\nenv_file = \"app.env\"\ninstances = 2\nincrement_var = \"PORT\"\n\
                    env = { PORT = 3000, P = \"${HOME}/${NOPE}\", URL = \"u\" }\n\
                    health_check = \"http://localhost:${PORT}/\"\n";
        let cfg = fx.load_in(text, None, &[("HOME", "/h"), ("NOPE", "")]);
        assert_eq!(cfg.processes[0].health_check.as_deref(), Some("http://localhost:${PORT}/"));
        let env = crate::instances::environment(&cfg.processes[0], &[("HOME".into(), "/h".into())].into(), 1);
        assert_eq!(
            (env["PORT"].as_str(), env["OK"].as_str(), env["LIT"].as_str()),
            ("3001", "1/h", "${LITERAL}")
        );
    }

    #[test]
    fn a_health_check_must_be_a_probe_once_expanded() {
        let text =
            "[web]\ncommand = \"x\"\nenv = { HOST = \"db\" }\nhealth_check = \"tcp://${HOST}${PORT:-}\"\n";
        assert_eq!(
            load_errors(text),
            [
                "4:16: `health_check`: `tcp://db` must be `tcp://HOST:PORT` (expanded from `tcp://${HOST}${PORT:-}`)"
            ]
        );
    }

    #[test]
    fn increment_var_from_an_env_file_or_the_picked_env() {
        let fx = Fixture::new();
        fx.write(".env", "PORT=3000\n");
        let cfg = fx.load("[web]\ncommand = \"x\"\nenv_file = \".env\"\nincrement_var = \"PORT\"\n", None);
        assert_eq!(cfg.processes[0].increment_var.as_deref(), Some("PORT"));
        let cfg = fx.load(
            "[web]\ncommand = \"x\"\nincrement_var = \"PORT\"\nenv_prod = { PORT = 80 }\n",
            Some("prod"),
        );
        assert_eq!(cfg.processes[0].env, [("PORT".to_string(), "80".to_string())]);
    }
}
