//! The TUI's conversations with the daemon, each on its own thread with its own blocking
//! [`Client`], so a slow `stop` never freezes the screen: a lister that asks for `list` every
//! 500 ms (sooner when nudged), and one short-lived thread per command. Both report to the event
//! loop as [`Msg`]s and stop when it is gone.

use std::io;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::Duration;

use super::app::{Command, Msg};
use crate::cli::output;
use crate::client::{Client, ClientError};
use crate::paths::Paths;
use crate::protocol::{Action, Report, Request, Response};

/// How often the table is refreshed.
const LIST_EVERY: Duration = Duration::from_millis(500);

/// Handle on the lister thread: nudge it to refresh now.
pub struct Lister {
    nudge: Sender<()>,
}

impl Lister {
    /// Starts listing with `client` (already connected: the TUI starts the daemon if needed
    /// before it takes over the terminal).
    pub fn spawn(paths: Paths, client: Client, tx: Sender<Msg>) -> io::Result<Lister> {
        let (nudge, nudged) = mpsc::channel();
        thread::Builder::new()
            .name("tui-list".into())
            .spawn(move || list_loop(&paths, client, &nudged, &tx))?;
        Ok(Lister { nudge })
    }

    /// Asks for a refresh now (after a command), instead of at the next tick.
    pub fn refresh(&self) {
        let _ = self.nudge.send(());
    }
}

fn list_loop(paths: &Paths, client: Client, nudged: &Receiver<()>, tx: &Sender<Msg>) {
    let mut client = Some(client);
    loop {
        // Once connected, reuse the connection; after an error, reconnect without starting a
        // daemon: one that was killed (`pm3 kill`) stays down until the user says otherwise.
        if client.is_none() {
            client = Client::connect(paths).ok().flatten();
        }
        let answer = match client.as_mut() {
            Some(c) => match c.request(Request::List) {
                Ok(Response::List(rows)) => Ok(rows),
                Ok(_) => Err(unexpected()),
                Err(e) => Err(e.to_string()),
            },
            None => Err("the daemon is not running (`pm3 start` starts it)".to_string()),
        };
        if answer.is_err() {
            client = None;
        }
        if tx.send(Msg::List(answer)).is_err() {
            return;
        }
        match nudged.recv_timeout(LIST_EVERY) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Runs `cmd` on a new thread; its outcome comes back as [`Msg::Done`].
pub fn send(paths: &Paths, cmd: Command, tx: Sender<Msg>) -> io::Result<()> {
    let paths = paths.clone();
    thread::Builder::new().name("tui-command".into()).spawn(move || {
        let result = run(&paths, &cmd);
        let _ = tx.send(Msg::Done { cmd, result });
    })?;
    Ok(())
}

fn run(paths: &Paths, cmd: &Command) -> Result<String, String> {
    let mut client = Client::connect_or_start(paths).map_err(|e| e.to_string())?;
    match client.request(cmd.verb.request(vec![cmd.target.clone()])) {
        Ok(Response::Done(report)) => summary(&report),
        Ok(_) => Err(unexpected()),
        Err(ClientError::Daemon(e)) => Err(e.message),
        Err(e) => Err(e.to_string()),
    }
}

/// One line for the footer: what happened to each process, the failures only when any failed.
pub fn summary(report: &Report) -> Result<String, String> {
    let text = output::report(report);
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return Ok("nothing to do".into());
    }
    let failed: Vec<&str> = report
        .processes
        .iter()
        .zip(&lines)
        .filter(|(o, _)| o.action == Action::Failed)
        .map(|(_, l)| *l)
        .collect();
    if failed.is_empty() { Ok(lines.join(", ")) } else { Err(failed.join(", ")) }
}

fn unexpected() -> String {
    "unexpected answer from the daemon (is it another pm3 version? try `pm3 kill`)".into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Outcome, Status};

    fn outcome(name: &str, action: Action, detail: Option<&str>) -> Outcome {
        Outcome {
            name: name.into(),
            action,
            status: Status::Stopped,
            pid: None,
            detail: detail.map(Into::into),
        }
    }

    #[test]
    fn summaries_are_one_line() {
        let ok = Report {
            processes: vec![
                outcome("web:0", Action::Stopped, None),
                outcome("web:1", Action::AlreadyStopped, None),
            ],
        };
        assert_eq!(summary(&ok), Ok("stopped web:0, web:1 already stopped".into()));
        let bad = Report {
            processes: vec![
                outcome("a", Action::Started, None),
                outcome("b", Action::Failed, Some("no such file")),
            ],
        };
        assert_eq!(summary(&bad), Err("failed b: no such file".into()));
        assert_eq!(summary(&Report::default()), Ok("nothing to do".into()));
    }
}
