//! How a person sees config errors: each problem the way cargo shows a compile error, in the same
//! layout as rustc's and cargo's renderer (`annotate-snippets`), byte for byte, colors included.
//!
//! ```text
//! error: unknown key `restrat` in [web]
//!  --> /srv/app/pm3.toml:3:1
//!   |
//! 3 | restrat = "always"
//!   | ^^^^^^^ did you mean `restart`?
//!
//! error: could not load /srv/app/pm3.toml: 1 error
//! ```
//!
//! Only called on the way out of a failed load: nothing here runs when a config is fine.

use std::fmt::Write as _;

use unicode_width::UnicodeWidthChar;

use super::ConfigError;
use super::error::{Excerpt, Located};

/// How many bytes of source lines the snippets may show in all. Past it (a file with
/// thousands of problems on megabyte-long lines), problems show their position only: every
/// snippet costs the length of its lines, and what a person reads is the first few anyway.
const SNIPPET_BUDGET: usize = 4 << 20;

/// The width source lines are cut to (with `...`), gutter included, as rustc does.
const TERM_WIDTH: usize = 140;

/// Bold bright red: the level, the primary underline and its label.
const RED: &str = "\u{1b}[1m\u{1b}[91m";
/// Bold bright blue: the gutter, the arrows, the secondary underlines and their labels.
const BLUE: &str = "\u{1b}[1m\u{1b}[94m";
const BOLD: &str = "\u{1b}[1m";
const RESET: &str = "\u{1b}[0m";

/// Every problem of `err`, a blank line after each, then the closing line (once the file could be
/// read). No trailing newline. ANSI colors when `color`.
pub fn report<'a>(err: &'a ConfigError, color: bool) -> String {
    let mut budget = SNIPPET_BUDGET;
    let mut blocks: Vec<String> = Vec::with_capacity(err.problems.len() + 1);
    for p in &err.problems {
        let (lines, notes) = match &p.excerpt {
            Some(excerpt) if budget > 0 => {
                let mut spend = |excerpt: &'a Excerpt| {
                    let lines = err.lines(excerpt);
                    budget = budget.saturating_sub(lines.len().max(1));
                    lines
                };
                let lines = (spend(excerpt), excerpt);
                let notes: Vec<_> = p.notes.iter().map(|(e, note)| (spend(e), e, note)).collect();
                (Some(lines), notes)
            }
            _ => (None, Vec::new()),
        };
        blocks.push(problem(color, p, lines, &notes));
    }
    if err.problems.iter().any(|p| p.pos.is_some()) {
        let n = err.problems.len();
        let title =
            format!("could not load {}: {n} error{}", err.path.display(), if n == 1 { "" } else { "s" });
        let mut out = Out::new(color);
        out.title(&title);
        blocks.push(out.text);
    }
    blocks.join("\n\n")
}

/// One problem: its message, where it is, and the source it is about (`lines`), or without
/// them just its position.
fn problem(
    color: bool,
    p: &Located,
    lines: Option<(&str, &Excerpt)>,
    notes: &[(&str, &Excerpt, &String)],
) -> String {
    let path = p.path.display().to_string();
    let mut out = Out::new(color);
    match p.pos {
        Some(_) => out.title(&p.kind.to_string()),
        // Nothing to point at (the file cannot be read): the path goes in the message.
        None => out.title(&format!("{path}: {}", p.kind)),
    }
    match (lines, p.pos) {
        (Some((lines, excerpt)), _) => {
            let label = p.help.as_ref().or(p.label.as_ref()).map(String::as_str);
            let mut snippets = vec![Snippet { lines, excerpt, label, primary: true }];
            snippets.extend(notes.iter().map(|(lines, excerpt, note)| Snippet {
                lines,
                excerpt,
                label: Some(note.as_str()),
                primary: false,
            }));
            let last = snippets.iter().map(|s| s.excerpt.first_line + s.lines.matches('\n').count());
            let width = digits(last.max().unwrap_or(0));
            for s in &snippets {
                out.snippet(s, &path, width);
            }
        }
        (None, Some(pos)) => {
            out.origin(1, "--> ", &format!("{path}:{}:{}", pos.line, pos.col));
            if let Some(help) = &p.help {
                out.text.push_str("\n  ");
                out.paint(BLUE, "= ");
                out.paint(BOLD, "help");
                let _ = write!(out.text, ": {help}");
            }
        }
        (None, None) => {}
    }
    out.text
}

