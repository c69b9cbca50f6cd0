//! systemd units: `NAME.service` for a single process; for a clustered one a template
//! `NAME@.service` (instance `%i` is the index), `NAME.target` that wants every instance, and
//! a drop-in `NAME@I.service.d/pm3-instance.conf` per instance for the variables whose value
//! differs between instances (the `increment_var`).
//!
//! Mapped: `command` (argv as pm3 runs it), `cwd`, `env` (expanded), `PM3_INSTANCE_ID` /
//! `PM3_INSTANCE_COUNT`, `depends_on` (`Requires=` + `After=` on every instance), `restart`,
//! `restart_delay` (`RestartSec=`), `max_restarts` with `min_uptime` (`StartLimitBurst=` /
//! `StartLimitIntervalSec=`, an approximation), `stop_exit_codes`
//! (`RestartPreventExitStatus=`), `kill_signal`, `kill_timeout` (`TimeoutStopSec=`; the whole
//! cgroup is signalled, as pm3 signals the group), `pre_start` / `post_stop` (`ExecStartPre=` /
//! `ExecStopPost=` through `/bin/sh -c`), `max_memory` (`MemoryMax=`: the kernel kills, then
//! the restart policy applies). Everything else is warned about.

use std::fmt::Write;

use super::process::Exported;
use super::unit_syntax::{self, assignment};
use super::{File, NO_EQUIVALENT, Warnings};
use crate::spec::RestartPolicy;

/// Keys systemd units cannot express.
const UNMAPPED: &[(&str, &str)] = &[
    (
        "health_check",
        "has no equivalent (units are started with Type=exec: dependents start once it runs); skipped",
    ),
    ("health_interval", NO_EQUIVALENT),
    ("health_timeout", NO_EQUIVALENT),
    ("health_probe_timeout", NO_EQUIVALENT),
    ("watch", "has no equivalent (a .path unit could restart it); skipped"),
    ("watch_ignore", NO_EQUIVALENT),
    ("watch_debounce", NO_EQUIVALENT),
    ("cron_restart", "has no equivalent (a .timer unit could restart it); skipped"),
    ("log_date_format", "has no equivalent: the journal stamps every line; skipped"),
    ("log_max_size", "has no equivalent: the journal keeps the output (journald.conf); skipped"),
    ("log_max_files", "has no equivalent: the journal keeps the output (journald.conf); skipped"),
    ("log_compress", "has no equivalent: the journal keeps the output (journald.conf); skipped"),
    ("group", "has no equivalent (a clustered process has its own .target); skipped"),
];

