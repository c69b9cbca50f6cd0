//! `pm3 reload`: a rolling restart, one instance at a time, each replacement `online` (health
//! check passed, or still running after `min_uptime` without a check) before the next is
//! touched; a replacement that fails stops the rollout (exit 1, outcome `failed`) and leaves the
//! remaining instances untouched.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Pm3, free_port_range, outcome, outcomes, python, row_in, stdout};

/// True when an HTTP server answers 200 on `127.0.0.1:port` within a short timeout.
fn answers(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    buf.starts_with(b"HTTP/1.0 200") || buf.starts_with(b"HTTP/1.1 200")
}

/// Probes every port every ~20 ms until told to stop; returns each port's down streaks as
/// (first, last) probe times at which it did not answer.
struct Prober {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Vec<Vec<(Instant, Instant)>>>,
}

impl Prober {
    fn start(ports: Vec<u16>) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut streaks: Vec<Vec<(Instant, Instant)>> = vec![Vec::new(); ports.len()];
            let mut open: Vec<Option<(Instant, Instant)>> = vec![None; ports.len()];
            while !flag.load(Ordering::Relaxed) {
                for (i, &port) in ports.iter().enumerate() {
                    let up = answers(port);
                    let now = Instant::now();
                    match (up, open[i]) {
                        (false, None) => open[i] = Some((now, now)),
                        (false, Some((first, _))) => open[i] = Some((first, now)),
                        (true, Some(streak)) => {
                            streaks[i].push(streak);
                            open[i] = None;
                        }
                        (true, None) => {}
                    }
                }
                thread::sleep(Duration::from_millis(20));
            }
            for (i, o) in open.into_iter().enumerate() {
                streaks[i].extend(o);
            }
            streaks
        });
        Prober { stop, thread }
    }

    fn finish(self) -> Vec<Vec<(Instant, Instant)>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("prober thread")
    }
}

/// Pairs of (port index, port index) whose down streaks overlap in time.
fn overlaps(streaks: &[Vec<(Instant, Instant)>], start: Instant) -> Vec<String> {
    let mut found = Vec::new();
    for a in 0..streaks.len() {
        for b in a + 1..streaks.len() {
            for &(a1, a2) in &streaks[a] {
                for &(b1, b2) in &streaks[b] {
                    if a1 <= b2 && b1 <= a2 {
                        let ms = |t: Instant| t.duration_since(start).as_millis();
                        found.push(format!(
                            "instances {a} ({}..{} ms) and {b} ({}..{} ms) down together",
                            ms(a1),
                            ms(a2),
                            ms(b1),
                            ms(b2)
                        ));
                    }
                }
            }
        }
    }
    found
}

fn web_config(base: u16, command: &str) -> String {
    format!(
        r#"
[web]
command = "{command}"
instances = 3
increment_var = "PORT"
env = {{ PORT = "{base}" }}
health_check = "http://127.0.0.1:${{PORT}}/"
health_interval = 50
kill_timeout = 1000
restart_delay = 50
"#
    )
}

