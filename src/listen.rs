//! `listen`: the sockets pm3 binds for a process and hands to each of its instances with the
//! systemd protocol (descriptors from 3 in declaration order, `LISTEN_FDS`, `LISTEN_PID`,
//! `LISTEN_FDNAMES`).
//!
//! The daemon owns them, per process name, not per instance: they are bound once, before the
//! first instance starts, and stay bound across restarts, crash loops, scaling and reloads, so
//! a replacement accepts on the very socket its predecessor accepted on and no connection is
//! refused in between. `pm3 stop` of a whole process (or its removal) closes them.
//!
//! After a daemon SIGKILL the next daemon takes the sockets back from a living instance with
//! `pidfd_getfd` (the very same socket); where that is refused it binds again, which TCP
//! allows beside the old socket because every socket pm3 binds has `SO_REUSEPORT`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::spec::ProcessDef;

/// Most sockets one process may declare.
pub const MAX_LISTEN: usize = 16;

/// Longest path a unix socket address holds (`sun_path` less its NUL).
const MAX_UNIX_PATH: usize = 107;

/// Longest name in `LISTEN_FDNAMES` (systemd's limit).
const MAX_NAME: usize = 255;

/// Where a socket listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// One entry of `listen`: the address and the name the instance sees in `LISTEN_FDNAMES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub endpoint: Endpoint,
    /// `?name=` of the URL; the process name when absent.
    pub name: Option<String>,
}

