//! Turning the accepted proposals into `pm3.toml` text, and writing it safely: the text goes to
//! a temporary file next to `pm3.toml`, is loaded with the real config loader
//! ([`crate::config::load`]), and only then takes the place of `pm3.toml`, atomically. Without
//! `--force` an existing `pm3.toml` is never replaced, even one created meanwhile.
//!
//! The TOML is written by hand (the `toml` crate is built here without its writer): keys are
//! bare when TOML allows it, strings are literal (`'…'`) when that needs no escape and basic
//! (`"…"`) with escapes otherwise.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::detect::{Instances, Proposal, Skipped};
use crate::config;

/// An inline `env = { … }` longer than this is written as an `[name.env]` table instead.
const INLINE_ENV_MAX: usize = 100;

/// The whole file: a header saying where each entry came from (and what was left out), then
/// one table per process: what its source had that could not be carried over as written (as
/// comments), `command` and, only when set, `instances`, `depends_on`, `restart`,
/// `max_restarts`, `kill_signal`, `kill_timeout`, `health_check`, `health_interval`, `env_file`,
/// `env`.
pub fn render(processes: &[Proposal], skipped: &[Skipped]) -> String {
    let mut out =
        String::from("# Written by `pm3 init`. Edit freely: `pm3 start` reads it (see the README).\n");
    // One header line per source, in order of first appearance.
    let mut sources: Vec<(String, Vec<String>)> = Vec::new();
    for p in processes {
        let entry = match p.origin.key() {
            Some(key) if key != p.name => format!("{} (`{key}`)", p.name),
            _ => p.name.clone(),
        };
        let source = p.origin.source();
        match sources.iter_mut().find(|(s, _)| *s == source) {
            Some((_, names)) => names.push(entry),
            None => sources.push((source, vec![entry])),
        }
    }
    for (source, names) in &sources {
        let _ = writeln!(out, "# {}: {}", comment(source), comment(&names.join(", ")));
    }
    for s in skipped {
        let _ = writeln!(out, "# not included: {}", comment(&s.to_string()));
    }
    for p in processes {
        let _ = writeln!(out, "\n[{}]", key(&p.name));
        for r in &p.remarks {
            let _ = writeln!(out, "# {}", comment(&r.to_string()));
        }
        let _ = writeln!(out, "command = {}", string(&p.command));
        match p.instances {
            None | Some(Instances::Count(1)) => {}
            Some(Instances::Count(n)) => {
                let _ = writeln!(out, "instances = {n}");
            }
            Some(Instances::Max) => out.push_str("instances = \"max\"\n"),
        }
        if !p.depends_on.is_empty() {
            let deps: Vec<String> = p.depends_on.iter().map(|d| string(d)).collect();
            let _ = writeln!(out, "depends_on = [{}]", deps.join(", "));
        }
        if let Some(policy) = p.restart {
            let _ = writeln!(out, "restart = {}", string(policy.as_str()));
        }
        if let Some(n) = p.max_restarts {
            let _ = writeln!(out, "max_restarts = {n}");
        }
        if let Some(sig) = &p.kill_signal {
            let _ = writeln!(out, "kill_signal = {}", string(sig));
        }
        if let Some(ms) = p.kill_timeout_ms {
            let _ = writeln!(out, "kill_timeout = {ms}");
        }
        if let Some(check) = &p.health_check {
            let _ = writeln!(out, "health_check = {}", string(check));
        }
        if let Some(ms) = p.health_interval_ms {
            let _ = writeln!(out, "health_interval = {ms}");
        }
        match p.env_files.as_slice() {
            [] => {}
            [one] => {
                let _ = writeln!(out, "env_file = {}", string(one));
            }
            many => {
                let files: Vec<String> = many.iter().map(|f| string(f)).collect();
                let _ = writeln!(out, "env_file = [{}]", files.join(", "));
            }
        }
        if !p.env.is_empty() {
            let vars: Vec<String> =
                p.env.iter().map(|(k, v)| format!("{} = {}", key(k), string(v))).collect();
            let inline = format!("env = {{ {} }}", vars.join(", "));
            if inline.len() <= INLINE_ENV_MAX {
                let _ = writeln!(out, "{inline}");
            } else {
                let _ = writeln!(out, "\n[{}.env]", key(&p.name));
                for var in vars {
                    let _ = writeln!(out, "{var}");
                }
            }
        }
    }
    out
}

/// Text safe inside a `#` comment (one line, no control characters).
fn comment(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// A TOML key: bare when it is only `A-Z a-z 0-9 _ -`, quoted otherwise.
pub fn key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        k.to_string()
    } else {
        string(k)
    }
}

