//! Loading `pm3.toml`: find the file, parse it with spans, validate every rule, and produce a
//! [`ConfigFile`] of typed [`ProcessDef`](crate::spec::ProcessDef)s. Nothing here talks to the
//! daemon; every error is reported before anything is sent.
//!
//! # Layout
//! - `parse`: the spanned TOML walk, one table at a time, checking each key's type and value;
//! - `validate`: rules across processes (names, `depends_on`, cycles, `--env`);
//! - `resolve`: paths, env files and the environment in apply order, `increment_var`, `"max"`;
//! - `envfile`: reading one `.env` file;
//! - `error`: the error kinds, their locations, and the collector that sorts them;
//! - `render`: how a person sees them: cargo-style snippets of the file.
//!
//! Every problem has its path, line and column; [`ConfigError`] shows them in file order, one
//! per line as `PATH:LINE:COL: message` (for `--json` and logs), or as snippets of the file with
//! the offending key or value underlined ([`ConfigError::render`], for a person).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use crate::process::spawn;
use crate::spec::{ConfigFile, MAX_FILE_INSTANCES, ProcessDef};

mod envfile;
mod error;
mod parse;
/// Every key a process table may hold (what "did you mean" suggests from).
pub use parse::KEYS;
mod render;
mod resolve;
mod validate;

use error::{ErrorKind, Excerpt, Lines, Located, Problems};

/// Name of the config file searched for.
pub const FILE_NAME: &str = "pm3.toml";

/// Finds `pm3.toml` in `start` or the nearest parent directory that has one.
pub fn find(start: &Path) -> Option<PathBuf> {
    // A relative start (`.`) must still walk up through the real parents.
    let start = std::path::absolute(start).unwrap_or_else(|_| start.to_path_buf());
    start.ancestors().map(|dir| dir.join(FILE_NAME)).find(|p| p.is_file())
}

/// Why a config file could not be used: every problem found in it, in file order.
///
/// `Display` gives one line per problem (`PATH:LINE:COL: message`); [`ConfigError::render`]
/// gives what a person reads on a terminal.
#[derive(Debug)]
pub struct ConfigError {
    path: PathBuf,
    /// The text of the config file (empty when it could not be read).
    text: String,
    problems: Vec<Located>,
}

impl ConfigError {
    /// The source lines of `excerpt`.
    fn lines<'a>(&'a self, excerpt: &'a Excerpt) -> &'a str {
        match &excerpt.lines {
            Lines::Config(range) => self.text.get(range.clone()).unwrap_or(""),
            Lines::Text(text) => text,
        }
    }

