//! The surge reload of an instance with `listen`, as data: a replacement is started beside the
//! running process (both accept on the same sockets), and only once it is ready does the old
//! one get `kill_signal` and drain; a replacement that fails is stopped and the old one keeps
//! serving. [`Surge::step`] does no I/O, like [`super::lifecycle::Machine`].
//!
//! The instance's lifecycle machine keeps describing the instance's *current* run; the surge
//! owns the other one, the *side* run: the candidate while it comes up, then whichever run is
//! being stopped (the old one after the swap, or a candidate that failed or was interrupted).
//! At most one side run exists, and the surge is `Idle` exactly when there is none.
//!
//! ```text
//!          Begin (running)          Ready: Promote (swap), StopSide, answer ok
//!   Idle ──────────────────▶ Candidate ─────────────────────────────────────▶ Draining ─SideGone─▶ Idle
//!    │ Begin (not running):     │ Failed / Interrupt / Spawned(err): StopSide, answer err  ▲  │ KillTimeout
//!    │ FallBack (a restart)     └──────────────────────────────────────────────────────────┘  ▼ KillSide
//! ```

/// Where the surge of one instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surge {
    /// No side run.
    Idle,
    /// The replacement runs beside the current run and is not ready yet.
    Candidate,
    /// The side run is being stopped: `kill_signal` sent (SIGKILL once `killed`).
    Draining { killed: bool },
}

/// What happened to the surge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SurgeEvent {
    /// A reload asks for a surge; `running` when the instance has a live current run.
    Begin { running: bool },
    /// The candidate was spawned, or could not be.
    Spawned(Result<(), String>),
    /// The candidate passed its health check, or stayed up for `min_uptime` without one.
    Ready,
    /// The candidate exited or its health check timed out.
    Failed(String),
    /// A command (stop, restart, remove, shutdown, trigger) or the current run's own exit
    /// came first: the candidate goes.
    Interrupt,
    /// The side run's whole group is gone.
    SideGone,
    /// The side run outlived `kill_timeout`.
    KillTimeout,
}

/// What the supervisor must do for the surge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SurgeEffect {
    /// Spawn the candidate as the side run; answer with `Spawned`.
    SpawnCandidate,
    /// Swap: the candidate becomes the current run, the old run the side run.
    Promote,
    /// `kill_signal` to the side run's group and arm its kill timer.
    StopSide,
    /// SIGKILL to the side run's group.
    KillSide,
    /// Answer the reload: the replacement is online, or why it is not.
    Answer(Result<(), String>),
    /// Nothing runs to surge beside: do a plain restart instead.
    FallBack,
}

impl Surge {
    /// True while a side run exists: stops and removals are answered only after it is gone.
    pub fn busy(self) -> bool {
        self != Surge::Idle
    }

