//! Health checks: `starting` until the check passes, then `online`; `tcp://`, `http://` and
//! `exec:` checks; `unhealthy` after `health_timeout` with the process still running, and
//! `online` once the check passes later; `${PORT}` expanded per instance; `depends_on` waiting
//! for every checked instance; `pm3 start --wait` exit codes.

use std::cell::Cell;
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Pm3, alive, free_port, free_port_range, has_status, http_get, python, row_in, stderr};

/// A server for the tests: sleeps `DELAYS[PM3_INSTANCE_ID]` seconds (the last entry for higher
/// ids), then listens on `127.0.0.1:$PORT`, as a bare TCP server (`MODE=tcp`) or an HTTP server
/// answering 200 to every GET (after `ANSWER_DELAY` seconds). SIGTERM kills it at once.
pub const SERVER_PY: &str = r#"
import http.server, os, socket, time
delays = os.environ.get("DELAYS", "0").split(",")
i = int(os.environ.get("PM3_INSTANCE_ID", "0"))
time.sleep(float(delays[min(i, len(delays) - 1)]))
port = int(os.environ["PORT"])
if os.environ.get("MODE", "http") == "tcp":
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    print("listening on %d" % port, flush=True)
    while True:
        c, _ = s.accept()
        c.close()

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(float(os.environ.get("ANSWER_DELAY", "0")))
        body = ("instance %d pid %d\n" % (i, os.getpid())).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class S(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

srv = S(("127.0.0.1", port), H)
print("listening on %d" % port, flush=True)
srv.serve_forever()
"#;

/// A world with `server.py` written.
pub fn with_server() -> Pm3 {
    let pm3 = Pm3::new();
    pm3.write("server.py", SERVER_PY);
    pm3
}

/// A TCP and an HTTP server that open their port 0.6 s after starting are `starting` (with a
/// live pid) until then, and `online` after.
#[test]
fn servers_that_listen_late_go_from_starting_to_online() {
    let pm3 = with_server();
    let (tcp_port, http_port) = (free_port(), free_port());
    let py = python();
    pm3.config(&format!(
        r#"
[tcp]
command = "{py} server.py"
env = {{ PORT = "{tcp_port}", MODE = "tcp", DELAYS = "0.6" }}
health_check = "tcp://127.0.0.1:{tcp_port}"
health_interval = 100

[http]
command = "{py} server.py"
env = {{ PORT = "{http_port}", DELAYS = "0.6" }}
health_check = "http://localhost:{http_port}/"
health_interval = 100
"#
    ));
    let t = Instant::now();
    let report = pm3.json(&["start"]);
    for name in ["tcp", "http"] {
        let o = crate::harness::outcome(&report, name);
        assert_eq!(o["status"], "starting", "spawned, check not passed yet: {report}");
    }
    let rows = pm3.list();
    for name in ["tcp", "http"] {
        let r = row_in(&rows, name);
        assert_eq!(r["status"], "starting", "{r}");
        let pid = r["pid"].as_i64().unwrap_or_else(|| panic!("a starting process has a pid: {r}"));
        assert!(alive(pid as i32), "{r}");
    }
    let info = pm3.info("tcp");
    assert_eq!(info["health_check"], format!("tcp://127.0.0.1:{tcp_port}"), "{info}");

    pm3.wait_online(&["tcp", "http"]);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(550), "online after {took:?}, before the port opened");
    assert!(pm3.read_log("http", "out").contains("listening"), "the check passed once it listened");
    assert!(pm3.info("http")["health_error"].is_null(), "no health_error once online");
}

/// A check that never passes ends `unhealthy` after `health_timeout`, the process still
/// running; when the check passes later (a listener appears, a file shows up for `exec:`), the
/// same process becomes `online`.
#[test]
fn a_check_that_does_not_pass_in_time_is_unhealthy_until_it_passes() {
    let pm3 = Pm3::new();
    let port = free_port();
    pm3.config(&format!(
        r#"
[never]
command = "sleep 1000"
health_check = "tcp://127.0.0.1:{port}"
health_interval = 100
health_timeout = 700

[flag]
command = "sleep 1000"
health_check = "exec:test -f ready.flag"
health_interval = 100
health_timeout = 700
"#
    ));
    let t = Instant::now();
    pm3.ok(&["start"]);
    let rows = pm3.wait_until("both are unhealthy", |rows| {
        has_status(rows, "never", "unhealthy") && has_status(rows, "flag", "unhealthy")
    });
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(650), "unhealthy after {took:?}, before health_timeout");
    let pids: Vec<i32> = ["never", "flag"]
        .iter()
        .map(|n| {
            let r = row_in(&rows, n);
            let pid = r["pid"].as_i64().unwrap_or_else(|| panic!("unhealthy keeps its pid: {r}")) as i32;
            assert!(alive(pid), "an unhealthy process keeps running: {r}");
            pid
        })
        .collect();
    let info = pm3.info("never");
    assert!(info["health_error"].as_str().is_some_and(|e| !e.is_empty()), "info says why: {info}");

    let _listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the checked port");
    pm3.write("ready.flag", "");
    let rows = pm3.wait_online(&["never", "flag"]);
    for (name, pid) in ["never", "flag"].iter().zip(pids) {
        assert_eq!(row_in(&rows, name)["pid"], pid, "{name}: the same process turned online");
        assert_eq!(row_in(&rows, name)["restarts"], 0);
    }
}

