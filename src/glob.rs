//! The globs of `watch_ignore`: a small matcher with the syntax and meaning these patterns had
//! when they were compiled to regular expressions (globset's defaults), without a regex engine.
//!
//! Syntax: `?` is one character, `*` any run of characters (a `/` included), `**` as a whole path
//! component any number of components (`**/x`, `x/**`, `a/**/b`; `**` alone matches everything),
//! `[abc]`, `[a-z]`, `[!x]` or `[^x]` one character of (or not of) a class (`]` first and `-`
//! first or last are literal), `{a,b}` one of the alternatives (nesting allowed, empty
//! alternatives dropped), `\` makes the next character literal. A pattern matches a whole string.
//!
//! Patterns are compiled into one non-deterministic automaton, which is run over the string a
//! character at a time keeping the set of live states: time is proportional to the length of
//! the string times the size of the patterns, whatever the pattern (`*a*a*a*b` does not
//! backtrack).

use std::fmt;
use std::path::Path;

/// Why a pattern is not a glob. The messages are the ones globset gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    UnclosedClass,
    InvalidRange(char, char),
    UnopenedAlternates,
    UnclosedAlternates,
    DanglingEscape,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnclosedClass => f.write_str("unclosed character class; missing ']'"),
            Error::InvalidRange(a, b) => write!(f, "invalid range; '{a}' > '{b}'"),
            Error::UnopenedAlternates => {
                f.write_str("unopened alternate group; missing '{' (maybe escape '}' with '[}]'?)")
            }
            Error::UnclosedAlternates => {
                f.write_str("unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)")
            }
            Error::DanglingEscape => f.write_str("dangling '\\'"),
        }
    }
}

impl std::error::Error for Error {}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Literal(char),
    /// `?`
    Any,
    /// `*`
    ZeroOrMore,
    /// `**/` at the start: nothing, or anything ending with `/`.
    RecursivePrefix,
    /// `/**` at the end: `/` then anything.
    RecursiveSuffix,
    /// `/**/` inside: `/`, or `/` anything `/`.
    RecursiveZeroOrMore,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    Alternates(Vec<Vec<Token>>),
}

/// Checks that `pattern` is a glob.
pub fn check(pattern: &str) -> Result<(), Error> {
    parse(pattern).map(|_| ())
}

fn parse(pattern: &str) -> Result<Vec<Token>, Error> {
    let mut p = Parser {
        chars: pattern.chars().peekable(),
        prev: None,
        cur: None,
        stack: Vec::new(),
        branches: vec![Vec::new()],
    };
    p.parse()?;
    if p.branches.len() > 1 {
        return Err(Error::UnclosedAlternates);
    }
    Ok(p.branches.pop().unwrap_or_default())
}

struct Parser<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    prev: Option<char>,
    cur: Option<char>,
    /// For each open `{`, the index in `branches` of its first alternative.
    stack: Vec<usize>,
    /// The sequences being built: the top level, then the alternatives of the open groups.
    branches: Vec<Vec<Token>>,
}

