//! The resolved definition of one `[process]` table: what the config loader produces, what the
//! protocol carries to the daemon, and what the daemon expands into instances.
//!
//! Everything here is already validated and typed (paths absolute, durations in ms, signals
//! parsed), so the daemon never re-reads or re-checks a config file.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::process::signal::Signal;

/// One process definition from a config file, before cluster expansion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessDef {
    /// The table name (`worker`); instances are named `worker:0` … when `instances` > 1.
    pub name: String,
    /// The command line as written; split or run through `/bin/sh -c` at spawn time.
    pub command: String,
    /// Absolute working directory.
    pub cwd: PathBuf,
    /// Variables the config adds on top of the starting environment, in the order they apply
    /// (`env_file` files in order, then `env`, then `env_<name>`); a later entry wins. Values are
    /// not yet `${VAR}`-expanded: that needs the instance's final environment.
    pub env: Vec<(String, String)>,
    /// Number of instances (>= 1; `"max"` is resolved to the CPU count by the loader).
    pub instances: u32,
    /// Variable in `env` holding an integer; instance `i` gets that value plus `i`.
    pub increment_var: Option<String>,
    /// Group set in the file; `None` means the default (the process name when clustered).
    pub group: Option<String>,
    /// Names of processes (not instances) this one waits for.
    pub depends_on: Vec<String>,
    /// Signal sent to the process group on stop.
    pub kill_signal: Signal,
    /// Grace period before SIGKILL, in milliseconds.
    pub kill_timeout_ms: u64,
    /// What to do when the process exits by itself.
    pub restart: RestartPolicy,
    /// Consecutive short runs allowed before giving up (`errored`).
    pub max_restarts: u32,
    /// A run longer than this (ms) resets the consecutive-restart budget.
    pub min_uptime_ms: u64,
    /// First delay (ms) before restarting after a short run; doubles per short run, capped.
    pub restart_delay_ms: u64,
    /// Exit codes that never trigger a restart.
    pub stop_exit_codes: Vec<i32>,
    /// Readiness probe as written (`http://…`, `https://…`, `tcp://host:port`, `exec:cmd`);
    /// `${VAR}` is expanded per instance before it is parsed.
    pub health_check: Option<String>,
    /// Probe period while `starting` or `unhealthy` (ms).
    pub health_interval_ms: u64,
    /// Time from spawn until a process whose probe never passed is `unhealthy` (ms).
    pub health_timeout_ms: u64,
    /// How long one probe may take (ms); `None`: the smaller of 5000 and `health_timeout`.
    /// Absent from state and dump files written before it existed.
    #[serde(default)]
    pub health_probe_timeout_ms: Option<u64>,
    /// Hook run through `sh -c` before every start; failing means the start fails.
    pub pre_start: Option<String>,
    /// Hook run through `sh -c` after every exit.
    pub post_stop: Option<String>,
    /// Restart when the resident memory of the process tree exceeds this many bytes.
    pub max_memory: Option<u64>,
    /// Directory whose changes restart the process.
    pub watch: Option<PathBuf>,
    /// Globs (relative to `watch`) whose changes are ignored.
    pub watch_ignore: Vec<String>,
    /// Quiet period before a watch restart (ms).
    pub watch_debounce_ms: u64,
    /// Cron expression (5 fields, or 6 with seconds first) for periodic restarts.
    pub cron_restart: Option<String>,
    /// strftime format put before every log line (the time it was read).
    pub log_date_format: Option<String>,
    /// A log file past this many bytes is rotated.
    pub log_max_size: u64,
    /// Rotated log files kept.
    pub log_max_files: u32,
    /// The `--env` this definition was loaded with (its `env_<name>` is in `env`): part of the
    /// process's state, kept by restart, reload and resurrect until a command names another.
    #[serde(default)]
    pub env_name: Option<String>,
    /// Whether rotated log files are gzipped (`.1.gz` …). A state file written before the key
    /// existed gets the default.
    #[serde(default = "default_log_compress")]
    pub log_compress: bool,
    /// Sockets pm3 binds for the process and passes to each instance (`tcp://…`, `unix:…`),
    /// as written, in order (see [`crate::listen`]). Absent from older state files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listen: Vec<String>,
}

