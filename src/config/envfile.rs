//! Reading one `env_file`: `KEY=VALUE` lines, `#` comments, optional quotes, `export ` prefix,
//! parsed by `dotenvy`, in file order.
//!
//! Variables follow python-dotenv's convention, which is also pm3's one expansion syntax: in an
//! unquoted or double-quoted value, `${VAR}` and `${VAR:-default}` expand; a single-quoted value
//! is literal; a bare `$VAR` (or `$`, or `\$` in double quotes) is a literal `$`.
//!
//! Expansion happens later, per instance, against the final environment (so
//! `URL=http://localhost:${PORT}` follows `increment_var`), not here and not by `dotenvy`, which
//! would use the pm3 command's own variables. So each value comes out written in pm3's syntax
//! ([`crate::instances::expand`]): an expanding `${` as it is, every literal `$` as `$$`.

use std::cell::Cell;
use std::io::{self, Read};
use std::path::Path;

/// Why an env file could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvFileError {
    Missing,
    Unreadable(String),
    /// A line `dotenvy` cannot parse: its 1-based line number and its text.
    Syntax {
        line: usize,
        text: String,
    },
}

/// One variable of an env file: its name, its value in pm3's expansion syntax, and its 1-based
/// line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// Reads the env file at `path`.
pub fn read(path: &Path) -> Result<Vec<Entry>, EnvFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(EnvFileError::Missing),
        Err(e) => Err(EnvFileError::Unreadable(e.to_string())),
    }
}

/// Parses the text of an env file into its variables, in order (a repeated key appears twice).
pub fn parse(text: &str) -> Result<Vec<Entry>, EnvFileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let escaped = escape_dollars(text);
    let pos = Cell::new(0);
    let mut iter = dotenvy::from_read_iter(LineReader { text: escaped.as_bytes(), pos: &pos });
    let mut vars = Vec::new();
    loop {
        // The reader never hands out more than one line at a time, so this is where the next
        // logical line (or the blank and comment lines before it) starts.
        let start = pos.get();
        match iter.next() {
            None => return Ok(vars),
            Some(Ok((key, value))) => vars.push(Entry { key, value, line: entry_line(&escaped, start) }),
            Some(Err(_)) => {
                let line = entry_line(&escaped, start);
                let line_text = text.lines().nth(line - 1).unwrap_or("").trim_end();
                return Err(EnvFileError::Syntax { line, text: line_text.to_string() });
            }
        }
    }
}

/// The 1-based number of the first line at or after byte `start` of `escaped` that is neither
/// blank nor a comment: the line of the entry `dotenvy` read (or failed on) from there. Escaping
/// adds no newline, so it is also the line number in the original text.
fn entry_line(escaped: &str, start: usize) -> usize {
    let (before, rest) = escaped.split_at_checked(start).unwrap_or((escaped, ""));
    let mut line = before.matches('\n').count() + 1;
    for l in rest.split('\n') {
        let t = l.trim();
        if !t.is_empty() && !t.starts_with('#') {
            break;
        }
        line += 1;
    }
    line
}

/// Hands out its text one line at a time, so the `BufReader` inside `dotenvy` never reads past
/// the line it is parsing and `pos` tells where the next line starts.
struct LineReader<'a> {
    text: &'a [u8],
    pos: &'a Cell<usize>,
}

impl Read for LineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let start = self.pos.get().min(self.text.len());
        let rest = &self.text[start..];
        let line_len = rest.iter().position(|&b| b == b'\n').map_or(rest.len(), |i| i + 1);
        let n = line_len.min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos.set(start + n);
        Ok(n)
    }
}

