//! Readiness probes (`health_check`): HTTP(S) answered with 2xx/3xx, a TCP port that accepts, or
//! a command that exits 0. A probe is a value parsed once per run, after `${VAR}` expansion, and
//! checked by the supervisor while the instance is `starting` or `unhealthy`; an `online`
//! instance is never probed, so health checks cost nothing at rest.
//!
//! A probe that fails says why in words a user can act on (`info` shows it): the address that
//! failed, what TLS objected to, how an `exec:` command ended and the last lines it printed.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use http_body_util::Empty;
use hyper::Uri;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::process::exit::{ExitStatus, ExitWatch};
use crate::process::signal::{self, Signal};

/// One readiness probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Http { uri: Uri, tls: bool },
    Tcp { host: String, port: u16 },
    Exec { command: String },
}

impl Probe {
    /// Parses a `health_check` value (already expanded).
    pub fn parse(text: &str) -> Result<Probe, String> {
        let t = text.trim();
        if let Some(cmd) = t.strip_prefix("exec:") {
            if cmd.trim().is_empty() {
                return Err("`exec:` needs a command".into());
            }
            return Ok(Probe::Exec { command: cmd.trim().to_string() });
        }
        if let Some(rest) = t.strip_prefix("tcp://") {
            let (host, port) = split_host_port(rest.trim_end_matches('/'))
                .ok_or_else(|| format!("`{t}` must be `tcp://HOST:PORT`"))?;
            return Ok(Probe::Tcp { host, port });
        }
        let tls = if t.starts_with("https://") {
            true
        } else if t.starts_with("http://") {
            false
        } else {
            return Err(format!("`{t}` must start with `http://`, `https://`, `tcp://` or `exec:`"));
        };
        let uri: Uri = t.parse().map_err(|e| format!("`{t}` is not a valid URL: {e}"))?;
        if uri.host().is_none_or(str::is_empty) {
            return Err(format!("`{t}` has no host"));
        }
        Ok(Probe::Http { uri, tls })
    }

    /// Runs the probe once, for at most `timeout` (`health_probe_timeout`); `Err` says why it
    /// did not pass. `env` is the instance's environment: an `exec:` command runs with it, and
    /// its `SSL_CERT_FILE` / `SSL_CERT_DIR` add trusted roots for `https://`.
    pub async fn check(
        &self,
        cwd: &Path,
        env: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<(), String> {
        let (what, net) = match self {
            Probe::Exec { command } => return exec(command, cwd, env, timeout).await,
            Probe::Tcp { host, port } => (
                if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") },
                Box::pin(async { connect(host, *port).await.map(drop) }) as NetCheck<'_>,
            ),
            Probe::Http { uri, tls } => {
                (uri.to_string(), Box::pin(http(uri, *tls, cwd, env)) as NetCheck<'_>)
            }
        };
        match tokio::time::timeout(timeout, net).await {
            Ok(r) => r,
            Err(_) => {
                Err(format!("{what}: no answer within {}ms (health_probe_timeout)", timeout.as_millis()))
            }
        }
    }
}

type NetCheck<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + 'a>>;

/// `host:port`, `[v6]:port`.
fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once("]:")?;
        (h, p)
    } else {
        s.rsplit_once(':')?
    };
    let port = port.parse::<u16>().ok().filter(|&p| p > 0)?;
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// Addresses to try for `host`: `localhost` means both loopbacks (whichever the service bound),
/// literals are used as they are, other names are resolved.
async fn addresses(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        ]);
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    tokio::net::lookup_host((host, port))
        .await
        .map(Iterator::collect)
        .map_err(|e| format!("cannot resolve `{host}`: {}", io_words(&e)))
}

/// Connects to the first address of `host` that accepts; when none does, says why for each
/// (`127.0.0.1:8443: connection refused; [::1]:8443: connection refused`).
async fn connect(host: &str, port: u16) -> Result<(TcpStream, SocketAddr), String> {
    let mut failed = Vec::new();
    for addr in addresses(host, port).await? {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok((s, addr)),
            Err(e) => failed.push(format!("{addr}: {}", io_words(&e))),
        }
    }
    if failed.is_empty() {
        return Err(format!("`{host}` resolves to no address"));
    }
    Err(failed.join("; "))
}