impl Listen {
    /// Reads `tcp://127.0.0.1:8080`, `tcp://[::1]:8080`, `unix:/run/app.sock`, each optionally
    /// followed by `?name=NAME`.
    pub fn parse(text: &str) -> Result<Listen, String> {
        if text.contains('\0') {
            return Err("must not contain a NUL character".into());
        }
        let (addr, name) = match text.split_once('?') {
            Some((a, query)) => {
                let name = query.strip_prefix("name=").ok_or_else(|| {
                    format!("unknown option `{}` (only `name=` is known)", crate::spec::show(query))
                })?;
                name_problem(name)?;
                (a, Some(name.to_string()))
            }
            None => (text, None),
        };
        let endpoint = if let Some(rest) = addr.strip_prefix("tcp://") {
            // `localhost` is the loopback address most servers mean by it; `:PORT` is every
            // IPv4 address, as in `0.0.0.0:PORT`.
            let spelled = if let Some(port) = rest.strip_prefix("localhost:") {
                format!("127.0.0.1:{port}")
            } else if rest.starts_with(':') {
                format!("0.0.0.0{rest}")
            } else {
                rest.to_string()
            };
            let sock: SocketAddr = spelled.parse().map_err(|_| {
                format!(
                    "`{}` is not an IP address and port (`127.0.0.1:8080`, `localhost:8080`, `[::1]:8080`, `:80`)",
                    crate::spec::show(rest)
                )
            })?;
            Endpoint::Tcp(sock)
        } else if let Some(path) = addr.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if !path.starts_with('/') {
                return Err(format!("the unix socket path `{}` must be absolute", crate::spec::show(path)));
            }
            if path.len() > MAX_UNIX_PATH {
                return Err(format!(
                    "the unix socket path is {} bytes long, more than the {MAX_UNIX_PATH} a socket address holds",
                    path.len()
                ));
            }
            if path.ends_with('/') {
                return Err("the unix socket path names a directory".into());
            }
            Endpoint::Unix(PathBuf::from(path))
        } else {
            return Err(
                "must start with `tcp://` or `unix:` (`tcp://127.0.0.1:8080`, `unix:/run/app.sock`)".into()
            );
        };
        Ok(Listen { endpoint, name })
    }

    /// The name this socket has in `LISTEN_FDNAMES` for `process`.
    pub fn fd_name<'a>(&'a self, process: &'a str) -> &'a str {
        self.name.as_deref().unwrap_or(process)
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A name `LISTEN_FDNAMES` can carry: 1 to 255 characters of `A-Z a-z 0-9 _ - .`.
fn name_problem(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("`name=` must be 1 to {MAX_NAME} characters"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        return Err(format!("`name={}` may only hold `A-Z a-z 0-9 _ - .`", crate::spec::show(name)));
    }
    Ok(())
}

/// The problems of a `listen` list, each with its key (`listen[1]`, or `listen` for the list).
pub fn problems(listen: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if listen.len() > MAX_LISTEN {
        out.push((
            "listen".into(),
            format!("`listen` may name at most {MAX_LISTEN} sockets, got {}", listen.len()),
        ));
        return out;
    }
    let mut seen: Vec<Endpoint> = Vec::new();
    for (i, text) in listen.iter().enumerate() {
        let key = format!("listen[{i}]");
        match Listen::parse(text) {
            Ok(l) if seen.contains(&l.endpoint) => {
                out.push((key.clone(), format!("`{key}`: {} is listed twice", l.endpoint)));
            }
            Ok(l) => seen.push(l.endpoint),
            Err(why) => out.push((key.clone(), format!("`{key}`: {why}"))),
        }
    }
    out
}

/// Binds one socket: close-on-exec (only the spawn hands it on), `SO_REUSEADDR` and
/// `SO_REUSEPORT` on TCP (a daemon that lost the socket can bind beside the instances still
/// holding it), IPv6 only on an IPv6 address, backlog `SOMAXCONN`. A unix socket file left by
/// a process that is gone is replaced; one something still listens on is not.
pub fn bind(endpoint: &Endpoint) -> io::Result<OwnedFd> {
    match endpoint {
        Endpoint::Tcp(addr) => bind_tcp(addr),
        Endpoint::Unix(path) => bind_unix(path, false),
    }
}

/// [`bind`] for sockets the instances of a previous daemon still hold and that could not be
/// taken back: a TCP socket binds beside theirs (`SO_REUSEPORT`); a unix socket file is
/// replaced, so new connections reach the new socket while the old instances finish theirs.
pub fn bind_again(endpoint: &Endpoint) -> io::Result<OwnedFd> {
    match endpoint {
        Endpoint::Tcp(addr) => bind_tcp(addr),
        Endpoint::Unix(path) => bind_unix(path, true),
    }
}

fn socket(domain: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the descriptor is owned at once.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just created and nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_flag(fd: &OwnedFd, level: libc::c_int, option: libc::c_int) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with a pointer to a c_int we own, and its size.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            option,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret != 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn listen_on(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: listen on a descriptor we own.
    if unsafe { libc::listen(fd.as_raw_fd(), libc::SOMAXCONN) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A `sockaddr_storage` holding `addr`, and its length.
fn sockaddr_of(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let sin =
                unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            let sin6 =
                unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr = libc::in6_addr { s6_addr: a.ip().octets() };
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn bind_tcp(addr: &SocketAddr) -> io::Result<OwnedFd> {
    let domain = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    let fd = socket(domain)?;
    set_flag(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR)?;
    set_flag(&fd, libc::SOL_SOCKET, libc::SO_REUSEPORT)?;
    if addr.is_ipv6() {
        set_flag(&fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)?;
    }
    let (storage, len) = sockaddr_of(addr);
    // SAFETY: bind with a valid address of `len` bytes.
    if unsafe { libc::bind(fd.as_raw_fd(), (&storage as *const libc::sockaddr_storage).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    listen_on(&fd)?;
    Ok(fd)
}

fn unix_addr(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: all-zero is a valid sockaddr_un.
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= sun.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "unix socket path too long"));
    }
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in sun.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((sun, len as libc::socklen_t))
}

fn bind_unix(path: &Path, replace: bool) -> io::Result<OwnedFd> {
    let (sun, len) = unix_addr(path)?;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(io::ErrorKind::AddrInUse, "the path exists and is not a socket"));
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) if replace => std::fs::remove_file(path)?,
            Ok(_) => return Err(io::Error::new(io::ErrorKind::AddrInUse, "something listens on it")),
            // Nothing listens: a file left behind by a process that is gone.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path)?,
            Err(e) => return Err(e),
        }
    }
    let fd = socket(libc::AF_UNIX)?;
    // SAFETY: bind with a valid address of `len` bytes.
    let ret = unsafe { libc::bind(fd.as_raw_fd(), (&sun as *const libc::sockaddr_un).cast(), len) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    // The file gets the mode the command that started the daemon would give it (its umask), not
    // the daemon's private one: set after the bind (until then it is only more private), so the
    // daemon never changes its umask while its other threads create files.
    if let Some(mask) = crate::process::limits::caller_umask() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777 & !mask))?;
    }
    listen_on(&fd)?;
    Ok(fd)
}

