//! The spanned walk: turns the parsed TOML document into one [`RawProcess`] per top-level table,
//! checking each key's type and value on the way and recording every problem at the span of the
//! offending key or value.
//!
//! It only looks at one table at a time. Rules that need the file system (`cwd`, `env_file`) are
//! in `resolve`, rules that span processes (names, `depends_on`) in `validate`.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeInteger, DeString, DeTable, DeValue};

use super::error::{ErrorKind, Problems, closest, did_you_mean, show};
use super::validate;
use crate::process::signal::{Signal, UnknownSignal};
use crate::spec::{MAX_INSTANCES, MAX_LOG_FILES, RestartPolicy};

/// The `instances` key as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instances {
    Count(u32),
    /// `"max"`: one per CPU, resolved by the loader.
    Max,
}

/// The `env_<name>` overrides of one process for one environment name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvOverride {
    /// `<name>`, without the `env_` prefix.
    pub name: String,
    pub vars: Vec<EnvVar>,
}

/// One variable of `env` or `env_<name>`: its name, its value as text, and where the value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
    pub span: Range<usize>,
}

/// One process table with every key checked on its own. A key that is absent or invalid (already
/// recorded as a problem) is `None` or empty; `resolve` fills in the defaults of `ProcessDef`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawProcess {
    pub name: String,
    /// Where errors about the table as a whole point: its `[header]`.
    pub header: Range<usize>,
    pub command: String,
    pub cwd: Option<Spanned<String>>,
    pub env_files: Vec<Spanned<String>>,
    pub env: Vec<EnvVar>,
    pub env_overrides: Vec<EnvOverride>,
    pub instances: Option<Instances>,
    pub increment_var: Option<Spanned<String>>,
    pub group: Option<String>,
    pub depends_on: Vec<Spanned<String>>,
    pub kill_signal: Option<Signal>,
    pub kill_timeout_ms: Option<u64>,
    pub restart: Option<RestartPolicy>,
    pub max_restarts: Option<u32>,
    pub min_uptime_ms: Option<u64>,
    pub restart_delay_ms: Option<u64>,
    pub stop_exit_codes: Option<Vec<i32>>,
    pub health_check: Option<String>,
    pub health_interval_ms: Option<u64>,
    pub health_timeout_ms: Option<u64>,
    pub health_probe_timeout_ms: Option<u64>,
    pub pre_start: Option<String>,
    pub post_stop: Option<String>,
    pub max_memory: Option<u64>,
    pub watch: Option<Watch>,
    pub watch_ignore: Option<Vec<String>>,
    pub watch_debounce_ms: Option<u64>,
    pub cron_restart: Option<String>,
    pub log_date_format: Option<String>,
    pub log_max_size: Option<u64>,
    pub log_max_files: Option<u32>,
    pub log_compress: Option<bool>,
    pub listen: Vec<Spanned<String>>,
    /// Where the value of each key is (`command`, `env.PORT`, …), for the rules checked on the
    /// finished definition ([`crate::spec::ProcessDef::problems`]).
    pub spans: Vec<(String, Range<usize>)>,
}

/// The `watch` key as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watch {
    Off,
    /// `true`: the process's `cwd`.
    Cwd,
    /// A path, relative to the config file's directory.
    Path(Spanned<String>),
}

/// Every key a process table may have (besides `env_<name>`), for "did you mean" on an unknown
/// one. A test checks that each is accepted.
pub const KEYS: &[&str] = &[
    "command",
    "cwd",
    "env",
    "env_file",
    "instances",
    "increment_var",
    "group",
    "depends_on",
    "kill_signal",
    "kill_timeout",
    "restart",
    "max_restarts",
    "min_uptime",
    "restart_delay",
    "stop_exit_codes",
    "health_check",
    "health_interval",
    "health_timeout",
    "pre_start",
    "post_stop",
    "max_memory",
    "watch",
    "watch_ignore",
    "watch_debounce",
    "cron_restart",
    "log_date_format",
    "log_max_size",
    "log_max_files",
    "listen",
];

type Key<'i> = Spanned<DeString<'i>>;
type Value<'i> = Spanned<DeValue<'i>>;

/// Walks the whole document: one [`RawProcess`] per top-level table, in file order.
pub fn processes(root: &DeTable<'_>, problems: &mut Problems<'_>) -> Vec<RawProcess> {
    let mut out = Vec::new();
    for (key, value) in root.iter() {
        match value.get_ref() {
            DeValue::Table(table) if only_tables(table) => {
                for (k, v) in table.iter() {
                    dotted_name(key.get_ref(), k, v, problems);
                }
            }
            DeValue::Table(table) => out.push(process(key, value, table, problems)),
            _ => problems.at(key.span(), ErrorKind::NotATable(show(key.get_ref()))),
        }
    }
    out
}

