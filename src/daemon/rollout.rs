//! Rolling operations that wait for instances to come up: `reload` (one instance at a time)
//! and `start --wait`. Both rest on one question: has this run of the instance come up?

use std::rc::Rc;

use tokio::sync::watch;

use crate::protocol::{Action, ConfigPayload, Outcome, Report, Status};
use crate::spec::ProcessDef;
use crate::supervisor::{self, Cmd};

use super::Daemon;
use super::ops::{Result, collect, dispatch, in_dependency_order, prepare, running_dependents};

/// Rolling restart: one instance at a time, each replacement online (health check passed, or up
/// for `min_uptime` without one) before the next is touched, then the running dependents the
/// same way. A replacement that fails stops the rollout; the instances after it are left as
/// they were. An instance of a process with `listen` is replaced by surge (`Cmd::Surge`): the
/// old process serves until the new one is ready, and keeps serving if it fails.
pub async fn reload(d: &Rc<Daemon>, config: Option<ConfigPayload>, targets: &[String]) -> Result<Report> {
    let (names, mut report) = prepare(d, config, targets).await?;
    // Running dependents follow, once what they depend on has been rolled (dependency order
    // puts them last): none keeps running against the old version.
    let mut all: std::collections::BTreeSet<String> = names.iter().cloned().collect();
    all.extend(running_dependents(d, &names));
    let ordered = in_dependency_order(&d.table.borrow(), &all);
    for name in ordered {
        let (rxs, mut snap, def) = {
            let table = d.table.borrow();
            let Some(e) = table.entries.get(&name) else { continue };
            // With `listen`, a running instance is replaced by surge: the new process starts
            // beside the old one, on the same sockets.
            let rxs = dispatch(&table, std::slice::from_ref(&name), |e, reply| {
                let deps = table.dep_watches(&e.inst.def.depends_on);
                if !e.inst.def.listen.is_empty() && e.handle.snapshot.borrow().status.is_running() {
                    Cmd::Surge { deps, reply }
                } else {
                    Cmd::Restart { deps, reply }
                }
            });
            (rxs, e.handle.snapshot.clone(), e.inst.def.clone())
        };
        let mut outcome = collect(rxs).await.pop().unwrap_or(Outcome {
            name: name.clone(),
            action: Action::Removed,
            status: Status::Stopped,
            pid: None,
            detail: None,
        });
        // A surge answers once its replacement is ready (and the old process stopping).
        let surged = outcome.action == Action::Online;
        if surged {
            outcome.action = Action::Restarted;
        }
        if outcome.action != Action::Failed
            && !surged
            && let Err(why) = replacement_ready(&mut snap, &def, Patience::FirstRun).await
        {
            outcome.action = Action::Failed;
            outcome.detail = Some(why);
        }
        let snapshot = snap.borrow().clone();
        outcome.status = snapshot.status;
        outcome.pid = snapshot.pid;
        let failed = outcome.action == Action::Failed;
        report.processes.push(outcome);
        if failed {
            break;
        }
    }
    Ok(report)
}

