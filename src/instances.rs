//! Cluster expansion: one [`ProcessDef`] becomes `instances` concrete instances, each with its
//! name (`worker:2`), group, and final environment.
//!
//! Pure functions, shared by the daemon (start, reconcile, scale) and `info`.

use std::collections::BTreeMap;

use crate::spec::ProcessDef;

/// Name of instance `index` of `process` when the process has `count` instances.
pub fn instance_name(process: &str, index: u32, count: u32) -> String {
    if count > 1 { format!("{process}:{index}") } else { process.to_string() }
}

/// The instance index in the list's `instance` field: `None` for a process that is not clustered.
pub fn instance_field(index: u32, count: u32) -> Option<u32> {
    (count > 1).then_some(index)
}

/// The group of every instance of `def`: the one set in the file, or the process name when clustered.
pub fn group_of(def: &ProcessDef) -> Option<String> {
    match &def.group {
        Some(g) => Some(g.clone()),
        None if def.instances > 1 => Some(def.name.clone()),
        None => None,
    }
}

/// The full environment of instance `index`: the starting environment `base`, then the config's
/// variables (with `increment_var` offset and `${VAR}` expanded), then `PM3_INSTANCE_ID`,
/// `PM3_INSTANCE_COUNT` and `PM3_NAME` (the instance name, one of the markers a daemon finds its
/// processes by: see `process::marker`), which nothing can override.
///
/// A `${VAR}` the loader would have refused (undefined, a cycle, bad syntax) expands leniently
/// here (to nothing, or as written), so a daemon never fails on it.
pub fn environment(
    def: &ProcessDef,
    base: &BTreeMap<String, String>,
    index: u32,
) -> BTreeMap<String, String> {
    let scope = Scope::new(def, base, index);
    let mut out = base.clone();
    for name in scope.own.keys() {
        let value = scope.own_value(name, &mut Vec::new(), &mut Vec::new());
        out.insert((*name).to_string(), value);
    }
    for (name, value) in scope.fixed {
        out.insert(name.to_string(), value);
    }
    out
}

/// Which expanding value of a definition a problem is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expanding {
    /// The variable `NAME` (its value that applies: `env_<name>` over `env` over `env_file`).
    Env(String),
    HealthCheck,
}

/// Every problem with `${…}` in `def` when started from the environment `base`: in each
/// variable's value that applies, then in `health_check`. Each value is checked on its own: a
/// problem inside a variable it uses is that variable's problem. The names defined do not
/// depend on the instance, so instance 0 stands for all.
pub fn expansion_problems(
    def: &ProcessDef,
    base: &BTreeMap<String, String>,
) -> Vec<(Expanding, ExpandProblem)> {
    let scope = Scope::new(def, base, 0);
    let mut out = Vec::new();
    for name in scope.own.keys() {
        let mut problems = Vec::new();
        scope.own_value(name, &mut Vec::new(), &mut problems);
        dedup(&mut problems);
        out.extend(problems.into_iter().map(|p| (Expanding::Env((*name).to_string()), p)));
    }
    if let Some(text) = &def.health_check {
        let env = environment(def, base, 0);
        let mut problems = Vec::new();
        expand(text, &mut |n| env.get(n).cloned().map_or(Found::Undefined, Found::Value), &mut problems);
        dedup(&mut problems);
        out.extend(problems.into_iter().map(|p| (Expanding::HealthCheck, p)));
    }
    out
}

fn dedup(problems: &mut Vec<ExpandProblem>) {
    let mut seen = Vec::new();
    problems.retain(|p| {
        let new = !seen.contains(p);
        if new {
            seen.push(p.clone());
        }
        new
    });
}

/// `text` with its `${VAR}`s taken from `env` (an undefined one expands to nothing, bad syntax
/// stays as written): how a `health_check` is expanded for one run.
pub fn expand_in(text: &str, env: &BTreeMap<String, String>) -> String {
    expand(text, &mut |n| env.get(n).cloned().map_or(Found::Undefined, Found::Value), &mut Vec::new())
}

