//! The interactive side of `pm3 init`: on a terminal, walk through the proposals (keep it? its
//! command? how many instances?), offer the optional `package.json` scripts, let the user add
//! processes by hand (at least one when nothing was found), and confirm before writing.
//!
//! Prompts are drawn on stderr with `dialoguer`'s plain theme; stdout stays free for the result
//! (and `--json`). Nothing is written from here: the caller renders and writes.
//!
//! Ctrl-C during a prompt makes the terminal library raise SIGINT; while the [`Wizard`] lives,
//! SIGINT, SIGTERM and SIGHUP show the cursor again (a yes/no question hides it), say that
//! nothing was written, and end the process by the same signal, as an interrupted CLI should.

use dialoguer::console::Term;
use dialoguer::theme::SimpleTheme;
use dialoguer::{Confirm, Input, MultiSelect};

use super::detect::{Found, Instances, Origin, Proposal, name_problem};
use crate::process::spawn;

/// Why the wizard stopped without a result.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("cancelled: nothing written")]
    Cancelled,
    #[error("nothing to write: every proposal was declined")]
    Empty,
    #[error("terminal error: {0}")]
    Io(std::io::Error),
}

impl From<dialoguer::Error> for PromptError {
    fn from(e: dialoguer::Error) -> PromptError {
        let dialoguer::Error::IO(e) = e;
        // Ctrl-C while a prompt reads the keyboard.
        if e.kind() == std::io::ErrorKind::Interrupted { PromptError::Cancelled } else { PromptError::Io(e) }
    }
}

/// The signals that end the wizard.
const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