/// One annotated excerpt: its lines, the span in them and what to say under it.
struct Snippet<'a> {
    lines: &'a str,
    excerpt: &'a Excerpt,
    label: Option<&'a str>,
    /// The problem's own span (`^^^`, red), not a note's (`---`, blue).
    primary: bool,
}

/// The text being drawn, and whether in color.
struct Out {
    text: String,
    color: bool,
}

impl Out {
    fn new(color: bool) -> Self {
        Out { text: String::new(), color }
    }

    /// `text` in `style` (when in color).
    fn paint(&mut self, style: &str, text: &str) {
        if self.color && !text.is_empty() {
            self.text.push_str(style);
            self.text.push_str(text);
            self.text.push_str(RESET);
        } else {
            self.text.push_str(text);
        }
    }

    fn title(&mut self, message: &str) {
        self.paint(RED, "error");
        self.paint(BOLD, &format!(": {message}"));
    }

    fn spaces(&mut self, n: usize) {
        self.text.extend(std::iter::repeat_n(' ', n));
    }

    /// A new line: ` --> path:line:col` (or `:::`), after `indent` spaces.
    fn origin(&mut self, indent: usize, arrow: &str, at: &str) {
        self.text.push('\n');
        self.spaces(indent);
        self.paint(BLUE, arrow);
        self.text.push_str(at);
    }

    /// A new line of the gutter alone: `  |`.
    fn bar(&mut self, width: usize) {
        self.text.push('\n');
        self.spaces(width + 1);
        self.paint(BLUE, "|");
    }

    /// A new source line: `12 | `, the bar of a multi-line span if `multi`, then `code`.
    fn source(&mut self, width: usize, number: usize, multi: Option<&str>, code: &str) {
        self.text.push('\n');
        self.paint(BLUE, &format!("{number:>width$}"));
        self.text.push(' ');
        self.paint(BLUE, "|");
        if let Some(style) = multi {
            self.text.push(' ');
            self.paint(style, "|");
        }
        if !code.is_empty() {
            self.text.push(' ');
            self.text.push_str(code);
        }
    }

    /// `label` after an underline, if any.
    fn label(&mut self, style: &str, label: Option<&str>) {
        if let Some(label) = label {
            self.text.push(' ');
            self.paint(style, label);
        }
    }