/// `log_max_size` by default. With [`DEFAULT_LOG_MAX_FILES`], the rotated files alone hold
/// 200 MiB of a stream: a burst of 1,000,000 lines of 100 bytes (100 MB) is kept whole, twice
/// over, or with a 24-byte `log_date_format` stamp on every line (125 MB), wherever in the
/// current file it starts. Worst case on disk: 220 MiB a stream, 440 MiB a process (stdout and
/// stderr), less once compressed (see docs/architecture.md, "Log retention").
pub const DEFAULT_LOG_MAX_SIZE: u64 = 20 << 20;

/// `log_max_files` by default (see [`DEFAULT_LOG_MAX_SIZE`]). Ten files of 20 MiB rather than
/// fewer larger ones: the same guarantee for less disk (the current file is the excess), and
/// `pm3 log` reaching into a compressed rotation decompresses at most 20 MiB.
pub const DEFAULT_LOG_MAX_FILES: u32 = 10;

/// `log_compress` by default: on. gzip level 1 costs ~4 ms of one (niced) core per MB rotated
/// on service logs and saves 65–96 % of their bytes (docs/architecture.md).
pub const DEFAULT_LOG_COMPRESS: bool = true;

fn default_log_compress() -> bool {
    DEFAULT_LOG_COMPRESS
}

/// When a process that exits by itself is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Restart unless it exited with code 0 (or a code in `stop_exit_codes`).
    OnFailure,
    /// Restart whatever the exit (except a code in `stop_exit_codes`).
    Always,
    Never,
}

impl RestartPolicy {
    /// The spelling of the config file (`on_failure`).
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::OnFailure => "on_failure",
            RestartPolicy::Always => "always",
            RestartPolicy::Never => "never",
        }
    }
}

impl ProcessDef {
    /// Defaults for every optional key; the loader overwrites what the file sets.
    pub fn new(name: impl Into<String>, command: impl Into<String>, cwd: PathBuf) -> ProcessDef {
        ProcessDef {
            name: name.into(),
            command: command.into(),
            cwd,
            env: Vec::new(),
            instances: 1,
            increment_var: None,
            group: None,
            depends_on: Vec::new(),
            kill_signal: Signal::TERM,
            kill_timeout_ms: 5000,
            restart: RestartPolicy::OnFailure,
            max_restarts: 15,
            min_uptime_ms: 1000,
            restart_delay_ms: 100,
            stop_exit_codes: Vec::new(),
            health_check: None,
            health_interval_ms: 1000,
            health_timeout_ms: 30_000,
            health_probe_timeout_ms: None,
            pre_start: None,
            post_stop: None,
            max_memory: None,
            watch: None,
            watch_ignore: vec![".git".into(), "node_modules".into()],
            watch_debounce_ms: 500,
            cron_restart: None,
            log_date_format: None,
            log_max_size: DEFAULT_LOG_MAX_SIZE,
            log_max_files: DEFAULT_LOG_MAX_FILES,
            log_compress: DEFAULT_LOG_COMPRESS,
            env_name: None,
            listen: Vec::new(),
        }
    }

    pub fn kill_timeout(&self) -> Duration {
        Duration::from_millis(self.kill_timeout_ms)
    }

    pub fn rotation(&self) -> crate::logs::file::Rotation {
        crate::logs::file::Rotation {
            max_size: self.log_max_size,
            max_files: self.log_max_files,
            compress: self.log_compress,
        }
    }

    pub fn min_uptime(&self) -> Duration {
        Duration::from_millis(self.min_uptime_ms)
    }

    /// How long one health probe may take: `health_probe_timeout`, else the smaller of 5 s and
    /// `health_timeout`.
    pub fn probe_timeout(&self) -> Duration {
        Duration::from_millis(
            self.health_probe_timeout_ms.unwrap_or(DEFAULT_PROBE_TIMEOUT_MS.min(self.health_timeout_ms)),
        )
    }
}

/// Longest a health probe may take when `health_probe_timeout` is not set (and `health_timeout`
/// is longer).
pub const DEFAULT_PROBE_TIMEOUT_MS: u64 = 5000;

/// Most instances one process may have (`instances`, `pm3 scale`).
///
/// Each instance costs the daemon five descriptors while it runs (the read ends of its two
/// output pipes, its pidfd, its two log files) and at least one pid. 1024 instances are 5120
/// descriptors, within the soft limit the daemon raises itself to (65536 where the hard limit
/// allows) with room for several such processes, and far below the default `pid_max` (32768);
/// it is also 8× the cores of the largest common servers, for `instances = "max"`. Beyond it a
/// typo (`100000`) would fork until the machine's limits and a raw request could make the
/// daemon allocate without bound; both are refused instead.
pub const MAX_INSTANCES: u32 = 1024;

