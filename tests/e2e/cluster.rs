//! Cluster mode, example by example from `seed/cluster-mode.md`: instance names and rows,
//! `PM3_INSTANCE_ID`/`PM3_INSTANCE_COUNT`, per-instance targets (`stop worker:2`,
//! `restart worker:0`, `log worker:1`), automatic and custom groups, per-instance log files, the
//! port-per-instance web server, reconciling `instances` edits, `scale`, `"max"` and
//! `increment_var`. Dependencies on clustered processes are in `deps.rs`.

use std::collections::BTreeSet;

use crate::harness::{
    Pm3, alive, free_port_range, has_status, http_get, names, outcome, outcomes, python, row_in, stdout,
};

/// Each instance prints its identity, then sleeps.
const WORKER: &str = r#"
[worker]
command = "sh -c 'echo id=$PM3_INSTANCE_ID count=$PM3_INSTANCE_COUNT; exec sleep 1000'"
instances = 4
"#;

const W4: [&str; 4] = ["worker:0", "worker:1", "worker:2", "worker:3"];

fn started_worker() -> Pm3 {
    let pm3 = Pm3::with_config(WORKER);
    pm3.ok(&["start"]);
    pm3.wait_online(&W4);
    pm3
}

fn pids(pm3: &Pm3, names: &[&str]) -> Vec<i32> {
    names.iter().map(|n| pm3.pid_of(n)).collect()
}

#[test]
fn four_instances_make_four_rows_with_distinct_live_pids() {
    let pm3 = Pm3::with_config(WORKER);
    let report = pm3.json(&["start"]);
    let mut started = outcomes(&report, "start");
    started.sort();
    let want: Vec<(String, String)> = W4.iter().map(|n| (n.to_string(), "started".to_string())).collect();
    assert_eq!(started, want);

    let rows = pm3.wait_online(&W4);
    assert_eq!(names(&rows), W4, "one row per instance, in order");
    let mut seen = BTreeSet::new();
    for (i, name) in W4.iter().enumerate() {
        let r = row_in(&rows, name);
        assert_eq!(r["process"], "worker");
        assert_eq!(r["instance"], i as u64);
        assert_eq!(r["instances"], 4);
        assert_eq!(r["group"], "worker", "instances are grouped under the process name");
        assert_eq!(r["restarts"], 0);
        let pid = r["pid"].as_i64().expect("pid") as i32;
        assert!(alive(pid), "{name} pid {pid} is not alive");
        assert!(seen.insert(pid), "{name} shares pid {pid}");
    }
}

#[test]
fn each_instance_sees_its_own_id_and_the_count() {
    let pm3 = started_worker();
    for (i, name) in W4.iter().enumerate() {
        let log = pm3.wait_log(name, "out", "count=");
        assert_eq!(log.trim(), format!("id={i} count=4"), "stdout of {name}");
        let info = pm3.info(name);
        assert_eq!(info["env"]["PM3_INSTANCE_ID"], i.to_string(), "info env of {name}");
        assert_eq!(info["env"]["PM3_INSTANCE_COUNT"], "4", "info env of {name}");
    }
}

#[test]
fn stop_one_instance_stops_only_that_one() {
    let pm3 = started_worker();
    let before = pids(&pm3, &W4);

    let report = pm3.json(&["stop", "worker:2"]);
    assert_eq!(outcomes(&report, "stop"), [("worker:2".to_string(), "stopped".to_string())]);

    let rows = pm3.list();
    let r2 = row_in(&rows, "worker:2");
    assert_eq!(r2["status"], "stopped");
    assert!(r2["pid"].is_null());
    assert!(!alive(before[2]), "worker:2 still runs after `stop` returned");
    for i in [0, 1, 3] {
        let r = row_in(&rows, W4[i]);
        assert_eq!(r["status"], "online", "{} should be untouched", W4[i]);
        assert_eq!(r["pid"], before[i], "{} should keep its pid", W4[i]);
    }
}

#[test]
fn restart_one_instance_changes_only_its_pid() {
    let pm3 = started_worker();
    let before = pids(&pm3, &W4);

    let report = pm3.json(&["restart", "worker:0"]);
    assert_eq!(outcomes(&report, "restart"), [("worker:0".to_string(), "restarted".to_string())]);

    let rows = pm3.wait_online(&W4);
    let new0 = row_in(&rows, "worker:0")["pid"].as_i64().unwrap() as i32;
    assert_ne!(new0, before[0], "worker:0 should have a new pid");
    assert!(alive(new0));
    assert!(!alive(before[0]), "the old worker:0 still runs");
    for i in 1..4 {
        assert_eq!(row_in(&rows, W4[i])["pid"], before[i], "{} should keep its pid", W4[i]);
    }
}

