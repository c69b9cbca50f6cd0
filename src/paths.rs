//! Where pm3 keeps its files: the data directory (`$PM3_HOME`, else `$XDG_DATA_HOME/pm3`, else
//! `~/.local/share/pm3`) and everything inside it. Creating it 0700, refusing one another user
//! owns or could write to (symlinks resolved, and a symlink someone else owns), and creating
//! files in it 0600 happen here, for the CLI and the daemon alike.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The data directory and the files in it.
#[derive(Debug, Clone)]
pub struct Paths {
    pub home: PathBuf,
}

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    #[error("cannot find a data directory: set PM3_HOME or HOME")]
    NoHome,
    #[error("cannot create data directory {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error(
        "refusing to use {path}: it is owned by uid {owner}, not by you (uid {me}); use a directory of your own (set PM3_HOME)"
    )]
    NotOwner { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "refusing to use {path}: the symlink is owned by uid {owner}, not by you (uid {me}); remove it or set PM3_HOME to a directory of your own"
    )]
    LinkNotOwner { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "refusing to use {path}: it is writable by {who} (mode {mode:04o}); fix it with `chmod 700 {path}`"
    )]
    Writable { path: PathBuf, who: &'static str, mode: u32 },
    #[error("{path} is not a directory")]
    NotDir { path: PathBuf },
}

impl Paths {
    /// Resolves the data directory from the environment, without touching the disk.
    pub fn from_env() -> Result<Paths, PathsError> {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let home = if let Some(h) = var("PM3_HOME") {
            h
        } else if let Some(x) = var("XDG_DATA_HOME") {
            x.join("pm3")
        } else if let Some(h) = var("HOME") {
            h.join(".local/share/pm3")
        } else {
            return Err(PathsError::NoHome);
        };
        let home = if home.is_absolute() {
            home
        } else {
            std::env::current_dir().map(|d| d.join(&home)).unwrap_or(home)
        };
        Ok(Paths { home })
    }

    pub fn socket(&self) -> PathBuf {
        self.home.join("pm3.sock")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.home.join("pm3.pid")
    }
    /// Held (flock) by the running daemon for its whole life: at most one daemon per directory.
    pub fn lock_file(&self) -> PathBuf {
        self.home.join("pm3.lock")
    }
    pub fn state_file(&self) -> PathBuf {
        self.home.join("state.json")
    }
    pub fn dump_file(&self) -> PathBuf {
        self.home.join("dump.json")
    }
    /// The dump `pm3 save` replaced last.
    pub fn dump_backup(&self) -> PathBuf {
        self.home.join("dump.json.bak")
    }
    pub fn daemon_log(&self) -> PathBuf {
        self.home.join("daemon.log")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.home.join("logs")
    }
    pub fn out_log(&self, name: &str) -> PathBuf {
        self.logs_dir().join(format!("{name}-out.log"))
    }
    pub fn err_log(&self, name: &str) -> PathBuf {
        self.logs_dir().join(format!("{name}-err.log"))
    }

    /// Creates the data directory (0700) and its subdirectories if needed, and refuses one
    /// that another user could enter or change (see [`Paths::check`]).
    pub fn ensure(&self) -> Result<(), PathsError> {
        ensure_private_dir(&self.home)?;
        ensure_private_dir(&self.logs_dir())?;
        Ok(())
    }

    /// Refuses the data directory when it exists and is not private to us: a symlink owned by
    /// someone else, or (symlinks resolved) a directory owned by another user or writable by
    /// group or others. Absent is fine (it is created 0700).
    pub fn check(&self) -> Result<(), PathsError> {
        check_private_dir(&self.home).map(|_| ())
    }
}