/// True when `fd` is a listening stream socket bound to `endpoint` (a descriptor taken from
/// another process is checked before it is trusted).
pub fn is_listening_on(fd: RawFd, endpoint: &Endpoint) -> bool {
    let mut accepting: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into a c_int we own.
    let ok = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut accepting as *mut libc::c_int).cast(),
            &mut len,
        )
    } == 0;
    if !ok || accepting == 0 {
        return false;
    }
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname into storage of `len` bytes.
    if unsafe { libc::getsockname(fd, (&mut storage as *mut libc::sockaddr_storage).cast(), &mut len) } != 0 {
        return false;
    }
    match endpoint {
        Endpoint::Tcp(want) => {
            let got = match i32::from(storage.ss_family) {
                libc::AF_INET => {
                    // SAFETY: the kernel said this is a sockaddr_in.
                    let sin =
                        unsafe { &*(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                    SocketAddr::new(
                        IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                        u16::from_be(sin.sin_port),
                    )
                }
                libc::AF_INET6 => {
                    // SAFETY: the kernel said this is a sockaddr_in6.
                    let s =
                        unsafe { &*(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                    SocketAddr::new(IpAddr::from(s.sin6_addr.s6_addr), u16::from_be(s.sin6_port))
                }
                _ => return false,
            };
            got.ip() == want.ip() && got.port() == want.port()
        }
        Endpoint::Unix(path) => {
            if i32::from(storage.ss_family) != libc::AF_UNIX {
                return false;
            }
            // SAFETY: the kernel said this is a sockaddr_un.
            let sun = unsafe { &*(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_un>() };
            let bytes: Vec<u8> = sun.sun_path.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
            bytes == path.as_os_str().as_bytes()
        }
    }
}

/// A copy of descriptor `fd` of process `pid` (`pidfd_getfd`, Linux 5.6; needs the right to
/// ptrace `pid`).
pub fn take_from(pid: u32, fd: RawFd) -> io::Result<OwnedFd> {
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid as i32)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?,
        rustix::process::PidfdFlags::empty(),
    )?;
    // SAFETY: raw syscall with a pidfd we own, a descriptor number and no flags.
    let got = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel gave us a new descriptor (close-on-exec), ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(got as RawFd) })
}

/// Why a socket could not be bound: which process, which entry, which address.
#[derive(Debug, thiserror::Error)]
#[error("process `{process}`: cannot bind `listen[{index}]` {endpoint}: {source}")]
pub struct BindError {
    pub process: String,
    pub index: usize,
    pub endpoint: String,
    pub source: io::Error,
}

/// The sockets of one process.
#[derive(Debug)]
pub struct Bound {
    /// What `listen` said when they were bound.
    pub spec: Vec<String>,
    pub endpoints: Vec<Endpoint>,
    /// `LISTEN_FDNAMES`.
    pub names: String,
    pub fds: Vec<OwnedFd>,
    /// Device and inode of each unix socket file, so only our own file is removed.
    files: Vec<Option<(u64, u64)>>,
}

