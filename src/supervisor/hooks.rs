//! `pre_start` and `post_stop`: short commands run through `sh -c` with the instance's cwd and
//! environment, their output appended to the instance's own log files. A hook runs beside the
//! supervisor's other work (a stop during `pre_start` kills it), so it is started here and
//! awaited as a [`Hook`].

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::Path;
use std::time::Duration;

use crate::process::exit::{ExitStatus, ExitWatch};
use crate::process::signal::{self, Signal};

/// A hook that runs longer than this is killed and counts as failed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(300);

/// A hook command that runs.
pub struct Hook {
    /// Its pid, which is also its process group.
    pub pid: u32,
    watch: ExitWatch,
    command: String,
}

/// Starts `command` with its output appended to the two logs.
pub fn start(
    command: &str,
    cwd: &Path,
    env: &BTreeMap<String, String>,
    out_log: &Path,
    err_log: &Path,
) -> Result<Hook, String> {
    let open = |p: &Path| OpenOptions::new().create(true).append(true).open(p);
    let out = open(out_log).map_err(|e| format!("cannot open {}: {e}", out_log.display()))?;
    let err = open(err_log).map_err(|e| format!("cannot open {}: {e}", err_log.display()))?;
    let child = crate::process::spawn::shell(command, cwd, env)
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot run `{command}`: {e}"))?;
    let pid = child.id();
    let watch = ExitWatch::new(pid).map_err(|e| e.to_string())?;
    Ok(Hook { pid, watch, command: command.to_string() })
}

impl Hook {
    /// Waits for the hook and says how it went (`Err` with a reason when it failed).
    pub async fn wait(self) -> Result<(), String> {
        let command = &self.command;
        match tokio::time::timeout(HOOK_TIMEOUT, self.watch.exited()).await {
            Ok(ExitStatus::Code(0)) => Ok(()),
            Ok(ExitStatus::Code(c)) => Err(format!("`{command}` exited with code {c}")),
            Ok(ExitStatus::Signal(s)) => Err(format!("`{command}` was killed by {s}")),
            Ok(ExitStatus::Unknown) => Err(format!("`{command}` ended")),
            Err(_) => {
                let _ = signal::signal_group(self.pid, Signal::KILL);
                let _ = self.watch.exited().await;
                Err(format!("`{command}` still ran after {}s", HOOK_TIMEOUT.as_secs()))
            }
        }
    }
}
