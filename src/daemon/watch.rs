//! `watch`: one file watcher per process (not per instance). Changes under the watched
//! directory, minus `watch_ignore` and pm3's own data directory, are debounced and then restart
//! every running instance of the process once.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use crate::glob::GlobSet;
use crate::spec::ProcessDef;
use crate::supervisor::{Cmd, ExitCause};

use super::Daemon;

/// A live watcher; dropping it stops watching.
pub struct Watcher {
    _inner: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
    /// What it was built from, to know when a new definition needs a new watcher.
    pub key: (PathBuf, Vec<String>, u64),
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The settings a watcher depends on.
pub fn key_of(def: &ProcessDef) -> Option<(PathBuf, Vec<String>, u64)> {
    def.watch.clone().map(|dir| (dir, def.watch_ignore.clone(), def.watch_debounce_ms))
}

/// Starts watching for `def` (which must have `watch` set).
pub fn start(d: &Rc<Daemon>, def: &ProcessDef) -> Result<Watcher, String> {
    let key = key_of(def).ok_or("watch is not set")?;
    let (dir, ignore, debounce_ms) = key.clone();
    let ignore = globset(&ignore)?;
    let (tx, mut rx) = mpsc::unbounded_channel::<PathBuf>();
    let home = d.ctx.paths.home.clone();
    // Ignored paths are dropped here, on notify's thread: only a change that would restart the
    // process reaches the daemon, starts the quiet period or extends it. A process writing its
    // own `*.log` (ignored) all the time neither wakes the daemon nor postpones a restart.
    let mut inner = {
        let dir = dir.clone();
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res
                && matches!(ev.kind, EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_))
            {
                for p in ev.paths {
                    if !ignored(&p, &dir, &ignore, &home) {
                        let _ = tx.send(p);
                    }
                }
            }
        })
    }
    .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    inner
        .watch(&dir, RecursiveMode::Recursive)
        .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;

    let daemon = Rc::downgrade(d);
    let process = def.name.clone();
    let debounce = Duration::from_millis(debounce_ms);
    let task = tokio::task::spawn_local(async move {
        while let Some(first) = rx.recv().await {
            // Quiet period: every further watched change pushes the restart back.
            loop {
                match tokio::time::timeout(debounce, rx.recv()).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let Some(d) = daemon.upgrade() else { return };
            tracing::info!(process = %process, changed = %first.display(), "watched file changed");
            let table = d.table.borrow();
            for e in table.instances_of(&process) {
                e.handle.send(Cmd::Trigger { cause: ExitCause::Watch });
            }
        }
    });
    Ok(Watcher { _inner: inner, task, key })
}

fn globset(patterns: &[String]) -> Result<GlobSet, String> {
    GlobSet::new(patterns).map_err(|(p, e)| format!("watch_ignore `{p}`: {e}"))
}

/// A path is ignored when it, or any directory above it (relative to the watched directory),
/// matches an ignore glob, or when it is inside pm3's data directory (its logs change all the time).
fn ignored(path: &Path, dir: &Path, ignore: &GlobSet, home: &Path) -> bool {
    if path.starts_with(home) {
        return true;
    }
    let Ok(rel) = path.strip_prefix(dir) else { return false };
    rel.ancestors().filter(|a| !a.as_os_str().is_empty()).any(|a| ignore.is_match_path(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_globs_cover_everything_below_a_matching_directory() {
        let set = globset(&[".git".into(), "node_modules".into(), "*.log".into()]).expect("globs");
        let dir = Path::new("/app");
        let home = Path::new("/app/.pm3");
        assert!(ignored(Path::new("/app/.git/index"), dir, &set, home));
        assert!(ignored(Path::new("/app/node_modules/x/y.js"), dir, &set, home));
        assert!(ignored(Path::new("/app/debug.log"), dir, &set, home));
        assert!(ignored(Path::new("/app/.pm3/logs/a-out.log"), dir, &set, home));
        assert!(!ignored(Path::new("/app/src/main.js"), dir, &set, home));
    }
}
