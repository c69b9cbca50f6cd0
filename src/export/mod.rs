//! `pm3 export`: the processes of a config file as manifests for an engine that runs them on
//! more than one machine (or under the system's own supervisor): systemd units, Kubernetes
//! objects, a Compose file.
//!
//! # Layout
//! - `env_file`: each `env_file` referred to (systemd, Compose) or written inline, with why;
//! - `process`: what a definition becomes before a format is chosen (argv as pm3 runs it,
//!   variables expanded per instance, the health check parsed, the keys it sets);
//! - `ports`: the ports a process listens on, for Services and container ports;
//! - `systemd`, `kubernetes`, `compose`: one format each, from [`process::Exported`]s;
//! - `unit_syntax`: quoting for systemd unit files; `cron`: a `cron_restart` as a systemd
//!   calendar event; `yaml`: the YAML writer.
//!
//! Nothing here reads files or prints: the CLI loads the config (as `pm3 start` does), reads
//! the env files, and writes what [`export`] returns. A key a format cannot express is named once, with the
//! processes that set it, in [`Export::warnings`].

mod compose;
mod cron;
mod env_file;
mod kubernetes;
mod ports;
mod process;
mod systemd;
mod unit_syntax;
pub mod yaml;

use std::collections::BTreeMap;

use crate::daemon::table::{Item, resolve};
use crate::spec::{ConfigFile, ProcessDef};

pub use env_file::EnvFile;

/// The engines `pm3 export` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    // (Plain comments: doc comments would turn `pm3 export --help` into its long form.)
    // systemd units: a template unit and a target per process, timers, group targets.
    Systemd,
    // Kubernetes Deployments or StatefulSets, Services, probes.
    Kubernetes,
    // A Compose file: services with replicas and healthchecks.
    Compose,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Systemd => "systemd",
            Format::Kubernetes => "kubernetes",
            Format::Compose => "compose",
        }
    }
}

/// One file of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// File name (no directory): `web@.service`, `web.yaml`, `compose.yaml`.
    pub name: String,
    pub text: String,
}

/// What an export produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub format: Format,
    pub files: Vec<File>,
    /// One line per key the format cannot express (or only in part), naming the processes.
    pub warnings: Vec<String>,
}

impl Export {
    /// What `pm3 export` prints without `-o`: a Kubernetes YAML stream, the Compose file, or
    /// the systemd units one after the other, each starting with a comment naming its file.
    pub fn stdout_text(&self) -> String {
        let texts: Vec<&str> = self.files.iter().map(|f| f.text.as_str()).collect();
        match self.format {
            Format::Systemd => texts.join("\n"),
            Format::Kubernetes | Format::Compose => texts.concat(),
        }
    }
}

/// The processes of `file` named by `targets` (process names, group names, `all`; none means
/// all), with the processes they depend on, in file order, written in `format` for processes
/// started from the environment `base` (that of `pm3 export`, as for `pm3 start`); `user`
/// writes systemd units for the user's service manager rather than the system's. `env_files`
/// holds each process's `env_file`s, by process name, in the order pm3 reads them.
pub fn export(
    format: Format,
    file: &ConfigFile,
    targets: &[String],
    base: &BTreeMap<String, String>,
    user: bool,
    env_files: &BTreeMap<String, Vec<EnvFile>>,
) -> Result<Export, String> {
    let chosen = select(file, targets)?;
    let mut exported: Vec<process::Exported<'_>> =
        chosen.iter().map(|d| process::Exported::new(d, base)).collect::<Result<_, _>>()?;
    for p in &mut exported {
        p.env_files = env_files.get(&p.def.name).map_or(&[], Vec::as_slice);
    }
    let mut warnings = Warnings::default();
    let files = match format {
        Format::Systemd => {
            let manager = if user { systemd::Manager::User } else { systemd::Manager::System };
            systemd::files(&exported, manager, &mut warnings)
        }
        Format::Kubernetes => kubernetes::files(&exported, &mut warnings)?,
        Format::Compose => compose::files(&exported, &mut warnings),
    };
    Ok(Export { format, files, warnings: warnings.lines(format) })
}

