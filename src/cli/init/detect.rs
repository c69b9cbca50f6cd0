//! Finding processes to propose for `pm3 init`: `name: command` lines of a `Procfile`, the
//! `scripts` of `package.json`, and (in `compose`) the services of a docker-compose file. Each
//! detector is a function of the file's text (compose's also of the environment and the
//! directory); [`scan`] reads the files of a directory, runs them, skips commands `/bin/sh`
//! cannot parse, and gives every proposal a valid, unique process name (`web`, `web-2`),
//! rewriting `depends_on` to match.
//!
//! Nothing here prints or asks: what was found, what was left out and why, and what could not
//! be read all come back in a [`Found`] for the wizard and the renderer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;

use super::compose::{self, Host};
use crate::process::spawn;
use crate::spec::RestartPolicy;

/// Longest process name pm3 accepts (spec §2).
const MAX_NAME_LEN: usize = 64;

/// `package.json` scripts that run the app's server, in order of preference: the first one there
/// is proposed; the others, most often the same server run another way (`dev` beside `start`),
/// are only offered.
const SERVER_SCRIPTS: &[&str] = &["start", "dev", "serve"];
/// Words that, as a part of a `package.json` script name (`worker`, `worker:email`,
/// `mail-worker`), mark something long-running beside the server: proposed too.
const LONG_RUNNING_WORDS: &[&str] =
    &["worker", "workers", "queue", "jobs", "scheduler", "cron", "clock", "consumer", "bot", "daemon"];
/// `package.json` scripts that run once (tests, builds, linters…) and are never offered; a name
/// is matched by its first part (`test:watch`, `build-css`).
const ONE_SHOT_SCRIPTS: &[&str] = &[
    "test",
    "build",
    "lint",
    "format",
    "fmt",
    "prettier",
    "typecheck",
    "type-check",
    "tsc",
    "check",
    "clean",
    "coverage",
    "e2e",
    "release",
    "deploy",
    "migrate",
    "seed",
    "compile",
    "bundle",
    "generate",
    "codegen",
    "docs",
    "ci",
];
/// npm lifecycle scripts (run by npm itself around install/publish), never offered.
const NPM_LIFECYCLE: &[&str] = &[
    "install",
    "preinstall",
    "postinstall",
    "uninstall",
    "preuninstall",
    "postuninstall",
    "prepare",
    "prepublish",
    "prepublishOnly",
    "prepack",
    "postpack",
    "publish",
    "postpublish",
    "version",
    "preversion",
    "postversion",
    "dependencies",
];

/// Compose file names, in the order docker compose looks for them.
pub const COMPOSE_FILES: &[&str] =
    &["compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"];

/// Where a proposal came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A `Procfile` line (1-based) and the name written there.
    Procfile { line: usize, name: String },
    /// A `package.json` script.
    Script { name: String },
    /// A service of the compose file `file`.
    Service { file: String, name: String },
    /// Typed in by the user in the wizard.
    Typed,
}

impl Origin {
    /// The name the source gave the entry (`None` for typed ones).
    pub fn key(&self) -> Option<&str> {
        match self {
            Origin::Procfile { name, .. } | Origin::Script { name } | Origin::Service { name, .. } => {
                Some(name)
            }
            Origin::Typed => None,
        }
    }

    /// The file it came from (`from Procfile`), as the header comment groups them.
    pub fn source(&self) -> String {
        match self {
            Origin::Procfile { .. } => "from Procfile".into(),
            Origin::Script { .. } => "from package.json scripts".into(),
            Origin::Service { file, .. } => format!("from {file} services"),
            Origin::Typed => "typed in `pm3 init`".into(),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Procfile { line, name } => write!(f, "Procfile line {line} (`{name}`)"),
            Origin::Script { name } => write!(f, "package.json script `{name}`"),
            Origin::Service { file, name } => write!(f, "{file} service `{name}`"),
            Origin::Typed => f.write_str("typed in"),
        }
    }
}

/// `instances` of a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instances {
    Count(u32),
    /// One per CPU.
    Max,
}

impl fmt::Display for Instances {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Instances::Count(n) => write!(f, "{n}"),
            Instances::Max => f.write_str("max"),
        }
    }
}

