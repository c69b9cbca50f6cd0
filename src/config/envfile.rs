//! Reading one `env_file`: `KEY=VALUE` lines, `#` comments, optional quotes, `export ` prefix,
//! parsed by `dotenvy`, in file order.
//!
//! Values are kept as written: `dotenvy` would replace `$VAR` and `${VAR}` with the variables of
//! the pm3 command itself, but pm3 expands `${VAR}` later, per instance, against the final
//! environment (so `URL=http://localhost:${PORT}` follows `increment_var`). So every `$` that
//! `dotenvy` would expand is escaped before it sees the text.

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

/// Reads the env file at `path`.
pub fn read(path: &Path) -> Result<Vec<(String, String)>, EnvFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(EnvFileError::Missing),
        Err(e) => Err(EnvFileError::Unreadable(e.to_string())),
    }
}

/// Parses the text of an env file into its variables, in order (a repeated key appears twice).
pub fn parse(text: &str) -> Result<Vec<(String, String)>, EnvFileError> {
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
            Some(Ok(pair)) => vars.push(pair),
            Some(Err(_)) => {
                let line = failing_line(&escaped, start);
                let line_text = text.lines().nth(line - 1).unwrap_or("").trim_end();
                return Err(EnvFileError::Syntax { line, text: line_text.to_string() });
            }
        }
    }
}

/// The 1-based number of the first line at or after byte `start` of `escaped` that is neither
/// blank nor a comment: the line `dotenvy` failed on. Escaping adds no newline, so it is also
/// the line number in the original text.
fn failing_line(escaped: &str, start: usize) -> usize {
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

/// Escapes every `$` that `dotenvy` would expand (outside single quotes and comments) as `\$`,
/// which it reads back as a plain `$`.
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
    for c in text.chars() {
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
                if c == '\'' {
                    state = State::Plain;
                    comment_may_start = false;
                }
            }
            State::Double => {
                if escaped {
                    escaped = false;
                    out.push(c);
                } else if c == '$' {
                    out.push_str("\\$");
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
                    comment_may_start = c == '\n';
                    if c == '\n' {
                        seen_equal = false;
                    }
                    continue;
                }
                match c {
                    '$' => {
                        out.push_str("\\$");
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

    fn pairs(text: &str) -> Vec<(String, String)> {
        match parse(text) {
            Ok(v) => v,
            Err(e) => panic!("{e:?} for:\n{text}"),
        }
    }

    #[test]
    fn dotenv_syntax_and_no_expansion() {
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
            ("A", "1"),
            ("B", "x ${A} $HOME $ y"),
            ("C", "single ${A}"),
            ("D", "plain${A}"),
            ("E", "multi\nline $X"),
            ("F", ""),
            ("G", ""),
            ("H", "spaced"),
            ("A", "2"),
        ];
        let got = pairs(text);
        let got: Vec<(&str, &str)> = got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_process_environment_does_not_leak_in() {
        // `dotenvy` alone would substitute the pm3 command's own `PATH` here.
        assert_eq!(pairs("P=$PATH:${PATH}"), [("P".to_string(), "$PATH:${PATH}".to_string())]);
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
        assert_eq!(read(&dir.path().join(".env")), Ok(vec![("K".into(), "v".into())]));
    }
}