impl Bound {
    pub fn raw_fds(&self) -> Vec<RawFd> {
        self.fds.iter().map(AsRawFd::as_raw_fd).collect()
    }
}

impl Bound {
    /// Removes the unix socket files this bound created (still the same inode), except those of
    /// `keep`.
    fn remove_files(&self, keep: &[Endpoint]) {
        for (endpoint, file) in self.endpoints.iter().zip(&self.files) {
            if let (Endpoint::Unix(path), Some(id)) = (endpoint, file)
                && !keep.contains(endpoint)
                && std::fs::symlink_metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == *id)
            {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Every bound socket of the daemon, by process name.
#[derive(Debug, Default)]
pub struct Sockets {
    by_process: RefCell<BTreeMap<String, Rc<Bound>>>,
    /// Processes whose sockets live on in instances of a previous daemon but could not be
    /// taken back: their next bind replaces what those hold ([`bind_again`]).
    lost: RefCell<std::collections::BTreeSet<String>>,
}

/// The parsed entries of a definition (the loader and the daemon checked them).
fn parsed(def: &ProcessDef) -> Result<Vec<Listen>, String> {
    def.listen.iter().map(|t| Listen::parse(t).map_err(|e| format!("`listen` {t}: {e}"))).collect()
}

impl Sockets {
    /// Binds what the definitions declare and is not bound yet (or bound to something else),
    /// all or nothing: on a failure, nothing changes.
    pub fn ensure(&self, defs: &[&ProcessDef]) -> Result<(), BindError> {
        let mut fresh: Vec<(String, Bound)> = Vec::new();
        for def in defs {
            if def.listen.is_empty() || self.current(def).is_some() {
                continue;
            }
            let pending: Vec<(&str, &[Endpoint])> =
                fresh.iter().map(|(n, b)| (n.as_str(), b.endpoints.as_slice())).collect();
            match self.bind_all(def, &pending) {
                Ok(b) => fresh.push((def.name.clone(), b)),
                Err(e) => {
                    for (name, b) in &fresh {
                        b.remove_files(&self.endpoints_of(name));
                    }
                    return Err(e);
                }
            }
        }
        for (name, bound) in fresh {
            self.install(name, bound);
        }
        Ok(())
    }

    /// The sockets of `def` as it is now, bound here if needed; `None` without `listen`.
    pub fn for_spawn(&self, def: &ProcessDef) -> Result<Option<Rc<Bound>>, String> {
        if def.listen.is_empty() {
            return Ok(None);
        }
        if let Some(b) = self.current(def) {
            return Ok(Some(b));
        }
        let bound = self.bind_all(def, &[]).map_err(|e| e.to_string())?;
        Ok(Some(self.install(def.name.clone(), bound)))
    }

    /// Puts `bound` in place of what `name` had; the unix files of addresses it no longer has
    /// are removed.
    fn install(&self, name: String, bound: Bound) -> Rc<Bound> {
        let bound = Rc::new(bound);
        if let Some(old) = self.by_process.borrow_mut().insert(name, bound.clone()) {
            old.remove_files(&bound.endpoints);
        }
        bound
    }

    fn endpoints_of(&self, name: &str) -> Vec<Endpoint> {
        self.by_process.borrow().get(name).map(|b| b.endpoints.clone()).unwrap_or_default()
    }

    /// What is bound for `def`'s process, when it matches its `listen`.
    fn current(&self, def: &ProcessDef) -> Option<Rc<Bound>> {
        self.by_process.borrow().get(&def.name).filter(|b| b.spec == def.listen).cloned()
    }

    /// Binds every socket of `def` (keeping those its process already has); `pending` are
    /// sockets bound for other processes in the same request, not installed yet.
    fn bind_all(&self, def: &ProcessDef, pending: &[(&str, &[Endpoint])]) -> Result<Bound, BindError> {
        let entries = parsed(def).map_err(|e| BindError {
            process: def.name.clone(),
            index: 0,
            endpoint: String::new(),
            source: io::Error::new(io::ErrorKind::InvalidInput, e),
        })?;
        // A socket this process already has for the same address is kept as it is; a socket
        // another process holds is not taken (SO_REUSEPORT would let both bind).
        let previous = self.by_process.borrow().get(&def.name).cloned();
        let mut fds = Vec::with_capacity(entries.len());
        let mut files = Vec::with_capacity(entries.len());
        let mut created: Vec<PathBuf> = Vec::new();
        for (index, l) in entries.iter().enumerate() {
            let err = |source| BindError {
                process: def.name.clone(),
                index,
                endpoint: l.endpoint.to_string(),
                source,
            };
            let pending_holder =
                pending.iter().find(|(_, eps)| eps.contains(&l.endpoint)).map(|(n, _)| n.to_string());
            if let Some(other) = self.holder_of(&l.endpoint).or(pending_holder).filter(|o| *o != def.name) {
                for p in &created {
                    let _ = std::fs::remove_file(p);
                }
                return Err(err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("process `{other}` listens on it"),
                )));
            }
            let kept = previous.as_ref().and_then(|p| {
                let i = p.endpoints.iter().position(|e| *e == l.endpoint)?;
                p.fds[i].try_clone().ok().map(|fd| (fd, p.files[i]))
            });
            let (fd, file) = match kept {
                Some(k) => k,
                None => {
                    let again = self.lost.borrow().contains(&def.name);
                    let fd = match if again { bind_again(&l.endpoint) } else { bind(&l.endpoint) } {
                        Ok(fd) => fd,
                        Err(e) => {
                            for p in &created {
                                let _ = std::fs::remove_file(p);
                            }
                            return Err(err(e));
                        }
                    };
                    if let Endpoint::Unix(p) = &l.endpoint {
                        created.push(p.clone());
                    }
                    tracing::info!(process = %def.name, "bound {}", l.endpoint);
                    let file = match &l.endpoint {
                        Endpoint::Unix(p) => std::fs::symlink_metadata(p).ok().map(|m| (m.dev(), m.ino())),
                        Endpoint::Tcp(_) => None,
                    };
                    (fd, file)
                }
            };
            fds.push(fd);
            files.push(file);
        }
        let names = entries.iter().map(|l| l.fd_name(&def.name)).collect::<Vec<_>>().join(":");
        let endpoints = entries.into_iter().map(|l| l.endpoint).collect();
        self.lost.borrow_mut().remove(&def.name);
        Ok(Bound { spec: def.listen.clone(), endpoints, names, fds, files })
    }

    /// The process holding a socket on `endpoint`.
    fn holder_of(&self, endpoint: &Endpoint) -> Option<String> {
        self.by_process.borrow().iter().find(|(_, b)| b.endpoints.contains(endpoint)).map(|(n, _)| n.clone())
    }

    /// Takes back the sockets of `def` from a process of it that a previous daemon started and
    /// that still runs (its descriptors 3 onwards), when they are not bound here yet. True when
    /// every one was recovered.
    pub fn recover_from(&self, def: &ProcessDef, pid: u32) -> bool {
        if def.listen.is_empty() || self.current(def).is_some() {
            return true;
        }
        let Ok(entries) = parsed(def) else { return false };
        let mut fds = Vec::with_capacity(entries.len());
        for (i, l) in entries.iter().enumerate() {
            match take_from(pid, 3 + i as RawFd) {
                Ok(fd) if is_listening_on(fd.as_raw_fd(), &l.endpoint) => fds.push(fd),
                Ok(_) => {
                    self.lost.borrow_mut().insert(def.name.clone());
                    return false;
                }
                Err(e) => {
                    tracing::info!(process = %def.name, pid, "cannot take its sockets back ({e}): they will be bound again");
                    self.lost.borrow_mut().insert(def.name.clone());
                    return false;
                }
            }
        }
        let files = entries
            .iter()
            .map(|l| match &l.endpoint {
                Endpoint::Unix(p) => std::fs::symlink_metadata(p).ok().map(|m| (m.dev(), m.ino())),
                Endpoint::Tcp(_) => None,
            })
            .collect();
        let names = entries.iter().map(|l| l.fd_name(&def.name)).collect::<Vec<_>>().join(":");
        let endpoints = entries.into_iter().map(|l| l.endpoint).collect();
        let bound = Bound { spec: def.listen.clone(), endpoints, names, fds, files };
        self.install(def.name.clone(), bound);
        tracing::info!(process = %def.name, pid, "took its listening sockets back");
        true
    }

    /// Closes the sockets of `process` (and removes its unix socket files).
    pub fn release(&self, process: &str) {
        let removed = self.by_process.borrow_mut().remove(process);
        if let Some(b) = removed {
            b.remove_files(&[]);
            tracing::info!(process, "listening sockets closed");
        }
    }

    /// Closes every socket (the daemon shuts down).
    pub fn release_all(&self) {
        let all = std::mem::take(&mut *self.by_process.borrow_mut());
        for b in all.values() {
            b.remove_files(&[]);
        }
    }

    /// The processes that hold sockets.
    pub fn processes(&self) -> Vec<String> {
        self.by_process.borrow().keys().cloned().collect()
    }

    /// What `info` shows: each address bound for `process` and its name.
    pub fn listed(&self, process: &str) -> Vec<(String, String)> {
        let map = self.by_process.borrow();
        let Some(b) = map.get(process) else { return Vec::new() };
        b.endpoints.iter().zip(b.names.split(':')).map(|(e, n)| (e.to_string(), n.to_string())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_bad_ones_say_why() {
        let l = Listen::parse("tcp://127.0.0.1:8080").expect("v4");
        assert_eq!(l.endpoint, Endpoint::Tcp("127.0.0.1:8080".parse().expect("addr")));
        assert_eq!(l.fd_name("web"), "web");
        let l = Listen::parse("tcp://[::1]:80?name=http").expect("v6");
        assert_eq!(l.endpoint.to_string(), "tcp://[::1]:80");
        assert_eq!(l.fd_name("web"), "http");
        let l = Listen::parse("tcp://localhost:8080").expect("localhost");
        assert_eq!(l.endpoint.to_string(), "tcp://127.0.0.1:8080");
        let l = Listen::parse("tcp://:8080").expect("any");
        assert_eq!(l.endpoint.to_string(), "tcp://0.0.0.0:8080");
        let l = Listen::parse("unix:/run/app.sock").expect("unix");
        assert_eq!(l.endpoint, Endpoint::Unix("/run/app.sock".into()));
        for (bad, why) in [
            ("tcp://127.0.0.1:99999", "not an IP address and port"),
            ("tcp://localhost:99999", "not an IP address and port"),
            ("tcp://example.com:80", "not an IP address and port"),
            ("http://127.0.0.1:80", "must start with"),
            ("unix:relative.sock", "must be absolute"),
            ("unix:/a\0b", "NUL"),
            ("tcp://127.0.0.1:80?port=1", "unknown option"),
            ("tcp://127.0.0.1:80?name=a:b", "may only hold"),
            ("tcp://127.0.0.1:80?name=", "1 to 255"),
        ] {
            let e = Listen::parse(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
        let long = format!("unix:/{}", "a".repeat(4096));
        assert!(Listen::parse(&long).expect_err("long").contains("more than the 107"));
        let list: Vec<String> = vec!["tcp://127.0.0.1:1".into(), "tcp://127.0.0.1:1".into(), "nope".into()];
        let p = problems(&list);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].0, "listen[1]");
        assert!(problems(&vec!["tcp://127.0.0.1:1".to_string(); MAX_LISTEN + 1])[0].1.contains("at most"));
    }

    #[test]
    fn a_bound_socket_is_recognized_and_a_taken_port_refused() {
        let e = Endpoint::Tcp("127.0.0.1:0".parse().expect("addr"));
        let fd = bind(&e).expect("bind");
        // The kernel chose the port: find it through std.
        let dup = fd.try_clone().expect("dup");
        let l = std::net::TcpListener::from(dup);
        let port = l.local_addr().expect("addr").port();
        let real = Endpoint::Tcp(SocketAddr::from(([127, 0, 0, 1], port)));
        assert!(is_listening_on(fd.as_raw_fd(), &real));
        assert!(!is_listening_on(
            fd.as_raw_fd(),
            &Endpoint::Tcp(SocketAddr::from(([127, 0, 0, 1], port ^ 1)))
        ));
        // A plain listener (no SO_REUSEPORT) on a port makes the bind fail.
        let plain = std::net::TcpListener::bind("127.0.0.1:0").expect("plain");
        let taken = Endpoint::Tcp(plain.local_addr().expect("addr"));
        assert_eq!(bind(&taken).expect_err("taken").kind(), io::ErrorKind::AddrInUse);
        // Beside our own socket (SO_REUSEPORT on both), a second bind succeeds: how a daemon
        // that could not take its socket back binds again while old instances hold it.
        let beside = bind_again(&real).expect("beside");
        assert!(is_listening_on(beside.as_raw_fd(), &real));
    }

    #[test]
    fn unix_sockets_replace_stale_files_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.sock");
        let e = Endpoint::Unix(path.clone());
        let fd = bind(&e).expect("bind");
        assert!(is_listening_on(fd.as_raw_fd(), &e));
        assert_eq!(bind(&e).expect_err("in use").kind(), io::ErrorKind::AddrInUse);
        // A socket nobody can take back is replaced when asked.
        let second = bind_again(&e).expect("replace");
        assert!(is_listening_on(second.as_raw_fd(), &e));
        drop(second);
        drop(fd);
        // The file is left behind, and nothing listens: it is replaced.
        assert!(path.exists());
        let _again = bind(&e).expect("rebind over a stale file");
        std::fs::remove_file(&path).expect("rm");
        std::fs::write(&path, "x").expect("file");
        assert_eq!(bind(&e).expect_err("not a socket").kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn the_registry_binds_once_and_all_or_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut def = ProcessDef::new("web", "true", dir.path().to_path_buf());
        def.listen = vec![format!("unix:{}", dir.path().join("a.sock").display())];
        let s = Sockets::default();
        s.ensure(&[&def]).expect("bind");
        let first = s.for_spawn(&def).expect("bound").expect("some");
        let again = s.for_spawn(&def).expect("bound").expect("some");
        assert!(Rc::ptr_eq(&first, &again), "bound once");
        assert_eq!(s.listed("web").len(), 1);
        // Another process on the same address is refused, and nothing of it is kept.
        let mut other = ProcessDef::new("api", "true", dir.path().to_path_buf());
        other.listen = vec![format!("unix:{}", dir.path().join("b.sock").display()), def.listen[0].clone()];
        let e = s.ensure(&[&other]).expect_err("taken");
        assert_eq!(e.index, 1);
        assert!(e.to_string().contains("process `web` listens on it"), "{e}");
        assert!(s.listed("api").is_empty());
        // Two new processes on one address in the same request: the second is refused.
        let mut x = ProcessDef::new("x", "true", dir.path().to_path_buf());
        x.listen = vec![format!("unix:{}", dir.path().join("c.sock").display())];
        let mut y = x.clone();
        y.name = "y".into();
        let e = s.ensure(&[&x, &y]).expect_err("shared");
        assert!(e.to_string().contains("process `x` listens on it"), "{e}");
        assert!(s.listed("x").is_empty() && !dir.path().join("c.sock").exists(), "nothing kept");
        drop((first, again));
        s.release("web");
        assert!(!dir.path().join("a.sock").exists(), "the file goes with the socket");
    }
}
