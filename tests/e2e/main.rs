//! End-to-end tests of pm3: the real binary, a real daemon, real processes.
//!
//! One binary; [`harness`] gives every test its own `PM3_HOME` and project directory, and one
//! module per feature holds the tests. The founding document (`seed/cluster-mode.md`) is covered
//! example by example in [`cluster`] and [`deps`].

mod harness;

mod abuse;
mod chaos;
mod cli;
mod cluster;
mod config_errors;
mod daemon;
mod deps;
mod durability;
mod export;
mod foreground;
mod hangup;
mod health;
mod hostile;
mod init;
mod intent;
mod lifecycle;
mod listen;
mod logs;
mod readme;
mod reload;
mod retention;
mod shell;
mod supervision;
mod targets;
mod triggers;
mod tui;
mod variables;
