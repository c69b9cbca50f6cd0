//! Config errors: what went wrong ([`ErrorKind`]), where ([`Located`]), and the collector
//! ([`Problems`]) that the parse, validate and resolve steps push into so that one load reports
//! every problem it can find, sorted in file order.
//!
//! Every message is lowercase and names the offending key or value in backticks. A problem also
//! keeps the source lines it is about ([`Excerpt`]) and, for a misspelt name, the name it
//! probably meant ([`closest`]), for the snippet `render` shows. Its one-line form (`Display`)
//! is `PATH:LINE:COL: message` (1-based line and column, in characters).

use std::cell::{Cell, OnceCell};
use std::collections::HashSet;
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
    #[error("cannot read config file: {0}")]
    Unreadable(String),
}

/// A 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// The source lines a problem is about, and the span of the offending key or value in them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excerpt {
    /// The line number of the first line.
    pub first_line: usize,
    pub lines: Lines,
    /// Byte offsets within the lines.
    pub span: Range<usize>,
}

/// Whole lines of a file, without their final line break.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lines {
    /// A range of the config file's text (kept once, in the [`ConfigError`]).
    Config(Range<usize>),
    /// Lines of another file (an env file).
    Text(String),
}

/// A span covering more lines than this is cut to its first line.
const MAX_SPAN_LINES: usize = 12;

/// Notes shown with one problem, at most.
const MAX_NOTES: usize = 8;

/// Line starts of a text, computed once when its first problem is recorded.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1));
        LineIndex { starts }
    }

    /// The 0-based line that byte `offset` is on.
    fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset).saturating_sub(1)
    }

    /// The range of 0-based line `line`, without its line break (`\n` or `\r\n`).
    fn line(&self, text: &str, line: usize) -> Range<usize> {
        let start = self.starts[line];
        let mut end = self.starts.get(line + 1).map_or(text.len(), |&next| next - 1);
        if end > start && text.as_bytes()[end - 1] == b'\r' {
            end -= 1;
        }
        start..end
    }
}

/// `offset` clamped to `text` and moved back to the start of the character it falls in.
fn floor_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// A problem with the file it is in and, when it has one, its position there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Located {
    pub path: PathBuf,
    pub pos: Option<Pos>,
    #[source]
    pub kind: ErrorKind,
    /// What to do about it, shown under the span: "did you mean `restart`?".
    pub help: Option<String>,
    /// The source lines to show, when the problem is at a key or value of a file.
    pub excerpt: Option<Excerpt>,
    /// What to say under the span when there is no `help` (the first link of a dependency
    /// cycle); only the snippet shows it.
    pub label: Option<String>,
    /// Other places of the same file that take part (the other links of a dependency cycle),
    /// each with what to say there.
    pub notes: Vec<(Excerpt, String)>,
}

impl Located {
    /// A problem at `pos` of `path`, with no source lines to show.
    pub fn new(path: &Path, pos: Option<Pos>, kind: ErrorKind) -> Located {
        Located {
            path: path.to_path_buf(),
            pos,
            kind,
            help: None,
            excerpt: None,
            label: None,
            notes: Vec::new(),
        }
    }
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(Pos { line, col }) => {
                write!(f, "{}:{line}:{col}: {}", self.path.display(), self.kind)?;
            }
            None => write!(f, "{}: {}", self.path.display(), self.kind)?,
        }
        match &self.help {
            Some(help) => write!(f, " ({help})"),
            None => Ok(()),
        }
    }
}

/// The candidate `typed` was most probably meant to be, if one is close enough to be a typo:
/// at most a third of the longer name's characters (and at least one) edited, and not every
/// character of `typed`; swapping two neighbours (`restrat`) is one edit. The first candidate
/// wins a tie. Names longer than 64 characters get
/// no suggestion (no key or process name is that long), which also bounds the cost.
pub fn closest<'a>(typed: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    const LONGEST: usize = 64;
    let len = typed.chars().count();
    if len > LONGEST {
        return None;
    }
    candidates
        .into_iter()
        .filter_map(|c| {
            let c_len = c.chars().count();
            let limit = (len.max(c_len) / 3).max(1);
            if c == typed || c_len > LONGEST || len.abs_diff(c_len) > limit {
                return None;
            }
            let d = strsim::osa_distance(typed, c);
            (d <= limit && d < len).then_some((d, c))
        })
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// The help text for a suggestion.
pub fn did_you_mean(name: &str) -> String {
    format!("did you mean `{}`?", show(name))
}

/// Collects the problems of one config file, keyed by where they are in it.
pub struct Problems<'a> {
    path: &'a Path,
    text: &'a str,
    /// (byte offset in the config file used for ordering, problem)
    list: Vec<(usize, Located)>,
    /// The ordering offsets in `list`, for [`Problems::has_at`].
    offsets: HashSet<usize>,
    index: OnceCell<LineIndex>,
    /// (line start, offset, column) of the last position computed: problems come mostly in file
    /// order, so counting the characters of a long line starts where the last count stopped.
    last: Cell<(usize, usize, usize)>,
}