impl std::str::FromStr for Instances {
    type Err = String;

    fn from_str(s: &str) -> Result<Instances, String> {
        let s = s.trim();
        if s == "max" {
            return Ok(Instances::Max);
        }
        match s.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(Instances::Count(n)),
            _ => Err(format!("`{s}` is not a number of instances (1 or more, or `max`)")),
        }
    }
}

/// One process to write. `depends_on` holds final process names once [`scan`] returns. Keys
/// left `None` or empty are not written (pm3's defaults apply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub name: String,
    pub origin: Origin,
    pub command: String,
    pub instances: Option<Instances>,
    pub depends_on: Vec<String>,
    pub env: Vec<(String, String)>,
    /// `env_file` paths, relative to the directory of `pm3.toml`.
    pub env_files: Vec<String>,
    pub restart: Option<RestartPolicy>,
    pub max_restarts: Option<u32>,
    pub health_check: Option<String>,
    pub health_interval_ms: Option<u64>,
    /// `kill_signal`, as the source wrote it (a name pm3 accepts).
    pub kill_signal: Option<String>,
    pub kill_timeout_ms: Option<u64>,
    /// What the source said that this proposal does not carry over as written, one per key.
    pub remarks: Vec<Remark>,
}

impl Proposal {
    /// A proposal named after its origin, with only a command.
    pub fn new(origin: Origin, command: String) -> Proposal {
        let name = origin.key().unwrap_or_default().to_string();
        Proposal {
            name,
            origin,
            command,
            instances: None,
            depends_on: Vec::new(),
            env: Vec::new(),
            env_files: Vec::new(),
            restart: None,
            max_restarts: None,
            health_check: None,
            health_interval_ms: None,
            kill_signal: None,
            kill_timeout_ms: None,
            remarks: Vec::new(),
        }
    }
}

/// Something of a source's entry that its proposal does not carry over as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remark {
    /// A key (or a part of one) with no place in `pm3.toml`: the key, and why.
    LeftOut(String),
    /// A key carried over with a change worth knowing.
    Note(String),
}

impl fmt::Display for Remark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Remark::LeftOut(what) => write!(f, "not carried over: {what}"),
            Remark::Note(what) => write!(f, "note: {what}"),
        }
    }
}

/// An entry of a source that is not proposed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub origin: Origin,
    pub reason: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.reason)
    }
}

/// Everything [`scan`] found in a directory.
#[derive(Debug, Default)]
pub struct Found {
    /// Proposed processes, in source order (Procfile, package.json, compose), named uniquely.
    pub proposals: Vec<Proposal>,
    /// `package.json` scripts offered only if the user picks them (named after `proposals`).
    pub optional: Vec<Proposal>,
    /// Entries left out, with the reason.
    pub skipped: Vec<Skipped>,
    /// Other things worth telling: unreadable files, dropped `depends_on` entries.
    pub notes: Vec<String>,
}

/// What one detector returns: proposals (named as in the source, `depends_on` in source names
/// too), optional ones, skipped entries and notes.
#[derive(Debug, Default, PartialEq)]
pub struct Detected {
    pub proposals: Vec<Proposal>,
    pub optional: Vec<Proposal>,
    pub skipped: Vec<Skipped>,
    pub notes: Vec<String>,
}

/// Reads `Procfile`, `package.json` and the first compose file of `dir` and names the results;
/// `env` is the environment `pm3 init` runs in (compose interpolates from it). A file that does
/// not exist is no error; one that cannot be read or parsed becomes a note.
pub fn scan(dir: &Path, env: &BTreeMap<String, String>) -> Found {
    let mut notes = Vec::new();
    let mut read = |name: &str| -> Option<String> {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            // A byte order mark is no part of the content.
            Ok(text) => Some(text.strip_prefix('\u{feff}').map(str::to_string).unwrap_or(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                notes.push(format!("cannot read {name}: {e}"));
                None
            }
        }
    };
    let mut sources = Vec::new();
    if let Some(text) = read("Procfile") {
        sources.push(procfile(&text));
    }
    if let Some(text) = read("package.json") {
        sources.push(package_json(&text));
    }
    let compose = COMPOSE_FILES.iter().find(|f| dir.join(f).exists());
    if let Some(file) = compose
        && let Some(text) = read(file)
    {
        sources.push(compose::compose_file(file, &text, &Host { env, dir }));
    }
    for src in &mut sources {
        src.proposals = parsable(std::mem::take(&mut src.proposals), &mut src.skipped);
        src.optional = parsable(std::mem::take(&mut src.optional), &mut src.skipped);
    }
    let mut found = name_all(sources);
    notes.append(&mut found.notes);
    found.notes = notes;
    found
}