/// Most instances of all the processes of one config file together: 4096 instances are 20480
/// descriptors, a third of the daemon's descriptor budget (see [`MAX_INSTANCES`]).
pub const MAX_FILE_INSTANCES: u32 = 4096;

/// Smallest `log_max_size`: a log file rotates at a line boundary, so a limit smaller than a
/// few lines means a rotation (renames, a new file) for every line written. 4 KiB is one page.
pub const MIN_LOG_MAX_SIZE: u64 = 4 << 10;

/// Most rotated log files kept (`log_max_files`).
pub const MAX_LOG_FILES: u32 = 1000;

/// Largest duration in milliseconds (`kill_timeout`, `min_uptime`, …): what TOML's integers hold.
pub const MAX_MS: u64 = i64::MAX as u64;

/// Longest process or group name.
pub const MAX_NAME_LEN: usize = 64;

/// Why `name` is not a valid process (or group) name, `None` when it is: 1 to 64 characters of
/// `A-Z a-z 0-9 _ - .`, not starting with `.`; `:` is reserved for instance names. Names become
/// file names (`logs/<name>-out.log`), so this is also what keeps them inside `logs/`.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("it must not be empty".into());
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Some(format!("it is longer than {MAX_NAME_LEN} characters"));
    }
    if name.starts_with('.') {
        return Some("it must not start with `.`".into());
    }
    if name.contains(':') {
        return Some("`:` is reserved for instance names like `worker:0`".into());
    }
    name.chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        .map(|c| format!("character `{}` is not allowed (use `A-Z a-z 0-9 _ - .`)", show(&c.to_string())))
}

/// True when `name` cannot be an environment variable name (empty, `=` or NUL in it).
fn var_name_problem(name: &str) -> bool {
    name.is_empty() || name.contains(['=', '\0'])
}

/// A user-written string made safe for a one-line message: control characters escaped, long
/// strings cut.
pub fn show(s: &str) -> String {
    const MAX: usize = 80;
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// One rule a definition breaks: the key it is about, as written in `pm3.toml` (`command`,
/// `env.PORT`, `name` for the table itself), and one sentence naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub key: String,
    pub message: String,
}

impl Invalid {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid { key: key.into(), message: message.into() }
    }
}

