//! Config errors: what went wrong ([`ErrorKind`]), where ([`Located`]), and the collector
//! ([`Problems`]) that the parse, validate and resolve steps push into so that one load reports
//! every problem it can find, sorted in file order.
//!
//! Every message is lowercase and names the offending key or value in backticks; the location is
//! rendered as `PATH:LINE:COL: ` in front of it (1-based line and column, in characters).

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::ConfigError;

/// One problem, without its location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("TOML syntax error: {0}")]
    Syntax(String),
    #[error("no process defined (add a table like `[web]` with a `command`)")]
    NoProcess,
    #[error("top-level key `{0}` must be a process table like `[{0}]`")]
    NotATable(String),
    #[error("invalid process name `{name}`: {reason}")]
    BadName { name: String, reason: String },
    #[error("invalid group name `{name}`: {reason}")]
    BadGroup { name: String, reason: String },
    #[error("unknown key `{key}` in [{process}]")]
    UnknownKey { key: String, process: String },
    #[error("invalid environment name in key `{0}` (use `env_` and `A-Z a-z 0-9 _ -`)")]
    BadEnvName(String),
    #[error("missing required key `command` in [{0}]")]
    MissingCommand(String),
    #[error("`{key}` must be {expected}, got {found}")]
    WrongType { key: String, expected: &'static str, found: String },
    #[error("`{0}` must not be empty")]
    Empty(String),
    #[error("`{key}` must be at least {min}, got {got}")]
    TooSmall { key: String, min: i64, got: String },
    #[error("`{key}` must be at most {max}, got {got}")]
    TooLarge { key: String, max: i64, got: String },
    #[error("invalid variable name `{name}` in `{key}`")]
    BadVarName { key: String, name: String },
    #[error("`{0}` must not contain a NUL character")]
    NulInValue(String),
    #[error("`kill_signal`: {0}")]
    BadSignal(String),
    #[error("`cwd` directory `{given}` does not exist ({resolved})")]
    CwdMissing { given: String, resolved: String },
    #[error("`cwd` `{given}` is not a directory ({resolved})")]
    CwdNotDir { given: String, resolved: String },
    #[error("`cwd` `{given}` cannot be used ({resolved}): {reason}")]
    CwdUnusable { given: String, resolved: String, reason: String },
    #[error("`env_file` `{given}` not found ({resolved})")]
    EnvFileMissing { given: String, resolved: String },
    #[error("`env_file` `{given}` cannot be read ({resolved}): {reason}")]
    EnvFileUnreadable { given: String, resolved: String, reason: String },
    #[error("cannot parse `{line}` (env file of [{process}])")]
    EnvFileSyntax { line: String, process: String },
    #[error("`increment_var` names `{0}`, which `env` and `env_file` do not define")]
    IncrementVarUndefined(String),
    #[error("`increment_var` `{var}` must hold an integer, got `{value}`")]
    IncrementVarNotInteger { var: String, value: String },
    #[error("`depends_on` names unknown process `{0}`")]
    UnknownDependency(String),
    #[error("`{0}` depends on itself (`{0} -> {0}`)")]
    SelfDependency(String),
    #[error("dependency cycle `{0}`")]
    Cycle(String),
    #[error("no process defines `env_{0}` (asked for with `--env {0}`)")]
    UnknownEnv(String),
    #[error("`{key}`: {reason}")]
    BadValue { key: String, reason: String },
    #[error("`watch` directory `{given}` does not exist ({resolved})")]
    WatchMissing { given: String, resolved: String },
    /// A rule of [`crate::spec`], already worded.
    #[error("{0}")]
    Rule(String),
}

/// A 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    /// The position of byte `offset` in `text` (clamped to the text, and to a char boundary).
    pub fn of(text: &str, offset: usize) -> Pos {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Pos { line: before.matches('\n').count() + 1, col: before[line_start..].chars().count() + 1 }
    }
}

/// A problem with the file it is in and, when it has one, its position there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Located {
    pub path: PathBuf,
    pub pos: Option<Pos>,
    #[source]
    pub kind: ErrorKind,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(Pos { line, col }) => {
                write!(f, "{}:{line}:{col}: {}", self.path.display(), self.kind)
            }
            None => write!(f, "{}: {}", self.path.display(), self.kind),
        }
    }
}

/// Collects the problems of one config file, keyed by where they are in it.
pub struct Problems<'a> {
    path: &'a Path,
    text: &'a str,
    /// (byte offset in the config file used for ordering, problem)
    list: Vec<(usize, Located)>,
}

impl<'a> Problems<'a> {
    pub fn new(path: &'a Path, text: &'a str) -> Problems<'a> {
        Problems { path, text, list: Vec::new() }
    }

    /// Records `kind` at the start of `span` in the config file.
    pub fn at(&mut self, span: Range<usize>, kind: ErrorKind) {
        let located =
            Located { path: self.path.to_path_buf(), pos: Some(Pos::of(self.text, span.start)), kind };
        self.list.push((span.start, located));
    }

    /// Records a problem located in another file (an env file), ordered as if it were at
    /// `order` (the offset of the config value that pulled that file in).
    pub fn elsewhere(&mut self, order: usize, located: Located) {
        self.list.push((order, located));
    }

    /// Records `kind` at line 1, column 1, after every other problem (for problems that belong to
    /// no key, like an unknown `--env` name).
    pub fn at_end(&mut self, kind: ErrorKind) {
        let located = Located { path: self.path.to_path_buf(), pos: Some(Pos { line: 1, col: 1 }), kind };
        self.list.push((usize::MAX, located));
    }

    /// True when a problem is already recorded at byte `offset` (one problem per location).
    pub fn has_at(&self, offset: usize) -> bool {
        self.list.iter().any(|(o, _)| *o == offset)
    }

    /// `Ok(())` when nothing was recorded, else every problem in file order, one per line.
    pub fn finish(mut self) -> Result<(), ConfigError> {
        if self.list.is_empty() {
            return Ok(());
        }
        self.list.sort_by_key(|(order, _)| *order);
        let lines: Vec<String> = self.list.iter().map(|(_, l)| l.to_string()).collect();
        Err(ConfigError(lines.join("\n")))
    }
}

pub use crate::spec::show;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_in_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(Pos::of(text, 0), Pos { line: 1, col: 1 });
        assert_eq!(Pos::of(text, 6), Pos { line: 2, col: 1 });
        // `=` after the two-byte `é`.
        assert_eq!(Pos::of(text, 10), Pos { line: 2, col: 4 });
        // Past the end and inside a character are clamped.
        assert_eq!(Pos::of(text, 999), Pos { line: 3, col: 1 });
        assert_eq!(Pos::of(text, 8), Pos { line: 2, col: 2 });
    }

    #[test]
    fn problems_sort_in_file_order() {
        let path = Path::new("/x/pm3.toml");
        let mut p = Problems::new(path, "a\nb\n");
        p.at_end(ErrorKind::UnknownEnv("prod".into()));
        p.at(2..3, ErrorKind::Empty("command".into()));
        p.at(0..1, ErrorKind::NoProcess);
        let err = p.finish().unwrap_err().to_string();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(
            lines,
            [
                "/x/pm3.toml:1:1: no process defined (add a table like `[web]` with a `command`)",
                "/x/pm3.toml:2:1: `command` must not be empty",
                "/x/pm3.toml:1:1: no process defines `env_prod` (asked for with `--env prod`)",
            ]
        );
    }

    #[test]
    fn show_escapes_and_cuts() {
        assert_eq!(show("a\nb"), "a\\nb");
        assert_eq!(show(&"x".repeat(100)).chars().count(), 81);
    }
}
