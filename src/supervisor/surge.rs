//! The surge reload of an instance with `listen`, as data: a replacement is started beside the
//! running process (both accept on the same sockets), and only once it is ready does the old
//! one get `kill_signal` and drain; a replacement that fails is stopped and the old one keeps
//! serving. [`Surge::step`] does no I/O, like [`super::lifecycle::Machine`].
//!
//! The instance's lifecycle machine keeps describing the instance's *current* run; the surge
//! owns the other one, the *side* run: the candidate while it comes up, then whichever run is
//! being stopped (the old one after the swap, or a candidate that failed or was interrupted).
//! At most one side run exists. The hooks frame the side run as they frame any run: the
//! candidate's `pre_start` runs before it is spawned (a failure is a rollback: nothing is
//! spawned, the old run keeps serving), and `post_stop` once the side run's group is gone. The
//! surge is `Idle` exactly when there is no side run and no surge hook runs.
//!
//! ```text
//!          Begin (running)                 Ready: Promote (swap), StopSide, answer ok
//!   Idle ──────────────────▶ Candidate ───────────────────────────────────────────▶ Draining ─SideGone─▶ PostStop ─HookDone─▶ Idle
//!    │ ▲   with pre_start:    ▲ │ Failed / Interrupt / Halt: StopSide, answer err      ▲  │ KillTimeout  (no post_stop: Idle)
//!    │ │   RunPreStart        │ │ CurrentExited: HandOver (the candidate becomes the   │  ▼ KillSide
//!    │ │                      │ │ current run, still starting), StopSide (the rest of   │
//!    │ │                      │ │ the old group)                                        │
//!    │ │                      │ └───────────────────────────────────────────────────────┘
//!    │ └─HookDone(err)/aborted─ PreStart ─HookDone(ok): SpawnCandidate
//!    │ Begin (not running): FallBack (a restart)
//! ```

/// Which hooks the instance has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hooks {
    pub pre_start: bool,
    pub post_stop: bool,
}

/// Where the surge of one instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surge {
    /// No side run, no surge hook.
    Idle,
    /// The replacement's `pre_start` runs; nothing is spawned yet. `aborted` once it was killed
    /// (the surge then only waits for it to be gone).
    PreStart { aborted: bool },
    /// The replacement runs beside the current run and is not ready yet.
    Candidate,
    /// The side run is being stopped: `kill_signal` sent (SIGKILL once `killed`).
    Draining { killed: bool },
    /// The side run is gone and its `post_stop` runs; `aborted` once it was killed.
    PostStop { aborted: bool },
}

/// What happened to the surge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SurgeEvent {
    /// A reload asks for a surge; `running` when the instance has a live current run.
    Begin { running: bool },
    /// The surge's hook (`pre_start` or `post_stop`) ended, or could not be started.
    HookDone(Result<(), String>),
    /// The candidate was spawned, or could not be.
    Spawned(Result<(), String>),
    /// The candidate passed its health check, or stayed up for `min_uptime` without one.
    Ready,
    /// The candidate exited or its health check timed out.
    Failed(String),
    /// A restart or a trigger came first: the candidate goes (or is never spawned).
    Interrupt,
    /// A stop, removal or shutdown came first: like `Interrupt`, and a surge hook that runs is
    /// killed too.
    Halt,
    /// The current run exited by itself while the surge was under way.
    CurrentExited,
    /// The side run's whole group is gone.
    SideGone,
    /// The side run outlived `kill_timeout`.
    KillTimeout,
}

/// What the supervisor must do for the surge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SurgeEffect {
    /// Run `pre_start` for the candidate (the environment the candidate will get); answer with
    /// `HookDone`.
    RunPreStart,
    /// Spawn the candidate as the side run (with the environment `pre_start` had); answer with
    /// `Spawned`.
    SpawnCandidate,
    /// Swap: the candidate becomes the current run, the old run the side run.
    Promote,
    /// The current run exited by itself: the candidate, not ready yet, becomes the current run
    /// (the lifecycle takes it over as a restart, still starting), the exited run the side run;
    /// the reload is answered `restarted` and waits for it like any restarted process.
    HandOver,
    /// `kill_signal` to the side run's group and arm its kill timer.
    StopSide,
    /// SIGKILL to the side run's group.
    KillSide,
    /// Run `post_stop` for the side run, whose group is gone; answer with `HookDone`.
    RunPostStop,
    /// SIGKILL to the surge hook's group (it then reports `HookDone`).
    AbortHook,
    /// Answer the reload: the replacement is online, or why it is not.
    Answer(Result<(), String>),
    /// Nothing runs to surge beside: do a plain restart instead.
    FallBack,
}

