//! pm3: a process manager with cluster mode.
//!
//! # Layout
//! The data flows through the modules in this order:
//! - [`config`] finds and loads `pm3.toml` into [`spec::ProcessDef`]s;
//! - [`instances`] expands a definition into named instances and their environments;
//! - [`protocol`] carries requests from the CLI to the daemon over `pm3.sock`;
//! - [`daemon`] owns the socket and the table of managed processes;
//! - [`supervisor`] runs one task per instance: spawn, exit, stop, restart;
//! - [`process`] spawns and signals process groups and reads their stats;
//! - [`logs`] copies each process's output into its log files;
//! - [`export`] writes the processes of a config for systemd, Kubernetes or Compose;
//! - [`cli`] parses the command line, talks to the daemon, prints results.

// pm3 supervises through Linux interfaces (pidfd for exits, /proc for identity and stats,
// splice for logs, SO_PEERCRED for callers); see docs/architecture.md, "Platform".
#[cfg(not(target_os = "linux"))]
compile_error!(
    "pm3 runs on Linux (kernel 5.3 or later, for pidfd_open); other platforms are not supported yet"
);

pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod export;
pub mod glob;
pub mod instances;
pub mod listen;
pub mod logs;
pub mod paths;
pub mod process;
pub mod protocol;
pub mod spec;
pub mod stats;
pub mod supervisor;
