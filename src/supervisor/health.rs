//! Readiness probes (`health_check`): HTTP(S) answered with 2xx/3xx, a TCP port that accepts, or
//! a command that exits 0. A probe is a value parsed once per run, after `${VAR}` expansion, and
//! checked by the supervisor while the instance is `starting` or `unhealthy`; an `online`
//! instance is never probed, so health checks cost nothing at rest.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::Empty;
use hyper::Uri;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::process::exit::ExitWatch;
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

    /// Runs the probe once; `Err` says why it did not pass.
    pub async fn check(
        &self,
        cwd: &Path,
        env: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<(), String> {
        match tokio::time::timeout(timeout, self.check_inner(cwd, env)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {}ms", timeout.as_millis())),
        }
    }

    async fn check_inner(&self, cwd: &Path, env: &BTreeMap<String, String>) -> Result<(), String> {
        match self {
            Probe::Tcp { host, port } => connect(host, *port).await.map(drop),
            Probe::Http { uri, tls } => http(uri, *tls).await,
            Probe::Exec { command } => exec(command, cwd, env).await,
        }
    }
}

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
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))
}

/// Connects to the first address of `host` that accepts.
async fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    let mut last = format!("`{host}` resolves to no address");
    for addr in addresses(host, port).await? {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last)
}

async fn http(uri: &Uri, tls: bool) -> Result<(), String> {
    let host = uri.host().unwrap_or("localhost").to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let tcp = connect(&host, port).await?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "pm3-health-check")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let status = if tls {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("bad TLS server name `{host}`: {e}"))?;
        let stream = tls_connector()?.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
        send(TokioIo::new(stream), req).await?
    } else {
        send(TokioIo::new(tcp), req).await?
    };
    if status.is_success() || status.is_redirection() { Ok(()) } else { Err(format!("HTTP {status}")) }
}

async fn send<T>(io: T, req: hyper::Request<Empty<Bytes>>) -> Result<hyper::StatusCode, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
    // The connection future drives the socket; it ends with the response (or the request).
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    Ok(resp.status())
}

/// TLS with the Mozilla root certificates, built once.
fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
            .map_err(|e| format!("TLS setup: {e}"))
    });
    config.clone().map(tokio_rustls::TlsConnector::from)
}

/// Runs `command` through `sh -c` in its own group with the instance's cwd and environment;
/// passes on exit 0. If the timeout around it fires, the group is killed when dropped.
async fn exec(command: &str, cwd: &Path, env: &BTreeMap<String, String>) -> Result<(), String> {
    let child = crate::process::spawn::shell(command, cwd, env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run `{command}`: {e}"))?;
    let guard = KillOnDrop(child.id());
    let watch = ExitWatch::new(child.id()).map_err(|e| e.to_string())?;
    let status = watch.exited().await;
    std::mem::forget(guard);
    if status.success() { Ok(()) } else { Err(format!("`{command}` ended with {status}")) }
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
}
