//! An `env_file` as a file the engine reads (systemd's `EnvironmentFile=`, Compose's
//! `env_file:`), or its variables written inline, so that the process gets the values pm3
//! gives it either way.
//!
//! pm3 reads env files as python-dotenv does and lets `env` win over them; the engines read
//! them their own way. A file is referred to only when every line means the same to pm3 and to
//! the engine: `KEY=VALUE` with a plain name and `=` right after it, a value without `$`, `\`,
//! `#`, backquotes or spaces (or one of those in single or double quotes on one line, with no
//! `$`, `\` or quote inside), blank lines and `#` comments. Otherwise (an `export ` prefix, a
//! `${VAR}` to expand, a multi-line value, a trailing comment…) its variables are written inline,
//! with one warning naming the file and why.
//!
//! Precedence: systemd lets an `EnvironmentFile=` win over every `Environment=`, so a file that
//! sets a variable something after it sets too (`env`, `env_<name>`, the `increment_var` of
//! the per-instance drop-ins, a later file written inline) is written inline, one warning per
//! variable. Compose lets `environment:` win over `env_file:`, as pm3 does, so there a file
//! falls back only for its syntax. A file that sets a `PM3_*` variable, which pm3 sets for each
//! instance, is written inline for both.

use std::path::PathBuf;

use super::Warnings;
use super::process::Exported;

/// One `env_file` of a process, as the CLI read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFile {
    /// The path as `pm3.toml` gives it (for warnings).
    pub given: String,
    /// Its absolute path.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
    /// Its variables as pm3 reads them, in file order (values in pm3's expansion syntax).
    pub vars: Vec<(String, String)>,
}

/// The engine whose reading of env files counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Systemd,
    Compose,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Systemd => "systemd",
            Engine::Compose => "compose",
        }
    }
}

/// What a format writes for the variables of one process.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    /// The files to refer to, in the order pm3 reads them.
    pub referred: Vec<&'a EnvFile>,
    /// The variables to write inline (names and values as instance 0 gets them), in name
    /// order: every variable of [`Exported::env`] that no referred file gives.
    pub inline: Vec<(String, String)>,
}

/// Decides, for `p`, which of its env files `engine` reads itself, warning about the others;
/// `path_ok` says whether the format can write a file's absolute path.
pub fn plan<'a>(
    p: &Exported<'a>,
    engine: Engine,
    path_ok: impl Fn(&EnvFile) -> bool,
    warnings: &mut Warnings,
) -> Plan<'a> {
    let d = p.def;
    let files = p.env_files;
    if files.is_empty() {
        return Plan { referred: Vec::new(), inline: p.env.clone() };
    }
    // `def.env` holds the files' variables, in order, then those of `env` and `env_<name>`.
    let from_files: Vec<&(String, String)> = files.iter().flat_map(|f| &f.vars).collect();
    let same = d.env.len() >= from_files.len() && d.env.iter().zip(&from_files).all(|(a, b)| a == *b);
    let config: Vec<&str> = if same {
        d.env[from_files.len()..].iter().map(|(k, _)| k.as_str()).collect()
    } else {
        for f in files {
            warnings.add(
                &d.name,
                "env_file",
                &format!("`{}` changed while exporting: its variables are written inline", f.given),
            );
        }
        return Plan { referred: Vec::new(), inline: p.env.clone() };
    };

    let mut inline: Vec<bool> = vec![false; files.len()];
    for (i, f) in files.iter().enumerate() {
        let why = if !path_ok(f) {
            Some("has a path a unit file cannot hold".to_string())
        } else if let Some(k) = f.vars.iter().map(|(k, _)| k).find(|k| k.starts_with("PM3_")) {
            Some(format!("sets `{k}`, which pm3 sets for each instance"))
        } else {
            syntax(f, engine)
        };
        if let Some(why) = why {
            warnings.add(
                &d.name,
                "env_file",
                &format!("`{}` {why}: its variables are written inline", f.given),
            );
            inline[i] = true;
        }
    }
    if engine == Engine::Systemd {
        // From the last file back: whether a file may be referred to depends on what comes after.
        for i in (0..files.len()).rev() {
            if inline[i] {
                continue;
            }
            let f = &files[i];
            let mut seen: Vec<&str> = Vec::new();
            for (k, _) in &f.vars {
                if seen.contains(&k.as_str()) {
                    continue;
                }
                seen.push(k);
                let by = if config.contains(&k.as_str()) {
                    Some("the config also sets".to_string())
                } else if p.varying.contains(k) {
                    Some("differs between instances (set by the drop-ins)".to_string())
                } else {
                    (i + 1..files.len())
                        .find(|&j| inline[j] && files[j].vars.iter().any(|(n, _)| n == k))
                        .map(|j| format!("`{}` (written inline) also sets", files[j].given))
                };
                if let Some(by) = by {
                    warnings.add(
                        &d.name,
                        "env_file",
                        &format!(
                            "`{}` sets `{k}`, which {by}: EnvironmentFile= would win over Environment=, so its variables are written inline",
                            f.given
                        ),
                    );
                    inline[i] = true;
                }
            }
        }
    }

    let referred: Vec<&'a EnvFile> =
        files.iter().zip(&inline).filter(|(_, i)| !**i).map(|(f, _)| f).collect();
    // A variable comes from a referred file when the last place that sets it is one.
    let covered = |name: &str| {
        if p.varying.iter().any(|v| v == name) || config.contains(&name) {
            return false;
        }
        let last = files.iter().rposition(|f| f.vars.iter().any(|(k, _)| k == name));
        last.is_some_and(|j| !inline[j])
    };
    let inline = p.env.iter().filter(|(k, _)| !covered(k)).cloned().collect();
    Plan { referred, inline }
}

