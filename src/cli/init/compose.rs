//! The services of a docker-compose file, for `pm3 init`.
//!
//! A service with a `command` becomes a process: its `environment` as `env`, `env_file`,
//! `deploy.replicas` (or `scale`) as `instances`, `depends_on`, `restart` (`no` → `never`,
//! `always` and `unless-stopped` → `always`, `on-failure[:N]` → `on_failure` with
//! `max_restarts = N`), `healthcheck` (`test` → `exec:…`, `interval` → `health_interval`),
//! `stop_signal` → `kill_signal` and `stop_grace_period` → `kill_timeout`. Every other key, and
//! every part of these pm3 cannot take, is named in a [`Remark`] of the proposal: the file
//! written and the screen say what was not carried over.
//!
//! Compose interpolates `$VAR`, `${VAR}`, `${VAR:-default}`… when it reads the file, from the
//! environment it runs in. pm3 expands `${VAR}` and `${VAR:-default}` in `env` and
//! `health_check` when a process starts, from the environment of `pm3 start`: those are
//! written as they are (a bare `$VAR` as `${VAR}`), so they keep their meaning; a `${VAR}` that
//! is not set where `pm3 init` runs is written `${VAR:-}` (compose's empty value), and forms pm3
//! does not have (`${VAR:+x}`, `${VAR-x}`, `${VAR:?x}`) leave their variable out, saying so.
//! Commands run through `/bin/sh`, which expands the same forms itself.

use std::collections::BTreeMap;
use std::path::Path;

use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlLoader};

use super::detect::{Detected, Instances, Origin, Proposal, Remark, Skipped};
use crate::instances::closing_brace;
use crate::instances::{Found, expand};
use crate::spec::RestartPolicy;

/// What a compose file is read against: the environment `pm3 init` runs in (compose's own
/// interpolation source) and the directory of the file (for `env_file`).
pub struct Host<'a> {
    pub env: &'a BTreeMap<String, String>,
    pub dir: &'a Path,
}

/// The services of a docker-compose file named `file`: a service with a `command` (string or
/// list) is proposed, the others are skipped.
pub fn compose_file(file: &str, text: &str, host: &Host<'_>) -> Detected {
    let mut out = Detected::default();
    let docs = match YamlLoader::load_from_str(text) {
        Ok(docs) => docs,
        Err(e) => {
            out.notes.push(format!("{file} is not valid YAML ({e}); left out"));
            return out;
        }
    };
    let Some(root) = docs.first().and_then(merged) else {
        if !docs.is_empty() {
            out.notes.push(format!("{file} is not a mapping; left out"));
        }
        return out;
    };
    let Some(services) = get(&root, "services") else {
        out.notes.push(format!("{file} has no `services`; left out"));
        return out;
    };
    let Yaml::Hash(services) = services else {
        out.notes.push(format!("{file}: `services` is not a mapping; left out"));
        return out;
    };
    for (key, svc) in services {
        let Some(name) = scalar(key) else { continue };
        let origin = Origin::Service { file: file.to_string(), name };
        match service(origin, svc, host) {
            Ok(p) => out.proposals.push(p),
            Err(skip) => out.skipped.push(skip),
        }
    }
    out
}

/// Variables pm3 gives every instance itself (`pm3 export compose` writes the first two),
/// left out without a remark.
const RESERVED: &[&str] = &["PM3_INSTANCE_ID", "PM3_INSTANCE_COUNT", "PM3_NAME"];

/// Service keys read here; any other one is named as not carried over.
const MAPPED: &[&str] = &[
    "command",
    "environment",
    "env_file",
    "depends_on",
    "deploy",
    "scale",
    "restart",
    "healthcheck",
    "stop_signal",
    "stop_grace_period",
];