impl ProcessDef {
    /// Every rule this definition breaks, in key order; empty when it is valid.
    ///
    /// The one place the rules on a single definition live: the config loader reports each at
    /// the line and column of its key, and the daemon checks every definition it receives again
    /// (the socket is an API: a raw request skips the CLI), so no value can make it allocate
    /// without bound, spin, or write outside its directory.
    pub fn problems(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        let nul = |key: &str, value: &str, out: &mut Vec<Invalid>| {
            if value.contains('\0') {
                out.push(Invalid::new(key, format!("`{key}` must not contain a NUL character")));
            }
        };
        if let Some(reason) = name_problem(&self.name) {
            out.push(Invalid::new("name", format!("invalid process name `{}`: {reason}", show(&self.name))));
        }
        if self.command.trim().is_empty() {
            out.push(Invalid::new("command", "`command` must not be empty"));
        }
        nul("command", &self.command, &mut out);
        path_problems("cwd", &self.cwd, &mut out);
        for (k, v) in &self.env {
            if var_name_problem(k) {
                out.push(Invalid::new(
                    format!("env.{k}"),
                    format!("invalid variable name `{}` in `env`", show(k)),
                ));
            } else {
                nul(&format!("env.{k}"), v, &mut out);
            }
        }
        if self.instances == 0 {
            out.push(Invalid::new("instances", "`instances` must be at least 1, got 0"));
        } else if self.instances > MAX_INSTANCES {
            out.push(Invalid::new(
                "instances",
                format!("`instances` must be at most {MAX_INSTANCES}, got {}", self.instances),
            ));
        }
        if let Some(var) = &self.increment_var
            && var_name_problem(var)
        {
            out.push(Invalid::new(
                "increment_var",
                format!("invalid variable name `{}` in `increment_var`", show(var)),
            ));
        }
        if let Some(group) = &self.group
            && let Some(reason) = name_problem(group)
        {
            out.push(Invalid::new("group", format!("invalid group name `{}`: {reason}", show(group))));
        }
        for dep in &self.depends_on {
            if let Some(reason) = name_problem(dep) {
                out.push(Invalid::new(
                    "depends_on",
                    format!("`depends_on` names an invalid process name `{}`: {reason}", show(dep)),
                ));
            }
        }
        for (key, ms, min) in [
            ("kill_timeout", self.kill_timeout_ms, 0),
            ("min_uptime", self.min_uptime_ms, 0),
            ("restart_delay", self.restart_delay_ms, 0),
            ("health_interval", self.health_interval_ms, 1),
            ("health_timeout", self.health_timeout_ms, 1),
            ("health_probe_timeout", self.health_probe_timeout_ms.unwrap_or(1), 1),
            ("watch_debounce", self.watch_debounce_ms, 0),
        ] {
            if ms < min {
                out.push(Invalid::new(key, format!("`{key}` must be at least {min}, got {ms}")));
            } else if ms > MAX_MS {
                out.push(Invalid::new(key, format!("`{key}` must be at most {MAX_MS}, got {ms}")));
            }
        }
        for (i, code) in self.stop_exit_codes.iter().enumerate() {
            if !(0..=255).contains(code) {
                let key = format!("stop_exit_codes[{i}]");
                out.push(Invalid::new(
                    key.clone(),
                    format!("`{key}` must be an exit code (0 to 255), got {code}"),
                ));
            }
        }
        if let Some(h) = &self.health_check {
            nul("health_check", h, &mut out);
            if let Err(reason) = crate::supervisor::health::Probe::parse(h)
                && !h.contains("${")
            {
                out.push(Invalid::new("health_check", format!("`health_check`: {reason}")));
            }
        }
        for (key, hook) in [("pre_start", &self.pre_start), ("post_stop", &self.post_stop)] {
            if let Some(h) = hook {
                if h.trim().is_empty() {
                    out.push(Invalid::new(key, format!("`{key}` must not be empty")));
                }
                nul(key, h, &mut out);
            }
        }
        for (key, why) in crate::listen::problems(&self.listen) {
            out.push(Invalid::new(key, why));
        }
        if self.max_memory == Some(0) {
            out.push(Invalid::new("max_memory", "`max_memory` must be at least 1 byte, got 0"));
        }
        if let Some(dir) = &self.watch {
            path_problems("watch", dir, &mut out);
        }
        for (i, glob) in self.watch_ignore.iter().enumerate() {
            let key = format!("watch_ignore[{i}]");
            if let Err(e) = crate::glob::check(glob) {
                out.push(Invalid::new(key.clone(), format!("`{key}`: {e}")));
            }
        }
        if let Some(c) = &self.cron_restart
            && let Err(reason) = crate::supervisor::triggers::parse_cron(c)
        {
            out.push(Invalid::new("cron_restart", format!("`cron_restart`: {reason}")));
        }
        if let Some(f) = &self.log_date_format {
            use chrono::format::{Item, StrftimeItems};
            if StrftimeItems::new(f).any(|i| matches!(i, Item::Error)) {
                out.push(Invalid::new(
                    "log_date_format",
                    format!("`log_date_format`: `{}` is not a valid strftime format", show(f)),
                ));
            }
        }
        if self.log_max_size < MIN_LOG_MAX_SIZE {
            out.push(Invalid::new(
                "log_max_size",
                format!(
                    "`log_max_size` must be at least 4K ({MIN_LOG_MAX_SIZE} bytes), got {} bytes",
                    self.log_max_size
                ),
            ));
        }
        if self.log_max_files > MAX_LOG_FILES {
            out.push(Invalid::new(
                "log_max_files",
                format!("`log_max_files` must be at most {MAX_LOG_FILES}, got {}", self.log_max_files),
            ));
        }
        out
    }
}

/// A path the daemon uses as it is: absolute, without NUL.
fn path_problems(key: &str, path: &std::path::Path, out: &mut Vec<Invalid>) {
    use std::os::unix::ffi::OsStrExt;
    if path.as_os_str().as_bytes().contains(&0) {
        out.push(Invalid::new(key, format!("`{key}` must not contain a NUL character")));
    } else if !path.is_absolute() {
        out.push(Invalid::new(
            key,
            format!("`{key}` must be an absolute path, got `{}`", show(&path.display().to_string())),
        ));
    }
}

