//! A log file that rotates itself: `name.log` past `max_size` becomes `name.log.1` (older ones
//! shift to `.2` …, the oldest beyond `max_files` is removed). The cut is made at a line
//! boundary, so no line is lost or split between two files. With `log_compress`, rotated files
//! become `name.log.1.gz` … in the background ([`super::compress`]); a shift moves plain and
//! compressed files alike, so a config that toggles compression keeps every file in its place.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How far below `max_size` plain splicing stops: from there the pipe is peeked at before each
/// splice, so the cut can be made at a line boundary.
pub const SPLICE_MARGIN: u64 = 64 * 1024;

/// Rotation limits of one log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub max_size: u64,
    /// Rotated files kept (0: the log is simply started afresh).
    pub max_files: u32,
    /// Whether rotated files are gzipped (`log_compress`).
    pub compress: bool,
}

/// An append-only, self-rotating log file.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    /// `None` until the first byte: a process that never writes to a stream gets no file for it,
    /// and a start of 1,000 instances does not create 2,000 inodes up front.
    file: Option<File>,
    /// The open file's inode (what a note of a chunk in flight names, `super::positions`).
    inode: u64,
    /// Bytes in the file as far as we know (others may append or truncate: re-read before
    /// deciding to rotate).
    size: u64,
    rotation: Rotation,
}