impl Parser<'_> {
    fn parse(&mut self) -> Result<(), Error> {
        while let Some(c) = self.bump() {
            match c {
                '?' => self.push(Token::Any)?,
                '*' => self.star()?,
                '[' => self.class()?,
                '{' => {
                    self.stack.push(self.branches.len());
                    self.branches.push(Vec::new());
                }
                '}' => {
                    let start = self.stack.pop().ok_or(Error::UnopenedAlternates)?;
                    let alternatives = self.branches.split_off(start);
                    self.push(Token::Alternates(alternatives))?;
                }
                ',' if !self.stack.is_empty() => self.branches.push(Vec::new()),
                '\\' => {
                    let c = self.bump().ok_or(Error::DanglingEscape)?;
                    self.push(Token::Literal(c))?;
                }
                c => self.push(Token::Literal(c))?,
            }
        }
        Ok(())
    }

    fn bump(&mut self) -> Option<char> {
        self.prev = self.cur;
        self.cur = self.chars.next();
        self.cur
    }

    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn last(&mut self) -> Result<&mut Vec<Token>, Error> {
        self.branches.last_mut().ok_or(Error::UnopenedAlternates)
    }

    fn push(&mut self, t: Token) -> Result<(), Error> {
        self.last()?.push(t);
        Ok(())
    }

    /// After a `*`: a `*`, or a `**` that is a whole path component.
    fn star(&mut self) -> Result<(), Error> {
        let prev = self.prev;
        if self.peek() != Some('*') {
            return self.push(Token::ZeroOrMore);
        }
        self.bump();
        let two_stars = |p: &mut Self| {
            p.push(Token::ZeroOrMore)?;
            p.push(Token::ZeroOrMore)
        };
        if self.last()?.is_empty() {
            return match self.peek() {
                None => self.push(Token::RecursivePrefix),
                Some('/') => {
                    self.bump();
                    self.push(Token::RecursivePrefix)
                }
                Some(_) => two_stars(self),
            };
        }
        if prev != Some('/') && (self.branches.len() <= 1 || (prev != Some(',') && prev != Some('{'))) {
            return two_stars(self);
        }
        let suffix = match self.peek() {
            None => true,
            Some(',' | '}') if self.branches.len() >= 2 => true,
            Some('/') => {
                self.bump();
                false
            }
            Some(_) => return two_stars(self),
        };
        // The `/` before the `**` is part of the recursive token.
        let t = match self.last()?.pop() {
            Some(Token::RecursivePrefix) => Token::RecursivePrefix,
            Some(Token::RecursiveSuffix) => Token::RecursiveSuffix,
            _ if suffix => Token::RecursiveSuffix,
            _ => Token::RecursiveZeroOrMore,
        };
        self.push(t)
    }

    /// After a `[`.
    fn class(&mut self) -> Result<(), Error> {
        let negated = matches!(self.peek(), Some('!' | '^'));
        if negated {
            self.bump();
        }
        let mut ranges: Vec<(char, char)> = Vec::new();
        let mut first = true;
        let mut in_range = false;
        loop {
            let c = self.bump().ok_or(Error::UnclosedClass)?;
            match c {
                ']' if !first => break,
                '-' if !first && !in_range => in_range = true,
                c => {
                    match ranges.last_mut() {
                        Some(r) if in_range => {
                            r.1 = c;
                            if r.1 < r.0 {
                                return Err(Error::InvalidRange(r.0, r.1));
                            }
                        }
                        _ => ranges.push((c, c)),
                    }
                    in_range = false;
                }
            }
            first = false;
        }
        if in_range {
            ranges.push(('-', '-'));
        }
        self.push(Token::Class { negated, ranges })
    }
}

/// What a state consumes.
#[derive(Debug)]
enum Test {
    Char(char),
    Any,
    Class { negated: bool, ranges: Vec<(char, char)> },
}

impl Test {
    fn accepts(&self, c: char) -> bool {
        match self {
            Test::Char(x) => *x == c,
            Test::Any => true,
            Test::Class { negated, ranges } => ranges.iter().any(|&(a, b)| a <= c && c <= b) != *negated,
        }
    }
}

#[derive(Debug)]
enum State {
    /// Consumes one character passing the test, then goes on to the state given.
    Step(Test, usize),
    /// Goes on to any of these states without consuming anything.
    Fork(Vec<usize>),
    Match,
}

/// Any number of globs; a string matches the set when it matches one of them.
#[derive(Debug)]
pub struct GlobSet {
    states: Vec<State>,
    start: usize,
}

impl GlobSet {
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<GlobSet, (String, Error)> {
        let mut states = vec![State::Match];
        let mut starts = Vec::new();
        for p in patterns {
            let p = p.as_ref();
            let mut tokens = parse(p).map_err(|e| (p.to_string(), e))?;
            // `**` (or `**/`) alone matches everything.
            if tokens == [Token::RecursivePrefix] {
                tokens = vec![Token::ZeroOrMore];
            }
            starts.push(compile_seq(&mut states, &tokens, 0));
        }
        let start = add(&mut states, State::Fork(starts));
        Ok(GlobSet { states, start })
    }

    /// Whether the whole of `s` matches one of the globs.
    pub fn is_match(&self, s: &str) -> bool {
        let n = self.states.len();
        let mut seen = vec![usize::MAX; n];
        let mut stack = Vec::new();
        let mut current = Vec::new();
        let mut next = Vec::new();
        self.close(self.start, 0, &mut seen, &mut stack, &mut current);
        for (i, c) in s.chars().enumerate() {
            if current.is_empty() {
                return false;
            }
            next.clear();
            for &q in &current {
                if let State::Step(test, to) = &self.states[q]
                    && test.accepts(c)
                {
                    self.close(*to, i + 1, &mut seen, &mut stack, &mut next);
                }
            }
            std::mem::swap(&mut current, &mut next);
        }
        current.iter().any(|&q| matches!(self.states[q], State::Match))
    }