/// A whole config file, loaded and validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigFile {
    /// Absolute path of the `pm3.toml` it came from.
    pub path: PathBuf,
    /// Its processes, in file order.
    pub processes: Vec<ProcessDef>,
}

impl ConfigFile {
    /// Every rule over the whole file: each definition ([`ProcessDef::problems`]), unique
    /// names, dependencies on processes of the same file and no cycle among them, and at most
    /// [`MAX_FILE_INSTANCES`] instances in all. The first problem, naming the file and process.
    pub fn validate(&self) -> Result<(), String> {
        let file = show(&self.path.display().to_string());
        let mut problems: Vec<Invalid> = Vec::new();
        path_problems("config", &self.path, &mut problems);
        if let Some(p) = problems.first() {
            return Err(format!("config file `{file}`: {p}"));
        }
        let mut names = std::collections::BTreeSet::new();
        for def in &self.processes {
            if let Some(p) = def.problems().first() {
                return Err(format!("{file}: [{}] {p}", show(&def.name)));
            }
            if !names.insert(def.name.as_str()) {
                return Err(format!("{file}: process `{}` is defined twice", def.name));
            }
        }
        let mut listening = std::collections::BTreeMap::new();
        for def in &self.processes {
            for endpoint in def.listen.iter().filter_map(|l| crate::listen::Listen::parse(l).ok()) {
                if let Some(other) = listening.insert(endpoint.endpoint.to_string(), def.name.as_str())
                    && other != def.name
                {
                    return Err(format!(
                        "{file}: [{}] `listen`: process `{other}` already listens on {}",
                        def.name, endpoint.endpoint
                    ));
                }
            }
        }
        for def in &self.processes {
            if let Some(dep) = def.depends_on.iter().find(|d| !names.contains(d.as_str())) {
                return Err(format!("{file}: [{}] `depends_on` names unknown process `{dep}`", def.name));
            }
        }
        if let Some(name) = in_a_cycle(&self.processes) {
            return Err(format!("{file}: [{name}] is part of a dependency cycle"));
        }
        let total: u64 = self.processes.iter().map(|d| u64::from(d.instances)).sum();
        if total > u64::from(MAX_FILE_INSTANCES) {
            return Err(format!(
                "{file}: {total} instances in all, more than the {MAX_FILE_INSTANCES} one config file may have"
            ));
        }
        Ok(())
    }
}

