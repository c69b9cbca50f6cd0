//! Reading log files back for `pm3 log`: the last N lines, read backwards from the end so a huge
//! log costs no more than the lines shown (continuing into the rotated files, plain or gzipped,
//! when the current one holds fewer), and following a file as it grows, is emptied (`flush`) or
//! replaced (rotation).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::file::{rotated, rotated_gz};

/// The last `n` lines of `path` (without their newlines); a missing file has none.
pub fn last_lines(path: &Path, n: usize) -> io::Result<Vec<Vec<u8>>> {
    match File::open(path) {
        Ok(file) => tail_of(file, n),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The last `n` lines of the log `path` and, where it holds fewer, of its rotated files before
/// it, newest first: `path.1` or `path.1.gz`, then `.2` … (a plain file is read where both are
/// there, as for a moment after a compression). A gzipped file cannot be read backwards: it is
/// decompressed whole, at most `log_max_size` of it, to keep its last lines.
pub fn last_lines_rotated(path: &Path, n: usize) -> io::Result<Vec<Vec<u8>>> {
    let mut lines = last_lines(path, n)?;
    let mut older = Vec::new();
    for k in 1..=crate::spec::MAX_LOG_FILES + 1 {
        let want = n - lines.len() - older.len();
        if want == 0 {
            break;
        }
        let got = match File::open(rotated(path, k)) {
            Ok(file) => tail_of(file, want)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let gz = rotated_gz(path, k);
                match File::open(&gz) {
                    Ok(file) => tail_of_gz(file, want)
                        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", gz.display())))?,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        // Older files' lines go before: collected newest file first, reversed at the end.
        older.extend(got.into_iter().rev());
    }
    older.reverse();
    older.append(&mut lines);
    Ok(older)
}

/// The last `n` lines of a gzipped file, read through once.
fn tail_of_gz(file: File, n: usize) -> io::Result<Vec<Vec<u8>>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut reader =
        BufReader::with_capacity(64 * 1024, flate2::read::MultiGzDecoder::new(BufReader::new(file)));
    let mut ring: VecDeque<Vec<u8>> = VecDeque::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        // Past `n` lines the oldest one goes, and its allocation takes the next line.
        let spare = if ring.len() == n { ring.pop_front().unwrap_or_default() } else { Vec::new() };
        ring.push_back(std::mem::replace(&mut line, spare));
    }
    Ok(ring.into())
}

/// The last `n` lines of an open file, read backwards from its end.
fn tail_of(mut file: File, n: usize) -> io::Result<Vec<Vec<u8>>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let len = file.metadata()?.len();
    let mut pos = len;
    let mut tail: Vec<u8> = Vec::new();
    const CHUNK: u64 = 64 * 1024;
    // Read backwards until the tail holds more than n newlines (or the file is exhausted).
    while pos > 0 {
        let start = pos.saturating_sub(CHUNK);
        let mut chunk = vec![0; (pos - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        pos = start;
        let body = tail.strip_suffix(b"\n").unwrap_or(&tail);
        if body.iter().filter(|&&b| b == b'\n').count() >= n {
            break;
        }
    }
    let body = tail.strip_suffix(b"\n").unwrap_or(&tail);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    let skip = lines.len().saturating_sub(n);
    Ok(lines[skip..].iter().map(|l| l.to_vec()).collect())
}

/// Follows one file from its current end, across truncation and replacement.
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    inode: u64,
    pos: u64,
    /// Bytes of an unfinished last line, held back until its newline arrives.
    partial: Vec<u8>,
    /// The last bytes read before `pos`: if the file no longer holds them there, it was emptied
    /// and written again since (a `flush` followed by more output than before).
    seen: Vec<u8>,
}

/// How many bytes before the read position are compared to detect a truncation.
const SIGNATURE: u64 = 32;

impl Follower {
    /// Starts at the current end of `path` (which may not exist yet).
    pub fn at_end(path: &Path) -> Follower {
        let mut f = Follower {
            path: path.to_path_buf(),
            file: None,
            inode: 0,
            pos: 0,
            partial: Vec::new(),
            seen: Vec::new(),
        };
        if let Ok(file) = File::open(path)
            && let Ok(meta) = file.metadata()
        {
            f.inode = meta.ino();
            f.pos = meta.len();
            f.seen = read_at(&file, f.pos.saturating_sub(SIGNATURE), f.pos).unwrap_or_default();
            f.file = Some(file);
        }
        f
    }

    /// Complete lines written since the last call.
    pub fn poll(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        // Replaced (rotated) or created since: finish the old file, then read the new one from 0.
        if let Ok(meta) = std::fs::metadata(&self.path)
            && (self.file.is_none() || meta.ino() != self.inode)
        {
            self.read_new(&mut out);
            if let Ok(file) = File::open(&self.path) {
                self.file = Some(file);
                self.inode = meta.ino();
                self.pos = 0;
                self.seen.clear();
            }
        }
        self.read_new(&mut out);
        out
    }

    fn read_new(&mut self, out: &mut Vec<Vec<u8>>) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let Ok(len) = file.metadata().map(|m| m.len()) else {
            return;
        };
        let start = self.pos - self.seen.len() as u64;
        if len < self.pos || read_at(file, start, self.pos).is_none_or(|b| b != self.seen) {
            // Emptied by `pm3 flush`: start over.
            self.pos = 0;
            self.partial.clear();
            self.seen.clear();
        }
        if len == self.pos {
            return;
        }
        let mut buf = Vec::new();
        if file.seek(SeekFrom::Start(self.pos)).is_err()
            || file.take(len - self.pos).read_to_end(&mut buf).is_err()
        {
            return;
        }
        self.pos += buf.len() as u64;
        let keep = buf.len().min(SIGNATURE as usize);
        self.seen.extend_from_slice(&buf[buf.len() - keep..]);
        let excess = self.seen.len().saturating_sub(SIGNATURE as usize);
        self.seen.drain(..excess);
        self.partial.extend_from_slice(&buf);
        if let Some(last_nl) = self.partial.iter().rposition(|&b| b == b'\n') {
            let rest = self.partial.split_off(last_nl + 1);
            let complete = std::mem::replace(&mut self.partial, rest);
            out.extend(complete[..complete.len() - 1].split(|&b| b == b'\n').map(<[u8]>::to_vec));
        }
    }
}

/// Bytes `start..end` of `file`, or `None` if they cannot all be read.
fn read_at(file: &File, start: u64, end: u64) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0; (end - start) as usize];
    file.read_exact_at(&mut buf, start).ok()?;
    Some(buf)
}

