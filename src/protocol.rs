//! The control protocol between the CLI (and TUI) and the daemon: one JSON request per line, one
//! JSON response per line, over `pm3.sock`. These types are the only thing both sides share, so a
//! change here is a change for both.
//!
//! Every request carries the protocol version; a daemon answers a request of another version with
//! an error instead of guessing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::process::signal::Signal;
use crate::spec::ConfigFile;

/// Bumped whenever a request or response changes shape.
pub const VERSION: u32 = 1;

/// Longest request line the daemon reads; longer ones are answered with an error and dropped.
pub const MAX_REQUEST_BYTES: usize = 8 << 20;

/// What goes over the wire from the client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// Protocol version of the sender.
    pub v: u32,
    pub req: Request,
}

/// A config file as the CLI loaded it, plus the environment of the command that sent it
/// (processes inherit it, as under pm2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigPayload {
    pub file: ConfigFile,
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Is the daemon there, and which version is it?
    Ping,
    /// Apply `config` (when given) and start `targets` (empty: the whole config, or everything
    /// managed when no config is given).
    Start {
        config: Option<ConfigPayload>,
        targets: Vec<String>,
    },
    Stop {
        targets: Vec<String>,
    },
    /// Stop then start, with `config` applied first when given (edits take effect).
    Restart {
        config: Option<ConfigPayload>,
        targets: Vec<String>,
    },
    /// Rolling restart, one instance at a time, each online before the next.
    Reload {
        config: Option<ConfigPayload>,
        targets: Vec<String>,
    },
    List,
    Info {
        target: String,
    },
    Signal {
        targets: Vec<String>,
        signal: Signal,
    },
    Scale {
        process: String,
        count: u32,
    },
    Flush {
        targets: Vec<String>,
    },
    /// Resolve targets to process names (for `pm3 log`, which reads the files itself).
    Resolve {
        targets: Vec<String>,
    },
    /// Wait until every named instance is up (`online`; without a health check, still running
    /// after `min_uptime`), or has failed.
    Wait {
        names: Vec<String>,
    },
    /// Write the managed set to `dump.json`, keeping the previous one as `dump.json.bak`. An
    /// empty set replaces a dump that holds processes only with `force`.
    Save {
        #[serde(default)]
        force: bool,
    },
    /// Bring back what `Save` wrote.
    Resurrect,
    /// Stop everything and exit.
    Kill,
    /// The `--env` each process of a config file was last started with (processes started
    /// without one are left out), so a command without `--env` keeps it.
    EnvChoices {
        config: PathBuf,
    },
}

impl Request {
    /// True for requests that change what runs; they wait for each other per config file
    /// and are refused once the daemon shuts down.
    pub fn is_mutation(&self) -> bool {
        matches!(
            self,
            Request::Start { .. }
                | Request::Stop { .. }
                | Request::Restart { .. }
                | Request::Reload { .. }
                | Request::Signal { .. }
                | Request::Scale { .. }
                | Request::Save { .. }
                | Request::Resurrect
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Pong {
        version: u32,
        pid: u32,
    },
    Done(Report),
    List(Vec<ProcessInfo>),
    /// One entry per instance the target names.
    Info(Vec<ProcessDetail>),
    Names(Vec<NameInfo>),
    /// Process name → the `--env` it runs with.
    EnvChoices(BTreeMap<String, String>),
    Error(ErrorReply),
}

/// The lifecycle states of spec §6, as users and scripts see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Waiting,
    Starting,
    Online,
    Unhealthy,
    Stopping,
    Stopped,
    Errored,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Starting => "starting",
            Status::Online => "online",
            Status::Unhealthy => "unhealthy",
            Status::Stopping => "stopping",
            Status::Stopped => "stopped",
            Status::Errored => "errored",
        }
    }

    /// True while the process has (or is about to have) a live pid.
    pub fn is_running(self) -> bool {
        matches!(self, Status::Starting | Status::Online | Status::Unhealthy | Status::Stopping)
    }
}

/// One row of `pm3 list --json` (spec §7). Field names never change meaning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub name: String,
    pub process: String,
    pub instance: Option<u32>,
    pub instances: u32,
    pub group: Option<String>,
    pub status: Status,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub uptime_ms: Option<u64>,
    pub exit_code: Option<i32>,
    /// Signal that ended the last run, when it was a signal (`SIGKILL`).
    pub exit_signal: Option<String>,
    pub cpu_percent: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub config: PathBuf,
    /// While a crashed process waits out its restart delay: how long until it restarts.
    pub restart_in_ms: Option<u64>,
}