/// A process that is part of a dependency cycle (or depends on itself), if any.
fn in_a_cycle(defs: &[ProcessDef]) -> Option<&str> {
    // Kahn's algorithm: what never becomes free of unmet dependencies is on or behind a cycle.
    let mut pending: std::collections::BTreeMap<&str, Vec<&str>> =
        defs.iter().map(|d| (d.name.as_str(), d.depends_on.iter().map(String::as_str).collect())).collect();
    while !pending.is_empty() {
        let done: Vec<&str> = pending.iter().filter(|(_, deps)| deps.is_empty()).map(|(n, _)| *n).collect();
        if done.is_empty() {
            return pending.keys().next().copied();
        }
        for n in &done {
            pending.remove(n);
        }
        for deps in pending.values_mut() {
            deps.retain(|d| !done.contains(d));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str) -> ProcessDef {
        ProcessDef::new(name, "sleep 1", PathBuf::from("/tmp"))
    }

    fn keys(d: &ProcessDef) -> Vec<String> {
        d.problems().into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn a_default_definition_is_valid() {
        assert_eq!(def("web").problems(), []);
    }

    /// The burst: 1,000,000 lines written at once, 101 bytes each (bench/retention.sh
    /// writes it through a real daemon). Whatever the current file held when it began, the
    /// rotated files alone, each cut at a line boundary (so up to one line short of full), hold
    /// all of it, and still do with a 24-byte `log_date_format` stamp on every line.
    #[test]
    fn the_default_retention_keeps_a_burst_of_a_million_lines() {
        let d = def("w");
        let (lines, line) = (1_000_000u64, 101u64);
        let rotated_room = u64::from(d.log_max_files) * (d.log_max_size - line);
        assert!(rotated_room >= lines * line, "{rotated_room} bytes kept for a {} byte burst", lines * line);
        assert!(rotated_room >= lines * (line + 24), "and with timestamps");
        // Worst case on disk per process: stdout and stderr, current file and rotated ones.
        assert_eq!(2 * u64::from(d.log_max_files + 1) * d.log_max_size, 440 << 20);
        assert!(d.log_compress);
    }

    #[test]
    fn what_a_raw_request_could_carry_is_refused() {
        // A name that would put log files outside `logs/`.
        assert_eq!(keys(&def("../../../../tmp/x")), ["name"]);
        assert_eq!(keys(&def("a/b")), ["name"]);
        let mut d = def("w");
        d.instances = u32::MAX;
        d.log_max_size = 0;
        d.command = "sleep\0 1".into();
        d.cwd = PathBuf::from("relative");
        d.env = vec![("A=B".into(), "1".into()), ("C".into(), "x\0".into())];
        d.kill_timeout_ms = u64::MAX;
        d.health_interval_ms = 0;
        d.health_probe_timeout_ms = Some(0);
        d.stop_exit_codes = vec![256];
        d.pre_start = Some(" ".into());
        d.watch = Some(PathBuf::from("/a\0b"));
        d.log_date_format = Some("%Q".into());
        d.log_max_files = 5000;
        d.max_memory = Some(0);
        d.cron_restart = Some("never".into());
        d.group = Some(".g".into());
        d.depends_on = vec!["x:1".into()];
        assert_eq!(
            keys(&d),
            [
                "command",
                "cwd",
                "env.A=B",
                "env.C",
                "instances",
                "group",
                "depends_on",
                "kill_timeout",
                "health_interval",
                "health_probe_timeout",
                "stop_exit_codes[0]",
                "pre_start",
                "max_memory",
                "watch",
                "cron_restart",
                "log_date_format",
                "log_max_size",
                "log_max_files",
            ]
        );
        let messages: Vec<String> = d.problems().into_iter().map(|p| p.message).collect();
        assert!(
            messages.contains(&"`instances` must be at most 1024, got 4294967295".to_string()),
            "{messages:?}"
        );
        assert!(messages.contains(&"`command` must not contain a NUL character".to_string()), "{messages:?}");
    }

    #[test]
    fn the_probe_timeout_defaults_to_the_smaller_of_5s_and_health_timeout() {
        let mut d = def("w");
        assert_eq!(d.probe_timeout(), Duration::from_secs(5));
        d.health_timeout_ms = 700;
        assert_eq!(d.probe_timeout(), Duration::from_millis(700));
        d.health_probe_timeout_ms = Some(9000);
        assert_eq!(d.probe_timeout(), Duration::from_secs(9));
        // State and dump files written before the key existed still load.
        let mut old = serde_json::to_value(def("w")).expect("serialize");
        old.as_object_mut().map(|o| o.remove("health_probe_timeout_ms"));
        let back: ProcessDef = serde_json::from_value(old).expect("an old definition loads");
        assert_eq!(back.health_probe_timeout_ms, None);
    }

    #[test]
    fn a_whole_file_is_checked_across_processes() {
        let file = |defs: Vec<ProcessDef>| ConfigFile { path: PathBuf::from("/p/pm3.toml"), processes: defs };
        assert_eq!(file(vec![def("a"), def("b")]).validate(), Ok(()));
        assert_eq!(
            file(vec![def("a"), def("a")]).validate(),
            Err("/p/pm3.toml: process `a` is defined twice".into())
        );
        let mut a = def("a");
        a.depends_on = vec!["b".into()];
        assert_eq!(
            file(vec![a.clone()]).validate(),
            Err("/p/pm3.toml: [a] `depends_on` names unknown process `b`".into())
        );
        let mut b = def("b");
        b.depends_on = vec!["a".into()];
        assert_eq!(
            file(vec![a.clone(), b]).validate(),
            Err("/p/pm3.toml: [a] is part of a dependency cycle".into())
        );
        let mut big = def("c");
        big.instances = MAX_INSTANCES;
        let many: Vec<ProcessDef> = (0..5)
            .map(|i| {
                let mut d = big.clone();
                d.name = format!("c{i}");
                d
            })
            .collect();
        assert!(file(many).validate().is_err_and(|e| e.contains("5120 instances in all")));
        let mut bad = def("z");
        bad.command = "\0".into();
        assert_eq!(
            file(vec![bad]).validate(),
            Err("/p/pm3.toml: [z] `command` must not contain a NUL character".into())
        );
        let relative = ConfigFile { path: PathBuf::from("pm3.toml"), processes: vec![def("a")] };
        assert!(relative.validate().is_err());
    }
}
