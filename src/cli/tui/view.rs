//! Drawing the TUI: a pure function of [`App`] onto a ratatui frame. The process table on top,
//! the selected process's log below, a status line and the key help at the bottom, and the help
//! overlay on `?`. ratatui diffs frames, so redrawing writes only the cells that changed.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Clear, HighlightSpacing, Paragraph, Row, Table, TableState};

use super::app::{App, Mode, Notice, Stream};
use crate::cli::output::row_cells as cells;
use crate::protocol::{ProcessInfo, Status};

/// The key help at the bottom, with the scope and what it names for the selection
/// (`g scope: group (backend)`); on a narrow screen, the keys `?` lists anyway go first.
pub fn help_line(app: &App, width: usize) -> String {
    let scope = match app.target() {
        Some(target) => format!("g scope: {} ({target})", app.scope.label()),
        None => format!("g scope: {}", app.scope.label()),
    };
    let full = [
        "↑↓/jk select",
        "s stop",
        "S start",
        "r restart",
        "l reload",
        &scope,
        "/ filter",
        "? help",
        "q quit",
    ];
    let short = ["s stop", "S start", "r restart", "l reload", &scope, "? help", "q quit"];
    let shortest = [scope.as_str(), "? help", "q quit"];
    [&full[..], &short[..], &shortest[..]]
        .iter()
        .map(|items| items.join("  "))
        .find(|line| line.chars().count() <= width)
        .unwrap_or_else(|| shortest.join("  "))
}

const HELP: &[(&str, &str)] = &[
    ("↑ ↓  j k", "select a process (PgUp PgDn Home End jump)"),
    ("s", "stop the selection"),
    ("S", "start the selection"),
    ("r", "restart the selection"),
    ("l", "reload the selection (rolling restart)"),
    ("g", "scope of s/S/r/l: instance → process → group"),
    ("/", "filter by name; Enter keeps it, Esc clears it"),
    ("?", "this help; any key closes it"),
    ("q  Esc  Ctrl-C", "quit"),
];