fn service(origin: Origin, svc: &Yaml, host: &Host<'_>) -> Result<Proposal, Skipped> {
    let skip = |origin: &Origin, reason: &str| Skipped { origin: origin.clone(), reason: reason.into() };
    let Some(svc) = merged(svc) else {
        return Err(skip(&origin, "not a mapping"));
    };
    let command = match get(&svc, "command") {
        // `[sh, -c, SCRIPT]` (what `pm3 export compose` writes for shell syntax) is the script,
        // which pm3 runs through `/bin/sh -c` itself.
        Some(Yaml::Array(words))
            if words.len() == 3
                && matches!(scalar(&words[0]).as_deref(), Some("sh" | "/bin/sh"))
                && scalar(&words[1]).as_deref() == Some("-c")
                && scalar(&words[2]).is_some_and(|w| !w.trim().is_empty()) =>
        {
            unescape(scalar(&words[2]).unwrap_or_default().trim())
        }
        Some(Yaml::Array(words)) => {
            let words: Option<Vec<String>> = words.iter().map(|w| scalar(w).map(|w| sh_word(&w))).collect();
            match words {
                Some(w) if !w.is_empty() => w.join(" "),
                _ => return Err(skip(&origin, "`command` is not a list of words")),
            }
        }
        Some(other) => match scalar(other) {
            Some(s) => unescape(s.trim()),
            None => return Err(skip(&origin, "`command` is not a string or a list")),
        },
        None if get(&svc, "build").is_some() => {
            return Err(skip(&origin, "no `command` (it comes from a Dockerfile): add it by hand"));
        }
        None if get(&svc, "image").is_some() => {
            return Err(skip(&origin, "image only: pm3 runs commands, not containers"));
        }
        None => return Err(skip(&origin, "no `command`")),
    };
    if command.is_empty() {
        return Err(skip(&origin, "empty `command`"));
    }
    if command.contains('\0') {
        return Err(skip(&origin, "the command holds a NUL byte"));
    }
    let deploy = get(&svc, "deploy").and_then(merged);
    let replicas = deploy.as_ref().and_then(|d| get(d, "replicas").cloned());
    let instances = match replicas.or_else(|| get(&svc, "scale").cloned()) {
        None => None,
        Some(n) => match scalar(&n).and_then(|s| s.parse::<i64>().ok()) {
            Some(0) => return Err(skip(&origin, "`deploy.replicas` is 0")),
            Some(1) => None,
            Some(n) => match u32::try_from(n) {
                Ok(n) => Some(Instances::Count(n)),
                Err(_) => return Err(skip(&origin, "`deploy.replicas` is not a count")),
            },
            None => return Err(skip(&origin, "`deploy.replicas` is not a count")),
        },
    };
    let mut p = Proposal::new(origin, command);
    p.instances = instances;
    p.depends_on = depends_on(get(&svc, "depends_on"), &mut p.remarks);
    let pairs = environment(get(&svc, "environment"));
    let defined = |name: &str| host.env.contains_key(name) || pairs.iter().any(|(k, _)| k == name);
    for (k, v) in &pairs {
        // pm3 sets them for every instance itself.
        if RESERVED.contains(&k.as_str()) {
            continue;
        }
        match interpolation(v, &defined) {
            Ok((value, unset)) => {
                for var in unset {
                    p.remarks.push(Remark::Note(format!(
                        "`environment.{k}` uses `${{{var}}}`, which is not set here: written `${{{var}:-}}` (empty when unset, as compose does)"
                    )));
                }
                p.env.push((k.clone(), value));
            }
            Err(reason) => p.remarks.push(Remark::LeftOut(format!("`environment.{k}`: {reason}"))),
        }
    }
    p.env_files = env_files(get(&svc, "env_file"), host, &pairs, &mut p.remarks);
    if let Some(r) = get(&svc, "restart") {
        restart(r, &mut p);
    }
    if let Some(h) = get(&svc, "healthcheck") {
        healthcheck(h, &defined, &mut p);
    }
    if let Some(s) = get(&svc, "stop_signal") {
        match scalar(s).filter(|s| s.parse::<crate::process::signal::Signal>().is_ok()) {
            Some(sig) => p.kill_signal = Some(sig),
            None => p.remarks.push(Remark::LeftOut("`stop_signal` (not a signal pm3 knows)".into())),
        }
    }
    if let Some(d) = get(&svc, "stop_grace_period") {
        match scalar(d).and_then(|d| duration_ms(&d)) {
            Some(ms) => p.kill_timeout_ms = Some(ms),
            None => p.remarks.push(Remark::LeftOut("`stop_grace_period` (not a duration like `10s`)".into())),
        }
    }
    if let Some(d) = &deploy {
        for key in d.keys().filter_map(scalar).filter(|k| k != "replicas") {
            p.remarks.push(Remark::LeftOut(format!("`deploy.{key}` ({})", unmapped_reason(&key))));
        }
    }
    for key in svc.keys().filter_map(scalar) {
        if !MAPPED.contains(&key.as_str()) && !key.starts_with("x-") {
            p.remarks.push(Remark::LeftOut(format!("`{key}` ({})", unmapped_reason(&key))));
        }
    }
    Ok(p)
}

/// Why a compose key has no place in `pm3.toml`.
fn unmapped_reason(key: &str) -> &'static str {
    match key {
        "image" => "pm3 runs the command on this machine, not in the image",
        "build" => "pm3 runs the command on this machine; nothing is built",
        "ports" | "expose" => "the process binds this machine's ports itself",
        "volumes" | "tmpfs" => "the process sees this machine's files",
        "networks" | "network_mode" | "hostname" | "domainname" | "extra_hosts" | "dns" | "links" => {
            "no container network: the process uses this machine's"
        }
        "working_dir" => "a directory inside the container: set `cwd` if the process needs another one",
        "entrypoint" => "pm3 runs `command` alone: put what the entrypoint does in it",
        "user" => "pm3 runs processes as the user that runs it",
        "container_name" => "pm3 names processes after their table",
        "restart_policy" => "see `restart`",
        "resources" => "pm3 has `max_memory` for memory, and no CPU limits",
        _ => "no pm3 equivalent",
    }
}