async fn http(uri: &Uri, tls: bool, cwd: &Path, env: &BTreeMap<String, String>) -> Result<(), String> {
    let host = uri.host().unwrap_or("localhost").trim_start_matches('[').trim_end_matches(']').to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let (tcp, addr) = connect(&host, port).await?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "pm3-health-check")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let status = if tls {
        let name = ServerName::try_from(host.clone())
            .map_err(|e| format!("`{host}` cannot be a TLS server name: {e}"))?;
        let (connector, notes) = tls_connector(cwd, env)?;
        let stream = connector.connect(name, tcp).await.map_err(|e| {
            let why = tls_words(&e);
            // A root file that could not be read matters only when the server was not trusted.
            let notes = if is_certificate_error(&e) { notes } else { String::new() };
            format!("{addr}: {why}{notes}")
        })?;
        send(TokioIo::new(stream), req).await.map_err(|e| format!("{addr}: {e}"))?
    } else {
        match send(TokioIo::new(tcp), req).await {
            Ok(status) => status,
            Err(e) => {
                if speaks_tls(addr, &host).await {
                    return Err(format!("{addr}: the server answered with TLS; use https://"));
                }
                return Err(format!("{addr}: {e}"));
            }
        }
    };
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("{addr} answered HTTP {status}"))
    }
}

async fn send<T>(io: T, req: hyper::Request<Empty<Bytes>>) -> Result<hyper::StatusCode, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| hyper_words(&e))?;
    // The connection future drives the socket; it ends with the response (or the request).
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await.map_err(|e| hyper_words(&e))?;
    Ok(resp.status())
}

/// Why an HTTP exchange failed, in words.
fn hyper_words(e: &hyper::Error) -> String {
    if e.is_incomplete_message() {
        return "the server closed the connection without answering".into();
    }
    if e.is_parse() {
        return "the answer is not HTTP/1".into();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        match s.downcast_ref::<io::Error>() {
            Some(io) => text.push_str(&format!(": {}", io_words(io))),
            None => text.push_str(&format!(": {s}")),
        }
        source = s.source();
    }
    text
}

/// True when the server at `addr` completes (or gets as far as judging certificates in) a TLS
/// handshake: a plain `http://` check aimed at a TLS port.
async fn speaks_tls(addr: SocketAddr, host: &str) -> bool {
    let attempt = async {
        let tcp = TcpStream::connect(addr).await.ok()?;
        let name = ServerName::try_from(host.to_string()).unwrap_or_else(|_| ServerName::from(addr.ip()));
        let connector = tokio_rustls::TlsConnector::from(default_tls_config().ok()?);
        Some(match connector.connect(name, tcp).await {
            Ok(_) => true,
            Err(e) => rustls_error(&e).is_some_and(|r| !not_tls(r)),
        })
    };
    matches!(tokio::time::timeout(Duration::from_secs(1), attempt).await, Ok(Some(true)))
}

/// The rustls error inside an I/O error of a TLS stream.
fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Errors that mean the peer does not speak TLS at all.
fn not_tls(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidMessage(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. }
    )
}

fn is_certificate_error(e: &io::Error) -> bool {
    matches!(rustls_error(e), Some(rustls::Error::InvalidCertificate(_)))
}

/// Why a TLS handshake failed, in words.
fn tls_words(e: &io::Error) -> String {
    let Some(err) = rustls_error(e) else {
        return match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                "the server closed the connection during the TLS handshake".into()
            }
            _ => format!("TLS: {}", io_words(e)),
        };
    };
    match err {
        rustls::Error::InvalidCertificate(c) => certificate_words(c),
        e if not_tls(e) => "the server did not answer with TLS (plain HTTP? use http://)".into(),
        rustls::Error::AlertReceived(alert) => {
            format!("the server refused the TLS handshake ({})", words(&format!("{alert:?}")))
        }
        rustls::Error::PeerIncompatible(why) => {
            format!(
                "the server has no TLS version or cipher in common with pm3 ({})",
                words(&format!("{why:?}"))
            )
        }
        rustls::Error::NoCertificatesPresented => "the server sent no certificate".into(),
        other => format!("TLS: {}", words(&other.to_string())),
    }
}