    /// Every problem as cargo shows a compile error: `error: message`, ` --> PATH:LINE:COL`,
    /// the source line with the offending key or value underlined (and a suggestion under it),
    /// then a closing `error: could not load PATH: N errors`. ANSI colors when `color`.
    pub fn render(&self, color: bool) -> String {
        render::report(self, color)
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
            // On one line there is no snippet: say which line the parser stopped in.
            if let (ErrorKind::Syntax(_), Some(excerpt)) = (&p.kind, &p.excerpt) {
                let src = self.lines(excerpt).lines().next().unwrap_or("").trim();
                if !src.is_empty() {
                    write!(f, " (in `{}`)", error::show(src))?;
                }
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The environment of this process, as `pm3 start` hands it to the processes it starts
/// (variables whose name or value is not UTF-8 left out).
pub fn own_environment() -> BTreeMap<String, String> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect()
}

/// The variables of the env file at `path` as an `env_file` loads them (values in pm3's
/// expansion syntax, not expanded), or why it cannot be loaded.
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    match envfile::read(path) {
        Ok(entries) => Ok(entries.into_iter().map(|e| (e.key, e.value)).collect()),
        Err(envfile::EnvFileError::Missing) => Err("not found".into()),
        Err(envfile::EnvFileError::Unreadable(e)) => Err(format!("cannot be read: {e}")),
        Err(envfile::EnvFileError::Syntax { line, text }) => {
            Err(format!("line {line} `{}` is not `KEY=VALUE` as pm3 reads it", error::show(&text)))
        }
    }
}

/// A problem the daemon found with a value of the file (a `listen` address it cannot bind),
/// located like a loading error: at `[process]`'s `key`, entry `index` when it is an array.
/// Without the file or the key, the message alone.
pub fn locate(path: &Path, process: &str, key: &str, index: usize, message: &str) -> ConfigError {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let span = DeTable::parse(&text).ok().and_then(|root| {
        let table = root.get_ref().get(process)?;
        let toml::de::DeValue::Table(t) = table.get_ref() else { return None };
        let value = t.get(key)?;
        match value.get_ref() {
            toml::de::DeValue::Array(items) => items.get(index).map(|i| i.span()),
            _ => Some(value.span()),
        }
    });
    let kind = ErrorKind::Rule(message.to_string());
    let problems = match span {
        Some(span) => {
            let mut p = Problems::new(path, &text);
            p.at(span, kind);
            return p.finish().err().unwrap_or_else(|| ConfigError {
                path: path.to_path_buf(),
                text: String::new(),
                problems: Vec::new(),
            });
        }
        None => vec![Located::new(path, None, kind)],
    };
    ConfigError { path: path.to_path_buf(), text, problems }
}

/// [`load_with`] for processes started from this process's own environment.
pub fn load(path: &Path, env_name: Option<&str>) -> Result<ConfigFile, ConfigError> {
    load_with(path, env_name, &own_environment())
}

/// Loads and validates the config at `path`, applying `env_<name>` overrides for `--env <name>`,
/// for processes started from the environment `base` (which decides what `${VAR}` may name).
///
/// The returned [`ConfigFile::path`] is absolute (symlinks resolved), and so is every path in
/// the error messages.
pub fn load_with(
    path: &Path,
    env_name: Option<&str>,
    base: &BTreeMap<String, String>,
) -> Result<ConfigFile, ConfigError> {
    let path = std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf());
    let text = std::fs::read_to_string(&path).map_err(|e| ConfigError {
        problems: vec![Located::new(&path, None, ErrorKind::Unreadable(e.to_string()))],
        path: path.clone(),
        text: String::new(),
    })?;
    let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();

    let mut problems = Problems::new(&path, &text);
    let processes = match DeTable::parse(&text) {
        Ok(root) => {
            let raw = parse::processes(root.get_ref(), &mut problems);
            let tables = root.get_ref().values().any(|v| matches!(v.get_ref(), toml::de::DeValue::Table(_)));
            validate::check(&raw, tables, env_name, &mut problems);
            let mut scripts = Vec::new();
            let defs = raw
                .into_iter()
                .map(|p| {
                    let (header, spans) = (p.header.clone(), p.spans.clone());
                    let def = resolve::process(p, &dir, env_name, base, &mut problems);
                    rules(&def, &header, &spans, &mut problems);
                    scripts.extend(shell_scripts(&def, &spans));
                    def
                })
                .collect::<Vec<_>>();
            shell_syntax(&scripts, &mut problems);
            defs
        }
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
            problems.at(span, ErrorKind::Syntax(message));
            Vec::new()
        }
    };
    let total: u64 = processes.iter().map(|d| u64::from(d.instances)).sum();
    if total > u64::from(MAX_FILE_INSTANCES) {
        problems.at_end(
            ErrorKind::Rule(format!(
                "{total} instances in all, more than the {MAX_FILE_INSTANCES} one config file may have"
            )),
            None,
        );
    }
    problems.finish()?;
    Ok(ConfigFile { path, processes })
}

/// The rules on a finished definition ([`ProcessDef::problems`], shared with the daemon), each
/// at the value of its key (the table header when the key is not in the file), unless a
/// problem is already reported there.
fn rules(
    def: &ProcessDef,
    header: &Range<usize>,
    spans: &[(String, Range<usize>)],
    problems: &mut Problems<'_>,
) {
    for invalid in def.problems() {
        let span = spans.iter().find(|(k, _)| *k == invalid.key).map_or(header, |(_, s)| s);
        if !problems.has_at(span.start) {
            problems.at(span.clone(), ErrorKind::Rule(invalid.message));
        }
    }
}

/// The values of `def` that run through `/bin/sh -c`, with where each is: the `command` when it
/// needs a shell, and the hooks.
fn shell_scripts(
    def: &ProcessDef,
    spans: &[(String, Range<usize>)],
) -> Vec<(&'static str, Range<usize>, String)> {
    let command = spawn::runs_in_shell(&def.command).then_some(&def.command);
    [("command", command), ("pre_start", def.pre_start.as_ref()), ("post_stop", def.post_stop.as_ref())]
        .into_iter()
        .filter_map(|(key, text)| {
            let text = text.filter(|t| !t.trim().is_empty() && !t.contains('\0'))?;
            let span = spans.iter().find(|(k, _)| k == key)?.1.clone();
            Some((key, span, text.clone()))
        })
        .collect()
}