/// `depends_on` as a list or a map of service names; a condition pm3 cannot wait for is noted.
fn depends_on(y: Option<&Yaml>, remarks: &mut Vec<Remark>) -> Vec<String> {
    match y {
        Some(Yaml::Array(items)) => items.iter().filter_map(scalar).collect(),
        Some(Yaml::Hash(map)) => {
            for (name, spec) in map {
                let condition = merged(spec).and_then(|s| get(&s, "condition").and_then(scalar));
                if let (Some(name), Some(c)) = (scalar(name), condition)
                    && c == "service_completed_successfully"
                {
                    remarks.push(Remark::LeftOut(format!(
                        "`depends_on.{name}.condition: {c}` (pm3 waits for `{name}` to be online, not to exit)"
                    )));
                }
            }
            map.keys().filter_map(scalar).collect()
        }
        _ => Vec::new(),
    }
}

/// `restart`: `no`, `always`, `unless-stopped`, `on-failure[:N]`.
fn restart(y: &Yaml, p: &mut Proposal) {
    let text = scalar(y).unwrap_or_default();
    let (policy, max) = match text.split_once(':') {
        Some(("on-failure", n)) => (Some(RestartPolicy::OnFailure), n.trim().parse::<u32>().ok().map(Some)),
        _ => (
            match text.as_str() {
                "no" | "false" => Some(RestartPolicy::Never),
                "always" | "unless-stopped" => Some(RestartPolicy::Always),
                "on-failure" => Some(RestartPolicy::OnFailure),
                _ => None,
            },
            Some(None),
        ),
    };
    match (policy, max) {
        (Some(policy), Some(max)) => {
            p.restart = Some(policy);
            p.max_restarts = max;
        }
        _ => p.remarks.push(Remark::LeftOut(format!("`restart: {text}` (not a restart policy pm3 knows)"))),
    }
}

/// `healthcheck`: `test` becomes an `exec:` health check, `interval` its `health_interval`; the
/// other keys have no pm3 equivalent.
fn healthcheck(y: &Yaml, defined: &dyn Fn(&str) -> bool, p: &mut Proposal) {
    let Some(h) = merged(y) else {
        p.remarks.push(Remark::LeftOut("`healthcheck` (not a mapping)".into()));
        return;
    };
    if get(&h, "disable").is_some_and(|d| *d == Yaml::Boolean(true)) {
        return;
    }
    // The words of a `CMD` list are quoted for the shell an `exec:` check runs in; a `CMD-SHELL`
    // string, or a bare string, is shell text already.
    let test = match get(&h, "test") {
        Some(Yaml::Array(items)) => {
            let words: Vec<String> = items.iter().filter_map(scalar).collect();
            match words.split_first() {
                Some((kind, _)) if kind == "NONE" => return,
                Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Some(shell_words::join(rest)),
                Some((kind, [text])) if kind == "CMD-SHELL" => Some(text.clone()),
                _ => None,
            }
        }
        Some(other) => scalar(other),
        None => None,
    };
    match test.filter(|t| !t.trim().is_empty()) {
        Some(t) => match interpolation(&format!("exec:{}", t.trim()), defined) {
            Ok((check, unset)) => {
                for var in unset {
                    p.remarks.push(Remark::Note(format!(
                        "`healthcheck.test` uses `${{{var}}}`, which is not set here: written `${{{var}:-}}`"
                    )));
                }
                p.health_check = Some(check);
            }
            Err(reason) => p.remarks.push(Remark::LeftOut(format!("`healthcheck.test`: {reason}"))),
        },
        None => p
            .remarks
            .push(Remark::LeftOut("`healthcheck.test` (not `CMD …`, `CMD-SHELL …` or a string)".into())),
    }
    if let Some(i) = get(&h, "interval") {
        match scalar(i).and_then(|i| duration_ms(&i)).filter(|&ms| ms > 0) {
            Some(ms) => p.health_interval_ms = Some(ms),
            None => {
                p.remarks.push(Remark::LeftOut("`healthcheck.interval` (not a duration like `10s`)".into()))
            }
        }
    }
    for key in h.keys().filter_map(scalar) {
        let reason = match key.as_str() {
            "test" | "interval" | "disable" => continue,
            "timeout" => "pm3 bounds each probe itself",
            "retries" => {
                "pm3 has no failure count: a process is `unhealthy` after `health_timeout` without a passing probe"
            }
            "start_period" | "start_interval" => {
                "pm3 probes every `health_interval` from the start, for up to `health_timeout`"
            }
            _ => "no pm3 equivalent",
        };
        p.remarks.push(Remark::LeftOut(format!("`healthcheck.{key}` ({reason})")));
    }
}

