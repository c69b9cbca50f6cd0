//! Reading one `env_file`: `KEY=VALUE` entries in file order, in python-dotenv's format.
//!
//! - A key is a letter or `_` followed by letters, digits, `_` or `.`; it may be preceded by
//!   `export ` and surrounded by spaces (`KEY = value`).
//! - Blank lines and lines starting with `#` are skipped; after an unquoted value, or after the
//!   `=` of an empty one, whitespace then `#` starts a comment (`K=v#w` is the value `v#w`).
//! - A value is made of unquoted, single-quoted and double-quoted parts (`K=a"b c"'d'` is
//!   `ab cd`). Whitespace ends an unquoted part: only a comment may follow it.
//! - Single quotes are literal and may span lines. Double quotes may span lines and take the
//!   escapes `\n`, `\t`, `\"`, `\'`, `\\`, `\$` and `\ ` (a space), which unquoted text takes too;
//!   any other escape is an error.
//!
//! Variables follow python-dotenv's convention, which is also pm3's one expansion syntax: in an
//! unquoted or double-quoted value, `${VAR}` and `${VAR:-default}` expand; a single-quoted value
//! is literal; a bare `$VAR` (or `$`, or `\$`) is a literal `$`.
//!
//! Expansion happens later, per instance, against the final environment (so
//! `URL=http://localhost:${PORT}` follows `increment_var`), not here (where it could only use
//! the pm3 command's own variables). So each value comes out written in pm3's syntax
//! ([`crate::instances::expand`]): an expanding `${` as it is, every literal `$` as `$$`.

use std::io;
use std::iter::Peekable;
use std::path::Path;
use std::str::Chars;

/// Why an env file could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvFileError {
    Missing,
    Unreadable(String),
    /// An entry that is not `KEY=VALUE` (or a quote left open): the 1-based line where the
    /// entry starts and the text of that line.
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
    let mut p = Parser { chars: text.chars().peekable(), line: 1 };
    let mut vars = Vec::new();
    loop {
        p.skip(char::is_whitespace);
        let line = p.line;
        match p.chars.peek() {
            None => return Ok(vars),
            Some('#') => p.skip(|c| c != '\n'),
            Some(_) => match p.entry() {
                Some((key, value)) => vars.push(Entry { key, value, line }),
                None => {
                    let text = text.lines().nth(line - 1).unwrap_or("").trim_end().to_string();
                    return Err(EnvFileError::Syntax { line, text });
                }
            },
        }
    }
}

struct Parser<'a> {
    chars: Peekable<Chars<'a>>,
    /// The 1-based line of the next character.
    line: usize,
}

/// Whitespace within a line.
fn blank(c: char) -> bool {
    c.is_whitespace() && c != '\n'
}

