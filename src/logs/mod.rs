//! Process output: capture into log files (daemon side) and reading them back (CLI side).

pub mod capture;
pub mod file;
pub mod tail;
