//! Rules across processes, one small function each: process names, at least one process,
//! `depends_on` names that exist, no dependency cycles, and a `--env` name that some process
//! defines. Works on the [`RawProcess`]es of `parse`; records problems, changes nothing.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use super::error::{ErrorKind, Problems, closest, did_you_mean, show};
use super::parse::RawProcess;

pub use crate::spec::name_problem;

/// Runs every cross-process rule. `tables` says whether the file has any top-level table: one
/// that gave no process (`[api.v2]` alone) already has its own message.
pub fn check(processes: &[RawProcess], tables: bool, env_name: Option<&str>, problems: &mut Problems<'_>) {
    if processes.is_empty() && !tables {
        problems.at_end(ErrorKind::NoProcess, None);
    }
    names(processes, problems);
    dependencies(processes, problems);
    cycles(processes, problems);
    shared_sockets(processes, problems);
    if let Some(env) = env_name {
        env_name_is_defined(processes, env, problems);
    }
}

fn names(processes: &[RawProcess], problems: &mut Problems<'_>) {
    for p in processes {
        if let Some(reason) = name_problem(&p.name) {
            problems.at(p.header.clone(), ErrorKind::BadName { name: show(&p.name), reason });
        }
    }
}

/// Two processes cannot listen on the same address: pm3 binds each socket once, for one
/// process.
fn shared_sockets(processes: &[RawProcess], problems: &mut Problems<'_>) {
    let mut seen: HashMap<crate::listen::Endpoint, &str> = HashMap::new();
    for p in processes {
        for l in &p.listen {
            let Ok(parsed) = crate::listen::Listen::parse(l.get_ref()) else { continue };
            match seen.get(&parsed.endpoint) {
                Some(other) if *other != p.name => problems.at(
                    l.span(),
                    ErrorKind::Rule(format!(
                        "`listen`: process `{}` already listens on {}",
                        show(other),
                        parsed.endpoint
                    )),
                ),
                Some(_) => {}
                None => {
                    seen.insert(parsed.endpoint, &p.name);
                }
            }
        }
    }
}

/// Unknown names get a suggestion among the file's other processes, for the first
/// [`SUGGESTIONS`] of them (a bound on the work a hostile file can ask for).
fn dependencies(processes: &[RawProcess], problems: &mut Problems<'_>) {
    const SUGGESTIONS: usize = 64;
    let known: HashSet<&str> = processes.iter().map(|p| p.name.as_str()).collect();
    let mut unknown = 0;
    for p in processes {
        for dep in &p.depends_on {
            let dep_name = dep.get_ref().as_str();
            if dep_name == p.name {
                problems.at(dep.span(), ErrorKind::SelfDependency(show(dep_name)));
            } else if !known.contains(dep_name) {
                unknown += 1;
                let others = processes.iter().map(|o| o.name.as_str()).filter(|&o| o != p.name);
                let help =
                    if unknown <= SUGGESTIONS { closest(dep_name, others).map(did_you_mean) } else { None };
                problems.hint(dep.span(), ErrorKind::UnknownDependency(show(dep_name)), help);
            }
        }
    }
}