/// Rewrites every `$` of the values for `dotenvy`, which reads `\$` back as a plain `$` and
/// leaves single-quoted text alone: an expanding `${` (unquoted or double-quoted) becomes `\${`,
/// any other `$` (a bare `$VAR`, an escaped `\$`) becomes `\$\$`, and one in single quotes
/// `$$`, so that `dotenvy` expands nothing and hands back pm3's syntax.
fn escape_dollars(text: &str) -> String {
    #[derive(PartialEq)]
    enum State {
        Plain,
        Single,
        Double,
        Comment,
    }
    let mut out = String::with_capacity(text.len());
    let mut state = State::Plain;
    let mut escaped = false;
    // A `#` starts a comment at the start of a line, after whitespace, or right after the `=`.
    let mut comment_may_start = true;
    let mut seen_equal = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let expanding = c == '$' && chars.peek() == Some(&'{');
        match state {
            State::Comment => {
                out.push(c);
                if c == '\n' {
                    state = State::Plain;
                    comment_may_start = true;
                    seen_equal = false;
                }
            }
            State::Single => {
                out.push(c);
                if c == '$' {
                    out.push('$');
                }
                if c == '\'' {
                    state = State::Plain;
                    comment_may_start = false;
                }
            }
            State::Double => {
                if escaped {
                    escaped = false;
                    // `\$` is a literal `$`: the `\` is written already.
                    out.push(c);
                    if c == '$' {
                        out.push_str("\\$");
                    }
                } else if c == '$' {
                    out.push_str(if expanding { "\\$" } else { "\\$\\$" });
                } else {
                    out.push(c);
                    match c {
                        '\\' => escaped = true,
                        '"' => {
                            state = State::Plain;
                            comment_may_start = false;
                        }
                        _ => {}
                    }
                }
            }
            State::Plain => {
                if escaped {
                    escaped = false;
                    out.push(c);
                    if c == '$' {
                        out.push_str("\\$");
                    }
                    comment_may_start = c == '\n';
                    if c == '\n' {
                        seen_equal = false;
                    }
                    continue;
                }
                match c {
                    '$' => {
                        out.push_str(if expanding { "\\$" } else { "\\$\\$" });
                        comment_may_start = false;
                    }
                    '#' if comment_may_start => {
                        out.push(c);
                        state = State::Comment;
                    }
                    _ => {
                        out.push(c);
                        match c {
                            '\\' => escaped = true,
                            '\'' => state = State::Single,
                            '"' => state = State::Double,
                            '\n' => {
                                comment_may_start = true;
                                seen_equal = false;
                            }
                            '=' if !seen_equal => {
                                seen_equal = true;
                                comment_may_start = true;
                            }
                            c if c.is_whitespace() => comment_may_start = true,
                            _ => comment_may_start = false,
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The entries of `text`: name, value in pm3's syntax, line.
    fn entries(text: &str) -> Vec<(String, String, usize)> {
        match parse(text) {
            Ok(v) => v.into_iter().map(|e| (e.key, e.value, e.line)).collect(),
            Err(e) => panic!("{e:?} for:\n{text}"),
        }
    }

    /// The values of `text` once expanded, with `A=1` and no other variable defined.
    fn expanded(text: &str) -> Vec<(String, String)> {
        use crate::instances::{Found, expand};
        entries(text)
            .into_iter()
            .map(|(k, v, _)| {
                let mut lookup = |n: &str| if n == "A" { Found::Value("1".into()) } else { Found::Undefined };
                (k, expand(&v, &mut lookup, &mut Vec::new()))
            })
            .collect()
    }

    #[test]
    fn dotenv_syntax() {
        let text = "\u{feff}# a comment with don't and $HOME\n\
                    export A=1\n\
                    B=\"x ${A} $HOME \\$ y\" # it's a comment\n\
                    C='single ${A}'\n\
                    D=plain${A} # trailing comment's\n\
                    E=\"multi\n\
                    line $X\"\n\
                    \n\
                    F=\n\
                    G=#not a value\n\
                    H = spaced\n\
                    A=2\n";
        let want = [
            ("A", "1", 2),
            ("B", "x ${A} $$HOME $$ y", 3),
            ("C", "single $${A}", 4),
            ("D", "plain${A}", 5),
            ("E", "multi\nline $$X", 6),
            ("F", "", 9),
            ("G", "", 10),
            ("H", "spaced", 11),
            ("A", "2", 12),
        ];
        let got = entries(text);
        let got: Vec<(&str, &str, usize)> =
            got.iter().map(|(k, v, l)| (k.as_str(), v.as_str(), *l)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn braces_expand_unless_single_quoted_and_bare_dollars_are_literal() {
        let text = "U=${A}-${B:-dflt}-$A-$$-${NOPE:-}\n\
                    D=\"${A}-${B:-dflt}-$A-\\${A}-\\\\${A}\"\n\
                    S='${A}-${B:-dflt}-$A-$$'\n\
                    P=\\${A}\n";
        let want = [
            ("U", "1-dflt-$A-$$-"),
            ("D", "1-dflt-$A-${A}-\\1"),
            ("S", "${A}-${B:-dflt}-$A-$$"),
            ("P", "${A}"),
        ];
        let got = expanded(text);
        let got: Vec<(&str, &str)> = got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_process_environment_does_not_leak_in() {
        // `dotenvy` alone would substitute the pm3 command's own `PATH` here.
        assert_eq!(entries("P=$PATH:${PATH}"), [("P".to_string(), "$$PATH:${PATH}".to_string(), 1)]);
    }

    #[test]
    fn syntax_errors_give_the_line() {
        assert_eq!(
            parse("A=1\n# c\n\n  \nBAD LINE\nC=3\n"),
            Err(EnvFileError::Syntax { line: 5, text: "BAD LINE".into() })
        );
        assert_eq!(parse("A=1\nB=\"open\n"), Err(EnvFileError::Syntax { line: 2, text: "B=\"open".into() }));
        assert_eq!(
            parse("A=\"two\nlines\"\nB=a b\n"),
            Err(EnvFileError::Syntax { line: 3, text: "B=a b".into() })
        );
    }

    #[test]
    fn missing_and_unreadable_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read(&dir.path().join("nope.env")), Err(EnvFileError::Missing));
        assert!(matches!(read(dir.path()), Err(EnvFileError::Unreadable(_))));
        std::fs::write(dir.path().join(".env"), "K=v\n").expect("write");
        assert_eq!(
            read(&dir.path().join(".env")),
            Ok(vec![Entry { key: "K".into(), value: "v".into(), line: 1 }])
        );
    }
}