fn process(key: &Key<'_>, value: &Value<'_>, table: &DeTable<'_>, problems: &mut Problems<'_>) -> RawProcess {
    let name = key.get_ref().to_string();
    let header = header(key, value, problems.text());
    let mut p = RawProcess {
        name: name.clone(),
        header,
        command: String::new(),
        cwd: None,
        env_files: Vec::new(),
        env: Vec::new(),
        env_overrides: Vec::new(),
        instances: None,
        increment_var: None,
        group: None,
        depends_on: Vec::new(),
        kill_signal: None,
        kill_timeout_ms: None,
        restart: None,
        max_restarts: None,
        min_uptime_ms: None,
        restart_delay_ms: None,
        stop_exit_codes: None,
        health_check: None,
        health_interval_ms: None,
        health_timeout_ms: None,
        health_probe_timeout_ms: None,
        pre_start: None,
        post_stop: None,
        max_memory: None,
        watch: None,
        watch_ignore: None,
        watch_debounce_ms: None,
        cron_restart: None,
        log_date_format: None,
        log_max_size: None,
        log_max_files: None,
        log_compress: None,
        listen: Vec::new(),
        spans: Vec::new(),
    };
    let mut has_command = false;
    for (k, v) in table.iter() {
        let k_str: &str = k.get_ref();
        p.spans.push((k_str.to_string(), v.span()));
        if let (Some(prefix), DeValue::Table(vars)) = (k_str.strip_prefix("env"), v.get_ref())
            && (prefix.is_empty() || prefix.starts_with('_'))
        {
            p.spans
                .extend(vars.iter().map(|(name, value)| (format!("env.{}", name.get_ref()), value.span())));
        }
        match k_str {
            "command" => {
                has_command = true;
                if let Some(s) = string(k_str, v, problems) {
                    if s.trim().is_empty() {
                        problems.at(v.span(), ErrorKind::Empty("command".into()));
                    }
                    p.command = s;
                }
            }
            "cwd" => {
                if let Some(s) = string(k_str, v, problems) {
                    if s.is_empty() {
                        problems.at(v.span(), ErrorKind::Empty("cwd".into()));
                    } else {
                        p.cwd = Some(Spanned::new(v.span(), s));
                    }
                }
            }
            "env" => p.env = env_table("env", v, problems),
            "env_file" => p.env_files = string_list("env_file", v, problems),
            "listen" => {
                p.listen = string_list("listen", v, problems);
                p.spans.extend(p.listen.iter().enumerate().map(|(i, l)| (format!("listen[{i}]"), l.span())));
            }
            "instances" => p.instances = instances(v, problems),
            "increment_var" => {
                if let Some(s) = string(k_str, v, problems) {
                    p.increment_var = Some(Spanned::new(v.span(), s));
                }
            }
            "group" => {
                if let Some(s) = string(k_str, v, problems) {
                    match validate::name_problem(&s) {
                        Some(reason) => problems.at(v.span(), ErrorKind::BadGroup { name: show(&s), reason }),
                        None => p.group = Some(s),
                    }
                }
            }
            "depends_on" => p.depends_on = depends_on(v, problems),
            "kill_signal" => p.kill_signal = kill_signal(v, problems),
            "kill_timeout" => p.kill_timeout_ms = non_negative("kill_timeout", v, problems),
            "restart" => p.restart = restart(v, problems),
            "max_restarts" => {
                p.max_restarts = match v.get_ref() {
                    DeValue::Integer(i) => in_range("max_restarts", v, i, 0, i64::from(u32::MAX), problems)
                        .and_then(|n| u32::try_from(n).ok()),
                    _ => {
                        wrong_type("max_restarts", "an integer", v, problems);
                        None
                    }
                }
            }
            "min_uptime" => p.min_uptime_ms = non_negative("min_uptime", v, problems),
            "restart_delay" => p.restart_delay_ms = non_negative("restart_delay", v, problems),
            "stop_exit_codes" => p.stop_exit_codes = exit_codes(v, problems),
            "health_check" => p.health_check = health_check(v, problems),
            "health_interval" => p.health_interval_ms = positive("health_interval", v, problems),
            "health_timeout" => p.health_timeout_ms = positive("health_timeout", v, problems),
            "health_probe_timeout" => {
                p.health_probe_timeout_ms = positive("health_probe_timeout", v, problems);
            }
            "pre_start" | "post_stop" => {
                let hook = string(k_str, v, problems).filter(|s| {
                    let empty = s.trim().is_empty();
                    if empty {
                        problems.at(v.span(), ErrorKind::Empty(k_str.into()));
                    }
                    !empty
                });
                if k_str == "pre_start" {
                    p.pre_start = hook;
                } else {
                    p.post_stop = hook;
                }
            }
            "max_memory" => p.max_memory = size("max_memory", v, problems),
            "watch" => p.watch = watch(v, problems),
            "watch_ignore" => p.watch_ignore = globs(v, problems),
            "watch_debounce" => p.watch_debounce_ms = non_negative("watch_debounce", v, problems),
            "cron_restart" => p.cron_restart = cron(v, problems),
            "log_date_format" => p.log_date_format = date_format(v, problems),
            "log_max_size" => p.log_max_size = size("log_max_size", v, problems),
            "log_max_files" => {
                p.log_max_files = match v.get_ref() {
                    DeValue::Integer(i) => {
                        in_range("log_max_files", v, i, 0, i64::from(MAX_LOG_FILES), problems)
                            .and_then(|n| u32::try_from(n).ok())
                    }
                    _ => {
                        wrong_type("log_max_files", "an integer", v, problems);
                        None
                    }
                }
            }
            "log_compress" => match v.get_ref() {
                DeValue::Boolean(b) => p.log_compress = Some(*b),
                _ => wrong_type("log_compress", "a boolean", v, problems),
            },
            _ => match k_str.strip_prefix("env_") {
                Some(env_name) if is_env_name(env_name) => match closest(k_str, KEYS.iter().copied()) {
                    // `env_fle = "a.env"`: a typo, more likely than an environment named `fle`.
                    Some(meant) if !matches!(v.get_ref(), DeValue::Table(_)) => problems.hint(
                        k.span(),
                        ErrorKind::WrongType {
                            key: show(k_str),
                            expected: "a table of strings",
                            found: found(v.get_ref()),
                        },
                        Some(did_you_mean(meant)),
                    ),
                    _ => p.env_overrides.push(EnvOverride {
                        name: env_name.to_string(),
                        vars: env_table(k_str, v, problems),
                    }),
                },
                Some(_) => problems.hint(
                    k.span(),
                    ErrorKind::BadEnvName(show(k_str)),
                    closest(k_str, KEYS.iter().copied()).map(did_you_mean),
                ),
                None => match v.get_ref() {
                    // `[api.v2]`: TOML nests tables at a dot.
                    DeValue::Table(_) => dotted_name(&name, k, v, problems),
                    _ => problems.hint(
                        k.span(),
                        ErrorKind::UnknownKey { key: show(k_str), process: show(&name) },
                        closest(k_str, KEYS.iter().copied()).map(did_you_mean),
                    ),
                },
            },
        }
    }
    if !has_command {
        problems.at(p.header.clone(), ErrorKind::MissingCommand(show(&name)));
    }
    p
}

