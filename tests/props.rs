//! Property tests: the config loader and the protocol decoder, fed generated input, never panic,
//! and every config error names its place (`PATH:LINE:COL: message` on one line, and
//! ` --> PATH:LINE:COL` under each `error: ` of what a person reads).

use std::path::Path;

use proptest::prelude::*;

use pm3::config::ConfigError;
use pm3::protocol::{Envelope, Request};

/// Keys beyond the fixed list ([`pm3::config::KEYS`]): an `env_<name>`, a typo, garbage.
const UNKNOWN_KEYS: &[&str] = &["env_production", "restrat", "", "a.b", "\u{0}"];

/// TOML values of every type, with absurd ones among them.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        Just("4294967295".to_string()),
        Just("18446744073709551616".to_string()),
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("\"max\"".to_string()),
        Just("true".to_string()),
        Just("1.5e308".to_string()),
        Just("\"\\u0000\"".to_string()),
        Just("\"1B\"".to_string()),
        Just("\"0K\"".to_string()),
        Just("\"99999999999G\"".to_string()),
        Just("\"SIGNOPE\"".to_string()),
        Just("\"*/0 * * * *\"".to_string()),
        Just("\"http://localhost:${PORT}/\"".to_string()),
        Just("\"${\"".to_string()),
        Just("[\"a\", \"a\", \"zzz\"]".to_string()),
        Just("{ PORT = \"x\", A = 1 }".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        "[ -~]{0,40}".prop_map(|s| format!("{s:?}")),
        "[ -~]{0,12}",
    ]
}

/// A config file: tables with keys and values, or any printable text.
fn config_text() -> impl Strategy<Value = String> {
    let keys: Vec<&str> = pm3::config::KEYS.iter().chain(UNKNOWN_KEYS).copied().collect();
    let entry = (prop::sample::select(keys), value()).prop_map(|(k, v)| format!("{k} = {v}\n"));
    let table = ("[a-z\\.:/ ]{0,10}", prop::collection::vec(entry, 0..8))
        .prop_map(|(name, entries)| format!("[{name}]\n{}", entries.concat()));
    prop_oneof![prop::collection::vec(table, 0..4).prop_map(|t| t.concat()), "(?s).{0,200}",]
}

/// Every problem carries its place, in both forms of the error: each line of the one-line form
/// (`--json`) starts with `PATH:LINE:COL` (line and column from 1), and in what a person reads,
/// each `error: ` line is followed by ` --> PATH:LINE:COL` with the same places in the same
/// order, the whole closed by `error: could not load PATH: N errors` with the same count.
fn assert_located(err: &ConfigError, path: &Path) {
    let prefix = format!("{}:", path.display());
    let place = |rest: &str| {
        let mut parts = rest.splitn(3, ':');
        let (l, c) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let c: String = c.chars().take_while(char::is_ascii_digit).collect();
        match (l.parse::<u32>(), c.parse::<u32>()) {
            (Ok(l), Ok(c)) if l > 0 && c > 0 => Some((l, c)),
            _ => None,
        }
    };

    let one_line = err.to_string();
    let mut places = Vec::new();
    for line in one_line.lines().filter(|l| !l.trim().is_empty()) {
        let rest = line.strip_prefix(&prefix).unwrap_or_else(|| panic!("error without its file: {line:?}"));
        places.push(place(rest).unwrap_or_else(|| panic!("error without line:col: {line:?}")));
    }
    assert!(!places.is_empty(), "an error with no problem: {one_line:?}");

    let rendered = err.render(false);
    let lines: Vec<&str> = rendered.lines().collect();
    let Some((last, body)) = lines.split_last() else { panic!("nothing rendered for {one_line:?}") };
    let n = places.len();
    let closing =
        format!("error: could not load {}: {n} error{}", path.display(), if n == 1 { "" } else { "s" });
    assert_eq!(*last, closing, "{rendered}");
    let mut shown = Vec::new();
    for (i, line) in body.iter().enumerate() {
        if line.starts_with("error: ") {
            let arrow = body.get(i + 1).map(|l| l.trim_start()).unwrap_or("");
            let rest =
                arrow.strip_prefix("--> ").and_then(|a| a.strip_prefix(&prefix)).unwrap_or_else(|| {
                    panic!("{line:?} is not followed by ` --> {prefix}LINE:COL`:\n{rendered}")
                });
            shown.push(place(rest).unwrap_or_else(|| panic!("no line:col in {arrow:?}:\n{rendered}")));
        }
    }
    assert_eq!(shown, places, "the rendering and the one-line form disagree:\n{rendered}\n{one_line}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_config_loader_never_panics_and_locates_every_error(text in config_text()) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().canonicalize().expect("canonical").join("pm3.toml");
        std::fs::write(&path, &text).expect("write config");
        if let Err(e) = pm3::config::load(&path, None) {
            assert_located(&e, &path);
        }
    }

    #[test]
    fn the_protocol_decoder_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = serde_json::from_slice::<Envelope>(&bytes);
    }

    #[test]
    fn the_protocol_decoder_never_panics_on_json(
        cmd in prop::sample::select(vec!["start", "stop", "scale", "signal", "kill", "list", "info", "wait", "nope"]),
        count in any::<i64>(),
        name in "(?s).{0,30}",
        signal in any::<i32>(),
    ) {
        let line = serde_json::json!({"v": 1, "req": {
            "cmd": cmd, "process": name, "count": count, "targets": [name], "target": name,
            "signal": signal, "names": [name], "config": null
        }});
        if let Ok(env) = serde_json::from_value::<Envelope>(line) {
            // What decodes encodes back to the same request.
            let again = serde_json::to_vec(&env).expect("encode");
            let back: Envelope = serde_json::from_slice(&again).expect("decode what was encoded");
            prop_assert_eq!(format!("{:?}", back.req), format!("{:?}", env.req));
            let _ = matches!(env.req, Request::Kill);
        }
    }
}