/// `env_file`: a path or a list of paths (or of `{path, required}`), relative to the compose
/// file. A file pm3 would refuse (missing, not `KEY=VALUE` as pm3 reads it, or using a `${VAR}`
/// that nothing defines where `pm3 init` runs) is left out, saying why.
fn env_files(
    y: Option<&Yaml>,
    host: &Host<'_>,
    environment: &[(String, String)],
    remarks: &mut Vec<Remark>,
) -> Vec<String> {
    let entries: Vec<&Yaml> = match y {
        Some(Yaml::Array(items)) => items.iter().collect(),
        Some(one) => vec![one],
        None => Vec::new(),
    };
    let mut read = Vec::new();
    for entry in entries {
        let path = match entry {
            Yaml::Hash(_) => merged(entry).and_then(|m| get(&m, "path").and_then(scalar)),
            other => scalar(other),
        };
        let Some(path) = path else {
            remarks.push(Remark::LeftOut("`env_file` (an entry without a path)".into()));
            continue;
        };
        match crate::config::read_env_file(&host.dir.join(&path)) {
            Ok(vars) => read.push((path, vars)),
            Err(why) => remarks.push(Remark::LeftOut(format!("`env_file` `{path}` ({why})"))),
        }
    }
    let defined = |name: &str| {
        host.env.contains_key(name)
            || environment.iter().any(|(k, _)| k == name)
            || read.iter().any(|(_, vars)| vars.iter().any(|(k, _)| k == name))
    };
    let mut out = Vec::new();
    for (path, vars) in &read {
        let mut problems = Vec::new();
        for (_, value) in vars {
            let mut lookup = |n: &str| if defined(n) { Found::Value("x".into()) } else { Found::Undefined };
            expand(value, &mut lookup, &mut problems);
        }
        match problems.first() {
            Some(problem) => remarks.push(Remark::LeftOut(format!("`env_file` `{path}` ({problem})"))),
            None => out.push(path.clone()),
        }
    }
    out
}

/// A compose value written for pm3's `env` and `health_check`, with the variables it uses that
/// are not `defined` (written `${VAR:-}`); or why it cannot be (see the module documentation).
fn interpolation(value: &str, defined: &dyn Fn(&str) -> bool) -> Result<(String, Vec<String>), String> {
    let mut out = String::with_capacity(value.len());
    let mut unset = Vec::new();
    let mut rest = value;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push_str("$$");
            rest = stripped;
            continue;
        }
        let name_len = name_len(after.strip_prefix('{').unwrap_or(after));
        if !after.starts_with('{') {
            // `$VAR` is compose's `${VAR}`; a `$` before anything else stays a `$`.
            if name_len == 0 {
                out.push_str("$$");
                rest = after;
            } else {
                let name = &after[..name_len];
                out.push_str(&braced(name, defined, &mut unset));
                rest = &after[name_len..];
            }
            continue;
        }
        let body = &after[1..];
        let name = &body[..name_len];
        let tail = &body[name_len..];
        let Some(end) = closing_brace(tail) else {
            return Err(format!("an unclosed `${{` in `{}`", crate::spec::show(value)));
        };
        let op = &tail[..end];
        if name.is_empty() {
            return Err(format!("`${{{op}}}` is not an interpolation"));
        }
        if op.is_empty() {
            out.push_str(&braced(name, defined, &mut unset));
        } else if let Some(default) = op.strip_prefix(":-") {
            let (default, more) = interpolation(default, defined)?;
            unset.extend(more);
            out.push_str(&format!("${{{name}:-{default}}}"));
        } else if op.starts_with(":?") || op.starts_with('?') {
            if !defined(name) {
                return Err(format!("`${{{name}{op}}}` requires `{name}`, which is not set here"));
            }
            // pm3 refuses to start without it too.
            out.push_str(&format!("${{{name}}}"));
        } else {
            return Err(format!(
                "`${{{name}{}}}`: pm3 expands only `${{VAR}}` and `${{VAR:-default}}`",
                crate::spec::show(op)
            ));
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok((out, unset))
}

/// `${name}`, or `${name:-}` (noted in `unset`) when nothing defines it.
fn braced(name: &str, defined: &dyn Fn(&str) -> bool, unset: &mut Vec<String>) -> String {
    if defined(name) {
        format!("${{{name}}}")
    } else {
        if !unset.iter().any(|u| u == name) {
            unset.push(name.to_string());
        }
        format!("${{{name}:-}}")
    }
}

/// Length in bytes of the variable name `s` starts with, 0 if none.
fn name_len(s: &str) -> usize {
    s.char_indices()
        .take_while(|&(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
        .map(|(i, c)| i + c.len_utf8())
        .last()
        .unwrap_or(0)
}

/// A compose duration (`1m30s`, `500ms`, `2.5s`, `1h`) in milliseconds.
fn duration_ms(text: &str) -> Option<u64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let ms = match &rest[..unit_len] {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1000.0,
            "ms" => 1.0,
            "us" | "µs" => 0.001,
            "ns" => 0.000_001,
            _ => return None,
        };
        total += n * ms;
        rest = &rest[unit_len..];
    }
    (total < 1e15).then(|| total.round() as u64)
}

