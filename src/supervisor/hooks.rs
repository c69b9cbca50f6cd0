//! `pre_start` and `post_stop`: short commands run through `sh -c` with the instance's cwd and
//! environment, their output appended to the instance's own log files.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::Path;
use std::time::Duration;

use crate::process::exit::{ExitStatus, ExitWatch};
use crate::process::signal::{self, Signal};

/// A hook that runs longer than this is killed and counts as failed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `command`, waits for it, and says how it went (`Err` with a reason when it failed).
pub async fn run(
    command: &str,
    cwd: &Path,
    env: &BTreeMap<String, String>,
    out_log: &Path,
    err_log: &Path,
) -> Result<(), String> {
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
    match tokio::time::timeout(HOOK_TIMEOUT, watch.exited()).await {
        Ok(ExitStatus::Code(0)) => Ok(()),
        Ok(ExitStatus::Code(c)) => Err(format!("`{command}` exited with code {c}")),
        Ok(ExitStatus::Signal(s)) => Err(format!("`{command}` was killed by {s}")),
        Ok(ExitStatus::Unknown) => Err(format!("`{command}` ended")),
        Err(_) => {
            let _ = signal::signal_group(pid, Signal::KILL);
            let _ = watch.exited().await;
            Err(format!("`{command}` still ran after {}s", HOOK_TIMEOUT.as_secs()))
        }
    }
}