/// Opens `path` with `options`, creating it 0600 whatever the umask, and makes an existing file
/// 0600 too (one an older version created with another mode): every file pm3 keeps in its data
/// directory is readable by its user only.
pub fn open_private(path: &Path, options: &mut fs::OpenOptions) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = options.mode(0o600).open(path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

fn ensure_private_dir(path: &Path) -> Result<(), PathsError> {
    if check_private_dir(path)? {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| PathsError::Create { path: path.to_path_buf(), source })?;
    // DirBuilder's mode is filtered by the umask; make it exactly 0700.
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(|source| PathsError::Create { path: path.to_path_buf(), source })?;
    // Someone may have raced us to the name: check what is there now.
    check_private_dir(path).map(|_| ())
}

/// `Ok(true)` when `path` is a directory only we can change, `Ok(false)` when nothing is there.
fn check_private_dir(path: &Path) -> Result<bool, PathsError> {
    let me = rustix::process::geteuid().as_raw();
    let link = match fs::symlink_metadata(path) {
        Ok(link) => link,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(source) => return Err(PathsError::Create { path: path.to_path_buf(), source }),
    };
    // A symlink someone else owns could be pointed elsewhere at any time.
    if link.file_type().is_symlink() && link.uid() != me {
        return Err(PathsError::LinkNotOwner { path: path.to_path_buf(), owner: link.uid(), me });
    }
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        // A dangling symlink of ours: creating the directory goes through it.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(source) => return Err(PathsError::Create { path: path.to_path_buf(), source }),
    };
    check_meta(path, &meta, me)?;
    Ok(true)
}

fn check_meta(path: &Path, meta: &fs::Metadata, me: u32) -> Result<(), PathsError> {
    if !meta.is_dir() {
        return Err(PathsError::NotDir { path: path.to_path_buf() });
    }
    if meta.uid() != me {
        return Err(PathsError::NotOwner { path: path.to_path_buf(), owner: meta.uid(), me });
    }
    let mode = meta.mode() & 0o7777;
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "group and others",
        (true, false) => "its group",
        (false, true) => "others",
        (false, false) => return Ok(()),
    };
    Err(PathsError::Writable { path: path.to_path_buf(), who, mode })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().canonicalize().expect("canonical");
        (t, root)
    }

    #[test]
    fn created_0700_with_its_logs_dir() {
        let (_t, root) = tmp();
        let paths = Paths { home: root.join("a/home") };
        paths.ensure().expect("ensure");
        for dir in [paths.home.clone(), paths.logs_dir()] {
            let mode = fs::metadata(&dir).expect("stat").mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", dir.display());
        }
        paths.check().expect("private");
    }

    #[test]
    fn group_or_world_writable_is_refused_with_the_fix() {
        let (_t, root) = tmp();
        let home = root.join("home");
        fs::create_dir(&home).expect("mkdir");
        for (mode, who) in [(0o777, "group and others"), (0o770, "its group"), (0o703, "others")] {
            fs::set_permissions(&home, fs::Permissions::from_mode(mode)).expect("chmod");
            let err = Paths { home: home.clone() }.check().expect_err("refused").to_string();
            assert!(err.contains(&format!("writable by {who}")), "{err}");
            assert!(err.contains(&format!("chmod 700 {}", home.display())), "{err}");
        }
        // Readable by others is the user's choice, not a way in.
        fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).expect("chmod");
        Paths { home }.check().expect("0755 is accepted");
    }

    #[test]
    fn symlinks_are_resolved_before_checking() {
        let (_t, root) = tmp();
        let real = root.join("real");
        fs::create_dir(&real).expect("mkdir");
        fs::set_permissions(&real, fs::Permissions::from_mode(0o777)).expect("chmod");
        let link = root.join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let err = Paths { home: link.clone() }.check().expect_err("refused").to_string();
        assert!(err.contains("writable by group and others"), "{err}");
        fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).expect("chmod");
        Paths { home: link }.check().expect("a private target through our own link");
    }

    #[test]
    fn a_file_is_not_a_data_directory() {
        let (_t, root) = tmp();
        let file = root.join("file");
        fs::write(&file, "").expect("write");
        assert!(matches!(Paths { home: file }.check(), Err(PathsError::NotDir { .. })));
    }
}
