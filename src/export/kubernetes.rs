//! Kubernetes objects: a Deployment per process, or a StatefulSet when the process uses its
//! instance id (`PM3_INSTANCE_ID` in its command, variables, health check or hooks, or an
//! `increment_var`): a StatefulSet's pods have ordinals, which become `PM3_INSTANCE_ID`
//! through the pod-index label (Kubernetes 1.28 or later). A Service for the ports the config
//! shows (headless for a StatefulSet, which needs one).
//!
//! Each pod has its own address, so every replica gets the `increment_var`'s base value (the
//! port of instance 0), and the Service spreads connections over the replicas. The container
//! runs the argv pm3 runs; its image is named after the process (`image: web`), to be built
//! from the process's directory or edited. A health check becomes a readiness probe and a
//! liveness probe that gives a slow starter its `health_timeout`; each dependency an init
//! container that waits until its Service answers.

use super::ports::Port;
use super::process::{Exported, dns_label, dollars_doubled as escaped, seconds_up};
use super::yaml::{Node, document};
use super::{File, NO_EQUIVALENT, Warnings};
use crate::spec::RestartPolicy;
use crate::supervisor::health::Probe;

const UNMAPPED: &[(&str, &str)] = &[
    (
        "listen",
        "is not passed: the container must bind the port itself (no LISTEN_FDS); a Service is made for each TCP address",
    ),
    ("max_restarts", "has no equivalent: Kubernetes restarts with its own back-off; skipped"),
    ("min_uptime", "has no equivalent: Kubernetes restarts with its own back-off; skipped"),
    ("restart_delay", "has no equivalent: Kubernetes restarts with its own back-off; skipped"),
    ("stop_exit_codes", NO_EQUIVALENT),
    (
        "kill_signal",
        "has no equivalent: Kubernetes stops containers with SIGTERM (or the image's STOPSIGNAL); skipped",
    ),
    ("post_stop", NO_EQUIVALENT),
    ("watch", NO_EQUIVALENT),
    ("watch_ignore", NO_EQUIVALENT),
    ("watch_debounce", NO_EQUIVALENT),
    ("cron_restart", NO_EQUIVALENT),
    ("log_date_format", "has no equivalent: the container runtime keeps the output; skipped"),
    ("log_max_size", "has no equivalent: the container runtime keeps the output; skipped"),
    ("log_max_files", "has no equivalent: the container runtime keeps the output; skipped"),
    ("log_compress", "has no equivalent: the container runtime keeps the output; skipped"),
];

/// The label every object of a process carries, and its selector matches.
const NAME_LABEL: &str = "app.kubernetes.io/name";
/// The label naming the process's group (spec §2: the one set, else the process name when
/// clustered; a single process without one has no group, and no label).
const GROUP_LABEL: &str = "pm3.dev/group";
/// The image of the init containers that wait for a dependency (`nc`, `wget`, `sh`).
const WAIT_IMAGE: &str = "busybox:1.36";

