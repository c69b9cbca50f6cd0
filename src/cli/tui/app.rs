//! The TUI's state and what each key does to it. Nothing here touches the terminal, the clock
//! or the daemon: the event loop (`mod.rs`) feeds in keys, daemon answers and log lines, and
//! carries out the [`Effect`]s a key asks for; `view.rs` draws the state. That keeps every
//! behaviour testable without a terminal.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::protocol::{ProcessInfo, Request};

/// How many log lines of the selected process are kept.
pub const LOG_LINES: usize = 200;

/// How long the outcome of a command stays in the footer.
const NOTICE_TTL: Duration = Duration::from_secs(6);

/// What the command keys act on: the selected instance, its whole process, or its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Instance,
    Process,
    Group,
}

impl Scope {
    fn next(self) -> Scope {
        match self {
            Scope::Instance => Scope::Process,
            Scope::Process => Scope::Group,
            Scope::Group => Scope::Instance,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Scope::Instance => "instance",
            Scope::Process => "process",
            Scope::Group => "group",
        }
    }
}

/// Where keys go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Typing a filter after `/`.
    Filter,
    /// The help overlay is shown; any key closes it.
    Help,
}

/// A command the daemon runs on a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Stop,
    Start,
    Restart,
    Reload,
}

impl Verb {
    /// `stopping`, for the footer while the request runs.
    pub fn progressive(self) -> &'static str {
        match self {
            Verb::Stop => "stopping",
            Verb::Start => "starting",
            Verb::Restart => "restarting",
            Verb::Reload => "reloading",
        }
    }

    /// `stop`, as the command is called.
    pub fn name(self) -> &'static str {
        match self {
            Verb::Stop => "stop",
            Verb::Start => "start",
            Verb::Restart => "restart",
            Verb::Reload => "reload",
        }
    }

    /// The request, with the config the daemon already has.
    pub fn request(self, targets: Vec<String>) -> Request {
        match self {
            Verb::Stop => Request::Stop { targets },
            Verb::Start => Request::Start { config: None, targets },
            Verb::Restart => Request::Restart { config: None, targets },
            Verb::Reload => Request::Reload { config: None, targets },
        }
    }
}

/// A command on a target (an instance, process or group name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub verb: Verb,
    pub target: String,
}

/// What a key asks the event loop to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Quit,
    Send(Command),
}

/// Which file a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub stream: Stream,
    pub text: String,
}

/// What the background threads report to the event loop.
#[derive(Debug)]
pub enum Msg {
    /// A fresh `list`, or why there is none.
    List(Result<Vec<ProcessInfo>, String>),
    /// A command finished: one line saying what happened, or the error.
    Done { cmd: Command, result: Result<String, String> },
    /// Log lines of `name`; `reset` replaces what is shown (the first read after a switch).
    Logs { name: String, lines: Vec<LogLine>, reset: bool },
}

/// The footer's transient message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A request is running (`stopping web:1…`).
    Busy(String),
    Ok(String),
    Error(String),
}

pub struct App {
    /// Every process, in the daemon's order.
    pub rows: Vec<ProcessInfo>,
    /// The selected process (by name, so it survives refreshes and filtering).
    pub selected: Option<String>,
    /// Where the selection was, to land nearby when the selected row goes away.
    hint: usize,
    pub scope: Scope,
    pub filter: String,
    pub mode: Mode,
    /// The process whose lines `logs` holds.
    pub log_name: Option<String>,
    pub logs: VecDeque<LogLine>,
    pub notice: Option<Notice>,
    notice_until: Option<Instant>,
    /// Requests still running.
    pub busy: usize,
    /// Why the last `list` failed, until one succeeds.
    pub offline: Option<String>,
    /// False until the first `list` answer.
    pub loaded: bool,
    /// Color the statuses (off under `NO_COLOR`).
    pub color: bool,
    /// Something changed since the last draw.
    pub dirty: bool,
}

impl App {
    pub fn new(color: bool) -> App {
        App {
            rows: Vec::new(),
            selected: None,
            hint: 0,
            scope: Scope::Instance,
            filter: String::new(),
            mode: Mode::Normal,
            log_name: None,
            logs: VecDeque::new(),
            notice: None,
            notice_until: None,
            busy: 0,
            offline: None,
            loaded: false,
            color,
            dirty: true,
        }
    }