impl Parser<'_> {
    fn next(&mut self) -> Option<char> {
        let c = self.chars.next();
        if c == Some('\n') {
            self.line += 1;
        }
        c
    }

    fn eat(&mut self, want: char) -> bool {
        let yes = self.chars.peek() == Some(&want);
        if yes {
            self.next();
        }
        yes
    }

    fn skip(&mut self, while_: impl Fn(char) -> bool) {
        while self.chars.peek().is_some_and(|&c| while_(c)) {
            self.next();
        }
    }

    fn key(&mut self) -> Option<String> {
        let first = self.chars.peek().copied().filter(|&c| c.is_ascii_alphabetic() || c == '_')?;
        let mut key = String::from(first);
        self.next();
        while let Some(&c) = self.chars.peek().filter(|&&c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            key.push(c);
            self.next();
        }
        Some(key)
    }

    /// One `KEY=VALUE` entry, up to the end of its (last) line; `None` if it is not one.
    fn entry(&mut self) -> Option<(String, String)> {
        let mut key = self.key()?;
        self.skip(blank);
        // `export` is a prefix, unless it is the key itself (`export=1`).
        if key == "export" && self.chars.peek() != Some(&'=') {
            key = self.key()?;
            self.skip(blank);
        }
        if !self.eat('=') {
            return None;
        }
        self.skip(blank);
        if self.chars.peek() == Some(&'#') {
            self.skip(|c| c != '\n');
        }
        self.value().map(|v| (key, v))
    }

    /// The value after the `=`, in pm3's syntax, and its comment if any.
    fn value(&mut self) -> Option<String> {
        let mut out = String::new();
        while let Some(c) = self.next() {
            match c {
                '\n' => break,
                c if blank(c) => {
                    // Only a comment may follow.
                    self.skip(blank);
                    match self.next() {
                        None | Some('\n') => break,
                        Some('#') => {
                            self.skip(|c| c != '\n');
                            break;
                        }
                        Some(_) => return None,
                    }
                }
                '\'' => loop {
                    match self.next()? {
                        '\'' => break,
                        '$' => out.push_str("$$"),
                        c => out.push(c),
                    }
                },
                '"' => loop {
                    match self.next()? {
                        '"' => break,
                        '\\' => self.escape(&mut out)?,
                        '$' => self.dollar(&mut out),
                        c => out.push(c),
                    }
                },
                // A `\` with nothing after it on the line is dropped.
                '\\' if self.chars.clone().take_while(|&c| c != '\n').all(blank) => {
                    self.skip(blank);
                    self.next();
                    break;
                }
                '\\' => self.escape(&mut out)?,
                '$' => self.dollar(&mut out),
                c => out.push(c),
            }
        }
        Some(out)
    }

    /// After a `\`.
    fn escape(&mut self, out: &mut String) -> Option<()> {
        match self.next()? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            '$' => out.push_str("$$"),
            c @ ('\\' | '\'' | '"' | ' ') => out.push(c),
            _ => return None,
        }
        Some(())
    }

    /// After an unquoted or double-quoted `$`: `${` expands later, any other `$` is literal.
    fn dollar(&mut self, out: &mut String) {
        out.push_str(if self.chars.peek() == Some(&'{') { "$" } else { "$$" });
    }
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
        // Expanding while reading would substitute the pm3 command's own `PATH` here.
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

    #[test]
    fn quotes_escapes_and_comments() {
        let text = "export   K1 = a\"b c\"'d $e'\n\
                    export=1\n\
                    K2=v#w\n\
                    K3=\"tab\\there\\nnew \\\"q\\\" \\' \\\\\"\n\
                    K4='multi\n\
                    line' # after\n\
                    K.5=esc\\ aped\\\n\
                    K6=\r\n\
                    K7=crlf\r\n\
                    \t# indented comment\n\
                    K8=last";
        let want = [
            ("K1", "ab cd $$e", 1),
            ("export", "1", 2),
            ("K2", "v#w", 3),
            ("K3", "tab\there\nnew \"q\" ' \\", 4),
            ("K4", "multi\nline", 5),
            ("K.5", "esc aped", 7),
            ("K6", "", 8),
            ("K7", "crlf", 9),
            ("K8", "last", 11),
        ];
        let got = entries(text);
        let got: Vec<(&str, &str, usize)> =
            got.iter().map(|(k, v, l)| (k.as_str(), v.as_str(), *l)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn more_syntax_errors() {
        let bad = |text: &str, line: usize, at: &str| {
            assert_eq!(parse(text), Err(EnvFileError::Syntax { line, text: at.into() }), "{text:?}");
        };
        bad("A=1\nB='open\nstill\n", 2, "B='open");
        bad("A=\"bad \\q\"\n", 1, "A=\"bad \\q\"");
        bad("A=1\n1A=2\n", 2, "1A=2");
        bad("A=1\nexport B\n", 2, "export B");
        bad("A=1\nA B=1\n", 2, "A B=1");
        bad("A=x y # c\n", 1, "A=x y # c");
        bad("A=\"x\nB=1\n", 1, "A=\"x");
    }
}