/// Finds the dependency cycles (self-dependencies and unknown names are reported elsewhere) and
/// reports each once, starting from its process that comes first in the file, at the
/// `depends_on` entry that leads to the next process of the cycle.
fn cycles(processes: &[RawProcess], problems: &mut Problems<'_>) {
    let index: HashMap<&str, usize> =
        processes.iter().enumerate().map(|(i, p)| (p.name.as_str(), i)).collect();
    // edges[i] = (target, span of the `depends_on` entry)
    let edges: Vec<Vec<(usize, Range<usize>)>> = processes
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.depends_on
                .iter()
                .filter_map(|d| index.get(d.get_ref().as_str()).map(|&t| (t, d.span())))
                .filter(|&(t, _)| t != i)
                .collect()
        })
        .collect();

    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut mark = vec![Mark::New; processes.len()];
    let mut seen: HashSet<Vec<usize>> = HashSet::new();
    let mut found: Vec<Vec<usize>> = Vec::new();

    // Iterative depth-first search, so a long chain of dependencies cannot overflow the stack.
    for start in 0..processes.len() {
        if mark[start] != Mark::New {
            continue;
        }
        mark[start] = Mark::OnPath;
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let Some((target, _)) = edges[node].get(*next) else {
                mark[node] = Mark::Done;
                path.pop();
                continue;
            };
            *next += 1;
            let target = *target;
            match mark[target] {
                Mark::New => {
                    mark[target] = Mark::OnPath;
                    path.push((target, 0));
                }
                Mark::OnPath => {
                    let from = path.iter().position(|&(n, _)| n == target).unwrap_or(0);
                    let mut cycle: Vec<usize> = path[from..].iter().map(|&(n, _)| n).collect();
                    let first = (0..cycle.len()).min_by_key(|&i| cycle[i]).unwrap_or(0);
                    cycle.rotate_left(first);
                    if seen.insert(cycle.clone()) {
                        found.push(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
    }

    for cycle in found {
        // Each link: where `from` names `to`, and saying so.
        let links: Vec<(Range<usize>, String)> = (0..cycle.len())
            .map(|i| {
                let (from, to) = (cycle[i], cycle[(i + 1) % cycle.len()]);
                let span = edges[from]
                    .iter()
                    .find(|(t, _)| *t == to)
                    .map_or_else(|| processes[from].header.clone(), |(_, s)| s.clone());
                let says =
                    format!("`{}` depends on `{}`", show(&processes[from].name), show(&processes[to].name));
                (span, says)
            })
            .collect();
        let mut names: Vec<String> = cycle.iter().map(|&i| show(&processes[i].name)).collect();
        names.push(show(&processes[cycle[0]].name));
        let mut links = links.into_iter();
        if let Some((span, says)) = links.next() {
            problems.with_notes(span, ErrorKind::Cycle(names.join(" -> ")), says, links.collect());
        }
    }
}

fn env_name_is_defined(processes: &[RawProcess], env: &str, problems: &mut Problems<'_>) {
    let names = processes.iter().flat_map(|p| p.env_overrides.iter().map(|o| o.name.as_str()));
    if !names.clone().any(|n| n == env) {
        let help = closest(env, names).map(|n| did_you_mean(&format!("--env {n}")));
        problems.at_end(ErrorKind::UnknownEnv(show(env)), help);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{Fixture, load_errors};
    use super::name_problem;

    #[test]
    fn names() {
        for ok in ["web", "a", "A-z_0.9", "x.y", &"n".repeat(64)] {
            assert_eq!(name_problem(ok), None, "{ok}");
        }
        for bad in ["", ".hidden", "a:0", "b@d", "sp ace", &"n".repeat(65), "é"] {
            assert!(name_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn cross_process_errors() {
        let cases: &[(&str, &[&str])] = &[
            ("", &["1:1: no process defined (add a table like `[web]` with a `command`)"]),
            ("# nothing here\n", &["1:1: no process defined (add a table like `[web]` with a `command`)"]),
            (
                "name = \"web\"\n",
                &[
                    "1:1: top-level key `name` must be a process table like `[name]`",
                    "1:1: no process defined (add a table like `[web]` with a `command`)",
                ],
            ),
            (
                "[[web]]\ncommand = \"x\"\n",
                &[
                    "1:3: top-level key `web` must be a process table like `[web]`",
                    "1:1: no process defined (add a table like `[web]` with a `command`)",
                ],
            ),
            (
                "[ok]\ncommand = \"x\"\n\n[\"b@d\"]\ncommand = \"x\"\n",
                &["4:1: invalid process name `b@d`: character `@` is not allowed (use `A-Z a-z 0-9 _ - .`)"],
            ),
            (
                "[\"web:0\"]\ncommand = \"x\"\n",
                &["1:1: invalid process name `web:0`: `:` is reserved for instance names like `worker:0`"],
            ),
            (
                "[\".web\"]\ncommand = \"x\"\n",
                &["1:1: invalid process name `.web`: it must not start with `.`"],
            ),
            (
                "web = { command = \"x\", instances = 0 }\n\"a b\" = { command = \"y\" }\n",
                &[
                    "1:36: `instances` must be at least 1, got 0",
                    "2:1: invalid process name `a b`: character ` ` is not allowed (use `A-Z a-z 0-9 _ - .`)",
                ],
            ),
            (
                "[web]\ncommand = \"x\"\ndepends_on = [\"db\", \"cache\"]\n[db]\ncommand = \"y\"\n",
                &["3:21: `depends_on` names unknown process `cache`"],
            ),
            (
                // A suggestion among the other processes of the file, never the process itself.
                "[web]\ncommand = \"x\"\ndepends_on = [\"dbb\", \"wbe\"]\n[db]\ncommand = \"y\"\n",
                &[
                    "3:15: `depends_on` names unknown process `dbb` (did you mean `db`?)",
                    "3:22: `depends_on` names unknown process `wbe`",
                ],
            ),
            (
                "[web]\ncommand = \"x\"\ndepends_on = [\"web\"]\n",
                &["3:15: `web` depends on itself (`web -> web`)"],
            ),
            (
                "[a]\ncommand = \"x\"\ndepends_on = [\"b\"]\n\
                 [b]\ncommand = \"x\"\ndepends_on = [\"c\"]\n\
                 [c]\ncommand = \"x\"\ndepends_on = [\"a\"]\n",
                &["3:15: dependency cycle `a -> b -> c -> a`"],
            ),
            (
                // Reached from `c` and from `a`, reported once, from `c` (first in the file).
                "[c]\ncommand = \"x\"\ndepends_on = [\"a\"]\n\
                 [a]\ncommand = \"x\"\ndepends_on = [\"ok\", \"c\"]\n\
                 [ok]\ncommand = \"x\"\n",
                &["3:15: dependency cycle `c -> a -> c`"],
            ),
            (
                // Two separate cycles.
                "[a]\ncommand = \"x\"\ndepends_on = [\"b\"]\n\
                 [b]\ncommand = \"x\"\ndepends_on = [\"a\", \"b\"]\n\
                 [x]\ncommand = \"x\"\ndepends_on = [\"y\"]\n\
                 [y]\ncommand = \"x\"\ndepends_on = [\"x\"]\n",
                &[
                    "3:15: dependency cycle `a -> b -> a`",
                    "6:20: `b` depends on itself (`b -> b`)",
                    "9:15: dependency cycle `x -> y -> x`",
                ],
            ),
        ];
        for (toml, want) in cases {
            assert_eq!(load_errors(toml), *want, "for file:\n{toml}");
        }
    }

    #[test]
    fn listen_values_are_checked_where_they_are_written() {
        let cases: &[(&str, &[&str])] = &[
            (
                "[web]\ncommand = \"x\"\nlisten = 8080\n",
                &["3:10: `listen` must be a string or an array of strings, got integer `8080`"],
            ),
            (
                "[web]\ncommand = \"x\"\nlisten = [\"tcp://127.0.0.1:1\", \"udp://127.0.0.1:2\"]\n",
                &[
                    "3:32: `listen[1]`: must start with `tcp://` or `unix:` (`tcp://127.0.0.1:8080`, `unix:/run/app.sock`)",
                ],
            ),
            (
                "[web]\ncommand = \"x\"\nlisten = [\"tcp://127.0.0.1:1\", \"tcp://127.0.0.1:1\"]\n",
                &["3:32: `listen[1]`: tcp://127.0.0.1:1 is listed twice"],
            ),
            (
                "[web]\ncommand = \"x\"\nlisten = \"unix:/tmp/a.sock\"\n[api]\ncommand = \"y\"\nlisten = \"unix:/tmp/a.sock\"\n",
                &["6:10: `listen`: process `web` already listens on unix:/tmp/a.sock"],
            ),
        ];
        for (toml, want) in cases {
            assert_eq!(load_errors(toml), *want, "for file:\n{toml}");
        }
        let fx = Fixture::new();
        let cfg = fx.load(
            "[web]\ncommand = \"x\"\nlisten = [\"tcp://[::1]:80?name=http\", \"unix:/run/w.sock\"]\n",
            None,
        );
        assert_eq!(cfg.processes[0].listen, ["tcp://[::1]:80?name=http", "unix:/run/w.sock"]);
    }

    #[test]
    fn unknown_env_name_names_the_file_and_the_env() {
        let fx = Fixture::new();
        let text = "[web]\ncommand = \"x\"\nenv_prod = { A = \"1\" }\n";
        let err = fx.load_err(text, Some("staging"));
        assert_eq!(
            err,
            format!(
                "{}:1:1: no process defines `env_staging` (asked for with `--env staging`)",
                fx.config_path().display()
            )
        );
        let err = fx.load_err(text, Some("prd"));
        assert!(err.ends_with("(asked for with `--env prd`) (did you mean `--env prod`?)"), "{err}");
        // A name one process defines is fine for all of them.
        let text = "[web]\ncommand = \"x\"\nenv_prod = { A = \"1\" }\n[db]\ncommand = \"y\"\n";
        assert_eq!(fx.load(text, Some("prod")).processes.len(), 2);
    }

    #[test]
    fn group_may_equal_another_process_name() {
        let fx = Fixture::new();
        let cfg = fx.load("[api]\ncommand = \"x\"\ngroup = \"web\"\n[web]\ncommand = \"y\"\n", None);
        assert_eq!(cfg.processes[0].group.as_deref(), Some("web"));
    }
}