/// A word of a list `command` for `/bin/sh`: quoted so that it stays one word, but with compose's
/// interpolation (`$VAR`, `${VAR}`) left for the shell, which expands the same forms (compose's
/// `$$`, a literal `$`, stays literal).
fn sh_word(word: &str) -> String {
    let interpolates = word.replace("$$", "").contains('$');
    if !interpolates {
        return shell_words::quote(&unescape(word)).into_owned();
    }
    let mut out = String::from("\"");
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' if chars.peek() == Some(&'$') => {
                chars.next();
                out.push_str("\\$");
            }
            '"' | '\\' | '`' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A scalar as text (`3`, `true`, `1.5`, `x`); `None` for null, lists and maps.
fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A mapping with its YAML merge keys (`<<: *defaults`, or a list of them) applied: keys
/// written in the mapping win over merged ones, earlier merged maps over later ones.
fn merged(y: &Yaml) -> Option<Hash> {
    let Yaml::Hash(map) = y else { return None };
    let merge_key = Yaml::String("<<".into());
    let mut out = Hash::new();
    for (k, v) in map {
        if *k != merge_key {
            out.insert(k.clone(), v.clone());
        }
    }
    let sources: Vec<&Yaml> = match map.get(&merge_key) {
        Some(Yaml::Array(items)) => items.iter().collect(),
        Some(one) => vec![one],
        None => Vec::new(),
    };
    for src in sources {
        if let Some(extra) = merged(src) {
            for (k, v) in extra {
                out.entry(k).or_insert(v);
            }
        }
    }
    Some(out)
}

fn get<'a>(map: &'a Hash, key: &str) -> Option<&'a Yaml> {
    map.get(&Yaml::String(key.into())).filter(|v| !v.is_null())
}