/// `pm3 info --json`: the list row plus everything else known about the process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessDetail {
    #[serde(flatten)]
    pub info: ProcessInfo,
    pub command: String,
    /// The program and arguments as executed (`["/bin/sh", "-c", "…"]` for shell syntax).
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    pub out_log: PathBuf,
    pub err_log: PathBuf,
    pub depends_on: Vec<String>,
    pub kill_signal: Signal,
    pub kill_timeout_ms: u64,
    pub increment_var: Option<String>,
    /// Unix time (ms) the current run started.
    pub started_at_ms: Option<u64>,
    /// Why the process is `errored` (spawn failure, pre_start, restarts exhausted), when it is.
    pub error: Option<String>,
    /// How the previous run ended.
    pub last_exit: Option<LastExitInfo>,
    pub health_check: Option<String>,
    /// Why the last health probe failed, while the process is not yet online.
    pub health_error: Option<String>,
    pub restart: crate::spec::RestartPolicy,
    pub max_restarts: u32,
    pub min_uptime_ms: u64,
    pub restart_delay_ms: u64,
    pub stop_exit_codes: Vec<i32>,
    pub max_memory: Option<u64>,
    pub watch: Option<PathBuf>,
    pub cron_restart: Option<String>,
    pub pre_start: Option<String>,
    pub post_stop: Option<String>,
    /// Output dropped because a log could not be written (a full disk), per log.
    #[serde(default)]
    pub log_gaps: Vec<LogGapInfo>,
    /// The `--env` the process runs with.
    #[serde(default)]
    pub env_name: Option<String>,
    /// While it runs: the keys the file now sets differently from what the run was started
    /// with (`command`, `env`, …); `command`, `argv`, `cwd` and `env` above are the run's.
    #[serde(default)]
    pub config_changed: Vec<String>,
    /// When the file changed: its command, to compare with the running one.
    #[serde(default)]
    pub file_command: Option<String>,
    /// The sockets of `listen`, in descriptor order (the first is descriptor 3).
    #[serde(default)]
    pub listen: Vec<ListenInfo>,
}

/// One socket of `listen` as `info` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListenInfo {
    /// The address as written in the file.
    pub address: String,
    /// Its name in `LISTEN_FDNAMES`.
    pub name: String,
    /// The descriptor the instances get it on.
    pub fd: u32,
    /// Whether the daemon holds it bound now.
    pub bound: bool,
}

/// Output a log lost while it could not be written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogGapInfo {
    pub log: PathBuf,
    pub dropped_bytes: u64,
    /// How many times writing failed and later resumed (or is still failing).
    pub episodes: u32,
    /// Why the last episode began (`no space left`).
    pub reason: String,
    /// True while output is still being dropped.
    pub ongoing: bool,
}

/// How a run ended, for `info`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastExitInfo {
    pub exit_code: Option<i32>,
    pub exit_signal: Option<String>,
    /// `exited` (by itself), `stopped` (a command), `memory`, `cron` or `watch`.
    pub reason: String,
    /// Unix time in ms.
    pub at_ms: u64,
    /// The last lines the process wrote to stderr before it ended.
    pub stderr: Vec<String>,
}

/// A process name and its log files, as `Resolve` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NameInfo {
    pub name: String,
    pub out_log: PathBuf,
    pub err_log: PathBuf,
    /// The `log_date_format` its lines are stamped with, so `pm3 log` can merge by time.
    #[serde(default)]
    pub log_date_format: Option<String>,
}

/// What a command did, one entry per process touched, in the order it happened.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub processes: Vec<Outcome>,
}

/// What happened to one process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub name: String,
    pub action: Action,
    pub status: Status,
    pub pid: Option<u32>,
    /// Extra words for a human (`already online`, a spawn error).
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Started,
    AlreadyRunning,
    Waiting,
    Stopped,
    AlreadyStopped,
    Restarted,
    Removed,
    Signalled,
    Flushed,
    Saved,
    Online,
    Failed,
}

impl Action {
    pub fn verb(self) -> &'static str {
        match self {
            Action::Started => "started",
            Action::AlreadyRunning => "already running",
            Action::Waiting => "waiting",
            Action::Stopped => "stopped",
            Action::AlreadyStopped => "already stopped",
            Action::Restarted => "restarted",
            Action::Removed => "removed",
            Action::Signalled => "signalled",
            Action::Flushed => "flushed",
            Action::Saved => "saved",
            Action::Online => "online",
            Action::Failed => "failed",
        }
    }
}

/// A failed request: a kind scripts can match on and one sentence for humans.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ErrorReply {
    pub kind: ErrorKind,
    pub message: String,
    /// For a socket that could not be bound: the process and the index in its `listen`, so
    /// the CLI can point at the entry in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<(String, usize)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A target matched nothing.
    UnknownTarget,
    /// A process name is already managed from another config file.
    Conflict,
    /// The request could not be read (bad JSON, too long, wrong version).
    BadRequest,
    /// A process could not be started.
    Spawn,
    /// A `listen` socket could not be bound (the address is taken, or not ours to bind).
    Bind,
    /// Something on the daemon's side failed.
    Internal,
    /// The daemon is stopping everything and will exit; it takes no more changes.
    ShuttingDown,
    /// The client runs as another user than the daemon (checked with SO_PEERCRED).
    PermissionDenied,
}

impl ErrorReply {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ErrorReply {
        ErrorReply { kind, message: message.into(), listen: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_save_from_an_older_client_does_not_force() {
        let env: Envelope = serde_json::from_str(r#"{"v": 1, "req": {"cmd": "save"}}"#).expect("parses");
        assert!(matches!(env.req, Request::Save { force: false }));
    }
}