impl LogFile {
    /// Opens `path` for appending if it exists. If it does not, it is created off the daemon's
    /// thread ([`super::capture::create_soon`]), or by the first byte if that comes first. A directory that
    /// exists but cannot take a new file is an error now, not at the first write.
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<LogFile> {
        // Writes go at `size` explicitly (re-read before each batch), so a file emptied by
        // `pm3 flush` or appended to by a hook is picked up where it really ends.
        let (file, inode, size) = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => {
                let file = park(file);
                let meta = file.metadata()?;
                (Some(file), meta.ino(), meta.len())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A missing directory is made again by the first write.
                let dir = path.parent().unwrap_or(Path::new("/"));
                match rustix::fs::access(dir, rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK) {
                    Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                    Err(e) => return Err(e.into()),
                }
                super::capture::create_soon(path);
                (None, 0, 0)
            }
            Err(e) => return Err(e),
        };
        super::compress::opened(path, rotation);
        Ok(LogFile { path: path.to_path_buf(), file, inode, size, rotation })
    }

    /// The open file, created (with its directory, if that was removed under a running daemon)
    /// on first use.
    fn file(&mut self) -> io::Result<&File> {
        if self.file.is_none() {
            let file = park(create(&self.path)?);
            let meta = file.metadata()?;
            (self.inode, self.size) = (meta.ino(), meta.len());
            self.file = Some(file);
        }
        self.file.as_ref().ok_or_else(|| io::Error::other("log file not open"))
    }

    /// Re-reads the size: another writer (a hook) may have appended, or `pm3 flush` emptied
    /// the file, since our last write.
    pub fn refresh(&mut self) {
        if let Some(meta) = self.file.as_ref().and_then(|f| f.metadata().ok()) {
            self.size = meta.len();
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the file as far as this writer knows.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The inode of the file (created now if it was not yet).
    pub fn inode(&mut self) -> io::Result<u64> {
        self.file()?;
        Ok(self.inode)
    }

    /// The inode of the file, when it exists.
    pub fn existing_inode(&self) -> Option<u64> {
        self.file.as_ref().map(|_| self.inode)
    }

    /// Bytes `offset..offset + buf.len()` of the file, or `false` when they cannot all be read.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> bool {
        use std::os::unix::fs::FileExt;
        self.file.as_ref().is_some_and(|f| f.read_exact_at(buf, offset).is_ok())
    }

    /// Moves up to `len` bytes from `pipe` to the end of the file inside the kernel: the bytes
    /// leave the pipe only as they land in the file, so no byte is ever held by the daemon alone
    /// (a SIGKILL at any moment leaves each one either in the pipe, for the next daemon, or in
    /// the file). Stops [`SPLICE_MARGIN`] short of `max_size`: near the cut, see
    /// [`LogFile::cut_plan`]. `Ok(None)` when the file is that close to its limit; `Ok(Some(0))`
    /// is end of file.
    pub fn splice_from(&mut self, pipe: impl AsFd, len: usize) -> rustix::io::Result<Option<usize>> {
        let room = self.room().saturating_sub(SPLICE_MARGIN);
        let len = len.min(usize::try_from(room).unwrap_or(usize::MAX));
        if len == 0 {
            return Ok(None);
        }
        self.splice(pipe, len).map(Some)
    }

    /// Moves exactly `len` bytes, which `pipe` holds, to the end of the file, whatever the limit.
    pub fn splice_exact(&mut self, pipe: impl AsFd, mut len: usize) -> rustix::io::Result<()> {
        let pipe = pipe.as_fd();
        while len > 0 {
            match self.splice(pipe, len)? {
                0 => break,
                n => len -= n.min(len),
            }
        }
        Ok(())
    }

    fn splice(&mut self, pipe: impl AsFd, len: usize) -> rustix::io::Result<usize> {
        let flags = rustix::pipe::SpliceFlags::NONBLOCK;
        let to_errno = |e: io::Error| rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO);
        self.file().map_err(to_errno)?;
        let Some(file) = &self.file else { return Err(rustix::io::Errno::IO) };
        let mut off = self.size;
        let n = rustix::pipe::splice(pipe, None, file, Some(&mut off), len, flags)?;
        self.size = off;
        Ok(n)
    }

    /// Bytes that still fit before `max_size`.
    pub fn room(&self) -> u64 {
        self.rotation.max_size.saturating_sub(self.size)
    }

    /// Near the cut, given `seen`, the first bytes waiting in the pipe (peeked, not taken): how
    /// many of them go into this file, and whether the file is then rotated. The lines that fit
    /// go in and the file is cut at the last line boundary within `max_size`, as
    /// [`LogFile::write`] cuts; unlike it, an unfinished last line is left in the pipe (until
    /// its end arrives, or `finish` says to take it anyway), so that a line is not split by a cut
    /// because its end came later.
    pub fn cut_plan(&self, seen: &[u8], finish: bool) -> (usize, bool) {
        let room = usize::try_from(self.room()).unwrap_or(usize::MAX);
        if seen.len() <= room {
            if finish || seen.last().is_none_or(|&b| b == b'\n') {
                return (seen.len(), false);
            }
            return (memchr::memrchr(b'\n', seen).map_or(0, |nl| nl + 1), false);
        }
        if let Some(nl) = memchr::memrchr(b'\n', &seen[..room]) {
            (nl + 1, true)
        } else if self.size > 0 && self.ends_mid_line() {
            // The file ends with the start of a line that an earlier take let in (its end had
            // not arrived): that line is finished here before the cut, never split by it.
            memchr::memchr(b'\n', seen).map_or((seen.len(), false), |nl| (nl + 1, true))
        } else if self.size > 0 {
            (0, true)
        } else {
            // An empty file and a line longer than the limit: keep that line whole.
            memchr::memchr(b'\n', seen).map_or((seen.len(), false), |nl| (nl + 1, true))
        }
    }

    /// Appends `bytes`, rotating first at the last line boundary that keeps the file within
    /// `max_size`. A single line longer than `max_size` is kept whole in a file of its own.
    pub fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.size + bytes.len() as u64 <= self.rotation.max_size {
                return self.append(bytes);
            }
            // Someone else (`pm3 flush`, a hook) may have changed the file: look before cutting.
            self.size = self.file()?.metadata()?.len();
            if self.size + bytes.len() as u64 <= self.rotation.max_size {
                return self.append(bytes);
            }
            let room = self.rotation.max_size.saturating_sub(self.size) as usize;
            let fits = &bytes[..room.min(bytes.len())];
            if let Some(nl) = fits.iter().rposition(|&b| b == b'\n') {
                self.append(&bytes[..=nl])?;
                bytes = &bytes[nl + 1..];
                self.rotate()?;
            } else if self.size > 0 && !self.ends_mid_line() {
                self.rotate()?;
            } else {
                // An empty file and a line longer than the limit: keep that line whole. Or the
                // file ends with the start of a line an earlier write brought: finish that line
                // before the cut, so that the cut never splits it.
                let end = bytes.iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| i + 1);
                self.append(&bytes[..end])?;
                bytes = &bytes[end..];
                if !bytes.is_empty() {
                    self.rotate()?;
                }
            }
        }
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let size = self.size;
        let file = self.file()?;
        if let Err(e) = file.write_all_at(bytes, size) {
            // A write cut short (a full disk) leaves no half chunk behind: the file ends where
            // the last whole write ended.
            let _ = file.set_len(size);
            return Err(e);
        }
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Removes an unfinished last line (one a failed write cut short), so the file ends at a
    /// line boundary; returns how many bytes went. Looks back at most 64 KiB: a longer line
    /// is left as it is.
    pub fn cut_partial_line(&mut self) -> u64 {
        use std::os::unix::fs::FileExt;
        self.refresh();
        let Some(file) = &self.file else { return 0 };
        let back = self.size.min(64 * 1024);
        let mut tail = vec![0u8; back as usize];
        if back == 0 || file.read_exact_at(&mut tail, self.size - back).is_err() {
            return 0;
        }
        let keep = match tail.iter().rposition(|&b| b == b'\n') {
            Some(i) => self.size - back + i as u64 + 1,
            None if back == self.size => 0,
            None => return 0,
        };
        let cut = self.size - keep;
        if cut > 0 && file.set_len(keep).is_ok() {
            self.size = keep;
            return cut;
        }
        0
    }

    /// True when the file's last byte is not a newline (a line was cut by a failed write).
    pub fn ends_mid_line(&self) -> bool {
        use std::os::unix::fs::FileExt;
        let mut last = [0u8; 1];
        let Some(file) = &self.file else { return false };
        self.size > 0 && file.read_at(&mut last, self.size - 1).is_ok_and(|n| n == 1 && last[0] != b'\n')
    }

    /// `x.log.{n-1}` → `x.log.{n}` … (each as plain or `.gz`, whichever it is), `x.log` →
    /// `x.log.1`, then a fresh `x.log`; with `compress`, the file that became `x.log.1` is handed
    /// to the compressor, which works on its own thread.
    pub fn rotate(&mut self) -> io::Result<()> {
        let n = self.rotation.max_files;
        if self.file.is_none() {
            return Ok(());
        }
        if n == 0 {
            self.file()?.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        // The oldest kept file goes, and any beyond it (left by a larger `log_max_files`).
        remove_from(&self.path, n, super::compress::large(self.rotation.max_size));
        for k in (1..n).rev() {
            rename_if_there(&rotated(&self.path, k), &rotated(&self.path, k + 1))?;
            rename_if_there(&rotated_gz(&self.path, k), &rotated_gz(&self.path, k + 1))?;
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        let fresh = park(create(&self.path)?);
        self.inode = fresh.metadata()?.ino();
        let old = self.file.replace(fresh);
        self.size = 0;
        if let (true, Some(old)) = (self.rotation.compress, old) {
            super::compress::hand_over(&self.path, old);
        }
        Ok(())
    }
}

/// `file` moved up among the daemon's long-lived descriptors ([`crate::process::park`]).
fn park(file: File) -> File {
    File::from(crate::process::park(file.into()))
}

/// Opens `path` for appending, creating it (and its directory, private) if needed.
fn create(path: &Path) -> io::Result<File> {
    let open = || OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path);
    match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
            }
            open()
        }
        other => other,
    }
}