/// `environment` as a map (`KEY: value`) or a list (`KEY=value`), values as compose wrote them.
/// Variables without a value (`KEY`, `KEY:`) pass the caller's value through in compose; pm3
/// passes the whole environment of `pm3 start` anyway, so they are left out. So are values
/// holding a NUL byte.
fn environment(y: Option<&Yaml>) -> Vec<(String, String)> {
    let pairs: Vec<(String, String)> = match y {
        Some(Yaml::Hash(map)) => map.iter().filter_map(|(k, v)| Some((scalar(k)?, scalar(v)?))).collect(),
        Some(Yaml::Array(items)) => items
            .iter()
            .filter_map(scalar)
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect(),
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .filter(|(k, v)| !(k.is_empty() || k.contains(['\0', '=']) || v.contains('\0')))
        .collect()
}

/// Compose writes a literal `$` as `$$`; in a string `command` the shell sees the rest (a
/// single `$` starts an expansion there as in compose).
fn unescape(s: &str) -> String {
    s.replace("$$", "$")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn names_of(ps: &[Proposal]) -> Vec<&str> {
        ps.iter().map(|p| p.name.as_str()).collect()
    }

    fn commands_of(ps: &[Proposal]) -> Vec<&str> {
        ps.iter().map(|p| p.command.as_str()).collect()
    }

    /// A host with `vars` set and a directory without files.
    fn host(vars: &[(&str, &str)]) -> Host<'static> {
        let env: BTreeMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Host { env: Box::leak(Box::new(env)), dir: Path::new("/nonexistent") }
    }

    fn remarks_of(p: &Proposal) -> Vec<String> {
        p.remarks.iter().map(ToString::to_string).collect()
    }

    const COMPOSE: &str = r#"
x-common: &common
  environment:
    SHARED: "yes"
  deploy:
    replicas: 2
services:
  db:
    image: postgres:16
  cache:
    image: redis
    ports: ["6379:6379"]
  api:
    build: .
    command: ["python", "-m", "http.server", "8000", "--bind", "0.0.0.0"]
    depends_on: [db, worker]
    environment:
      - DEBUG=1
      - URL=postgres://db/app?sslmode=disable
      - PRICE=$$5
      - PASSTHROUGH
    deploy:
      replicas: 3
  worker:
    <<: *common
    command: celery -A app worker --loglevel=info
    depends_on:
      cache:
        condition: service_started
    environment:
      QUEUE: default
      RETRIES: 5
      RATIO: 0.5
      EMPTY: ""
      INHERIT:
  builder:
    build: ./builder
  nothing: {}
  replicas_zero:
    command: sleep 1
    deploy: { replicas: 0 }
"#;

    #[test]
    fn compose_services() {
        let d = compose_file("compose.yaml", COMPOSE, &host(&[]));
        assert_eq!(names_of(&d.proposals), ["api", "worker"]);
        let api = &d.proposals[0];
        assert_eq!(api.command, "python -m http.server 8000 --bind 0.0.0.0");
        assert_eq!(api.instances, Some(Instances::Count(3)));
        assert_eq!(api.depends_on, ["db", "worker"]);
        assert_eq!(
            api.env,
            pairs(&[("DEBUG", "1"), ("URL", "postgres://db/app?sslmode=disable"), ("PRICE", "$$5")])
        );
        let worker = &d.proposals[1];
        assert_eq!(worker.command, "celery -A app worker --loglevel=info");
        // Merged from `x-common`: `deploy`, not `environment` (the service's own wins whole).
        assert_eq!(worker.instances, Some(Instances::Count(2)));
        assert_eq!(worker.depends_on, ["cache"]);
        assert_eq!(
            worker.env,
            pairs(&[("QUEUE", "default"), ("RETRIES", "5"), ("RATIO", "0.5"), ("EMPTY", ""),])
        );
        let remarks: Vec<String> = api.remarks.iter().map(ToString::to_string).collect();
        assert_eq!(
            remarks,
            ["not carried over: `build` (pm3 runs the command on this machine; nothing is built)"]
        );
        assert!(worker.remarks.is_empty(), "{:?}", worker.remarks);
        let skipped: Vec<String> = d.skipped.iter().map(ToString::to_string).collect();
        assert_eq!(
            skipped,
            [
                "compose.yaml service `db`: image only: pm3 runs commands, not containers",
                "compose.yaml service `cache`: image only: pm3 runs commands, not containers",
                "compose.yaml service `builder`: no `command` (it comes from a Dockerfile): add it by hand",
                "compose.yaml service `nothing`: no `command`",
                "compose.yaml service `replicas_zero`: `deploy.replicas` is 0",
            ]
        );
    }

    #[test]
    fn compose_list_commands_are_quoted_words() {
        let text = "services:\n  sh:\n    command: [sh, -c, 'echo \"$$HOME\" && sleep 1']\n  n:\n    command: [sleep, 5]\n  bad:\n    command: [sleep, [5]]\n  scaled:\n    command: sleep 1\n    scale: 2\n";
        let d = compose_file("docker-compose.yml", text, &host(&[]));
        // `$$` is compose's escape for a literal `$`; `[sh, -c, SCRIPT]` is the script, which
        // pm3 runs through `/bin/sh -c` itself.
        assert_eq!(commands_of(&d.proposals), ["echo \"$HOME\" && sleep 1", "sleep 5", "sleep 1"]);
        let text = "services:\n  a:\n    command: [/bin/sh, -c, 'exec sleep 1']\n  b:\n    command: [sh, -c, ' ']\n  c:\n    command: [bash, -c, 'x']\n  d:\n    command: [sh, -c, a, b]\n";
        let unwrapped = compose_file("compose.yaml", text, &host(&[]));
        assert_eq!(
            commands_of(&unwrapped.proposals),
            ["exec sleep 1", "sh -c ' '", "bash -c x", "sh -c a b"]
        );
        let text = "services:\n  a:\n    command: sleep 1\n    environment: {PM3_INSTANCE_COUNT: '4', PM3_INSTANCE_ID: '0', PM3_NAME: a, KEEP: '1'}\n";
        let reserved = compose_file("compose.yaml", text, &host(&[]));
        assert_eq!(reserved.proposals[0].env, pairs(&[("KEEP", "1")]));
        assert_eq!(remarks_of(&reserved.proposals[0]), Vec::<String>::new());
        assert_eq!(d.proposals[2].instances, Some(Instances::Count(2)));
        assert_eq!(d.skipped[0].reason, "`command` is not a list of words");
    }

    #[test]
    fn compose_oddities() {
        assert!(
            compose_file("compose.yml", "services: [\n", &host(&[])).notes[0]
                .starts_with("compose.yml is not valid YAML")
        );
        assert_eq!(
            compose_file("compose.yml", "version: '3'\n", &host(&[])).notes,
            ["compose.yml has no `services`; left out"]
        );
        assert_eq!(
            compose_file("compose.yml", "- a\n", &host(&[])).notes,
            ["compose.yml is not a mapping; left out"]
        );
        assert_eq!(compose_file("compose.yml", "", &host(&[])), Detected::default());
        assert_eq!(
            compose_file("compose.yml", "services:\n", &host(&[])).notes,
            ["compose.yml has no `services`; left out"]
        );
    }

    #[test]
    fn restart_stop_and_healthcheck_are_mapped() {
        let text = r#"
services:
  never: { command: sleep 1, restart: "no" }
  always: { command: sleep 1, restart: always }
  unless: { command: sleep 1, restart: unless-stopped }
  failure: { command: sleep 1, restart: on-failure }
  failure3: { command: sleep 1, restart: "on-failure:3" }
  odd: { command: sleep 1, restart: sometimes }
  web:
    command: python -m http.server
    stop_signal: SIGINT
    stop_grace_period: 1m30s
    healthcheck:
      test: ["CMD", "curl", "-f", "http://localhost:8000/a b"]
      interval: 1m500ms
      timeout: 10s
      retries: 3
      start_period: 5s
  shell:
    command: sleep 1
    stop_signal: SIGNOPE
    stop_grace_period: soon
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U $$USER || exit 1"]
      interval: 0s
  string: { command: sleep 1, healthcheck: { test: "test -f /tmp/ready" } }
  none: { command: sleep 1, healthcheck: { test: ["NONE"], retries: 2 } }
  disabled: { command: sleep 1, healthcheck: { disable: true, test: "x" } }
  weird: { command: sleep 1, healthcheck: { test: ["CMD"] } }
"#;
        let d = compose_file("compose.yaml", text, &host(&[]));
        let restarts: Vec<(Option<RestartPolicy>, Option<u32>)> =
            d.proposals.iter().map(|p| (p.restart, p.max_restarts)).collect();
        use RestartPolicy::{Always, Never, OnFailure};
        assert_eq!(
            restarts[..6],
            [
                (Some(Never), None),
                (Some(Always), None),
                (Some(Always), None),
                (Some(OnFailure), None),
                (Some(OnFailure), Some(3)),
                (None, None)
            ]
        );
        assert_eq!(
            remarks_of(&d.proposals[5]),
            ["not carried over: `restart: sometimes` (not a restart policy pm3 knows)"]
        );
        let web = &d.proposals[6];
        assert_eq!(web.kill_signal.as_deref(), Some("SIGINT"));
        assert_eq!(web.kill_timeout_ms, Some(90_000));
        assert_eq!(web.health_check.as_deref(), Some("exec:curl -f 'http://localhost:8000/a b'"));
        assert_eq!(web.health_interval_ms, Some(60_500));
        assert_eq!(
            remarks_of(web),
            [
                "not carried over: `healthcheck.timeout` (pm3 bounds each probe itself)",
                "not carried over: `healthcheck.retries` (pm3 has no failure count: a process is `unhealthy` after `health_timeout` without a passing probe)",
                "not carried over: `healthcheck.start_period` (pm3 probes every `health_interval` from the start, for up to `health_timeout`)",
            ]
        );
        let shell = &d.proposals[7];
        assert_eq!(shell.health_check.as_deref(), Some("exec:pg_isready -U $$USER || exit 1"));
        assert_eq!(
            (shell.kill_signal.as_ref(), shell.kill_timeout_ms, shell.health_interval_ms),
            (None, None, None)
        );
        assert_eq!(
            remarks_of(shell),
            [
                "not carried over: `healthcheck.interval` (not a duration like `10s`)",
                "not carried over: `stop_signal` (not a signal pm3 knows)",
                "not carried over: `stop_grace_period` (not a duration like `10s`)",
            ]
        );
        assert_eq!(d.proposals[8].health_check.as_deref(), Some("exec:test -f /tmp/ready"));
        // A disabled check has nothing to carry over.
        for p in &d.proposals[9..11] {
            assert_eq!((p.health_check.as_ref(), p.remarks.len()), (None, 0), "{p:?}");
        }
        assert_eq!(
            remarks_of(&d.proposals[11]),
            ["not carried over: `healthcheck.test` (not `CMD …`, `CMD-SHELL …` or a string)"]
        );
    }

    #[test]
    fn other_keys_are_named_as_not_carried_over() {
        let text = r#"
services:
  api:
    image: python:3.12
    command: python app.py
    ports: ["8000:8000"]
    volumes: [".:/app"]
    working_dir: /app
    user: "1000"
    x-custom: 1
    deploy:
      replicas: 2
      resources: { limits: { memory: 512M } }
    depends_on:
      migrate: { condition: service_completed_successfully }
      db: { condition: service_healthy }
"#;
        let d = compose_file("compose.yaml", text, &host(&[]));
        let api = &d.proposals[0];
        assert_eq!(api.depends_on, ["migrate", "db"]);
        assert_eq!(
            remarks_of(api),
            [
                "not carried over: `depends_on.migrate.condition: service_completed_successfully` (pm3 waits for `migrate` to be online, not to exit)",
                "not carried over: `deploy.resources` (pm3 has `max_memory` for memory, and no CPU limits)",
                "not carried over: `image` (pm3 runs the command on this machine, not in the image)",
                "not carried over: `ports` (the process binds this machine's ports itself)",
                "not carried over: `volumes` (the process sees this machine's files)",
                "not carried over: `working_dir` (a directory inside the container: set `cwd` if the process needs another one)",
                "not carried over: `user` (pm3 runs processes as the user that runs it)",
            ]
        );
    }

    #[test]
    fn env_files_that_exist_are_carried_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("app.env"), "A=1\n").expect("write");
        std::fs::write(dir.path().join("extra.env"), "B=${A}${HOME}${C}\n").expect("write");
        std::fs::write(dir.path().join("spaces.env"), "A=1\nS=two words\n").expect("write");
        std::fs::write(dir.path().join("undefined.env"), "U=${NOWHERE}\n").expect("write");
        let env: BTreeMap<String, String> = [("HOME".to_string(), "/h".to_string())].into();
        let host = Host { env: &env, dir: dir.path() };
        let text = "services:\n  one:\n    command: sleep 1\n    env_file: app.env\n  many:\n    command: sleep 1\n    \
                    environment: { C: 1 }\n    \
                    env_file: [app.env, missing.env, {path: extra.env, required: false}, {required: true}, spaces.env, undefined.env]\n";
        let d = compose_file("compose.yaml", text, &host);
        assert_eq!(d.proposals[0].env_files, ["app.env"]);
        assert_eq!(d.proposals[1].env_files, ["app.env", "extra.env"]);
        assert_eq!(
            remarks_of(&d.proposals[1]),
            [
                "not carried over: `env_file` `missing.env` (not found)",
                "not carried over: `env_file` (an entry without a path)",
                "not carried over: `env_file` `spaces.env` (line 2 `S=two words` is not `KEY=VALUE` as pm3 reads it)",
                "not carried over: `env_file` `undefined.env` (`${NOWHERE}` is not defined (define `NOWHERE` in `env`, or give a default: `${NOWHERE:-value}`))",
            ]
        );
    }

    #[test]
    fn interpolation_is_written_for_pm3_or_left_out() {
        let text = r#"
services:
  app:
    command: ["python", "app.py", "--port", "${PORT:-8000}", "$$literal", "say \"${GREETING}\""]
    environment:
      DEFAULTED: "${API_URL:-http://localhost:8000}"
      SET: "${HOME}/data"
      UNSET: "postgres://${DB_HOST}/app"
      BARE: "$HOME/x and $$HOME and $ alone"
      NESTED: "${A:-${HOME}}"
      OWN: "${DEFAULTED}/v1"
      REQUIRED: "${HOME:?home is needed}"
      MISSING: "${NOT_SET:?set it}"
      PLUS: "${HOME:+yes}"
      DASH: "${HOME-x}"
      OPEN: "${HOME"
    healthcheck:
      test: ["CMD-SHELL", "curl -f http://localhost:${PORT:-8000}/ -H \"X: ${TOKEN}\""]
"#;
        let d = compose_file("compose.yaml", text, &host(&[("HOME", "/home/u")]));
        let app = &d.proposals[0];
        assert_eq!(app.command, r#"python app.py --port "${PORT:-8000}" '$literal' "say \"${GREETING}\"""#);
        assert_eq!(
            app.env,
            pairs(&[
                ("DEFAULTED", "${API_URL:-http://localhost:8000}"),
                ("SET", "${HOME}/data"),
                ("UNSET", "postgres://${DB_HOST:-}/app"),
                ("BARE", "${HOME}/x and $$HOME and $$ alone"),
                ("NESTED", "${A:-${HOME}}"),
                ("OWN", "${DEFAULTED}/v1"),
                ("REQUIRED", "${HOME}"),
            ])
        );
        assert_eq!(
            app.health_check.as_deref(),
            Some("exec:curl -f http://localhost:${PORT:-8000}/ -H \"X: ${TOKEN:-}\"")
        );
        assert_eq!(
            remarks_of(app),
            [
                "note: `environment.UNSET` uses `${DB_HOST}`, which is not set here: written `${DB_HOST:-}` (empty when unset, as compose does)",
                "not carried over: `environment.MISSING`: `${NOT_SET:?set it}` requires `NOT_SET`, which is not set here",
                "not carried over: `environment.PLUS`: `${HOME:+yes}`: pm3 expands only `${VAR}` and `${VAR:-default}`",
                "not carried over: `environment.DASH`: `${HOME-x}`: pm3 expands only `${VAR}` and `${VAR:-default}`",
                "not carried over: `environment.OPEN`: an unclosed `${` in `${HOME`",
                "note: `healthcheck.test` uses `${TOKEN}`, which is not set here: written `${TOKEN:-}`",
            ]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration_ms("10s"), Some(10_000));
        assert_eq!(duration_ms("1m30s"), Some(90_000));
        assert_eq!(duration_ms("1h"), Some(3_600_000));
        assert_eq!(duration_ms("2.5s"), Some(2500));
        assert_eq!(duration_ms("250ms"), Some(250));
        assert_eq!(duration_ms("1500us"), Some(2));
        for bad in ["", "10", "s", "1x", "1.2.3s", "99999999999999h"] {
            assert_eq!(duration_ms(bad), None, "{bad}");
        }
    }
}