#[test]
fn log_of_one_instance_shows_only_its_output() {
    let pm3 = started_worker();
    for name in W4 {
        pm3.wait_log(name, "out", "count=4");
    }
    let out = stdout(&pm3.ok(&["log", "worker:1"]));
    let lines: Vec<&str> = out.lines().map(str::trim_end).collect();
    assert!(lines.contains(&"id=1 count=4"), "worker:1's line, unprefixed:\n{out}");
    for other in ["id=0", "id=2", "id=3"] {
        assert!(!out.contains(other), "`log worker:1` shows another instance ({other}):\n{out}");
    }
}

#[test]
fn each_instance_has_its_own_log_files() {
    let pm3 = started_worker();
    for name in W4 {
        pm3.wait_log(name, "out", "count=4");
        assert!(pm3.log_path(name, "err").is_file(), "{name}-err.log is created on start");
    }
    assert!(!pm3.log_path("worker", "out").exists(), "no shared worker-out.log");
}

#[test]
fn stop_and_start_by_process_name_cover_all_instances() {
    let pm3 = Pm3::with_config(&format!("{WORKER}\n[other]\ncommand = \"sleep 1000\"\n"));
    pm3.json(&["start", "worker"]);
    pm3.wait_online(&W4);
    let rows = pm3.list();
    assert!(
        !rows.iter().any(|r| r["name"] == "other" && r["pid"].is_i64()),
        "`start worker` must not start `other`"
    );

    pm3.ok(&["start", "other"]);
    let other = pm3.wait_online(&["other"]);
    let other_pid = row_in(&other, "other")["pid"].clone();

    let report = pm3.json(&["stop", "worker"]);
    let mut stopped = outcomes(&report, "stop");
    stopped.sort();
    let want: Vec<(String, String)> = W4.iter().map(|n| (n.to_string(), "stopped".to_string())).collect();
    assert_eq!(stopped, want);
    let rows = pm3.list();
    for name in W4 {
        assert!(has_status(&rows, name, "stopped"), "{name} should be stopped");
    }
    assert_eq!(row_in(&rows, "other")["pid"], other_pid, "`other` is untouched");
    assert_eq!(row_in(&rows, "other")["group"], serde_json::Value::Null);

    pm3.json(&["start", "worker"]);
    pm3.wait_online(&W4);
}

#[test]
fn custom_group_overrides_the_automatic_one() {
    let pm3 = Pm3::with_config(
        r#"
[worker]
command = "sleep 1000"
instances = 4
group = "backend"

[api]
command = "sleep 1000"
group = "backend"

[other]
command = "sleep 1000"
"#,
    );
    pm3.ok(&["start"]);
    let rows = pm3.wait_online(&["worker:0", "worker:1", "worker:2", "worker:3", "api", "other"]);
    for name in W4.iter().chain(&["api"]) {
        assert_eq!(row_in(&rows, name)["group"], "backend", "group of {name}");
    }
    let other_pid = row_in(&rows, "other")["pid"].clone();

    let report = pm3.json(&["stop", "backend"]);
    let mut stopped: Vec<String> = outcomes(&report, "stop").into_iter().map(|(n, _)| n).collect();
    stopped.sort();
    assert_eq!(stopped, ["api", "worker:0", "worker:1", "worker:2", "worker:3"]);
    let rows = pm3.list();
    for name in W4.iter().chain(&["api"]) {
        assert!(has_status(&rows, name, "stopped"), "{name} should be stopped");
    }
    assert_eq!(row_in(&rows, "other")["pid"], other_pid, "`other` is not in the group");

    pm3.json(&["start", "backend"]);
    pm3.wait_online(&["worker:0", "worker:1", "worker:2", "worker:3", "api"]);

    // The process name still reaches every instance when the group is custom.
    pm3.json(&["stop", "worker"]);
    let rows = pm3.list();
    for name in W4 {
        assert!(has_status(&rows, name, "stopped"), "{name} should be stopped");
    }
    assert!(has_status(&rows, "api", "online"), "`stop worker` must not stop `api`");
}