/// `http://localhost:${PORT}/` with `increment_var = "PORT"` checks each instance on its own
/// port: instance 1 listens 1.5 s late and stays `starting` while 0 and 2 are `online`.
#[test]
fn each_instance_is_checked_on_its_own_port() {
    let pm3 = with_server();
    let base = free_port_range(3);
    let py = python();
    pm3.config(&format!(
        r#"
[web]
command = "{py} server.py"
instances = 3
increment_var = "PORT"
env = {{ PORT = "{base}", DELAYS = "0,1.5,0" }}
health_check = "http://localhost:${{PORT}}/"
health_interval = 100
"#
    ));
    pm3.ok(&["start"]);
    pm3.wait_until("web:0 and web:2 online while web:1 is starting", |rows| {
        has_status(rows, "web:0", "online")
            && has_status(rows, "web:2", "online")
            && has_status(rows, "web:1", "starting")
    });
    pm3.wait_online(&["web:0", "web:1", "web:2"]);
    for i in 0..3u16 {
        let answer = http_get(base + i).unwrap_or_default();
        assert!(answer.contains(&format!("instance {i} ")), "port {} answers {answer:?}", base + i);
    }
}

/// `depends_on` a clustered process with health checks: the dependent stays `waiting` with no
/// pid as long as any instance is not `online`, and starts only after the slowest one passed.
#[test]
fn a_dependent_starts_only_after_every_checked_instance_is_online() {
    let pm3 = with_server();
    let base = free_port_range(3);
    let py = python();
    pm3.config(&format!(
        r#"
[db]
command = "{py} server.py"
instances = 3
increment_var = "PORT"
env = {{ PORT = "{base}", MODE = "tcp", DELAYS = "0.2,1.5,0.4" }}
health_check = "tcp://127.0.0.1:${{PORT}}"
health_interval = 50

[web]
command = "sleep 1000"
depends_on = ["db"]
"#
    ));
    pm3.ok(&["start"]);
    let dbs = ["db:0", "db:1", "db:2"];
    let saw_partial = Cell::new(false);
    let rows = pm3.wait_until("web is online", |rows| {
        let dbs_online = dbs.iter().all(|n| has_status(rows, n, "online"));
        if !dbs_online {
            let web = rows.iter().find(|r| r["name"] == "web");
            let ok = web.is_some_and(|w| w["status"] == "waiting" && w["pid"].is_null());
            assert!(ok, "web must wait while a db instance is not online: {}", Value::Array(rows.to_vec()));
            if dbs.iter().any(|n| has_status(rows, n, "online")) {
                saw_partial.set(true);
            }
        }
        has_status(rows, "web", "online")
    });
    assert!(saw_partial.get(), "never saw some db instances online and others not: timing too coarse");
    assert!(dbs.iter().all(|n| has_status(&rows, n, "online")));
    let started = |name: &str| pm3.info(name)["started_at_ms"].as_u64().expect("started_at_ms");
    let web = started("web");
    let slowest = started("db:1");
    assert!(web >= slowest + 1400, "web started {} ms after db:1, which listens after 1.5 s", web - slowest);
}

/// `pm3 start --wait` returns 0 once the targets are online, and 1 naming a target that ended
/// `unhealthy` or `errored`. (`crashy` has a check so that it is never `online`: without one
/// it would be `online` for the moment between spawn and crash, and `--wait` may return 0.)
#[test]
fn start_wait_exit_codes() {
    let pm3 = with_server();
    let (good_port, sick_port) = (free_port(), free_port());
    let py = python();
    pm3.config(&format!(
        r#"
[good]
command = "{py} server.py"
env = {{ PORT = "{good_port}", MODE = "tcp", DELAYS = "0.5" }}
health_check = "tcp://127.0.0.1:{good_port}"
health_interval = 50

[sick]
command = "sleep 1000"
health_check = "tcp://127.0.0.1:{sick_port}"
health_interval = 100
health_timeout = 500

[crashy]
command = "sh -c 'echo nope >&2; exit 1'"
health_check = "exec:false"
max_restarts = 1
min_uptime = 5000
restart_delay = 50
"#
    ));
    let t = Instant::now();
    pm3.ok(&["start", "--wait", "good"]);
    assert!(t.elapsed() >= Duration::from_millis(450), "--wait returned before the check could pass");
    assert_eq!(pm3.row("good")["status"], "online", "--wait returned with good online");

    let out = pm3.fails(&["start", "--wait", "sick"]);
    assert!(stderr(&out).contains("sick"), "names the unhealthy process: {}", pm3.explain(&out));
    assert_eq!(pm3.row("sick")["status"], "unhealthy");

    let out = pm3.fails(&["start", "--wait", "crashy"]);
    assert!(stderr(&out).contains("crashy"), "names the errored process: {}", pm3.explain(&out));
    assert_eq!(pm3.row("crashy")["status"], "errored");
}

