//! How a person sees config errors: each problem the way cargo shows a compile error, drawn by
//! `annotate-snippets` (the renderer of rustc and cargo).
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

use annotate_snippets::{AnnotationKind, Group, Level, Origin, Renderer, Snippet};

use super::ConfigError;
use super::error::{Excerpt, Located};

/// How many bytes of source lines the snippets may show in all. Past it (a file with
/// thousands of problems on megabyte-long lines), problems show their position only: every
/// snippet costs the length of its lines, and what a person reads is the first few anyway.
const SNIPPET_BUDGET: usize = 4 << 20;

/// Every problem of `err`, a blank line after each, then the closing line (once the file could be
/// read). No trailing newline. ANSI colors when `color`.
pub fn report<'a>(err: &'a ConfigError, color: bool) -> String {
    let renderer = if color { Renderer::styled() } else { Renderer::plain() };
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
        blocks.push(problem(&renderer, p, lines, &notes));
    }
    if err.problems.iter().any(|p| p.pos.is_some()) {
        let n = err.problems.len();
        let title =
            format!("could not load {}: {n} error{}", err.path.display(), if n == 1 { "" } else { "s" });
        blocks.push(renderer.render(&[Group::with_title(Level::ERROR.primary_title(title))]));
    }
    blocks.join("\n\n")
}

/// One problem: its message, where it is, and the source it is about (`lines`), or without
/// them just its position.
fn problem(
    renderer: &Renderer,
    p: &Located,
    lines: Option<(&str, &Excerpt)>,
    notes: &[(&str, &Excerpt, &String)],
) -> String {
    let path = p.path.display().to_string();
    let title = match p.pos {
        Some(_) => p.kind.to_string(),
        // Nothing to point at (the file cannot be read): the path goes in the message.
        None => format!("{path}: {}", p.kind),
    };
    let group = Level::ERROR.primary_title(title);
    let group = match (lines, p.pos) {
        (Some((lines, excerpt)), _) => {
            let mut annotation = AnnotationKind::Primary.span(excerpt.span.clone());
            if let Some(label) = p.help.as_ref().or(p.label.as_ref()) {
                annotation = annotation.label(label.as_str());
            }
            let group = group.element(
                Snippet::source(lines)
                    .line_start(excerpt.first_line)
                    .path(path.as_str())
                    .annotation(annotation),
            );
            group.elements(notes.iter().map(|(lines, excerpt, note)| {
                Snippet::source(*lines)
                    .line_start(excerpt.first_line)
                    .path(path.as_str())
                    .annotation(AnnotationKind::Context.span(excerpt.span.clone()).label(note.as_str()))
            }))
        }
        (None, Some(pos)) => {
            let group = group.element(Origin::path(path.as_str()).line(pos.line).char_column(pos.col));
            match &p.help {
                Some(help) => group.element(Level::HELP.message(help.as_str())),
                None => group,
            }
        }
        (None, None) => Group::with_title(group),
    };
    renderer.render(&[group])
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