/// The proposals whose command runs directly or parses in `/bin/sh`; the others are skipped,
/// with the shell's reason (the config loader would refuse them).
fn parsable(list: Vec<Proposal>, skipped: &mut Vec<Skipped>) -> Vec<Proposal> {
    let shell: Vec<&str> =
        list.iter().map(|p| p.command.as_str()).filter(|c| spawn::runs_in_shell(c)).collect();
    let mut errors = spawn::shell_syntax_errors(&shell).into_iter();
    let mut kept = Vec::new();
    for p in list {
        let error = if spawn::runs_in_shell(&p.command) { errors.next().flatten() } else { None };
        match error {
            Some(e) => skipped.push(Skipped { origin: p.origin, reason: format!("shell syntax error: {e}") }),
            None => kept.push(p),
        }
    }
    kept
}

/// Gives every proposal a valid name unique across all sources, in order, then the optional
/// ones; rewrites `depends_on` (source names, within one source) to the final names, dropping
/// (with a note) those that name no proposal of that source.
pub fn name_all(sources: Vec<Detected>) -> Found {
    let mut names = Names::default();
    let mut found = Found::default();
    let mut optional = Vec::new();
    for mut src in sources {
        let mut renamed: HashMap<String, String> = HashMap::new();
        for p in &mut src.proposals {
            let final_name = names.claim(&p.name);
            renamed.insert(std::mem::replace(&mut p.name, final_name.clone()), final_name);
        }
        for p in &mut src.proposals {
            let deps = std::mem::take(&mut p.depends_on);
            for dep in deps {
                match renamed.get(&dep) {
                    Some(name) if !p.depends_on.contains(name) => p.depends_on.push(name.clone()),
                    Some(_) => {}
                    None => found.notes.push(format!(
                        "{}: `depends_on` entry `{dep}` left out (it is not a process here)",
                        p.origin
                    )),
                }
            }
        }
        found.proposals.append(&mut src.proposals);
        optional.append(&mut src.optional);
        found.skipped.append(&mut src.skipped);
        found.notes.append(&mut src.notes);
    }
    for mut p in optional {
        p.name = names.claim(&p.name);
        found.optional.push(p);
    }
    found
}

/// Process names handed out so far.
#[derive(Debug, Default)]
pub struct Names {
    taken: HashSet<String>,
}

impl Names {
    /// The sanitized `raw`, or `<it>-2`, `<it>-3`… when that is taken; marks it used.
    pub fn claim(&mut self, raw: &str) -> String {
        let base = sanitize(raw);
        let mut name = base.clone();
        let mut n = 2u64;
        while self.taken.contains(&name) {
            let suffix = format!("-{n}");
            // `sanitize` returns ASCII only, so any byte index is a char boundary.
            let keep = base.len().min(MAX_NAME_LEN - suffix.len());
            name = format!("{}{suffix}", &base[..keep]);
            n += 1;
        }
        self.taken.insert(name.clone());
        name
    }
}

/// A valid process name made from `raw`: every character outside `A-Z a-z 0-9 _ - .` becomes
/// `-`, a leading `.` too; cut to 64 characters; `process` when nothing is left.
pub fn sanitize(raw: &str) -> String {
    let mut name: String = raw
        .trim()
        .chars()
        .take(MAX_NAME_LEN)
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '-' })
        .collect();
    if name.starts_with('.') {
        name.replace_range(..1, "-");
    }
    if name.is_empty() { "process".into() } else { name }
}

/// Why `name` cannot be a process name, `None` when it can (the rule of spec §2).
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("a name is needed".into())
    } else if name.len() > MAX_NAME_LEN {
        Some(format!("at most {MAX_NAME_LEN} characters"))
    } else if name.starts_with('.') {
        Some("it must not start with `.`".into())
    } else {
        name.chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .map(|c| format!("`{}` is not allowed: use A-Z a-z 0-9 _ - .", c.escape_default()))
    }
}

