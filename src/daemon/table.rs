//! The table of managed instances: which exist, from which config file, and how targets and
//! dependencies map onto them. Pure bookkeeping; the operations that act on it are in `ops`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::rc::Rc;

use tokio::sync::watch;

use crate::protocol::{ErrorKind, ErrorReply};
use crate::spec::ProcessDef;
use crate::supervisor::{Handle, Instance, Snapshot};

/// One managed instance.
pub struct Entry {
    pub inst: Rc<Instance>,
    pub handle: Handle,
}

/// All managed instances, keyed by instance name.
#[derive(Default)]
pub struct Table {
    pub entries: BTreeMap<String, Entry>,
}

impl Table {
    /// Instance names in display order: by process, then by index (`w:2` before `w:10`).
    pub fn ordered(&self) -> Vec<&Entry> {
        let mut v: Vec<&Entry> = self.entries.values().collect();
        v.sort_by(|a, b| (&a.inst.def.name, a.inst.index).cmp(&(&b.inst.def.name, b.inst.index)));
        v
    }

    /// The definition currently used for process `name`, if managed.
    pub fn def_of(&self, process: &str) -> Option<&Rc<ProcessDef>> {
        self.entries.values().find(|e| e.inst.def.name == process).map(|e| &e.inst.def)
    }

    /// Instances of process `name`, by index.
    pub fn instances_of(&self, process: &str) -> Vec<&Entry> {
        let mut v: Vec<&Entry> = self.entries.values().filter(|e| e.inst.def.name == process).collect();
        v.sort_by_key(|e| e.inst.index);
        v
    }

    /// Config file a process is managed from.
    pub fn config_of(&self, process: &str) -> Option<&PathBuf> {
        self.entries.values().find(|e| e.inst.def.name == process).map(|e| &*e.inst.config)
    }

    /// Resolves targets (instance, process, group or `all`) to instance names; empty targets
    /// mean everything. An unknown target is an error listing the known names.
    pub fn resolve(&self, targets: &[String]) -> Result<Vec<String>, ErrorReply> {
        let items: Vec<Item<'_>> = self
            .entries
            .values()
            .map(|e| Item { name: &e.inst.name, process: &e.inst.def.name, group: e.inst.group() })
            .collect();
        resolve(&items, targets)
    }

    /// `names` plus every instance reached by following `step` (from a process name to the
    /// instances it leads to) from their processes, transitively.
    pub fn closure<'a>(
        &'a self,
        names: &[String],
        step: impl Fn(&str) -> Vec<&'a Entry>,
    ) -> BTreeSet<String> {
        let mut wanted: BTreeSet<String> = names.iter().cloned().collect();
        let mut stack: Vec<String> =
            names.iter().filter_map(|n| self.entries.get(n)).map(|e| e.inst.def.name.clone()).collect();
        let mut seen = BTreeSet::new();
        while let Some(p) = stack.pop() {
            if !seen.insert(p.clone()) {
                continue;
            }
            for e in step(&p) {
                wanted.insert(e.inst.name.clone());
                stack.push(e.inst.def.name.clone());
            }
        }
        wanted
    }

    /// Snapshots receivers of every instance of each process in `deps`.
    pub fn dep_watches(&self, deps: &[String]) -> Vec<watch::Receiver<Snapshot>> {
        deps.iter().flat_map(|d| self.instances_of(d)).map(|e| e.handle.snapshot.clone()).collect()
    }
}

/// A name as target resolution sees it.
pub struct Item<'a> {
    pub name: &'a str,
    pub process: &'a str,
    pub group: Option<String>,
}

