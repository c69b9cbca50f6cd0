//! Rendering results for people (tables, one line per action, short durations and sizes) and
//! for scripts (`--json`). All printing of results happens here.

use std::fmt::Write as _;
use std::time::Duration;

use crate::protocol::{Action, Outcome, ProcessDetail, ProcessInfo, Report, Status};

/// `1.5s`, `42s`, `3m`, `2h`, `4d`: the largest unit that keeps it short, as pm2 does.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// A duration the way a config file writes it: `5s` when whole seconds, else `1500ms`.
pub fn config_ms(ms: u64) -> String {
    if ms >= 1000 && ms % 1000 == 0 { format!("{}s", ms / 1000) } else { format!("{ms}ms") }
}

/// A size the way a config file writes it: the largest unit that is exact (`512M`, `1G`,
/// `1536K`), bytes otherwise.
pub fn config_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")];
    UNITS
        .iter()
        .find(|(unit, _)| bytes >= *unit && bytes % unit == 0)
        .map_or_else(|| format!("{bytes}B"), |(unit, suffix)| format!("{}{suffix}", bytes / unit))
}

/// Bytes in B, KiB, MiB or GiB with one decimal past KiB.
pub fn size(bytes: u64) -> String {
    const K: f64 = 1024.0;
    let b = bytes as f64;
    if b < K {
        format!("{bytes}B")
    } else if b < K * K {
        format!("{:.0}KiB", b / K)
    } else if b < K * K * K {
        format!("{:.1}MiB", b / (K * K))
    } else {
        format!("{:.1}GiB", b / (K * K * K))
    }
}

/// The `list` table, columns aligned.
///
/// Written straight into one string, cell by cell: at 1,000 rows a `String` per padded cell
/// and a `Vec` per line were most of what `pm3 list` spent after the answer arrived.
pub fn table(rows: &[ProcessInfo], color: bool) -> String {
    let header = ["NAME", "GROUP", "STATUS", "PID", "UPTIME", "RESTARTS", "CPU", "MEM"];
    let cells: Vec<[String; 8]> = rows.iter().map(row_cells).collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line_len: usize = widths.iter().map(|w| w + 2).sum();
    let mut out = String::with_capacity((rows.len() + 2) * (line_len + 16));
    let mut line = |cols: [&str; 8], status: Option<Status>| {
        let start = out.len();
        for (i, (c, w)) in cols.iter().zip(widths).enumerate() {
            // Pad the plain text first, then color it, so escape codes do not break alignment.
            let last = i + 1 == cols.len();
            match status.filter(|_| color && i == 2) {
                Some(st) => out.push_str(&paint(st, &if last { c.to_string() } else { pad(c, w) })),
                None => {
                    out.push_str(c);
                    if !last {
                        let n = w.saturating_sub(c.chars().count()) + 2;
                        out.extend(std::iter::repeat_n(' ', n));
                    }
                }
            }
        }
        let kept = out[start..].trim_end().len();
        out.truncate(start + kept);
        out.push('\n');
    };
    line(header, None);
    for (row, r) in cells.iter().zip(rows) {
        line(row.each_ref().map(String::as_str), Some(r.status));
    }
    if rows.is_empty() {
        out.push_str("(no processes; start some with `pm3 start`)\n");
    }
    out
}

/// `text` padded with spaces to `width` characters, and the two spaces between columns.
fn pad(text: &str, width: usize) -> String {
    format!("{text:<width$}  ")
}

/// Whether to color what is written to `stream`: it is a terminal, and `NO_COLOR` is unset or
/// empty (<https://no-color.org>).
pub fn color_on(stream: &impl std::io::IsTerminal) -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && stream.is_terminal()
}

/// Colors a status the way people scan for it: green up, yellow in between, red in trouble.
pub fn paint(status: Status, text: &str) -> String {
    use owo_colors::OwoColorize;
    match status {
        Status::Online => text.green().to_string(),
        Status::Starting | Status::Waiting | Status::Stopping => text.yellow().to_string(),
        Status::Errored | Status::Unhealthy => text.red().to_string(),
        Status::Stopped => text.dimmed().to_string(),
    }
}

