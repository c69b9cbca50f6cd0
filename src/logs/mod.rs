//! Process output: capture into log files (daemon side) and reading them back (CLI side).

pub mod capture;
pub mod compress;
pub mod file;
pub mod positions;
pub mod tail;
