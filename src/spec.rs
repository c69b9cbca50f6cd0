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
            pre_start: None,
            post_stop: None,
            max_memory: None,
            watch: None,
            watch_ignore: vec![".git".into(), "node_modules".into()],
            watch_debounce_ms: 500,
            cron_restart: None,
            log_date_format: None,
            log_max_size: 10 << 20,
            log_max_files: 3,
        }
    }

    pub fn kill_timeout(&self) -> Duration {
        Duration::from_millis(self.kill_timeout_ms)
    }

    pub fn rotation(&self) -> crate::logs::file::Rotation {
        crate::logs::file::Rotation { max_size: self.log_max_size, max_files: self.log_max_files }
    }

    pub fn min_uptime(&self) -> Duration {
        Duration::from_millis(self.min_uptime_ms)
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