/// Why the server's certificate was refused, in words.
fn certificate_words(c: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    let date = |t: &rustls::pki_types::UnixTime| {
        chrono::DateTime::from_timestamp(i64::try_from(t.as_secs()).unwrap_or(i64::MAX), 0)
            .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_else(|| format!("{} (Unix time)", t.as_secs()))
    };
    let what = match c {
        C::UnknownIssuer => "is not signed by a trusted authority (self-signed or from a private CA? \
             trust it with SSL_CERT_FILE)"
            .to_string(),
        C::Expired => "has expired".into(),
        C::ExpiredContext { not_after, .. } => format!("expired on {}", date(not_after)),
        C::NotValidYet => "is not valid yet".into(),
        C::NotValidYetContext { not_before, .. } => format!("is not valid before {}", date(not_before)),
        C::NotValidForName => "is not valid for this host name".into(),
        C::NotValidForNameContext { expected, presented } => {
            let names = if presented.is_empty() { "none".to_string() } else { presented.join(", ") };
            format!("is not valid for `{}` (it names: {names})", expected.to_str())
        }
        C::Revoked => "has been revoked".into(),
        C::BadSignature => "has an invalid signature".into(),
        C::BadEncoding => "cannot be parsed".into(),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => "is not meant for a TLS server".into(),
        C::UnhandledCriticalExtension => "has a critical extension pm3 does not understand".into(),
        C::UnsupportedSignatureAlgorithmContext { .. }
        | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "uses a signature algorithm pm3 does not support".into()
        }
        C::Other(other) => {
            // webpki's errors, which rustls passes on as they are: their text is their name.
            let text = other.0.to_string();
            let name = text.split('(').next().unwrap_or_default();
            match name {
                "CaUsedAsEndEntity" => "is a CA certificate, not a server certificate".into(),
                "EndEntityUsedAsCa" => "chain uses a server certificate as a CA".into(),
                "UnsupportedCertVersion" => "is not an X.509 v3 certificate".into(),
                "RequiredEkuNotFound" | "RequiredEkuNotFoundContext" => {
                    "is not meant for a TLS server".into()
                }
                "UnknownIssuer" => "is not signed by a trusted authority".into(),
                _ => format!("was refused: {}", words(&text)),
            }
        }
        other => format!("was refused: {}", words(&other.to_string())),
    };
    format!("the server's certificate {what}")
}

/// A bare identifier (`CaUsedAsEndEntity`, `HandshakeFailure`) as lowercase words; other text
/// as it is.
fn words(text: &str) -> String {
    let name = text.split('(').next().unwrap_or_default();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return text.to_string();
    }
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// An I/O error in words, without the `(os error N)` tail.
fn io_words(e: &io::Error) -> String {
    use io::ErrorKind as K;
    let known = match e.kind() {
        K::ConnectionRefused => "connection refused",
        K::ConnectionReset => "connection reset by the server",
        K::ConnectionAborted => "connection aborted",
        K::TimedOut => "timed out",
        K::HostUnreachable => "host unreachable",
        K::NetworkUnreachable => "network unreachable",
        K::AddrNotAvailable => "address not available",
        K::UnexpectedEof => "the connection closed early",
        K::NotFound => "not found",
        K::PermissionDenied => "permission denied",
        _ => "",
    };
    if !known.is_empty() {
        return known.into();
    }
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or_default();
    let mut chars = text.chars();
    chars.next().map(|c| c.to_lowercase().chain(chars).collect()).unwrap_or_default()
}

/// TLS with the Mozilla root certificates, built once.
fn default_tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG.get_or_init(|| client_config(webpki_roots())).clone()
}

fn webpki_roots() -> rustls::RootCertStore {
    rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }
}

fn client_config(roots: rustls::RootCertStore) -> Result<Arc<rustls::ClientConfig>, String> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
        .map_err(|e| format!("TLS setup: {e}"))
}