/// The variables one instance's `${VAR}`s can see.
struct Scope<'a> {
    /// The config's own variables, the value that applies, before expansion.
    own: BTreeMap<&'a str, String>,
    base: &'a BTreeMap<String, String>,
    /// `PM3_INSTANCE_ID`, `PM3_INSTANCE_COUNT`, `PM3_NAME`.
    fixed: [(&'static str, String); 3],
}

impl<'a> Scope<'a> {
    fn new(def: &'a ProcessDef, base: &'a BTreeMap<String, String>, index: u32) -> Scope<'a> {
        // Last one wins.
        let mut own: BTreeMap<&str, String> = BTreeMap::new();
        for (k, v) in &def.env {
            own.insert(k, v.clone());
        }
        if let Some(var) = &def.increment_var {
            let current = own.get(var.as_str()).cloned().or_else(|| base.get(var).cloned());
            if let Some(n) = current.and_then(|v| v.trim().parse::<i64>().ok()) {
                // The integer is written out: a `$` cannot be in it.
                own.insert(var, n.saturating_add(i64::from(index)).to_string());
            }
        }
        let fixed = [
            ("PM3_INSTANCE_ID", index.to_string()),
            ("PM3_INSTANCE_COUNT", def.instances.to_string()),
            ("PM3_NAME", instance_name(&def.name, index, def.instances)),
        ];
        Scope { own, base, fixed }
    }

    /// The expanded value of the config's variable `name`, with the problems of its own value.
    /// `visiting` holds the variables being expanded around it.
    fn own_value(
        &self,
        name: &'a str,
        visiting: &mut Vec<&'a str>,
        problems: &mut Vec<ExpandProblem>,
    ) -> String {
        let Some((key, raw)) = self.own.get_key_value(name) else { return String::new() };
        visiting.push(key);
        let value = expand(raw, &mut |n| self.lookup(n, visiting), problems);
        visiting.pop();
        value
    }

    /// What `${name}` means inside the variables `visiting`: pm3's own variables, then the
    /// config's (a variable inside its own expansion, directly or through others, means the
    /// starting environment's value), then `base`.
    fn lookup(&self, name: &str, visiting: &mut Vec<&'a str>) -> Found {
        if let Some((_, v)) = self.fixed.iter().find(|(n, _)| *n == name) {
            return Found::Value(v.clone());
        }
        if let Some((key, _)) = self.own.get_key_value(name)
            && !visiting.contains(key)
        {
            let mut inner = Vec::new();
            let value = self.own_value(key, visiting, &mut inner);
            // A cycle found further in runs through here too.
            return match inner.into_iter().find(|p| matches!(p, ExpandProblem::Cycle(_))) {
                Some(ExpandProblem::Cycle(n)) => Found::Cycle(n),
                _ => Found::Value(value),
            };
        }
        match self.base.get(name) {
            Some(v) => Found::Value(v.clone()),
            None if visiting.contains(&name) => Found::Cycle(name.to_string()),
            None => Found::Undefined,
        }
    }
}

/// What a lookup of `${NAME}` found.
pub enum Found {
    Value(String),
    Undefined,
    /// The variable named is being expanded (it uses itself) and the starting environment does
    /// not define it.
    Cycle(String),
}

/// Why a `${…}` could not be expanded as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandProblem {
    /// `${NAME}` without a default, and nothing defines `NAME`.
    Undefined(String),
    /// `${NAME}` inside `NAME`'s own value (directly or through other variables), and the
    /// starting environment does not define `NAME`.
    Cycle(String),
    /// A `$` followed by `{` that is not `${NAME}` or `${NAME:-default}`: the text from `${`.
    Syntax(String),
}

impl std::fmt::Display for ExpandProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpandProblem::Undefined(name) => write!(
                f,
                "`${{{name}}}` is not defined (define `{name}` in `env`, or give a default: `${{{name}:-value}}`)"
            ),
            ExpandProblem::Cycle(name) => write!(
                f,
                "`${{{name}}}` is used inside the value of `{name}` itself, and the starting environment does not define it"
            ),
            ExpandProblem::Syntax(text) => write!(
                f,
                "`{}` is not an expansion pm3 knows: write `${{VAR}}` or `${{VAR:-default}}`, and `$$` for a literal `$`",
                crate::spec::show(text)
            ),
        }
    }
}

