//! Where pm3 keeps its files: the data directory (`$PM3_HOME`, else `$XDG_DATA_HOME/pm3`, else
//! `~/.local/share/pm3`) and everything inside it. Creating it 0700 and refusing one owned by
//! another user happens here, once, for the CLI and the daemon alike.

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
    #[error("refusing to use {path}: it is owned by uid {owner}, not by you (uid {me})")]
    NotOwner { path: PathBuf, owner: u32, me: u32 },
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

    /// Creates the data directory (0700) and its subdirectories if needed, and refuses a
    /// directory owned by someone else.
    pub fn ensure(&self) -> Result<(), PathsError> {
        ensure_private_dir(&self.home)?;
        ensure_private_dir(&self.logs_dir())?;
        Ok(())
    }

    /// Refuses the data directory when it exists and belongs to another user; absent is fine.
    pub fn check_owner(&self) -> Result<(), PathsError> {
        match fs::metadata(&self.home) {
            Ok(meta) => check_meta(&self.home, &meta),
            Err(_) => Ok(()),
        }
    }
}

fn ensure_private_dir(path: &Path) -> Result<(), PathsError> {
    match fs::metadata(path) {
        Ok(meta) => check_meta(path, &meta),
        Err(_) => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(|source| PathsError::Create { path: path.to_path_buf(), source })?;
            // DirBuilder's mode is filtered by the umask; make it exactly 0700.
            fs::set_permissions(path, fs::Permissions::from_mode(0o700))
                .map_err(|source| PathsError::Create { path: path.to_path_buf(), source })
        }
    }
}

fn check_meta(path: &Path, meta: &fs::Metadata) -> Result<(), PathsError> {
    if !meta.is_dir() {
        return Err(PathsError::NotDir { path: path.to_path_buf() });
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(PathsError::NotOwner { path: path.to_path_buf(), owner: meta.uid(), me });
    }
    Ok(())
}
