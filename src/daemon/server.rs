//! The control socket: accept connections, read newline-delimited requests with a size limit,
//! dispatch each to `ops`, write the response. Bad input is answered or dropped; it never ends
//! the daemon (spec §9).

use std::rc::Rc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::protocol::{self, Envelope, ErrorKind, ErrorReply, Response};

use super::Daemon;

/// Accepts clients until the daemon shuts down; each client gets its own task.
///
/// At shutdown the socket file is already gone, so no new client can arrive; the ones that
/// connected just before (still in the listen backlog) and the requests in flight are answered
/// (a mutation with "daemon is shutting down") before the daemon exits, rather than reset.
pub async fn serve(listener: UnixListener, daemon: Rc<Daemon>) {
    let mut shutdown = daemon.shutdown.subscribe();
    let mut last_refusal_log: Option<std::time::Instant> = None;
    let open = Rc::new(std::cell::Cell::new(0usize));
    // The most connections open at once since none was.
    let peak = Rc::new(std::cell::Cell::new(0usize));
    let mut closing = false;
    loop {
        let accepted = if closing {
            match tokio::time::timeout(DRAIN_QUIET, listener.accept()).await {
                Ok(accepted) => accepted,
                Err(_) => break,
            }
        } else {
            tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.wait_for(|&down| down) => {
                    closing = true;
                    continue;
                }
            }
        };
        match accepted {
            Ok((stream, _)) => {
                if let Err(uid) = same_user(&stream) {
                    refuse(&stream, uid, &mut last_refusal_log);
                    continue;
                }
                let (daemon, open, peak) = (daemon.clone(), open.clone(), peak.clone());
                open.set(open.get() + 1);
                peak.set(peak.get().max(open.get()));
                tokio::task::spawn_local(async move {
                    connection(stream, daemon).await;
                    open.set(open.get() - 1);
                    if open.get() == 0 && peak.replace(0) >= BURST {
                        release_freed_memory();
                    }
                });
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    // Requests in flight get their answer; an idle client (a TUI) is not waited for long.
    let deadline = tokio::time::Instant::now() + DRAIN_MAX;
    while open.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// So many connections open at once are a burst: once the last one closes, the memory they
/// freed is handed back ([`release_freed_memory`]).
const BURST: usize = 16;

/// At shutdown: the backlog counts as empty once no client arrived for this long.
const DRAIN_QUIET: std::time::Duration = std::time::Duration::from_millis(20);
/// At shutdown: the longest wait for requests in flight to be answered.
const DRAIN_MAX: std::time::Duration = std::time::Duration::from_millis(500);

/// `Ok` when the peer of `stream` runs as our own user (SO_PEERCRED, as the kernel recorded it
/// at connect time); otherwise its uid (`None` when the kernel cannot tell).
fn same_user(stream: &UnixStream) -> Result<(), Option<u32>> {
    let me = rustix::process::geteuid().as_raw();
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == me => Ok(()),
        Ok(cred) => Err(Some(cred.uid())),
        Err(_) => Err(None),
    }
}

/// The one line another user gets before the connection is closed: nothing is read from it.
pub fn refusal(uid: Option<u32>) -> Response {
    let me = rustix::process::geteuid().as_raw();
    let who = uid.map_or_else(|| "a client whose uid is unknown".to_string(), |u| format!("uid {u}"));
    Response::Error(ErrorReply::new(
        ErrorKind::PermissionDenied,
        format!(
            "permission denied: this pm3 daemon runs as uid {me} and answers only its own user, not {who}; \
             use your own data directory (PM3_HOME)"
        ),
    ))
}

/// Answers a connection of another user with [`refusal`] and closes it, without waiting: the
/// line fits in the empty socket buffer of a fresh connection, and a peer that does not read
/// costs nothing. Logged at most once a second, so a flood cannot fill the daemon log.
fn refuse(stream: &UnixStream, uid: Option<u32>, last_log: &mut Option<std::time::Instant>) {
    if let Ok(mut line) = serde_json::to_vec(&refusal(uid)) {
        line.push(b'\n');
        let _ = stream.try_write(&line);
    }
    let now = std::time::Instant::now();
    if last_log.is_none_or(|t| now.duration_since(t) >= std::time::Duration::from_secs(1)) {
        *last_log = Some(now);
        tracing::warn!(uid = ?uid, "refused a connection from another user");
    }
}

/// Serves one client: any number of requests, one per line, until it hangs up.
async fn connection(stream: UnixStream, daemon: Rc<Daemon>) {
    let mut line = Vec::new();
    requests(stream, daemon, &mut line).await;
    release_if_large(&mut line);
}

/// The loop of [`connection`]; `line` is its request buffer.
async fn requests(stream: UnixStream, daemon: Rc<Daemon>, line: &mut Vec<u8>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        release_if_large(line);
        line.clear();
        match read_line(&mut reader, line).await {
            Ok(Line::Complete) => {}
            Ok(Line::Eof) => return,
            Ok(Line::TooLong) => {
                let msg = format!("request longer than {} bytes", protocol::MAX_REQUEST_BYTES);
                let _ = send(&mut write, &Response::Error(ErrorReply::new(ErrorKind::BadRequest, msg))).await;
                return;
            }
            Err(_) => return,
        }
        let response = match serde_json::from_slice::<Envelope>(line) {
            Ok(env) if env.v != protocol::VERSION => Response::Error(ErrorReply::new(
                ErrorKind::BadRequest,
                format!(
                    "protocol version {} not supported by this daemon (version {}); run `pm3 kill` to restart it",
                    env.v,
                    protocol::VERSION
                ),
            )),
            Ok(env) => {
                let is_kill = matches!(env.req, protocol::Request::Kill);
                let response = super::state::handle_durably(&daemon, env.req).await;
                if is_kill {
                    // Answer first, then let the daemon exit.
                    let _ = send(&mut write, &response).await;
                    let _ = write.shutdown().await;
                    daemon.shutdown.send_replace(true);
                    return;
                }
                response
            }
            Err(e) => {
                Response::Error(ErrorReply::new(ErrorKind::BadRequest, format!("malformed request: {e}")))
            }
        };
        if send(&mut write, &response).await.is_err() {
            return;
        }
    }
}

/// A request buffer that grew past this is freed rather than kept for the next request.
const KEEP_LINE_BYTES: usize = 64 << 10;

/// Frees `line` once a long request (up to the 8 MiB limit, or a refused longer one) has grown
/// it, and hands the memory back to the system. Kept, it would pin megabytes for as long as the
/// client stays connected; freed but not trimmed, glibc keeps it: after the first multi-megabyte
/// buffer is freed, glibc raises its mmap threshold, so the next one is carved from the heap and
/// stays resident after `free` (two refused 64 MiB lines left the daemon 8 MiB larger for
/// good; tests/e2e/abuse.rs).
fn release_if_large(line: &mut Vec<u8>) {
    if line.capacity() <= KEEP_LINE_BYTES {
        return;
    }
    *line = Vec::new();
    release_freed_memory();
}

/// Hands memory freed on glibc's heaps back to the system, so the daemon's footprint returns to
/// its idle size after a burst of clients (hundreds of connections, each with its buffers, leave
/// the heap fragmented and resident: tests/e2e/abuse.rs).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of glibc's heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

enum Line {
    Complete,
    Eof,
    TooLong,
}

/// Reads up to and excluding the next `\n`, refusing lines over the protocol limit without
/// buffering them.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    out: &mut Vec<u8>,
) -> std::io::Result<Line> {
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(if out.is_empty() { Line::Eof } else { Line::Complete });
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if out.len() + chunk.len() > protocol::MAX_REQUEST_BYTES {
            return Ok(Line::TooLong);
        }
        out.extend_from_slice(chunk);
        let used = done.unwrap_or(buf.len());
        r.consume(used);
        if done.is_some() {
            return Ok(Line::Complete);
        }
    }
}

async fn send(w: &mut tokio::net::unix::OwnedWriteHalf, response: &Response) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(response).unwrap_or_else(|e| {
        // Serializing our own types cannot fail short of a bug; answer with the error instead.
        serde_json::to_vec(&Response::Error(ErrorReply::new(ErrorKind::Internal, e.to_string())))
            .unwrap_or_default()
    });
    bytes.push(b'\n');
    w.write_all(&bytes).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_one_json_line_naming_both_uids() {
        let me = rustix::process::geteuid().as_raw();
        let line = serde_json::to_string(&refusal(Some(4242))).expect("encode");
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["error"]["kind"], "permission_denied");
        let msg = v["error"]["message"].as_str().expect("message");
        assert!(msg.contains(&format!("runs as uid {me}")) && msg.contains("not uid 4242"), "{msg}");
    }
}