/// A reference for globs made of literals, `?`, `*` and classes (no `**`, no `{…}`, no `\`):
/// the textbook backtracking matcher, fine for short strings. `*` and `?` cross `/`.
fn reference_glob(p: &[char], s: &[char]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some('*') => (0..=s.len()).any(|i| reference_glob(&p[1..], &s[i..])),
        Some('?') => !s.is_empty() && reference_glob(&p[1..], &s[1..]),
        Some('[') => {
            let Some(end) = p.iter().skip(2).position(|&c| c == ']').map(|i| i + 2) else {
                return false;
            };
            let (negated, body) = match p[1] {
                '!' | '^' => (true, &p[2..end]),
                _ => (false, &p[1..end]),
            };
            let Some(&c) = s.first() else { return false };
            let mut inside = false;
            let mut i = 0;
            while i < body.len() {
                if i + 2 < body.len() && body[i + 1] == '-' {
                    inside |= body[i] <= c && c <= body[i + 2];
                    i += 3;
                } else {
                    inside |= body[i] == c;
                    i += 1;
                }
            }
            inside != negated && reference_glob(&p[end + 1..], &s[1..])
        }
        Some(&c) => s.first() == Some(&c) && reference_glob(&p[1..], &s[1..]),
    }
}

/// A glob piece and a string it matches.
fn glob_piece() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        "[a-c/._]".prop_map(|c| (c.clone(), c)),
        "[a-c/]{0,4}".prop_map(|s| ("*".to_string(), s)),
        "[a-c/]".prop_map(|c| ("?".to_string(), c)),
        "[a-c]".prop_map(|c| ("[a-c]".to_string(), c)),
        "[d-z]".prop_map(|c| ("[!a-c]".to_string(), c)),
        ("[a-c]{1,3}", "[a-c]{1,3}", any::<bool>())
            .prop_map(|(a, b, first)| (format!("{{{a},{b}}}"), if first { a } else { b })),
        "[*?{}\\[\\],]".prop_map(|c| (format!("\\{c}"), c)),
        // At least one directory: after a character other than `/`, `**/` is `*`, `*`, `/`.
        prop::collection::vec("[a-c]{1,3}", 1..3)
            .prop_map(|dirs| ("**/".to_string(), dirs.iter().map(|d| format!("{d}/")).collect())),
        prop::collection::vec("[a-c]{1,3}", 0..3)
            .prop_map(|dirs| ("/**/".to_string(), dirs.iter().fold("/".to_string(), |s, d| s + d + "/"))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Globs without `**`, `{…}` or `\` agree with the reference matcher.
    #[test]
    fn globs_agree_with_the_reference(
        pattern in "([ab/*?]|\\[!?[ab](-[bc])?\\]){0,6}",
        s in "[abc/]{0,8}",
    ) {
        prop_assume!(!pattern.contains("**"));
        let set = pm3::glob::GlobSet::new(&[&pattern]).map_err(|(_, e)| TestCaseError::fail(e.to_string()))?;
        let p: Vec<char> = pattern.chars().collect();
        let chars: Vec<char> = s.chars().collect();
        prop_assert_eq!(set.is_match(&s), reference_glob(&p, &chars), "{} against {:?}", pattern, s);
    }

    /// A glob built from pieces matches the string built from what each piece matches.
    #[test]
    fn globs_match_what_they_describe(pieces in prop::collection::vec(glob_piece(), 1..6)) {
        let pattern: String = pieces.iter().map(|(p, _)| p.as_str()).collect();
        let s: String = pieces.iter().map(|(_, s)| s.as_str()).collect();
        prop_assume!(!pattern.contains("***") && !pattern.contains("**/**"));
        let set = pm3::glob::GlobSet::new(&[&pattern]).map_err(|(_, e)| TestCaseError::fail(e.to_string()))?;
        prop_assert!(set.is_match(&s), "{} should match {:?}", pattern, s);
    }
}