/// Expands `value`: `${NAME}` becomes `lookup(NAME)`; `${NAME:-default}` too, unless that is
/// undefined or empty, when it becomes `default` (itself expanded, only then); `$$` is a literal
/// `$`; any other `$` stays as written (the shell may still see it when a command runs through
/// `sh -c`). Every problem is pushed to `problems`; an undefined `${NAME}` expands to nothing and
/// a malformed `${…}` stays as written.
pub fn expand(
    value: &str,
    lookup: &mut dyn FnMut(&str) -> Found,
    problems: &mut Vec<ExpandProblem>,
) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let name_len = var_name_len(body);
        let tail = &body[name_len..];
        if name_len > 0 && tail.starts_with('}') {
            let name = &body[..name_len];
            match lookup(name) {
                Found::Value(v) => out.push_str(&v),
                Found::Undefined => problems.push(ExpandProblem::Undefined(name.to_string())),
                Found::Cycle(n) => problems.push(ExpandProblem::Cycle(n)),
            }
            rest = &tail[1..];
        } else if name_len > 0
            && let Some(default_and_rest) = tail.strip_prefix(":-")
            && let Some(end) = closing_brace(default_and_rest)
        {
            let name = &body[..name_len];
            match lookup(name) {
                Found::Value(v) if !v.is_empty() => out.push_str(&v),
                _ => out.push_str(&expand(&default_and_rest[..end], lookup, problems)),
            }
            rest = &default_and_rest[end + 1..];
        } else {
            // As written, up to its `}` (or the end).
            let end = body.find('}').map_or(body.len(), |i| i + 1);
            let text = &rest[pos..pos + 2 + end];
            problems.push(ExpandProblem::Syntax(text.to_string()));
            out.push_str(text);
            rest = &body[end..];
        }
    }
    out.push_str(rest);
    out
}

/// Length in bytes of the variable name `s` starts with (`[A-Za-z_][A-Za-z0-9_]*`), 0 if none.
fn var_name_len(s: &str) -> usize {
    let mut len = 0;
    for (i, c) in s.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        len = i + 1;
    }
    len
}

