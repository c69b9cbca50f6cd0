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
pub fn environment(
    def: &ProcessDef,
    base: &BTreeMap<String, String>,
    index: u32,
) -> BTreeMap<String, String> {
    let id = index.to_string();
    let count = def.instances.to_string();
    let full_name = instance_name(&def.name, index, def.instances);

    // The config's own variables, last one wins, before expansion.
    let mut own: BTreeMap<&str, String> = BTreeMap::new();
    for (k, v) in &def.env {
        own.insert(k, v.clone());
    }
    if let Some(var) = &def.increment_var {
        let current = own.get(var.as_str()).cloned().or_else(|| base.get(var).cloned());
        if let Some(n) = current.and_then(|v| v.trim().parse::<i64>().ok()) {
            own.insert(var, n.saturating_add(i64::from(index)).to_string());
        }
    }

    let fixed = |name: &str| match name {
        "PM3_INSTANCE_ID" => Some(id.clone()),
        "PM3_INSTANCE_COUNT" => Some(count.clone()),
        "PM3_NAME" => Some(full_name.clone()),
        _ => None,
    };

    let mut out = base.clone();
    for (k, raw) in &own {
        let mut visiting = vec![*k];
        let value = expand(raw, &mut |name| resolve(name, &own, base, &fixed, &mut visiting));
        out.insert((*k).to_string(), value);
    }
    out.insert("PM3_INSTANCE_ID".into(), id.clone());
    out.insert("PM3_INSTANCE_COUNT".into(), count.clone());
    out.insert("PM3_NAME".into(), full_name);
    out
}

/// Looks a `${name}` up: pm3's own variables, then the config's (expanded recursively, a variable
/// that refers to itself or to a cycle sees the starting environment's value), then `base`.
fn resolve<'a>(
    name: &str,
    own: &'a BTreeMap<&'a str, String>,
    base: &BTreeMap<String, String>,
    fixed: &dyn Fn(&str) -> Option<String>,
    visiting: &mut Vec<&'a str>,
) -> String {
    if let Some(v) = fixed(name) {
        return v;
    }
    if let Some((key, raw)) = own.get_key_value(name)
        && !visiting.contains(key)
    {
        visiting.push(key);
        let v = expand(raw, &mut |n| resolve(n, own, base, fixed, visiting));
        visiting.pop();
        return v;
    }
    base.get(name).cloned().unwrap_or_default()
}

/// Replaces every `${NAME}` in `value` by `lookup(NAME)`. `$$` is a literal `$`; any other `$`
/// is kept as written (the shell may still see it when the command runs through `sh -c`).
pub fn expand(value: &str, lookup: &mut dyn FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{')
            && let Some(end) = body.find('}')
            && is_var_name(&body[..end])
        {
            out.push_str(&lookup(&body[..end]));
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
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

    #[test]
    fn pm3_variables_cannot_be_overridden() {
        let base: BTreeMap<String, String> = [("PM3_NAME".to_string(), "caller:0".to_string())].into();
        let env = environment(&def(&[("PM3_INSTANCE_ID", "9"), ("PM3_NAME", "x")], 2), &base, 1);
        assert_eq!(env["PM3_INSTANCE_ID"], "1");
        assert_eq!(env["PM3_NAME"], "web:1");
        assert_eq!(environment(&def(&[], 1), &base, 0)["PM3_NAME"], "web");
    }
}