/// Why `engine` would not read `f` as pm3 does, if it would not.
fn syntax(f: &EnvFile, engine: Engine) -> Option<String> {
    let name = engine.name();
    if f.vars.iter().any(|(_, v)| expands(v)) {
        return Some(match engine {
            Engine::Systemd => "expands `${VAR}`, which an EnvironmentFile= does not".to_string(),
            Engine::Compose => {
                "expands `${VAR}` as pm3 does (python-dotenv), which compose's env_file interpolation does not match"
                    .to_string()
            }
        });
    }
    if f.text.starts_with('\u{feff}') {
        return Some(format!("starts with a byte order mark, which {name} does not accept"));
    }
    for (n, line) in f.text.split('\n').enumerate() {
        if let Err(what) = plain_line(line) {
            return Some(format!("line {} has {what}, which {name} reads differently", n + 1));
        }
    }
    None
}

/// Whether `value` (in pm3's syntax, a literal `$` written `$$`) expands a variable.
fn expands(value: &str) -> bool {
    // Pairs are read two characters at a time: `$$` is a literal `$`, `${` expands.
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '$' && chars.next() == Some('{') {
            return true;
        }
    }
    false
}

/// `Ok` for a line every reader takes alike: blank, a `#` comment, or `KEY=VALUE` as the module
/// documentation says; else what it has.
fn plain_line(line: &str) -> Result<(), &'static str> {
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err("a control character");
    }
    let t = line.trim_start_matches([' ', '\t']);
    if t.is_empty() || t.starts_with('#') {
        return Ok(());
    }
    if t.starts_with("export ") || t.starts_with("export\t") {
        return Err("an `export ` prefix");
    }
    let Some((key, value)) = line.split_once('=') else {
        return Err("no `=`");
    };
    let mut k = key.chars();
    let name_ok = k.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !name_ok {
        return Err("spaces around `=` or a name other than letters, digits and `_`");
    }
    let quoted = |q: char, banned: &[char]| {
        value.len() >= 2
            && value.ends_with(q)
            && !value[1..value.len() - 1].contains(banned)
            && !value[1..value.len() - 1].contains('\t')
    };
    let ok = match value.chars().next() {
        None => true,
        Some('"') => quoted('"', &['"', '\\', '$', '`']),
        Some('\'') => quoted('\'', &['\'', '\\', '$', '`']),
        Some(_) => !value.contains(|c: char| c.is_whitespace() || "\"'\\$#`".contains(c)),
    };
    if ok {
        Ok(())
    } else {
        Err("quotes, spaces, `$`, `\\`, `#` or a backquote in its value (or a value on more than one line)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ProcessDef;
    use std::collections::BTreeMap;

    /// The env file `given` holding `text`, read as pm3 reads it.
    fn env_file(given: &str, text: &str) -> EnvFile {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(given);
        std::fs::write(&path, text).expect("write an env file");
        let vars = crate::config::read_env_file(&path).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        EnvFile { given: given.into(), path: PathBuf::from("/p").join(given), text: text.into(), vars }
    }

    /// The plan for a process with `files` and `env`, the files' given names referred to, the
    /// inline variables, and the warnings.
    fn decide(
        files: &[EnvFile],
        env: &[(&str, &str)],
        engine: Engine,
    ) -> (Vec<String>, Vec<(String, String)>, Vec<String>) {
        let mut d = ProcessDef::new("web", "x", "/p".into());
        d.env = files.iter().flat_map(|f| f.vars.clone()).collect();
        d.env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut e = Exported::new(&d, &BTreeMap::new()).expect("exported");
        e.env_files = files;
        let mut w = Warnings::default();
        let plan = plan(&e, engine, |_| true, &mut w);
        let referred = plan.referred.iter().map(|f| f.given.clone()).collect();
        (referred, plan.inline, w.lines(super::super::Format::Systemd))
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_plain_file_is_referred_to_and_only_env_is_inline() {
        let f = env_file("a.env", "# comment\n\nA=1\nB=\"two words\"\nC='x=y'\nD=\n");
        for engine in [Engine::Systemd, Engine::Compose] {
            let (referred, inline, warnings) = decide(std::slice::from_ref(&f), &[("E", "5")], engine);
            assert_eq!(referred, ["a.env"]);
            assert_eq!(inline, pairs(&[("E", "5")]));
            assert!(warnings.is_empty(), "{warnings:?}");
        }
    }

    #[test]
    fn a_key_env_also_sets_makes_the_file_inline_for_systemd_with_a_warning_per_key() {
        let f = env_file("a.env", "A=1\nB=2\nC=3\n");
        let (referred, inline, warnings) =
            decide(std::slice::from_ref(&f), &[("A", "9"), ("B", "8")], Engine::Systemd);
        assert!(referred.is_empty());
        assert_eq!(inline, pairs(&[("A", "9"), ("B", "8"), ("C", "3")]));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with("systemd: `env_file` (web) `a.env` sets `A`, which the config also sets"),
            "{warnings:?}"
        );
        assert!(warnings[1].contains("`a.env` sets `B`"), "{warnings:?}");
        // Compose lets `environment` win, as pm3 lets `env` win.
        let (referred, inline, warnings) = decide(&[f], &[("A", "9")], Engine::Compose);
        assert_eq!(referred, ["a.env"]);
        assert_eq!(inline, pairs(&[("A", "9")]));
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn an_expanding_file_is_inline_with_one_warning() {
        let f = env_file("x.env", "HOST=localhost\nURL=http://${HOST}/\n");
        for engine in [Engine::Systemd, Engine::Compose] {
            let (referred, inline, warnings) = decide(std::slice::from_ref(&f), &[], engine);
            assert!(referred.is_empty());
            assert_eq!(inline, pairs(&[("HOST", "localhost"), ("URL", "http://localhost/")]));
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            assert!(warnings[0].contains("`x.env` expands `${VAR}`"), "{warnings:?}");
        }
    }

    #[test]
    fn syntax_engines_read_otherwise_makes_the_file_inline() {
        for text in [
            "export A=1\n",
            "A=1 # comment\n",
            "A=\"multi\nline\"\n",
            "A = 1\n",
            "A=\"x\\\"y\"\n",
            "A=cost$5\n",
            "A='$HOME'\n",
            "A=1\r\n",
        ] {
            let f = env_file("s.env", text);
            for engine in [Engine::Systemd, Engine::Compose] {
                let (referred, _, warnings) = decide(std::slice::from_ref(&f), &[], engine);
                assert!(referred.is_empty(), "{text:?}");
                assert_eq!(warnings.len(), 1, "{text:?}: {warnings:?}");
                assert!(
                    warnings[0].contains("`s.env` line 1 has") || warnings[0].contains("control"),
                    "{text:?}: {warnings:?}"
                );
            }
        }
    }

    #[test]
    fn a_referred_file_before_an_inline_one_that_sets_its_key_is_inline_for_systemd() {
        let a = env_file("a.env", "A=1\nK=first\n");
        let b = env_file("b.env", "export K=second\n");
        let c = env_file("c.env", "C=3\n");
        let (referred, inline, warnings) = decide(&[a.clone(), b.clone(), c.clone()], &[], Engine::Systemd);
        assert_eq!(referred, ["c.env"]);
        assert_eq!(inline, pairs(&[("A", "1"), ("K", "second")]));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[1].contains("`a.env` sets `K`, which `b.env` (written inline) also sets"),
            "{warnings:?}"
        );
        // For Compose, `environment` holds K with its final value.
        let (referred, inline, _) = decide(&[a, b, c], &[], Engine::Compose);
        assert_eq!(referred, ["a.env", "c.env"]);
        assert_eq!(inline, pairs(&[("K", "second")]));
    }

    #[test]
    fn a_file_with_the_increment_var_or_a_pm3_variable_is_inline_for_systemd() {
        let f = env_file("p.env", "PORT=3000\n");
        let mut d = ProcessDef::new("web", "x", "/p".into());
        d.env = f.vars.clone();
        d.instances = 2;
        d.increment_var = Some("PORT".into());
        let mut e = Exported::new(&d, &BTreeMap::new()).expect("exported");
        let files = [f];
        e.env_files = &files;
        let mut w = Warnings::default();
        let plan = plan(&e, Engine::Systemd, |_| true, &mut w);
        assert!(plan.referred.is_empty());
        assert_eq!(plan.inline, pairs(&[("PORT", "3000")]));
        assert!(
            w.lines(super::super::Format::Systemd)[0]
                .contains("`p.env` sets `PORT`, which differs between instances")
        );

        let g = env_file("g.env", "PM3_INSTANCE_ID=7\n");
        let (referred, _, warnings) = decide(&[g], &[], Engine::Compose);
        assert!(referred.is_empty());
        assert!(
            warnings[0].contains("sets `PM3_INSTANCE_ID`, which pm3 sets for each instance"),
            "{warnings:?}"
        );
    }
}
