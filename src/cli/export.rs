//! `pm3 export FORMAT [TARGET…] [-o DIR] [--env NAME]`: loads the config as `pm3 start` does
//! and writes what [`crate::export`] makes of it: on stdout, or as files in `DIR`. Each key the
//! format cannot express is one `warning:` line on stderr.

use std::path::{Path, PathBuf};

use super::{CliError, Out, load_config, to_stderr};
use crate::export::{self, Export, Format};

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
    let exported =
        export::export(format, &payload.file, targets, &payload.env, user).map_err(CliError::Other)?;
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