impl Follower {
    /// Starts at byte `pos` of `path` (its end if shorter): a log found after following began
    /// is read from where it stood then, so nothing written meanwhile is missed.
    pub fn starting_at(path: &Path, pos: u64) -> Follower {
        let mut f = Follower::at_end(path);
        if f.file.is_some() && pos < f.pos {
            f.pos = pos;
            f.seen = f
                .file
                .as_ref()
                .and_then(|file| read_at(file, pos.saturating_sub(SIGNATURE), pos))
                .unwrap_or_default();
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn last_lines_reads_from_the_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.log");
        let mut f = File::create(&p).expect("create");
        for i in 0..100_000 {
            writeln!(f, "line {i}").expect("write");
        }
        let got = last_lines(&p, 3).expect("read");
        assert_eq!(got, vec![b"line 99997".to_vec(), b"line 99998".to_vec(), b"line 99999".to_vec()]);
        assert_eq!(last_lines(&p, 0).expect("read").len(), 0);
        assert_eq!(last_lines(&dir.path().join("missing"), 5).expect("read").len(), 0);
        write!(f, "no newline").expect("write");
        assert_eq!(last_lines(&p, 1).expect("read"), vec![b"no newline".to_vec()]);
    }

    #[test]
    fn last_lines_reach_into_plain_and_gzipped_rotations_when_the_current_file_is_short() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.log");
        let gz = |text: &str| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(text.as_bytes()).expect("gzip");
            e.finish().expect("gzip")
        };
        let lines = |from: u32, to: u32| (from..=to).map(|i| format!("{i}\n")).collect::<String>();
        std::fs::write(rotated_gz(&p, 3), gz(&lines(1, 100))).expect("write");
        std::fs::write(rotated_gz(&p, 2), gz(&lines(101, 200))).expect("write");
        std::fs::write(rotated(&p, 1), lines(201, 300)).expect("write");
        std::fs::write(&p, lines(301, 305)).expect("write");
        let got = |n| -> Vec<u32> {
            last_lines_rotated(&p, n)
                .expect("read")
                .iter()
                .map(|l| String::from_utf8_lossy(l).parse().expect("number"))
                .collect()
        };
        assert_eq!(got(3), [303, 304, 305], "the current file is enough");
        assert_eq!(got(8), [298, 299, 300, 301, 302, 303, 304, 305], "into .1");
        assert_eq!(got(110), (196..=305).collect::<Vec<_>>(), "into .2.gz");
        assert_eq!(got(1000), (1..=305).collect::<Vec<_>>(), "all there is");
        assert!(got(0).is_empty());
        // The current file alone for `last_lines` (what the daemon reads for `info`).
        assert_eq!(last_lines(&p, 10).expect("read").len(), 5);
        // A damaged .gz is an error that names it.
        std::fs::write(rotated_gz(&p, 2), b"\x1f\x8b\x08\x00garbage").expect("write");
        let e = last_lines_rotated(&p, 1000).expect_err("damaged");
        assert!(e.to_string().contains("x.log.2.gz"), "{e}");
    }

    #[test]
    fn follower_sees_appends_truncation_and_replacement() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.log");
        std::fs::write(&p, "old\n").expect("write");
        let mut fl = Follower::at_end(&p);
        assert!(fl.poll().is_empty());
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).expect("open");
        write!(f, "a\nb").expect("write");
        assert_eq!(fl.poll(), vec![b"a".to_vec()]);
        writeln!(f).expect("write");
        assert_eq!(fl.poll(), vec![b"b".to_vec()]);
        f.set_len(0).expect("truncate");
        writeln!(f, "after flush").expect("write");
        assert_eq!(fl.poll(), vec![b"after flush".to_vec()]);
        std::fs::rename(&p, dir.path().join("x.log.1")).expect("rename");
        std::fs::write(&p, "rotated\n").expect("write");
        assert_eq!(fl.poll(), vec![b"rotated".to_vec()]);
    }
}