#[test]
fn web_instances_bind_base_port_plus_instance_id() {
    let base = free_port_range(4);
    let pm3 = Pm3::new();
    pm3.write(
        "server.py",
        r#"
import os, http.server
iid = int(os.environ["PM3_INSTANCE_ID"])
port = int(os.environ["BASE"]) + iid
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("instance %d of %s\n" % (iid, os.environ["PM3_INSTANCE_COUNT"])).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"#,
    );
    pm3.config(&format!(
        "[web]\ncommand = \"{} server.py\"\ninstances = 4\nenv = {{ BASE = \"{base}\" }}\n",
        python()
    ));
    pm3.ok(&["start"]);
    pm3.wait_online(&["web:0", "web:1", "web:2", "web:3"]);
    for i in 0..4u16 {
        let want = format!("instance {i} of 4");
        let mut last = None;
        pm3.wait_for(&format!("port {} to answer `{want}`", base + i), || {
            last = http_get(base + i);
            last.as_deref().is_some_and(|a| a.starts_with("HTTP/1.0 200") && a.contains(&want))
        });
    }
}

#[test]
fn changing_instances_in_the_file_reconciles_on_start() {
    let pm3 = started_worker();
    let before = pids(&pm3, &W4);

    pm3.config(&WORKER.replace("instances = 4", "instances = 2"));
    let report = pm3.json(&["start"]);
    let got = outcomes(&report, "start");
    let removed: Vec<&str> = got.iter().filter(|(_, a)| a == "removed").map(|(n, _)| n.as_str()).collect();
    assert_eq!(removed, ["worker:3", "worker:2"], "surplus instances go, highest index first");
    assert_eq!(outcome(&report, "worker:0")["action"], "already_running");
    assert_eq!(outcome(&report, "worker:1")["action"], "already_running");
    let rows = pm3.list();
    assert_eq!(names(&rows), ["worker:0", "worker:1"]);
    assert_eq!(row_in(&rows, "worker:0")["pid"], before[0]);
    assert_eq!(row_in(&rows, "worker:1")["pid"], before[1]);
    assert!(!alive(before[2]) && !alive(before[3]), "removed instances must be stopped");

    pm3.config(&WORKER.replace("instances = 4", "instances = 3"));
    let report = pm3.json(&["start"]);
    assert_eq!(outcome(&report, "worker:2")["action"], "started");
    let rows = pm3.wait_online(&["worker:0", "worker:1", "worker:2"]);
    assert_eq!(names(&rows), ["worker:0", "worker:1", "worker:2"]);
    assert_eq!(row_in(&rows, "worker:0")["pid"], before[0]);
    assert_eq!(row_in(&rows, "worker:1")["pid"], before[1]);
    assert_eq!(row_in(&rows, "worker:2")["instances"], 3);
}

#[test]
fn scale_adds_and_removes_instances_at_runtime() {
    let pm3 = Pm3::with_config("[worker]\ncommand = \"sleep 1000\"\ninstances = 2\n");
    pm3.ok(&["start"]);
    pm3.wait_online(&["worker:0", "worker:1"]);
    let before = pids(&pm3, &["worker:0", "worker:1"]);

    let report = pm3.json(&["scale", "worker", "3"]);
    assert!(
        outcomes(&report, "scale").contains(&("worker:2".to_string(), "started".to_string())),
        "scale 3 starts worker:2: {report}"
    );
    let rows = pm3.wait_online(&["worker:0", "worker:1", "worker:2"]);
    assert_eq!(names(&rows), ["worker:0", "worker:1", "worker:2"]);
    assert_eq!(row_in(&rows, "worker:0")["pid"], before[0]);
    assert_eq!(row_in(&rows, "worker:1")["pid"], before[1]);
    let w2 = row_in(&rows, "worker:2")["pid"].as_i64().unwrap() as i32;

    let report = pm3.json(&["scale", "worker", "1"]);
    let removed: Vec<String> =
        outcomes(&report, "scale").into_iter().filter(|(_, a)| a == "removed").map(|(n, _)| n).collect();
    // How instance 0 is named when one is left is not fixed; the surplus goes highest first.
    let pos = |n: &str| removed.iter().position(|r| r == n);
    assert!(
        pos("worker:2").is_some() && pos("worker:2") < pos("worker:1"),
        "worker:2 then worker:1 are removed: {report}"
    );
    let rows = pm3.list();
    let workers: Vec<&serde_json::Value> = rows.iter().filter(|r| r["process"] == "worker").collect();
    assert_eq!(workers.len(), 1, "one instance left: {rows:?}");
    let name = workers[0]["name"].as_str().unwrap();
    assert!(name == "worker" || name == "worker:0", "the survivor is instance 0, got {name}");
    assert_eq!(workers[0]["status"], "online");
    assert!(!alive(w2) && !alive(before[1]), "scaled-away instances must be stopped");
}

