//! What one process definition becomes before any format is chosen: its argv as pm3 runs it,
//! its config variables expanded as `pm3 start` would give them to each instance, its health
//! check parsed, its ports, and the keys it sets that a format may not express.

use std::collections::BTreeMap;

use super::env_file::EnvFile;
use super::ports::{Port, ports};
use crate::instances;
use crate::process::spawn;
use crate::spec::ProcessDef;
use crate::supervisor::health::Probe;

/// One process ready to be written in any format.
pub struct Exported<'a> {
    pub def: &'a ProcessDef,
    /// The argv pm3 executes: the command split into words, or `/bin/sh -c COMMAND`.
    pub argv: Vec<String>,
    /// The variables the config sets (env files, `env`, `env_<name>`, `increment_var`), as
    /// instance 0 gets them (`${VAR}` expanded), in name order. `PM3_*` are not among them.
    pub env: Vec<(String, String)>,
    /// The names of those variables whose value differs between instances (the
    /// `increment_var`, a value using `${PM3_INSTANCE_ID}`…).
    pub varying: Vec<String>,
    /// For each instance, the values of the `varying` variables (empty when none vary).
    pub per_instance: Vec<Vec<(String, String)>>,
    /// The health check as instance 0 expands it.
    pub probe: Option<Probe>,
    /// The ports the config shows (see [`ports`](super::ports)).
    pub ports: Vec<Port>,
    /// Its `env_file`s as read for the export, in order (none until [`super::export`] sets
    /// them).
    pub env_files: &'a [EnvFile],
}

impl<'a> Exported<'a> {
    /// `def` for processes started from the environment `base` (that of `pm3 export`).
    pub fn new(def: &'a ProcessDef, base: &BTreeMap<String, String>) -> Result<Exported<'a>, String> {
        let own: Vec<&str> = {
            let mut names: Vec<&str> = def.env.iter().map(|(k, _)| k.as_str()).collect();
            names.extend(def.increment_var.as_deref());
            names.sort_unstable();
            names.dedup();
            names.retain(|n| !n.starts_with("PM3_"));
            names
        };
        let all: Vec<BTreeMap<String, String>> =
            (0..def.instances).map(|i| instances::environment(def, base, i)).collect();
        let value = |i: usize, name: &str| all[i].get(name).cloned().unwrap_or_default();
        let env: Vec<(String, String)> = own.iter().map(|n| (n.to_string(), value(0, n))).collect();
        let varying: Vec<String> = own
            .iter()
            .filter(|n| (1..all.len()).any(|i| value(i, n) != value(0, n)))
            .map(|n| n.to_string())
            .collect();
        let per_instance = if varying.is_empty() {
            Vec::new()
        } else {
            (0..all.len()).map(|i| varying.iter().map(|n| (n.clone(), value(i, n))).collect()).collect()
        };
        let probe = match &def.health_check {
            Some(text) => Some(
                Probe::parse(&instances::expand_in(text, &all[0]))
                    .map_err(|e| format!("[{}] health_check: {e}", def.name))?,
            ),
            None => None,
        };
        let ports = ports(def, &env, probe.as_ref());
        Ok(Exported {
            def,
            argv: spawn::argv(&def.command),
            env,
            varying,
            per_instance,
            probe,
            ports,
            env_files: &[],
        })
    }

    /// The variables of instance 0 that are the same for every instance.
    pub fn shared_env(&self) -> impl Iterator<Item = &(String, String)> {
        self.env.iter().filter(|(k, _)| !self.varying.contains(k))
    }
}

/// The keys of `def` that differ from their defaults (`cwd` and `command` excepted), by their
/// name in `pm3.toml`.
pub fn keys_set(def: &ProcessDef) -> Vec<&'static str> {
    let d = ProcessDef::new(def.name.clone(), def.command.clone(), def.cwd.clone());
    let checks: [(&str, bool); 28] = [
        ("env", !def.env.is_empty()),
        ("instances", def.instances != d.instances),
        ("increment_var", def.increment_var.is_some()),
        ("group", def.group.is_some()),
        ("depends_on", !def.depends_on.is_empty()),
        ("restart", def.restart != d.restart),
        ("max_restarts", def.max_restarts != d.max_restarts),
        ("min_uptime", def.min_uptime_ms != d.min_uptime_ms),
        ("restart_delay", def.restart_delay_ms != d.restart_delay_ms),
        ("stop_exit_codes", !def.stop_exit_codes.is_empty()),
        ("kill_signal", def.kill_signal != d.kill_signal),
        ("kill_timeout", def.kill_timeout_ms != d.kill_timeout_ms),
        ("health_check", def.health_check.is_some()),
        ("health_interval", def.health_check.is_some() && def.health_interval_ms != d.health_interval_ms),
        ("health_timeout", def.health_check.is_some() && def.health_timeout_ms != d.health_timeout_ms),
        ("health_probe_timeout", def.health_check.is_some() && def.health_probe_timeout_ms.is_some()),
        ("pre_start", def.pre_start.is_some()),
        ("post_stop", def.post_stop.is_some()),
        ("max_memory", def.max_memory.is_some()),
        ("watch", def.watch.is_some()),
        ("watch_ignore", def.watch.is_some() && def.watch_ignore != d.watch_ignore),
        ("watch_debounce", def.watch.is_some() && def.watch_debounce_ms != d.watch_debounce_ms),
        ("cron_restart", def.cron_restart.is_some()),
        ("log_date_format", def.log_date_format.is_some()),
        ("log_max_size", def.log_max_size != d.log_max_size),
        ("log_max_files", def.log_max_files != d.log_max_files),
        ("log_compress", def.log_compress != d.log_compress),
        ("listen", !def.listen.is_empty()),
    ];
    checks.into_iter().filter(|(_, set)| *set).map(|(k, _)| k).collect()
}