/// Where extra trusted roots come from: `SSL_CERT_FILE` (a PEM bundle) and `SSL_CERT_DIR`
/// (directories of PEM files, `:`-separated), as OpenSSL reads them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ExtraRoots {
    file: Option<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl ExtraRoots {
    /// From the instance's environment, else the daemon's; `None` when neither sets them. A
    /// relative path is relative to the instance's `cwd`, as it is for the process itself.
    fn from_env(cwd: &Path, env: &BTreeMap<String, String>) -> Option<ExtraRoots> {
        let var = |name: &str| {
            env.get(name).cloned().or_else(|| std::env::var(name).ok()).filter(|v| !v.is_empty())
        };
        let file = var("SSL_CERT_FILE").map(|f| cwd.join(f));
        let dirs: Vec<PathBuf> = var("SSL_CERT_DIR")
            .map(|v| v.split(':').filter(|d| !d.is_empty()).map(|d| cwd.join(d)).collect())
            .unwrap_or_default();
        (file.is_some() || !dirs.is_empty()).then_some(ExtraRoots { file, dirs })
    }

    /// What a change to the roots would change: the modification times of the file and dirs.
    fn stamp(&self) -> Vec<Option<SystemTime>> {
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        self.file.iter().chain(&self.dirs).map(|p| mtime(p)).collect()
    }

    /// The Mozilla roots plus these; and a note for each source that gave nothing.
    fn load(&self) -> (rustls::RootCertStore, Vec<String>) {
        let mut roots = webpki_roots();
        let mut notes = Vec::new();
        if let Some(file) = &self.file {
            match std::fs::read(file) {
                Ok(pem) => {
                    let (added, _) = roots.add_parsable_certificates(pem_certificates(&pem));
                    if added == 0 {
                        notes.push(format!("SSL_CERT_FILE `{}` holds no PEM certificate", file.display()));
                    }
                }
                Err(e) => {
                    notes.push(format!("SSL_CERT_FILE `{}` cannot be read: {}", file.display(), io_words(&e)))
                }
            }
        }
        for dir in &self.dirs {
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) => {
                    notes.push(format!("SSL_CERT_DIR `{}` cannot be read: {}", dir.display(), io_words(&e)));
                    continue;
                }
            };
            for entry in entries.flatten() {
                let path = entry.path();
                // Through symlinks: OpenSSL's hashed names (`abcd1234.0`) link to the files.
                if std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() <= MAX_PEM_FILE)
                    && let Ok(pem) = std::fs::read(&path)
                {
                    roots.add_parsable_certificates(pem_certificates(&pem));
                }
            }
        }
        (roots, notes)
    }
}

/// Largest file read as a PEM bundle (the system bundles are a few hundred KiB).
const MAX_PEM_FILE: u64 = 16 << 20;

fn pem_certificates(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem).filter_map(Result::ok).collect()
}

/// The connector for a probe with this environment, and a note to add to a certificate error
/// (`; SSL_CERT_FILE … cannot be read`). With extra roots, the config is built once per set of
/// sources and built again when one of them changes.
fn tls_connector(
    cwd: &Path,
    env: &BTreeMap<String, String>,
) -> Result<(tokio_rustls::TlsConnector, String), String> {
    type Cached = (Vec<Option<SystemTime>>, Arc<rustls::ClientConfig>, String);
    thread_local! {
        static CACHE: RefCell<HashMap<ExtraRoots, Cached>> = RefCell::new(HashMap::new());
    }
    let Some(extra) = ExtraRoots::from_env(cwd, env) else {
        return default_tls_config().map(|c| (c.into(), String::new()));
    };
    let stamp = extra.stamp();
    if let Some((config, notes)) = CACHE.with_borrow(|cache| {
        cache.get(&extra).filter(|(s, _, _)| *s == stamp).map(|(_, c, n)| (c.clone(), n.clone()))
    }) {
        return Ok((config.into(), notes));
    }
    let (roots, notes) = extra.load();
    let config = client_config(roots)?;
    let notes: String = notes.iter().map(|n| format!("; note: {n}")).collect();
    CACHE.with_borrow_mut(|cache| {
        // A handful of distinct sources at most; never let it grow without bound.
        if cache.len() >= 16 {
            cache.clear();
        }
        cache.insert(extra, (stamp, config.clone(), notes.clone()));
    });
    Ok((config.into(), notes))
}