impl<'a> Problems<'a> {
    pub fn new(path: &'a Path, text: &'a str) -> Problems<'a> {
        Problems {
            path,
            text,
            list: Vec::new(),
            offsets: HashSet::new(),
            index: OnceCell::new(),
            last: Cell::new((0, 0, 1)),
        }
    }

    /// The text of the config file.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// Records `kind` at `span` of the config file.
    pub fn at(&mut self, span: Range<usize>, kind: ErrorKind) {
        self.hint(span, kind, None);
    }

    /// Records `kind` at `span` of the config file, with a help text (a suggestion).
    pub fn hint(&mut self, span: Range<usize>, kind: ErrorKind, help: Option<String>) {
        let (pos, excerpt) = self.excerpt(span.clone());
        let mut located = Located::new(self.path, Some(pos), kind);
        located.help = help;
        located.excerpt = Some(excerpt);
        self.push(span.start, located);
    }

    /// Records `kind` at `span` of the config file, with `label` under it and notes at other
    /// spans (the first [`MAX_NOTES`]), all shown only in the snippet.
    pub fn with_notes(
        &mut self,
        span: Range<usize>,
        kind: ErrorKind,
        label: String,
        notes: Vec<(Range<usize>, String)>,
    ) {
        let (pos, excerpt) = self.excerpt(span.clone());
        let mut located = Located::new(self.path, Some(pos), kind);
        located.excerpt = Some(excerpt);
        located.label = Some(label);
        located.notes =
            notes.into_iter().take(MAX_NOTES).map(|(span, note)| (self.excerpt(span).1, note)).collect();
        self.push(span.start, located);
    }

    /// Records a problem located in another file (an env file), ordered as if it were at
    /// `order` (the offset of the config value that pulled that file in).
    pub fn elsewhere(&mut self, order: usize, located: Located) {
        self.push(order, located);
    }

    /// Records `kind` at line 1, column 1, after every other problem (for problems that belong to
    /// no key, like an unknown `--env` name), with no source lines to show.
    pub fn at_end(&mut self, kind: ErrorKind, help: Option<String>) {
        let mut located = Located::new(self.path, Some(Pos { line: 1, col: 1 }), kind);
        located.help = help;
        self.push(usize::MAX, located);
    }

    fn push(&mut self, order: usize, located: Located) {
        self.offsets.insert(order);
        self.list.push((order, located));
    }

    /// True when a problem is already recorded at byte `offset` (one problem per location).
    pub fn has_at(&self, offset: usize) -> bool {
        self.offsets.contains(&offset)
    }

    /// The position of `span` (clamped to the text, to character boundaries, and to the end of
    /// its line) and the lines it covers (the first [`MAX_SPAN_LINES`] of them at most). The
    /// position is that of the span's start in those lines, as the snippet shows it.
    fn excerpt(&self, span: Range<usize>) -> (Pos, Excerpt) {
        let text = self.text;
        let index = self.index.get_or_init(|| LineIndex::new(text));
        let start = floor_boundary(text, span.start);
        let end = floor_boundary(text, span.end.max(start));
        let first = index.line_of(start);
        // The line of the span's last byte: a span that ends with its line's `\n` does not pull
        // in the next line.
        let mut last = if end > start { index.line_of(end - 1) } else { first };
        let first_range = index.line(text, first);
        let start = start.min(first_range.end);
        let mut end = end.max(start);
        if last - first >= MAX_SPAN_LINES {
            last = first;
            end = first_range.end;
        }
        let lines = first_range.start..index.line(text, last).end;
        let end = end.min(lines.end);
        let pos = Pos { line: first + 1, col: self.column(first_range.start, start) };
        (
            pos,
            Excerpt {
                first_line: first + 1,
                span: start - lines.start..end - lines.start,
                lines: Lines::Config(lines),
            },
        )
    }

    /// The 1-based column (in characters) of `offset` on the line starting at `line_start`.
    fn column(&self, line_start: usize, offset: usize) -> usize {
        let (last_start, last_offset, last_col) = self.last.get();
        let (from, col) = if last_start == line_start && last_offset <= offset {
            (last_offset, last_col)
        } else {
            (line_start, 1)
        };
        let col = col + self.text[from..offset].chars().count();
        self.last.set((line_start, offset, col));
        col
    }

    /// `Ok(())` when nothing was recorded, else every problem in file order.
    pub fn finish(mut self) -> Result<(), ConfigError> {
        if self.list.is_empty() {
            return Ok(());
        }
        self.list.sort_by_key(|(order, _)| *order);
        let problems = self.list.into_iter().map(|(_, l)| l).collect();
        Err(ConfigError { path: self.path.to_path_buf(), text: self.text.to_string(), problems })
    }
}