/// A TOML string: basic (`"…"`) unless it holds `"` or `\` that a literal (`'…'`) string shows
/// without escapes.
pub fn string(s: &str) -> String {
    let needs_escape = |c: char| c.is_control();
    if s.contains(['"', '\\']) && !s.contains('\'') && !s.chars().any(needs_escape) {
        return format!("'{s}'");
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Why the file was not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{} already exists: keep it, or run `pm3 init --force` to replace it", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The loader refused the text: a bug of `pm3 init`, reported with the loader's messages.
    #[error("the generated config does not load (please report this):\n{0}")]
    Invalid(String),
}

/// Writes `text` to `path` (whose directory must exist): through a temporary file in the same
/// directory that the config loader must accept first; replaces an existing file only with
/// `force`. Returns the path written.
pub fn write_checked(path: &Path, text: &str, force: bool) -> Result<PathBuf, WriteError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".pm3.toml.init-{}.tmp", std::process::id()));
    let io_err = |source| WriteError::Io { path: tmp.clone(), source };
    let _ = std::fs::remove_file(&tmp); // a leftover of a killed run with the same pid
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(io_err)?;
    let written = file.write_all(text.as_bytes()).and_then(|()| file.sync_all());
    drop(file);
    let result = written.map_err(io_err).and_then(|()| {
        config::load(&tmp, None)
            .map_err(|e| WriteError::Invalid(e.to_string().replace(&tmp_name(&tmp), "pm3.toml")))?;
        place(&tmp, path, force)
    });
    let _ = std::fs::remove_file(&tmp);
    result.map(|()| path.to_path_buf())
}