/// The unit files of `processes`.
pub fn files(processes: &[Exported<'_>], warnings: &mut Warnings) -> Vec<File> {
    let mut out = Vec::new();
    for p in processes {
        warnings.unmapped(p, UNMAPPED);
        let clustered = p.def.instances > 1;
        let service =
            if clustered { format!("{}@.service", p.def.name) } else { format!("{}.service", p.def.name) };
        out.push(File { text: service_unit(p, processes, &service, warnings), name: service });
        if clustered {
            let name = format!("{}.target", p.def.name);
            out.push(File { text: target_unit(p, &name), name });
            for (i, vars) in p.per_instance.iter().enumerate() {
                let name = format!("{}@{i}.service.d/pm3-instance.conf", p.def.name);
                let mut text = header(&name);
                text.push_str("[Service]\n");
                for (k, v) in vars {
                    let _ = writeln!(text, "Environment={}", assignment(k, v));
                }
                out.push(File { name, text });
            }
        }
    }
    out
}

fn header(name: &str) -> String {
    format!("# {name}: written by `pm3 export systemd` from pm3.toml\n")
}

/// The units a dependent waits for: every instance of each dependency.
fn instance_units(processes: &[Exported<'_>], name: &str) -> Vec<String> {
    match processes.iter().find(|p| p.def.name == name) {
        Some(p) if p.def.instances > 1 => {
            (0..p.def.instances).map(|i| format!("{name}@{i}.service")).collect()
        }
        _ => vec![format!("{name}.service")],
    }
}

fn service_unit(p: &Exported<'_>, all: &[Exported<'_>], file: &str, warnings: &mut Warnings) -> String {
    let d = p.def;
    let clustered = d.instances > 1;
    let mut t = header(file);
    t.push_str("[Unit]\n");
    if clustered {
        let _ = writeln!(t, "Description=pm3 process {}, instance %i of {}", d.name, d.instances);
        let _ = writeln!(t, "PartOf={}.target", d.name);
    } else {
        let _ = writeln!(t, "Description=pm3 process {}", d.name);
    }
    let deps: Vec<String> = d.depends_on.iter().flat_map(|n| instance_units(all, n)).collect();
    if !deps.is_empty() {
        let _ = writeln!(t, "Requires={}", deps.join(" "));
        let _ = writeln!(t, "After={}", deps.join(" "));
    }
    // pm3 gives up after `max_restarts` + 1 runs in a row shorter than `min_uptime`.
    let runs = d.max_restarts.saturating_add(1);
    let window = u64::from(runs).saturating_mul(d.min_uptime_ms.saturating_add(d.restart_delay_ms));
    let _ = writeln!(t, "StartLimitBurst={runs}");
    let _ = writeln!(t, "StartLimitIntervalSec={}", duration(window));

    t.push_str("\n[Service]\nType=exec\n");
    if let Some(hook) = &d.pre_start {
        let _ = writeln!(t, "ExecStartPre={}", unit_syntax::command(&sh(hook)));
    }
    let _ = writeln!(t, "ExecStart={}", unit_syntax::command(&p.argv));
    if let Some(hook) = &d.post_stop {
        let _ = writeln!(t, "ExecStopPost={}", unit_syntax::command(&sh(hook)));
    }
    match unit_syntax::path(&d.cwd.to_string_lossy()) {
        Some(dir) => {
            let _ = writeln!(t, "WorkingDirectory={dir}");
        }
        None => warnings.add(&d.name, "cwd", "cannot be written in a unit file; skipped"),
    }
    // `%i`, the instance of the template, is the index.
    let id =
        if clustered { "\"PM3_INSTANCE_ID=%i\"".to_string() } else { assignment("PM3_INSTANCE_ID", "0") };
    let _ = writeln!(t, "Environment={id} {}", assignment("PM3_INSTANCE_COUNT", &d.instances.to_string()));
    for (k, v) in p.shared_env() {
        let _ = writeln!(t, "Environment={}", assignment(k, v));
    }
    let restart = match (d.restart, d.max_restarts) {
        (_, 0) | (RestartPolicy::Never, _) => "no",
        (RestartPolicy::OnFailure, _) => "on-failure",
        (RestartPolicy::Always, _) => "always",
    };
    let _ = writeln!(t, "Restart={restart}");
    let _ = writeln!(t, "RestartSec={}", duration(d.restart_delay_ms));
    if !d.stop_exit_codes.is_empty() {
        let codes: Vec<String> = d.stop_exit_codes.iter().map(i32::to_string).collect();
        let _ = writeln!(t, "RestartPreventExitStatus={}", codes.join(" "));
    }
    let _ = writeln!(t, "KillMode=control-group");
    let _ = writeln!(t, "KillSignal={}", d.kill_signal);
    let _ = writeln!(t, "TimeoutStopSec={}", duration(d.kill_timeout_ms));
    if let Some(bytes) = d.max_memory {
        let _ = writeln!(t, "MemoryMax={bytes}");
    }
    if !clustered {
        t.push_str("\n[Install]\nWantedBy=default.target\n");
    }
    t
}

fn target_unit(p: &Exported<'_>, file: &str) -> String {
    let d = p.def;
    let units: Vec<String> = (0..d.instances).map(|i| format!("{}@{i}.service", d.name)).collect();
    let mut t = header(file);
    let _ = writeln!(t, "[Unit]\nDescription=pm3 process {} ({} instances)", d.name, d.instances);
    let _ = writeln!(t, "Wants={}", units.join(" "));
    let _ = writeln!(t, "After={}", units.join(" "));
    t.push_str("\n[Install]\nWantedBy=default.target\n");
    t
}

/// Milliseconds as a systemd time span; beyond what systemd counts (in microseconds, and
/// 30,000 years is far enough), `infinity`.
fn duration(ms: u64) -> String {
    if ms >= 1_000_000_000_000_000 { "infinity".into() } else { format!("{ms}ms") }
}

/// A hook as pm3 runs it.
fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}