/// The byte index of the `}` that closes a default value (or an interpolation), counting the
/// `${…}` nested in it and skipping `$$`.
pub fn closing_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn def(env: &[(&str, &str)], instances: u32) -> ProcessDef {
        let mut d = ProcessDef::new("web", "node server.js", PathBuf::from("/srv"));
        d.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        d.instances = instances;
        d
    }

    #[test]
    fn names_follow_the_seed() {
        assert_eq!(instance_name("worker", 2, 4), "worker:2");
        assert_eq!(instance_name("worker", 0, 1), "worker");
        assert_eq!(instance_field(0, 1), None);
        assert_eq!(instance_field(3, 4), Some(3));
    }

    #[test]
    fn group_defaults_to_process_name_when_clustered() {
        assert_eq!(group_of(&def(&[], 4)).as_deref(), Some("web"));
        assert_eq!(group_of(&def(&[], 1)), None);
        let mut d = def(&[], 4);
        d.group = Some("backend".into());
        assert_eq!(group_of(&d).as_deref(), Some("backend"));
    }

    #[test]
    fn instance_variables_and_expansion() {
        let base: BTreeMap<String, String> =
            [("PATH".to_string(), "/bin".to_string()), ("HOME".into(), "/root".into())].into();
        let mut d = def(
            &[
                ("URL", "http://localhost:${PORT}/x"),
                ("PORT", "3000"),
                ("PATH", "${PATH}:/opt/bin"),
                ("ID", "w-${PM3_INSTANCE_ID}-of-${PM3_INSTANCE_COUNT}"),
                ("TAG", "${PM3_NAME}"),
                ("LIT", "$$HOME $HOME ${HOME"),
                ("A", "${B}"),
                ("B", "${A}"),
            ],
            3,
        );
        d.increment_var = Some("PORT".into());
        let env = environment(&d, &base, 2);
        assert_eq!(env["PORT"], "3002");
        assert_eq!(env["URL"], "http://localhost:3002/x");
        assert_eq!(env["PATH"], "/bin:/opt/bin");
        assert_eq!(env["ID"], "w-2-of-3");
        assert_eq!(env["TAG"], "web:2");
        assert_eq!(env["LIT"], "$HOME $HOME ${HOME");
        assert_eq!(env["PM3_INSTANCE_ID"], "2");
        assert_eq!(env["PM3_INSTANCE_COUNT"], "3");
        assert_eq!(env["HOME"], "/root");
        // A cycle ends at the starting environment (empty here) instead of looping.
        assert_eq!(env["A"], "");
    }

    fn expanded(value: &str, vars: &[(&str, &str)]) -> (String, Vec<ExpandProblem>) {
        let mut problems = Vec::new();
        let mut lookup = |n: &str| {
            vars.iter().find(|(k, _)| *k == n).map_or(Found::Undefined, |(_, v)| Found::Value(v.to_string()))
        };
        let text = expand(value, &mut lookup, &mut problems);
        (text, problems)
    }

    #[test]
    fn expansion_syntax() {
        let vars = [("A", "a"), ("EMPTY", ""), ("B_2", "b")];
        let ok = |value: &str, want: &str| {
            assert_eq!(expanded(value, &vars), (want.to_string(), Vec::new()), "{value}");
        };
        ok("${A}-${B_2}", "a-b");
        ok("${A:-x}", "a");
        ok("${UNSET:-x}", "x");
        ok("${EMPTY:-x}", "x");
        ok("${UNSET:-}", "");
        ok("${UNSET:-${A}}", "a");
        ok("${UNSET:-${NOPE:-deep} and {braces\\}}", "deep and {braces\\}");
        ok("${UNSET:-$${A}}", "${A}");
        ok("${A:-${NOPE}}", "a");
        ok("$$ $A $ $1 a$", "$ $A $ $1 a$");
        ok("", "");
        let bad = |value: &str, text: &str, problems: &[ExpandProblem]| {
            assert_eq!(expanded(value, &vars), (text.to_string(), problems.to_vec()), "{value}");
        };
        use ExpandProblem::{Syntax, Undefined};
        bad("x${NOPE}y", "xy", &[Undefined("NOPE".into())]);
        bad("${UNSET:-${NOPE}}", "", &[Undefined("NOPE".into())]);
        bad("${A", "${A", &[Syntax("${A".into())]);
        bad("${A:?oops}!", "${A:?oops}!", &[Syntax("${A:?oops}".into())]);
        bad("${A-x}", "${A-x}", &[Syntax("${A-x}".into())]);
        bad("${1}${}", "${1}${}", &[Syntax("${1}".into()), Syntax("${}".into())]);
        bad("${A:-open", "${A:-open", &[Syntax("${A:-open".into())]);
        bad("${é}", "${é}", &[Syntax("${é}".into())]);
    }

    #[test]
    fn expansion_problems_are_found_per_value() {
        let base: BTreeMap<String, String> = [("HOME".to_string(), "/root".to_string())].into();
        let mut d = def(
            &[
                ("PORT", "3000"),
                ("URL", "http://localhost:${PORT}/${MISSING}"),
                ("USES_URL", "${URL}"),
                ("HOME_X", "${HOME}/x ${PM3_NAME} ${PM3_INSTANCE_ID} ${PM3_INSTANCE_COUNT}"),
                ("SELF", "${SELF}:more"),
                ("HOME", "${HOME}:fine"),
                ("A", "${B}"),
                ("B", "${A}"),
                ("OPT", "${NOT_SET:-fallback} ${NOT_SET_EITHER:-}"),
                ("BAD", "${X:+y}"),
            ],
            2,
        );
        d.increment_var = Some("PORT".into());
        d.health_check = Some("http://localhost:${PORT}/${HEALTH_PATH}".into());
        let env = |n: &str| Expanding::Env(n.into());
        use ExpandProblem::{Cycle, Syntax, Undefined};
        assert_eq!(
            expansion_problems(&d, &base),
            [
                (env("A"), Cycle("A".into())),
                (env("B"), Cycle("B".into())),
                (env("BAD"), Syntax("${X:+y}".into())),
                (env("SELF"), Cycle("SELF".into())),
                (env("URL"), Undefined("MISSING".into())),
                (Expanding::HealthCheck, Undefined("HEALTH_PATH".into())),
            ]
        );
        // The environment is still built, leniently.
        let e = environment(&d, &base, 1);
        assert_eq!(e["URL"], "http://localhost:3001/");
        assert_eq!(e["USES_URL"], "http://localhost:3001/");
        assert_eq!(e["HOME"], "/root:fine");
        assert_eq!(e["HOME_X"], "/root:fine/x web:1 1 2");
        assert_eq!(e["OPT"], "fallback ");
        assert_eq!(e["BAD"], "${X:+y}");
        assert_eq!(expand_in("${PM3_NAME}${NOPE}", &e), "web:1");
    }

    #[test]
    fn pm3_variables_cannot_be_overridden() {
        let base: BTreeMap<String, String> = [("PM3_NAME".to_string(), "caller:0".to_string())].into();
        let env = environment(&def(&[("PM3_INSTANCE_ID", "9"), ("PM3_NAME", "x")], 2), &base, 1);
        assert_eq!(env["PM3_INSTANCE_ID"], "1");
        assert_eq!(env["PM3_NAME"], "web:1");
        assert_eq!(environment(&def(&[], 1), &base, 0)["PM3_NAME"], "web");
    }
}
