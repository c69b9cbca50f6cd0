//! Any bytes as `pm3.toml`: the loader returns a config or located errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static DIR: std::path::PathBuf = {
            let dir = std::env::temp_dir().join(format!("pm3-fuzz-{}", std::process::id()));
            let _ = std::fs::create_dir_all(&dir);
            dir
        };
    }
    DIR.with(|dir| {
        let path = dir.join("pm3.toml");
        if std::fs::write(&path, data).is_ok()
            && let Err(e) = pm3::config::load(&path, None)
        {
            let text = e.to_string();
            let prefix = format!("{}:", path.display());
            assert!(text.lines().filter(|l| !l.trim().is_empty()).all(|l| l.starts_with(&prefix)), "{text}");
        }
    });
});
