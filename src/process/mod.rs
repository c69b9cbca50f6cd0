//! Operating-system side of a process: spawning it in its own group, signals, exit, stats.

pub mod signal;