const INTERRUPTED: &str = "interrupted by another command";

impl Surge {
    /// True while a side run or a surge hook exists: stops and removals are answered only after
    /// it is gone.
    pub fn busy(self) -> bool {
        self != Surge::Idle
    }

    /// True while the reload waits for its answer (the replacement is not ready yet).
    pub fn pending(self) -> bool {
        matches!(self, Surge::PreStart { aborted: false } | Surge::Candidate)
    }

    pub fn step(&mut self, hooks: Hooks, event: SurgeEvent) -> Vec<SurgeEffect> {
        use SurgeEffect::*;
        match (*self, event) {
            (Surge::Idle, SurgeEvent::Begin { running: true }) => {
                if hooks.pre_start {
                    *self = Surge::PreStart { aborted: false };
                    vec![RunPreStart]
                } else {
                    *self = Surge::Candidate;
                    vec![SpawnCandidate]
                }
            }
            (Surge::Idle, SurgeEvent::Begin { running: false }) => vec![FallBack],
            (_, SurgeEvent::Begin { .. }) => {
                vec![Answer(Err("a reload of this instance is already under way".into()))]
            }
            (Surge::PreStart { aborted: false }, SurgeEvent::HookDone(Ok(()))) => {
                *self = Surge::Candidate;
                vec![SpawnCandidate]
            }
            (Surge::PreStart { aborted: false }, SurgeEvent::HookDone(Err(e))) => {
                // Nothing was spawned: a rollback, the old run never noticed.
                *self = Surge::Idle;
                vec![Answer(Err(format!("pre_start failed: {e}")))]
            }
            (Surge::PreStart { aborted: true } | Surge::PostStop { .. }, SurgeEvent::HookDone(_)) => {
                *self = Surge::Idle;
                Vec::new()
            }
            (Surge::PreStart { aborted: false }, SurgeEvent::Interrupt | SurgeEvent::Halt) => {
                *self = Surge::PreStart { aborted: true };
                vec![AbortHook, Answer(Err(INTERRUPTED.into()))]
            }
            (Surge::PreStart { aborted: false }, SurgeEvent::CurrentExited) => {
                // No replacement exists yet: the instance follows its restart policy.
                *self = Surge::PreStart { aborted: true };
                vec![
                    AbortHook,
                    Answer(Err("the running process exited before its replacement was started".into())),
                ]
            }
            (Surge::Candidate, SurgeEvent::Spawned(Ok(()))) => Vec::new(),
            (Surge::Candidate, SurgeEvent::Spawned(Err(e))) => {
                // Nothing was started: no side run, nothing exited.
                *self = Surge::Idle;
                vec![Answer(Err(e))]
            }
            (Surge::Candidate, SurgeEvent::Ready) => {
                *self = Surge::Draining { killed: false };
                vec![Promote, StopSide, Answer(Ok(()))]
            }
            (Surge::Candidate, SurgeEvent::Failed(why)) => {
                *self = Surge::Draining { killed: false };
                vec![StopSide, Answer(Err(why))]
            }
            (Surge::Candidate, SurgeEvent::Interrupt | SurgeEvent::Halt) => {
                *self = Surge::Draining { killed: false };
                vec![StopSide, Answer(Err(INTERRUPTED.into()))]
            }
            (Surge::Candidate, SurgeEvent::CurrentExited) => {
                // The newer process carries on: it is the instance from now on, and what is
                // left of the old group goes.
                *self = Surge::Draining { killed: false };
                vec![HandOver, StopSide]
            }
            (Surge::Candidate | Surge::Draining { .. }, SurgeEvent::SideGone) => {
                let answer =
                    (*self == Surge::Candidate).then(|| Answer(Err("exited before it was ready".into())));
                *self = if hooks.post_stop { Surge::PostStop { aborted: false } } else { Surge::Idle };
                let post_stop = hooks.post_stop.then_some(RunPostStop);
                answer.into_iter().chain(post_stop).collect()
            }
            (Surge::Draining { killed: false }, SurgeEvent::KillTimeout) => {
                *self = Surge::Draining { killed: true };
                vec![KillSide]
            }
            (Surge::PostStop { aborted: false }, SurgeEvent::Halt) => {
                *self = Surge::PostStop { aborted: true };
                vec![AbortHook]
            }
            // Late or irrelevant: a timer or probe of a run that is already being stopped, a
            // hook that is already being killed, a restart while `post_stop` finishes.
            (Surge::Idle, _)
            | (Surge::PreStart { .. }, _)
            | (Surge::Candidate, SurgeEvent::KillTimeout | SurgeEvent::HookDone(_))
            | (Surge::Draining { .. }, _)
            | (Surge::PostStop { .. }, _) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SurgeEffect::*;
    use super::*;

    const NONE: Hooks = Hooks { pre_start: false, post_stop: false };
    const BOTH: Hooks = Hooks { pre_start: true, post_stop: true };

    fn all_states() -> Vec<Surge> {
        let mut v = vec![Surge::Idle, Surge::Candidate];
        for b in [false, true] {
            v.extend([
                Surge::PreStart { aborted: b },
                Surge::Draining { killed: b },
                Surge::PostStop { aborted: b },
            ]);
        }
        v
    }

    fn all_events() -> Vec<SurgeEvent> {
        vec![
            SurgeEvent::Begin { running: true },
            SurgeEvent::Begin { running: false },
            SurgeEvent::HookDone(Ok(())),
            SurgeEvent::HookDone(Err("no".into())),
            SurgeEvent::Spawned(Ok(())),
            SurgeEvent::Spawned(Err("no".into())),
            SurgeEvent::Ready,
            SurgeEvent::Failed("crashed".into()),
            SurgeEvent::Interrupt,
            SurgeEvent::Halt,
            SurgeEvent::CurrentExited,
            SurgeEvent::SideGone,
            SurgeEvent::KillTimeout,
        ]
    }

    fn all_hooks() -> Vec<Hooks> {
        let mut v = Vec::new();
        for pre_start in [false, true] {
            for post_stop in [false, true] {
                v.push(Hooks { pre_start, post_stop });
            }
        }
        v
    }

    fn has_side(s: Surge) -> bool {
        matches!(s, Surge::Candidate | Surge::Draining { .. })
    }

    fn has_hook(s: Surge) -> bool {
        matches!(s, Surge::PreStart { .. } | Surge::PostStop { .. })
    }

    /// Invariants over every (hooks, state, event): a side run exists only in `Candidate` and
    /// `Draining`, so a spawn only starts from idle or a `pre_start` that passed, and the side
    /// run is only let go (idle, or `post_stop`) once its group is gone (or it was never
    /// spawned); a surge hook is only let go once it reported its end, so no hook is left
    /// behind; a stop, removal or shutdown kills a surge hook that runs; hooks run only when
    /// the instance has them, `pre_start` before the candidate, `post_stop` after the side run;
    /// a begun surge is answered exactly once; the old run is only stopped after a swap (a
    /// promotion or a hand-over is always followed by stopping the side); SIGKILL only after
    /// the grace period.
    #[test]
    fn every_state_and_event_keeps_the_invariants() {
        let mut rows = 0;
        for hooks in all_hooks() {
            for from in all_states() {
                for event in all_events() {
                    let mut s = from;
                    let fx = s.step(hooks, event.clone());
                    let row = format!("{hooks:?} {from:?} + {event:?} -> {s:?} {fx:?}");
                    rows += 1;
                    if fx.contains(&SpawnCandidate) {
                        assert_eq!(s, Surge::Candidate, "{row}");
                        assert!(
                            (from == Surge::Idle && !hooks.pre_start)
                                || (from == Surge::PreStart { aborted: false }
                                    && event == SurgeEvent::HookDone(Ok(()))),
                            "{row}"
                        );
                    }
                    if s == Surge::Candidate && from != Surge::Candidate {
                        assert!(fx.contains(&SpawnCandidate), "{row}");
                    }
                    // The side run is let go only once its group is gone.
                    if has_side(from) && !has_side(s) {
                        let never_spawned = event == SurgeEvent::Spawned(Err("no".into()));
                        assert!(event == SurgeEvent::SideGone || never_spawned, "{row}");
                    }
                    // A surge hook is let go only once it ended.
                    if has_hook(from) && s != from {
                        let aborting = matches!(
                            (from, s),
                            (Surge::PreStart { aborted: false }, Surge::PreStart { aborted: true })
                                | (Surge::PostStop { aborted: false }, Surge::PostStop { aborted: true })
                        );
                        assert!(aborting || matches!(event, SurgeEvent::HookDone(_)), "{row}");
                        if aborting {
                            assert!(fx.contains(&AbortHook), "{row}");
                        }
                    }
                    if fx.contains(&AbortHook) {
                        assert!(
                            matches!(
                                from,
                                Surge::PreStart { aborted: false } | Surge::PostStop { aborted: false }
                            ),
                            "{row}"
                        );
                    }
                    // A stop kills a surge hook that runs.
                    if event == SurgeEvent::Halt && has_hook(from) {
                        assert!(
                            matches!(
                                s,
                                Surge::PreStart { aborted: true } | Surge::PostStop { aborted: true }
                            ),
                            "{row}"
                        );
                    }
                    // Hooks run only when defined, each in its place.
                    if fx.contains(&RunPreStart) {
                        assert!(hooks.pre_start, "{row}");
                        assert_eq!((from, s), (Surge::Idle, Surge::PreStart { aborted: false }), "{row}");
                    }
                    if fx.contains(&RunPostStop) {
                        assert!(hooks.post_stop && event == SurgeEvent::SideGone, "{row}");
                        assert!(has_side(from), "{row}");
                        assert_eq!(s, Surge::PostStop { aborted: false }, "{row}");
                    }
                    if has_side(from) && event == SurgeEvent::SideGone {
                        assert_eq!(fx.contains(&RunPostStop), hooks.post_stop, "{row}");
                    }
                    for swap in [Promote, HandOver] {
                        if let Some(i) = fx.iter().position(|f| *f == swap) {
                            assert_eq!(fx.get(i + 1), Some(&StopSide), "{row}");
                            assert_eq!(from, Surge::Candidate, "{row}");
                        }
                    }
                    if fx.contains(&KillSide) {
                        assert_eq!(from, Surge::Draining { killed: false }, "{row}");
                    }
                    let answers = fx.iter().filter(|f| matches!(f, Answer(_) | HandOver)).count();
                    assert!(answers <= 1, "{row}");
                    // A surge that stops waiting for its replacement has been answered; one that
                    // still waits has not.
                    if !matches!(event, SurgeEvent::Begin { .. }) {
                        if from.pending() && !s.pending() {
                            assert_eq!(answers, 1, "{row}");
                        }
                        if from.pending() && s.pending() || !from.pending() {
                            assert_eq!(answers, 0, "{row}");
                        }
                    }
                    if s.pending() && from.pending() {
                        assert!(!fx.iter().any(|f| matches!(f, Answer(Ok(_)))), "{row}");
                    }
                }
            }
        }
        assert_eq!(rows, 4 * 8 * 13);
    }

    #[test]
    fn a_ready_replacement_takes_over_and_the_old_run_drains() {
        let mut s = Surge::Idle;
        assert_eq!(s.step(NONE, SurgeEvent::Begin { running: true }), [SpawnCandidate]);
        assert_eq!(s.step(NONE, SurgeEvent::Spawned(Ok(()))), []);
        assert_eq!(s, Surge::Candidate);
        assert_eq!(s.step(NONE, SurgeEvent::Ready), [Promote, StopSide, Answer(Ok(()))]);
        assert!(s.busy());
        assert_eq!(s.step(NONE, SurgeEvent::KillTimeout), [KillSide]);
        assert_eq!(s.step(NONE, SurgeEvent::KillTimeout), []);
        assert_eq!(s.step(NONE, SurgeEvent::SideGone), []);
        assert_eq!(s, Surge::Idle);
    }

    #[test]
    fn hooks_frame_the_replacement_and_the_drained_run() {
        let mut s = Surge::Idle;
        assert_eq!(s.step(BOTH, SurgeEvent::Begin { running: true }), [RunPreStart]);
        assert!(s.busy() && s.pending());
        assert_eq!(s.step(BOTH, SurgeEvent::Ready), [], "no candidate yet");
        assert_eq!(s.step(BOTH, SurgeEvent::HookDone(Ok(()))), [SpawnCandidate]);
        assert_eq!(s.step(BOTH, SurgeEvent::Ready), [Promote, StopSide, Answer(Ok(()))]);
        assert_eq!(s.step(BOTH, SurgeEvent::SideGone), [RunPostStop]);
        assert!(s.busy(), "busy until post_stop ended");
        assert_eq!(s.step(BOTH, SurgeEvent::Interrupt), [], "a restart lets post_stop finish");
        assert_eq!(s.step(BOTH, SurgeEvent::HookDone(Err("exit 1".into()))), []);
        assert_eq!(s, Surge::Idle);
        // A failed replacement gets its post_stop too.
        s.step(BOTH, SurgeEvent::Begin { running: true });
        s.step(BOTH, SurgeEvent::HookDone(Ok(())));
        assert_eq!(
            s.step(BOTH, SurgeEvent::Failed("crashed".into())),
            [StopSide, Answer(Err("crashed".into()))]
        );
        assert_eq!(s.step(BOTH, SurgeEvent::SideGone), [RunPostStop]);
        s.step(BOTH, SurgeEvent::HookDone(Ok(())));
        assert_eq!(s, Surge::Idle);
    }

    #[test]
    fn a_failing_pre_start_is_a_rollback_and_nothing_is_spawned() {
        let mut s = Surge::Idle;
        s.step(BOTH, SurgeEvent::Begin { running: true });
        let fx = s.step(BOTH, SurgeEvent::HookDone(Err("`check` exited with code 3".into())));
        assert_eq!(fx, [Answer(Err("pre_start failed: `check` exited with code 3".into()))]);
        assert_eq!(s, Surge::Idle);
    }

    #[test]
    fn a_stop_kills_a_surge_hook_and_waits_for_it() {
        for hook_state in [Surge::PreStart { aborted: false }, Surge::PostStop { aborted: false }] {
            let mut s = hook_state;
            let fx = s.step(BOTH, SurgeEvent::Halt);
            assert_eq!(fx.first(), Some(&AbortHook), "{hook_state:?}");
            assert!(s.busy(), "the stop is answered once the hook is gone");
            assert_eq!(s.step(BOTH, SurgeEvent::Halt), []);
            assert_eq!(s.step(BOTH, SurgeEvent::HookDone(Ok(()))), [], "killed: never spawns");
            assert_eq!(s, Surge::Idle);
        }
        // A restart during pre_start: the replacement is not spawned either.
        let mut s = Surge::Idle;
        s.step(BOTH, SurgeEvent::Begin { running: true });
        assert_eq!(s.step(BOTH, SurgeEvent::Interrupt), [AbortHook, Answer(Err(INTERRUPTED.into()))]);
        assert_eq!(s.step(BOTH, SurgeEvent::HookDone(Ok(()))), []);
    }

    #[test]
    fn the_replacement_carries_on_when_the_old_run_exits_by_itself() {
        let mut s = Surge::Idle;
        s.step(BOTH, SurgeEvent::Begin { running: true });
        s.step(BOTH, SurgeEvent::HookDone(Ok(())));
        assert_eq!(s.step(BOTH, SurgeEvent::CurrentExited), [HandOver, StopSide]);
        assert_eq!(s, Surge::Draining { killed: false });
        // The candidate is now the current run: its probe and timers are the lifecycle's.
        assert_eq!(s.step(BOTH, SurgeEvent::Ready), []);
        assert_eq!(s.step(BOTH, SurgeEvent::SideGone), [RunPostStop]);
        // Before the candidate exists, the instance follows its restart policy.
        let mut s = Surge::Idle;
        s.step(BOTH, SurgeEvent::Begin { running: true });
        assert!(matches!(s.step(BOTH, SurgeEvent::CurrentExited).as_slice(), [AbortHook, Answer(Err(_))]));
    }

    #[test]
    fn a_failed_replacement_is_stopped_and_the_old_run_keeps_serving() {
        let mut s = Surge::Idle;
        s.step(NONE, SurgeEvent::Begin { running: true });
        let fx = s.step(NONE, SurgeEvent::Failed("health check did not pass".into()));
        assert_eq!(fx, [StopSide, Answer(Err("health check did not pass".into()))]);
        assert!(!fx.contains(&Promote));
        assert_eq!(s.step(NONE, SurgeEvent::Ready), [], "too late: it is being stopped");
        assert_eq!(s.step(NONE, SurgeEvent::SideGone), []);
        assert_eq!(s, Surge::Idle);
        // A candidate whose group vanished at once is a failure too.
        s.step(NONE, SurgeEvent::Begin { running: true });
        assert_eq!(s.step(NONE, SurgeEvent::SideGone), [Answer(Err("exited before it was ready".into()))]);
        // A spawn that failed leaves nothing to stop.
        s.step(NONE, SurgeEvent::Begin { running: true });
        assert_eq!(
            s.step(NONE, SurgeEvent::Spawned(Err("not found".into()))),
            [Answer(Err("not found".into()))]
        );
        assert_eq!(s, Surge::Idle);
    }

    #[test]
    fn commands_interrupt_a_candidate_and_a_second_surge_is_refused() {
        let mut s = Surge::Idle;
        s.step(NONE, SurgeEvent::Begin { running: true });
        assert!(matches!(s.step(NONE, SurgeEvent::Begin { running: true }).as_slice(), [Answer(Err(_))]));
        assert!(matches!(s.step(NONE, SurgeEvent::Interrupt).as_slice(), [StopSide, Answer(Err(_))]));
        assert_eq!(s.step(NONE, SurgeEvent::Interrupt), []);
        let mut idle = Surge::Idle;
        assert_eq!(idle.step(NONE, SurgeEvent::Begin { running: false }), [FallBack]);
        assert_eq!(idle, Surge::Idle);
    }
}