pub fn render(frame: &mut Frame<'_>, app: &App) {
    let area = frame.area();
    let visible = app.visible();
    let wanted = visible.len().max(1) as u16 + 3;
    let table_height = wanted.min(area.height.saturating_mul(3) / 5).max(4);
    let [table_area, log_area, status_area, help_area] = Layout::vertical([
        Constraint::Length(table_height),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    render_table(frame, app, &visible, table_area);
    render_logs(frame, app, log_area);
    frame.render_widget(Paragraph::new(status_line(app)), status_area);
    frame.render_widget(Paragraph::new(help_spans(app, help_area.width)), help_area);
    if app.mode == Mode::Help {
        render_help(frame, area);
    }
}

fn render_table(frame: &mut Frame<'_>, app: &App, visible: &[&ProcessInfo], area: Rect) {
    let mut title = format!(" pm3 · {} ", count(app.rows.len(), "process", "processes"));
    if !app.filter.is_empty() {
        title.push_str(&format!("· {} shown · filter: {} ", visible.len(), app.filter));
    }
    let mut block = Block::bordered().title(title);
    if app.loaded && app.offline.is_some() {
        let warn = if app.color { Style::new().fg(Color::Red) } else { Style::new() };
        block = block.title(Line::styled(" daemon unreachable: last known state ", warn));
    }
    let header = ["NAME", "GROUP", "STATUS", "PID", "UPTIME", "RESTARTS", "CPU", "MEM"];
    let cells: Vec<[String; 8]> = visible.iter().map(|r| cells(r)).collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    // Inside the borders, after the highlight symbol.
    let room = usize::from(area.width).saturating_sub(2 + HIGHLIGHT.chars().count());
    let columns = fit_columns(widths, room);
    if visible.is_empty() {
        let text = if !app.loaded {
            match &app.offline {
                Some(_) => "(cannot list processes)".to_string(),
                None => "connecting to the daemon…".to_string(),
            }
        } else if app.rows.is_empty() {
            "(no processes; start some with `pm3 start`)".to_string()
        } else {
            format!("(no process name contains `{}`)", app.filter)
        };
        frame.render_widget(Paragraph::new(text).style(dim()).block(block), area);
        return;
    }
    let rows = visible.iter().zip(cells).map(|(r, c)| {
        let status_style = if app.color { Style::new().fg(status_color(r.status)) } else { Style::new() };
        Row::new(columns.iter().map(|&(i, _)| {
            let cell = Cell::from(c[i].clone());
            if i == STATUS { cell.style(status_style) } else { cell }
        }))
    });
    let table = Table::new(rows, columns.iter().map(|&(_, w)| Constraint::Length(w as u16)))
        .header(
            Row::new(columns.iter().map(|&(i, _)| header[i]))
                .style(Style::new().add_modifier(Modifier::BOLD)),
        )
        .column_spacing(SPACING as u16)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol(HIGHLIGHT)
        .highlight_spacing(HighlightSpacing::Always)
        .block(block);
    let mut state = TableState::default().with_selected(app.selected_index());
    frame.render_stateful_widget(table, area, &mut state);
}

const STATUS: usize = 2;
const PID: usize = 3;
const SPACING: usize = 2;
const HIGHLIGHT: &str = "> ";

/// The columns (index, width) that fit in `room` cells, given the width each needs. A narrow
/// screen drops GROUP, CPU, RESTARTS, MEM and UPTIME, in that order, before it cuts anything;
/// then NAME and STATUS are cut, the wider first (STATUS on a tie). PID is never cut: `266` for pid 26623 would
/// name another process.
fn fit_columns(widths: [usize; 8], room: usize) -> Vec<(usize, usize)> {
    const DROP_ORDER: [usize; 5] = [1, 6, 5, 7, 4];
    let total = |cols: &[(usize, usize)]| {
        cols.iter().map(|&(_, w)| w).sum::<usize>() + SPACING * cols.len().saturating_sub(1)
    };
    let mut cols: Vec<(usize, usize)> = widths.iter().copied().enumerate().collect();
    for drop in DROP_ORDER {
        if total(&cols) <= room {
            break;
        }
        cols.retain(|&(i, _)| i != drop);
    }
    while total(&cols) > room {
        let widest = cols.iter_mut().filter(|(i, w)| *i != PID && *w > 1).max_by_key(|(i, w)| (*w, *i));
        match widest {
            Some((_, w)) => *w -= 1,
            None => break,
        }
    }
    cols
}

fn status_color(s: Status) -> Color {
    match s {
        Status::Online => Color::Green,
        Status::Waiting | Status::Starting | Status::Stopping => Color::Yellow,
        Status::Errored | Status::Unhealthy => Color::Red,
        Status::Stopped => Color::DarkGray,
    }
}

fn render_logs(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let title = match &app.log_name {
        Some(name) => format!(" logs: {name} "),
        None => " logs ".to_string(),
    };
    let block = Block::bordered().title(title);
    let height = block.inner(area).height as usize;
    let lines: Vec<Line<'_>> = if app.logs.is_empty() {
        let text = if app.log_name.is_some() { "(no output yet)" } else { "(select a process)" };
        vec![Line::styled(text, dim())]
    } else {
        let skip = app.logs.len().saturating_sub(height);
        app.logs
            .iter()
            .skip(skip)
            .map(|l| match l.stream {
                Stream::Err if app.color => Line::styled(l.text.as_str(), Style::new().fg(Color::Red)),
                Stream::Out | Stream::Err => Line::raw(l.text.as_str()),
            })
            .collect()
    };
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The line above the key help: the filter being typed, else the last command's outcome, else
/// a lost daemon.
fn status_line(app: &App) -> Line<'_> {
    let paint = |text: String, color: Color| {
        if app.color { Span::styled(text, Style::new().fg(color)) } else { Span::raw(text) }
    };
    if app.mode == Mode::Filter {
        return Line::from(vec![
            Span::raw(format!("/{}", app.filter)),
            Span::styled("_", Style::new().add_modifier(Modifier::SLOW_BLINK)),
            Span::styled("   Enter keep · Esc clear", dim()),
        ]);
    }
    if let Some(n) = &app.notice {
        return Line::from(match n {
            Notice::Busy(t) => paint(t.clone(), Color::Yellow),
            Notice::Ok(t) => paint(t.clone(), Color::Green),
            Notice::Error(t) => paint(format!("error: {t}"), Color::Red),
        });
    }
    if let Some(e) = &app.offline {
        return Line::from(paint(format!("error: {e}"), Color::Red));
    }
    if !app.filter.is_empty() {
        return Line::styled(format!("filter: {} (/ to change)", app.filter), dim());
    }
    Line::default()
}

fn help_spans(app: &App, width: u16) -> Line<'static> {
    Line::styled(help_line(app, width as usize), dim())
}

