//! CPU % and memory of each running process, sampled on demand (by `list`, `info` and the
//! `max_memory` check) and never served older than a second.
//!
//! A burst of `list` calls reads `/proc` once a second at most, and an idle daemon reads it never.
//! Once someone looks (`list`, `info`, the TUI), the daemon keeps the samples fresh in the
//! background for [`KEEP_FRESH_FOR`], one sweep every [`SWEEP_EVERY`], so the next look is
//! answered from memory instead of a thousand `/proc` reads; when nobody has looked for that
//! long, the sweeps stop and nothing runs. Whatever the sweeps do, a sample older than [`FRESH`]
//! is taken again before it is served.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::process::stats::{Sampler, TreeSample, ticks_per_second};

/// Samples younger than this are served as they are; older ones are taken again first.
pub const FRESH: Duration = Duration::from_secs(1);

/// How long after someone last looked the samples are kept fresh in the background.
pub const KEEP_FRESH_FOR: Duration = Duration::from_secs(10);

/// The background sweep's period: a swept sample is at most this old (plus the sweep's own
/// duration, ~10 ms at 1,000 processes, and any delay of the event loop), within [`FRESH`].
pub const SWEEP_EVERY: Duration = Duration::from_millis(800);

/// A sweep retakes samples at least this old (younger ones were just taken by a request, and
/// are still younger than [`FRESH`] at the next sweep).
const SWEEP_OLDER_THAN: Duration = Duration::from_millis(150);

struct Cached {
    at: Instant,
    sample: TreeSample,
    cpu_percent: f64,
    /// The reading CPU % is computed from: replaced once it is a second old, so the percentage
    /// covers one to two seconds of run time however often the process is sampled (finer
    /// sampling would only show the 10 ms tick as noise).
    base_at: Instant,
    base_ticks: u64,
}

#[derive(Default)]
pub struct StatsCache {
    by_pid: HashMap<u32, Cached>,
    sampler: Sampler,
    /// Until when the background sweeps keep the samples fresh.
    watched_until: Option<Instant>,
    /// Whether a sweeping task is running.
    sweeping: bool,
}

impl StatsCache {
    /// CPU % (of one core) and resident bytes of `pid`'s tree; `uptime` is how long it has run,
    /// used for the first reading's CPU % (average since start). Never older than [`FRESH`].
    pub fn get(&mut self, pid: u32, uptime: Duration) -> Option<(f64, u64)> {
        self.get_at(pid, uptime, Instant::now(), FRESH)
    }

    fn get_at(&mut self, pid: u32, uptime: Duration, now: Instant, fresh: Duration) -> Option<(f64, u64)> {
        if let Some(c) = self.by_pid.get(&pid)
            && now.saturating_duration_since(c.at) < fresh
        {
            return Some((c.cpu_percent, c.sample.rss_bytes));
        }
        let sample = self.sampler.tree(pid)?;
        let ticks = ticks_per_second() as f64;
        let cached = match self.by_pid.get(&pid) {
            Some(prev) => {
                let secs = now.saturating_duration_since(prev.base_at).as_secs_f64();
                let cpu_percent =
                    percent(sample.cpu_ticks.saturating_sub(prev.base_ticks) as f64 / ticks, secs);
                let (base_at, base_ticks) = if now.saturating_duration_since(prev.base_at) >= FRESH {
                    (now, sample.cpu_ticks)
                } else {
                    (prev.base_at, prev.base_ticks)
                };
                Cached { at: now, sample, cpu_percent, base_at, base_ticks }
            }
            None => Cached {
                at: now,
                sample,
                cpu_percent: percent(sample.cpu_ticks as f64 / ticks, uptime.as_secs_f64()),
                base_at: now,
                base_ticks: sample.cpu_ticks,
            },
        };
        let out = (cached.cpu_percent, sample.rss_bytes);
        self.by_pid.insert(pid, cached);
        Some(out)
    }

    /// A sweep's reading of `pid`: retaken unless a request just took it.
    pub fn refresh(&mut self, pid: u32, uptime: Duration) {
        let _ = self.get_at(pid, uptime, Instant::now(), SWEEP_OLDER_THAN);
    }

    /// Forgets pids that are no longer running.
    pub fn retain(&mut self, live: &dyn Fn(u32) -> bool) {
        self.by_pid.retain(|pid, _| live(*pid));
    }

