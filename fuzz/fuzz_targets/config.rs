//! Any bytes as `pm3.toml`: the loader returns a config or located errors, never panics, and
//! what a person reads (`render`) shows every problem at the same place as the one-line form.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// `LINE:COL` at the start of `rest`, both at least 1.
fn place(rest: &str) -> Option<(u32, u32)> {
    let mut parts = rest.splitn(3, ':');
    let line = parts.next()?.parse::<u32>().ok()?;
    let col: String = parts.next()?.chars().take_while(char::is_ascii_digit).collect();
    let col = col.parse::<u32>().ok()?;
    (line > 0 && col > 0).then_some((line, col))
}

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
            let prefix = format!("{}:", path.display());
            let text = e.to_string();
            let places: Vec<_> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.strip_prefix(&prefix).and_then(place))
                .collect();
            assert!(places.iter().all(Option::is_some), "{text}");

            let rendered = e.render(false);
            let lines: Vec<&str> = rendered.lines().collect();
            let closing = format!("error: could not load {}: {} error", path.display(), places.len());
            assert!(lines.last().is_some_and(|l| l.starts_with(&closing)), "{rendered}");
            let shown: Vec<_> = lines
                .windows(2)
                .filter(|w| w[0].starts_with("error: "))
                .map(|w| {
                    w[1].trim_start()
                        .strip_prefix("--> ")
                        .and_then(|a| a.strip_prefix(&prefix))
                        .and_then(place)
                })
                .collect();
            assert_eq!(shown, places, "{rendered}");
        }
    });
});
