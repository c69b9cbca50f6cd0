//! Kubernetes objects: a Deployment for a single process, a StatefulSet for a clustered one
//! (its pods have ordinals, which become `PM3_INSTANCE_ID` through the pod-index label,
//! Kubernetes 1.28 or later), and a Service for the ports the config shows (headless for a
//! StatefulSet, which needs one).
//!
//! Each pod has its own address, so every replica gets the `increment_var`'s base value (the
//! port of instance 0), and the Service spreads connections over the replicas. The container
//! runs the argv pm3 runs; its image is named after the process (`image: web`), to be built
//! from the process's directory or edited. A health check becomes a readiness probe.

use super::ports::Port;
use super::process::{Exported, dns_label, dollars_doubled as escaped, seconds_up};
use super::yaml::{Node, document};
use super::{File, NO_EQUIVALENT, Warnings};
use crate::spec::RestartPolicy;
use crate::supervisor::health::Probe;

const UNMAPPED: &[(&str, &str)] = &[
    (
        "depends_on",
        "has no equivalent: pods start independently (a readiness probe holds traffic back); skipped",
    ),
    ("max_restarts", "has no equivalent: Kubernetes restarts with its own back-off; skipped"),
    ("min_uptime", "has no equivalent: Kubernetes restarts with its own back-off; skipped"),
    ("restart_delay", "has no equivalent: Kubernetes restarts with its own back-off; skipped"),
    ("stop_exit_codes", NO_EQUIVALENT),
    (
        "kill_signal",
        "has no equivalent: Kubernetes stops containers with SIGTERM (or the image's STOPSIGNAL); skipped",
    ),
    ("health_timeout", "has no equivalent: pods are probed for as long as they run; skipped"),
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
        let mut docs = vec![workload(p, &name)];
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
fn label_value(v: &str) -> String {
    let mut out: String = v.chars().take(63).collect();
    out = out.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string();
    out
}

fn labels(p: &Exported<'_>, name: &str) -> Node {
    let mut pairs = vec![(NAME_LABEL.to_string(), Node::str(name))];
    if let Some(group) = p.def.group.as_deref().map(label_value).filter(|g| !g.is_empty()) {
        pairs.push(("app.kubernetes.io/part-of".to_string(), Node::str(group)));
    }
    Node::Map(pairs)
}

fn workload(p: &Exported<'_>, name: &str) -> Node {
    let d = p.def;
    let clustered = d.instances > 1;
    let mut env: Vec<Node> = Vec::new();
    let id = if clustered {
        // The pod-index label (Kubernetes 1.28+) is the StatefulSet ordinal: web-2 has index 2.
        Node::map([
            ("name", Node::str("PM3_INSTANCE_ID")),
            (
                "valueFrom",
                Node::map([(
                    "fieldRef",
                    Node::map([("fieldPath", Node::str("metadata.labels['apps.kubernetes.io/pod-index']"))]),
                )]),
            ),
        ])
    } else {
        var("PM3_INSTANCE_ID", "0")
    };
    env.push(id);
    env.push(var("PM3_INSTANCE_COUNT", &d.instances.to_string()));
    env.extend(p.env.iter().map(|(k, v)| var(k, v)));

    let mut container = vec![
        ("name", Node::str(name)),
        ("image", Node::str(name)),
        ("command", Node::strs(p.argv.iter().map(|w| escaped(w)))),
        ("env", Node::Seq(env.clone())),
    ];
    if !p.ports.is_empty() {
        container.push(("ports", port_list(p, &["containerPort"])));
    }
    if let Some(probe) = &p.probe {
        let mut fields = vec![handler(probe)];
        // Both are int32 in the API.
        let int32 = |ms: u64| Node::Int(seconds_up(ms, 1).min(i32::MAX as u64) as i64);
        fields.push(("periodSeconds", int32(d.health_interval_ms)));
        fields.push((
            "timeoutSeconds",
            int32(u64::try_from(d.probe_timeout().as_millis()).unwrap_or(u64::MAX)),
        ));
        container.push(("readinessProbe", Node::map(fields)));
    }
    if let Some(bytes) = d.max_memory {
        container.push((
            "resources",
            Node::map([("limits", Node::map([("memory", Node::str(bytes.to_string()))]))]),
        ));
    }
    let grace = i64::try_from(seconds_up(d.kill_timeout_ms, 0)).unwrap_or(i64::MAX);
    let mut pod = vec![("terminationGracePeriodSeconds", Node::Int(grace))];
    if let Some(hook) = &d.pre_start {
        pod.push((
            "initContainers",
            Node::Seq(vec![Node::map([
                ("name", Node::str("pre-start")),
                ("image", Node::str(name)),
                ("command", Node::strs(["/bin/sh", "-c", escaped(hook).as_str()])),
                ("env", Node::Seq(env)),
            ])]),
        ));
    }
    pod.push(("containers", Node::Seq(vec![Node::map(container)])));

    let mut spec = vec![("replicas", Node::Int(i64::from(d.instances)))];
    if clustered {
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
        ("kind", Node::str(if clustered { "StatefulSet" } else { "Deployment" })),
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

/// The Service of a process: headless for a StatefulSet (which needs one, ports or not),
/// a ClusterIP one for a Deployment with ports, none otherwise.
fn service(p: &Exported<'_>, name: &str) -> Option<Node> {
    let clustered = p.def.instances > 1;
    if !clustered && p.ports.is_empty() {
        return None;
    }
    let mut spec = Vec::new();
    if clustered {
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
    fn names_become_dns_labels() {
        assert_eq!(dns_label("Web_API.v2"), "web-api-v2");
        assert_eq!(dns_label("_x_"), "x");
        assert_eq!(dns_label("___"), "process");
        assert_eq!(dns_label(&"a".repeat(64)).len(), 52);
        assert_eq!(label_value("-grp.1_"), "grp.1");
    }
}