/// The cells of one `list` row, as the table and the TUI show them.
pub fn row_cells(r: &ProcessInfo) -> [String; 8] {
    [
        r.name.clone(),
        r.group.clone().unwrap_or_else(|| "-".into()),
        status_text(r),
        r.pid.map_or("-".into(), |p| p.to_string()),
        r.uptime_ms.map_or("-".into(), |u| duration(Duration::from_millis(u))),
        r.restarts.to_string(),
        r.cpu_percent.map_or("-".into(), |c| format!("{c:.1}%")),
        r.memory_bytes.map_or("-".into(), size),
    ]
}

/// Status as shown to people: a crashed process waiting out its delay says when it restarts.
pub fn status_text(r: &ProcessInfo) -> String {
    match (r.status, r.restart_in_ms) {
        (Status::Waiting, Some(ms)) => format!("waiting (restart in {})", short_ms(ms)),
        (s, _) => s.as_str().to_string(),
    }
}

fn short_ms(ms: u64) -> String {
    if ms < 1000 { format!("{ms}ms") } else { format!("{}s", ms.div_ceil(1000)) }
}

/// One line per process touched: `started worker:0 (pid 4242)`.
pub fn report(r: &Report) -> String {
    let mut out = String::new();
    for o in &r.processes {
        out.push_str(&outcome(o));
        out.push('\n');
    }
    out
}

fn outcome(o: &Outcome) -> String {
    let pid = o.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
    match o.action {
        Action::Started | Action::Restarted => format!("{} {}{pid}", o.action.verb(), o.name),
        Action::AlreadyRunning => match &o.detail {
            Some(d) => format!("{} already running{pid}: {d}", o.name),
            None => format!("{} already running{pid}", o.name),
        },
        Action::Waiting => format!("{} waiting for its dependencies", o.name),
        Action::Stopped | Action::Removed | Action::Flushed | Action::Saved | Action::Online => {
            format!("{} {}", o.action.verb(), o.name)
        }
        Action::AlreadyStopped => format!("{} already stopped", o.name),
        Action::Signalled => {
            format!("signalled {} with {}{pid}", o.name, o.detail.as_deref().unwrap_or("a signal"))
        }
        Action::Failed => format!("failed {}: {}", o.name, o.detail.as_deref().unwrap_or("unknown error")),
    }
}

