//! `pm3 log`: the last lines of each log file, then (with `-f`) new lines as they come, from
//! the files themselves, so reading logs never loads the daemon.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;

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
    /// The strftime format its lines start with (`log_date_format`), to merge by time.
    date_format: Option<String>,
}

fn sources_of(names: &[NameInfo], streams: Streams) -> Vec<Source> {
    let mut sources = Vec::new();
    for n in names {
        let mut add = |stream, path: &PathBuf| {
            sources.push(Source {
                name: n.name.clone(),
                stream,
                path: path.clone(),
                date_format: n.log_date_format.clone(),
            })
        };
        if streams.out {
            add("out", &n.out_log);
        }
        if streams.err {
            add("err", &n.err_log);
        }
    }
    sources
}

/// Asks the daemon again which processes exist (for `log -f` with no target); `None` when it
/// cannot be reached.
pub type Discover<'a> = &'a mut dyn FnMut() -> Option<Vec<NameInfo>>;

/// Shows the last `lines` of each log, merged in time order across processes (see
/// [`merge_by_time`]); with `follow`, then streams new lines. With `discover` (no target given),
/// processes that appear while following are followed too, from where their logs stood when
/// following began.
pub fn show(
    names: &[NameInfo],
    lines: usize,
    streams: Streams,
    follow: bool,
    json: bool,
    mut discover: Option<Discover<'_>>,
) -> io::Result<()> {
    let prefixed = names.len() > 1 || discover.is_some();
    let sources = sources_of(names, streams);
    // Where every log of the data directory stood when this began, for logs found later.
    let logs_dir = names.first().and_then(|n| n.out_log.parent().map(PathBuf::from));
    let started: HashMap<PathBuf, u64> = match (&discover, &logs_dir) {
        (Some(_), Some(dir)) => std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| Some((e.path(), e.metadata().ok()?.len())))
            .collect(),
        _ => HashMap::new(),
    };
    let stdout = io::stdout();
    let mut w = stdout.lock();
    let mut tails = Vec::with_capacity(sources.len());
    for (i, s) in sources.iter().enumerate() {
        tails.push((i, last_lines_rotated(&s.path, lines)?));
    }
    for (i, line) in merge_by_time(&sources, tails) {
        print_line(&mut w, &sources[i], &line, prefixed, json)?;
    }
    w.flush().map_err(stdout_error)?;
    if !follow {
        return Ok(());
    }
    let mut known: HashSet<String> = names.iter().map(|n| n.name.clone()).collect();
    let mut followers: Vec<(Source, Follower)> = sources
        .into_iter()
        .map(|s| {
            let f = Follower::at_end(&s.path);
            (s, f)
        })
        .collect();
    let mut next_look = Instant::now() + DISCOVER_EVERY;
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
        if let Some(discover) = discover.as_mut()
            && Instant::now() >= next_look
        {
            next_look = Instant::now() + DISCOVER_EVERY;
            let new: Vec<NameInfo> =
                discover().unwrap_or_default().into_iter().filter(|n| !known.contains(&n.name)).collect();
            for s in sources_of(&new, streams) {
                let from = started.get(&s.path).copied().unwrap_or(0);
                let f = Follower::starting_at(&s.path, from);
                followers.push((s, f));
            }
            known.extend(new.into_iter().map(|n| n.name));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How often `log -f` with no target looks for processes that appeared.
const DISCOVER_EVERY: Duration = Duration::from_secs(1);

/// Orders the last lines of several logs for `pm3 log`. A line stamped with its log's
/// `log_date_format` sorts by that time; a line without a readable stamp takes the time of the
/// line before it in the same log; a log without stamps sorts as a block at the time its
/// process's logs were last written (pm3 cannot know when each of its lines was), stdout first.
/// Ties keep each log's own order.
fn merge_by_time(sources: &[Source], tails: Vec<(usize, Vec<Vec<u8>>)>) -> Vec<(usize, Vec<u8>)> {
    if tails.len() < 2 {
        return tails.into_iter().flat_map(|(i, lines)| lines.into_iter().map(move |l| (i, l))).collect();
    }
    let modified = |path: &PathBuf| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map(|t| chrono::DateTime::<chrono::Local>::from(t).naive_local())
            .unwrap_or_default()
    };
    // A process's unstamped logs sort together, at the time the later of them was written, so
    // that its stdout block always comes before its stderr block.
    let mut written: HashMap<&str, NaiveDateTime> = HashMap::new();
    for (i, _) in &tails {
        let s = &sources[*i];
        let t = modified(&s.path);
        let e = written.entry(s.name.as_str()).or_default();
        *e = (*e).max(t);
    }
    let mut keyed: Vec<(NaiveDateTime, usize, usize, Vec<u8>)> = Vec::new();
    for (i, lines) in tails {
        let written = written.get(sources[i].name.as_str()).copied().unwrap_or_default();
        let mut last = None;
        for (j, line) in lines.into_iter().enumerate() {
            let stamp = sources[i].date_format.as_deref().and_then(|f| stamp_of(&line, f));
            let key = stamp.or(last).unwrap_or(written);
            if stamp.is_some() {
                last = stamp;
            }
            keyed.push((key, i, j, line));
        }
    }
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    keyed.into_iter().map(|(_, i, _, line)| (i, line)).collect()
}

/// The time at the start of `line`, written with the strftime format `fmt`. A format without
/// a date is taken as today.
fn stamp_of(line: &[u8], fmt: &str) -> Option<NaiveDateTime> {
    use chrono::format::{Parsed, StrftimeItems, parse_and_remainder};
    let text = std::str::from_utf8(line.get(..line.len().min(128))?).ok().or_else(|| {
        // A stamp is ASCII: cut at the first byte that is not.
        let end = line.iter().position(|b| !b.is_ascii()).unwrap_or(line.len());
        std::str::from_utf8(&line[..end]).ok()
    })?;
    let mut parsed = Parsed::new();
    parse_and_remainder(&mut parsed, text, StrftimeItems::new(fmt)).ok()?;
    let time = parsed.to_naive_time().ok()?;
    let date = parsed.to_naive_date().unwrap_or_else(|_| chrono::Local::now().date_naive());
    Some(date.and_time(time))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn source(dir: &std::path::Path, name: &str, stream: &'static str, age_s: u64) -> Source {
        let path = dir.join(format!("{name}-{stream}.log"));
        let f = std::fs::File::create(&path).expect("create log");
        f.set_modified(SystemTime::now() - Duration::from_secs(age_s)).expect("set mtime");
        Source { name: name.into(), stream, path, date_format: None }
    }

    fn lines(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|l| l.as_bytes().to_vec()).collect()
    }

    #[test]
    fn a_process_keeps_stdout_before_stderr_whichever_was_written_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        // stderr written last, then stdout written last: the order must not change.
        for (out_age, err_age) in [(20, 10), (10, 20)] {
            let sources = vec![
                source(dir.path(), "a", "out", out_age),
                source(dir.path(), "a", "err", err_age),
                source(dir.path(), "b", "out", 15),
            ];
            let tails = vec![(0, lines(&["o1", "o2"])), (1, lines(&["e1"])), (2, lines(&["b1"]))];
            let merged: Vec<(usize, Vec<u8>)> = merge_by_time(&sources, tails);
            let order: Vec<usize> = merged.iter().map(|(i, _)| *i).collect();
            // `b` was written 15 s ago, before `a`'s latest write (10 s ago).
            assert_eq!(order, vec![2, 0, 0, 1], "out age {out_age}, err age {err_age}");
        }
    }
}