/// Each of `scripts` must be what `/bin/sh` can parse: a shell syntax error (an unterminated
/// quote) would otherwise only show when the process starts, and then on every restart.
fn shell_syntax(scripts: &[(&'static str, Range<usize>, String)], problems: &mut Problems<'_>) {
    let texts: Vec<&str> = scripts.iter().map(|(_, _, t)| t.as_str()).collect();
    for ((key, span, _), error) in scripts.iter().zip(spawn::shell_syntax_errors(&texts)) {
        if let Some(e) = error
            && !problems.has_at(span.start)
        {
            let reason = format!("shell syntax error: {e}");
            problems.at(span.clone(), ErrorKind::BadValue { key: (*key).to_string(), reason });
        }
    }
}

/// Real files in a temporary directory, shared by the tests of every file of the loader.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::{Path, PathBuf};

    use super::{FILE_NAME, load};
    use crate::spec::ConfigFile;

    pub struct Fixture {
        _tmp: tempfile::TempDir,
        /// The temporary directory, symlinks resolved (as `load` reports paths).
        root: PathBuf,
    }

    impl Fixture {
        pub fn new() -> Fixture {
            let tmp = tempfile::tempdir().expect("create a temporary directory");
            let root = std::fs::canonicalize(tmp.path()).expect("canonicalize it");
            Fixture { _tmp: tmp, root }
        }

        pub fn dir(&self) -> &Path {
            &self.root
        }

        pub fn config_path(&self) -> PathBuf {
            self.root.join(FILE_NAME)
        }

        /// Writes `text` to `rel` under the directory, creating parent directories.
        pub fn write(&self, rel: &str, text: &str) {
            let path = self.root.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("create parent directory");
            }
            std::fs::write(path, text).expect("write file");
        }

        pub fn mkdir(&self, rel: &str) {
            std::fs::create_dir_all(self.root.join(rel)).expect("create directory");
        }

        /// Loads `text` as `pm3.toml`, panicking with the errors if it fails.
        pub fn load(&self, text: &str, env: Option<&str>) -> ConfigFile {
            self.write(FILE_NAME, text);
            match load(&self.config_path(), env) {
                Ok(cfg) => cfg,
                Err(e) => panic!("unexpected config error:\n{e}\nfor file:\n{text}"),
            }
        }

        /// Loads `text` as `pm3.toml` and returns the error message, panicking if it loads.
        pub fn load_err(&self, text: &str, env: Option<&str>) -> String {
            self.write(FILE_NAME, text);
            match load(&self.config_path(), env) {
                Ok(cfg) => panic!("expected an error, got {cfg:?}\nfor file:\n{text}"),
                Err(e) => e.to_string(),
            }
        }
    }

    impl Fixture {
        /// [`Fixture::load`] for processes started from `base`.
        pub fn load_in(&self, text: &str, env: Option<&str>, base: &[(&str, &str)]) -> ConfigFile {
            self.write(FILE_NAME, text);
            match super::load_with(&self.config_path(), env, &environment(base)) {
                Ok(cfg) => cfg,
                Err(e) => panic!("unexpected config error:\n{e}\nfor file:\n{text}"),
            }
        }

        /// [`Fixture::load_err`] for processes started from `base`.
        pub fn load_err_in(&self, text: &str, env: Option<&str>, base: &[(&str, &str)]) -> String {
            self.write(FILE_NAME, text);
            match super::load_with(&self.config_path(), env, &environment(base)) {
                Ok(cfg) => panic!("expected an error, got {cfg:?}\nfor file:\n{text}"),
                Err(e) => e.to_string(),
            }
        }
    }

    fn environment(vars: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// The error lines for `text`, each with the config path and its `:` removed (`3:1: …`).
    pub fn load_errors(text: &str) -> Vec<String> {
        let fx = Fixture::new();
        let prefix = format!("{}:", fx.config_path().display());
        fx.load_err(text, None).lines().map(|l| l.strip_prefix(&prefix).unwrap_or(l).to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{Fixture, load_errors};
    use super::*;
    use crate::process::signal::Signal;
    use crate::spec::ProcessDef;

    const FULL: &str = r#"
[db]
command = "postgres -D data"
kill_signal = "INT"
kill_timeout = 10000

[web]
command = "node server.js"
cwd = "app"
env_file = ["base.env", "conf/extra.env"]
env = { PORT = 3000, NODE_ENV = "development", URL = "http://localhost:${PORT}" }
env_prod = { NODE_ENV = "production" }
env_staging = { NODE_ENV = "staging", DEBUG = true }
instances = 4
increment_var = "PORT"
group = "frontend"
depends_on = ["db"]

[worker]
command = "python worker.py"
cwd = "./jobs/"
instances = "max"
kill_signal = "SIGUSR2"
"#;

    fn full_fixture() -> Fixture {
        let fx = Fixture::new();
        fx.mkdir("app");
        fx.mkdir("jobs");
        fx.write("base.env", "# shared\nexport NODE_ENV=file\nA='from base'\n");
        fx.write("conf/extra.env", "B=\"${A} two\"\n");
        fx
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn full_config_round_trips() {
        let fx = full_fixture();
        let cfg = fx.load(FULL, None);
        let root = fx.dir();
        assert_eq!(cfg.path, fx.config_path());

        let mut db = ProcessDef::new("db", "postgres -D data", root.to_path_buf());
        db.kill_signal = Signal::INT;
        db.kill_timeout_ms = 10_000;

        let mut web = ProcessDef::new("web", "node server.js", root.join("app"));
        web.env = pairs(&[
            ("NODE_ENV", "file"),
            ("A", "from base"),
            ("B", "${A} two"),
            ("PORT", "3000"),
            ("NODE_ENV", "development"),
            ("URL", "http://localhost:${PORT}"),
        ]);
        web.instances = 4;
        web.increment_var = Some("PORT".into());
        web.group = Some("frontend".into());
        web.depends_on = vec!["db".into()];

        let mut worker = ProcessDef::new("worker", "python worker.py", root.join("jobs"));
        worker.instances = resolve::cpu_count();
        worker.kill_signal = "USR2".parse().expect("USR2 is a signal");

        assert_eq!(cfg.processes, [db, web, worker]);
    }

    #[test]
    fn env_overrides_apply_only_for_their_name() {
        let fx = full_fixture();
        let env_of = |name| {
            let cfg = fx.load(FULL, name);
            cfg.processes[1].env.clone()
        };
        let base = pairs(&[
            ("NODE_ENV", "file"),
            ("A", "from base"),
            ("B", "${A} two"),
            ("PORT", "3000"),
            ("NODE_ENV", "development"),
            ("URL", "http://localhost:${PORT}"),
        ]);
        let mut prod = base.clone();
        prod.extend(pairs(&[("NODE_ENV", "production")]));
        let mut staging = base.clone();
        staging.extend(pairs(&[("NODE_ENV", "staging"), ("DEBUG", "true")]));
        assert_eq!(env_of(None), base);
        assert_eq!(env_of(Some("prod")), prod);
        assert_eq!(env_of(Some("staging")), staging);
        // Processes without `env_prod` are unchanged by `--env prod`.
        assert!(fx.load(FULL, Some("prod")).processes[0].env.is_empty());
    }

    #[test]
    fn find_walks_up_to_the_nearest_file() {
        let fx = Fixture::new();
        fx.mkdir("a/b/c");
        fx.mkdir("a/b/pm3.toml"); // a directory of that name is not a config file
        fx.write("pm3.toml", "");
        let deep = fx.dir().join("a/b/c");
        assert_eq!(find(&deep), Some(fx.dir().join(FILE_NAME)));
        fx.write("a/pm3.toml", "");
        assert_eq!(find(&deep), Some(fx.dir().join("a").join(FILE_NAME)));
        assert_eq!(find(&fx.dir().join("a")), Some(fx.dir().join("a").join(FILE_NAME)));
    }

    #[test]
    fn syntax_errors_are_located() {
        assert_eq!(
            load_errors("[web]\ncommand = \n"),
            [
                "2:11: TOML syntax error: string values must be quoted, expected literal string (in `command =`)"
            ]
        );
        assert_eq!(
            load_errors("[web]\ncommand = \"x\"\n[web]\ncommand = \"y\"\n"),
            ["3:2: TOML syntax error: duplicate key (in `[web]`)"]
        );
        assert_eq!(
            load_errors("[web]\ncommand = \"sleep 1000\nkill_timeout = 5\n"),
            ["2:22: TOML syntax error: invalid basic string, expected `\"` (in `command = \"sleep 1000`)"]
        );
    }

    #[test]
    fn unreadable_config_file() {
        let fx = Fixture::new();
        let path = fx.dir().join("missing.toml");
        let err = load(&path, None).expect_err("missing file").to_string();
        assert!(err.starts_with(&format!("{}: cannot read config file: ", path.display())), "{err}");
    }

    #[test]
    fn limits_and_nul_bytes_are_located() {
        let cases: &[(&str, &[&str])] = &[
            (
                "[w]\ncommand = \"x\"\ninstances = 4294967295\n",
                &["3:13: `instances` must be at most 1024, got 4294967295"],
            ),
            (
                "[w]\ncommand = \"x\"\ninstances = 1025\n",
                &["3:13: `instances` must be at most 1024, got 1025"],
            ),
            (
                "[w]\ncommand = \"x\"\nlog_max_size = \"1B\"\n",
                &["3:16: `log_max_size` must be at least 4K (4096 bytes), got 1 bytes"],
            ),
            (
                "[w]\ncommand = \"x\"\nlog_max_size = 0\n",
                &["3:16: `log_max_size`: `0` is not a size (use 512K, 200M, 1G)"],
            ),
            (
                "[w]\nkill_timeout = 1\ncommand = \"sleep\\u0000 1\"\n",
                &["3:11: `command` must not contain a NUL character"],
            ),
            (
                "[w]\ncommand = \"x\"\npre_start = \"a\\u0000\"\nenv = { A = \"\\u0000\" }\n",
                &[
                    "3:13: `pre_start` must not contain a NUL character",
                    "4:13: `env.A` must not contain a NUL character",
                ],
            ),
            (
                "[a]\ncommand = \"x\"\ninstances = 1024\n[b]\ncommand = \"x\"\ninstances = 1024\n\
                 [c]\ncommand = \"x\"\ninstances = 1024\n[d]\ncommand = \"x\"\ninstances = 1024\n\
                 [e]\ncommand = \"x\"\n",
                &["1:1: 4097 instances in all, more than the 4096 one config file may have"],
            ),
        ];
        for (toml, want) in cases {
            assert_eq!(load_errors(toml), *want, "for file:\n{toml}");
        }
        // At the limits, fine.
        let fx = Fixture::new();
        let cfg = fx.load("[w]\ncommand = \"x\"\ninstances = 1024\nlog_max_size = \"4K\"\n", None);
        assert_eq!((cfg.processes[0].instances, cfg.processes[0].log_max_size), (1024, 4096));
    }

    #[test]
    fn shell_syntax_errors_are_located() {
        let errs = load_errors(
            "[web]\ncommand = \"echo 'oops\"\npre_start = \"if true; then x\"\npost_stop = \"echo ok # it's\"\n\
             [ok]\ncommand = \"PORT=1 exec sleep 1 && cat <<EOF\\nit's\\nEOF\"\n",
        );
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].starts_with("2:11: `command`: shell syntax error: "), "{errs:?}");
        assert!(errs[1].starts_with("3:13: `pre_start`: shell syntax error: "), "{errs:?}");
    }

    #[test]
    fn log_compress_is_a_boolean_that_defaults_to_on() {
        let fx = Fixture::new();
        let cfg = fx.load("[a]\ncommand = \"x\"\n[b]\ncommand = \"x\"\nlog_compress = false\n", None);
        assert!(cfg.processes[0].log_compress && !cfg.processes[1].log_compress);
        let errors = load_errors("[w]\ncommand = \"x\"\nlog_compress = \"yes\"\n");
        assert!(errors.len() == 1 && errors[0].starts_with("3:16: `log_compress`"), "{errors:?}");
    }

    #[test]
    fn every_error_is_one_located_line() {
        let fx = Fixture::new();
        let err = fx.load_err("[web]\ncommand = 1\ninstances = 0\ndepends_on = [\"nope\"]\n", Some("prod"));
        let prefix = format!("{}:", fx.config_path().display());
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 4, "{err}");
        assert!(lines.iter().all(|l| l.starts_with(&prefix)), "{err}");
    }
}