/// Most output of an `exec:` check kept (its end), to quote its last lines.
const EXEC_OUTPUT: usize = 4 << 10;

/// Lines of an `exec:` check's output quoted when it fails.
const EXEC_LINES: usize = 3;

/// Runs `command` through `sh -c` in its own group with the instance's cwd and environment;
/// passes on exit 0. Its stdout and stderr go to one pipe, of which the last 4 KiB are kept to
/// quote when it fails. After `timeout`, or if the probe is abandoned, the group is killed.
async fn exec(
    command: &str,
    cwd: &Path,
    env: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<(), String> {
    let shown = crate::spec::show(command);
    let deadline = tokio::time::Instant::now() + timeout;
    let (reader, writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    let writer2 = writer.try_clone().map_err(|e| format!("cannot run `{shown}`: {}", io_words(&e)))?;
    // The command (and our copies of the write ends) is dropped at the end of the statement, so
    // the pipe ends when the check and whatever it started have closed it.
    let child = crate::process::spawn::shell(command, cwd, env)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2))
        .spawn()
        .map_err(|e| format!("cannot run `{shown}`: {}", io_words(&e)))?;
    let guard = KillOnDrop(child.id());
    let watch = ExitWatch::new(child.id()).map_err(|e| e.to_string())?;
    let mut pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(reader).ok();
    let mut output = Tail::default();
    let mut buf = [0u8; 1024];
    let exited = watch.exited();
    tokio::pin!(exited);
    let status = loop {
        tokio::select! {
            status = &mut exited => break status,
            n = read_some(&mut pipe, &mut buf) => output.take(&mut pipe, &buf, n),
            _ = tokio::time::sleep_until(deadline) => {
                // `guard` kills the group on the way out.
                return Err(format!(
                    "`{shown}` did not finish within {}ms (health_probe_timeout){}",
                    timeout.as_millis(),
                    output.quote()
                ));
            }
        }
    };
    std::mem::forget(guard);
    if status.success() {
        return Ok(());
    }
    // What it wrote just before exiting; a child it left behind may hold the pipe open.
    let grace = tokio::time::Instant::now() + Duration::from_millis(100);
    while pipe.is_some() {
        tokio::select! {
            n = read_some(&mut pipe, &mut buf) => output.take(&mut pipe, &buf, n),
            _ = tokio::time::sleep_until(grace) => break,
        }
    }
    Err(format!("`{shown}` {}{}", exit_words(status), output.quote()))
}

/// Reads from the pipe while it is open (never resolves once it is closed).
async fn read_some(pipe: &mut Option<tokio::net::unix::pipe::Receiver>, buf: &mut [u8]) -> io::Result<usize> {
    match pipe {
        Some(p) => p.read(buf).await,
        None => std::future::pending().await,
    }
}

/// How an `exec:` check ended, in words.
fn exit_words(status: ExitStatus) -> String {
    match status {
        ExitStatus::Code(127) => "exited with code 127 (command not found)".into(),
        ExitStatus::Code(126) => "exited with code 126 (not executable)".into(),
        ExitStatus::Code(c) => format!("exited with code {c}"),
        ExitStatus::Signal(s) => format!("was killed by {s}"),
        ExitStatus::Unknown => "ended with an unknown status".into(),
    }
}

/// The last [`EXEC_OUTPUT`] bytes of a check's output.
#[derive(Default)]
struct Tail(Vec<u8>);

impl Tail {
    /// Keeps what a read returned; closes the pipe at its end or on an error.
    fn take(
        &mut self,
        pipe: &mut Option<tokio::net::unix::pipe::Receiver>,
        buf: &[u8],
        n: io::Result<usize>,
    ) {
        match n {
            Ok(n) if n > 0 => {
                self.0.extend_from_slice(&buf[..n]);
                if self.0.len() > EXEC_OUTPUT {
                    let cut = self.0.len() - EXEC_OUTPUT;
                    self.0.drain(..cut);
                }
            }
            _ => *pipe = None,
        }
    }