/// The `health_error` of `name` once it has one that satisfies `want`; fails with the last one.
fn wait_health_error(pm3: &Pm3, name: &str, want: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    pm3.wait_for(&format!("a health_error of `{name}` as expected"), || {
        last = pm3.info(name)["health_error"].as_str().unwrap_or_default().to_string();
        want(&last)
    });
    last
}

/// A probe may take as long as `health_probe_timeout` (by default the smaller of 5 s and
/// `health_timeout`), whatever `health_interval` is: an endpoint that answers in 1.3 s and an
/// `exec:` check that takes 1.2 s pass with the default 1 s interval; a check longer than an
/// explicit `health_probe_timeout` is cut off and says so.
#[test]
fn a_probe_may_take_longer_than_the_interval() {
    let pm3 = with_server();
    let port = free_port();
    let py = python();
    pm3.config(&format!(
        r#"
[slow_http]
command = "{py} server.py"
env = {{ PORT = "{port}", ANSWER_DELAY = "1.3" }}
health_check = "http://127.0.0.1:{port}/"
health_timeout = 8000

[slow_exec]
command = "sleep 1000"
health_check = "exec:sleep 1.2"
health_timeout = 8000

[cut_off]
command = "sleep 1000"
health_check = "exec:echo checking; sleep 1.2"
health_probe_timeout = 300
health_interval = 100
"#
    ));
    pm3.ok(&["start"]);
    pm3.wait_online(&["slow_http", "slow_exec"]);
    let err = wait_health_error(&pm3, "cut_off", |e| !e.is_empty());
    assert_eq!(
        err,
        "`echo checking; sleep 1.2` did not finish within 300ms (health_probe_timeout); last output: checking",
        "{}",
        pm3.diagnostics()
    );
    assert_eq!(pm3.row("cut_off")["status"], "starting");
}

/// A failing check says why in words: the address that refused, how an `exec:` check ended with
/// the last lines it printed (stdout and stderr, in order).
#[test]
fn failing_checks_say_why_in_words() {
    let pm3 = Pm3::new();
    let closed = free_port();
    pm3.write(
        "check.sh",
        "echo line1\necho line2 >&2\necho line3\necho line4 >&2\necho 'db not ready'\nexit 3\n",
    );
    pm3.config(&format!(
        r#"
[refused]
command = "sleep 1000"
health_check = "http://127.0.0.1:{closed}/health"
health_interval = 100

[tcp_refused]
command = "sleep 1000"
health_check = "tcp://localhost:{closed}"
health_interval = 100

[script]
command = "sleep 1000"
health_check = "exec:sh check.sh"
health_interval = 100

[missing]
command = "sleep 1000"
health_check = "exec:no-such-check-command"
health_interval = 100
"#
    ));
    pm3.ok(&["start"]);
    let err = wait_health_error(&pm3, "refused", |e| !e.is_empty());
    assert_eq!(err, format!("127.0.0.1:{closed}: connection refused"));
    let err = wait_health_error(&pm3, "tcp_refused", |e| !e.is_empty());
    assert_eq!(err, format!("127.0.0.1:{closed}: connection refused; [::1]:{closed}: connection refused"));
    let err = wait_health_error(&pm3, "script", |e| !e.is_empty());
    assert_eq!(err, "`sh check.sh` exited with code 3; last output: line3 | line4 | db not ready");
    let err = wait_health_error(&pm3, "missing", |e| !e.is_empty());
    assert!(
        err.starts_with("`no-such-check-command` exited with code 127 (command not found); last output: "),
        "{err}"
    );
    assert!(err.contains("not found"), "{err}");
}

/// An HTTPS server for the tests, on `127.0.0.1:$PORT` with the certificate `$CERT` and key
/// `$KEY`; answers 200 to every GET. A failed handshake only ends that connection.
const TLS_SERVER_PY: &str = r#"
import http.server, os, ssl
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(os.environ["CERT"], os.environ["KEY"])

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args):
        pass

