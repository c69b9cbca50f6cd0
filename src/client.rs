//! The CLI's side of the control socket: connect (starting the daemon when none runs), send one
//! request, read one response. Blocking std I/O and no async runtime, so a command like
//! `pm3 list` costs one process start and one socket round trip.

use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::paths::{Paths, PathsError};
use crate::protocol::{self, Envelope, ErrorReply, Request, Response};

/// How long the CLI waits for a daemon it started to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Paths(#[from] PathsError),
    #[error("cannot reach the daemon at {path}: {source}")]
    Connect { path: std::path::PathBuf, source: io::Error },
    #[error("refusing socket {path}: it is owned by uid {owner}, not by you")]
    SocketOwner { path: std::path::PathBuf, owner: u32 },
    #[error(
        "the request is {bytes} bytes, more than the {} bytes (8 MiB) the daemon accepts",
        protocol::MAX_REQUEST_BYTES
    )]
    TooLarge { bytes: usize },
    #[error("cannot start the daemon: {0}")]
    Start(String),
    #[error("lost the connection to the daemon: {0}")]
    Io(#[from] io::Error),
    #[error("unexpected answer from the daemon: {0}")]
    Protocol(String),
    #[error("{0}")]
    Daemon(ErrorReply),
}

pub struct Client {
    reader: BufReader<UnixStream>,
}

impl Client {
    /// Connects to a running daemon; `Ok(None)` when none runs.
    pub fn connect(paths: &Paths) -> Result<Option<Client>, ClientError> {
        paths.check()?;
        let socket = paths.socket();
        if let Ok(meta) = std::fs::symlink_metadata(&socket)
            && meta.uid() != rustix::process::geteuid().as_raw()
        {
            return Err(ClientError::SocketOwner { path: socket, owner: meta.uid() });
        }
        match UnixStream::connect(&socket) {
            Ok(stream) => Ok(Some(Client { reader: BufReader::with_capacity(64 << 10, stream) })),
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => {
                Ok(None)
            }
            Err(source) => Err(ClientError::Connect { path: socket, source }),
        }
    }

    /// Connects, starting a daemon first when none runs.
    pub fn connect_or_start(paths: &Paths) -> Result<Client, ClientError> {
        if let Some(c) = Client::connect(paths)? {
            return Ok(c);
        }
        start_daemon(paths)?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(c) = Client::connect(paths)? {
                return Ok(c);
            }
            if Instant::now() > deadline {
                return Err(ClientError::Start(format!(
                    "it did not open {} within {}s; see {}",
                    paths.socket().display(),
                    START_TIMEOUT.as_secs(),
                    paths.daemon_log().display()
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Sends one request and reads its response; a daemon error becomes `ClientError::Daemon`.
    pub fn request(&mut self, req: Request) -> Result<Response, ClientError> {
        let buf = self.exchange(req)?;
        match serde_json::from_slice::<Response>(&buf) {
            Ok(Response::Error(e)) => Err(ClientError::Daemon(e)),
            Ok(r) => Ok(r),
            Err(e) => Err(ClientError::Protocol(e.to_string())),
        }
    }

    /// `list --json` as the daemon wrote it, without decoding and encoding every row again.
    pub fn list_json(&mut self) -> Result<String, ClientError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Raw<'a> {
            #[serde(borrow)]
            List(&'a serde_json::value::RawValue),
        }
        let buf = self.exchange(Request::List)?;
        match serde_json::from_slice::<Raw<'_>>(&buf) {
            Ok(Raw::List(rows)) => Ok(rows.get().to_string()),
            Err(_) => match serde_json::from_slice::<Response>(&buf) {
                Ok(Response::Error(e)) => Err(ClientError::Daemon(e)),
                Ok(_) => Err(ClientError::Protocol("expected a list".into())),
                Err(e) => Err(ClientError::Protocol(e.to_string())),
            },
        }
    }

    /// Sends one request line and returns the response line.
    fn exchange(&mut self, req: Request) -> Result<Vec<u8>, ClientError> {
        let mut line = serde_json::to_vec(&Envelope { v: protocol::VERSION, req })
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        if line.len() > protocol::MAX_REQUEST_BYTES {
            return Err(ClientError::TooLarge { bytes: line.len() });
        }
        if let Err(e) = self.reader.get_mut().write_all(&line) {
            // A daemon that refused us (another user) wrote why before closing: read that.
            if !matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) {
                return Err(e.into());
            }
            let mut buf = Vec::new();
            return match self.reader.read_until(b'\n', &mut buf) {
                Ok(n) if n > 0 => Ok(buf),
                _ => Err(e.into()),
            };
        }
        let mut buf = Vec::new();
        let n = self.reader.read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Err(ClientError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the daemon closed the connection",
            )));
        }
        Ok(buf)
    }
}

/// Starts `pm3 daemon` detached, its output appended to `daemon.log`.
fn start_daemon(paths: &Paths) -> Result<(), ClientError> {
    paths.ensure()?;
    let exe = std::env::current_exe()
        .map_err(|e| ClientError::Start(format!("cannot find the pm3 binary: {e}")))?;
    let log_path = paths.daemon_log();
    // Keep the daemon log from growing forever: start afresh past 1 MiB.
    let too_big = std::fs::metadata(&log_path).is_ok_and(|m| m.len() > 1 << 20);
    let log = crate::paths::open_private(
        &log_path,
        OpenOptions::new().create(true).append(!too_big).write(true).truncate(too_big),
    )
    .map_err(|e| ClientError::Start(format!("cannot open {}: {e}", log_path.display())))?;
    let log2 = log.try_clone().map_err(|e| ClientError::Start(e.to_string()))?;
    Command::new(exe)
        .arg("daemon")
        .env("PM3_HOME", &paths.home)
        // A `pm3` run by a managed process must not pass that process's marker on to the daemon.
        .env_remove(crate::process::marker::NAME_VAR)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| ClientError::Start(e.to_string()))?;
    Ok(())
}