/// `name` as a Kubernetes object name (DNS label): lowercase letters, digits and `-`, no `-`
/// at either end, at most 52 characters (a StatefulSet's pods add `-N` and a revision hash).
/// Also a valid image name (which must be lowercase).
pub fn dns_label(name: &str) -> String {
    let mut out: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    out.truncate(52);
    let out = out.trim_matches('-').to_string();
    if out.is_empty() { "process".into() } else { out }
}

/// `s` with every `$` doubled: Kubernetes (which expands `$(VAR)` in commands and variable
/// values) and Compose (which interpolates `$VAR` everywhere) both read `$$` as one `$`.
pub fn dollars_doubled(s: &str) -> String {
    s.replace('$', "$$")
}

/// Milliseconds as whole seconds, rounded up, at least `min`.
pub fn seconds_up(ms: u64, min: u64) -> u64 {
    ms.div_ceil(1000).max(min)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn def() -> ProcessDef {
        let mut d = ProcessDef::new("web", "python3 server.py --port 1", PathBuf::from("/srv"));
        d.instances = 3;
        d.increment_var = Some("PORT".into());
        d.env = vec![
            ("PORT".into(), "3000".into()),
            ("NAME".into(), "web-${PM3_INSTANCE_ID}".into()),
            ("HOME_COPY".into(), "${HOME}".into()),
            ("PM3_INSTANCE_ID".into(), "9".into()),
        ];
        d.health_check = Some("http://localhost:${PORT}/health".into());
        d
    }

    #[test]
    fn variables_are_expanded_per_instance_and_those_that_differ_are_named() {
        let base = BTreeMap::from([("HOME".to_string(), "/home/u".to_string())]);
        let d = def();
        let e = Exported::new(&d, &base).expect("exported");
        assert_eq!(e.argv, ["python3", "server.py", "--port", "1"]);
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert_eq!(e.env, pairs(&[("HOME_COPY", "/home/u"), ("NAME", "web-0"), ("PORT", "3000")]));
        assert_eq!(e.varying, ["NAME", "PORT"]);
        assert_eq!(e.per_instance[2], pairs(&[("NAME", "web-2"), ("PORT", "3002")]));
        assert_eq!(e.shared_env().cloned().collect::<Vec<_>>(), pairs(&[("HOME_COPY", "/home/u")]));
        assert_eq!(e.probe, Probe::parse("http://localhost:3000/health").ok());
        assert_eq!(e.ports.iter().map(|p| p.number).collect::<Vec<_>>(), [3000]);
    }

    #[test]
    fn shell_commands_are_exported_as_pm3_runs_them() {
        let mut d = def();
        d.command = "python3 a.py | tee out.log".into();
        let e = Exported::new(&d, &BTreeMap::new()).expect("exported");
        assert_eq!(e.argv, ["/bin/sh", "-c", "python3 a.py | tee out.log"]);
    }

    #[test]
    fn dollars_are_kept_from_the_engines_expansion() {
        assert_eq!(dollars_doubled("echo $(HOME) $$ $x ${Y}"), "echo $$(HOME) $$$$ $$x $${Y}");
    }

    #[test]
    fn keys_set_names_only_what_differs_from_the_defaults() {
        let plain = ProcessDef::new("a", "sleep 1", PathBuf::from("/"));
        assert!(keys_set(&plain).is_empty());
        let mut d = plain.clone();
        d.cron_restart = Some("0 * * * *".into());
        d.health_interval_ms = 5;
        assert_eq!(keys_set(&d), ["cron_restart"], "health_interval counts only with a health_check");
    }
}
