//! A Compose file: one service per process, `deploy.replicas` for its instances, its
//! environment (`env_file` by absolute path, or inline: see [`env_file`](super::env_file)),
//! `working_dir`, `mem_limit`, restart policy, dependencies (waiting for health
//! where the dependency has a check), healthcheck, stop signal and grace period. `pm3 init`
//! reads the keys it knows back.
//!
//! Compose interpolates `$VAR` and `${VAR}` in every value when it reads the file; values are
//! written with each `$` doubled, so the container gets them as pm3 would. Checks run inside
//! the container: `http://` becomes `curl -fsS`, `tcp://` becomes `nc -z`, `exec:` the command
//! itself.

use super::env_file::{self, Engine};
use super::process::{Exported, dns_label, dollars_doubled as escaped};
use super::yaml::{Node, document};
use super::{File, NO_EQUIVALENT, Warnings};
use crate::spec::RestartPolicy;
use crate::supervisor::health::Probe;

const UNMAPPED: &[(&str, &str)] = &[
    ("listen", "is not passed: the container must bind the address itself (no LISTEN_FDS); skipped"),
    ("min_uptime", "has no equivalent: compose restarts with its own delay; skipped"),
    ("restart_delay", "has no equivalent: compose restarts with its own delay; skipped"),
    ("stop_exit_codes", NO_EQUIVALENT),
    ("pre_start", NO_EQUIVALENT),
    ("post_stop", NO_EQUIVALENT),
    ("watch", NO_EQUIVALENT),
    ("watch_ignore", NO_EQUIVALENT),
    ("watch_debounce", NO_EQUIVALENT),
    ("cron_restart", NO_EQUIVALENT),
    ("log_date_format", "has no equivalent: the logging driver keeps the output; skipped"),
    ("log_max_size", "has no equivalent: the logging driver keeps the output; skipped"),
    ("log_max_files", "has no equivalent: the logging driver keeps the output; skipped"),
    ("log_compress", "has no equivalent: the logging driver keeps the output; skipped"),
];

/// The file name `-o DIR` gets, the first one `docker compose` (and `pm3 init`) looks for.
pub const FILE_NAME: &str = "compose.yaml";

