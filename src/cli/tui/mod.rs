//! `pm3 tui` (and bare `pm3` on a terminal): a live process table, the selected process's log
//! below it, and keys to stop, start, restart and reload.
//!
//! # Theory of operation
//! One thread owns the terminal and the [`App`] state and runs the event loop: wait up to 50 ms
//! for a key, apply what the other threads sent, redraw if anything changed. Everything that
//! can block runs elsewhere and reports back through one channel of [`Msg`]s:
//! - `requests`: a lister thread (`list` every 500 ms) and one thread per command, each with
//!   its own [`Client`], since a `stop` may take seconds;
//! - `logs`: a thread following the selected process's log files every 200 ms.
//!
//! `app` holds the state and the key bindings, `view` draws it (a pure function, tested with
//! ratatui's `TestBackend`), `term` sets up and always restores the terminal.

pub(crate) mod app;
mod logs;
mod requests;
mod term;
mod view;

use std::io::{self, IsTerminal};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event};

use self::app::{App, Effect, Msg};
use self::logs::Logs;
use self::requests::Lister;
use self::term::Screen;
use super::CliError;
use crate::client::Client;
use crate::paths::Paths;

/// Longest wait for a key before the loop looks at the other threads' messages.
const TICK: Duration = Duration::from_millis(50);

/// True when both stdin and stdout are terminals: where bare `pm3` opens the TUI.
pub fn on_terminal() -> bool {
    io::stdin().is_terminal() && io::stdout().is_terminal()
}

/// Runs the TUI until the user quits; restores the terminal however it ends.
pub(super) fn run(paths: &Paths) -> Result<(), CliError> {
    if !on_terminal() {
        return Err(CliError::Other("`pm3 tui` needs a terminal; `pm3 list` prints the table".into()));
    }
    // Connect (starting the daemon) before taking the screen, so a failure prints normally.
    let client = Client::connect_or_start(paths)?;
    let (tx, rx) = mpsc::channel();
    let setup = |e: io::Error| CliError::Other(format!("cannot start the TUI: {e}"));
    let lister = Lister::spawn(paths.clone(), client, tx.clone()).map_err(setup)?;
    let logs = Logs::spawn(paths.clone(), tx.clone()).map_err(setup)?;
    let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let mut app = App::new(color);
    let mut screen =
        Screen::enter().map_err(|e| CliError::Other(format!("cannot set up the terminal: {e}")))?;
    let ended =
        event_loop(&mut screen, &mut app, Channels { rx: &rx, tx: &tx, lister: &lister, logs: &logs }, paths);
    drop(screen);
    if let Some(sig) = term::caught() {
        term::die_of(sig);
    }
    ended.map_err(|e| CliError::Other(format!("terminal: {e}")))
}

/// The event loop's ends of the other threads.
struct Channels<'a> {
    rx: &'a Receiver<Msg>,
    tx: &'a Sender<Msg>,
    lister: &'a Lister,
    logs: &'a Logs,
}

fn event_loop(screen: &mut Screen, app: &mut App, ch: Channels<'_>, paths: &Paths) -> io::Result<()> {
    loop {
        // A closed terminal (its window gone without a SIGHUP reaching us) makes every poll
        // return at once: leave instead of spinning.
        if term::caught().is_some() || !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            return Ok(());
        }
        while let Ok(msg) = ch.rx.try_recv() {
            let finished = matches!(msg, Msg::Done { .. });
            app.apply(msg);
            if finished {
                ch.lister.refresh();
            }
        }
        app.tick(Instant::now());
        if app.selected != app.log_name {
            ch.logs.follow(app.selected.clone());
            app.show_logs_of(app.selected.clone());
        }
        if app.dirty {
            screen.terminal.draw(|f| view::render(f, app))?;
            app.dirty = false;
        }
        // Wait for input ourselves: on a terminal that is gone (EOF, EIO, hang-up) the terminal
        // library's own wait would spin.
        if term::terminal_gone(TICK) {
            return Ok(());
        }
        // Take every pending event before drawing again, so held keys do not lag behind.
        while event::poll(Duration::ZERO)? {
            match event::read()? {
                Event::Key(key) => match app.on_key(key) {
                    Some(Effect::Quit) => return Ok(()),
                    Some(Effect::Send(cmd)) => {
                        app.begin(&cmd);
                        if let Err(e) = requests::send(paths, cmd.clone(), ch.tx.clone()) {
                            app.apply(Msg::Done { cmd, result: Err(format!("cannot start a thread: {e}")) });
                        }
                        ch.lister.refresh();
                    }
                    None => {}
                },
                Event::Resize(..) => app.dirty = true,
                _ => {}
            }
        }
    }
}