/// The `name: command` lines of a Procfile. Blank lines and `#` comments are ignored; the
/// command is everything after the first `:` (so it may hold colons itself).
pub fn procfile(text: &str) -> Detected {
    let mut out = Detected::default();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line.split_once(':').map(|(n, c)| (n.trim(), c.trim()));
        match parsed {
            Some((name, command)) if !name.is_empty() && !name.contains(char::is_whitespace) => {
                let origin = Origin::Procfile { line: line_no, name: name.to_string() };
                if command.is_empty() {
                    out.skipped.push(Skipped { origin, reason: "no command after `:`".into() });
                } else if command.contains('\0') {
                    out.skipped.push(Skipped { origin, reason: "the command holds a NUL byte".into() });
                } else {
                    out.proposals.push(Proposal::new(origin, command.to_string()));
                }
            }
            _ => out.notes.push(format!("Procfile line {line_no} is not `name: command`; left out")),
        }
    }
    out
}

/// Why a `package.json` script is not offered at all, `None` when it may be picked.
fn script_skip_reason(name: &str, all: &serde_json::Map<String, serde_json::Value>) -> Option<&'static str> {
    let base = name.split([':', '-']).next().unwrap_or(name);
    if ONE_SHOT_SCRIPTS.contains(&base) || ONE_SHOT_SCRIPTS.contains(&name) {
        return Some("runs once (tests, build, lint), not a long-running process");
    }
    if NPM_LIFECYCLE.contains(&name) {
        return Some("an npm lifecycle script");
    }
    let hook_of = name.strip_prefix("pre").or_else(|| name.strip_prefix("post"));
    if let Some(target) = hook_of
        && (all.contains_key(target) || NPM_LIFECYCLE.contains(&target) || ONE_SHOT_SCRIPTS.contains(&target))
    {
        return Some("a pre/post hook npm runs around another script");
    }
    None
}

