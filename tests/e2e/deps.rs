//! `depends_on`: the seed's `db` (2 instances) + `web` example, a clustered `web` waiting on every
//! `db` instance, a dependency that cannot start keeping its dependents `waiting` with no pid,
//! starting a dependent starts its dependencies, and stopping a dependency stops its dependents
//! first.

use crate::harness::{Pm3, has_status, outcome, read_lossy, row_in};

/// Seed example: `web` waits for both `db:0` and `db:1`.
const SEED: &str = r#"
[db]
command = "sleep 1000"
instances = 2

[web]
command = "sleep 1000"
depends_on = ["db"]
"#;

fn started_at(pm3: &Pm3, name: &str) -> u64 {
    let info = pm3.info(name);
    info["started_at_ms"].as_u64().unwrap_or_else(|| panic!("no started_at_ms: {info}"))
}

#[test]
fn web_starts_after_every_db_instance_is_online() {
    let pm3 = Pm3::with_config(SEED);
    pm3.ok(&["start"]);
    pm3.wait_online(&["db:0", "db:1", "web"]);
    let web = started_at(&pm3, "web");
    for db in ["db:0", "db:1"] {
        assert!(web >= started_at(&pm3, db), "web started before {db}");
    }
    assert_eq!(pm3.info("web")["depends_on"], serde_json::json!(["db"]));
}

/// `db` cannot be executed: its instances end `errored` and `web` waits with no pid, until the
/// file is fixed and `pm3 start` runs again.
fn waits_on_a_broken_db(web_instances: u32) {
    let broken = SEED
        .replace("command = \"sleep 1000\"\ninstances = 2", "command = \"/nonexistent/bin\"\ninstances = 2");
    let broken = broken
        .replace("depends_on = [\"db\"]", &format!("depends_on = [\"db\"]\ninstances = {web_instances}"));
    let webs: Vec<String> = if web_instances > 1 {
        (0..web_instances).map(|i| format!("web:{i}")).collect()
    } else {
        vec!["web".to_string()]
    };
    let pm3 = Pm3::with_config(&broken);
    // A spawn failure may make `start` exit 1; when it succeeds, its report shows the wait.
    let out = pm3.run(&["start", "--json"]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", pm3.explain(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    for web in webs.iter().filter(|_| out.status.code() == Some(0)) {
        let o = outcome(&report, web);
        assert_eq!(o["action"], "waiting", "{web} waits: {report}");
        assert_eq!(o["status"], "waiting", "{web} waits: {report}");
        assert!(o["pid"].is_null(), "{web} has no pid: {report}");
    }

    let rows = pm3.wait_until("db instances are errored", |rows| {
        has_status(rows, "db:0", "errored") && has_status(rows, "db:1", "errored")
    });
    for web in &webs {
        let r = row_in(&rows, web);
        assert_eq!(r["status"], "waiting", "{web} keeps waiting: {r}");
        assert!(r["pid"].is_null(), "{web} has no pid: {r}");
    }

    pm3.config(&broken.replace("/nonexistent/bin", "sleep 1000"));
    pm3.ok(&["start"]);
    let mut all = vec!["db:0", "db:1"];
    all.extend(webs.iter().map(String::as_str));
    pm3.wait_online(&all);
    for web in &webs {
        let at = started_at(&pm3, web);
        for db in ["db:0", "db:1"] {
            assert!(at >= started_at(&pm3, db), "{web} started before {db}");
        }
    }
}

#[test]
fn a_dependent_waits_while_its_dependency_cannot_start() {
    waits_on_a_broken_db(1);
}

#[test]
fn every_web_instance_waits_for_every_db_instance() {
    waits_on_a_broken_db(2);
}

#[test]
fn starting_a_dependent_starts_its_dependencies() {
    let pm3 = Pm3::with_config(&format!("{SEED}\n[other]\ncommand = \"sleep 1000\"\n"));
    pm3.ok(&["start", "web"]);
    let rows = pm3.wait_online(&["db:0", "db:1", "web"]);
    assert!(
        !rows.iter().any(|r| r["name"] == "other" && r["pid"].is_i64()),
        "`start web` must not start `other`"
    );

    pm3.ok(&["stop", "db"]);
    pm3.ok(&["start", "web"]);
    pm3.wait_online(&["db:0", "db:1", "web"]);
}

#[test]
fn stopping_a_dependency_stops_its_dependents_first() {
    let pm3 = Pm3::new();
    let trap = |who: &str| {
        pm3.script(
            who,
            &format!("trap 'echo {who} >> order.txt; exit 0' TERM\nwhile true; do sleep 0.05; done\n"),
        )
    };
    pm3.config(&format!(
        "[db]\ncommand = \"{}\"\ninstances = 2\nkill_timeout = 3000\n\n\
         [web]\ncommand = \"{}\"\ndepends_on = [\"db\"]\nkill_timeout = 3000\n\n\
         [other]\ncommand = \"sleep 1000\"\n",
        trap("db"),
        trap("web")
    ));
    pm3.ok(&["start"]);
    let rows = pm3.wait_online(&["db:0", "db:1", "web", "other"]);
    let other = row_in(&rows, "other")["pid"].clone();

    let report = pm3.json(&["stop", "db"]);
    let order: Vec<&str> = report["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(order.first(), Some(&"web"), "the dependent is stopped first: {report}");
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(sorted, ["db:0", "db:1", "web"], "{report}");

    let lines: Vec<String> = read_lossy(&pm3.project.join("order.txt")).lines().map(String::from).collect();
    assert_eq!(lines, ["web", "db", "db"], "web got its signal and exited before db did");

    let rows = pm3.list();
    for name in ["db:0", "db:1", "web"] {
        assert!(has_status(&rows, name, "stopped"), "{name} is stopped");
    }
    assert_eq!(row_in(&rows, "other")["pid"], other, "`other` is untouched");
}