    /// Someone looked at the samples: keep them fresh for [`KEEP_FRESH_FOR`]. True when no
    /// sweeping task runs, so the caller must start one (and report through [`Self::sweep_due`]).
    pub fn looked_at(&mut self, now: Instant) -> bool {
        self.watched_until = Some(now + KEEP_FRESH_FOR);
        !std::mem::replace(&mut self.sweeping, true)
    }

    /// Whether the sweeping task should sweep again; once nobody has looked for
    /// [`KEEP_FRESH_FOR`], false, and the task ends (the next look starts another).
    pub fn sweep_due(&mut self, now: Instant) -> bool {
        let due = self.watched_until.is_some_and(|until| now < until);
        if !due {
            self.sweeping = false;
            self.watched_until = None;
        }
        due
    }
}

/// CPU % of one core over `wall_secs`. At most every core busy: over a few milliseconds (a
/// process sampled just after it started) one 10 ms tick would otherwise read as hundreds of %.
fn percent(cpu_secs: f64, wall_secs: f64) -> f64 {
    if wall_secs <= 0.0 {
        return 0.0;
    }
    static CORES: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    // Asked once: it is a system call, and a sweep computes a percentage per process.
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()) as f64);
    ((cpu_secs / wall_secs).min(cores) * 1000.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percentage_over_a_few_milliseconds_stays_within_the_cores() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        // One 10 ms tick seen 1 ms after the start.
        assert_eq!(percent(0.01, 0.001), cores * 100.0);
        assert_eq!(percent(0.5, 1.0), 50.0);
        assert_eq!(percent(1.0, 0.0), 0.0);
    }

    fn at(c: &StatsCache, pid: u32) -> Instant {
        c.by_pid[&pid].at
    }

    #[test]
    fn a_sample_is_never_served_older_than_a_second() {
        let me = std::process::id();
        let mut c = StatsCache::default();
        let t0 = Instant::now();
        c.get_at(me, Duration::from_secs(1), t0, FRESH).expect("own stats");
        assert_eq!(at(&c, me), t0);
        // Younger than a second: served from the cache.
        c.get_at(me, Duration::from_secs(1), t0 + Duration::from_millis(999), FRESH);
        assert_eq!(at(&c, me), t0);
        // A second old: taken again before it is served.
        let t1 = t0 + FRESH;
        c.get_at(me, Duration::from_secs(1), t1, FRESH);
        assert_eq!(at(&c, me), t1);
        // Through the public entry point, with the real clock.
        let before = Instant::now();
        c.get(me, Duration::from_secs(1));
        assert!(Instant::now().saturating_duration_since(at(&c, me)) < FRESH);
        assert!(at(&c, me) >= before || at(&c, me) == t1);
    }

    #[test]
    fn a_sweep_retakes_what_a_request_did_not_just_take() {
        let me = std::process::id();
        let mut c = StatsCache::default();
        let t0 = Instant::now();
        c.get_at(me, Duration::from_secs(1), t0, FRESH);
        c.get_at(me, Duration::from_secs(1), t0 + Duration::from_millis(100), SWEEP_OLDER_THAN);
        assert_eq!(at(&c, me), t0);
        let t1 = t0 + SWEEP_OLDER_THAN;
        c.get_at(me, Duration::from_secs(1), t1, SWEEP_OLDER_THAN);
        assert_eq!(at(&c, me), t1);
        // CPU % keeps its base until the base is a second old.
        assert_eq!(c.by_pid[&me].base_at, t0);
        let t2 = t0 + FRESH;
        c.get_at(me, Duration::from_secs(1), t2, SWEEP_OLDER_THAN);
        assert_eq!(c.by_pid[&me].base_at, t2);
    }

    #[test]
    fn sweeps_run_only_while_someone_looks() {
        let mut c = StatsCache::default();
        let t0 = Instant::now();
        assert!(!c.sweep_due(t0), "nobody looked yet");
        assert!(c.looked_at(t0), "the first look starts the sweeping task");
        assert!(!c.looked_at(t0 + Duration::from_secs(1)), "one task at a time");
        assert!(c.sweep_due(t0 + KEEP_FRESH_FOR));
        assert!(!c.sweep_due(t0 + Duration::from_secs(1) + KEEP_FRESH_FOR), "nobody looked for that long");
        assert!(c.looked_at(t0 + Duration::from_secs(20)), "a later look starts a new task");
    }

    #[test]
    fn a_gone_process_has_no_sample() {
        let mut c = StatsCache::default();
        assert_eq!(c.get(u32::MAX - 1, Duration::from_secs(1)), None);
    }
}