fn render_help(frame: &mut Frame<'_>, area: Rect) {
    let key_width = HELP.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    let lines: Vec<Line<'_>> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!(" {k:<key_width$}  "), Style::new().add_modifier(Modifier::BOLD)),
                Span::raw(*what),
            ])
        })
        .collect();
    let width = lines.iter().map(Line::width).max().unwrap_or(0) as u16 + 3;
    let height = lines.len() as u16 + 2;
    let popup = centered(area, width, height);
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(" keys ")), popup);
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height }
}

fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 { format!("1 {one}") } else { format!("{n} {many}") }
}

fn dim() -> Style {
    Style::new().fg(Color::DarkGray)
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    use super::*;
    use crate::cli::tui::app::tests::sample;
    use crate::cli::tui::app::{Command, LogLine, Msg, Verb};

    /// The screen as text, one string per row.
    fn screen(app: &App) -> Vec<String> {
        let mut term = Terminal::new(TestBackend::new(100, 24)).expect("test terminal");
        term.draw(|f| render(f, app)).expect("draw");
        let buf = term.backend().buffer();
        let width = buf.area.width as usize;
        buf.content
            .chunks(width)
            .map(|row| row.iter().map(|c| c.symbol()).collect::<String>().trim_end().to_string())
            .collect()
    }

    fn line_with<'a>(screen: &'a [String], needle: &str) -> &'a str {
        screen
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{}", screen.join("\n")))
    }

    #[test]
    fn the_table_shows_names_statuses_and_pids() {
        let app = sample();
        let s = screen(&app);
        let header = line_with(&s, "NAME");
        for col in ["GROUP", "STATUS", "PID", "UPTIME", "RESTARTS", "CPU", "MEM"] {
            assert!(header.contains(col), "{header}");
        }
        let api = line_with(&s, "api");
        assert!(api.starts_with("│> api"), "the first row is selected: {api}");
        for cell in ["online", "101", "42s", "1.5%", "10.0MiB"] {
            assert!(api.contains(cell), "{cell} in {api}");
        }
        let web0 = line_with(&s, "web:0");
        assert!(web0.contains("front") && web0.contains("202"), "{web0}");
        assert!(line_with(&s, "web:1").contains("stopped"));
        assert!(line_with(&s, "worker").contains("errored"));
        assert!(line_with(&s, "pm3 · 4 processes").starts_with('┌'));
    }

    #[test]
    fn statuses_are_colored() {
        let app = sample();
        let mut term = Terminal::new(TestBackend::new(100, 24)).expect("test terminal");
        term.draw(|f| render(f, &app)).expect("draw");
        let buf = term.backend().buffer();
        let fg_of = |word: &str| {
            let s = screen(&app);
            let y = s.iter().position(|l| l.contains(word) && !l.contains("NAME")).expect("row");
            let x = s[y]
                .chars()
                .collect::<Vec<_>>()
                .windows(word.len())
                .position(|w| w.iter().collect::<String>() == word);
            buf[(x.expect("column") as u16, y as u16)].fg
        };
        assert_eq!(fg_of("online"), Color::Green);
        assert_eq!(fg_of("stopped"), Color::DarkGray);
        assert_eq!(fg_of("errored"), Color::Red);
    }

    #[test]
    fn the_log_pane_shows_the_selected_process_lines() {
        let mut app = sample();
        app.show_logs_of(Some("api".into()));
        let lines = vec![
            LogLine { stream: Stream::Out, text: "listening on :8080".into() },
            LogLine { stream: Stream::Err, text: "warning: slow query".into() },
        ];
        app.apply(Msg::Logs { name: "api".into(), lines, reset: true });
        let s = screen(&app);
        assert!(line_with(&s, "logs: api").starts_with('┌'));
        let out = s.iter().position(|l| l.contains("listening on :8080")).expect("stdout line");
        let err = s.iter().position(|l| l.contains("warning: slow query")).expect("stderr line");
        assert!(out + 1 == err, "in the order read");
    }

    #[test]
    fn the_filter_hides_rows() {
        let mut app = sample();
        for c in "/web".chars() {
            app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
        }
        let s = screen(&app);
        assert!(s.iter().any(|l| l.contains("web:0")) && s.iter().any(|l| l.contains("web:1")));
        assert!(!s.iter().any(|l| l.contains("api") || l.contains("worker")), "{}", s.join("\n"));
        assert!(line_with(&s, "2 shown · filter: web").starts_with('┌'));
        assert!(line_with(&s, "/web").contains("Enter keep"), "the filter prompt");
    }

    #[test]
    fn the_footer_shows_the_help_line_and_the_scope() {
        let mut app = sample();
        let s = screen(&app);
        let want = "s stop  S start  r restart  l reload  g scope: instance (api)  ? help  q quit";
        assert_eq!(s.last().map(String::as_str), Some(want), "100 columns: the short form");
        let full = help_line(&app, 120);
        assert!(
            full.starts_with("↑↓/jk select  s stop") && full.ends_with("/ filter  ? help  q quit"),
            "{full}"
        );
        app.on_key(KeyEvent::new(KeyCode::Char('j'), KeyModifiers::NONE));
        for (scope, target) in [("process", "web"), ("group", "front"), ("instance", "web:0")] {
            app.on_key(KeyEvent::new(KeyCode::Char('g'), KeyModifiers::NONE));
            let s = screen(&app);
            let want = format!("g scope: {scope} ({target})");
            assert!(s.last().is_some_and(|l| l.contains(&want)), "{want} in {s:?}");
        }
    }

    #[test]
    fn the_status_line_shows_progress_and_errors() {
        let mut app = sample();
        app.begin(&Command { verb: Verb::Stop, target: "web:1".into() });
        assert!(screen(&app).iter().any(|l| l == "stopping web:1…"));
        app.notify(Notice::Error("unknown process or group `x`".into()));
        assert!(screen(&app).iter().any(|l| l == "error: unknown process or group `x`"));
        app.notice = None;
        app.apply(Msg::List(Err("the daemon is not running".into())));
        let s = screen(&app);
        assert!(s.iter().any(|l| l == "error: the daemon is not running"), "{s:?}");
        assert!(line_with(&s, "daemon unreachable").starts_with('┌'), "the rows shown are stale");
        assert!(s.iter().any(|l| l.contains("web:0")), "and still shown");
    }

    #[test]
    fn help_overlay_lists_the_keys() {
        let mut app = sample();
        app.on_key(KeyEvent::new(KeyCode::Char('?'), KeyModifiers::NONE));
        let s = screen(&app);
        assert!(line_with(&s, " keys ").contains('┌'));
        line_with(&s, "restart the selection");
        app.on_key(KeyEvent::new(KeyCode::Char('x'), KeyModifiers::NONE));
        assert!(!screen(&app).iter().any(|l| l.contains(" keys ")));
    }

    #[test]
    fn a_narrow_screen_drops_columns_but_never_cuts_a_pid() {
        let mut app = sample();
        if let Some(r) = app.rows.iter_mut().find(|r| r.name == "api") {
            r.pid = Some(4_194_303);
        }
        let mut term = Terminal::new(TestBackend::new(40, 24)).expect("test terminal");
        term.draw(|f| render(f, &app)).expect("draw");
        let buf = term.backend().buffer();
        let s: Vec<String> = buf
            .content
            .chunks(40)
            .map(|row| row.iter().map(|c| c.symbol()).collect::<String>().trim_end().to_string())
            .collect();
        let header = line_with(&s, "NAME");
        assert!(header.contains("STATUS") && header.contains("PID"), "{header}");
        assert!(!header.contains("GROUP") && !header.contains("RESTARTS"), "dropped first: {header}");
        assert!(line_with(&s, "api").contains("4194303"), "{}", s.join("\n"));
        assert_eq!(fit_columns([5, 5, 24, 7, 6, 8, 4, 7], 20), [(0, 5), (2, 4), (3, 7)]);
        assert_eq!(
            fit_columns([5, 5, 6, 7, 6, 8, 4, 7], 4),
            [(0, 1), (2, 1), (3, 7)],
            "PID even past the edge"
        );
    }

    #[test]
    fn empty_and_tiny_screens_render() {
        let mut app = App::new(false);
        assert!(screen(&app).iter().any(|l| l.contains("connecting to the daemon")));
        app.apply(Msg::List(Ok(Vec::new())));
        assert!(screen(&app).iter().any(|l| l.contains("no processes")));
        let mut help = sample();
        help.mode = Mode::Help;
        for (w, h) in [(1, 1), (10, 3), (0, 0), (30, 8)] {
            let mut term = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
            term.draw(|f| render(f, &help)).expect("draw");
        }
    }
}
