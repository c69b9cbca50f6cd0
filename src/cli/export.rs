//! `pm3 export FORMAT [TARGET…] [-o DIR] [--env NAME]`: loads the config as `pm3 start` does,
//! reads its env files, and writes what [`crate::export`] makes of it: on stdout, or as files in
//! `DIR`. Each key the format cannot express is one `warning:` line on stderr.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{CliError, Out, load_config, to_stderr};
use crate::export::{self, EnvFile, Export, Format};

pub fn run(
    config: Option<&PathBuf>,
    format: Format,
    targets: &[String],
    dir: Option<&Path>,
    env: Option<&str>,
    user: bool,
    out: &Out,
) -> Result<(), CliError> {
    if user && format != Format::Systemd {
        return Err(CliError::Other(format!("`--user` is for systemd units, not {}", format.as_str())));
    }
    let Some(payload) = load_config(config, env, &[])? else {
        return Err(CliError::Other("`pm3 export` needs a pm3.toml".into()));
    };
    let env_files = env_files(&payload.file)?;
    let exported = export::export(format, &payload.file, targets, &payload.env, user, &env_files)
        .map_err(CliError::Other)?;
    for w in &exported.warnings {
        to_stderr(&format!("warning: {w}\n"));
    }
    match dir {
        None if out.json => out.print_json(&serde_json::json!({
            "command": "export",
            "format": format.as_str(),
            "files": exported.files.iter().map(|f| serde_json::json!({"name": f.name, "text": f.text})).collect::<Vec<_>>(),
            "warnings": exported.warnings,
        })),
        None => out.print(&exported.stdout_text()),
        Some(dir) => {
            let written = write_files(&exported, dir)?;
            if out.json {
                return out.print_json(&serde_json::json!({
                    "command": "export",
                    "format": format.as_str(),
                    "files": written,
                    "warnings": exported.warnings,
                }));
            }
            let list: String = written.iter().map(|p| format!("wrote {}\n", p.display())).collect();
            out.print(&list)
        }
    }
}

/// Writes every file of `exported` under `dir` (created if needed), replacing files of the
/// same name; returns their paths.
fn write_files(exported: &Export, dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let fail =
        |path: &Path, e: std::io::Error| CliError::Other(format!("cannot write {}: {e}", path.display()));
    let mut written = Vec::new();
    for f in &exported.files {
        let path = dir.join(&f.name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fail(parent, e))?;
        }
        std::fs::write(&path, &f.text).map_err(|e| fail(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

/// The `env_file`s of each process of `file` (which loaded, so each exists and reads), by
/// process name, in order: the path as written, resolved against the config's directory as the
/// loader resolves it, the text and the variables.
fn env_files(file: &crate::spec::ConfigFile) -> Result<BTreeMap<String, Vec<EnvFile>>, CliError> {
    let fail = |what: String| CliError::Other(format!("{}: {what}", file.path.display()));
    let text = std::fs::read_to_string(&file.path).map_err(|e| fail(format!("cannot be read: {e}")))?;
    let root: toml::Table = toml::from_str(&text).map_err(|e| fail(e.to_string()))?;
    let dir = file.path.parent().unwrap_or(Path::new("/"));
    let mut out = BTreeMap::new();
    for def in &file.processes {
        let given: Vec<&str> = match root.get(&def.name).and_then(|t| t.get("env_file")) {
            Some(toml::Value::String(one)) => vec![one.as_str()],
            Some(toml::Value::Array(many)) => many.iter().filter_map(toml::Value::as_str).collect(),
            _ => continue,
        };
        let mut files = Vec::new();
        for g in given {
            let path: PathBuf = dir.join(g).components().collect();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| fail(format!("`env_file` `{g}` cannot be read ({}): {e}", path.display())))?;
            let vars = crate::config::read_env_file(&path)
                .map_err(|e| fail(format!("`env_file` `{g}` ({}) {e}", path.display())))?;
            files.push(EnvFile { given: g.to_string(), path, text, vars });
        }
        out.insert(def.name.clone(), files);
    }
    Ok(out)
}