    /// `; last output: a | b | c`, or `; no output`.
    fn quote(&self) -> String {
        let text = String::from_utf8_lossy(&self.0);
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        if lines.is_empty() {
            return " (no output)".into();
        }
        let last = &lines[lines.len().saturating_sub(EXEC_LINES)..];
        let quoted: Vec<String> = last.iter().map(|l| crate::spec::show(l)).collect();
        format!("; last output: {}", quoted.join(" | "))
    }
}

/// Kills a probe's process group when the probe is abandoned (timeout, stop).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = signal::signal_group(self.0, Signal::KILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_forms() {
        assert!(matches!(Probe::parse("http://localhost:3000/health"), Ok(Probe::Http { tls: false, .. })));
        assert!(matches!(Probe::parse("https://example.com"), Ok(Probe::Http { tls: true, .. })));
        assert_eq!(
            Probe::parse("tcp://localhost:5432"),
            Ok(Probe::Tcp { host: "localhost".into(), port: 5432 })
        );
        assert_eq!(Probe::parse("tcp://[::1]:80"), Ok(Probe::Tcp { host: "::1".into(), port: 80 }));
        assert_eq!(Probe::parse("exec: pg_isready"), Ok(Probe::Exec { command: "pg_isready".into() }));
        for bad in
            ["ftp://x", "tcp://localhost", "tcp://:80", "tcp://h:0", "exec:", "http://", "localhost:80"]
        {
            assert!(Probe::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn failures_read_as_words() {
        assert_eq!(words("CaUsedAsEndEntity"), "ca used as end entity");
        assert_eq!(words("TrailingData(Certificate)"), "trailing data");
        assert_eq!(words("received corrupt message"), "received corrupt message");
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(io_words(&refused), "connection refused");
        assert_eq!(io_words(&io::Error::from_raw_os_error(libc::EMFILE)), "too many open files");
        use rustls::CertificateError as C;
        assert_eq!(
            certificate_words(&C::Other(rustls::OtherError(Arc::new(io::Error::other("CaUsedAsEndEntity"))))),
            "the server's certificate is a CA certificate, not a server certificate"
        );
        assert_eq!(
            certificate_words(&C::Other(rustls::OtherError(Arc::new(io::Error::other("SomethingNew"))))),
            "the server's certificate was refused: something new"
        );
        assert_eq!(certificate_words(&C::Expired), "the server's certificate has expired");
        let expired = C::ExpiredContext {
            time: rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(1_800_000_000)),
            not_after: rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(1_700_000_000)),
        };
        assert_eq!(certificate_words(&expired), "the server's certificate expired on 2023-11-14 22:13 UTC");
        let name = C::NotValidForNameContext {
            expected: ServerName::try_from("api.example.com").expect("a name"),
            presented: vec!["DnsName(\"www.example.com\")".into()],
        };
        assert!(
            certificate_words(&name)
                .starts_with("the server's certificate is not valid for `api.example.com`"),
            "{}",
            certificate_words(&name)
        );
        assert!(certificate_words(&C::UnknownIssuer).contains("not signed by a trusted authority"));
        let tls = |e: rustls::Error| tls_words(&io::Error::new(io::ErrorKind::InvalidData, e));
        assert_eq!(
            tls(rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure)),
            "the server refused the TLS handshake (handshake failure)"
        );
        assert!(!tls(rustls::Error::InvalidCertificate(C::BadSignature)).contains("BadSignature"));
    }

    #[test]
    fn an_exec_check_quotes_its_last_lines() {
        let mut tail = Tail::default();
        assert_eq!(tail.quote(), " (no output)");
        let mut pipe = None;
        let text = format!("{}\nfirst\n\nsecond\r\nthird\n", "x".repeat(10_000));
        tail.take(&mut pipe, text.as_bytes(), Ok(text.len()));
        assert_eq!(tail.0.len(), EXEC_OUTPUT, "only the end is kept");
        assert_eq!(tail.quote(), "; last output: first | second | third");
        assert_eq!(exit_words(ExitStatus::Code(127)), "exited with code 127 (command not found)");
        assert_eq!(exit_words(ExitStatus::Signal(Signal::KILL)), "was killed by SIGKILL");
    }
}
