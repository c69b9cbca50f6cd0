//! `pm3 startup` / `pm3 unstartup`: a systemd user unit that runs `pm3 resurrect` when the user's
//! service manager starts, so the set saved with `pm3 save` comes back. With lingering enabled
//! (`loginctl enable-linger`), that is at boot; otherwise at the user's first login.

use std::path::PathBuf;
use std::process::Command;

use crate::paths::Paths;

/// Where the unit goes and what it says.
pub struct Unit {
    pub path: PathBuf,
    pub text: String,
    /// Commands that activate it (run after writing) and deactivate it (before removing).
    pub enable: Vec<Vec<String>>,
    pub disable: Vec<Vec<String>>,
}

fn home() -> Result<PathBuf, String> {
    std::env::var_os("HOME").map(PathBuf::from).ok_or_else(|| "HOME is not set".to_string())
}

fn exe() -> Result<PathBuf, String> {
    std::env::current_exe().map_err(|e| format!("cannot find the pm3 binary: {e}"))
}

pub fn unit(paths: &Paths) -> Result<Unit, String> {
    let dir = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x).join("systemd/user"),
        None => home()?.join(".config/systemd/user"),
    };
    let exe = exe()?;
    let home = paths.home.display();
    let text = format!(
        "[Unit]\n\
         Description=pm3 process manager (brings back the processes saved with `pm3 save`)\n\
         \n\
         [Service]\n\
         Type=forking\n\
         Environment=PM3_HOME={home}\n\
         PIDFile={home}/pm3.pid\n\
         ExecStart={exe} resurrect\n\
         ExecStop={exe} kill\n\
         # pm3 stops its processes itself, gracefully, on `pm3 kill`.\n\
         KillMode=process\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        exe = exe.display()
    );
    let ctl = |args: &[&str]| {
        let mut v = vec!["systemctl".to_string(), "--user".to_string()];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    Ok(Unit {
        path: dir.join("pm3.service"),
        text,
        enable: vec![ctl(&["daemon-reload"]), ctl(&["enable", "pm3.service"])],
        disable: vec![ctl(&["disable", "pm3.service"]), ctl(&["daemon-reload"])],
    })
}

/// Writes the unit and activates it. Returns lines to show the user.
pub fn install(unit: &Unit) -> Result<Vec<String>, String> {
    if let Some(dir) = unit.path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(&unit.path, &unit.text)
        .map_err(|e| format!("cannot write {}: {e}", unit.path.display()))?;
    let mut lines = vec![format!("wrote {}", unit.path.display())];
    lines.extend(run_all(&unit.enable));
    // A user's service manager starts at their first login unless they linger.
    if !lingering() {
        let user = std::env::var("USER").unwrap_or_else(|_| "$USER".into());
        lines.push(format!(
            "note: it runs when your user service manager starts, i.e. at your first login; to start it at boot, run `loginctl enable-linger {user}`"
        ));
    }
    Ok(lines)
}

/// True when systemd keeps this user's service manager running from boot.
fn lingering() -> bool {
    let user = std::env::var("USER").unwrap_or_default();
    !user.is_empty() && std::path::Path::new("/var/lib/systemd/linger").join(user).exists()
}

/// Deactivates and removes the unit.
pub fn remove(unit: &Unit) -> Result<Vec<String>, String> {
    if !unit.path.exists() {
        return Ok(vec![format!("nothing to remove: {} does not exist", unit.path.display())]);
    }
    let mut lines = run_all(&unit.disable);
    std::fs::remove_file(&unit.path).map_err(|e| format!("cannot remove {}: {e}", unit.path.display()))?;
    lines.push(format!("removed {}", unit.path.display()));
    Ok(lines)
}

/// Runs each command; one that cannot run (no systemd here) becomes a hint, not a failure.
fn run_all(cmds: &[Vec<String>]) -> Vec<String> {
    let mut lines = Vec::new();
    for cmd in cmds {
        let Some((prog, args)) = cmd.split_first() else { continue };
        let shown = cmd.join(" ");
        match Command::new(prog).args(args).output() {
            Ok(out) if out.status.success() => lines.push(format!("ran `{shown}`")),
            Ok(out) => lines.push(format!(
                "warning: `{shown}` failed: {}; run it yourself once the user manager is available",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => lines
                .push(format!("warning: cannot run `{shown}` ({e}); run it yourself where {prog} exists")),
        }
    }
    lines
}