/// True when `p` needs to know which instance it is: an `increment_var`, a variable whose
/// value differs between instances, or `$PM3_INSTANCE_ID` / `${PM3_INSTANCE_ID…}` in its
/// command, variables, health check or hooks.
pub fn uses_instance_id(p: &Exported<'_>) -> bool {
    let d = p.def;
    let mentions = |text: &str| {
        const NAME: &str = "PM3_INSTANCE_ID";
        text.match_indices(NAME).any(|(at, _)| {
            let before = &text[..at];
            let after = text[at + NAME.len()..].chars().next();
            (before.ends_with('$') && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_'))
                || (before.ends_with("${") && matches!(after, Some('}' | ':' | '-' | '=' | '?' | '+')))
        })
    };
    d.increment_var.is_some()
        || !p.varying.is_empty()
        || mentions(&d.command)
        || d.env.iter().any(|(_, v)| mentions(v))
        || [&d.health_check, &d.pre_start, &d.post_stop].into_iter().flatten().any(|t| mentions(t))
}

/// One YAML file per process: its workload, then its Service.
pub fn files(processes: &[Exported<'_>], warnings: &mut Warnings) -> Result<Vec<File>, String> {
    let mut names: Vec<(String, &str)> = Vec::new();
    let mut out = Vec::new();
    for p in processes {
        let name = dns_label(&p.def.name);
        if let Some((_, other)) = names.iter().find(|(n, _)| *n == name) {
            return Err(format!(
                "processes `{other}` and `{}` would both be named `{name}` in Kubernetes (lowercase letters, digits and `-`): rename one",
                p.def.name
            ));
        }
        names.push((name.clone(), &p.def.name));
        warnings.unmapped(p, UNMAPPED);
        if p.def.instances > 1 && !uses_instance_id(p) {
            warnings.add(
                &p.def.name,
                "instances",
                "is written as a Deployment's replicas, which share one definition: PM3_INSTANCE_ID is not set (the config does not use it; a StatefulSet is written when it does)",
            );
        }
        if p.def.restart == RestartPolicy::Never {
            warnings.add(
                &p.def.name,
                "restart",
                "has no equivalent: containers of a Deployment or StatefulSet always restart; skipped",
            );
        }
        for var in p.varying.iter().filter(|v| Some(*v) != p.def.increment_var.as_ref()) {
            warnings.add(
                &p.def.name,
                &format!("env.{var}"),
                "differs between instances; every pod gets instance 0's value",
            );
        }
        let mut text = format!("# {name}.yaml: written by `pm3 export kubernetes` from pm3.toml\n");
        let mut docs = vec![workload(p, &name, processes, warnings)];
        docs.extend(service(p, &name));
        for doc in docs {
            text.push_str("---\n");
            text.push_str(&document(&doc));
        }
        out.push(File { name: format!("{name}.yaml"), text });
    }
    Ok(out)
}

/// A label value: at most 63 of `A-Z a-z 0-9 - _ .`, beginning and ending with a letter or
/// digit.
/// Other characters become `-`.
fn label_value(v: &str) -> String {
    let out: String = v
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' })
        .take(63)
        .collect();
    out.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
}

fn labels(p: &Exported<'_>, name: &str) -> Node {
    let mut pairs = vec![(NAME_LABEL.to_string(), Node::str(name))];
    if let Some(group) =
        crate::instances::group_of(p.def).as_deref().map(label_value).filter(|g| !g.is_empty())
    {
        pairs.push((GROUP_LABEL.to_string(), Node::str(group)));
    }
    Node::Map(pairs)
}

fn workload(p: &Exported<'_>, name: &str, all: &[Exported<'_>], warnings: &mut Warnings) -> Node {
    let d = p.def;
    let stateful = uses_instance_id(p);
    let mut env: Vec<Node> = Vec::new();
    let id = if stateful {
        Some(
            // The pod-index label (Kubernetes 1.28+) is the StatefulSet ordinal: web-2 has index 2.
            Node::map([
                ("name", Node::str("PM3_INSTANCE_ID")),
                (
                    "valueFrom",
                    Node::map([(
                        "fieldRef",
                        Node::map([(
                            "fieldPath",
                            Node::str("metadata.labels['apps.kubernetes.io/pod-index']"),
                        )]),
                    )]),
                ),
            ]),
        )
    } else if d.instances == 1 {
        Some(var("PM3_INSTANCE_ID", "0"))
    } else {
        // Replicas of a Deployment cannot tell which one they are (warned above).
        None
    };
    env.extend(id);
    env.push(var("PM3_INSTANCE_COUNT", &d.instances.to_string()));
    env.extend(p.env.iter().map(|(k, v)| var(k, v)));

    let mut container = vec![
        ("name", Node::str(name)),
        ("image", Node::str(name)),
        // The program, then its arguments, as pm3 splits the command.
        ("command", Node::strs(p.argv.iter().take(1).map(|w| escaped(w)))),
    ];
    if p.argv.len() > 1 {
        container.push(("args", Node::strs(p.argv.iter().skip(1).map(|w| escaped(w)))));
    }
    container.push(("env", Node::Seq(env.clone())));
    if !p.ports.is_empty() {
        container.push(("ports", port_list(p, &["containerPort"])));
    }
    if let Some(probe) = &p.probe {
        // All are int32 in the API.
        let int32 = |n: u64| Node::Int(n.min(i32::MAX as u64) as i64);
        let period = seconds_up(d.health_interval_ms, 1);
        let timeout = seconds_up(u64::try_from(d.probe_timeout().as_millis()).unwrap_or(u64::MAX), 1);
        container.push((
            "readinessProbe",
            Node::map([handler(probe), ("periodSeconds", int32(period)), ("timeoutSeconds", int32(timeout))]),
        ));
        // pm3 gives a process `health_timeout` to pass its check: the liveness probe starts
        // once that has gone by, and restarts the container only after failing for as long
        // again (at least 3 probes), so a slow starter is not killed.
        let patience = seconds_up(d.health_timeout_ms, 1);
        let period = period.max(10);
        container.push((
            "livenessProbe",
            Node::map([
                handler(probe),
                ("initialDelaySeconds", int32(patience)),
                ("periodSeconds", int32(period)),
                ("timeoutSeconds", int32(timeout)),
                ("failureThreshold", int32(patience.div_ceil(period).max(3))),
            ]),
        ));
    }
    if let Some(bytes) = d.max_memory {
        container.push((
            "resources",
            Node::map([("limits", Node::map([("memory", Node::str(bytes.to_string()))]))]),
        ));
    }
    let grace = i64::try_from(seconds_up(d.kill_timeout_ms, 0)).unwrap_or(i64::MAX);
    let mut pod = vec![("terminationGracePeriodSeconds", Node::Int(grace))];
    let mut init: Vec<Node> = d.depends_on.iter().filter_map(|dep| wait_for(p, dep, all, warnings)).collect();
    if let Some(hook) = &d.pre_start {
        init.push(Node::map([
            ("name", Node::str("pre-start")),
            ("image", Node::str(name)),
            ("command", Node::strs(["/bin/sh", "-c", escaped(hook).as_str()])),
            ("env", Node::Seq(env)),
        ]));
    }
    if !init.is_empty() {
        pod.push(("initContainers", Node::Seq(init)));
    }
    pod.push(("containers", Node::Seq(vec![Node::map(container)])));

    let mut spec = vec![("replicas", Node::Int(i64::from(d.instances)))];
    if stateful {
        spec.push(("serviceName", Node::str(name)));
        // pm3 starts every instance at once.
        spec.push(("podManagementPolicy", Node::str("Parallel")));
    }
    spec.push(("selector", Node::map([("matchLabels", Node::map([(NAME_LABEL, Node::str(name))]))])));
    spec.push((
        "template",
        Node::map([("metadata", Node::map([("labels", labels(p, name))])), ("spec", Node::map(pod))]),
    ));
    Node::map([
        ("apiVersion", Node::str("apps/v1")),
        ("kind", Node::str(if stateful { "StatefulSet" } else { "Deployment" })),
        ("metadata", Node::map([("name", Node::str(name)), ("labels", labels(p, name))])),
        ("spec", Node::map(spec)),
    ])
}

/// The ports of `p`, each as its name and its number under every key of `number_keys`.
fn port_list(p: &Exported<'_>, number_keys: &[&str]) -> Node {
    let entry = |port: &Port| {
        let mut fields = vec![("name", Node::str(&port.name))];
        fields.extend(number_keys.iter().map(|&k| (k, Node::Int(i64::from(port.number)))));
        Node::map(fields)
    };
    Node::Seq(p.ports.iter().map(entry).collect())
}

fn var(name: &str, value: &str) -> Node {
    Node::map([("name", Node::str(name)), ("value", Node::str(escaped(value)))])
}

/// The probe's handler: `httpGet`, `tcpSocket` or `exec`. A check of `localhost` probes the
/// pod's own address, where the process listens in its container.
fn handler(probe: &Probe) -> (&'static str, Node) {
    let remote = |host: &str| !super::ports::local(host);
    match probe {
        Probe::Http { uri, tls } => {
            let port = uri.port_u16().unwrap_or(if *tls { 443 } else { 80 });
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            let mut fields = vec![("path", Node::str(path)), ("port", Node::Int(i64::from(port)))];
            if let Some(host) = uri.host().filter(|h| remote(h)) {
                fields.push(("host", Node::str(host.trim_start_matches('[').trim_end_matches(']'))));
            }
            fields.push(("scheme", Node::str(if *tls { "HTTPS" } else { "HTTP" })));
            ("httpGet", Node::map(fields))
        }
        Probe::Tcp { host, port } => {
            let mut fields = vec![("port", Node::Int(i64::from(*port)))];
            if remote(host) {
                fields.push(("host", Node::str(host)));
            }
            ("tcpSocket", Node::map(fields))
        }
        Probe::Exec { command } => ("exec", Node::map([("command", Node::strs(["/bin/sh", "-c", command]))])),
    }
}

/// The init container of `p` that waits for its dependency `dep`: until the dependency's
/// Service answers on its first port, over HTTP when the dependency's check is an `http://`
/// one of that port (busybox `wget`), else as a TCP connection (busybox `nc -z`). A dependency
/// without a port has no Service to wait for: warned, and `None`.
fn wait_for(p: &Exported<'_>, dep: &str, all: &[Exported<'_>], warnings: &mut Warnings) -> Option<Node> {
    let q = all.iter().find(|q| q.def.name == dep)?;
    let Some(port) = q.ports.first() else {
        warnings.add(
            &p.def.name,
            "depends_on",
            &format!("names `{dep}`, which shows no port (so has no Service to wait for): pods start without waiting for it"),
        );
        return None;
    };
    let host = dns_label(dep);
    let check = match &q.probe {
        Some(Probe::Http { uri, tls: false }) if uri.port_u16().unwrap_or(80) == port.number => {
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            let url = format!("http://{host}:{}{path}", port.number);
            format!("wget -q -T 2 -O /dev/null {}", shell_words::quote(&url))
        }
        _ => format!("nc -z -w 2 {host} {}", port.number),
    };
    let script = format!("until {check}; do echo waiting for {host}:{}; sleep 2; done", port.number);
    Some(Node::map([
        ("name", Node::str(format!("wait-for-{}", dns_label(dep)).chars().take(63).collect::<String>())),
        ("image", Node::str(WAIT_IMAGE)),
        ("command", Node::strs(["/bin/sh", "-c", escaped(&script).as_str()])),
    ]))
}