pub use crate::spec::show;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_in_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        let p = Problems::new(Path::new("/x/pm3.toml"), text);
        let pos = |offset| p.excerpt(offset..offset).0;
        assert_eq!(pos(0), Pos { line: 1, col: 1 });
        assert_eq!(pos(6), Pos { line: 2, col: 1 });
        // `=` after the two-byte `é`, then back to an earlier column of the same line.
        assert_eq!(pos(10), Pos { line: 2, col: 4 });
        assert_eq!(pos(7), Pos { line: 2, col: 2 });
        // Past the end and inside a character are clamped.
        assert_eq!(pos(999), Pos { line: 3, col: 1 });
        assert_eq!(pos(8), Pos { line: 2, col: 2 });
    }

    /// The lines a span covers, and the span in them.
    #[test]
    fn excerpts_cover_whole_lines() {
        let text = "[a]\r\nx = [\n  1,\n]\ny = 2\n";
        let p = Problems::new(Path::new("/x/pm3.toml"), text);
        let excerpt = |span: Range<usize>| {
            let (pos, e) = p.excerpt(span);
            let Lines::Config(lines) = e.lines else { panic!("config lines") };
            (pos.line, pos.col, &text[lines.clone()], &text[lines][e.span])
        };
        // `\r\n` is not part of the line, even for a span on the `\r` or the `\n`.
        assert_eq!(excerpt(0..3), (1, 1, "[a]", "[a]"));
        assert_eq!(excerpt(3..5), (1, 4, "[a]", ""));
        assert_eq!(excerpt(4..5), (1, 4, "[a]", ""));
        // A value over three lines; one that ends with its line break stays on its line.
        assert_eq!(excerpt(9..17), (2, 5, "x = [\n  1,\n]", "[\n  1,\n]"));
        assert_eq!(excerpt(18..24), (5, 1, "y = 2", "y = 2"));
        // The end of the text.
        assert_eq!(excerpt(24..24), (6, 1, "", ""));
        // A span over too many lines is cut to its first line.
        let long = format!("k = [{}]\n", "1,\n".repeat(MAX_SPAN_LINES + 1));
        let p = Problems::new(Path::new("/x/pm3.toml"), &long);
        let (pos, e) = p.excerpt(4..long.len() - 1);
        assert_eq!((pos, e.lines, e.span), (Pos { line: 1, col: 5 }, Lines::Config(0..7), 4..7));
    }

    #[test]
    fn problems_sort_in_file_order() {
        let path = Path::new("/x/pm3.toml");
        let mut p = Problems::new(path, "a\nb\n");
        p.at_end(ErrorKind::UnknownEnv("prod".into()), Some(did_you_mean("--env production")));
        p.at(2..3, ErrorKind::Empty("command".into()));
        p.at(0..1, ErrorKind::NoProcess);
        let err = p.finish().unwrap_err().to_string();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(
            lines,
            [
                "/x/pm3.toml:1:1: no process defined (add a table like `[web]` with a `command`)",
                "/x/pm3.toml:2:1: `command` must not be empty",
                "/x/pm3.toml:1:1: no process defines `env_prod` (asked for with `--env prod`) \
                 (did you mean `--env production`?)",
            ]
        );
    }

    #[test]
    fn suggestions_only_for_close_names() {
        let keys = ["restart", "restart_delay", "command", "env", "env_file", "instances"];
        let best = |typed| closest(typed, keys);
        assert_eq!(best("restrat"), Some("restart"));
        assert_eq!(best("comand"), Some("command"));
        assert_eq!(best("Command"), Some("command"));
        assert_eq!(best("instance"), Some("instances"));
        assert_eq!(best("env-file"), Some("env_file"));
        assert_eq!(best("restart_dealy"), Some("restart_delay"));
        assert_eq!(closest("wbe", ["worker", "web"]), Some("web"));
        // Too far, the name itself, or every character replaced.
        assert_eq!(best("cmd"), None);
        assert_eq!(best("port"), None);
        assert_eq!(best("restart"), None);
        assert_eq!(closest("a", ["b"]), None);
        assert_eq!(closest("dc", ["db"]), Some("db"));
        // Ties go to the first candidate; absurd lengths get nothing.
        assert_eq!(closest("ab", ["aa", "bb"]), Some("aa"));
        assert_eq!(closest(&"x".repeat(65), ["x".repeat(65).as_str()]), None);
    }

    #[test]
    fn show_escapes_and_cuts() {
        assert_eq!(show("a\nb"), "a\\nb");
        assert_eq!(show(&"x".repeat(100)).chars().count(), 81);
    }
}