class S(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def get_request(self):
        sock, addr = self.socket.accept()
        return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        pass

srv = S(("127.0.0.1", int(os.environ["PORT"])), H)
print("listening", flush=True)
srv.serve_forever()
"#;

/// Runs `openssl ARGS` in `dir`; fails the test if it fails.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {}: {}", args.join(" "), stderr(&out));
}

/// In `dir`: a private CA (`ca.pem`), a server certificate for `localhost` signed by it
/// (`leaf.pem`, `leaf.key`), and a self-signed CA certificate for `localhost` (`selfca.pem`,
/// `selfca.key`). `false` when `openssl` is not installed.
fn make_certificates(dir: &std::path::Path) -> bool {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("skipping: `openssl` is not installed (it makes the test certificates)");
        return false;
    }
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca =
        vec!["req", "-x509", "-days", "2", "-subj", "/CN=pm3 test CA", "-keyout", "ca.key", "-out", "ca.pem"];
    ca.extend(ec);
    ca.extend([
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-new", "-subj", "/CN=localhost", "-keyout", "leaf.key", "-out", "leaf.csr"];
    csr.extend(ec);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write leaf.ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ],
    );
    let mut selfca = vec![
        "req",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "selfca.key",
        "-out",
        "selfca.pem",
    ];
    selfca.extend(ec);
    selfca.extend([
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "subjectAltName=DNS:localhost",
    ]);
    openssl(dir, &selfca);
    true
}

/// HTTPS checks against local servers: a certificate from an untrusted CA, and a CA
/// certificate served as a server's, are explained in words; `SSL_CERT_FILE` in the process's
/// `env` makes the private CA trusted and the check passes; `http://` aimed at the TLS port says
/// to use `https://`, and `https://` aimed at a plain HTTP port says it is not TLS.
#[test]
fn https_checks_explain_certificates_and_honour_ssl_cert_file() {
    let pm3 = with_server();
    if !make_certificates(&pm3.project) {
        return;
    }
    pm3.write("tls_server.py", TLS_SERVER_PY);
    let (untrusted, trusted, selfca, plain) = (free_port(), free_port(), free_port(), free_port());
    let py = python();
    pm3.config(&format!(
        r#"
[untrusted]
command = "{py} tls_server.py"
env = {{ PORT = "{untrusted}", CERT = "leaf.pem", KEY = "leaf.key" }}
health_check = "https://localhost:{untrusted}/"
health_interval = 100

[trusted]
command = "{py} tls_server.py"
env = {{ PORT = "{trusted}", CERT = "leaf.pem", KEY = "leaf.key", SSL_CERT_FILE = "ca.pem" }}
health_check = "https://localhost:{trusted}/"
health_interval = 100

[ca_as_server]
command = "{py} tls_server.py"
env = {{ PORT = "{selfca}", CERT = "selfca.pem", KEY = "selfca.key", SSL_CERT_FILE = "selfca.pem" }}
health_check = "https://localhost:{selfca}/"
health_interval = 100

[plain]
command = "{py} server.py"
env = {{ PORT = "{plain}" }}
health_check = "http://127.0.0.1:{plain}/"
health_interval = 100

[http_to_tls]
command = "sleep 1000"
health_check = "http://127.0.0.1:{trusted}/"
health_interval = 100

[https_to_plain]
command = "sleep 1000"
health_check = "https://127.0.0.1:{plain}/"
health_interval = 100
"#
    ));
    pm3.ok(&["start"]);
    pm3.wait_online(&["trusted", "plain"]);
    let err = wait_health_error(&pm3, "untrusted", |e| e.contains("certificate"));
    assert_eq!(
        err,
        format!(
            "127.0.0.1:{untrusted}: the server's certificate is not signed by a trusted authority \
             (self-signed or from a private CA? trust it with SSL_CERT_FILE)"
        )
    );
    let err = wait_health_error(&pm3, "ca_as_server", |e| e.contains("certificate"));
    assert_eq!(
        err,
        format!("127.0.0.1:{selfca}: the server's certificate is a CA certificate, not a server certificate")
    );
    let err = wait_health_error(&pm3, "http_to_tls", |e| e.contains("TLS"));
    assert_eq!(err, format!("127.0.0.1:{trusted}: the server answered with TLS; use https://"));
    let err = wait_health_error(&pm3, "https_to_plain", |e| e.contains("TLS"));
    assert_eq!(
        err,
        format!("127.0.0.1:{plain}: the server did not answer with TLS (plain HTTP? use http://)")
    );
    for name in ["untrusted", "ca_as_server", "http_to_tls", "https_to_plain"] {
        assert_eq!(pm3.row(name)["status"], "starting", "{name}");
    }
}