/// Creates the log file `path` if it is missing; a failure is logged (its first byte will try
/// again and report a gap).
pub(super) fn create_or_warn(path: &Path) {
    if let Err(e) = create(path) {
        tracing::warn!(log = %path.display(), "cannot create the log file: {e}");
    }
}

/// Renames `from` to `to`; nothing to do when there is no `from`.
fn rename_if_there(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes the rotated files `k` (plain and `.gz`) from `first` on, as long as there are some.
/// A large one is freed off the daemon's thread ([`super::compress::remove`]).
fn remove_from(path: &Path, first: u32, large: bool) {
    let gone = |p: PathBuf| super::compress::remove(&p, large).is_ok();
    let mut k = first.max(1);
    while k <= crate::spec::MAX_LOG_FILES + 1 {
        let plain = gone(rotated(path, k));
        let gz = gone(rotated_gz(path, k));
        if !plain && !gz {
            break;
        }
        k += 1;
    }
}

/// Removes every rotated file of `path`, plain or compressed (`pm3 flush`), and a compression in
/// progress (its job finds its file gone and ends). `max_files` is the current limit: files up
/// to it go even after a gap, and any beyond it that a larger limit left.
pub fn remove_rotated(path: &Path, max_files: u32) {
    for k in 1..=max_files {
        let _ = super::compress::remove(&rotated(path, k), true);
        let _ = super::compress::remove(&rotated_gz(path, k), true);
    }
    remove_from(path, max_files + 1, true);
    let _ = std::fs::remove_file(super::compress::tmp_path(path));
}

/// `x.log.k`.
pub fn rotated(path: &Path, k: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{k}"));
    PathBuf::from(s)
}

/// `x.log.k.gz`.
pub fn rotated_gz(path: &Path, k: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{k}.gz"));
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_line_boundaries_and_keeps_max_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a-out.log");
        let mut f =
            LogFile::open(&p, Rotation { max_size: 100, max_files: 2, compress: false }).expect("open");
        let mut all = Vec::new();
        for i in 0..100 {
            let line = format!("line {i:04}\n");
            all.extend_from_slice(line.as_bytes());
        }
        // Written in uneven chunks, as reads from a pipe come.
        for chunk in all.chunks(37) {
            f.write(chunk).expect("write");
        }
        let read = |q: &Path| std::fs::read_to_string(q).unwrap_or_default();
        let (cur, one, two) = (read(&p), read(&rotated(&p, 1)), read(&rotated(&p, 2)));
        assert!(!rotated(&p, 3).exists());
        for text in [&cur, &one, &two] {
            assert!(text.len() <= 100, "{} bytes", text.len());
            assert!(text.ends_with('\n') || text.is_empty(), "no split line: {text:?}");
        }
        // The kept files hold the newest lines, contiguous.
        let kept = format!("{two}{one}{cur}");
        let nums: Vec<u32> = kept.lines().map(|l| l[5..].parse().expect("number")).collect();
        assert_eq!(*nums.last().expect("lines"), 99);
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "contiguous: {nums:?}");
    }

    #[test]
    fn a_shift_moves_plain_and_compressed_files_alike_and_drops_what_is_beyond_max_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("m-out.log");
        // Left by a config that compressed, then did not, and kept 5 files, now 3.
        std::fs::write(rotated(&p, 1), "r1").expect("write");
        std::fs::write(rotated_gz(&p, 2), "r2").expect("write");
        std::fs::write(rotated(&p, 3), "r3").expect("write");
        std::fs::write(rotated_gz(&p, 4), "r4").expect("write");
        std::fs::write(rotated(&p, 5), "r5").expect("write");
        let mut f =
            LogFile::open(&p, Rotation { max_size: 1 << 20, max_files: 3, compress: false }).expect("open");
        f.write(b"current\n").expect("write");
        f.rotate().expect("rotate");
        let read = |q: PathBuf| std::fs::read_to_string(q).ok();
        assert_eq!(read(p.clone()).as_deref(), Some(""));
        assert_eq!(read(rotated(&p, 1)).as_deref(), Some("current\n"));
        assert_eq!(read(rotated(&p, 2)).as_deref(), Some("r1"));
        assert_eq!(read(rotated_gz(&p, 3)).as_deref(), Some("r2"), ".2.gz became .3.gz");
        for k in 3..=6 {
            assert!(!rotated(&p, k).exists(), ".{k} is gone");
        }
        for k in 4..=6 {
            assert!(!rotated_gz(&p, k).exists(), ".{k}.gz is gone");
        }

        // `flush` removes every rotated file, plain or not, those beyond `max_files` too, and a
        // compression's temporary file.
        std::fs::write(rotated_gz(&p, 4), "beyond").expect("write");
        std::fs::write(super::super::compress::tmp_path(&p), "partial").expect("write");
        remove_rotated(&p, 3);
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read_dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        assert_eq!(left, ["m-out.log"], "only the current file stays");
    }

    #[test]
    fn splice_moves_pipe_bytes_into_the_file_and_stops_short_of_the_rotation_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (r, w) = rustix::pipe::pipe().expect("pipe");
        rustix::io::write(&w, b"one\ntwo\n").expect("write");
        let p = dir.path().join("s.log");
        let mut f =
            LogFile::open(&p, Rotation { max_size: 1 << 20, max_files: 1, compress: false }).expect("open");
        assert_eq!(f.splice_from(&r, 1 << 20), Ok(Some(8)));
        assert_eq!(f.splice_from(&r, 1 << 20), Err(rustix::io::Errno::AGAIN), "the pipe is empty");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "one\ntwo\n");

        // Within SPLICE_MARGIN of max_size the bytes are left for `write`, which cuts at lines.
        let q = dir.path().join("t.log");
        let mut g =
            LogFile::open(&q, Rotation { max_size: SPLICE_MARGIN + 4, max_files: 1, compress: false })
                .expect("open");
        rustix::io::write(&w, b"three\nfour\n").expect("write");
        assert_eq!(g.splice_from(&r, 1 << 20), Ok(Some(4)));
        assert_eq!(g.splice_from(&r, 1 << 20), Ok(None));
        let mut rest = [0u8; 16];
        let n = rustix::io::read(&r, &mut rest).expect("read");
        assert_eq!(&rest[..n], b"e\nfour\n", "what was not spliced is still in the pipe");
        drop(w);
        assert_eq!(f.splice_from(&r, 1 << 20), Ok(Some(0)), "end of file once every writer is gone");
    }

    #[test]
    fn the_cut_plan_takes_the_lines_that_fit_like_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("c.log");
        let mut f =
            LogFile::open(&p, Rotation { max_size: 10, max_files: 1, compress: false }).expect("open");
        assert_eq!(f.cut_plan(b"", false), (0, false));
        assert_eq!(f.cut_plan(b"abc\n", false), (4, false), "all of it fits");
        f.write(b"abcd\n").expect("write");
        // 5 bytes of room: the lines within them, then a rotation.
        assert_eq!(f.cut_plan(b"ef\ng\nij\n", false), (5, true));
        assert_eq!(f.cut_plan(b"ef\ngh\nij\n", false), (3, true));
        assert_eq!(f.cut_plan(b"efghijk\n", false), (0, true), "no line fits: rotate first");
        // An unfinished line waits for its end (it may not fit), unless no one can finish it.
        assert_eq!(f.cut_plan(b"e\nfgh", false), (2, false));
        assert_eq!(f.cut_plan(b"efgh", false), (0, false));
        assert_eq!(f.cut_plan(b"efgh", true), (4, false));
        f.rotate().expect("rotate");
        assert_eq!(f.cut_plan(b"a line longer than ten\nnext\n", false), (23, true), "kept whole");
        assert_eq!(f.cut_plan(b"a line longer than ten", false), (22, false));
    }

    /// A file that ends with the start of a line (taken in before its end arrived) and has
    /// less room left than the rest of that line: the line is finished, then the file is cut.
    #[test]
    fn a_line_begun_before_the_cut_is_finished_before_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("m.log");
        let mut f =
            LogFile::open(&p, Rotation { max_size: 10, max_files: 2, compress: false }).expect("open");
        f.write(b"abcdefg").expect("write");
        assert_eq!(f.cut_plan(b"hijk\nl\n", false), (5, true), "the splice plan finishes the line");
        assert_eq!(f.cut_plan(b"hijk", false), (4, false), "no end yet: the start goes on growing");
        f.write(b"hijk\nl\n").expect("write");
        assert_eq!(std::fs::read_to_string(rotated(&p, 1)).expect("read"), "abcdefghijk\n");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "l\n");
    }

    #[test]
    fn a_line_longer_than_the_limit_stays_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("b.log");
        let mut f =
            LogFile::open(&p, Rotation { max_size: 10, max_files: 1, compress: false }).expect("open");
        f.write(b"short\n").expect("write");
        f.write(b"a very long line indeed\nnext\n").expect("write");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "next\n");
        assert_eq!(std::fs::read_to_string(rotated(&p, 1)).expect("read"), "a very long line indeed\n");
    }
}
