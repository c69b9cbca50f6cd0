//! Copying one output stream of a process (its named pipe) into its log file.
//!
//! Reads go into one scratch buffer shared by every stream of the daemon (the daemon runs on a
//! single thread), so an idle process costs no buffer memory. Bytes are written as read: no
//! line splitting, no UTF-8 decoding, so nothing a process writes can stall or kill the copy.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use tokio::io::unix::AsyncFd;

const SCRATCH: usize = 64 * 1024;

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH]);
}

/// An append-only log file.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: File,
}

impl LogFile {
    /// Opens (creating if needed) `path` for appending.
    pub fn open(path: &Path) -> io::Result<LogFile> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(LogFile { path: path.to_path_buf(), file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }
}

/// One stream being copied: the daemon's read end of the pipe and the log it feeds.
pub struct Stream {
    /// `None` when the pipe could not be reopened (an adopted process whose pipe is gone).
    fd: Option<AsyncFd<OwnedFd>>,
    pipe: PathBuf,
    log: LogFile,
    eof: bool,
}

impl Stream {
    pub fn new(fd: OwnedFd, pipe: PathBuf, log: LogFile) -> io::Result<Stream> {
        Ok(Stream { fd: Some(crate::process::register(fd)?), pipe, log, eof: false })
    }

    /// Reopens the pipe of a process started by an earlier daemon. Whatever the process wrote
    /// while no daemon was reading is still in the pipe and is copied first.
    pub fn reopen(pipe: PathBuf, log: LogFile) -> Stream {
        match crate::process::spawn::reopen_pipe(&pipe).and_then(crate::process::register) {
            Ok(fd) => Stream { fd: Some(fd), pipe, log, eof: false },
            Err(e) => {
                tracing::warn!(pipe = %pipe.display(), "cannot reopen output pipe: {e}");
                Stream { fd: None, pipe, log, eof: true }
            }
        }
    }

    /// True once every writer has closed the pipe: nothing more will come.
    pub fn at_eof(&self) -> bool {
        self.eof
    }

    /// Waits until the pipe has data (or hung up), then copies what is there. Cancel-safe: the
    /// copy happens after the only await point.
    pub async fn pump(&mut self) {
        let Some(fd) = self.fd.as_ref().filter(|_| !self.eof) else {
            return std::future::pending().await;
        };
        match fd.readable().await {
            Ok(mut guard) => {
                guard.clear_ready();
                self.drain();
            }
            Err(_) => self.eof = true,
        }
    }

    /// Copies everything the pipe holds right now, without waiting.
    pub fn drain(&mut self) {
        let Some(fd) = self.fd.as_ref().filter(|_| !self.eof) else { return };
        BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            loop {
                match rustix::io::read(fd.get_ref(), &mut buf[..]) {
                    Ok(0) => {
                        self.eof = true;
                        break;
                    }
                    Ok(n) => {
                        if let Err(e) = self.log.write(&buf[..n]) {
                            tracing::warn!(log = %self.log.path().display(), "cannot write log: {e}");
                        }
                    }
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(rustix::io::Errno::AGAIN) => break,
                    Err(_) => {
                        self.eof = true;
                        break;
                    }
                }
            }
        });
    }

    /// Path of the named pipe, kept in the state file so a new daemon can reopen it.
    pub fn pipe(&self) -> &Path {
        &self.pipe
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // Once the daemon lets go of a stream, nobody will reopen its pipe.
        let _ = std::fs::remove_file(&self.pipe);
    }
}
