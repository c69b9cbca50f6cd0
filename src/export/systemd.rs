//! systemd units. Every process is a template `NAME@.service` (the instance `%i` is the
//! index: one instance is `NAME@0`) and `NAME.target`, which wants every instance; a drop-in
//! `NAME@I.service.d/pm3-instance.conf` per instance holds the variables whose value differs
//! between instances (the `increment_var`: systemd cannot add). A `cron_restart` is
//! `NAME-restart.timer` with `NAME-restart.service`, which restarts the instances; a `group`
//! is `GROUP.target`, which wants the targets of its processes.
//!
//! Mapped: `command` (argv as pm3 runs it), `cwd`, `env_file` (`EnvironmentFile=`, or inline:
//! see [`env_file`](super::env_file)), `env` (expanded), `PM3_INSTANCE_ID` /
//! `PM3_INSTANCE_COUNT`, `depends_on` (`Requires=` + `After=` every instance of the
//! dependency, on every instance), `restart`, `restart_delay` (`RestartSec=`), `max_restarts`
//! with `min_uptime` (`StartLimitBurst=` / `StartLimitIntervalSec=`, an approximation),
//! `stop_exit_codes` (`RestartPreventExitStatus=`), `kill_signal`, `kill_timeout`
//! (`TimeoutStopSec=`; the whole cgroup is signalled, as pm3 signals the group), `pre_start` /
//! `post_stop` (`ExecStartPre=` / `ExecStopPost=` through `/bin/sh -c`), `max_memory`
//! (`MemoryMax=`: the kernel kills, then the restart policy applies), `cron_restart`, `group`.
//! Everything else is warned about.

use std::fmt::Write;

use super::cron;
use super::env_file::{self, Engine};
use super::process::Exported;
use super::unit_syntax::{self, assignment};
use super::{File, NO_EQUIVALENT, Warnings};
use crate::spec::RestartPolicy;

/// Keys systemd units cannot express.
const UNMAPPED: &[(&str, &str)] = &[
    (
        "listen",
        "is not passed: that needs a .socket unit per instance; the program must bind the address itself; skipped",
    ),
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
    ("log_date_format", "has no equivalent: the journal stamps every line; skipped"),
    ("log_max_size", "has no equivalent: the journal keeps the output (journald.conf); skipped"),
    ("log_max_files", "has no equivalent: the journal keeps the output (journald.conf); skipped"),
    ("log_compress", "has no equivalent: the journal keeps the output (journald.conf); skipped"),
];

/// Which service manager the units are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// The system's (`/etc/systemd/system`): targets are wanted by `multi-user.target`.
    System,
    /// The user's (`~/.config/systemd/user`, `systemctl --user`): by `default.target`.
    User,
}

impl Manager {
    fn wanted_by(self) -> &'static str {
        match self {
            Manager::System => "multi-user.target",
            Manager::User => "default.target",
        }
    }
}

/// One `.target` to write: its file name, description and the units it wants.
struct Target {
    name: String,
    description: Vec<String>,
    wants: Vec<String>,
}