/// The Service of a process: headless for a StatefulSet (which needs one, ports or not),
/// a ClusterIP one for a Deployment with ports, none otherwise.
fn service(p: &Exported<'_>, name: &str) -> Option<Node> {
    let stateful = uses_instance_id(p);
    if !stateful && p.ports.is_empty() {
        return None;
    }
    let mut spec = Vec::new();
    if stateful {
        spec.push(("clusterIP", Node::str("None")));
    }
    spec.push(("selector", Node::map([(NAME_LABEL, Node::str(name))])));
    if !p.ports.is_empty() {
        spec.push(("ports", port_list(p, &["port", "targetPort"])));
    }
    Some(Node::map([
        ("apiVersion", Node::str("v1")),
        ("kind", Node::str("Service")),
        ("metadata", Node::map([("name", Node::str(name)), ("labels", labels(p, name))])),
        ("spec", Node::map(spec)),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_processes_with_one_kubernetes_name_are_an_error_naming_both() {
        let defs = [
            crate::spec::ProcessDef::new("api_v1", "sleep 1", "/".into()),
            crate::spec::ProcessDef::new("API-v1", "sleep 1", "/".into()),
        ];
        let base = std::collections::BTreeMap::new();
        let exported: Vec<Exported<'_>> =
            defs.iter().map(|d| Exported::new(d, &base).expect("exported")).collect();
        let err = files(&exported, &mut Warnings::default()).expect_err("a clash");
        assert!(err.contains("`api_v1` and `API-v1`") && err.contains("`api-v1`"), "{err}");
    }

    #[test]
    fn a_statefulset_only_for_a_process_that_uses_its_instance_id() {
        let base = std::collections::BTreeMap::new();
        let uses = |edit: &dyn Fn(&mut crate::spec::ProcessDef)| {
            let mut d = crate::spec::ProcessDef::new("w", "python worker.py", "/".into());
            d.instances = 3;
            edit(&mut d);
            uses_instance_id(&Exported::new(&d, &base).expect("exported"))
        };
        assert!(!uses(&|_| {}), "the seed's worker: a Deployment");
        assert!(!uses(&|d| d.env = vec![("X".into(), "$PM3_INSTANCE_IDS ${PM3_INSTANCE_COUNT}".into())]));
        assert!(uses(&|d| {
            d.env = vec![("PORT".into(), "3000".into())];
            d.increment_var = Some("PORT".into());
        }));
        assert!(uses(&|d| d.command = "python worker.py --shard $PM3_INSTANCE_ID".into()));
        assert!(uses(&|d| d.command = "python worker.py --shard=${PM3_INSTANCE_ID}".into()));
        assert!(uses(&|d| d.env = vec![("SHARD".into(), "s${PM3_INSTANCE_ID:-0}".into())]));
        assert!(uses(&|d| d.health_check = Some("exec:test -e /tmp/$PM3_INSTANCE_ID".into())));
        assert!(uses(&|d| d.pre_start = Some("mkdir -p data/$PM3_INSTANCE_ID".into())));
        assert!(uses(&|d| d.post_stop = Some("rm -f ${PM3_INSTANCE_ID}.lock".into())));
    }

    #[test]
    fn names_become_dns_labels() {
        assert_eq!(dns_label("Web_API.v2"), "web-api-v2");
        assert_eq!(dns_label("_x_"), "x");
        assert_eq!(dns_label("___"), "process");
        assert_eq!(dns_label(&"a".repeat(64)).len(), 52);
        assert_eq!(label_value("-grp.1_"), "grp.1");
        assert_eq!(label_value("my group/é"), "my-group");
    }
}