    /// Whether `path` matches (a path that is not UTF-8 is matched with its invalid bytes
    /// replaced by U+FFFD).
    pub fn is_match_path(&self, path: &Path) -> bool {
        self.is_match(&path.to_string_lossy())
    }

    /// Adds to `out` the states reachable from `q` without consuming anything, once per `step`.
    fn close(&self, q: usize, step: usize, seen: &mut [usize], stack: &mut Vec<usize>, out: &mut Vec<usize>) {
        stack.push(q);
        while let Some(q) = stack.pop() {
            if seen[q] == step {
                continue;
            }
            seen[q] = step;
            match &self.states[q] {
                State::Fork(to) => stack.extend(to.iter().rev()),
                _ => out.push(q),
            }
        }
    }
}

fn add(states: &mut Vec<State>, s: State) -> usize {
    states.push(s);
    states.len() - 1
}

/// Compiles `tokens` followed by state `next`; returns the first state.
fn compile_seq(states: &mut Vec<State>, tokens: &[Token], mut next: usize) -> usize {
    for t in tokens.iter().rev() {
        next = compile(states, t, next);
    }
    next
}

/// `.*` followed by `next`.
fn any_run(states: &mut Vec<State>, next: usize) -> usize {
    let fork = add(states, State::Fork(Vec::new()));
    let any = add(states, State::Step(Test::Any, fork));
    states[fork] = State::Fork(vec![any, next]);
    fork
}