/// The unit files of `processes`, for `manager`.
pub fn files(processes: &[Exported<'_>], manager: Manager, warnings: &mut Warnings) -> Vec<File> {
    let mut out = Vec::new();
    let mut targets: Vec<Target> = Vec::new();
    let mut add_target = |name: String, description: String, wants: Vec<String>| match targets
        .iter_mut()
        .find(|t| t.name == name)
    {
        Some(t) => {
            t.description.push(description);
            t.wants.extend(wants.into_iter().filter(|w| *w != name));
        }
        None => targets.push(Target { name, description: vec![description], wants }),
    };
    for p in processes {
        warnings.unmapped(p, UNMAPPED);
        let d = p.def;
        let service = format!("{}@.service", d.name);
        out.push(File { text: service_unit(p, processes, &service, warnings), name: service });
        for (i, vars) in p.per_instance.iter().enumerate() {
            let name = format!("{}@{i}.service.d/pm3-instance.conf", d.name);
            let mut text = header(&name);
            text.push_str("[Service]\n");
            for (k, v) in vars {
                let _ = writeln!(text, "Environment={}", assignment(k, v));
            }
            out.push(File { name, text });
        }
        let mut wants = instances(d.name.as_str(), d.instances);
        if let Some(expr) = &d.cron_restart {
            match cron::on_calendar(expr) {
                Ok(calendar) => {
                    let timer = format!("{}-restart.timer", d.name);
                    out.extend(restart_timer(p, &calendar, manager));
                    wants.push(timer);
                }
                Err(why) => warnings.add(
                    &d.name,
                    "cron_restart",
                    &format!("`{expr}` {why}: no timer written; skipped"),
                ),
            }
        }
        let n = d.instances;
        add_target(
            format!("{}.target", d.name),
            format!("pm3 process {} ({n} instance{})", d.name, if n == 1 { "" } else { "s" }),
            wants,
        );
    }
    for p in processes {
        if let Some(group) = p.def.group.as_ref().filter(|g| !g.is_empty()) {
            let name = format!("{}.target", unit_name_escaped(group));
            add_target(name, format!("pm3 group {group}"), vec![format!("{}.target", p.def.name)]);
        }
    }
    for t in &targets {
        out.push(File { name: t.name.clone(), text: target_unit(t, manager) });
    }
    out
}

/// `NAME@0.service` … `NAME@N-1.service`.
fn instances(name: &str, n: u32) -> Vec<String> {
    (0..n).map(|i| format!("{name}@{i}.service")).collect()
}

/// `text` as the name part of a unit file name: `A-Z a-z 0-9 : _ . -` kept, anything else
/// (and a leading `.` or `-`) as `\xNN` per byte, as `systemd-escape` writes it.
fn unit_name_escaped(text: &str) -> String {
    let mut out = String::new();
    for (i, b) in text.bytes().enumerate() {
        let keep =
            b.is_ascii_alphanumeric() || matches!(b, b':' | b'_') || (matches!(b, b'.' | b'-') && i > 0);
        if keep {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

fn header(name: &str) -> String {
    format!("# {name}: written by `pm3 export systemd` from pm3.toml\n")
}

fn service_unit(p: &Exported<'_>, all: &[Exported<'_>], file: &str, warnings: &mut Warnings) -> String {
    let d = p.def;
    let mut t = header(file);
    t.push_str("[Unit]\n");
    let _ = writeln!(t, "Description=pm3 process {}, instance %i of {}", d.name, d.instances);
    let _ = writeln!(t, "PartOf={}.target", d.name);
    // Every instance of each dependency (spec §3); listed one by one, since ordering after a
    // target does not order after what the target wants.
    let deps: Vec<String> = d
        .depends_on
        .iter()
        .flat_map(|n| {
            let count = all.iter().find(|q| q.def.name == *n).map_or(1, |q| q.def.instances);
            instances(n, count)
        })
        .collect();
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
    let _ = writeln!(
        t,
        "Environment=\"PM3_INSTANCE_ID=%i\" {}",
        assignment("PM3_INSTANCE_COUNT", &d.instances.to_string())
    );
    // The env files systemd reads as pm3 does; the variables of the others, `env`'s and
    // `env_<name>`'s inline (see `env_file`). The drop-ins hold those that vary.
    let plan = env_file::plan(
        p,
        Engine::Systemd,
        |f| unit_syntax::path(&f.path.to_string_lossy()).is_some(),
        warnings,
    );
    for f in &plan.referred {
        if let Some(path) = unit_syntax::path(&f.path.to_string_lossy()) {
            let _ = writeln!(t, "EnvironmentFile={path}");
        }
    }
    for (k, v) in plan.inline.iter().filter(|(k, _)| !p.varying.contains(k)) {
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
    t
}

/// `NAME-restart.timer` at `calendar`, and the `NAME-restart.service` it starts, which
/// restarts the running instances (`try-restart`: an instance stopped by hand stays stopped,
/// as pm3 restarts only what runs).
fn restart_timer(p: &Exported<'_>, calendar: &str, manager: Manager) -> [File; 2] {
    let d = p.def;
    let expr = d.cron_restart.as_deref().unwrap_or_default().replace('%', "%%");
    let timer = format!("{}-restart.timer", d.name);
    let service = format!("{}-restart.service", d.name);
    let mut t = header(&timer);
    let _ = writeln!(t, "[Unit]\nDescription=pm3 cron_restart of {} ({expr})", d.name);
    let _ = writeln!(t, "PartOf={}.target", d.name);
    let _ = writeln!(t, "\n[Timer]\nOnCalendar={calendar}");
    let _ = writeln!(t, "Unit={service}");
    let mut s = header(&service);
    let _ = writeln!(s, "[Unit]\nDescription=pm3 cron_restart of {}: restarts its instances", d.name);
    let mut argv = vec!["systemctl".to_string()];
    if manager == Manager::User {
        argv.push("--user".into());
    }
    argv.push("try-restart".into());
    argv.extend(instances(&d.name, d.instances));
    let _ = writeln!(s, "\n[Service]\nType=oneshot\nExecStart={}", unit_syntax::command(&argv));
    [File { name: timer, text: t }, File { name: service, text: s }]
}

fn target_unit(target: &Target, manager: Manager) -> String {
    let mut t = header(&target.name);
    let description: String = target
        .description
        .join("; ")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .replace('%', "%%");
    let _ = writeln!(t, "[Unit]\nDescription={description}");
    let _ = writeln!(t, "Wants={}", target.wants.join(" "));
    let _ = writeln!(t, "After={}", target.wants.join(" "));
    let _ = writeln!(t, "\n[Install]\nWantedBy={}", manager.wanted_by());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ProcessDef;
    use std::collections::BTreeMap;

    fn unit_files(defs: &[ProcessDef], manager: Manager) -> (Vec<File>, Vec<String>) {
        let base = BTreeMap::new();
        let exported: Vec<Exported<'_>> =
            defs.iter().map(|d| Exported::new(d, &base).expect("exported")).collect();
        let mut warnings = Warnings::default();
        let files = files(&exported, manager, &mut warnings);
        (files, warnings.lines(super::super::Format::Systemd))
    }

    fn text<'a>(files: &'a [File], name: &str) -> &'a str {
        files.iter().find(|f| f.name == name).map_or_else(|| panic!("no {name}"), |f| f.text.as_str())
    }

    #[test]
    fn one_instance_is_a_template_too_and_dependents_name_every_instance() {
        let mut db = ProcessDef::new("db", "postgres", "/srv".into());
        db.instances = 2;
        let mut web = ProcessDef::new("web", "node server.js", "/srv".into());
        web.depends_on = vec!["db".into()];
        let (files, warnings) = unit_files(&[db, web], Manager::System);
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["db@.service", "web@.service", "db.target", "web.target"]);
        let web = text(&files, "web@.service");
        assert!(
            web.contains("Requires=db@0.service db@1.service\nAfter=db@0.service db@1.service\n"),
            "{web}"
        );
        assert!(web.contains("Environment=\"PM3_INSTANCE_ID=%i\" \"PM3_INSTANCE_COUNT=1\""), "{web}");
        assert!(text(&files, "web.target").contains("Wants=web@0.service\n"));
        assert!(text(&files, "web.target").contains("WantedBy=multi-user.target\n"));
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn a_group_named_like_a_process_shares_its_target_and_odd_groups_are_escaped() {
        let mut api = ProcessDef::new("api", "x", "/".into());
        api.group = Some("web".into());
        let web = ProcessDef::new("web", "x", "/".into());
        let mut odd = ProcessDef::new("odd", "x", "/".into());
        odd.group = Some("-my group/é".into());
        let (files, _) = unit_files(&[api, web, odd], Manager::User);
        let target = text(&files, "web.target");
        assert!(target.contains("Description=pm3 process web (1 instance); pm3 group web\n"), "{target}");
        assert!(target.contains("Wants=web@0.service api.target\n"), "{target}");
        assert!(target.contains("WantedBy=default.target\n"), "{target}");
        let odd = text(&files, "\\x2dmy\\x20group\\x2f\\xc3\\xa9.target");
        assert!(odd.contains("Wants=odd.target\n"), "{odd}");
    }

    #[test]
    fn a_cron_restart_is_a_timer_or_a_warning() {
        let mut a = ProcessDef::new("a", "x", "/".into());
        a.instances = 2;
        a.cron_restart = Some("*/30 * * * *".into());
        let mut b = ProcessDef::new("b", "x", "/".into());
        b.cron_restart = Some("0 0 L * *".into());
        let (files, warnings) = unit_files(&[a, b], Manager::User);
        assert!(
            text(&files, "a-restart.timer").contains("OnCalendar=*-*-* *:00,30:00\nUnit=a-restart.service\n")
        );
        assert!(text(&files, "a-restart.service").contains(
            "Type=oneshot\nExecStart=\"systemctl\" \"--user\" \"try-restart\" \"a@0.service\" \"a@1.service\"\n"
        ));
        assert!(text(&files, "a.target").contains("Wants=a@0.service a@1.service a-restart.timer\n"));
        assert!(!files.iter().any(|f| f.name.starts_with("b-restart")));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("systemd: `cron_restart` (b) `0 0 L * *` day of month `L`"),
            "{warnings:?}"
        );
    }
}