#[test]
fn scale_rejects_bad_counts_and_names() {
    let pm3 = Pm3::with_config("[worker]\ncommand = \"sleep 1000\"\ninstances = 2\n");
    pm3.ok(&["start"]);
    let rows = pm3.wait_online(&["worker:0", "worker:1"]);
    let before = crate::harness::snapshot(&rows);

    pm3.fails(&["scale", "worker", "0"]);
    pm3.fails(&["scale", "nosuch", "2"]);
    let out = pm3.run(&["scale", "worker", "two"]);
    assert_eq!(out.status.code(), Some(2), "a non-number is a usage error");
    assert_eq!(crate::harness::snapshot(&pm3.list()), before, "nothing changed");
}

#[test]
fn instances_max_means_one_per_cpu() {
    let pm3 = Pm3::with_config("[worker]\ncommand = \"sleep 1000\"\ninstances = \"max\"\n");
    pm3.ok(&["start"]);
    let rows = pm3.list();
    let n = rows.len();
    // SAFETY: sysconf only reads its argument.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } as usize;
    let avail = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(n == online || n == avail, "{n} instances for {online} CPUs ({avail} available)");
    for r in &rows {
        assert_eq!(r["instances"], n as u64);
    }
}

#[test]
fn increment_var_offsets_each_instance() {
    let pm3 = Pm3::with_config(
        r#"
[api]
command = "sleep 1000"
instances = 3
increment_var = "PORT"
env = { PORT = "5000", URL = "http://localhost:${PORT}/", SLOT = "slot-${PM3_INSTANCE_ID}" }
"#,
    );
    pm3.ok(&["start"]);
    for i in 0..3 {
        let env = &pm3.info(&format!("api:{i}"))["env"];
        assert_eq!(env["PORT"], format!("{}", 5000 + i));
        assert_eq!(env["URL"], format!("http://localhost:{}/", 5000 + i));
        assert_eq!(env["SLOT"], format!("slot-{i}"));
    }
}

#[test]
fn a_single_instance_is_not_clustered() {
    let pm3 = Pm3::with_config(
        "[solo]\ncommand = \"sh -c 'echo id=$PM3_INSTANCE_ID count=$PM3_INSTANCE_COUNT; exec sleep 1000'\"\n",
    );
    pm3.ok(&["start"]);
    let r = pm3.wait_status("solo", "online");
    assert_eq!(r["process"], "solo");
    assert!(r["instance"].is_null(), "instance is null without instances: {r}");
    assert_eq!(r["instances"], 1);
    assert!(r["group"].is_null(), "no group by default: {r}");
    assert_eq!(pm3.wait_log("solo", "out", "count=").trim(), "id=0 count=1");
}

/// The seed's last example, "Multiple Web Workers": one database with a TCP health check and
/// four web workers that depend on it, each checked over HTTP on its own port
/// (`increment_var = "PORT"`, `${PORT}` in the health check), with `NODE_ENV` from `env`.
#[test]
fn seed_multiple_web_workers_with_health_checks() {
    let db_port = crate::harness::free_port();
    let base = free_port_range(4);
    let pm3 = Pm3::new();
    pm3.write(
        "db.py",
        r#"
import os, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["DB_PORT"])))
s.listen(16)
while True:
    c, _ = s.accept()
    c.close()
"#,
    );
    pm3.write(
        "server.py",
        r#"
import os, http.server
port = int(os.environ["PORT"])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("instance %s env %s\n" % (os.environ["PM3_INSTANCE_ID"], os.environ["NODE_ENV"])).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"#,
    );
    let py = python();
    pm3.config(&format!(
        r#"
[db]
command = "{py} db.py"
env = {{ DB_PORT = "{db_port}" }}
health_check = "tcp://localhost:{db_port}"
health_interval = 100

[web]
command = "{py} server.py"
instances = 4
depends_on = ["db"]
health_check = "http://localhost:${{PORT}}/health"
health_interval = 100
increment_var = "PORT"
env = {{ NODE_ENV = "production", PORT = "{base}" }}
"#
    ));
    pm3.ok(&["start"]);
    let webs = ["web:0", "web:1", "web:2", "web:3"];
    pm3.wait_online(&["db", "web:0", "web:1", "web:2", "web:3"]);
    let db_started = pm3.info("db")["started_at_ms"].as_u64().expect("db started_at_ms");
    for (i, web) in webs.iter().enumerate() {
        let info = pm3.info(web);
        assert!(info["started_at_ms"].as_u64().expect("started_at_ms") >= db_started, "{web} before db");
        assert_eq!(info["env"]["PORT"], (base + i as u16).to_string());
        let want = format!("instance {i} env production");
        let answer = http_get(base + i as u16).unwrap_or_default();
        assert!(answer.contains(&want), "port {} answers {answer:?}", base + i as u16);
    }
}
