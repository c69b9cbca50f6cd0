//! The README as a newcomer reads it: its set-up line works the first time, and every TOML
//! snippet in it loads through the real config loader.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{BIN, Pm3, run_with_timeout, stderr, stdout};

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The fenced blocks of `lang` in `text`, in order.
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_start() == format!("```{lang}") => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_start() == "```" => out.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create dir");
    for e in fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// The README's set-up line, run as written (after the install, which puts `pm3` on the PATH:
/// here the binary under test is), in a fresh copy of the repository's `examples/` with its own
/// `PM3_HOME`. The curl must answer on the first try.
#[test]
fn the_readme_set_up_line_works_the_first_time() {
    let line = blocks(&readme(), "sh").into_iter().next().expect("a ```sh block in the README");
    let line = line.trim();
    let rest = line
        .strip_prefix("./install.sh && ")
        .unwrap_or_else(|| panic!("the set-up line installs first: {line}"));
    assert!(rest.contains("curl localhost:3001"), "{rest}");
    // The example listens on 3000-3003, as the README says; elsewhere taken, the test says so.
    if let Some(port) = (3000..3004).find(|p| TcpListener::bind(("127.0.0.1", *p)).is_err()) {
        eprintln!("skipped: port {port} is taken on this machine");
        return;
    }
    let pm3 = Pm3::new();
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"), &pm3.root.join("examples"));
    let bin_dir: PathBuf = pm3.root.join("bin");
    fs::create_dir_all(&bin_dir).expect("bin dir");
    std::os::unix::fs::symlink(BIN, bin_dir.join("pm3")).expect("link pm3");
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(rest)
        .current_dir(&pm3.root)
        .env("PATH", path)
        .env("PM3_HOME", &pm3.home)
        .env("NO_COLOR", "1");
    let out = run_with_timeout(cmd, std::time::Duration::from_secs(60)).expect("the set-up line ends");
    for name in ["web:0", "web:1", "web:2", "web:3", "worker:0", "worker:1"] {
        let _ = pm3.row(name);
    }
    assert!(
        out.status.success() && stdout(&out).contains("hello from instance 1 of 4"),
        "the set-up line failed the first time:\n--- stdout\n{}\n--- stderr\n{}\n{}",
        stdout(&out),
        stderr(&out),
        pm3.diagnostics()
    );
    assert!(stdout(&out).contains("worker:1"), "pm3 list shows the workers: {}", stdout(&out));
}

/// Every ```toml snippet of the README loads through the real config loader (each in a fresh
/// directory; a snippet that names files, like `server.py`, needs no file to load).
#[test]
fn every_toml_snippet_in_the_readme_loads() {
    let snippets = blocks(&readme(), "toml");
    assert!(!snippets.is_empty(), "the README has TOML snippets");
    for (i, text) in snippets.iter().enumerate() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pm3.toml");
        fs::write(&path, text).expect("write snippet");
        if let Err(e) = pm3::config::load(&path, None) {
            panic!("README TOML snippet #{} does not load:\n{text}\n{e}", i + 1);
        }
    }
}
