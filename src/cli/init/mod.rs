//! `pm3 init [--yes] [--force]`: write a `pm3.toml` for the current directory from what is
//! already there, a `Procfile`, `package.json` scripts, docker-compose services (spec §5).
//!
//! # Layout
//! - `detect`: the detectors (pure functions of a file's text) and naming (`web`, `web-2`);
//! - `compose`: the docker-compose detector, what it maps and what it says it left out;
//! - `prompt`: the interactive wizard, on a terminal;
//! - `write`: rendering the TOML and writing it through a checked temporary file.
//!
//! The flow: refuse early when `pm3.toml` exists (unless `--force`), scan, then either accept
//! every proposal (`--yes`) or ask (a terminal is needed), render, check with the real loader,
//! write, and print what was written. `-c` plays no part: the file is always `./pm3.toml`.

mod compose;
mod detect;
mod prompt;
mod write;

use std::io::IsTerminal;
use std::path::Path;

use dialoguer::console::Term;

use super::{CliError, Out};
use crate::config::FILE_NAME;
use detect::{Found, Skipped};
use prompt::{PromptError, Wizard};
use write::WriteError;

/// What `--yes` says when no source offered anything.
const NOTHING: &str = "nothing to propose: no Procfile, package.json scripts or docker-compose services here; \
                       write pm3.toml by hand (see the README)";

/// Runs `pm3 init` in the current directory.
pub fn run(yes: bool, force: bool, out: &Out) -> Result<(), CliError> {
    let dir = std::env::current_dir()
        .map_err(|e| CliError::Other(format!("cannot read the current directory: {e}")))?;
    let path = dir.join(FILE_NAME);
    // Refuse before asking anything; `write` checks again when it puts the file in place.
    if !force && path.symlink_metadata().is_ok() {
        return Err(CliError::Other(WriteError::Exists(path).to_string()));
    }
    let found = detect::scan(&dir, &crate::config::own_environment());
    let skipped = found.skipped.clone();
    let (processes, wizard) = if yes {
        if found.proposals.is_empty() {
            if !out.json {
                tell(&found, &mut std::io::stderr());
            }
            return Err(CliError::Other(NOTHING.into()));
        }
        if !out.json {
            tell(&found, &mut std::io::stdout());
        }
        (found.proposals, None)
    } else {
        let term = Term::stderr();
        if !term.is_term() || !std::io::stdin().is_terminal() {
            return Err(CliError::Other(
                "`pm3 init` asks questions on a terminal; run `pm3 init --yes` to accept every proposal"
                    .into(),
            ));
        }
        let wizard = Wizard::new(term);
        (wizard.run(found).map_err(prompt_error)?, Some(wizard))
    };
    let text = write::render(&processes, &skipped);
    if let Some(wizard) = wizard
        && !wizard.confirm_write(FILE_NAME, &text).map_err(prompt_error)?
    {
        return Err(prompt_error(PromptError::Cancelled));
    }
    let written = write::write_checked(&path, &text, force).map_err(|e| CliError::Other(e.to_string()))?;
    let names: Vec<&str> = processes.iter().map(|p| p.name.as_str()).collect();
    if out.json {
        let remarks: serde_json::Map<String, serde_json::Value> = processes
            .iter()
            .filter(|p| !p.remarks.is_empty())
            .map(|p| (p.name.clone(), p.remarks.iter().map(ToString::to_string).collect()))
            .collect();
        return out.print_json(&serde_json::json!({
            "command": "init",
            "path": written,
            "processes": names,
            "skipped": skipped.iter().map(Skipped::to_string).collect::<Vec<_>>(),
            "remarks": remarks,
        }));
    }
    let plural = if names.len() == 1 { "" } else { "es" };
    out.print(&format!(
        "wrote {} with {} process{plural}: {}\nstart them with: pm3 start\n",
        display_name(&written),
        names.len(),
        names.join(", ")
    ))
}

fn prompt_error(e: PromptError) -> CliError {
    CliError::Other(format!("pm3 init: {e}"))
}

/// `pm3.toml` (it is always in the current directory).
fn display_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Prints the notes and the skipped entries (before `--yes` writes, or before it gives up).
fn tell(found: &Found, to: &mut dyn std::io::Write) {
    for note in &found.notes {
        let _ = writeln!(to, "note: {note}");
    }
    for s in &found.skipped {
        let _ = writeln!(to, "skipped {s}");
    }
    for p in &found.optional {
        let _ = writeln!(to, "not proposed: {} (run `pm3 init` without --yes to pick it)", p.origin);
    }
    for p in &found.proposals {
        for r in &p.remarks {
            let _ = writeln!(to, "{}: {r}", p.origin);
        }
    }
}
