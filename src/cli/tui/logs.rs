//! The log pane's source: a thread that reads the selected process's log files itself (as
//! `pm3 log` does, so the daemon is not involved past one `Resolve`), first their last lines,
//! then whatever is appended every 200 ms, surviving flushes and rotation. Lines are cleaned of
//! terminal escapes before they reach the screen.

use std::io;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::Duration;

use super::app::{LOG_LINES, LogLine, Msg, Stream};
use crate::client::Client;
use crate::logs::tail::{Follower, last_lines_rotated};
use crate::paths::Paths;
use crate::protocol::{Request, Response};

/// How often the files are checked for new lines.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// Handle on the log thread: tell it whose logs to follow.
pub struct Logs {
    target: Sender<Option<String>>,
}

impl Logs {
    pub fn spawn(paths: Paths, tx: Sender<Msg>) -> io::Result<Logs> {
        let (target, targets) = mpsc::channel();
        thread::Builder::new().name("tui-logs".into()).spawn(move || follow_loop(&paths, &targets, &tx))?;
        Ok(Logs { target })
    }

    /// Follows `name` from now on (`None`: nothing).
    pub fn follow(&self, name: Option<String>) {
        let _ = self.target.send(name);
    }
}

/// The process being followed and its two files.
struct Followed {
    name: String,
    files: Vec<(Stream, Follower)>,
}

fn follow_loop(paths: &Paths, targets: &Receiver<Option<String>>, tx: &Sender<Msg>) {
    let mut current: Option<Followed> = None;
    loop {
        match targets.recv_timeout(POLL_EVERY) {
            Ok(mut target) => {
                // Scrolling through the table sends many; only the last one matters.
                while let Ok(t) = targets.try_recv() {
                    target = t;
                }
                current = None;
                if let Some(name) = target {
                    let (followed, lines) = open(paths, name);
                    if tx.send(Msg::Logs { name: followed.name.clone(), lines, reset: true }).is_err() {
                        return;
                    }
                    current = Some(followed);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if let Some(f) = current.as_mut() {
            let mut lines = Vec::new();
            for (stream, follower) in &mut f.files {
                lines.extend(follower.poll().iter().map(|l| LogLine { stream: *stream, text: clean(l) }));
            }
            if !lines.is_empty() && tx.send(Msg::Logs { name: f.name.clone(), lines, reset: false }).is_err()
            {
                return;
            }
        }
    }
}

/// Finds the files of `name` and reads their last lines (stdout's, then stderr's: the files
/// carry no timestamps to interleave them by); new lines then come in the order read.
fn open(paths: &Paths, name: String) -> (Followed, Vec<LogLine>) {
    let (out, err) = log_paths(paths, &name);
    let mut lines = Vec::new();
    let mut files = Vec::new();
    for (stream, path) in [(Stream::Out, out), (Stream::Err, err)] {
        match last_lines_rotated(&path, LOG_LINES) {
            Ok(got) => lines.extend(got.iter().map(|l| LogLine { stream, text: clean(l) })),
            Err(e) => lines.push(LogLine {
                stream: Stream::Err,
                text: format!("(cannot read {}: {e})", path.display()),
            }),
        }
        files.push((stream, Follower::at_end(&path)));
    }
    (Followed { name, files }, lines)
}

/// The log files of `name`, as the daemon reports them; the usual place if it cannot say.
fn log_paths(paths: &Paths, name: &str) -> (PathBuf, PathBuf) {
    let resolved = Client::connect(paths)
        .ok()
        .flatten()
        .and_then(|mut c| c.request(Request::Resolve { targets: vec![name.to_string()] }).ok());
    if let Some(Response::Names(names)) = resolved
        && let Some(n) = names.into_iter().find(|n| n.name == name)
    {
        return (n.out_log, n.err_log);
    }
    (paths.out_log(name), paths.err_log(name))
}

/// A log line made safe to draw: escape sequences (colors, cursor moves) removed, tabs expanded,
/// other control characters dropped, invalid UTF-8 replaced.
pub fn clean(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI: parameters and intermediates, then one final byte in @..~.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC (titles, links): up to BEL or ST.
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\t' => out.push_str("    "),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_strips_escapes_and_controls() {
        assert_eq!(clean(b"\x1b[1;31merror\x1b[0m: boom"), "error: boom");
        assert_eq!(clean(b"\x1b]0;title\x07a\tb\r"), "a    b");
        assert_eq!(clean(b"\x1b]8;;http://x\x1b\\link"), "link");
        assert_eq!(clean(b"caf\xc3\xa9 \xff"), "café \u{fffd}");
    }
}