/// Resolves `targets` against `items` in the order of spec §4: exact instance name, process
/// name, group name, `all`. The result keeps the order of `items`, without duplicates.
pub fn resolve(items: &[Item<'_>], targets: &[String]) -> Result<Vec<String>, ErrorReply> {
    if targets.is_empty() {
        return Ok(items.iter().map(|i| i.name.to_string()).collect());
    }
    let mut chosen = BTreeSet::new();
    let mut unknown = Vec::new();
    for t in targets {
        let hits: Vec<&str> = if items.iter().any(|i| i.name == t) {
            vec![t.as_str()]
        } else if items.iter().any(|i| i.process == t) {
            items.iter().filter(|i| i.process == t).map(|i| i.name).collect()
        } else if items.iter().any(|i| i.group.as_deref() == Some(t.as_str())) {
            items.iter().filter(|i| i.group.as_deref() == Some(t.as_str())).map(|i| i.name).collect()
        } else if t == "all" {
            items.iter().map(|i| i.name).collect()
        } else {
            unknown.push(t.as_str());
            continue;
        };
        chosen.extend(hits);
    }
    if !unknown.is_empty() {
        return Err(unknown_target(&unknown, items));
    }
    Ok(items.iter().filter(|i| chosen.contains(i.name)).map(|i| i.name.to_string()).collect())
}

fn unknown_target(unknown: &[&str], items: &[Item<'_>]) -> ErrorReply {
    let mut known: BTreeSet<String> = BTreeSet::new();
    for i in items {
        known.insert(i.name.to_string());
        known.insert(i.process.to_string());
        if let Some(g) = &i.group {
            known.insert(g.clone());
        }
    }
    let what = if unknown.len() == 1 {
        format!("unknown process or group `{}`", unknown[0])
    } else {
        format!(
            "unknown processes or groups {}",
            unknown.iter().map(|u| format!("`{u}`")).collect::<Vec<_>>().join(", ")
        )
    };
    let known = if known.is_empty() {
        "nothing is managed yet".to_string()
    } else {
        format!("known: {}", known.into_iter().collect::<Vec<_>>().join(", "))
    };
    ErrorReply::new(ErrorKind::UnknownTarget, format!("{what}; {known}"))
}

/// Orders processes so that each comes after everything it depends on (Kahn's algorithm).
/// `deps` maps a process to the processes it depends on; names outside the map are ignored.
/// Config validation rules out cycles; any left over are appended in name order.
pub fn dependency_order(deps: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut remaining: BTreeMap<&str, BTreeSet<&str>> = deps
        .iter()
        .map(|(p, ds)| {
            (p.as_str(), ds.iter().map(String::as_str).filter(|d| deps.contains_key(*d)).collect())
        })
        .collect();
    let mut out = Vec::new();
    while !remaining.is_empty() {
        let ready: Vec<&str> = remaining.iter().filter(|(_, ds)| ds.is_empty()).map(|(p, _)| *p).collect();
        if ready.is_empty() {
            out.extend(remaining.keys().map(|k| k.to_string()));
            break;
        }
        for p in &ready {
            remaining.remove(p);
        }
        for ds in remaining.values_mut() {
            for p in &ready {
                ds.remove(p);
            }
        }
        out.extend(ready.into_iter().map(String::from));
    }
    out
}

/// Groups processes into stop layers: the first layer has no dependents among `deps`' keys,
/// each next layer only dependents in earlier layers. Stopping layer by layer stops dependents
/// before what they depend on.
pub fn stop_layers(deps: &BTreeMap<String, Vec<String>>) -> Vec<Vec<String>> {
    let mut order = dependency_order(deps);
    order.reverse();
    let mut level: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &order {
        // Dependents of p all come before it in `order`.
        let l = deps
            .iter()
            .filter(|(_, ds)| ds.contains(p))
            .filter_map(|(d, _)| level.get(d.as_str()))
            .map(|l| l + 1)
            .max()
            .unwrap_or(0);
        level.insert(p, l);
    }
    let mut layers: Vec<Vec<String>> = Vec::new();
    for (p, l) in level {
        if layers.len() <= l {
            layers.resize_with(l + 1, Vec::new);
        }
        layers[l].push(p.to_string());
    }
    layers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items() -> Vec<Item<'static>> {
        vec![
            Item { name: "db", process: "db", group: None },
            Item { name: "worker:0", process: "worker", group: Some("backend".into()) },
            Item { name: "worker:1", process: "worker", group: Some("backend".into()) },
            Item { name: "web", process: "web", group: Some("backend".into()) },
        ]
    }
    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn resolves_instances_processes_groups_all() {
        let it = items();
        assert_eq!(resolve(&it, &s(&["worker:1"])).unwrap(), s(&["worker:1"]));
        assert_eq!(resolve(&it, &s(&["worker"])).unwrap(), s(&["worker:0", "worker:1"]));
        assert_eq!(resolve(&it, &s(&["backend"])).unwrap(), s(&["worker:0", "worker:1", "web"]));
        assert_eq!(resolve(&it, &s(&["all"])).unwrap().len(), 4);
        assert_eq!(resolve(&it, &[]).unwrap().len(), 4);
        assert_eq!(resolve(&it, &s(&["web", "web", "db"])).unwrap(), s(&["db", "web"]));
    }

    #[test]
    fn unknown_target_lists_known_names() {
        let err = resolve(&items(), &s(&["wrker"])).unwrap_err();
        assert_eq!(err.kind, ErrorKind::UnknownTarget);
        assert!(err.message.contains("`wrker`"), "{}", err.message);
        assert!(err.message.contains("backend, db, web, worker, worker:0, worker:1"), "{}", err.message);
    }

    #[test]
    fn dependency_order_and_stop_layers() {
        let deps: BTreeMap<String, Vec<String>> = [
            ("web".to_string(), s(&["db", "cache"])),
            ("db".to_string(), vec![]),
            ("cache".to_string(), s(&["db"])),
            ("cron".to_string(), vec![]),
        ]
        .into();
        assert_eq!(dependency_order(&deps), s(&["cron", "db", "cache", "web"]));
        assert_eq!(stop_layers(&deps), vec![s(&["cron", "web"]), s(&["cache"]), s(&["db"])]);
    }
}