/// True for a table that only holds tables other than `env` ones: what TOML makes of `[api.v2]`
/// without an `[api]`.
fn only_tables(table: &DeTable<'_>) -> bool {
    !table.is_empty()
        && table.iter().all(|(k, v)| {
            let k: &str = k.get_ref();
            matches!(v.get_ref(), DeValue::Table(_)) && !(k == "env" || k.starts_with("env_"))
        })
}

/// Records why `[process.key…]` is not a process named `process.key…`, with the fix: a name
/// with a dot is quoted (`["api.v2"]`). Located at the `[` of its header.
fn dotted_name(process: &str, key: &Key<'_>, value: &Value<'_>, problems: &mut Problems<'_>) {
    let mut dotted = format!("{process}.{}", key.get_ref());
    let mut start = key.span().start.min(value.span().start);
    let mut value = value;
    // `[a.b.c]`: follow the tables TOML made of the name, as long as each holds only the next.
    while let DeValue::Table(t) = value.get_ref()
        && t.len() == 1
        && let Some((k, inner)) = t.iter().next()
        && matches!(inner.get_ref(), DeValue::Table(_))
    {
        dotted.push('.');
        dotted.push_str(k.get_ref());
        start = start.min(k.span().start).min(inner.span().start);
        value = inner;
    }
    let dotted = show(&dotted);
    let hint = format!(
        "`[{dotted}]` is not a process named `{dotted}`: TOML reads a dot in a table name as a table \
         inside another; quote the name: `[\"{dotted}\"]`"
    );
    problems.at(start..start, ErrorKind::Rule(hint));
}

/// Where errors about a process as a whole point: its `[name]` header, from `[` to `]`; for
/// `name = { … }` and dotted keys, the name.
fn header(key: &Key<'_>, value: &Value<'_>, text: &str) -> Range<usize> {
    let name = key.span();
    if value.span().start >= name.start {
        return name;
    }
    let start = value.span().start;
    let rest = text.get(name.end..).unwrap_or("");
    let close = rest.trim_start_matches([' ', '\t']);
    if close.starts_with(']') { start..name.end + (rest.len() - close.len()) + 1 } else { start..name.end }
}