fn compile(states: &mut Vec<State>, t: &Token, next: usize) -> usize {
    match t {
        Token::Literal(c) => add(states, State::Step(Test::Char(*c), next)),
        Token::Any => add(states, State::Step(Test::Any, next)),
        Token::Class { negated, ranges } => {
            add(states, State::Step(Test::Class { negated: *negated, ranges: ranges.clone() }, next))
        }
        Token::ZeroOrMore => any_run(states, next),
        Token::RecursivePrefix => {
            // (?:/?|.*/): nothing, or anything ending with `/` (which covers `/`).
            let slash = add(states, State::Step(Test::Char('/'), next));
            let run = any_run(states, slash);
            add(states, State::Fork(vec![next, run]))
        }
        Token::RecursiveSuffix => {
            let run = any_run(states, next);
            add(states, State::Step(Test::Char('/'), run))
        }
        Token::RecursiveZeroOrMore => {
            // /(?:.*/)?
            let slash = add(states, State::Step(Test::Char('/'), next));
            let run = any_run(states, slash);
            let either = add(states, State::Fork(vec![next, run]));
            add(states, State::Step(Test::Char('/'), either))
        }
        Token::Alternates(alternatives) => {
            let starts: Vec<usize> =
                alternatives.iter().filter(|a| !a.is_empty()).map(|a| compile_seq(states, a, next)).collect();
            if starts.is_empty() { next } else { add(states, State::Fork(starts)) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, s: &str) -> bool {
        match GlobSet::new(&[pattern]) {
            Ok(set) => set.is_match(s),
            Err((_, e)) => panic!("{pattern}: {e}"),
        }
    }

    #[test]
    fn literals_and_wildcards() {
        assert!(m("node_modules", "node_modules"));
        assert!(!m("node_modules", "node_modules/x"));
        assert!(!m("node_modules", "a/node_modules"));
        assert!(m("*.log", "debug.log"));
        assert!(m("*.log", ".log"));
        assert!(!m("*.log", "debug.log.1"));
        // `*` and `?` cross `/`, as with globset's default (literal_separator off).
        assert!(m("*.log", "logs/debug.log"));
        assert!(m("a?c", "a/c"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("a?c", "aéc"));
        assert!(m("*", ""));
        assert!(m("", ""));
        assert!(!m("", "a"));
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "a/x/b/y/c"));
        assert!(!m("a*b*c", "acb"));
    }

    #[test]
    fn recursive_wildcards() {
        assert!(m("**", ""));
        assert!(m("**", "a/b/c"));
        assert!(m("**/", "a/b"));
        assert!(m("**/x", "x"));
        assert!(m("**/x", "a/x"));
        assert!(m("**/x", "a/b/x"));
        assert!(m("**/x", "/x"));
        assert!(!m("**/x", "ax"));
        assert!(m("x/**", "x/"));
        assert!(m("x/**", "x/a/b"));
        assert!(!m("x/**", "x"));
        assert!(!m("x/**", "xa/b"));
        assert!(m("a/**/b", "a/b"));
        assert!(m("a/**/b", "a/x/b"));
        assert!(m("a/**/b", "a/x/y/b"));
        assert!(!m("a/**/b", "ab"));
        assert!(!m("a/**/b", "a/xb"));
        assert!(m("**/*.log", "debug.log"));
        assert!(m("**/*.log", "a/b/debug.log"));
        // `**` next to other characters is two `*`.
        assert!(m("a**", "a/b/c"));
        assert!(m("**a", "x/ya"));
        assert!(m("a/**b", "a/x/yb"));
        assert!(m("{**/a,b}", "x/a"));
        assert!(m("{x/**,b}", "x/y"));
        assert!(m("{x,a/**}/c", "a/b/c"));
    }

    #[test]
    fn classes() {
        assert!(m("[abc]", "b"));
        assert!(!m("[abc]", "d"));
        assert!(m("[a-z]x", "qx"));
        assert!(!m("[a-z]x", "Qx"));
        assert!(m("[!a-z]", "Q"));
        assert!(m("[^a-z]", "Q"));
        assert!(!m("[!a-z]", "q"));
        assert!(m("[!a]", "/"));
        assert!(m("[]]", "]"));
        assert!(m("[]a]", "a"));
        assert!(m("[!]]", "a"));
        assert!(!m("[!]]", "]"));
        assert!(m("[-a]", "-"));
        assert!(m("[a-]", "-"));
        // As globset read it: a second `-` extends the range before it.
        assert!(m("[a-c-e]", "d"));
        assert!(!m("[a-c-e]", "-"));
        assert!(m("[*?{]", "{"));
        assert!(m("[é]", "é"));
    }

    #[test]
    fn alternatives_and_escapes() {
        assert!(m("{a,b}", "a"));
        assert!(m("{a,b}", "b"));
        assert!(!m("{a,b}", "ab"));
        assert!(m("*.{js,ts}", "x.ts"));
        assert!(!m("*.{js,ts}", "x.rs"));
        assert!(m("{a,{b,c}d}", "cd"));
        // Empty alternatives are dropped: `{a,}` needs the `a`, `{}` and `{,}` match nothing.
        assert!(m("x{a,}", "xa"));
        assert!(!m("x{a,}", "x"));
        assert!(m("x{}y", "xy"));
        assert!(m("x{,}y", "xy"));
        assert!(m("a,b", "a,b"));
        assert!(m(r"\*", "*"));
        assert!(!m(r"\*", "a"));
        assert!(m(r"\{a\}", "{a}"));
        assert!(m(r"a\[b", "a[b"));
    }

    #[test]
    fn a_set_matches_when_one_glob_does() {
        let Ok(set) = GlobSet::new(&[".git", "node_modules", "*.log"]) else { panic!("globs") };
        assert!(set.is_match(".git"));
        assert!(set.is_match("a.log"));
        assert!(!set.is_match("src"));
        let Ok(empty) = GlobSet::new::<&str>(&[]) else { panic!("no globs") };
        assert!(!empty.is_match(""));
        assert!(!empty.is_match("a"));
    }

    #[test]
    fn invalid_patterns_are_errors() {
        assert_eq!(check("["), Err(Error::UnclosedClass));
        assert_eq!(check("[]"), Err(Error::UnclosedClass));
        assert_eq!(check("[!"), Err(Error::UnclosedClass));
        assert_eq!(check("[!]"), Err(Error::UnclosedClass));
        assert_eq!(check("[z-a]"), Err(Error::InvalidRange('z', 'a')));
        assert_eq!(check("[z--]"), Err(Error::InvalidRange('z', '-')));
        assert_eq!(check("{a,b"), Err(Error::UnclosedAlternates));
        assert_eq!(check("{a,{b,c}"), Err(Error::UnclosedAlternates));
        assert_eq!(check("a,b}"), Err(Error::UnopenedAlternates));
        assert_eq!(check("{a,b}}"), Err(Error::UnopenedAlternates));
        assert_eq!(check("a\\"), Err(Error::DanglingEscape));
        assert_eq!(Error::UnclosedClass.to_string(), "unclosed character class; missing ']'");
        assert_eq!(Error::InvalidRange('z', 'a').to_string(), "invalid range; 'z' > 'a'");
        let Err((p, e)) = GlobSet::new(&["ok", "{x"]) else { panic!("accepted") };
        assert_eq!((p.as_str(), e), ("{x", Error::UnclosedAlternates));
    }

    #[test]
    fn no_backtracking_blow_up() {
        let s = "a".repeat(20_000);
        let start = std::time::Instant::now();
        assert!(!m("*a*a*a*a*a*a*a*a*a*b", &s));
        assert!(!m("**/a/**/a/**/a/**/b", &"a/".repeat(5_000)));
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }
}