    fn snippet(&mut self, s: &Snippet, path: &str, width: usize) {
        let lines: Vec<&str> = s.lines.split('\n').collect();
        let span = s.excerpt.span.clone();
        let first = s.excerpt.first_line;
        // The lines of the span's start and end, and the byte offsets in them.
        let (start_line, start_byte) = locate(&lines, span.start);
        let (end_line, end_byte) = locate(&lines, span.end.max(span.start));
        let col = lines[start_line].get(..start_byte).map_or(0, |b| b.chars().count()) + 1;
        let at = format!("{path}:{}:{col}", first + start_line);
        if s.primary {
            self.origin(width, "--> ", &at);
        } else {
            self.bar(width);
            self.origin(width, "::: ", &at);
        }
        self.bar(width);
        let (style, mark) = if s.primary { (RED, '^') } else { (BLUE, '-') };
        let start = prefix_width(lines[start_line], start_byte);
        let width_offset = width + 3;
        if start_line == end_line || (end_line == start_line + 1 && end_byte == 0) {
            let line = lines[start_line];
            let end = if start_line == end_line { prefix_width(line, end_byte) } else { str_width(line) };
            let end = end.max(start + 1);
            let label_right = s.label.map_or(0, |l| str_width(l) + 1);
            let margin = Margin::new(
                leading_whitespace(std::slice::from_ref(&line)),
                start,
                end,
                end + label_right,
                TERM_WIDTH.saturating_sub(width_offset),
                str_width(line),
            );
            let left = self.code(width, first + start_line, None, line, &margin);
            self.bar(width);
            self.text.push(' ');
            self.spaces(start.saturating_sub(left));
            self.paint(style, &mark.to_string().repeat(end - start));
            self.label(style, s.label);
            return;
        }
        // A span over several lines: its first line, up to four more, the one before its last
        // and its last, joined by a bar on the left.
        let (end_line, end_byte) =
            if end_byte == 0 { (end_line - 1, lines[end_line - 1].len()) } else { (end_line, end_byte) };
        let end = prefix_width(lines[end_line], end_byte);
        let empty =
            |l: &str| ["", "{", "}", "(", ")", "[", "]"].contains(&l.trim()) || l.trim().starts_with("//");
        let middle = (start_line + 4).min(end_line);
        let until =
            (start_line + 1..middle).rev().find(|&i| !empty(lines[i])).map_or(start_line + 1, |i| i + 1);
        let mut shown: Vec<usize> = vec![start_line];
        shown.extend(start_line + 1..until);
        if middle < end_line - 1 && !empty(lines[end_line - 1]) {
            shown.push(end_line - 1);
        }
        shown.push(end_line);
        // As rustc reckons: the start's mark at its column, the end's at its last one, the bars
        // of the lines between at column 0.
        let between = shown.len() > 2;
        let marks = [start, start + 1, end.saturating_sub(1), end];
        let span_left = if between { 0 } else { marks.into_iter().min().unwrap_or(0) };
        let label_right = end + s.label.map_or(0, |l| str_width(l) + 1);
        let text: Vec<&str> = shown.iter().map(|&i| trim_cr(lines[i])).collect();
        let margin = Margin::new(
            leading_whitespace(&text),
            span_left,
            marks.into_iter().max().unwrap_or(0),
            label_right,
            TERM_WIDTH.saturating_sub(width_offset + 2),
            text.iter().map(|l| str_width(l)).max().unwrap_or(0),
        );
        let mut end_left = 0;
        for (k, &i) in shown.iter().enumerate() {
            if i == start_line {
                let left = self.code(width, first + i, Some(""), lines[i], &margin);
                self.bar(width);
                self.text.push(' ');
                self.paint(style, &format!(" {}^", "_".repeat(start.saturating_sub(left) + 1)));
            } else {
                end_left = self.code(width, first + i, Some(style), lines[i], &margin);
            }
            if let Some(&next) = shown.get(k + 1) {
                if next == i + 2 {
                    self.code(width, first + i + 1, Some(style), lines[i + 1], &margin);
                } else if next > i + 2 {
                    self.text.push('\n');
                    self.paint(BLUE, "...");
                    self.spaces(width_offset - 3);
                    self.paint(style, "|");
                }
            }
        }
        self.bar(width);
        self.text.push(' ');
        self.paint(style, &format!("|{}^", "_".repeat(end.saturating_sub(end_left))));
        self.label(style, s.label);
    }