/// `compose.yaml` with a service per process.
pub fn files(processes: &[Exported<'_>], warnings: &mut Warnings) -> Vec<File> {
    let services: Vec<(String, Node)> =
        processes.iter().map(|p| (p.def.name.clone(), service(p, processes, warnings))).collect();
    let mut text = format!("# {FILE_NAME}: written by `pm3 export compose` from pm3.toml\n");
    text.push_str(&document(&Node::map([("services", Node::Map(services))])));
    vec![File { name: FILE_NAME.into(), text }]
}

/// Milliseconds as a Compose duration; Compose counts in nanoseconds up to about 292 years,
/// so longer spans are written as 2,500,000 hours (285 years).
fn ms(ms: u64) -> Node {
    const LONGEST_MS: u64 = 2_500_000 * 3_600_000;
    Node::str(if ms > LONGEST_MS { "2500000h".to_string() } else { format!("{ms}ms") })
}

fn service(p: &Exported<'_>, all: &[Exported<'_>], warnings: &mut Warnings) -> Node {
    let d = p.def;
    warnings.unmapped(p, UNMAPPED);
    let mut s: Vec<(&str, Node)> = vec![
        ("image", Node::str(dns_label(&d.name))),
        ("command", Node::strs(p.argv.iter().map(|w| escaped(w)))),
    ];
    let mut env = Vec::new();
    if d.instances > 1 {
        warnings.add(
            &d.name,
            "instances",
            "is written as deploy.replicas, which share one definition: PM3_INSTANCE_ID is not set",
        );
    } else {
        env.push(("PM3_INSTANCE_ID".to_string(), Node::str("0")));
    }
    for var in p.varying.iter().filter(|v| Some(*v) != d.increment_var.as_ref()) {
        warnings.add(
            &d.name,
            &format!("env.{var}"),
            "differs between instances; every replica gets instance 0's value",
        );
    }
    env.push(("PM3_INSTANCE_COUNT".to_string(), Node::str(d.instances.to_string())));
    // The env files compose reads as pm3 does, by their absolute path; the variables of the
    // others, `env`'s and `env_<name>`'s inline (`environment` wins over `env_file`, as `env`
    // does in pm3).
    let plan = env_file::plan(p, Engine::Compose, |_| true, warnings);
    env.extend(plan.inline.iter().map(|(k, v)| (k.clone(), Node::str(escaped(v)))));
    if !plan.referred.is_empty() {
        s.push(("env_file", Node::strs(plan.referred.iter().map(|f| escaped(&f.path.to_string_lossy())))));
    }
    s.push(("environment", Node::Map(env)));

    if d.instances > 1 {
        s.push(("deploy", Node::map([("replicas", Node::Int(i64::from(d.instances)))])));
    }
    // The directory as it is on this machine: the image holds the program there, or the
    // field is edited (Docker creates a missing one).
    s.push(("working_dir", Node::str(escaped(&d.cwd.to_string_lossy()))));
    if let Some(bytes) = d.max_memory {
        // Compose reads a size into a signed 64-bit count of bytes.
        let bytes = bytes.min(i64::MAX as u64);
        s.push(("mem_limit", Node::str(format!("{bytes}b"))));
    }
    let restart = match (d.restart, d.max_restarts) {
        (RestartPolicy::Never, _) | (_, 0) => "no".to_string(),
        (RestartPolicy::OnFailure, n) => format!("on-failure:{n}"),
        (RestartPolicy::Always, _) => "always".to_string(),
    };
    if d.restart == RestartPolicy::Always && process_sets(p, "max_restarts") {
        warnings.add(&d.name, "max_restarts", "has no equivalent with `restart: always`; skipped");
    }
    s.push(("restart", Node::str(restart)));
    if !d.depends_on.is_empty() {
        let deps = d.depends_on.iter().map(|name| {
            let healthy = all.iter().any(|q| q.def.name == *name && q.probe.is_some());
            let condition = if healthy { "service_healthy" } else { "service_started" };
            (name.clone(), Node::map([("condition", Node::str(condition))]))
        });
        s.push(("depends_on", Node::map(deps)));
    }
    if let Some(probe) = &p.probe {
        let test = match probe {
            Probe::Http { uri, .. } => {
                warnings.add(&d.name, "health_check", "runs in the container: `http://` and `https://` checks use curl, which the image must have");
                format!("curl -fsS -o /dev/null {} || exit 1", shell_words::quote(&uri.to_string()))
            }
            Probe::Tcp { host, port } => {
                warnings.add(
                    &d.name,
                    "health_check",
                    "runs in the container: `tcp://` checks use nc, which the image must have",
                );
                format!("nc -z {} {port} || exit 1", shell_words::quote(host))
            }
            Probe::Exec { command } => command.clone(),
        };
        s.push((
            "healthcheck",
            Node::map([
                ("test", Node::strs(["CMD-SHELL".to_string(), escaped(&test)])),
                ("interval", ms(d.health_interval_ms)),
                ("timeout", ms(u64::try_from(d.probe_timeout().as_millis()).unwrap_or(u64::MAX))),
                ("start_period", ms(d.health_timeout_ms)),
            ]),
        ));
    }
    s.push(("stop_signal", Node::str(d.kill_signal.to_string())));
    s.push(("stop_grace_period", ms(d.kill_timeout_ms)));
    if let Some(group) = &d.group {
        s.push(("labels", Node::map([("pm3.group", Node::str(escaped(group)))])));
    }
    Node::map(s)
}

fn process_sets(p: &Exported<'_>, key: &str) -> bool {
    super::process::keys_set(p.def).contains(&key)
}