fn tmp_name(tmp: &Path) -> String {
    tmp.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Moves the checked temporary file to `path`. Without `force`, a hard link makes "create only
/// if absent" atomic; where links are not supported, a check then a rename does.
fn place(tmp: &Path, path: &Path, force: bool) -> Result<(), WriteError> {
    let io_err = |source| WriteError::Io { path: path.to_path_buf(), source };
    if force {
        return std::fs::rename(tmp, path).map_err(io_err);
    }
    match std::fs::hard_link(tmp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(WriteError::Exists(path.to_path_buf()))
        }
        Err(_) if path.symlink_metadata().is_ok() => Err(WriteError::Exists(path.to_path_buf())),
        Err(_) => std::fs::rename(tmp, path).map_err(io_err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::init::detect::{Origin, Remark};
    use crate::config::test_support::Fixture;
    use crate::spec::ProcessDef;
    use crate::spec::RestartPolicy;

    fn proposal(name: &str, origin: Origin, command: &str) -> Proposal {
        let mut p = Proposal::new(origin, command.into());
        p.name = name.into();
        p
    }

    fn sample() -> Vec<Proposal> {
        let mut web = proposal("web", Origin::Procfile { line: 1, name: "web".into() }, "sleep 1000");
        web.instances = Some(Instances::Count(3));
        let ticker = proposal(
            "ticker",
            Origin::Procfile { line: 2, name: "ticker".into() },
            r#"sh -c 'while true; do echo "tick"; sleep 1; done'"#,
        );
        let mut api = proposal(
            "dev-api",
            Origin::Script { name: "dev:api".into() },
            "printf '%s\\n' \"a\\\\b\" \u{1}\ttab",
        );
        api.depends_on = vec!["web".into(), "a.b".into()];
        api.env = vec![
            ("PLAIN".into(), "1".into()),
            ("PORT".into(), "8000".into()),
            ("with space".into(), "x\"y'z\\".into()),
            ("LINES".into(), "one\ntwo\r\u{7f}".into()),
            ("URL".into(), "http://localhost:${PORT}/".into()),
        ];
        let mut dotted = proposal("a.b", Origin::Typed, "sleep 1");
        dotted.instances = Some(Instances::Max);
        dotted.env = (0..12).map(|i| (format!("VAR_{i}"), format!("value number {i}"))).collect();
        vec![web, ticker, api, dotted, service()]
    }

    /// A compose service with every key the compose detector maps, and remarks.
    fn service() -> Proposal {
        let mut svc =
            proposal("svc", Origin::Service { file: "compose.yaml".into(), name: "svc".into() }, "sleep 5");
        svc.restart = Some(RestartPolicy::Always);
        svc.max_restarts = Some(4);
        svc.kill_signal = Some("SIGINT".into());
        svc.kill_timeout_ms = Some(10_000);
        svc.health_check = Some("exec:test \"${HOST:-x}\" != ''".into());
        svc.health_interval_ms = Some(30_000);
        svc.env_files = vec!["svc.env".into(), "more.env".into()];
        svc.remarks = vec![
            Remark::LeftOut("`ports` (the process binds this machine's ports itself)".into()),
            Remark::Note("a line\nbreak".into()),
        ];
        svc
    }

    #[test]
    fn strings_and_keys_are_escaped() {
        assert_eq!(string("sleep 1"), r#""sleep 1""#);
        assert_eq!(string(r#"sh -c "x""#), r#"'sh -c "x"'"#);
        assert_eq!(string(r#"it's "q""#), r#""it's \"q\"""#);
        assert_eq!(string("a\\b"), "'a\\b'");
        assert_eq!(string("a\nb\u{1}\u{7f}"), r#""a\nb\u0001\u007F""#);
        assert_eq!(key("web-1_x"), "web-1_x");
        assert_eq!(key("a.b"), r#""a.b""#);
        assert_eq!(key(""), r#""""#);
        for s in ["", "'", "\"'\\", "a\u{0}b", "é ☃", "\u{7f}\u{80}\u{9f}", "x'\"\n"] {
            let doc = format!("v = {}\n{} = 1\n", string(s), key(s));
            let parsed: toml::Table = toml::from_str(&doc).unwrap_or_else(|e| panic!("{doc}: {e}"));
            assert_eq!(parsed["v"].as_str(), Some(s), "{doc}");
            assert!(parsed.contains_key(s), "{doc}");
        }
    }

    #[test]
    fn rendering_round_trips_through_the_loader() {
        let fx = Fixture::new();
        let procs = sample();
        let skipped = vec![Skipped {
            origin: Origin::Service { file: "compose.yaml".into(), name: "db".into() },
            reason: "image only: pm3 runs commands, not containers".into(),
        }];
        let text = render(&procs, &skipped);
        fx.write("svc.env", "A=1\n");
        fx.write("more.env", "B=2\n");
        let cfg = fx.load(&text, None);
        let got: Vec<&ProcessDef> = cfg.processes.iter().collect();
        assert_eq!(got.len(), procs.len(), "{text}");
        for (def, p) in got.iter().zip(&procs) {
            assert_eq!(def.name, p.name, "{text}");
            assert_eq!(def.command, p.command, "{text}");
            assert_eq!(def.depends_on, p.depends_on, "{text}");
            assert_eq!(def.cwd, fx.dir(), "{text}");
            if p.env_files.is_empty() {
                assert_eq!(def.env, p.env, "{text}");
            }
        }
        let svc = got[4];
        assert_eq!((svc.restart, svc.max_restarts), (RestartPolicy::Always, 4), "{text}");
        assert_eq!((svc.kill_signal.number(), svc.kill_timeout_ms), (libc::SIGINT, 10_000), "{text}");
        assert_eq!(svc.health_check, procs[4].health_check, "{text}");
        assert_eq!(svc.health_interval_ms, 30_000, "{text}");
        assert_eq!(svc.env, [("A".to_string(), "1".to_string()), ("B".into(), "2".into())], "{text}");
        assert!(
            text.contains(
                "\n[svc]\n# not carried over: `ports` (the process binds this machine's ports itself)\n\
                 # note: a line break\ncommand = \"sleep 5\"\n"
            ),
            "{text}"
        );
        assert!(text.contains("env_file = [\"svc.env\", \"more.env\"]\n"), "{text}");
        assert_eq!(got[0].instances, 3);
        assert_eq!(got[1].instances, 1);
        assert!(got[3].instances >= 1);
        // The header says where each entry came from and what was left out.
        let header: Vec<&str> = text.lines().take_while(|l| l.starts_with('#')).collect();
        assert_eq!(
            header[1..],
            [
                "# from Procfile: web, ticker",
                "# from package.json scripts: dev-api (`dev:api`)",
                "# typed in `pm3 init`: a.b",
                "# from compose.yaml services: svc",
                "# not included: compose.yaml service `db`: image only: pm3 runs commands, not containers",
            ],
            "{text}"
        );
        assert!(text.contains("\n[web]\ncommand = \"sleep 1000\"\ninstances = 3\n"), "{text}");
        assert!(
            text.contains("instances = \"max\"\n\n[\"a.b\".env]\nVAR_0 = \"value number 0\"\n"),
            "{text}"
        );
        assert!(text.contains("depends_on = [\"web\", \"a.b\"]\n\n[dev-api.env]\nPLAIN = \"1\"\n"), "{text}");
        assert!(text.contains("\n[ticker]\ncommand = \"sh -c 'while"), "{text}");
        assert!(!text.contains("instances = 1"), "{text}");
    }

    #[test]
    fn write_checked_keeps_existing_files_without_force() {
        let fx = Fixture::new();
        let path = fx.config_path();
        let text = render(&sample()[..2], &[]);
        assert_eq!(write_checked(&path, &text, false).expect("write"), path);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);

        let other = render(&sample()[1..2], &[]);
        let err = write_checked(&path, &other, false).expect_err("exists");
        assert!(matches!(err, WriteError::Exists(_)), "{err}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);

        write_checked(&path, &other, true).expect("forced");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), other);

        let err = write_checked(&path, "[web]\ncommand = 3\n", true).expect_err("invalid");
        assert!(matches!(err, WriteError::Invalid(_)), "{err}");
        assert!(err.to_string().contains("pm3.toml:2:11"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), other);
        // No temporary file is left behind.
        let entries: Vec<_> = std::fs::read_dir(fx.dir()).expect("list").filter_map(Result::ok).collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
    }
}
