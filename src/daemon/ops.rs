//! What each request does to the table: apply a config, start, stop, restart, scale, signal,
//! flush, list, kill. Each operation resolves and checks everything first and only then changes
//! anything, so a bad request leaves the daemon as it was. Table borrows never cross an await:
//! commands are sent under the borrow, replies are awaited after it.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use tokio::sync::oneshot;

use crate::instances::{self, instance_name};
use crate::protocol::{
    Action, ConfigPayload, ErrorKind, ErrorReply, Outcome, Report, Request, Response, Status, VERSION,
};
use crate::spec::ProcessDef;
use crate::supervisor::{self, Cmd, Instance, Reply};

use super::table::{self, Entry, Item, Table};
use super::{Daemon, views};

pub(super) type Result<T> = std::result::Result<T, ErrorReply>;

pub async fn handle(d: &Rc<Daemon>, req: Request) -> Response {
    // Every field again: the socket is an API, a raw request skips the CLI's checks.
    if let Err(e) = super::validate::request(d, &req) {
        return Response::Error(e);
    }
    if !req.is_mutation() {
        return run(d, req, None).await.unwrap_or_else(Response::Error);
    }
    // Mutations of the same config file run one at a time; the keys are looked up again once
    // held, in case a name moved to another file meanwhile.
    let mut guard = None;
    for _ in 0..8 {
        if let Err(e) = d.check_open() {
            return Response::Error(e);
        }
        let keys = lock_keys(d, &req);
        if guard.as_ref().is_some_and(|g: &super::locks::Guard| g.covers(&keys)) {
            break;
        }
        drop(guard.take());
        guard = Some(d.locks.acquire(keys).await);
    }
    if let Err(e) = d.check_open() {
        return Response::Error(e);
    }
    run(d, req, guard).await.unwrap_or_else(Response::Error)
}

/// The config files a mutation touches: its own, or those of the processes it names.
fn lock_keys(d: &Rc<Daemon>, req: &Request) -> BTreeSet<std::path::PathBuf> {
    let table = d.table.borrow();
    let of_targets = |targets: &[String]| -> BTreeSet<std::path::PathBuf> {
        table
            .resolve(targets)
            .unwrap_or_default()
            .iter()
            .filter_map(|n| table.entries.get(n))
            .map(|e| (*e.inst.config).clone())
            .collect()
    };
    match req {
        Request::Start { config: Some(c), .. }
        | Request::Restart { config: Some(c), .. }
        | Request::Reload { config: Some(c), .. } => [c.file.path.clone()].into(),
        Request::Start { targets, .. }
        | Request::Restart { targets, .. }
        | Request::Reload { targets, .. }
        | Request::Stop { targets }
        | Request::Signal { targets, .. } => of_targets(targets),
        Request::Scale { process, .. } => table.config_of(process).cloned().into_iter().collect(),
        // Every file: what is managed and what the dump holds.
        Request::Resurrect => {
            let mut keys: BTreeSet<std::path::PathBuf> =
                table.entries.values().map(|e| (*e.inst.config).clone()).collect();
            if let Some(saved) = super::state::read(&d.ctx.paths.dump_file()) {
                keys.extend(saved.instances.into_iter().map(|i| i.config));
            }
            keys
        }
        _ => BTreeSet::new(),
    }
}

/// Runs a request. `hold` is the mutation's lock: an operation releases it once every command
/// is dispatched (each supervisor then sees commands in dispatch order) and keeps it only
/// while its next step depends on the previous one's outcome (stop layers, removals, a
/// rollout).
async fn run(d: &Rc<Daemon>, req: Request, hold: Hold) -> Result<Response> {
    match req {
        Request::Ping => Ok(Response::Pong { version: VERSION, pid: std::process::id() }),
        Request::Start { config, targets } => start(d, config, &targets, hold).await.map(Response::Done),
        Request::Stop { targets } => stop(d, &targets).await.map(Response::Done),
        Request::Restart { config, targets } => restart(d, config, &targets, hold).await.map(Response::Done),
        Request::Reload { config, targets } => {
            super::rollout::reload(d, config, &targets).await.map(Response::Done)
        }
        Request::List => Ok(Response::List(views::list(d))),
        Request::Info { target } => info(d, &target),
        Request::Signal { targets, signal } => send_signal(d, &targets, signal).await.map(Response::Done),
        Request::Scale { process, count } => scale(d, &process, count, hold).await.map(Response::Done),
        Request::Flush { targets } => flush(d, &targets).map(Response::Done),
        Request::Resolve { targets } => resolve_names(d, &targets),
        Request::EnvChoices { config } => Ok(Response::EnvChoices(
            d.table
                .borrow()
                .entries
                .values()
                .filter(|e| *e.inst.config == config)
                .filter_map(|e| Some((e.inst.def.name.clone(), e.inst.def.env_name.clone()?)))
                .collect(),
        )),
        Request::Wait { names } => Ok(Response::Done(super::rollout::wait(d, &names).await)),
        Request::Save { force } => super::dump::save(d, force).map(Response::Done),
        Request::Resurrect => super::dump::resurrect(d, hold).await.map(Response::Done),
        Request::Kill => Ok(Response::Done(shutdown(d).await)),
    }
}

