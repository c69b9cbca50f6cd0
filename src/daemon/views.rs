//! Turning the table and the supervisors' snapshots into the `list` and `info` shapes of the
//! protocol (spec §7).

use std::rc::{Rc, Weak};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::process::spawn;
use crate::protocol::{LastExitInfo, NameInfo, ProcessDetail, ProcessInfo};
use crate::supervisor::Snapshot;

use super::Daemon;
use super::table::Entry;

pub fn list(d: &Rc<Daemon>) -> Vec<ProcessInfo> {
    keep_fresh(d);
    let table = d.table.borrow();
    let mut stats = d.ctx.stats.borrow_mut();
    let rows: Vec<ProcessInfo> =
        table.ordered().into_iter().map(|e| info(e, &e.handle.snapshot.borrow(), &mut stats)).collect();
    let live: std::collections::HashSet<u32> = rows.iter().filter_map(|r| r.pid).collect();
    stats.retain(&|pid| live.contains(&pid));
    rows
}

/// Someone looks at CPU and memory: keep every running instance's sample fresh in the background
/// for a while (`stats::KEEP_FRESH_FOR`), so the next `list` is answered from memory. One task,
/// started by the first look and ended once nobody has looked for that long.
pub fn keep_fresh(d: &Rc<Daemon>) {
    if !d.ctx.stats.borrow_mut().looked_at(Instant::now()) {
        return;
    }
    let weak: Weak<Daemon> = Rc::downgrade(d);
    tokio::task::spawn_local(async move {
        loop {
            tokio::time::sleep(crate::stats::SWEEP_EVERY).await;
            let Some(d) = weak.upgrade() else { return };
            let mut stats = d.ctx.stats.borrow_mut();
            if d.closed.get() || !stats.sweep_due(Instant::now()) {
                return;
            }
            let table = d.table.borrow();
            for e in table.entries.values() {
                let snap = e.handle.snapshot.borrow();
                if let (Some(pid), Some(started)) = (snap.pid, snap.started_at) {
                    stats.refresh(pid, SystemTime::now().duration_since(started).unwrap_or_default());
                }
            }
        }
    });
}

pub fn detail(d: &Daemon, e: &Entry) -> ProcessDetail {
    let snap = e.handle.snapshot.borrow().clone();
    let info = info(e, &snap, &mut d.ctx.stats.borrow_mut());
    // While it runs, what runs: the definition and environment of that run.
    let launched = snap.launched.as_ref().filter(|_| snap.pid.is_some());
    let file_def = &e.inst.def;
    let config_changed = launched.map(|l| l.changed_in(file_def)).unwrap_or_default();
    let file_command = config_changed.iter().any(|k| k == "command").then(|| file_def.command.clone());
    let def: &crate::spec::ProcessDef = launched.map_or(file_def, |l| &l.def);
    let env = launched.map_or_else(|| e.inst.env(), |l| l.env());
    // As probed: with the instance's `${VAR}`s expanded.
    let health_check = def.health_check.as_deref().map(|h| crate::instances::expand_in(h, &env));
    ProcessDetail {
        info,
        command: def.command.clone(),
        argv: spawn::argv(&def.command),
        cwd: def.cwd.clone(),
        env,
        out_log: d.ctx.paths.out_log(&e.inst.name),
        err_log: d.ctx.paths.err_log(&e.inst.name),
        depends_on: def.depends_on.clone(),
        kill_signal: def.kill_signal,
        kill_timeout_ms: def.kill_timeout_ms,
        increment_var: def.increment_var.clone(),
        started_at_ms: snap.started_at.map(unix_ms),
        error: snap.error.clone(),
        last_exit: snap.last_exit.as_ref().map(|l| LastExitInfo {
            exit_code: l.status.code(),
            exit_signal: l.status.signal().map(|s| s.to_string()),
            reason: l.cause.as_str().to_string(),
            at_ms: unix_ms(l.at),
            stderr: l.stderr.clone(),
        }),
        health_check,
        health_error: snap.health_error.clone(),
        restart: def.restart,
        max_restarts: def.max_restarts,
        min_uptime_ms: def.min_uptime_ms,
        restart_delay_ms: def.restart_delay_ms,
        stop_exit_codes: def.stop_exit_codes.clone(),
        max_memory: def.max_memory,
        watch: def.watch.clone(),
        cron_restart: def.cron_restart.clone(),
        pre_start: def.pre_start.clone(),
        post_stop: def.post_stop.clone(),
        env_name: def.env_name.clone(),
        listen: listen_info(d, def),
        config_changed,
        file_command,
        log_gaps: [d.ctx.paths.out_log(&e.inst.name), d.ctx.paths.err_log(&e.inst.name)]
            .into_iter()
            .filter_map(|log| {
                let g = crate::logs::capture::gaps_of(&log);
                (g.episodes > 0).then_some(crate::protocol::LogGapInfo {
                    log,
                    dropped_bytes: g.dropped_bytes,
                    episodes: g.episodes,
                    reason: g.reason,
                    ongoing: g.ongoing,
                })
            })
            .collect(),
    }
}

pub fn names(d: &Daemon, e: &Entry) -> NameInfo {
    NameInfo {
        name: e.inst.name.clone(),
        out_log: d.ctx.paths.out_log(&e.inst.name),
        err_log: d.ctx.paths.err_log(&e.inst.name),
        log_date_format: e.inst.def.log_date_format.clone(),
    }
}

fn info(e: &Entry, snap: &Snapshot, stats: &mut crate::stats::StatsCache) -> ProcessInfo {
    let def = &e.inst.def;
    let uptime =
        snap.pid.and(snap.started_at).map(|t| SystemTime::now().duration_since(t).unwrap_or_default());
    let usage = snap.pid.zip(uptime).and_then(|(pid, up)| stats.get(pid, up));
    let (exit_code, exit_signal) = match &snap.last_exit {
        Some(last) => (last.status.code(), last.status.signal().map(|s| s.to_string())),
        None => (None, None),
    };
    ProcessInfo {
        name: e.inst.name.clone(),
        process: def.name.clone(),
        instance: crate::instances::instance_field(e.inst.index, def.instances),
        instances: def.instances,
        group: e.inst.group(),
        status: snap.status,
        pid: snap.pid,
        restarts: snap.restarts,
        uptime_ms: uptime.map(|u| u.as_millis() as u64),
        exit_code,
        exit_signal,
        cpu_percent: usage.map(|u| u.0),
        memory_bytes: usage.map(|u| u.1),
        config: (*e.inst.config).clone(),
        restart_in_ms: snap
            .restart_at
            .map(|t| t.saturating_duration_since(std::time::Instant::now()).as_millis() as u64),
    }
}

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The sockets of `def`'s `listen` and whether the daemon holds each bound.
fn listen_info(d: &Daemon, def: &crate::spec::ProcessDef) -> Vec<crate::protocol::ListenInfo> {
    let bound = d.ctx.sockets.listed(&def.name);
    def.listen
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let parsed = crate::listen::Listen::parse(text).ok();
            let name = parsed.as_ref().map_or(def.name.as_str(), |l| l.fd_name(&def.name)).to_string();
            let address = parsed.as_ref().map_or_else(|| text.clone(), |l| l.endpoint.to_string());
            let is_bound = bound.iter().any(|(a, _)| *a == address);
            crate::protocol::ListenInfo { address, name, fd: 3 + i as u32, bound: is_bound }
        })
        .collect()
}