    /// A source line, cut to `margin`; returns how many columns were cut on the left. `multi`:
    /// the style of the bar of a multi-line span (`""` on its first line: room, no bar).
    fn code(
        &mut self,
        width: usize,
        number: usize,
        multi: Option<&str>,
        line: &str,
        margin: &Margin,
    ) -> usize {
        let line = normalize(trim_cr(line));
        let len = str_width(&line);
        let left = margin.left(len);
        let right = margin.right(len);
        let cut_right = len > right;
        let (mut skipped, mut taken) = (0, 0);
        let mut chars = line.char_indices().peekable();
        while let Some(&(_, c)) = chars.peek() {
            if skipped >= left {
                break;
            }
            skipped += char_width(c);
            chars.next();
        }
        let from = chars.peek().map_or(line.len(), |&(i, _)| i);
        let mut to = line.len();
        for (i, c) in chars {
            taken += char_width(c);
            if taken > right.saturating_sub(left) {
                to = i;
                break;
            }
        }
        // A wide character astride the cut is skipped whole: the columns count from after it.
        let left = left.max(skipped);
        let code = &line[from..to];
        let (cut_width, cut_bytes) = if margin.was_cut_left() {
            let (mut w, mut b) = (0, 0);
            for c in code.chars() {
                w += char_width(c);
                b += c.len_utf8();
                if w >= 3 {
                    break;
                }
            }
            (w, b)
        } else {
            (0, 0)
        };
        match multi {
            Some("") => {
                self.source(width, number, None, "");
                self.text.push_str("   ");
            }
            _ => self.source(width, number, multi, ""),
        }
        if !code.is_empty() && multi != Some("") {
            self.text.push(' ');
        }
        if margin.was_cut_left() {
            self.paint(BLUE, "...");
            self.spaces(cut_width.saturating_sub(3));
        }
        let rest = &code[cut_bytes..];
        if cut_right {
            // The last characters (3 columns' worth) give way to `...`, one cell each.
            let (mut w, mut n) = (0, 0);
            for c in rest.chars().rev() {
                w += char_width(c);
                n += 1;
                if w >= 3 {
                    break;
                }
            }
            let at = rest.chars().count() - n;
            let keep = rest.char_indices().nth(at).map_or(rest.len(), |(i, _)| i);
            self.text.push_str(&rest[..keep]);
            self.paint(BLUE, "...");
            if let Some((i, _)) = rest.char_indices().nth(at + 3) {
                self.text.push_str(&rest[i..]);
            }
        } else {
            self.text.push_str(rest);
        }
        left
    }
}

/// The line of `lines` holding byte `offset` of their text (joined by `\n`), and the offset in it.
fn locate(lines: &[&str], mut offset: usize) -> (usize, usize) {
    for (i, line) in lines.iter().enumerate() {
        if offset <= line.len() && (offset < line.len() + 1 || i + 1 == lines.len()) {
            return (i, offset);
        }
        if i + 1 == lines.len() {
            return (i, line.len());
        }
        offset -= line.len() + 1;
    }
    (0, 0)
}

/// `line` without the `\r` of a `\r\n` line break.
fn trim_cr(line: &str) -> &str {
    line.strip_suffix('\r').unwrap_or(line)
}

/// The display width of the first `bytes` bytes of `line` (all of it if that is not a
/// character boundary).
fn prefix_width(line: &str, bytes: usize) -> usize {
    str_width(line.get(..bytes).unwrap_or(line))
}

fn str_width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

/// How many columns `c` takes on a terminal: a tab 4 (it is shown as 4 spaces), a control
/// character 1 (it is shown as its visible symbol, `␀`), an East Asian wide character or an emoji
/// 2, a combining mark 0.
fn char_width(c: char) -> usize {
    match c {
        '\t' => 4,
        '\0'..='\u{8}'
        | '\u{b}'..='\u{1f}'
        | '\u{7f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}' => 1,
        _ => c.width().unwrap_or(1),
    }
}

/// `line` as shown: tabs as 4 spaces, control characters as their symbols (`␀`), text-direction
/// controls as `�`, zero-width joiners dropped.
fn normalize(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        match c {
            '\t' => out.push_str("    "),
            '\0'..='\u{1f}' => out.push(char::from_u32(0x2400 + c as u32).unwrap_or('�')),
            '\u{7f}' => out.push('␡'),
            '\u{200d}' => {}
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => out.push('�'),
            _ => out.push(c),
        }
    }
    out
}

/// The columns of whitespace the least indented non-blank line of `lines` starts with.
fn leading_whitespace(lines: &[&str]) -> usize {
    lines
        .iter()
        .filter(|l| l.chars().any(|c| !c.is_whitespace()))
        .map(|l| l.chars().take_while(|c| c.is_whitespace()).map(|c| if c == '\t' { 4 } else { 1 }).sum())
        .min()
        .unwrap_or(0)
}

fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// Which columns of a long line to show, as rustc chooses them: the span and its label in
/// view, some context on either side, `...` where the line is cut.
struct Margin {
    left: usize,
    right: usize,
    term_width: usize,
}