async fn send_signal(
    d: &Rc<Daemon>,
    targets: &[String],
    signal: crate::process::signal::Signal,
) -> Result<Report> {
    let names = d.table.borrow().resolve(targets)?;
    let rxs = dispatch(&d.table.borrow(), &names, |_, reply| Cmd::Signal { signal, reply });
    Ok(Report { processes: collect(rxs).await })
}

fn resolve_names(d: &Rc<Daemon>, targets: &[String]) -> Result<Response> {
    let table = d.table.borrow();
    let names = table.resolve(targets)?;
    Ok(Response::Names(
        names.iter().filter_map(|n| table.entries.get(n)).map(|e| views::names(d, e)).collect(),
    ))
}

/// Sends a command to each named instance; returns the reply receivers in the same order.
pub(super) fn dispatch(
    table: &Table,
    names: &[String],
    mut make: impl FnMut(&Entry, Reply) -> Cmd,
) -> Vec<(String, oneshot::Receiver<Outcome>)> {
    names
        .iter()
        .filter_map(|n| table.entries.get(n))
        .map(|e| {
            let (tx, rx) = oneshot::channel();
            e.handle.send(make(e, tx));
            (e.inst.name.clone(), rx)
        })
        .collect()
}

/// Waits for every reply. A task that ended without answering was removed meanwhile.
pub(super) async fn collect(rxs: Vec<(String, oneshot::Receiver<Outcome>)>) -> Vec<Outcome> {
    let mut out = Vec::with_capacity(rxs.len());
    for (name, rx) in rxs {
        out.push(rx.await.unwrap_or(Outcome {
            name,
            action: Action::Removed,
            status: Status::Stopped,
            pid: None,
            detail: None,
        }));
    }
    out
}

/// Applies a config (when given), then starts the targets and what they depend on.
pub async fn start(
    d: &Rc<Daemon>,
    config: Option<ConfigPayload>,
    targets: &[String],
    hold: Hold,
) -> Result<Report> {
    let (names, mut report) = prepare(d, config, targets).await?;
    let replies = start_names(d, &names, false);
    // A `stop` may now follow: it reaches each instance after this start (and interrupts a
    // `pre_start` in progress) instead of waiting for every spawn.
    drop(hold);
    report.processes.extend(collect(replies).await);
    Ok(report)
}

/// The lock a mutation holds, if any (`pm3 run` takes none: it is the only client).
pub type Hold = Option<super::locks::Guard>;

/// Stop then start. Running dependents of what restarts are stopped first and started again
/// once it is back online (systemd's `Requires=`): nothing keeps running against the old one.
async fn restart(
    d: &Rc<Daemon>,
    config: Option<ConfigPayload>,
    targets: &[String],
    hold: Hold,
) -> Result<Report> {
    let (names, mut report) = prepare(d, config, targets).await?;
    let dependents = running_dependents(d, &names);
    if dependents.is_empty() {
        let replies = start_names(d, &names, true);
        drop(hold);
        report.processes.extend(collect(replies).await);
        return Ok(report);
    }
    // Their answers are not reported: they restart, which the last step reports. The lock is
    // kept throughout: the dependents must start after the restart, not before it.
    stop_names(d, &dependents, |reply| Cmd::Stop { reply }).await;
    report.processes.extend(collect(start_names(d, &names, true)).await);
    report.processes.extend(collect(start_names(d, &dependents, true)).await);
    drop(hold);
    Ok(report)
}

/// Every running (or waiting) dependent of `names`, transitively, not among `names`, in
/// dependency order.
pub(super) fn running_dependents(d: &Rc<Daemon>, names: &[String]) -> Vec<String> {
    let table = d.table.borrow();
    let wanted = with_running_dependents(&table, names);
    let extra: BTreeSet<String> = wanted.into_iter().filter(|n| !names.contains(n)).collect();
    in_dependency_order(&table, &extra)
}