/// The definitions `targets` name (resolved as every command resolves them, spec §4, with
/// processes for instances: an export holds whole processes), and their dependencies, in file
/// order.
fn select<'a>(file: &'a ConfigFile, targets: &[String]) -> Result<Vec<&'a ProcessDef>, String> {
    let all = &file.processes;
    for t in targets {
        if let Some((process, _)) = t.rsplit_once(':')
            && all.iter().any(|d| d.name == process)
        {
            return Err(format!("`{t}` is an instance: an export holds whole processes (name `{process}`)"));
        }
    }
    let items: Vec<Item<'_>> = all
        .iter()
        .map(|d| Item { name: &d.name, process: &d.name, group: crate::instances::group_of(d) })
        .collect();
    let mut wanted =
        resolve(&items, targets).map_err(|e| format!("{}: {}", file.path.display(), e.message))?;
    // Dependencies too: an engine starts a process only beside what it needs.
    let mut i = 0;
    while i < wanted.len() {
        if let Some(d) = all.iter().find(|d| d.name == wanted[i]) {
            for dep in &d.depends_on {
                if !wanted.contains(dep) {
                    wanted.push(dep.clone());
                }
            }
        }
        i += 1;
    }
    Ok(all.iter().filter(|d| wanted.contains(&d.name)).collect())
}

/// Keys a format cannot express, gathered so that each is named once.
#[derive(Default)]
pub struct Warnings {
    /// (key, what happens instead, processes), in the order first seen.
    items: Vec<(String, String, Vec<String>)>,
}

impl Warnings {
    /// Notes that `process` sets `key`, which the format writes as `what` says.
    pub fn add(&mut self, process: &str, key: &str, what: &str) {
        match self.items.iter_mut().find(|(k, w, _)| k == key && w == what) {
            Some((_, _, names)) => {
                if !names.iter().any(|n| n == process) {
                    names.push(process.to_string());
                }
            }
            None => self.items.push((key.to_string(), what.to_string(), vec![process.to_string()])),
        }
    }

    /// Warns about each key of `unmapped` (key, why) that `p` sets.
    pub fn unmapped(&mut self, p: &process::Exported<'_>, unmapped: &[(&str, &str)]) {
        let set = process::keys_set(p.def);
        for (key, what) in unmapped {
            if set.contains(key) {
                self.add(&p.def.name, key, what);
            }
        }
    }

    fn lines(self, format: Format) -> Vec<String> {
        self.items
            .into_iter()
            .map(|(key, what, names)| format!("{}: `{key}` ({}) {what}", format.as_str(), names.join(", ")))
            .collect()
    }
}

/// The reason given for a key with no equivalent at all.
pub const NO_EQUIVALENT: &str = "has no equivalent; skipped";

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn file() -> ConfigFile {
        let mut db = ProcessDef::new("db", "sleep 1", PathBuf::from("/"));
        db.group = Some("data".into());
        let mut web = ProcessDef::new("web", "sleep 1", PathBuf::from("/"));
        web.depends_on = vec!["db".into()];
        web.instances = 2;
        let other = ProcessDef::new("other", "sleep 1", PathBuf::from("/"));
        ConfigFile { path: PathBuf::from("/p/pm3.toml"), processes: vec![db, web, other] }
    }

    fn names(targets: &[&str]) -> Result<Vec<String>, String> {
        let f = file();
        let t: Vec<String> = targets.iter().map(|s| s.to_string()).collect();
        select(&f, &t).map(|ds| ds.iter().map(|d| d.name.clone()).collect())
    }

    #[test]
    fn targets_are_processes_or_groups_with_their_dependencies_in_file_order() {
        assert_eq!(names(&[]).expect("all"), ["db", "web", "other"]);
        assert_eq!(names(&["all"]).expect("all"), ["db", "web", "other"]);
        assert_eq!(names(&["web"]).expect("web"), ["db", "web"]);
        assert_eq!(names(&["other", "data"]).expect("group"), ["db", "other"]);
        assert_eq!(names(&["web"]).expect("group of a cluster"), names(&["web", "web"]).expect("twice"));
    }

    #[test]
    fn an_unknown_target_or_an_instance_is_an_error_naming_what_exists() {
        let err = names(&["nope"]).expect_err("unknown");
        assert_eq!(err, "/p/pm3.toml: unknown process or group `nope`; known: data, db, other, web");
        let err = names(&["web:1"]).expect_err("instance");
        assert!(err.contains("`web:1` is an instance") && err.contains("`web`"), "{err}");
    }

    #[test]
    fn each_key_is_warned_once_with_every_process_that_sets_it() {
        let mut w = Warnings::default();
        w.add("web", "cron_restart", NO_EQUIVALENT);
        w.add("worker", "cron_restart", NO_EQUIVALENT);
        w.add("web", "cron_restart", NO_EQUIVALENT);
        w.add("web", "watch", NO_EQUIVALENT);
        assert_eq!(
            w.lines(Format::Kubernetes),
            [
                "kubernetes: `cron_restart` (web, worker) has no equivalent; skipped",
                "kubernetes: `watch` (web) has no equivalent; skipped"
            ]
        );
    }
}