impl Margin {
    fn new(
        whitespace_left: usize,
        span_left: usize,
        span_right: usize,
        label_right: usize,
        term_width: usize,
        max_line_len: usize,
    ) -> Self {
        const PASSING: usize = 6;
        let whitespace_left = whitespace_left.saturating_sub(PASSING);
        let span_left = span_left.saturating_sub(PASSING);
        let span_right = span_right + PASSING;
        let label_right = label_right + PASSING;
        let mut left = if whitespace_left > 20 { whitespace_left - 16 } else { 0 };
        let mut right = max_line_len.max(left);
        if right - left > term_width {
            if label_right.saturating_sub(whitespace_left) <= term_width && label_right >= whitespace_left {
                left = whitespace_left;
                right = left + term_width;
            } else if label_right - span_left <= term_width {
                left = span_left.saturating_sub((term_width - (label_right - span_left)) / 2);
                right = left + term_width;
            } else if span_right - span_left <= term_width {
                left = span_left.saturating_sub((term_width - (span_right - span_left)) / 5 * 2);
                right = left + term_width;
            } else {
                left = span_left;
                right = span_right;
            }
        }
        Margin { left, right, term_width }
    }

    fn was_cut_left(&self) -> bool {
        self.left > 0
    }

    fn left(&self, line_len: usize) -> usize {
        self.left.min(line_len)
    }