/// `pm3 info` for people: one `key: value` per line.
pub fn detail(d: &ProcessDetail) -> String {
    let i = &d.info;
    let mut out = String::new();
    let mut kv = |k: &str, v: String| {
        let _ = writeln!(out, "{k:<12} {v}");
    };
    kv("name", i.name.clone());
    kv("status", status_text(i));
    kv("pid", i.pid.map_or("-".into(), |p| p.to_string()));
    kv("uptime", i.uptime_ms.map_or("-".into(), |u| duration(Duration::from_millis(u))));
    kv("restarts", i.restarts.to_string());
    if let Some(last) = &d.last_exit {
        let how = match (&last.exit_code, &last.exit_signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by {s}"),
            (None, None) => "unknown status".into(),
        };
        let ago = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH + Duration::from_millis(last.at_ms))
            .map(|d| format!(", {} ago", duration(d)))
            .unwrap_or_default();
        kv("last exit", format!("{how} ({}{ago})", last.reason));
        for line in &last.stderr {
            kv("  stderr", line.clone());
        }
    }
    if let Some(e) = &d.error {
        kv("error", e.clone());
    }
    kv("cpu", i.cpu_percent.map_or("-".into(), |c| format!("{c:.1}%")));
    kv("memory", i.memory_bytes.map_or("-".into(), size));
    kv("group", i.group.clone().unwrap_or_else(|| "-".into()));
    kv("instance", i.instance.map_or("-".into(), |n| format!("{n} of {}", i.instances)));
    kv("config", i.config.display().to_string());
    kv("command", d.command.clone());
    if !d.config_changed.is_empty() {
        kv("file changed", format!("{}: restart to apply", d.config_changed.join(", ")));
        if let Some(c) = &d.file_command {
            kv("  file says", c.clone());
        }
    }
    if let Some(e) = &d.env_name {
        kv("--env", e.clone());
    }
    kv("argv", shell_words::join(&d.argv));
    for l in &d.listen {
        let state = if l.bound { "bound" } else { "not bound" };
        kv("listen", format!("{} (fd {}, name {}, {state})", l.address, l.fd, l.name));
    }
    kv("cwd", d.cwd.display().to_string());
    if let Some(h) = &d.health_check {
        let state = d.health_error.as_ref().map(|e| format!(" (last probe: {e})")).unwrap_or_default();
        kv("health", format!("{h}{state}"));
    }
    kv(
        "restart",
        format!(
            "{} (max_restarts {}, min_uptime {}, restart_delay {})",
            d.restart.as_str(),
            d.max_restarts,
            config_ms(d.min_uptime_ms),
            config_ms(d.restart_delay_ms)
        ),
    );
    if let Some(m) = d.max_memory {
        kv("max_memory", config_size(m));
    }
    if let Some(w) = &d.watch {
        kv("watch", w.display().to_string());
    }
    if let Some(c) = &d.cron_restart {
        kv("cron", c.clone());
    }
    if let Some(h) = &d.pre_start {
        kv("pre_start", h.clone());
    }
    if let Some(h) = &d.post_stop {
        kv("post_stop", h.clone());
    }
    kv("depends on", if d.depends_on.is_empty() { "-".into() } else { d.depends_on.join(", ") });
    kv("kill", format!("{} then SIGKILL after {}", d.kill_signal, config_ms(d.kill_timeout_ms)));
    kv("out log", d.out_log.display().to_string());
    kv("err log", d.err_log.display().to_string());
    for g in &d.log_gaps {
        let now = if g.ongoing { ", still dropping" } else { "" };
        kv(
            "log gap",
            format!(
                "{}: {} dropped ({}, {} time(s){now})",
                g.log.display(),
                size(g.dropped_bytes),
                g.reason,
                g.episodes
            ),
        );
    }
    out.push_str("env\n");
    for (k, v) in &d.env {
        let _ = writeln!(out, "  {k}={v}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TUI's fixture row, without a group.
    fn row(name: &str, status: Status, pid: Option<u32>) -> ProcessInfo {
        crate::cli::tui::app::tests::row(name, None, status, pid)
    }

    #[test]
    fn the_table_aligns_columns_and_trims_line_ends() {
        let rows = [row("web", Status::Online, Some(4242)), row("a-long-worker", Status::Stopped, None)];
        assert_eq!(
            table(&rows, false),
            "NAME           GROUP  STATUS   PID   UPTIME  RESTARTS  CPU   MEM\n\
             web            -      online   4242  42s     0         1.5%  10.0MiB\n\
             a-long-worker  -      stopped  -     -       0         -     -\n"
        );
        // Colored, the status cell is padded first, so the columns still line up.
        let colored = table(&rows, true);
        assert!(colored.contains(&format!("{}4242", paint(Status::Online, "online   "))), "{colored}");
        assert_eq!(
            table(&[], false),
            "NAME  GROUP  STATUS  PID  UPTIME  RESTARTS  CPU  MEM\n(no processes; start some with `pm3 start`)\n"
        );
    }

    #[test]
    fn durations_and_sizes_read_well() {
        assert_eq!(duration(Duration::from_secs(42)), "42s");
        assert_eq!(duration(Duration::from_secs(180)), "3m");
        assert_eq!(duration(Duration::from_secs(7200)), "2h");
        assert_eq!(duration(Duration::from_secs(3 * 86400)), "3d");
        assert_eq!(size(512), "512B");
        assert_eq!(size(10 * 1024), "10KiB");
        assert_eq!(size(10_502_144), "10.0MiB");
    }

    #[test]
    fn config_spellings_read_like_the_file() {
        assert_eq!(config_ms(5000), "5s");
        assert_eq!(config_ms(1500), "1500ms");
        assert_eq!(config_ms(0), "0ms");
        assert_eq!(config_size(512 << 20), "512M");
        assert_eq!(config_size(1 << 30), "1G");
        assert_eq!(config_size(1536 << 10), "1536K");
        assert_eq!(config_size(1000), "1000B");
    }
}