/// `<name>` of an `env_<name>` key: `A-Z a-z 0-9 _ -`, at least one.
fn is_env_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// How a value that has the wrong type is described after "got".
fn found(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("string `{}`", show(s)),
        DeValue::Integer(i) => format!("integer `{i}`"),
        DeValue::Float(f) => format!("float `{f}`"),
        DeValue::Boolean(b) => format!("boolean `{b}`"),
        DeValue::Datetime(d) => format!("datetime `{d}`"),
        DeValue::Array(_) => "an array".into(),
        DeValue::Table(_) => "a table".into(),
    }
}

fn wrong_type(key: &str, expected: &'static str, v: &Value<'_>, problems: &mut Problems<'_>) {
    problems.at(v.span(), ErrorKind::WrongType { key: show(key), expected, found: found(v.get_ref()) });
}

fn string(key: &str, v: &Value<'_>, problems: &mut Problems<'_>) -> Option<String> {
    match v.get_ref() {
        DeValue::String(s) => Some(s.to_string()),
        _ => {
            wrong_type(key, "a string", v, problems);
            None
        }
    }
}

/// The value of a TOML integer, `None` when it does not fit an `i64`.
fn int(i: &DeInteger<'_>) -> Option<i64> {
    i64::from_str_radix(i.as_str(), i.radix()).ok()
}

/// `env` or `env_<name>`: a table whose values are strings, or numbers and booleans written
/// without quotes (`PORT = 3000`), which become their decimal text.
fn env_table(key: &str, v: &Value<'_>, problems: &mut Problems<'_>) -> Vec<EnvVar> {
    let DeValue::Table(table) = v.get_ref() else {
        wrong_type(key, "a table of strings", v, problems);
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, value) in table.iter() {
        let name: &str = name.get_ref();
        let full_key = format!("{key}.{name}");
        let text = match value.get_ref() {
            DeValue::String(s) => s.to_string(),
            DeValue::Integer(i) => int(i).map_or_else(|| i.to_string(), |n| n.to_string()),
            DeValue::Float(f) => f.to_string(),
            DeValue::Boolean(b) => b.to_string(),
            _ => {
                wrong_type(&full_key, "a string", value, problems);
                continue;
            }
        };
        if name.is_empty() || name.contains(['=', '\0']) {
            problems.at(value.span(), ErrorKind::BadVarName { key: key.to_string(), name: show(name) });
            continue;
        }
        if text.contains('\0') {
            problems.at(value.span(), ErrorKind::NulInValue(show(&full_key)));
            continue;
        }
        out.push(EnvVar { name: name.to_string(), value: text, span: value.span() });
    }
    out
}

/// `env_file` (paths) or `listen` (addresses, each checked on the finished definition): one
/// string, or an array of strings.
fn string_list(key: &str, v: &Value<'_>, problems: &mut Problems<'_>) -> Vec<Spanned<String>> {
    match v.get_ref() {
        DeValue::String(s) => vec![Spanned::new(v.span(), s.to_string())],
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                string(&format!("{key}[{i}]"), item, problems).map(|s| Spanned::new(item.span(), s))
            })
            .collect(),
        _ => {
            wrong_type(key, "a string or an array of strings", v, problems);
            Vec::new()
        }
    }
}

fn instances(v: &Value<'_>, problems: &mut Problems<'_>) -> Option<Instances> {
    match v.get_ref() {
        DeValue::String(s) if s.as_ref() == "max" => Some(Instances::Max),
        DeValue::Integer(i) => in_range("instances", v, i, 1, i64::from(MAX_INSTANCES), problems)
            .and_then(|n| u32::try_from(n).ok())
            .map(Instances::Count),
        _ => {
            wrong_type("instances", "an integer >= 1 or \"max\"", v, problems);
            None
        }
    }
}

/// The value of the integer `i` (the value of `v`) when it is within `min..=max`; otherwise
/// records why not.
fn in_range(
    key: &str,
    v: &Value<'_>,
    i: &DeInteger<'_>,
    min: i64,
    max: i64,
    problems: &mut Problems<'_>,
) -> Option<i64> {
    let got = i.to_string();
    let kind = match int(i) {
        Some(n) if (min..=max).contains(&n) => return Some(n),
        Some(n) if n < min => ErrorKind::TooSmall { key: key.into(), min, got },
        // Too large, or too far from zero for an `i64` either way.
        None if got.starts_with('-') => ErrorKind::TooSmall { key: key.into(), min, got },
        _ => ErrorKind::TooLarge { key: key.into(), max, got },
    };
    problems.at(v.span(), kind);
    None
}

fn depends_on(v: &Value<'_>, problems: &mut Problems<'_>) -> Vec<Spanned<String>> {
    let DeValue::Array(items) = v.get_ref() else {
        wrong_type("depends_on", "an array of process names", v, problems);
        return Vec::new();
    };
    let mut out: Vec<Spanned<String>> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(s) = string(&format!("depends_on[{i}]"), item, problems)
            && !out.iter().any(|d| *d.get_ref() == s)
        {
            out.push(Spanned::new(item.span(), s));
        }
    }
    out
}

