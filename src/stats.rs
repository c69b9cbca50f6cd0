//! CPU % and memory of each running process, sampled on demand (by `list`, `info` and the
//! `max_memory` check) and cached for a second, so a burst of `list` calls reads `/proc` once and
//! an idle daemon reads it never.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::process::stats::{TreeSample, sample_tree, ticks_per_second};

/// Samples younger than this are reused as they are.
const FRESH: Duration = Duration::from_secs(1);

struct Cached {
    at: Instant,
    sample: TreeSample,
    cpu_percent: f64,
}

#[derive(Default)]
pub struct StatsCache {
    by_pid: HashMap<u32, Cached>,
}

impl StatsCache {
    /// CPU % (of one core) and resident bytes of `pid`'s tree; `uptime` is how long it has run,
    /// used for the first reading's CPU % (average since start).
    pub fn get(&mut self, pid: u32, uptime: Duration) -> Option<(f64, u64)> {
        let now = Instant::now();
        if let Some(c) = self.by_pid.get(&pid)
            && now.duration_since(c.at) < FRESH
        {
            return Some((c.cpu_percent, c.sample.rss_bytes));
        }
        let sample = sample_tree(pid)?;
        let ticks = ticks_per_second() as f64;
        let cpu_percent = match self.by_pid.get(&pid) {
            Some(prev) => {
                let secs = now.duration_since(prev.at).as_secs_f64();
                percent(sample.cpu_ticks.saturating_sub(prev.sample.cpu_ticks) as f64 / ticks, secs)
            }
            None => percent(sample.cpu_ticks as f64 / ticks, uptime.as_secs_f64()),
        };
        self.by_pid.insert(pid, Cached { at: now, sample, cpu_percent });
        Some((cpu_percent, sample.rss_bytes))
    }

    /// Forgets pids that are no longer running.
    pub fn retain(&mut self, live: &dyn Fn(u32) -> bool) {
        self.by_pid.retain(|pid, _| live(*pid));
    }
}

fn percent(cpu_secs: f64, wall_secs: f64) -> f64 {
    if wall_secs <= 0.0 {
        return 0.0;
    }
    (cpu_secs / wall_secs * 1000.0).round() / 10.0
}