/// The `scripts` of a `package.json`, as `npm run <script>`: the server (`start`, else `dev`,
/// else `serve`) and the long-running scripts beside it (`worker`…) are proposed; tests,
/// builds, linters and pre/post hooks are skipped; the rest (the other server scripts among
/// them) are optional (the wizard offers them), in name order.
pub fn package_json(text: &str) -> Detected {
    let mut out = Detected::default();
    let root: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            out.notes.push(format!("package.json is not valid JSON ({e}); left out"));
            return out;
        }
    };
    let Some(scripts) = root.get("scripts") else { return out };
    let Some(scripts) = scripts.as_object() else {
        out.notes.push("package.json: `scripts` is not an object; left out".into());
        return out;
    };
    for (name, body) in scripts {
        let origin = Origin::Script { name: name.clone() };
        if body.as_str().is_none_or(|b| b.trim().is_empty()) {
            out.skipped.push(Skipped { origin, reason: "not a command string".into() });
            continue;
        }
        if let Some(reason) = script_skip_reason(name, scripts) {
            out.skipped.push(Skipped { origin, reason: reason.into() });
            continue;
        }
        let proposal = Proposal::new(origin, format!("npm run {}", shell_words::quote(name)));
        let long_running = name.split([':', '-', '_']).any(|part| LONG_RUNNING_WORDS.contains(&part));
        if long_running {
            out.proposals.push(proposal);
        } else {
            out.optional.push(proposal);
        }
    }
    // `serde_json` keeps keys sorted: the server goes first.
    let server =
        SERVER_SCRIPTS.iter().find_map(|s| out.optional.iter().position(|p| p.origin.key() == Some(s)));
    if let Some(i) = server {
        out.proposals.insert(0, out.optional.remove(i));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_of(ps: &[Proposal]) -> Vec<&str> {
        ps.iter().map(|p| p.name.as_str()).collect()
    }

    fn commands_of(ps: &[Proposal]) -> Vec<&str> {
        ps.iter().map(|p| p.command.as_str()).collect()
    }

    #[test]
    fn procfile_lines_comments_blanks_and_colons() {
        let text = "# the web tier\n\
                    web: bundle exec puma -b tcp://0.0.0.0:3000\r\n\
                    \n\
                    \t  \n\
                    worker:sh -c 'while true; do echo tick; sleep 1; done'\n\
                    # clock: disabled\n\
                    not a process line\n\
                    empty:\n\
                    release : rake db:migrate\n";
        let d = procfile(text);
        assert_eq!(names_of(&d.proposals), ["web", "worker", "release"]);
        assert_eq!(
            commands_of(&d.proposals),
            [
                "bundle exec puma -b tcp://0.0.0.0:3000",
                "sh -c 'while true; do echo tick; sleep 1; done'",
                "rake db:migrate"
            ]
        );
        assert_eq!(d.proposals[0].origin, Origin::Procfile { line: 2, name: "web".into() });
        assert_eq!(d.proposals[2].origin, Origin::Procfile { line: 9, name: "release".into() });
        assert_eq!(d.notes, ["Procfile line 7 is not `name: command`; left out"]);
        assert_eq!(d.skipped.len(), 1);
        assert_eq!(d.skipped[0].to_string(), "Procfile line 8 (`empty`): no command after `:`");
        assert_eq!(procfile(""), Detected::default());
    }

    #[test]
    fn package_json_scripts_selection() {
        let text = r#"{
            "name": "app",
            "scripts": {
                "build": "tsc",
                "prestart": "npm run build",
                "start": "node dist/server.js",
                "dev": "nodemon src/server.ts",
                "test": "jest",
                "test:watch": "jest --watch",
                "lint": "eslint .",
                "lint:fix": "eslint --fix .",
                "postinstall": "patch-package",
                "prepare": "husky install",
                "preview": "vite preview",
                "worker": "node worker.js",
                "dev:api": "nodemon api.ts",
                "serve": "http-server dist",
                "odd": 3
            }
        }"#;
        let d = package_json(text);
        // One server (`dev` and `serve` run the same app another way), and the worker.
        assert_eq!(names_of(&d.proposals), ["start", "worker"]);
        assert_eq!(commands_of(&d.proposals), ["npm run start", "npm run worker"]);
        assert_eq!(names_of(&d.optional), ["dev", "dev:api", "preview", "serve"]);
        assert_eq!(d.optional[1].command, "npm run dev:api");
        let skipped: Vec<&str> = d.skipped.iter().filter_map(|s| s.origin.key()).collect();
        assert_eq!(
            skipped,
            ["build", "lint", "lint:fix", "odd", "postinstall", "prepare", "prestart", "test", "test:watch"]
        );
        assert!(d.notes.is_empty());
    }

    #[test]
    fn package_json_server_and_long_running_scripts() {
        let d = package_json(
            r#"{"scripts": {"serve": "x", "dev": "x", "mail-worker": "x", "queue:email": "x",
                "typecheck": "x", "format:check": "x", "build-css": "x", "clean": "x", "storybook": "x"}}"#,
        );
        assert_eq!(names_of(&d.proposals), ["dev", "mail-worker", "queue:email"]);
        assert_eq!(names_of(&d.optional), ["serve", "storybook"]);
        let skipped: Vec<&str> = d.skipped.iter().filter_map(|s| s.origin.key()).collect();
        assert_eq!(skipped, ["build-css", "clean", "format:check", "typecheck"]);
        let d = package_json(r#"{"scripts": {"serve": "x", "watch": "x"}}"#);
        assert_eq!(names_of(&d.proposals), ["serve"]);
        assert_eq!(names_of(&d.optional), ["watch"]);
        let d = package_json(r#"{"scripts": {"worker": "x"}}"#);
        assert_eq!(names_of(&d.proposals), ["worker"]);
    }

    #[test]
    fn package_json_oddities() {
        assert_eq!(package_json(r#"{"name": "x"}"#), Detected::default());
        let d = package_json("{ nope");
        assert!(d.notes[0].starts_with("package.json is not valid JSON"), "{:?}", d.notes);
        let d = package_json(r#"{"scripts": ["start"]}"#);
        assert_eq!(d.notes, ["package.json: `scripts` is not an object; left out"]);
        // A script name with shell characters is quoted in the command.
        let d = package_json(r#"{"scripts": {"my app": "x"}}"#);
        assert_eq!(d.optional[0].command, "npm run 'my app'");
    }

    #[test]
    fn sanitizing_names() {
        assert_eq!(sanitize("web"), "web");
        assert_eq!(sanitize("dev:api"), "dev-api");
        assert_eq!(sanitize("my app/v2"), "my-app-v2");
        assert_eq!(sanitize(".hidden"), "-hidden");
        assert_eq!(sanitize("café"), "caf-");
        assert_eq!(sanitize("a.b_c-d"), "a.b_c-d");
        assert_eq!(sanitize(""), "process");
        assert_eq!(sanitize(&"x".repeat(100)).len(), 64);
        for raw in ["dev:api", ".x", "é", "", "a b"] {
            assert_eq!(name_problem(&sanitize(raw)), None, "{raw}");
        }
        assert!(name_problem("a:b").is_some());
        assert!(name_problem(".a").is_some());
        assert!(name_problem("").is_some());
        assert!(name_problem(&"a".repeat(65)).is_some());
        assert_eq!(name_problem(&"a".repeat(64)), None);
    }

    #[test]
    fn de_duplicating_names() {
        let mut names = Names::default();
        assert_eq!(names.claim("web"), "web");
        assert_eq!(names.claim("web"), "web-2");
        assert_eq!(names.claim("web"), "web-3");
        assert_eq!(names.claim("web-2"), "web-2-2");
        assert_eq!(names.claim("a:b"), "a-b");
        assert_eq!(names.claim("a b"), "a-b-2");
        let long = "y".repeat(64);
        assert_eq!(names.claim(&long), long);
        let second = names.claim(&long);
        assert_eq!(second, format!("{}-2", "y".repeat(62)));
        assert_eq!(name_problem(&second), None);
    }

    #[test]
    fn naming_across_sources_rewrites_depends_on() {
        let procfile = procfile("web: sleep 1\napi: sleep 2\n");
        let npm = package_json(r#"{"scripts": {"start": "x", "web": "y"}}"#);
        let env = BTreeMap::new();
        let host = Host { env: &env, dir: Path::new("/nonexistent") };
        let compose = compose::compose_file(
            "compose.yaml",
            "services:\n  web:\n    command: sleep 3\n    depends_on: [api, db, api]\n  api:\n    command: sleep 4\n  db:\n    image: postgres\n",
            &host,
        );
        let found = name_all(vec![procfile, npm, compose]);
        assert_eq!(names_of(&found.proposals), ["web", "api", "start", "web-2", "api-2"]);
        assert_eq!(found.proposals[3].depends_on, ["api-2"]);
        assert_eq!(names_of(&found.optional), ["web-3"]);
        assert_eq!(
            found.notes,
            ["compose.yaml service `web`: `depends_on` entry `db` left out (it is not a process here)"]
        );
        assert_eq!(found.skipped.len(), 1);
    }

    #[test]
    fn scan_reads_the_files_of_a_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(scan(dir.path(), &BTreeMap::new()).proposals.is_empty());
        std::fs::write(dir.path().join("Procfile"), "\u{feff}web: sleep 1\n").expect("write");
        std::fs::write(dir.path().join("docker-compose.yml"), "services:\n  a:\n    command: sleep 9\n")
            .expect("write");
        std::fs::write(dir.path().join("compose.yaml"), "services:\n  b:\n    command: sleep 8\n")
            .expect("write");
        let found = scan(dir.path(), &BTreeMap::new());
        // compose.yaml comes first in docker compose's own search order.
        assert_eq!(names_of(&found.proposals), ["web", "b"]);
        std::fs::create_dir(dir.path().join("package.json")).expect("mkdir");
        let found = scan(dir.path(), &BTreeMap::new());
        assert!(found.notes.iter().any(|n| n.starts_with("cannot read package.json")), "{:?}", found.notes);
    }

    #[test]
    fn instances_parse() {
        assert_eq!("3".parse::<Instances>(), Ok(Instances::Count(3)));
        assert_eq!(" max ".parse::<Instances>(), Ok(Instances::Max));
        assert!("0".parse::<Instances>().is_err());
        assert!("-1".parse::<Instances>().is_err());
        assert!("many".parse::<Instances>().is_err());
    }
}