    pub fn step(&mut self, event: SurgeEvent) -> Vec<SurgeEffect> {
        use SurgeEffect::*;
        match (*self, event) {
            (Surge::Idle, SurgeEvent::Begin { running: true }) => {
                *self = Surge::Candidate;
                vec![SpawnCandidate]
            }
            (Surge::Idle, SurgeEvent::Begin { running: false }) => vec![FallBack],
            (_, SurgeEvent::Begin { .. }) => {
                vec![Answer(Err("a reload of this instance is already under way".into()))]
            }
            (Surge::Candidate, SurgeEvent::Spawned(Ok(()))) => Vec::new(),
            (Surge::Candidate, SurgeEvent::Spawned(Err(e))) => {
                // Nothing was started: no side run.
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
            (Surge::Candidate, SurgeEvent::Interrupt) => {
                *self = Surge::Draining { killed: false };
                vec![StopSide, Answer(Err("interrupted by another command".into()))]
            }
            (Surge::Candidate | Surge::Draining { .. }, SurgeEvent::SideGone) => {
                let answer =
                    (*self == Surge::Candidate).then(|| Answer(Err("exited before it was ready".into())));
                *self = Surge::Idle;
                answer.into_iter().collect()
            }
            (Surge::Draining { killed: false }, SurgeEvent::KillTimeout) => {
                *self = Surge::Draining { killed: true };
                vec![KillSide]
            }
            // Late or irrelevant: a timer or probe of a run that is already being stopped.
            (Surge::Idle, _) | (Surge::Candidate, SurgeEvent::KillTimeout) | (Surge::Draining { .. }, _) => {
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SurgeEffect::*;
    use super::*;

    fn all_states() -> [Surge; 4] {
        [Surge::Idle, Surge::Candidate, Surge::Draining { killed: false }, Surge::Draining { killed: true }]
    }

    fn all_events() -> Vec<SurgeEvent> {
        vec![
            SurgeEvent::Begin { running: true },
            SurgeEvent::Begin { running: false },
            SurgeEvent::Spawned(Ok(())),
            SurgeEvent::Spawned(Err("no".into())),
            SurgeEvent::Ready,
            SurgeEvent::Failed("crashed".into()),
            SurgeEvent::Interrupt,
            SurgeEvent::SideGone,
            SurgeEvent::KillTimeout,
        ]
    }

    /// Invariants over every (state, event): a side run exists exactly when not idle, so a
    /// spawn only starts from idle and idle is only reached when the side run is gone (or was
    /// never spawned); a begun surge is answered exactly once; the old run is only stopped
    /// after the swap, i.e. a promotion is always followed by stopping the side; SIGKILL only
    /// after the grace period.
    #[test]
    fn every_state_and_event_keeps_the_invariants() {
        for from in all_states() {
            for event in all_events() {
                let mut s = from;
                let fx = s.step(event.clone());
                let row = format!("{from:?} + {event:?} -> {s:?} {fx:?}");
                if fx.contains(&SpawnCandidate) {
                    assert_eq!((from, s), (Surge::Idle, Surge::Candidate), "{row}");
                }
                if s == Surge::Idle && from != Surge::Idle {
                    let never_spawned = event == SurgeEvent::Spawned(Err("no".into()));
                    assert!(
                        event == SurgeEvent::SideGone || never_spawned,
                        "idle only once the side run is gone: {row}"
                    );
                }
                if let Some(i) = fx.iter().position(|f| *f == Promote) {
                    assert_eq!(fx.get(i + 1), Some(&StopSide), "{row}");
                }
                if fx.contains(&KillSide) {
                    assert_eq!(from, Surge::Draining { killed: false }, "{row}");
                }
                let answers = fx.iter().filter(|f| matches!(f, Answer(_))).count();
                assert!(answers <= 1, "{row}");
                // A surge that leaves the candidate state has been answered.
                if from == Surge::Candidate
                    && s != Surge::Candidate
                    && !matches!(event, SurgeEvent::Begin { .. })
                {
                    assert_eq!(answers, 1, "{row}");
                }
                if s == Surge::Candidate && from == Surge::Candidate {
                    assert!(!fx.iter().any(|f| matches!(f, Answer(Ok(_)))), "{row}");
                }
            }
        }
    }

    #[test]
    fn a_ready_replacement_takes_over_and_the_old_run_drains() {
        let mut s = Surge::Idle;
        assert_eq!(s.step(SurgeEvent::Begin { running: true }), [SpawnCandidate]);
        assert_eq!(s.step(SurgeEvent::Spawned(Ok(()))), []);
        assert_eq!(s, Surge::Candidate);
        assert_eq!(s.step(SurgeEvent::Ready), [Promote, StopSide, Answer(Ok(()))]);
        assert!(s.busy());
        assert_eq!(s.step(SurgeEvent::KillTimeout), [KillSide]);
        assert_eq!(s.step(SurgeEvent::KillTimeout), []);
        assert_eq!(s.step(SurgeEvent::SideGone), []);
        assert_eq!(s, Surge::Idle);
    }

    #[test]
    fn a_failed_replacement_is_stopped_and_the_old_run_keeps_serving() {
        let mut s = Surge::Idle;
        s.step(SurgeEvent::Begin { running: true });
        let fx = s.step(SurgeEvent::Failed("health check did not pass".into()));
        assert_eq!(fx, [StopSide, Answer(Err("health check did not pass".into()))]);
        assert!(!fx.contains(&Promote));
        assert_eq!(s.step(SurgeEvent::Ready), [], "too late: it is being stopped");
        assert_eq!(s.step(SurgeEvent::SideGone), []);
        assert_eq!(s, Surge::Idle);
        // A candidate whose group vanished at once is a failure too.
        s.step(SurgeEvent::Begin { running: true });
        assert_eq!(s.step(SurgeEvent::SideGone), [Answer(Err("exited before it was ready".into()))]);
        // A spawn that failed leaves nothing to stop.
        s.step(SurgeEvent::Begin { running: true });
        assert_eq!(s.step(SurgeEvent::Spawned(Err("not found".into()))), [Answer(Err("not found".into()))]);
        assert_eq!(s, Surge::Idle);
    }

    #[test]
    fn commands_interrupt_a_candidate_and_a_second_surge_is_refused() {
        let mut s = Surge::Idle;
        s.step(SurgeEvent::Begin { running: true });
        assert!(matches!(s.step(SurgeEvent::Begin { running: true }).as_slice(), [Answer(Err(_))]));
        assert!(matches!(s.step(SurgeEvent::Interrupt).as_slice(), [StopSide, Answer(Err(_))]));
        assert_eq!(s.step(SurgeEvent::Interrupt), []);
        let mut idle = Surge::Idle;
        assert_eq!(idle.step(SurgeEvent::Begin { running: false }), [FallBack]);
        assert_eq!(idle, Surge::Idle);
    }
}