/// Resolves the targets (against the config when one is given, else against what is managed),
/// then applies the config. Returns the instance names and what the reconciliation removed.
pub(super) async fn prepare(
    d: &Rc<Daemon>,
    config: Option<ConfigPayload>,
    targets: &[String],
) -> Result<(Vec<String>, Report)> {
    let Some(payload) = config else {
        return Ok((d.table.borrow().resolve(targets)?, Report::default()));
    };
    let names = {
        let planned = plan_names(&payload.file.processes);
        let items: Vec<Item<'_>> = planned
            .iter()
            .map(|(name, def)| Item { name, process: &def.name, group: instances::group_of(def) })
            .collect();
        table::resolve(&items, targets)
            .map_err(|e| not_in_file(&d.table.borrow(), &items, &payload.file.path, targets).unwrap_or(e))?
    };
    check_conflicts(&d.table.borrow(), &payload)?;
    bind_sockets(d, &payload.file.processes, &names)?;
    let whole_file = targets.is_empty();
    let base_env = Rc::new(payload.env);
    let config = Rc::new(payload.file.path);
    let defs: Vec<Rc<ProcessDef>> = payload.file.processes.into_iter().map(Rc::new).collect();
    let removed = reconcile(d, &defs, &base_env, &config, whole_file).await;
    Ok((names, Report { processes: removed }))
}

/// Binds the sockets of the processes about to start (those of `names`) before anything of
/// the request changes: a socket that cannot be bound is the request's error, pointing at its
/// `listen` entry.
fn bind_sockets(d: &Rc<Daemon>, defs: &[ProcessDef], names: &[String]) -> Result<()> {
    let wanted: Vec<&ProcessDef> = defs
        .iter()
        .filter(|def| !def.listen.is_empty())
        .filter(|def| names.iter().any(|n| n.split(':').next() == Some(def.name.as_str())))
        .collect();
    d.ctx.sockets.ensure(&wanted).map_err(|e| {
        let mut reply = ErrorReply::new(ErrorKind::Bind, e.to_string());
        reply.listen = Some((e.process, e.index));
        reply
    })
}

/// Closes the sockets of those of `names`' processes that no longer have an instance running
/// or about to run: after `pm3 stop` of the whole process, or its removal.
pub(super) fn release_idle_sockets(d: &Rc<Daemon>, names: &[String]) {
    let table = d.table.borrow();
    let processes: BTreeSet<&str> = names.iter().filter_map(|n| n.split(':').next()).collect();
    for process in d.ctx.sockets.processes().into_iter().filter(|p| processes.contains(p.as_str())) {
        let busy = table.instances_of(&process).iter().any(|e| {
            let status = e.handle.snapshot.borrow().status;
            !matches!(status, Status::Stopped | Status::Errored)
        });
        if !busy {
            d.ctx.sockets.release(&process);
        }
    }
}