    /// The rows that pass the filter (a case-insensitive substring of the name).
    pub fn visible(&self) -> Vec<&ProcessInfo> {
        let needle = self.filter.to_lowercase();
        self.rows.iter().filter(|r| r.name.to_lowercase().contains(&needle)).collect()
    }

    /// Index of the selection among the visible rows.
    pub fn selected_index(&self) -> Option<usize> {
        let name = self.selected.as_deref()?;
        self.visible().iter().position(|r| r.name == name)
    }

    fn selected_row(&self) -> Option<&ProcessInfo> {
        let name = self.selected.as_deref()?;
        self.rows.iter().find(|r| r.name == name)
    }

    /// What the command keys act on right now, per the scope.
    pub fn target(&self) -> Option<String> {
        let row = self.selected_row()?;
        Some(match self.scope {
            Scope::Instance => row.name.clone(),
            Scope::Process => row.process.clone(),
            // A process outside any group is its own group.
            Scope::Group => row.group.clone().unwrap_or_else(|| row.process.clone()),
        })
    }

    /// Applies a message from a background thread.
    pub fn apply(&mut self, msg: Msg) {
        match msg {
            Msg::List(Ok(rows)) => {
                if !self.loaded || self.offline.is_some() || rows != self.rows {
                    self.rows = rows;
                    self.loaded = true;
                    self.offline = None;
                    self.fix_selection();
                    self.dirty = true;
                }
            }
            Msg::List(Err(e)) => {
                if self.offline.as_ref() != Some(&e) {
                    self.offline = Some(e);
                    self.dirty = true;
                }
            }
            Msg::Done { cmd, result } => {
                self.busy = self.busy.saturating_sub(1);
                let more = match self.busy {
                    0 => String::new(),
                    n => format!(" ({n} more running)"),
                };
                let notice = match result {
                    Ok(text) => Notice::Ok(text + &more),
                    Err(e) => Notice::Error(format!("{} {}: {e}{more}", cmd.verb.name(), cmd.target)),
                };
                self.notify(notice);
            }
            Msg::Logs { name, lines, reset } => {
                if self.log_name.as_deref() != Some(name.as_str()) {
                    return;
                }
                if reset {
                    self.logs.clear();
                }
                self.logs.extend(lines);
                let excess = self.logs.len().saturating_sub(LOG_LINES);
                self.logs.drain(..excess);
                self.dirty = true;
            }
        }
    }

    /// Switches the log pane to `name`, emptying it until its lines arrive.
    pub fn show_logs_of(&mut self, name: Option<String>) {
        if self.log_name != name {
            self.log_name = name;
            self.logs.clear();
            self.dirty = true;
        }
    }

    /// Records that a command was sent.
    pub fn begin(&mut self, cmd: &Command) {
        self.busy += 1;
        self.notice = Some(Notice::Busy(format!("{} {}…", cmd.verb.progressive(), cmd.target)));
        self.notice_until = None;
        self.dirty = true;
    }

    /// Shows a message in the footer; outcomes fade after a few seconds (see [`App::tick`]).
    pub fn notify(&mut self, notice: Notice) {
        self.notice_until = match notice {
            Notice::Busy(_) => None,
            Notice::Ok(_) | Notice::Error(_) => Some(Instant::now() + NOTICE_TTL),
        };
        self.notice = Some(notice);
        self.dirty = true;
    }

    /// Lets time pass: expires the footer message.
    pub fn tick(&mut self, now: Instant) {
        if self.notice_until.is_some_and(|t| now >= t) {
            self.notice = None;
            self.notice_until = None;
            self.dirty = true;
        }
    }