    fn right(&self, line_len: usize) -> usize {
        if line_len.saturating_sub(self.left) <= self.term_width {
            line_len
        } else {
            line_len.min(self.right)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Fixture;
    use super::super::{FILE_NAME, load};

    /// The rendering of the errors of `text` as `pm3.toml`, the directory shown as `$DIR`.
    fn rendered(fx: &Fixture, text: &str, color: bool) -> String {
        fx.write(FILE_NAME, text);
        let err = load(&fx.config_path(), None).expect_err("a bad config");
        err.render(color).replace(&fx.dir().display().to_string(), "$DIR")
    }

    #[test]
    fn problems_look_like_cargo_errors() {
        let fx = Fixture::new();
        let text = "[a]\ncommand = \"x\"\nrestrat = 1\ndepends_on = [\"b\"]\n\n[b]\ncommand = \"y\"\n\
                    depends_on = [\"a\"]\n";
        let want = "\
error: unknown key `restrat` in [a]
 --> $DIR/pm3.toml:3:1
  |
3 | restrat = 1
  | ^^^^^^^ did you mean `restart`?

error: dependency cycle `a -> b -> a`
 --> $DIR/pm3.toml:4:15
  |
4 | depends_on = [\"b\"]
  |               ^^^ `a` depends on `b`
  |
 ::: $DIR/pm3.toml:8:15
  |
8 | depends_on = [\"a\"]
  |               --- `b` depends on `a`

error: could not load $DIR/pm3.toml: 2 errors";
        assert_eq!(rendered(&fx, text, false), want);
    }

    /// Colors are ANSI escapes around the same text.
    #[test]
    fn colors_only_when_asked() {
        let fx = Fixture::new();
        let text = "[a]\ncommand = 1\n";
        let (plain, styled) = (rendered(&fx, text, false), rendered(&fx, text, true));
        assert!(!plain.contains('\u{1b}'), "{plain}");
        assert!(styled.contains("\u{1b}["), "{styled}");
        let mut stripped = String::new();
        let mut rest = styled.as_str();
        while let Some(i) = rest.find('\u{1b}') {
            stripped.push_str(&rest[..i]);
            rest = rest[i..].split_once('m').map_or("", |(_, after)| after);
        }
        stripped.push_str(rest);
        assert_eq!(stripped, plain);
    }

    /// Past [`super::SNIPPET_BUDGET`] bytes of source, a problem shows where it is, not the line.
    #[test]
    fn huge_lines_stop_the_snippets_not_the_positions() {
        let fx = Fixture::new();
        let big = "x".repeat(super::SNIPPET_BUDGET / 2);
        let text = format!("[a]\ncommand = \"x\"\nenv = {{ A = \"{big}\", B = [1], C = [1] }}\nfoo = 1\n");
        let out = rendered(&fx, &text, false);
        let head = |o: &str| o[..o.len().min(1000)].to_string();
        // Two snippets of line 3, long as it is, cut to the terminal's width...
        let b = big.len() + 21;
        let (c, end) = (b + 9, "\", B = [1], C = [1] }\n");
        for (key, col) in [("B", b), ("C", c)] {
            let at =
                format!("error: `env.{key}` must be a string, got an array\n --> $DIR/pm3.toml:3:{col}\n");
            let (_, rest) = out.split_once(&at).unwrap_or_else(|| panic!("no {at}in {}", head(&out)));
            assert!(rest.starts_with("  |\n3 | ...xxxx"), "{}", head(rest));
            assert!(rest.contains(end), "{}", head(rest));
        }
        // ... and the third without one.
        let tail = "\n\nerror: unknown key `foo` in [a]\n --> $DIR/pm3.toml:4:1\n\n\
                    error: could not load $DIR/pm3.toml: 3 errors";
        assert!(out.ends_with(tail), "{}", &out[out.len().saturating_sub(1000)..]);
    }

    /// The snippet of each problem of `text` (its lines between the title and the closing line).
    fn snippets(text: &str) -> String {
        let fx = Fixture::new();
        let out = rendered(&fx, text, false);
        let (_, end) = out.rsplit_once("\n\nerror: could not load").unwrap_or((&out, ""));
        assert!(!end.is_empty(), "{out}");
        out[..out.len() - end.len() - "\n\nerror: could not load".len()].to_string()
    }

    /// Tabs show as 4 spaces, the underline under what they push along.
    #[test]
    fn tabs_are_four_columns() {
        let want = "\
error: unknown key `foo` in [a]
 --> $DIR/pm3.toml:3:2
  |
3 |     foo = 1
  |     ^^^

error: unknown key `a` in [a]
 --> $DIR/pm3.toml:4:1
  |
4 | a    =    1
  | ^

error: `instances` must be an integer >= 1 or \"max\", got string `x`
 --> $DIR/pm3.toml:5:13
  |
5 | instances =    \"x\"
  |                ^^^";
        assert_eq!(snippets("[a]\ncommand = \"x\"\n\tfoo = 1\na\t=\t1\ninstances =\t\"x\"\n"), want);
    }

    /// A control character shows as its symbol, one column wide; an empty span at the end of a
    /// line or of the file is one caret past its last character.
    #[test]
    fn control_characters_and_empty_spans() {
        let want = "\
error: TOML syntax error: invalid basic string, expected non-double-quote visible characters, `\\`
 --> $DIR/pm3.toml:2:13
  |
2 | command = \"a\u{2400}b\"
  |             ^";
        assert_eq!(snippets("[a]\ncommand = \"a\0b\"\n"), want);
        let want = "\
error: TOML syntax error: string values must be quoted, expected literal string
 --> $DIR/pm3.toml:2:11
  |
2 | command = 
  |           ^";
        assert_eq!(snippets("[a]\ncommand = \n"), want);
        let want = "\
error: TOML syntax error: invalid basic string, expected `\"`
 --> $DIR/pm3.toml:2:13
  |
2 | command = \"x
  |             ^";
        assert_eq!(snippets("[a]\ncommand = \"x"), want);
    }

    /// A span over several lines: a bar joins its start to its end; an empty line shows as the
    /// bar alone, and past a few lines the middle ones give way to `...`.
    #[test]
    fn multi_line_spans() {
        let title = "error: `env` must be a table of strings, got an array";
        let want = format!(
            "{title}
 --> $DIR/pm3.toml:3:7
  |
3 |   env = [
  |  _______^
4 | |
5 | | 1]
  | |__^"
        );
        assert_eq!(snippets("[a]\ncommand = \"x\"\nenv = [\n\n1]\n"), want);
        let want = format!(
            "{title}
  --> $DIR/pm3.toml:3:7
   |
 3 |   env = [
   |  _______^
 4 | |   1,
 5 | |   2,
 6 | |   3,
...  |
 9 | |   6,
10 | | ]
   | |_^"
        );
        let text = "[a]\ncommand = \"x\"\nenv = [\n  1,\n  2,\n  3,\n  4,\n  5,\n  6,\n]\n";
        assert_eq!(snippets(text), want);
    }

    /// A multi-line span in a file of `\r\n` lines, and one deep in whitespace (cut on the left).
    #[test]
    fn multi_line_spans_with_crlf_and_indentation() {
        let title = "error: `env` must be a table of strings, got an array";
        let want = format!(
            "{title}
 --> $DIR/pm3.toml:3:7
  |
3 |   env = [
  |  _______^
4 | | 1,
5 | | 2]
  | |__^"
        );
        assert_eq!(snippets("[a]\r\ncommand = \"x\"\r\nenv = [\r\n1,\r\n2]\r\n"), want);
        let (pad, cut) = (" ".repeat(200), format!("...{}", " ".repeat(19)));
        let want = format!(
            "{title}
 --> $DIR/pm3.toml:3:207
  |
3 |   {cut}env = [
  |  {}^
4 | | {cut}1,
5 | | {cut}2]
  | |{}^",
            "_".repeat(29),
            "_".repeat(24)
        );
        let text = format!("[a]\ncommand = \"x\"\n{pad}env = [\n{pad}1,\n{pad}2]\n");
        assert_eq!(snippets(&text), want);
    }

    /// A long line is cut to the terminal's width around the span, `...` where it is cut; a
    /// wide character astride the cut goes whole.
    #[test]
    fn long_lines_are_cut_around_the_span() {
        let (x, y) = ("x".repeat(200), "y".repeat(300));
        let want = format!(
            "error: `env.B` must be a string, got an array
 --> $DIR/pm3.toml:3:221
  |
3 | ...{}\", B = [1], C = \"{}...
  | {}^^^",
            "x".repeat(56),
            "y".repeat(57),
            " ".repeat(66)
        );
        assert_eq!(
            snippets(&format!("[a]\ncommand = \"x\"\nenv = {{ A = \"{x}\", B = [1], C = \"{y}\" }}\n")),
            want
        );
        let wide = "名".repeat(200);
        let want = format!(
            "error: `env.B` must be a string, got an array
 --> $DIR/pm3.toml:3:221
  |
3 | ... {}\", B = [1] }}
  | {}^^^",
            "名".repeat(27),
            " ".repeat(65)
        );
        assert_eq!(snippets(&format!("[a]\ncommand = \"x\"\nenv = {{ A = \"{wide}\", B = [1] }}\n")), want);
        let want = format!(
            "error: unknown key `foo` in [a]
 --> $DIR/pm3.toml:3:1
  |
3 | foo = \"{}...
  | ^^^",
            "A".repeat(126)
        );
        assert_eq!(snippets(&format!("[a]\ncommand = \"x\"\nfoo = \"{}\"\n", "A".repeat(500))), want);
    }

    /// The colors, escape for escape.
    #[test]
    fn the_colors_are_rustcs() {
        let fx = Fixture::new();
        let text = "[web]\ncommand = \"x\"\ndepends_on = [\"web\"]\n";
        let (b, r, bold, o) = ("\u{1b}[1m\u{1b}[94m", "\u{1b}[1m\u{1b}[91m", "\u{1b}[1m", "\u{1b}[0m");
        let want = format!(
            "{r}error{o}{bold}: `web` depends on itself (`web -> web`){o}
 {b}--> {o}$DIR/pm3.toml:3:15
  {b}|{o}
{b}3{o} {b}|{o} depends_on = [\"web\"]
  {b}|{o}               {r}^^^^^{o}

{r}error{o}{bold}: could not load $DIR/pm3.toml: 1 error{o}"
        );
        assert_eq!(rendered(&fx, text, true), want);
    }

    #[test]
    fn an_unreadable_file_is_one_line() {
        let fx = Fixture::new();
        let err = load(&fx.dir().join("missing.toml"), None).expect_err("no such file");
        assert_eq!(
            err.render(false).replace(&fx.dir().display().to_string(), "$DIR"),
            "error: $DIR/missing.toml: cannot read config file: No such file or directory (os error 2)"
        );
    }
}
