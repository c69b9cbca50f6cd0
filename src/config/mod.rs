//! Loading `pm3.toml`: find the file, parse it with spans, validate every rule, and produce a
//! [`ConfigFile`] of typed [`ProcessDef`](crate::spec::ProcessDef)s. Nothing here talks to the
//! daemon; every error is reported before anything is sent.
//!
//! # Layout
//! - `parse`: the spanned TOML walk, one table at a time, checking each key's type and value;
//! - `validate`: rules across processes (names, `depends_on`, cycles, `--env`);
//! - `resolve`: paths, env files and the environment in apply order, `increment_var`, `"max"`;
//! - `envfile`: reading one `.env` file;
//! - `error`: the error kinds, their locations, and the collector that sorts them.
//!
//! Every problem is reported as `PATH:LINE:COL: message`, one per line, in file order.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use crate::spec::{ConfigFile, MAX_FILE_INSTANCES, ProcessDef};

mod envfile;
mod error;
mod parse;
mod resolve;
mod validate;

use error::{ErrorKind, Problems};

/// Name of the config file searched for.
pub const FILE_NAME: &str = "pm3.toml";

/// Finds `pm3.toml` in `start` or the nearest parent directory that has one.
pub fn find(start: &Path) -> Option<PathBuf> {
    // A relative start (`.`) must still walk up through the real parents.
    let start = std::path::absolute(start).unwrap_or_else(|_| start.to_path_buf());
    start.ancestors().map(|dir| dir.join(FILE_NAME)).find(|p| p.is_file())
}

/// Why a config file could not be used. Each line of its message is one problem.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Loads and validates the config at `path`, applying `env_<name>` overrides for `--env <name>`.
///
/// The returned [`ConfigFile::path`] is absolute (symlinks resolved), and so is every path in
/// the error messages.
pub fn load(path: &Path, env_name: Option<&str>) -> Result<ConfigFile, ConfigError> {
    let path = std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf());
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError(format!("{}: cannot read config file: {e}", path.display())))?;
    let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();

    let mut problems = Problems::new(&path, &text);
    let processes = match DeTable::parse(&text) {
        Ok(root) => {
            let raw = parse::processes(root.get_ref(), &mut problems);
            validate::check(&raw, env_name, &mut problems);
            raw.into_iter()
                .map(|p| {
                    let (header, spans) = (p.header.clone(), p.spans.clone());
                    let def = resolve::process(p, &dir, env_name, &mut problems);
                    rules(&def, &header, &spans, &mut problems);
                    def
                })
                .collect::<Vec<_>>()
        }
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            problems.at(span.clone(), syntax_error(&text, span.start, e.message()));
            Vec::new()
        }
    };
    let total: u64 = processes.iter().map(|d| u64::from(d.instances)).sum();
    if total > u64::from(MAX_FILE_INSTANCES) {
        problems.at_end(ErrorKind::Rule(format!(
            "{total} instances in all, more than the {MAX_FILE_INSTANCES} one config file may have"
        )));
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

/// The parser's message on one line, with the source line it is about.
fn syntax_error(text: &str, offset: usize, message: &str) -> ErrorKind {
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let line = error::Pos::of(text, offset).line;
    match text.lines().nth(line - 1).map(str::trim).filter(|l| !l.is_empty()) {
        Some(src) => ErrorKind::Syntax(format!("{message} (in `{}`)", error::show(src))),
        None => ErrorKind::Syntax(message),
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
                &[
                    "3:16: `log_max_size`: `integer `0`` is not a size (use a number with K, M or G, like \"200M\")",
                ],
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