extern "C" fn on_signal(sig: libc::c_int) {
    const BYE: &[u8] = b"\x1b[?25h\npm3 init: interrupted, nothing written\n";
    // SAFETY: write, signal and raise are async-signal-safe; `BYE` is static.
    unsafe {
        libc::write(libc::STDERR_FILENO, BYE.as_ptr().cast(), BYE.len());
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// The prompts, on one terminal; signal handlers that restore the cursor until dropped.
pub struct Wizard {
    term: Term,
    theme: SimpleTheme,
    previous_handlers: Vec<(libc::c_int, libc::sighandler_t)>,
}

impl Wizard {
    pub fn new(term: Term) -> Wizard {
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        let previous_handlers = SIGNALS
            .iter()
            // SAFETY: the handler only calls async-signal-safe functions.
            .map(|&sig| (sig, unsafe { libc::signal(sig, handler) }))
            .collect();
        Wizard { term, theme: SimpleTheme, previous_handlers }
    }

    fn say(&self, line: &str) -> Result<(), PromptError> {
        self.term.write_line(line).map_err(PromptError::Io)
    }

    fn confirm(&self, prompt: &str, default: bool) -> Result<bool, PromptError> {
        Ok(Confirm::with_theme(&self.theme).with_prompt(prompt).default(default).interact_on(&self.term)?)
    }

    fn command(&self, name: &str, default: Option<&str>) -> Result<String, PromptError> {
        let mut input = Input::<String>::with_theme(&self.theme).with_prompt(format!("Command for {name}"));
        if let Some(d) = default {
            input = input.default(d.to_string());
        }
        let cmd = input
            .validate_with(|s: &String| {
                if s.trim().is_empty() {
                    Err("a command is needed".to_string())
                } else if s.contains('\0') {
                    Err("no NUL bytes".to_string())
                } else if spawn::runs_in_shell(s)
                    && let Some(Some(e)) = spawn::shell_syntax_errors(&[s.as_str()]).pop()
                {
                    Err(format!("shell syntax error: {e}"))
                } else {
                    Ok(())
                }
            })
            .interact_text_on(&self.term)?;
        Ok(cmd.trim().to_string())
    }

    fn instances(&self, name: &str, current: Option<Instances>) -> Result<Option<Instances>, PromptError> {
        let answer = Input::<String>::with_theme(&self.theme)
            .with_prompt(format!("Instances of {name} (a number or max)"))
            .default(current.unwrap_or(Instances::Count(1)).to_string())
            .validate_with(|s: &String| s.parse::<Instances>().map(|_| ()))
            .interact_text_on(&self.term)?;
        Ok(match answer.parse::<Instances>() {
            Ok(Instances::Count(1)) | Err(_) => None,
            Ok(n) => Some(n),
        })
    }

    /// A process typed in from scratch; its name must be valid and not one of `kept`.
    fn new_process(&self, kept: &[Proposal]) -> Result<Proposal, PromptError> {
        let name = Input::<String>::with_theme(&self.theme)
            .with_prompt("Process name")
            .validate_with(|s: &String| match name_problem(s.trim()) {
                Some(problem) => Err(problem),
                None if kept.iter().any(|p| p.name == s.trim()) => {
                    Err(format!("`{}` is already used", s.trim()))
                }
                None => Ok(()),
            })
            .interact_text_on(&self.term)?
            .trim()
            .to_string();
        let command = self.command(&name, None)?;
        let instances = self.instances(&name, None)?;
        let mut p = Proposal::new(Origin::Typed, command);
        p.name = name;
        p.instances = instances;
        Ok(p)
    }

    /// Runs the questions; returns the processes to write, in order.
    pub fn run(&self, found: Found) -> Result<Vec<Proposal>, PromptError> {
        let result = self.ask(found);
        // A prompt interrupted by Ctrl-C leaves the cursor hidden.
        let _ = self.term.show_cursor();
        result
    }

    fn ask(&self, found: Found) -> Result<Vec<Proposal>, PromptError> {
        let Found { mut proposals, optional, skipped, notes } = found;
        for note in &notes {
            self.say(&format!("note: {note}"))?;
        }
        for s in &skipped {
            self.say(&format!("skipped {s}"))?;
        }
        if !optional.is_empty() {
            let labels: Vec<String> = optional
                .iter()
                .map(|p| format!("{}: {}", p.origin.key().unwrap_or(&p.name), p.command))
                .collect();
            let picked = MultiSelect::with_theme(&self.theme)
                .with_prompt("More package.json scripts to run as processes? (space picks, enter goes on)")
                .items(&labels)
                .interact_on(&self.term)?;
            let mut optional: Vec<Option<Proposal>> = optional.into_iter().map(Some).collect();
            proposals.extend(picked.into_iter().filter_map(|i| optional.get_mut(i).and_then(Option::take)));
        }
        let mut kept = Vec::new();
        let mut declined = Vec::new();
        if proposals.is_empty() {
            self.say("Nothing to propose here (no Procfile, package.json scripts or compose services).")?;
            self.say("Describe a process to run:")?;
            kept.push(self.new_process(&kept)?);
        } else {
            let n = proposals.len();
            self.say(&format!("{n} process{} to propose.", if n == 1 { "" } else { "es" }))?;
        }
        for mut p in proposals {
            self.say(&format!("\n{}, from {}:\n  {}", p.name, p.origin, p.command))?;
            for r in &p.remarks {
                self.say(&format!("  {r}"))?;
            }
            if !self.confirm(&format!("Keep {}?", p.name), true)? {
                declined.push(p.name);
                continue;
            }
            p.command = self.command(&p.name, Some(&p.command))?;
            p.instances = self.instances(&p.name, p.instances)?;
            kept.push(p);
        }
        while self.confirm("Add another process?", kept.is_empty())? {
            kept.push(self.new_process(&kept)?);
        }
        if kept.is_empty() {
            return Err(PromptError::Empty);
        }
        for p in &mut kept {
            p.depends_on.retain(|d| !declined.contains(d));
        }
        Ok(kept)
    }

    /// Shows the file and asks before writing it.
    pub fn confirm_write(&self, file: &str, text: &str) -> Result<bool, PromptError> {
        let result = (|| {
            self.say(&format!("\n{text}"))?;
            self.confirm(&format!("Write {file}?"), true)
        })();
        let _ = self.term.show_cursor();
        result
    }
}

impl Drop for Wizard {
    fn drop(&mut self) {
        for &(sig, prev) in &self.previous_handlers {
            // SAFETY: puts back the disposition `signal` returned in `Wizard::new`.
            unsafe {
                libc::signal(sig, prev);
            }
        }
    }
}