/// `kill_signal`: a name (`TERM`, `SIGTERM`) or a number, written as a string or an integer.
fn kill_signal(v: &Value<'_>, problems: &mut Problems<'_>) -> Option<Signal> {
    let text = match v.get_ref() {
        DeValue::String(s) => s.to_string(),
        DeValue::Integer(i) => i.to_string(),
        _ => {
            wrong_type("kill_signal", "a signal name like \"SIGTERM\"", v, problems);
            return None;
        }
    };
    match text.parse::<Signal>() {
        Ok(sig) => Some(sig),
        Err(_) => {
            let shown = UnknownSignal(show(&text)).to_string();
            problems.at(v.span(), ErrorKind::BadSignal(shown));
            None
        }
    }
}

/// `restart`: `on_failure` (or `on-failure`), `always`, `never`.
fn restart(v: &Value<'_>, problems: &mut Problems<'_>) -> Option<RestartPolicy> {
    let policy = match v.get_ref() {
        DeValue::String(s) => match s.as_ref() {
            "on_failure" | "on-failure" => Some(RestartPolicy::OnFailure),
            "always" => Some(RestartPolicy::Always),
            "never" => Some(RestartPolicy::Never),
            _ => None,
        },
        _ => None,
    };
    if policy.is_none() {
        wrong_type("restart", "one of \"on_failure\", \"always\", \"never\"", v, problems);
    }
    policy
}

/// `stop_exit_codes`: an array of exit codes (0 to 255).
fn exit_codes(v: &Value<'_>, problems: &mut Problems<'_>) -> Option<Vec<i32>> {
    let DeValue::Array(items) = v.get_ref() else {
        wrong_type("stop_exit_codes", "an array of integers", v, problems);
        return None;
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let key = format!("stop_exit_codes[{i}]");
        match item.get_ref() {
            DeValue::Integer(n) => {
                if let Some(code) = in_range(&key, item, n, 0, 255, problems) {
                    out.push(code as i32);
                }
            }
            _ => wrong_type(&key, "an integer", item, problems),
        }
    }
    Some(out)
}

/// `health_check`: one of the four probe forms. A value with `${VAR}` is checked once expanded,
/// with the variables (`resolve`).
fn health_check(v: &Value<'_>, problems: &mut Problems<'_>) -> Option<String> {
    let s = string("health_check", v, problems)?;
    match crate::supervisor::health::Probe::parse(&s) {
        Ok(_) => Some(s),
        Err(_) if s.contains("${") => Some(s),
        Err(reason) => {
            problems.at(v.span(), ErrorKind::BadValue { key: "health_check".into(), reason });
            None
        }
    }
}

/// A size: an integer (bytes) or a string like `512K`, `200M`, `1G` (`KB`, `MB`, `GB` too).
fn size(key: &str, v: &Value<'_>, problems: &mut Problems<'_>) -> Option<u64> {
    let parsed = match v.get_ref() {
        DeValue::Integer(i) => int(i).and_then(|n| u64::try_from(n).ok()).filter(|&n| n > 0),
        DeValue::String(s) => parse_size(s),
        _ => {
            wrong_type(key, "a size like \"200M\"", v, problems);
            return None;
        }
    };
    if parsed.is_none() {
        let given = match v.get_ref() {
            DeValue::String(s) => show(s),
            DeValue::Integer(i) => i.to_string(),
            other => found(other),
        };
        let reason = format!("`{given}` is not a size (use 512K, 200M, 1G)");
        problems.at(v.span(), ErrorKind::BadValue { key: key.into(), reason });
    }
    parsed
}

