//! `pm3 save` and `pm3 resurrect`: the managed set written to `dump.json` (definitions with
//! absolute paths, the environment they were started with, which instances ran) and applied
//! again later, from any directory.

use std::rc::Rc;

use crate::protocol::{Action, ConfigPayload, ErrorKind, ErrorReply, Outcome, Report, Status};
use crate::spec::ProcessDef;

use super::Daemon;
use super::ops::{Result, check_conflicts, collect, reconcile, start_names};

/// Writes the managed set, with which instances run, to `dump.json`; the dump it replaces is
/// kept as `dump.json.bak`. Saving nothing over a dump that holds processes needs `force`: a
/// `pm3 save` run by habit after `pm3 kill` must not wipe what `pm3 resurrect` would bring back.
pub fn save(d: &Rc<Daemon>, force: bool) -> Result<Report> {
    let saved = super::state::capture(d);
    let path = d.ctx.paths.dump_file();
    let internal = |what: String| ErrorReply::new(ErrorKind::Internal, what);
    let previous = match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(internal(format!("cannot read {}: {e}", path.display()))),
    };
    if saved.instances.is_empty() && !force {
        let held = super::state::read(&path).map_or(0, |s| s.instances.len());
        if held > 0 {
            let (noun, them) = if held == 1 { ("process", "it") } else { ("processes", "them") };
            return Err(ErrorReply::new(
                ErrorKind::BadRequest,
                format!(
                    "nothing is managed, and {} holds {held} {noun}: saving would replace {them} with an \
                     empty set; `pm3 resurrect` brings {them} back, `pm3 save --force` saves the empty set anyway",
                    path.display(),
                ),
            ));
        }
    }
    let bytes = serde_json::to_vec_pretty(&saved).map_err(|e| internal(e.to_string()))?;
    if let Some(old) = previous {
        let backup = d.ctx.paths.dump_backup();
        super::state::write_atomic(&backup, &old)
            .map_err(|e| internal(format!("cannot keep the previous dump as {}: {e}", backup.display())))?;
    }
    super::state::write_atomic(&path, &bytes)
        .map_err(|e| internal(format!("cannot write {}: {e}", path.display())))?;
    let table = d.table.borrow();
    let processes = table
        .ordered()
        .into_iter()
        .map(|e| {
            let s = e.handle.snapshot.borrow();
            Outcome {
                name: e.inst.name.clone(),
                action: Action::Saved,
                status: s.status,
                pid: s.pid,
                detail: Some(path.display().to_string()),
            }
        })
        .collect();
    Ok(Report { processes })
}

/// Applies every config of `dump.json` and starts what was running when it was saved.
pub async fn resurrect(d: &Rc<Daemon>, hold: super::ops::Hold) -> Result<Report> {
    let path = d.ctx.paths.dump_file();
    let saved = super::state::read(&path).ok_or_else(|| {
        ErrorReply::new(
            ErrorKind::BadRequest,
            format!("nothing to resurrect: {} is missing (run `pm3 save` first)", path.display()),
        )
    })?;
    // One payload per config file, in the order first seen.
    let mut payloads: Vec<ConfigPayload> = Vec::new();
    let mut running: Vec<String> = Vec::new();
    for s in &saved.instances {
        let (Some(def), Some(env)) = (saved.defs.get(s.def), saved.envs.get(s.env)) else { continue };
        if s.status.is_running() || s.status == Status::Waiting {
            running.push(s.name.clone());
        }
        let payload = match payloads.iter_mut().position(|p| p.file.path == s.config) {
            Some(i) => &mut payloads[i],
            None => {
                payloads.push(ConfigPayload {
                    file: crate::spec::ConfigFile { path: s.config.clone(), processes: Vec::new() },
                    env: env.clone(),
                });
                let last = payloads.len() - 1;
                &mut payloads[last]
            }
        };
        if !payload.file.processes.iter().any(|p| p.name == def.name) {
            payload.file.processes.push(def.clone());
        }
    }
    for p in &payloads {
        // The dump is a file a user may have edited: the same rules as a request.
        p.file.validate().map_err(|e| {
            ErrorReply::new(ErrorKind::BadRequest, format!("cannot resurrect from {}: {e}", path.display()))
        })?;
        check_conflicts(&d.table.borrow(), p)?;
    }
    let mut report = Report::default();
    for p in payloads {
        let base_env = Rc::new(p.env);
        let config = Rc::new(p.file.path);
        let defs: Vec<Rc<ProcessDef>> = p.file.processes.into_iter().map(Rc::new).collect();
        report.processes.extend(reconcile(d, &defs, &base_env, &config, false).await);
    }
    let replies = start_names(d, &running, false);
    drop(hold);
    report.processes.extend(collect(replies).await);
    Ok(report)
}
