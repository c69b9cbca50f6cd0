//! `pm3 log`: the last lines of each log file, then (with `-f`) new lines as they come, from
//! the files themselves, so reading logs never loads the daemon.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use crate::logs::tail::{Follower, last_lines_rotated};
use crate::protocol::NameInfo;

/// Which streams to show.
#[derive(Clone, Copy)]
pub struct Streams {
    pub out: bool,
    pub err: bool,
}

/// One file to read, with the prefix its lines get.
struct Source {
    name: String,
    stream: &'static str,
    path: PathBuf,
}

pub fn show(names: &[NameInfo], lines: usize, streams: Streams, follow: bool, json: bool) -> io::Result<()> {
    let prefixed = names.len() > 1;
    let mut sources = Vec::new();
    for n in names {
        if streams.out {
            sources.push(Source { name: n.name.clone(), stream: "out", path: n.out_log.clone() });
        }
        if streams.err {
            sources.push(Source { name: n.name.clone(), stream: "err", path: n.err_log.clone() });
        }
    }
    let stdout = io::stdout();
    let mut w = stdout.lock();
    for s in &sources {
        for line in last_lines_rotated(&s.path, lines)? {
            print_line(&mut w, s, &line, prefixed, json)?;
        }
    }
    w.flush().map_err(stdout_error)?;
    if !follow {
        return Ok(());
    }
    let mut followers: Vec<(Source, Follower)> = sources
        .into_iter()
        .map(|s| {
            let f = Follower::at_end(&s.path);
            (s, f)
        })
        .collect();
    loop {
        let mut any = false;
        for (s, f) in &mut followers {
            for line in f.poll() {
                any = true;
                print_line(&mut w, s, &line, prefixed, json)?;
            }
        }
        if any {
            w.flush().map_err(stdout_error)?;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn print_line(w: &mut impl Write, s: &Source, line: &[u8], prefixed: bool, json: bool) -> io::Result<()> {
    let result = if json {
        let v =
            serde_json::json!({ "name": s.name, "stream": s.stream, "line": String::from_utf8_lossy(line) });
        writeln!(w, "{v}")
    } else if prefixed {
        write!(w, "{} | ", s.name).and_then(|()| w.write_all(line)).and_then(|()| w.write_all(b"\n"))
    } else {
        w.write_all(line).and_then(|()| w.write_all(b"\n"))
    };
    result.map_err(stdout_error)
}

/// A failed write to stdout: a reader that has gone (`pm3 log | head`) ends the command
/// quietly; anything else (`> /dev/full`) is an error that names stdout.
fn stdout_error(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    io::Error::new(e.kind(), format!("cannot write to stdout: {e}"))
}