/// `512K`, `200M`, `1G`, `1.5G`, `100` (bytes), with optional `B`/`iB`; powers of 1024.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return None,
    };
    let bytes = (n * mult as f64).round();
    (bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

fn watch(v: &Value<'_>, problems: &mut Problems<'_>) -> Option<Watch> {
    match v.get_ref() {
        DeValue::Boolean(true) => Some(Watch::Cwd),
        DeValue::Boolean(false) => Some(Watch::Off),
        DeValue::String(s) if !s.is_empty() => Some(Watch::Path(Spanned::new(v.span(), s.to_string()))),
        _ => {
            wrong_type("watch", "true, false or a path", v, problems);
            None
        }
    }
}

fn globs(v: &Value<'_>, problems: &mut Problems<'_>) -> Option<Vec<String>> {
    let DeValue::Array(items) = v.get_ref() else {
        wrong_type("watch_ignore", "an array of globs", v, problems);
        return None;
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let key = format!("watch_ignore[{i}]");
        if let Some(g) = string(&key, item, problems) {
            match crate::glob::check(&g) {
                Ok(()) => out.push(g),
                Err(e) => problems.at(item.span(), ErrorKind::BadValue { key, reason: e.to_string() }),
            }
        }
    }
    Some(out)
}

fn cron(v: &Value<'_>, problems: &mut Problems<'_>) -> Option<String> {
    let s = string("cron_restart", v, problems)?;
    match crate::supervisor::triggers::parse_cron(&s) {
        Ok(_) => Some(s),
        Err(reason) => {
            problems.at(v.span(), ErrorKind::BadValue { key: "cron_restart".into(), reason });
            None
        }
    }
}

/// `log_date_format`: a strftime format chrono understands.
fn date_format(v: &Value<'_>, problems: &mut Problems<'_>) -> Option<String> {
    use chrono::format::{Item, StrftimeItems};
    let s = string("log_date_format", v, problems)?;
    if StrftimeItems::new(&s).any(|i| matches!(i, Item::Error)) {
        let reason = format!("`{}` is not a valid strftime format", show(&s));
        problems.at(v.span(), ErrorKind::BadValue { key: "log_date_format".into(), reason });
        return None;
    }
    Some(s)
}

/// An integer >= 1 (milliseconds).
fn positive(key: &str, v: &Value<'_>, problems: &mut Problems<'_>) -> Option<u64> {
    let DeValue::Integer(i) = v.get_ref() else {
        wrong_type(key, "an integer (milliseconds)", v, problems);
        return None;
    };
    in_range(key, v, i, 1, i64::MAX, problems).and_then(|n| u64::try_from(n).ok())
}

/// An integer >= 0 (milliseconds).
fn non_negative(key: &str, v: &Value<'_>, problems: &mut Problems<'_>) -> Option<u64> {
    let DeValue::Integer(i) = v.get_ref() else {
        wrong_type(key, "an integer (milliseconds)", v, problems);
        return None;
    };
    in_range(key, v, i, 0, i64::MAX, problems).and_then(|n| u64::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{Fixture, load_errors};

    /// Each bad file gives exactly these problems (path prefix removed).
    #[test]
    fn key_errors_point_at_the_key_or_value() {
        let cases: &[(&str, &[&str])] = &[
            (
                "[worker]\ncommand = \"w\"\nrestrat = \"always\"\n",
                &["3:1: unknown key `restrat` in [worker] (did you mean `restart`?)"],
            ),
            (
                "[worker]\ncommand = \"w\"\nautorestart = true\nexec_mode = \"cluster\"\n",
                &["3:1: unknown key `autorestart` in [worker]", "4:1: unknown key `exec_mode` in [worker]"],
            ),
            ("[web]\ncwd = \".\"\n", &["1:1: missing required key `command` in [web]"]),
            ("[web]\ncommand = \"  \"\n", &["2:11: `command` must not be empty"]),
            ("[web]\ncommand = 3\n", &["2:11: `command` must be a string, got integer `3`"]),
            ("[web]\ncommand = [\"node\"]\n", &["2:11: `command` must be a string, got an array"]),
            ("[web]\ncommand = \"x\"\ncwd = false\n", &["3:7: `cwd` must be a string, got boolean `false`"]),
            (
                "[web]\ncommand = \"x\"\nenv = \"A=1\"\n",
                &["3:7: `env` must be a table of strings, got string `A=1`"],
            ),
            (
                "[web]\ncommand = \"x\"\nenv = { A = [1], B = { c = 1 }, C = 1979-05-27 }\n",
                &[
                    "3:13: `env.A` must be a string, got an array",
                    "3:22: `env.B` must be a string, got a table",
                    "3:37: `env.C` must be a string, got datetime `1979-05-27`",
                ],
            ),
            (
                "[web]\ncommand = \"x\"\nenv_file = 1\n",
                &["3:12: `env_file` must be a string or an array of strings, got integer `1`"],
            ),
            (
                "[web]\ncommand = \"x\"\nenv_file = [true, 2]\n",
                &[
                    "3:13: `env_file[0]` must be a string, got boolean `true`",
                    "3:19: `env_file[1]` must be a string, got integer `2`",
                ],
            ),
            (
                "[web]\ncommand = \"x\"\nenv_prod = [\"A=1\"]\n",
                &["3:12: `env_prod` must be a table of strings, got an array"],
            ),
            (
                "[web]\ncommand = \"x\"\nenv_ = { A = \"1\" }\n",
                &["3:1: invalid environment name in key `env_` (use `env_` and `A-Z a-z 0-9 _ -`) \
                     (did you mean `env`?)"],
            ),
            (
                "[web]\ncommand = \"x\"\n\"env_b@d\" = {}\n",
                &["3:1: invalid environment name in key `env_b@d` (use `env_` and `A-Z a-z 0-9 _ -`)"],
            ),
            ("[web]\ncommand = \"x\"\ninstances = 0\n", &["3:13: `instances` must be at least 1, got 0"]),
            ("[web]\ncommand = \"x\"\ninstances = -1\n", &["3:13: `instances` must be at least 1, got -1"]),
            (
                "[web]\ncommand = \"x\"\ninstances = \"lots\"\n",
                &["3:13: `instances` must be an integer >= 1 or \"max\", got string `lots`"],
            ),
            (
                "[web]\ncommand = \"x\"\ninstances = 2.5\n",
                &["3:13: `instances` must be an integer >= 1 or \"max\", got float `2.5`"],
            ),
            (
                "[web]\ncommand = \"x\"\ninstances = 5000000000\n",
                &["3:13: `instances` must be at most 1024, got 5000000000"],
            ),
            (
                "[web]\ncommand = \"x\"\nincrement_var = 3000\n",
                &["3:17: `increment_var` must be a string, got integer `3000`"],
            ),
            ("[web]\ncommand = \"x\"\ngroup = [\"a\"]\n", &["3:9: `group` must be a string, got an array"]),
            (
                "[web]\ncommand = \"x\"\ngroup = \"back end\"\n",
                &[
                    "3:9: invalid group name `back end`: character ` ` is not allowed (use `A-Z a-z 0-9 _ - .`)",
                ],
            ),
            (
                "[web]\ncommand = \"x\"\ndepends_on = \"db\"\n",
                &["3:14: `depends_on` must be an array of process names, got string `db`"],
            ),
            (
                "[web]\ncommand = \"x\"\ndepends_on = [\"web2\", 7]\n[web2]\ncommand = \"y\"\n",
                &["3:23: `depends_on[1]` must be a string, got integer `7`"],
            ),
            (
                "[web]\ncommand = \"x\"\nkill_signal = \"TERMINATE\"\n",
                &[
                    "3:15: `kill_signal`: unknown signal `TERMINATE` (use a name like `TERM`, `SIGHUP`, `USR1` or a number)",
                ],
            ),
            (
                "[web]\ncommand = \"x\"\nkill_signal = true\n",
                &["3:15: `kill_signal` must be a signal name like \"SIGTERM\", got boolean `true`"],
            ),
            (
                "[web]\ncommand = \"x\"\nkill_timeout = \"5s\"\n",
                &["3:16: `kill_timeout` must be an integer (milliseconds), got string `5s`"],
            ),
            (
                "[web]\ncommand = \"x\"\nkill_timeout = -5\n",
                &["3:16: `kill_timeout` must be at least 0, got -5"],
            ),
            (
                "[web]\ncommand = \"x\"\nkill_timeout = 99999999999999999999\ninstances = -99999999999999999999\n",
                &[
                    "3:16: `kill_timeout` must be at most 9223372036854775807, got 99999999999999999999",
                    "4:13: `instances` must be at least 1, got -99999999999999999999",
                ],
            ),
            (
                "[web]\ncommand = \"x\"\nrestart = \"sometimes\"\nmax_restarts = -1\nstop_exit_codes = [3, 300]\n",
                &[
                    "3:11: `restart` must be one of \"on_failure\", \"always\", \"never\", got string `sometimes`",
                    "4:16: `max_restarts` must be at least 0, got -1",
                    "5:23: `stop_exit_codes[1]` must be at most 255, got 300",
                ],
            ),
            (
                "[web]\ncommand = \"x\"\nenv = { \"A=B\" = \"1\" }\n",
                &["3:17: invalid variable name `A=B` in `env`"],
            ),
        ];
        for (toml, want) in cases {
            assert_eq!(load_errors(toml), *want, "for file:\n{toml}");
        }
    }

    /// `[api.v2]` is a table `v2` inside `[api]` to TOML: the message says so and how to quote
    /// the name, at the header, instead of a missing `command` in `[api]`.
    #[test]
    fn a_dotted_table_name_gets_a_hint() {
        let hint = |name: &str| {
            format!(
                "`[{name}]` is not a process named `{name}`: TOML reads a dot in a table name as a table \
                 inside another; quote the name: `[\"{name}\"]`"
            )
        };
        let cases: &[(&str, Vec<String>)] = &[
            ("[api.v2]\ncommand = \"x\"\n", vec![format!("1:1: {}", hint("api.v2"))]),
            (
                "[api]\ncommand = \"x\"\n\n[api.v2]\ncommand = \"y\"\n",
                vec![format!("4:1: {}", hint("api.v2"))],
            ),
            ("[a.b.c]\ncommand = \"x\"\n", vec![format!("1:1: {}", hint("a.b.c"))]),
            ("[ok]\ncommand = \"x\"\n[api.v2]\ncommand = \"x\"\n", vec![format!("3:1: {}", hint("api.v2"))]),
        ];
        for (toml, want) in cases {
            assert_eq!(load_errors(toml), *want, "for file:\n{toml}");
        }
        let fx = Fixture::new();
        let cfg =
            fx.load("[\"api.v2\"]\ncommand = \"x\"\n[web]\ncommand = \"y\"\n[web.env]\nA = \"1\"\n", None);
        assert_eq!(cfg.processes[0].name, "api.v2", "quoted, it is one name");
        assert_eq!(cfg.processes[1].env, [("A".to_string(), "1".to_string())], "`[web.env]` is still env");
    }

    /// [`super::KEYS`], the list suggestions come from, holds only keys the loader knows.
    #[test]
    fn every_key_of_the_suggestion_list_is_known() {
        for key in super::KEYS.iter().filter(|&&k| k != "command") {
            let fx = Fixture::new();
            fx.write("pm3.toml", &format!("[w]\ncommand = \"x\"\n{key} = 1\n"));
            if let Err(e) = super::super::load(&fx.config_path(), None) {
                assert!(!e.to_string().contains("unknown key"), "{key}: {e}");
            }
        }
    }

    #[test]
    fn misspelt_keys_get_a_suggestion() {
        let cases: &[(&str, &str)] = &[
            ("comand = \"x\"", "2:1: unknown key `comand` in [w] (did you mean `command`?)"),
            ("instance = 2", "2:1: unknown key `instance` in [w] (did you mean `instances`?)"),
            ("env-file = \"a.env\"", "2:1: unknown key `env-file` in [w] (did you mean `env_file`?)"),
            ("dependson = []", "2:1: unknown key `dependson` in [w] (did you mean `depends_on`?)"),
            ("kill_timout = 1", "2:1: unknown key `kill_timout` in [w] (did you mean `kill_timeout`?)"),
            ("port = 1", "2:1: unknown key `port` in [w]"),
            // `env_<name>` is an environment, unless its value says it is a typo.
            (
                "env_fle = \"a.env\"",
                "2:1: `env_fle` must be a table of strings, got string `a.env` (did you mean `env_file`?)",
            ),
        ];
        for (line, want) in cases {
            let text = format!("[w]\n{line}\ncommand = \"x\"\n");
            assert_eq!(load_errors(&text), [*want], "for file:\n{text}");
        }
        let fx = Fixture::new();
        assert_eq!(fx.load("[w]\ncommand = \"x\"\nenv_fle = { A = \"1\" }\n", None).processes.len(), 1);
    }

    #[test]
    fn all_problems_of_a_file_are_reported_in_order() {
        let errs = load_errors("[a]\ninstances = 0\nkill_timeout = -1\n\n[b]\ncommand = \"x\"\nfoo = 1\n");
        assert_eq!(
            errs,
            [
                "1:1: missing required key `command` in [a]",
                "2:13: `instances` must be at least 1, got 0",
                "3:16: `kill_timeout` must be at least 0, got -1",
                "7:1: unknown key `foo` in [b]",
            ]
        );
    }

    #[test]
    fn accepted_value_forms() {
        let fx = Fixture::new();
        let cfg = fx.load(
            "[a]\ncommand = \"x\"\nenv = { N = 0x1F, F = 1.5, B = true, U = 1_000 }\n\
             kill_signal = 9\nkill_timeout = 0\ndepends_on = [\"b\", \"b\"]\n\
             [b]\ncommand = \"y\"\nkill_signal = \"hup\"\n",
            None,
        );
        let a = &cfg.processes[0];
        let env: Vec<(&str, &str)> = a.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(env, [("N", "31"), ("F", "1.5"), ("B", "true"), ("U", "1000")]);
        assert_eq!(a.kill_signal.number(), libc::SIGKILL);
        assert_eq!(a.kill_timeout_ms, 0);
        assert_eq!(a.depends_on, ["b"]);
        assert_eq!(cfg.processes[1].kill_signal.number(), libc::SIGHUP);
    }

    #[test]
    fn restart_policy_keys() {
        use crate::spec::RestartPolicy;
        let fx = Fixture::new();
        let cfg = fx.load(
            "[a]\ncommand = \"x\"\nrestart = \"on-failure\"\nmax_restarts = 2\nmin_uptime = 5000\n\
             restart_delay = 250\nstop_exit_codes = [0, 3]\n[b]\ncommand = \"y\"\nrestart = \"always\"\n",
            None,
        );
        let a = &cfg.processes[0];
        assert_eq!(a.restart, RestartPolicy::OnFailure);
        assert_eq!((a.max_restarts, a.min_uptime_ms, a.restart_delay_ms), (2, 5000, 250));
        assert_eq!(a.stop_exit_codes, [0, 3]);
        let b = &cfg.processes[1];
        assert_eq!(b.restart, RestartPolicy::Always);
        assert_eq!((b.max_restarts, b.min_uptime_ms, b.restart_delay_ms), (15, 1000, 100));
    }
}
