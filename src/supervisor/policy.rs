//! The restart decision, as a pure function of the definition, how the run ended and how long it
//! lasted, so every row of the policy table is unit-tested without processes.

use std::time::Duration;

use crate::process::exit::ExitStatus;
use crate::spec::{ProcessDef, RestartPolicy};

/// Longest delay between two restarts of a crash-looping process.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// What the supervisor does after a run ended by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    /// The policy says the process stays down (`stopped`).
    Stay,
    /// Start it again after `delay` (zero after a run longer than `min_uptime`).
    Restart { delay: Duration },
    /// Too many short runs in a row: give up (`errored`).
    GiveUp,
}

/// Decides what follows an exit. `short_runs` counts consecutive runs shorter than `min_uptime`
/// and is updated here.
pub fn after_exit(
    def: &ProcessDef,
    status: ExitStatus,
    ran_for: Duration,
    short_runs: &mut u32,
) -> AfterExit {
    if let Some(code) = status.code()
        && def.stop_exit_codes.contains(&code)
    {
        return AfterExit::Stay;
    }
    let wants_restart = match def.restart {
        RestartPolicy::Never => false,
        RestartPolicy::Always => true,
        // An adopted process's status is unknown: assume it failed rather than leave it down.
        RestartPolicy::OnFailure => !status.success(),
    };
    if !wants_restart {
        return AfterExit::Stay;
    }
    if def.max_restarts == 0 {
        return AfterExit::GiveUp;
    }
    if ran_for >= def.min_uptime() {
        *short_runs = 0;
        return AfterExit::Restart { delay: Duration::ZERO };
    }
    *short_runs += 1;
    if *short_runs > def.max_restarts {
        return AfterExit::GiveUp;
    }
    AfterExit::Restart { delay: backoff(def.restart_delay_ms, *short_runs) }
}

/// `base` doubled for each short run after the first, capped at [`MAX_DELAY`].
pub fn backoff(base_ms: u64, short_runs: u32) -> Duration {
    let factor = 1u64.checked_shl(short_runs.saturating_sub(1)).unwrap_or(u64::MAX);
    Duration::from_millis(base_ms.saturating_mul(factor)).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn def(restart: RestartPolicy) -> ProcessDef {
        let mut d = ProcessDef::new("p", "x", PathBuf::from("/"));
        d.restart = restart;
        d
    }
    const SHORT: Duration = Duration::from_millis(10);
    const LONG: Duration = Duration::from_secs(5);

    #[test]
    fn on_failure_restarts_failures_only() {
        let d = def(RestartPolicy::OnFailure);
        let mut n = 0;
        assert_eq!(after_exit(&d, ExitStatus::Code(0), SHORT, &mut n), AfterExit::Stay);
        assert!(matches!(after_exit(&d, ExitStatus::Code(1), SHORT, &mut n), AfterExit::Restart { .. }));
        assert!(matches!(
            after_exit(&d, ExitStatus::Signal(crate::process::signal::Signal::KILL), SHORT, &mut n),
            AfterExit::Restart { .. }
        ));
        assert!(matches!(after_exit(&d, ExitStatus::Unknown, SHORT, &mut n), AfterExit::Restart { .. }));
    }

    #[test]
    fn always_and_never() {
        let mut n = 0;
        assert!(matches!(
            after_exit(&def(RestartPolicy::Always), ExitStatus::Code(0), SHORT, &mut n),
            AfterExit::Restart { .. }
        ));
        assert_eq!(
            after_exit(&def(RestartPolicy::Never), ExitStatus::Code(1), SHORT, &mut n),
            AfterExit::Stay
        );
    }

    #[test]
    fn stop_exit_codes_are_never_restarted() {
        let mut d = def(RestartPolicy::Always);
        d.stop_exit_codes = vec![3];
        let mut n = 0;
        assert_eq!(after_exit(&d, ExitStatus::Code(3), SHORT, &mut n), AfterExit::Stay);
    }

    #[test]
    fn budget_counts_short_runs_and_long_run_resets() {
        let mut d = def(RestartPolicy::OnFailure);
        d.max_restarts = 2;
        let mut n = 0;
        let r1 = after_exit(&d, ExitStatus::Code(1), SHORT, &mut n);
        let r2 = after_exit(&d, ExitStatus::Code(1), SHORT, &mut n);
        assert_eq!(r1, AfterExit::Restart { delay: Duration::from_millis(100) });
        assert_eq!(r2, AfterExit::Restart { delay: Duration::from_millis(200) });
        // Third short run in a row: max_restarts = 2 allows 3 runs, then gives up.
        assert_eq!(after_exit(&d, ExitStatus::Code(1), SHORT, &mut n), AfterExit::GiveUp);
        let mut n = 2;
        assert_eq!(
            after_exit(&d, ExitStatus::Code(1), LONG, &mut n),
            AfterExit::Restart { delay: Duration::ZERO }
        );
        assert_eq!(n, 0);
    }

    #[test]
    fn zero_max_restarts_never_restarts() {
        let mut d = def(RestartPolicy::Always);
        d.max_restarts = 0;
        assert_eq!(after_exit(&d, ExitStatus::Code(1), LONG, &mut 0), AfterExit::GiveUp);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(100, 1), Duration::from_millis(100));
        assert_eq!(backoff(100, 4), Duration::from_millis(800));
        assert_eq!(backoff(100, 20), MAX_DELAY);
        assert_eq!(backoff(100, 200), MAX_DELAY);
    }
}