/// Three instances of a small HTTP service: during `pm3 reload` a client probing every port
/// every ~20 ms never finds two instances down at once, and every pid changes. Then the command
/// is broken: `reload` exits 1, the first replacement is reported `failed`, and the other two
/// instances keep their pids and keep answering.
#[test]
fn reload_replaces_one_instance_at_a_time_and_a_broken_replacement_stops_the_rollout() {
    let pm3 = crate::health::with_server();
    let base = free_port_range(3);
    let py = python();
    pm3.config(&web_config(base, &format!("{py} server.py")));
    let names = ["web:0", "web:1", "web:2"];
    let ports: Vec<u16> = (0..3).map(|i| base + i).collect();
    pm3.ok(&["start"]);
    pm3.wait_online(&names);
    let before: Vec<i32> = names.iter().map(|n| pm3.pid_of(n)).collect();
    assert!(ports.iter().all(|&p| answers(p)), "every instance answers before the reload");

    let t0 = Instant::now();
    let prober = Prober::start(ports.clone());
    thread::sleep(Duration::from_millis(60)); // a few probes of the steady state first
    let report = pm3.json(&["reload", "web"]);
    thread::sleep(Duration::from_millis(60));
    let streaks = prober.finish();

    assert_eq!(
        outcomes(&report, "reload"),
        names.iter().map(|n| (n.to_string(), "restarted".to_string())).collect::<Vec<_>>(),
        "one outcome per instance, in order"
    );
    let bad = overlaps(&streaks, t0);
    assert!(bad.is_empty(), "never more than one instance down:\n{}", bad.join("\n"));
    assert!(streaks.iter().any(|s| !s.is_empty()), "the prober never saw an instance down: is it probing?");
    let rows = pm3.wait_online(&names);
    let after: Vec<i32> = names.iter().map(|n| row_in(&rows, n)["pid"].as_i64().unwrap() as i32).collect();
    for (i, name) in names.iter().enumerate() {
        assert_ne!(before[i], after[i], "{name} was replaced");
        assert_eq!(row_in(&rows, name)["restarts"], 1, "{name}");
        assert_eq!(outcome(&report, name)["pid"], after[i], "{name}: the report shows the new pid");
    }

    // A broken build: every replacement exits at once.
    pm3.config(&web_config(base, "sh -c 'echo broken build >&2; exit 1'"));
    let out = pm3.run(&["reload", "--json"]);
    assert_eq!(out.status.code(), Some(1), "a failed replacement fails the reload\n{}", pm3.explain(&out));
    let report: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("reload --json: {e}\n{}", pm3.explain(&out)));
    assert_eq!(outcome(&report, "web:0")["action"], "failed", "{report}");
    for name in ["web:1", "web:2"] {
        let touched = report["processes"].as_array().is_some_and(|p| p.iter().any(|o| o["name"] == name));
        assert!(!touched, "the rollout stopped before {name}: {report}");
    }
    let rows = pm3.list();
    for (i, name) in names.iter().enumerate().skip(1) {
        let r = row_in(&rows, name);
        assert_eq!(r["pid"], after[i], "{name} untouched: {r}");
        assert_eq!(r["status"], "online", "{r}");
        assert!(answers(ports[i]), "{name} still answers");
    }
}

/// Without a health check a replacement must still run after `min_uptime` before the next
/// instance is touched; one that dies within it fails the reload even though it was `online`
/// for a moment.
#[test]
fn reload_without_a_check_waits_min_uptime_for_each_replacement() {
    let pm3 = Pm3::with_config(
        "[job]\ncommand = \"sleep 1000\"\ninstances = 2\nmin_uptime = 400\nkill_timeout = 500\nrestart_delay = 50\n",
    );
    pm3.ok(&["start"]);
    pm3.wait_online(&["job:0", "job:1"]);
    let before = [pm3.pid_of("job:0"), pm3.pid_of("job:1")];

    let t = Instant::now();
    pm3.ok(&["reload", "job"]);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(800), "two replacements of min_uptime 400 ms took only {took:?}");
    let started = |name: &str| pm3.info(name)["started_at_ms"].as_u64().expect("started_at_ms");
    let (s0, s1) = (started("job:0"), started("job:1"));
    assert!(s1 >= s0 + 380, "job:1 was replaced {} ms after job:0, within min_uptime", s1.saturating_sub(s0));
    let after = [pm3.pid_of("job:0"), pm3.pid_of("job:1")];
    assert!(before[0] != after[0] && before[1] != after[1], "both replaced: {before:?} → {after:?}");

    pm3.config(
        "[job]\ncommand = \"sh -c 'sleep 0.1; exit 1'\"\ninstances = 2\nmin_uptime = 400\nkill_timeout = 500\nrestart_delay = 50\n",
    );
    let out = pm3.run(&["reload", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", pm3.explain(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).expect("reload --json");
    assert_eq!(outcome(&report, "job:0")["action"], "failed", "{report}");
    let r = pm3.row("job:1");
    assert_eq!(r["pid"], after[1], "job:1 untouched: {r}");
    assert_eq!(r["status"], "online", "{r}");
}