/// Why a target the config file does not define is refused, when the daemon manages it: it
/// was removed from this file (the command would have to guess a definition), or it comes
/// from another file. `None` when it is unknown everywhere.
fn not_in_file(
    table: &Table,
    planned: &[Item<'_>],
    file: &std::path::Path,
    targets: &[String],
) -> Option<ErrorReply> {
    let target = targets.iter().find(|t| table::resolve(planned, std::slice::from_ref(t)).is_err())?;
    let names = table.resolve(std::slice::from_ref(target)).ok()?;
    let managed_from = names.iter().filter_map(|n| table.entries.get(n)).map(|e| &*e.inst.config).next()?;
    let message = if managed_from == file {
        format!(
            "`{target}` is no longer in {}; `pm3 stop {target}` stops it, `pm3 start` (the whole file) \
             stops and forgets it",
            file.display()
        )
    } else {
        format!(
            "`{target}` is managed from {}, not {}; run the command there, or with `-c {}`",
            managed_from.display(),
            file.display(),
            managed_from.display()
        )
    };
    Some(ErrorReply::new(ErrorKind::UnknownTarget, message))
}

/// Every instance name a set of definitions produces, in order.
fn plan_names(defs: &[ProcessDef]) -> Vec<(String, &ProcessDef)> {
    defs.iter()
        .flat_map(|def| (0..def.instances).map(move |i| (instance_name(&def.name, i, def.instances), def)))
        .collect()
}

/// A process name is managed from one config file only.
pub(super) fn check_conflicts(table: &Table, payload: &ConfigPayload) -> Result<()> {
    for def in &payload.file.processes {
        if let Some(other) = table.config_of(&def.name)
            && *other != payload.file.path
        {
            return Err(ErrorReply::new(
                ErrorKind::Conflict,
                format!(
                    "process `{}` is already managed from {}; {} defines it too (rename one of them)",
                    def.name,
                    other.display(),
                    payload.file.path.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Makes the table match `defs`: new instances are created (stopped), existing ones take the new
/// definition for their next start, surplus instances are stopped and removed (highest index
/// first). With `drop_missing`, processes of the same config file that are no longer in it are
/// removed too. Returns what was removed.
pub(super) async fn reconcile(
    d: &Rc<Daemon>,
    defs: &[Rc<ProcessDef>],
    base_env: &Rc<BTreeMap<String, String>>,
    config: &Rc<std::path::PathBuf>,
    drop_missing: bool,
) -> Vec<Outcome> {
    // Nothing new may appear once shutdown has collected what it stops.
    if d.closing.get() {
        return Vec::new();
    }
    let mut surplus: Vec<(String, u32)> = Vec::new();
    {
        let mut table = d.table.borrow_mut();
        let wanted: BTreeSet<String> = defs
            .iter()
            .flat_map(|def| (0..def.instances).map(|i| instance_name(&def.name, i, def.instances)))
            .collect();
        let in_file: BTreeSet<&str> = defs.iter().map(|def| def.name.as_str()).collect();
        for e in table.entries.values() {
            let same_file = *e.inst.config == **config;
            let ours = in_file.contains(e.inst.def.name.as_str()) || (same_file && drop_missing);
            if ours && !wanted.contains(&e.inst.name) {
                surplus.push((e.inst.name.clone(), e.inst.index));
            }
        }
        for def in defs {
            for i in 0..def.instances {
                let name = instance_name(&def.name, i, def.instances);
                let inst = Rc::new(Instance {
                    name: name.clone(),
                    index: i,
                    def: def.clone(),
                    base_env: base_env.clone(),
                    config: config.clone(),
                });
                match table.entries.get(&name) {
                    Some(e) => e.handle.send(Cmd::Update { instance: inst.clone() }),
                    None => {
                        let handle = supervisor::spawn(inst.clone(), d.ctx.clone());
                        table.entries.insert(name, Entry { inst: inst.clone(), handle });
                        continue;
                    }
                }
                if let Some(e) = table.entries.get_mut(&name) {
                    e.inst = inst;
                }
            }
        }
    }
    let removed = remove(d, surplus).await;
    sync_watchers(d);
    removed
}

/// Gives every managed process with `watch` a watcher matching its definition, and drops the
/// others.
fn sync_watchers(d: &Rc<Daemon>) {
    let wanted: BTreeMap<String, Rc<ProcessDef>> = d
        .table
        .borrow()
        .entries
        .values()
        .filter(|e| e.inst.def.watch.is_some())
        .map(|e| (e.inst.def.name.clone(), e.inst.def.clone()))
        .collect();
    let mut watchers = d.watchers.borrow_mut();
    watchers.retain(|name, w| {
        wanted.get(name).is_some_and(|def| super::watch::key_of(def).as_ref() == Some(&w.key))
    });
    for (name, def) in wanted {
        if watchers.contains_key(&name) {
            continue;
        }
        match super::watch::start(d, &def) {
            Ok(w) => {
                watchers.insert(name, w);
            }
            Err(e) => tracing::warn!(process = %name, "{e}"),
        }
    }
}

/// Stops and forgets instances (reported highest index first). All are stopped at once, each
/// with its own escalation and `post_stop`; an entry leaves the table only once its process
/// group is gone, so `list` shows it `stopping` until then and `pm3 kill` still reaches it.
async fn remove(d: &Rc<Daemon>, mut victims: Vec<(String, u32)>) -> Vec<Outcome> {
    victims.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let names: Vec<String> = victims.into_iter().map(|(n, _)| n).collect();
    let rxs = dispatch(&d.table.borrow(), &names, |_, reply| Cmd::Remove { reply });
    let out = collect(rxs).await;
    {
        let mut table = d.table.borrow_mut();
        for name in &names {
            table.entries.remove(name);
        }
    }
    // A process removed as a whole (not one scaled down) lets its sockets go.
    let gone: Vec<String> = names
        .iter()
        .filter(|n| n.split(':').next().is_some_and(|p| d.table.borrow().instances_of(p).is_empty()))
        .cloned()
        .collect();
    release_idle_sockets(d, &gone);
    out
}

/// Starts (or restarts) `names` and, for a start, the dependencies they need, in dependency
/// order. Each dependent waits inside its own supervisor until its dependencies are online.
pub(super) fn start_names(
    d: &Rc<Daemon>,
    names: &[String],
    restart: bool,
) -> Vec<(String, oneshot::Receiver<Outcome>)> {
    if d.closing.get() {
        return Vec::new();
    }
    {
        let table = d.table.borrow();
        // Dependencies of what is started, transitively, start too (spec §5).
        let wanted = table.closure(names, |p| {
            table.def_of(p).map_or_else(Vec::new, |def| {
                def.depends_on.iter().flat_map(|dep| table.instances_of(dep)).collect()
            })
        });
        let ordered = in_dependency_order(&table, &wanted);
        dispatch(&table, &ordered, |e, reply| {
            let deps = table.dep_watches(&e.inst.def.depends_on);
            // Only the named targets restart; dependencies brought in are merely started.
            if restart && names.contains(&e.inst.name) {
                Cmd::Restart { deps, reply }
            } else {
                Cmd::Start { deps, reply }
            }
        })
    }
}

/// After a restore: starts what was waiting, and gives watched processes their watchers.
pub async fn resume(d: &Rc<Daemon>) {
    let names = std::mem::take(&mut *d.resume.borrow_mut());
    sync_watchers(d);
    if !names.is_empty() {
        collect(start_names(d, &names, false)).await;
    }
}

/// `names` sorted so dependencies come first, instances by index.
pub(super) fn in_dependency_order(table: &Table, names: &BTreeSet<String>) -> Vec<String> {
    let procs: BTreeMap<String, Vec<String>> = names
        .iter()
        .filter_map(|n| table.entries.get(n))
        .map(|e| (e.inst.def.name.clone(), e.inst.def.depends_on.clone()))
        .collect();
    table::dependency_order(&procs)
        .into_iter()
        .flat_map(|p| table.instances_of(&p).into_iter().map(|e| e.inst.name.clone()).collect::<Vec<_>>())
        .filter(|n| names.contains(n))
        .collect()
}

/// Stops the targets and, first, every running dependent of them.
async fn stop(d: &Rc<Daemon>, targets: &[String]) -> Result<Report> {
    let names = d.table.borrow().resolve(targets)?;
    let report = Report { processes: stop_names(d, &names, |reply| Cmd::Stop { reply }).await };
    let stopped: Vec<String> = report.processes.iter().map(|o| o.name.clone()).collect();
    release_idle_sockets(d, &stopped);
    Ok(report)
}

/// `names` and every running (or waiting) dependent of them, transitively.
fn with_running_dependents(table: &Table, names: &[String]) -> BTreeSet<String> {
    table.closure(names, |p| {
        table
            .entries
            .values()
            .filter(|e| e.inst.def.depends_on.iter().any(|d| d == p))
            .filter(|e| {
                let status = e.handle.snapshot.borrow().status;
                status.is_running() || status == Status::Waiting
            })
            .collect()
    })
}

/// Sends `make`'s command (a stop, or the daemon's shutdown) to `names` and every running
/// dependent of them, dependents first, layer by layer; returns once all have answered.
async fn stop_names(d: &Rc<Daemon>, names: &[String], make: fn(Reply) -> Cmd) -> Vec<Outcome> {
    let layers = {
        let table = d.table.borrow();
        // Running (or waiting) dependents of what is stopped, transitively, stop first.
        let wanted = with_running_dependents(&table, names);
        let procs: BTreeMap<String, Vec<String>> = wanted
            .iter()
            .filter_map(|n| table.entries.get(n))
            .map(|e| (e.inst.def.name.clone(), e.inst.def.depends_on.clone()))
            .collect();
        table::stop_layers(&procs)
            .into_iter()
            .map(|layer| {
                layer
                    .iter()
                    .flat_map(|p| table.instances_of(p))
                    .map(|e| e.inst.name.clone())
                    .filter(|n| wanted.contains(n))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    let mut out = Vec::new();
    for layer in layers {
        // Every instance of a layer is signalled at once; the next layer waits for them all.
        let rxs = dispatch(&d.table.borrow(), &layer, |_, reply| make(reply));
        out.extend(collect(rxs).await);
    }
    out
}

fn info(d: &Rc<Daemon>, target: &str) -> Result<Response> {
    let table = d.table.borrow();
    let names = table.resolve(&[target.to_string()])?;
    let details =
        names.iter().filter_map(|n| table.entries.get(n)).map(|e| views::detail(d, e)).collect::<Vec<_>>();
    Ok(Response::Info(details))
}

/// Changes the number of instances of a managed process at runtime.
async fn scale(d: &Rc<Daemon>, process: &str, count: u32, hold: Hold) -> Result<Report> {
    if count == 0 {
        return Err(ErrorReply::new(
            ErrorKind::BadRequest,
            format!("cannot scale `{process}` to 0 instances; use `pm3 stop {process}` to stop it"),
        ));
    }
    let (def, base_env, config, was_running) = {
        let table = d.table.borrow();
        let Some(first) = table.instances_of(process).first().map(|e| e.inst.clone()) else {
            let known: Vec<String> = table
                .ordered()
                .iter()
                .map(|e| e.inst.def.name.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            return Err(ErrorReply::new(
                ErrorKind::UnknownTarget,
                format!(
                    "unknown process `{process}`; known: {}",
                    if known.is_empty() { "none".into() } else { known.join(", ") }
                ),
            ));
        };
        let running = table.instances_of(process).iter().any(|e| {
            let s = e.handle.snapshot.borrow().status;
            s.is_running() || s == Status::Waiting
        });
        (first.def.clone(), first.base_env.clone(), first.config.clone(), running)
    };
    let mut new_def = (*def).clone();
    new_def.instances = count;
    let new_def = Rc::new(new_def);
    let mut report =
        Report { processes: reconcile(d, std::slice::from_ref(&new_def), &base_env, &config, false).await };
    if was_running {
        let names: Vec<String> = (0..count).map(|i| instance_name(process, i, count)).collect();
        let replies = start_names(d, &names, false);
        drop(hold);
        report.processes.extend(collect(replies).await);
    }
    Ok(report)
}

/// Empties the log files of the targets. Writers append, so they carry on at the new end.
fn flush(d: &Rc<Daemon>, targets: &[String]) -> Result<Report> {
    let table = d.table.borrow();
    let names = table.resolve(targets)?;
    let mut out = Vec::new();
    for e in names.iter().filter_map(|n| table.entries.get(n)) {
        let paths = [d.ctx.paths.out_log(&e.inst.name), d.ctx.paths.err_log(&e.inst.name)];
        // Rotated files go, plain or compressed; the current ones are emptied (their writers
        // append, so they carry on).
        for p in &paths {
            crate::logs::file::remove_rotated(p, e.inst.def.log_max_files);
        }
        let failed: Vec<String> = paths
            .iter()
            .filter(|p| p.exists())
            .filter_map(|p| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(p)
                    .and_then(|f| f.set_len(0))
                    .err()
                    .map(|err| format!("{}: {err}", p.display()))
            })
            .collect();
        let snap = e.handle.snapshot.borrow();
        out.push(Outcome {
            name: e.inst.name.clone(),
            action: if failed.is_empty() { Action::Flushed } else { Action::Failed },
            status: snap.status,
            pid: snap.pid,
            detail: (!failed.is_empty()).then(|| failed.join("; ")),
        });
    }
    Ok(Report { processes: out })
}

/// The daemon's one way out (`pm3 kill`, SIGTERM, SIGINT): from now on mutations are refused,
/// every supervisor stops its process (dependents first, `kill_signal` then SIGKILL after
/// `kill_timeout`, `post_stop`), and only once every group is gone are the state file, the
/// socket and the pid file removed. A second `kill` during the shutdown waits for the same end.
pub async fn shutdown(d: &Rc<Daemon>) -> Report {
    if !d.closing.replace(true) {
        tracing::info!("shutting down: stopping everything");
    }
    let names: Vec<String> = d.table.borrow().entries.keys().cloned().collect();
    let report = Report { processes: stop_names(d, &names, |reply| Cmd::Shutdown { reply }).await };
    d.ctx.sockets.release_all();
    d.cleanup_files();
    report
}

/// Stops every managed instance, dependents first (`pm3 run` on its way out).
pub async fn stop_all(d: &Rc<Daemon>) -> Report {
    let names: Vec<String> = d.table.borrow().entries.keys().cloned().collect();
    let report = Report { processes: stop_names(d, &names, |reply| Cmd::Shutdown { reply }).await };
    d.ctx.sockets.release_all();
    report
}
