//! The ports a process listens on, as far as the config shows them: what a Kubernetes Service
//! and a container's `ports` are made of.
//!
//! The sources, in order: the `increment_var` variable and variables named `PORT` or `…_PORT`
//! whose value (as instance 0 gets it) is a port number, then the port a `http://`, `https://`
//! or `tcp://` health check of this host probes. The TCP addresses of `listen` come first:
//! they are the ports the process is declared to serve.

use crate::spec::ProcessDef;
use crate::supervisor::health::Probe;

/// One port of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// A name usable as a Kubernetes port name (IANA service name: at most 15 of `a-z 0-9 -`,
    /// a letter in it, no `-` at either end or twice in a row).
    pub name: String,
    pub number: u16,
}

/// The ports of `def`, whose config variables instance 0 gets as `env` (name order) and whose
/// health check it expands to `probe`: each number once, in the order found.
pub fn ports(def: &ProcessDef, env: &[(String, String)], probe: Option<&Probe>) -> Vec<Port> {
    let mut found: Vec<(String, u16)> = Vec::new();
    for l in def.listen.iter().filter_map(|l| crate::listen::Listen::parse(l).ok()) {
        if let crate::listen::Endpoint::Tcp(addr) = l.endpoint
            && addr.port() > 0
        {
            found.push((l.name.unwrap_or_else(|| "listen".into()), addr.port()));
        }
    }
    let value = |name: &str| env.iter().find(|(k, _)| k == name).and_then(|(_, v)| number(v));
    if let Some(var) = &def.increment_var
        && let Some(n) = value(var)
    {
        found.push((var.clone(), n));
    }
    for (k, v) in env {
        if (k == "PORT" || k.ends_with("_PORT"))
            && let Some(n) = number(v)
        {
            found.push((k.clone(), n));
        }
    }
    match probe {
        Some(Probe::Http { uri, tls }) if uri.host().is_some_and(local) => {
            let scheme = if *tls { "https" } else { "http" };
            found.push((scheme.into(), uri.port_u16().unwrap_or(if *tls { 443 } else { 80 })));
        }
        Some(Probe::Tcp { host, port }) if local(host) => found.push(("tcp".into(), *port)),
        _ => {}
    }
    let mut out: Vec<Port> = Vec::new();
    for (var, number) in found {
        if out.iter().any(|p| p.number == number) {
            continue;
        }
        let mut name = port_name(&var);
        if out.iter().any(|p| p.name == name) {
            name = format!("port-{number}");
        }
        out.push(Port { name, number });
    }
    out
}

/// True for a host that names the machine itself (where a health check finds the process).
pub fn local(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h == "127.0.0.1" || h == "::1" || h == "0.0.0.0"
}

/// A port number (1–65535) written as a plain integer.
fn number(v: &str) -> Option<u16> {
    v.trim().parse::<u16>().ok().filter(|&n| n > 0)
}

/// `ADMIN_PORT` → `admin-port`; a name Kubernetes would refuse becomes `port`.
fn port_name(var: &str) -> String {
    let mut name = String::new();
    for c in var.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' };
        if !(c == '-' && (name.is_empty() || name.ends_with('-'))) {
            name.push(c);
        }
    }
    name.truncate(15);
    let name = name.trim_end_matches('-').to_string();
    if name.chars().any(|c| c.is_ascii_lowercase()) { name } else { "port".into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn increment_var_first_then_port_named_variables_each_number_once() {
        let mut def = ProcessDef::new("web", "x", PathBuf::from("/"));
        def.increment_var = Some("HTTP".into());
        let probe = Probe::parse("http://localhost:8080/health").ok();
        let got = ports(
            &def,
            &env(&[
                ("ADMIN_PORT", "9000"),
                ("HTTP", "3000"),
                ("PORT", "3000"),
                ("DB_PORT", "not a number"),
                ("ZERO_PORT", "0"),
                ("BIG_PORT", "70000"),
                ("SUPPORT", "1"),
            ]),
            probe.as_ref(),
        );
        let want = [("http", 3000), ("admin-port", 9000), ("port-8080", 8080)];
        assert_eq!(
            got,
            want.iter().map(|(n, p)| Port { name: n.to_string(), number: *p }).collect::<Vec<_>>()
        );
    }

    #[test]
    fn health_checks_of_this_host_give_their_port() {
        let def = ProcessDef::new("db", "x", PathBuf::from("/"));
        let port = |check: &str| {
            let probe = Probe::parse(check).ok();
            ports(&def, &[], probe.as_ref()).iter().map(|p| (p.name.clone(), p.number)).collect::<Vec<_>>()
        };
        assert_eq!(port("tcp://localhost:5432"), [("tcp".to_string(), 5432)]);
        assert_eq!(port("https://127.0.0.1/ready"), [("https".to_string(), 443)]);
        assert_eq!(port("http://[::1]:81/"), [("http".to_string(), 81)]);
        assert!(port("http://db.example:81/").is_empty(), "another host's port is not this one's");
        assert!(port("exec:true").is_empty());
    }

    #[test]
    fn listen_addresses_come_first_with_their_names() {
        let mut def = ProcessDef::new("web", "x", PathBuf::from("/"));
        def.listen = vec![
            "tcp://127.0.0.1:8080?name=http".into(),
            "unix:/run/web.sock".into(),
            "tcp://[::1]:9090".into(),
        ];
        let found: Vec<(String, u16)> = ports(&def, &env(&[("PORT", "8080"), ("ADMIN_PORT", "7000")]), None)
            .into_iter()
            .map(|p| (p.name, p.number))
            .collect();
        let want: Vec<(String, u16)> =
            vec![("http".into(), 8080), ("listen".into(), 9090), ("admin-port".into(), 7000)];
        assert_eq!(found, want, "the unix socket has no port, and 8080 is named once");
    }

    #[test]
    fn port_names_are_valid_kubernetes_names() {
        assert_eq!(port_name("A_VERY_LONG_SERVICE_PORT"), "a-very-long-ser");
        assert_eq!(port_name("__X__PORT"), "x-port");
        assert_eq!(port_name("_1_PORT"), "1-port");
        assert_eq!(port_name("1_2"), "port");
        assert_eq!(port_name("LONG_NAME_ENDS_"), "long-name-ends");
    }
}