/// `start --wait`: waits for every named instance at once; each outcome is `online` or `failed`
/// with the reason.
pub async fn wait(d: &Rc<Daemon>, names: &[String]) -> Report {
    let watchers: Vec<_> = {
        let table = d.table.borrow();
        names
            .iter()
            .filter_map(|n| table.entries.get(n))
            .map(|e| {
                let mut snap = e.handle.snapshot.clone();
                let def = e.inst.def.clone();
                let name = e.inst.name.clone();
                let deps: Vec<(String, watch::Receiver<supervisor::Snapshot>)> = def
                    .depends_on
                    .iter()
                    .flat_map(|p| table.instances_of(p))
                    .map(|d| (d.inst.name.clone(), d.handle.snapshot.clone()))
                    .collect();
                let mut bus = d.ctx.bus.subscribe();
                tokio::task::spawn_local(async move {
                    // A dependent whose dependency gave up would wait forever: that is a failure.
                    let dep_failed = async {
                        loop {
                            if let Some((n, _)) =
                                deps.iter().find(|(_, s)| s.borrow().status == Status::Errored)
                            {
                                return format!("its dependency {n} is errored");
                            }
                            if bus.changed().await.is_err() {
                                return std::future::pending().await;
                            }
                        }
                    };
                    let result = tokio::select! {
                        r = replacement_ready(&mut snap, &def, Patience::UntilItGivesUp) => r,
                        why = dep_failed => Err(why),
                    };
                    let s = snap.borrow().clone();
                    let (action, detail) = match result {
                        Ok(()) => (Action::Online, None),
                        Err(why) => (Action::Failed, Some(why)),
                    };
                    Outcome { name, action, status: s.status, pid: s.pid, detail }
                })
            })
            .collect()
    };
    let mut processes = Vec::with_capacity(watchers.len());
    for w in watchers {
        if let Ok(outcome) = w.await {
            processes.push(outcome);
        }
    }
    Report { processes }
}

/// Waits until a restarted instance counts as up: `online` and, without a health check, still
/// running after `min_uptime`.
async fn replacement_ready(
    snap: &mut watch::Receiver<supervisor::Snapshot>,
    def: &ProcessDef,
    patience: Patience,
) -> std::result::Result<(), String> {
    let failed = |s: &supervisor::Snapshot| -> Option<String> {
        match s.status {
            Status::Errored => Some(s.error.clone().unwrap_or_else(|| "errored".into())),
            Status::Unhealthy => Some(format!(
                "health check did not pass within {}ms{}",
                def.health_timeout_ms,
                s.health_error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
            )),
            Status::Stopped => Some("exited".into()),
            Status::Waiting if s.restart_at.is_some() && patience == Patience::FirstRun => {
                Some("crashed after start".into())
            }
            _ => None,
        }
    };
    // The first run's pid: a reload's replacement that is replaced in turn (it crashed and the
    // policy restarted it) has failed, even when the states in between were not seen (a watch
    // keeps only the latest snapshot).
    let mut first_pid = None;
    'online: loop {
        loop {
            {
                let s = snap.borrow_and_update();
                if let Some(why) = failed(&s) {
                    return Err(why);
                }
                if patience == Patience::FirstRun {
                    if s.status == Status::Stopping {
                        return Err("stopping before it was online".into());
                    }
                    match (first_pid, s.pid) {
                        (Some(a), Some(b)) if a != b => return Err("crashed after start".into()),
                        (None, Some(b)) => first_pid = Some(b),
                        _ => {}
                    }
                }
                if s.status == Status::Online {
                    break;
                }
            }
            if snap.changed().await.is_err() {
                return Err("removed".into());
            }
        }
        if def.health_check.is_some() {
            return Ok(());
        }
        let settle = tokio::time::sleep(def.min_uptime());
        tokio::pin!(settle);
        loop {
            tokio::select! {
                _ = &mut settle => return Ok(()),
                changed = snap.changed() => {
                    if changed.is_err() {
                        return Err("removed".into());
                    }
                    let s = snap.borrow_and_update();
                    if let Some(why) = failed(&s) {
                        return Err(why);
                    }
                    if patience == Patience::FirstRun && s.pid.is_some() && s.pid != first_pid {
                        return Err("crashed after start".into());
                    }
                    if s.status == Status::Online {
                        continue;
                    }
                    match patience {
                        Patience::FirstRun => return Err(format!("{} before min_uptime", s.status.as_str())),
                        // Crashed and restarting: wait for the next run to come up.
                        Patience::UntilItGivesUp => continue 'online,
                    }
                }
            }
        }
    }
}

/// How a wait treats a crash that the restart policy will answer with a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Patience {
    /// `reload`: the replacement's first run must come up, or the rollout stops.
    FirstRun,
    /// `start --wait`: keep waiting through restarts until online or given up (`errored`).
    UntilItGivesUp,
}
