//! Does what you mean: the environment a process was started with (`--env`) sticks until a
//! command names another, and `info` shows what runs, and what the file now says when that
//! differs.

use crate::harness::Pm3;

/// `LEVEL` in the live process's environment (from /proc, not from pm3's answer).
fn level(pm3: &Pm3, name: &str) -> String {
    let pid = pm3.pid_of(name);
    let env = crate::harness::environ(pid).unwrap_or_else(|| panic!("cannot read the environment of {pid}"));
    env.get("LEVEL").cloned().unwrap_or_default()
}

const APP: &str =
    "[app]\ncommand = \"sleep 1000\"\nenv = { LEVEL = \"debug\" }\nenv_production = { LEVEL = \"warn\" }\n";

#[test]
fn the_env_a_process_was_started_with_sticks() {
    let pm3 = Pm3::with_config(APP);
    pm3.ok(&["start", "--env", "production"]);
    assert_eq!(level(&pm3, "app"), "warn");
    pm3.ok(&["reload", "app"]);
    assert_eq!(level(&pm3, "app"), "warn", "reload keeps --env production");
    pm3.ok(&["restart", "app"]);
    assert_eq!(level(&pm3, "app"), "warn", "restart keeps it");
    pm3.ok(&["stop", "app"]);
    pm3.ok(&["start"]);
    assert_eq!(level(&pm3, "app"), "warn", "stop then start keeps it");
    pm3.ok(&["save"]);
    pm3.ok(&["kill"]);
    pm3.ok(&["resurrect"]);
    assert_eq!(level(&pm3, "app"), "warn", "resurrect keeps it");
    assert_eq!(pm3.info("app")["env_name"], "production");
    // Until a command names another.
    pm3.config(&format!("{APP}env_staging = {{ LEVEL = \"info\" }}\n"));
    pm3.ok(&["restart", "app", "--env", "staging"]);
    assert_eq!(level(&pm3, "app"), "info");
    pm3.ok(&["restart", "app"]);
    assert_eq!(level(&pm3, "app"), "info");
}

#[test]
fn info_shows_what_runs_and_says_when_the_file_differs() {
    let pm3 = Pm3::with_config(APP);
    pm3.ok(&["start"]);
    let pid = pm3.pid_of("app");
    // An edited command: `start` does not pretend to apply it.
    pm3.config(&APP.replace("sleep 1000", "sleep 1001"));
    let out = pm3.ok(&["start"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("config changed: restart to apply"), "{said}");
    let info = pm3.info("app");
    assert_eq!(info["pid"], pid);
    assert_eq!(info["command"], "sleep 1000", "info shows the running command: {info}");
    assert_eq!(info["file_command"], "sleep 1001", "{info}");
    assert!(info["config_changed"].as_array().is_some_and(|c| c.iter().any(|k| k == "command")), "{info}");
    // `start --env` on a running process changes nothing that runs, and info says what runs.
    pm3.config(APP);
    pm3.ok(&["start", "--env", "production"]);
    assert_eq!(level(&pm3, "app"), "debug");
    let info = pm3.info("app");
    assert_eq!(info["env"]["LEVEL"], "debug", "info shows the live environment: {info}");
    assert!(info["config_changed"].as_array().is_some_and(|c| !c.is_empty()), "{info}");
    // Restarted, the change applies and info has nothing left to report.
    pm3.ok(&["restart", "app", "--env", "production"]);
    let info = pm3.info("app");
    assert_eq!(info["env"]["LEVEL"], "warn");
    assert_eq!(info["config_changed"], serde_json::json!([]), "{info}");
}

#[test]
fn info_on_a_cluster_shows_every_instance() {
    let pm3 = Pm3::with_config("[web]\ncommand = \"sleep 1000\"\ninstances = 3\n");
    pm3.ok(&["start"]);
    let all = pm3.json(&["info", "web"]);
    let names: Vec<&str> =
        all.as_array().map(|a| a.iter().filter_map(|i| i["name"].as_str()).collect()).unwrap_or_default();
    assert_eq!(names, ["web:0", "web:1", "web:2"]);
    let out = pm3.ok(&["info", "web"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let shown: Vec<&str> = text.lines().filter(|l| l.starts_with("name ")).collect();
    assert_eq!(shown.len(), 3, "{text}");
}

#[test]
fn info_shows_the_health_check_as_probed() {
    let pm3 = Pm3::with_config(
        "[web]\ncommand = \"sleep 1000\"\ninstances = 2\nincrement_var = \"PORT\"\nenv = { PORT = \"47100\" }\nhealth_check = \"tcp://127.0.0.1:${PORT}\"\n",
    );
    pm3.ok(&["start"]);
    assert_eq!(pm3.info("web:1")["health_check"], "tcp://127.0.0.1:47101");
}

#[test]
fn restarts_count_only_restarts_that_happened() {
    let pm3 = Pm3::with_config(
        "[crash]\ncommand = \"sh -c 'exit 3'\"\nrestart_delay = 20000\nmin_uptime = 60000\n",
    );
    pm3.ok(&["start"]);
    let row = pm3.wait_status("crash", "waiting");
    assert_eq!(row["restarts"], 0, "the restart it waits for has not happened: {row}");
    pm3.ok(&["stop", "crash"]);
    let row = pm3.row("crash");
    assert_eq!((row["status"].as_str(), row["restarts"].as_u64()), (Some("stopped"), Some(0)), "{row}");
}