    /// Handles one key; returns what the event loop must do, if anything.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Effect> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c' | 'C')) {
            return Some(Effect::Quit);
        }
        self.dirty = true;
        match self.mode {
            Mode::Help => {
                self.mode = Mode::Normal;
                match key.code {
                    KeyCode::Char('q') => Some(Effect::Quit),
                    _ => None,
                }
            }
            Mode::Filter => {
                match key.code {
                    KeyCode::Enter => self.mode = Mode::Normal,
                    KeyCode::Esc => {
                        self.filter.clear();
                        self.mode = Mode::Normal;
                    }
                    KeyCode::Backspace => {
                        self.filter.pop();
                    }
                    KeyCode::Up => self.move_by(-1),
                    KeyCode::Down => self.move_by(1),
                    KeyCode::Char('u') if ctrl => self.filter.clear(),
                    // Alt+key is how a terminal sends Esc and a key typed right after it: not text.
                    KeyCode::Char(c) if !ctrl && !key.modifiers.contains(KeyModifiers::ALT) => {
                        self.filter.push(c)
                    }
                    _ => {}
                }
                self.fix_selection();
                None
            }
            Mode::Normal => self.on_normal_key(key.code),
        }
    }

    fn on_normal_key(&mut self, code: KeyCode) -> Option<Effect> {
        let verb = match code {
            KeyCode::Char('q') | KeyCode::Esc => return Some(Effect::Quit),
            KeyCode::Up | KeyCode::Char('k') => {
                self.move_by(-1);
                return None;
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.move_by(1);
                return None;
            }
            KeyCode::PageUp => {
                self.move_by(-10);
                return None;
            }
            KeyCode::PageDown => {
                self.move_by(10);
                return None;
            }
            KeyCode::Home => {
                self.move_by(isize::MIN / 2);
                return None;
            }
            KeyCode::End => {
                self.move_by(isize::MAX / 2);
                return None;
            }
            KeyCode::Char('g') => {
                self.scope = self.scope.next();
                return None;
            }
            KeyCode::Char('/') => {
                self.mode = Mode::Filter;
                return None;
            }
            KeyCode::Char('?') => {
                self.mode = Mode::Help;
                return None;
            }
            KeyCode::Char('s') => Verb::Stop,
            KeyCode::Char('S') => Verb::Start,
            KeyCode::Char('r') => Verb::Restart,
            KeyCode::Char('l') => Verb::Reload,
            _ => return None,
        };
        match self.target() {
            Some(target) => Some(Effect::Send(Command { verb, target })),
            None => {
                self.notify(Notice::Error("no process selected".into()));
                None
            }
        }
    }

    /// Moves the selection `delta` rows among the visible ones, stopping at the ends.
    fn move_by(&mut self, delta: isize) {
        let visible = self.visible();
        if visible.is_empty() {
            return;
        }
        let last = visible.len() - 1;
        let at = match self.selected_index() {
            Some(i) => i.saturating_add_signed(delta).min(last),
            None => self.hint.min(last),
        };
        let name = visible[at].name.clone();
        self.selected = Some(name);
        self.hint = at;
    }

    /// Keeps the selection on a visible row: the same one when it is still there, else the row
    /// now at its old position.
    fn fix_selection(&mut self) {
        if let Some(i) = self.selected_index() {
            self.hint = i;
            return;
        }
        let visible = self.visible();
        let pick = visible.get(self.hint.min(visible.len().saturating_sub(1))).map(|r| r.name.clone());
        self.selected = pick;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::protocol::Status;

    pub fn row(name: &str, group: Option<&str>, status: Status, pid: Option<u32>) -> ProcessInfo {
        ProcessInfo {
            name: name.into(),
            process: name.split(':').next().unwrap_or(name).into(),
            instance: name.split(':').nth(1).and_then(|i| i.parse().ok()),
            instances: 1,
            group: group.map(Into::into),
            status,
            pid,
            restarts: 0,
            uptime_ms: pid.map(|_| 42_000),
            exit_code: None,
            exit_signal: None,
            cpu_percent: pid.map(|_| 1.5),
            memory_bytes: pid.map(|_| 10_502_144),
            config: "/p/pm3.toml".into(),
            restart_in_ms: None,
        }
    }

    pub fn sample() -> App {
        let mut app = App::new(true);
        app.apply(Msg::List(Ok(vec![
            row("api", None, Status::Online, Some(101)),
            row("web:0", Some("front"), Status::Online, Some(202)),
            row("web:1", Some("front"), Status::Stopped, None),
            row("worker", None, Status::Errored, None),
        ])));
        app
    }

    fn key(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
    }

    fn code(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn the_first_row_is_selected_and_arrows_move_within_bounds() {
        let mut app = sample();
        assert_eq!(app.selected.as_deref(), Some("api"));
        app.on_key(code(KeyCode::Up));
        assert_eq!(app.selected.as_deref(), Some("api"));
        app.on_key(key('j'));
        app.on_key(code(KeyCode::Down));
        assert_eq!(app.selected.as_deref(), Some("web:1"));
        app.on_key(code(KeyCode::End));
        assert_eq!(app.selected.as_deref(), Some("worker"));
        app.on_key(key('k'));
        assert_eq!(app.selected.as_deref(), Some("web:1"));
    }

    #[test]
    fn command_keys_act_on_the_scope_of_the_selection() {
        let mut app = sample();
        app.on_key(key('j'));
        let send = |app: &mut App, c: char| match app.on_key(key(c)) {
            Some(Effect::Send(cmd)) => cmd,
            other => panic!("`{c}` gave {other:?}"),
        };
        assert_eq!(send(&mut app, 's'), Command { verb: Verb::Stop, target: "web:0".into() });
        app.on_key(key('g'));
        assert_eq!(app.scope, Scope::Process);
        assert_eq!(send(&mut app, 'S'), Command { verb: Verb::Start, target: "web".into() });
        app.on_key(key('g'));
        assert_eq!(send(&mut app, 'r'), Command { verb: Verb::Restart, target: "front".into() });
        app.on_key(key('k'));
        // No group: the process is its own group.
        assert_eq!(send(&mut app, 'l'), Command { verb: Verb::Reload, target: "api".into() });
        app.on_key(key('g'));
        assert_eq!(app.scope, Scope::Instance);
    }

    #[test]
    fn quit_keys() {
        for k in [key('q'), code(KeyCode::Esc), KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)] {
            assert_eq!(sample().on_key(k), Some(Effect::Quit), "{k:?}");
        }
    }

    #[test]
    fn filter_hides_rows_and_keeps_a_visible_selection() {
        let mut app = sample();
        app.on_key(key('/'));
        assert_eq!(app.mode, Mode::Filter);
        for c in "WEB".chars() {
            app.on_key(key(c));
        }
        // `q` and `s` are text while typing a filter.
        assert_eq!(app.on_key(key('q')), None);
        app.on_key(code(KeyCode::Backspace));
        let names: Vec<&str> = app.visible().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["web:0", "web:1"]);
        assert_eq!(app.selected.as_deref(), Some("web:0"));
        app.on_key(code(KeyCode::Enter));
        assert_eq!(
            (app.mode, app.filter.as_str()),
            (Mode::Normal, "WEB"),
            "kept; matched case-insensitively"
        );
        app.on_key(key('/'));
        app.on_key(code(KeyCode::Esc));
        assert_eq!((app.mode, app.filter.as_str()), (Mode::Normal, ""));
        assert_eq!(app.visible().len(), 4);
    }

    #[test]
    fn selection_follows_the_name_across_refreshes() {
        let mut app = sample();
        app.on_key(key('j'));
        app.on_key(key('j'));
        assert_eq!(app.selected.as_deref(), Some("web:1"));
        let mut rows = app.rows.clone();
        rows.insert(0, row("aaa", None, Status::Online, Some(7)));
        app.apply(Msg::List(Ok(rows.clone())));
        assert_eq!(app.selected.as_deref(), Some("web:1"));
        rows.retain(|r| r.name != "web:1");
        app.apply(Msg::List(Ok(rows)));
        assert_eq!(app.selected.as_deref(), Some("worker"), "the row now at its place");
    }

    #[test]
    fn logs_keep_the_last_lines_of_the_shown_process_only() {
        let mut app = sample();
        app.show_logs_of(Some("api".into()));
        let line = |i: usize| LogLine { stream: Stream::Out, text: format!("line {i}") };
        app.apply(Msg::Logs { name: "web:0".into(), lines: vec![line(0)], reset: true });
        assert!(app.logs.is_empty(), "lines of another process are dropped");
        app.apply(Msg::Logs { name: "api".into(), lines: (0..150).map(line).collect(), reset: true });
        app.apply(Msg::Logs { name: "api".into(), lines: (150..300).map(line).collect(), reset: false });
        assert_eq!(app.logs.len(), LOG_LINES);
        assert_eq!(app.logs.front().map(|l| l.text.as_str()), Some("line 100"));
        assert_eq!(app.logs.back().map(|l| l.text.as_str()), Some("line 299"));
    }

    #[test]
    fn outcomes_fade_but_progress_stays() {
        let mut app = sample();
        let cmd = Command { verb: Verb::Stop, target: "api".into() };
        app.begin(&cmd);
        assert_eq!(app.notice, Some(Notice::Busy("stopping api…".into())));
        app.tick(Instant::now() + Duration::from_secs(60));
        assert!(app.notice.is_some(), "progress stays until the answer");
        app.apply(Msg::Done { cmd, result: Ok("stopped api".into()) });
        assert_eq!((app.notice.clone(), app.busy), (Some(Notice::Ok("stopped api".into())), 0));
        app.tick(Instant::now() + Duration::from_secs(60));
        assert_eq!(app.notice, None);
    }
}
