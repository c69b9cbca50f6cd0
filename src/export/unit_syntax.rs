//! Values in systemd unit files (systemd.syntax(7), systemd.service(5) "Command lines",
//! systemd.exec(5) `Environment=`), written so that systemd reads back exactly the text given.
//!
//! Every word is double-quoted with C-style escapes for `\`, `"` and control characters;
//! `%` (specifiers) is doubled everywhere; `$` is doubled in command lines, where systemd
//! substitutes `$VAR` and `${VAR}` (it does not in `Environment=`). Quoting the first word
//! also keeps a leading `-`, `@`, `+`, `!` or `:` of a program name from being read as one of
//! systemd's prefixes, and a `;` from being read as a separator.

/// Where a value goes, which decides what systemd expands in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// `ExecStart=` and friends: specifiers and `$VAR` are expanded.
    Command,
    /// `Environment=`: specifiers only.
    Environment,
}

/// `word` as one double-quoted word of a unit file value.
pub fn word(word: &str, ctx: Context) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    out.push('"');
    for c in word.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '%' => out.push_str("%%"),
            '$' if ctx == Context::Command => out.push_str("$$"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A command line: every word of `argv` quoted.
pub fn command(argv: &[String]) -> String {
    argv.iter().map(|w| word(w, Context::Command)).collect::<Vec<_>>().join(" ")
}

/// One `Environment=` assignment, `"NAME=value"`.
pub fn assignment(name: &str, value: &str) -> String {
    word(&format!("{name}={value}"), Context::Environment)
}

/// A path for `WorkingDirectory=` and similar settings, which take the rest of the line as it
/// is, with specifiers: `%` doubled. `None` when systemd cannot hold it (a line break, a
/// control character, or a leading `-` or `~` that it would read as a flag).
pub fn path(p: &str) -> Option<String> {
    if p.chars().any(|c| (c as u32) < 0x20 || c == '\u{7f}') || p.starts_with(['-', '~']) || p.ends_with('\\')
    {
        return None;
    }
    Some(p.replace('%', "%%"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// How systemd reads a value of quoted words back (extract_first_word with
    /// EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE, then `%%` and, in command lines, `$$`): a model of
    /// the parser, checked against systemd itself by the e2e tests.
    pub fn read_words(value: &str, ctx: Context) -> Vec<String> {
        let mut words = Vec::new();
        let mut chars = value.chars().peekable();
        loop {
            while chars.peek() == Some(&' ') {
                chars.next();
            }
            let Some(first) = chars.next() else { break };
            assert_eq!(first, '"', "every word is quoted: {value}");
            let mut w = String::new();
            loop {
                match chars.next().expect("closing quote") {
                    '"' => break,
                    '\\' => match chars.next().expect("escape") {
                        'n' => w.push('\n'),
                        't' => w.push('\t'),
                        'r' => w.push('\r'),
                        'x' => {
                            let hex: String =
                                [chars.next().expect("hex"), chars.next().expect("hex")].iter().collect();
                            w.push(char::from(u8::from_str_radix(&hex, 16).expect("hex")));
                        }
                        c => w.push(c),
                    },
                    '%' => {
                        assert_eq!(chars.next(), Some('%'), "a lone % is a specifier: {value}");
                        w.push('%');
                    }
                    '$' if ctx == Context::Command => {
                        assert_eq!(chars.next(), Some('$'), "a lone $ is a variable: {value}");
                        w.push('$');
                    }
                    c => {
                        assert!(c as u32 >= 0x20, "raw control character in {value:?}");
                        w.push(c);
                    }
                }
            }
            words.push(w);
        }
        words
    }

    #[test]
    fn adversarial_words_read_back_as_written() {
        let argv: Vec<String> = [
            "-leading-dash",
            "@at",
            "+plus",
            "!bang",
            ":colon",
            ";",
            "\\;",
            "",
            " ",
            "%i",
            "%%",
            "$HOME",
            "${X}",
            "$$",
            "a\"b",
            "a'b",
            "back\\",
            "new\nline",
            "tab\t",
            "\u{1}ctl",
            "del\u{7f}",
            "é日本",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let line = command(&argv);
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(read_words(&line, Context::Command), argv);
        for (k, v) in [("A", "50%"), ("B", "$HOME"), ("C", "x\ny"), ("D", "\"q\" \\")] {
            assert_eq!(read_words(&assignment(k, v), Context::Environment), [format!("{k}={v}")]);
        }
    }

    #[test]
    fn paths_double_percent_and_refuse_what_systemd_cannot_hold() {
        assert_eq!(path("/srv/50% off").as_deref(), Some("/srv/50%% off"));
        assert_eq!(path("/srv/a b").as_deref(), Some("/srv/a b"));
        assert_eq!(path("/srv/a\nb"), None);
        assert_eq!(path("-x"), None);
    }

    proptest! {
        #[test]
        fn any_argv_reads_back_as_written(argv in proptest::collection::vec(any::<String>(), 1..6)) {
            let line = command(&argv);
            prop_assert!(!line.contains('\n'));
            prop_assert_eq!(read_words(&line, Context::Command), argv);
        }

        #[test]
        fn any_assignment_reads_back_as_written(name in "[A-Za-z_][A-Za-z0-9_]{0,8}", value in any::<String>()) {
            let line = assignment(&name, &value);
            prop_assert_eq!(read_words(&line, Context::Environment), vec![format!("{name}={value}")]);
        }
    }
}
