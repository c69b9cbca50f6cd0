//! `pm3 init`: `--yes` turns a Procfile into a config that `pm3 start` runs; an existing
//! `pm3.toml` is kept without `--force`; with nothing to propose `--yes` fails and writes
//! nothing; the interactive wizard, driven through a real terminal (tmux), writes what the
//! answers say.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Instant;

use crate::harness::{BIN, DEADLINE, POLL, Pm3, free_port, http_get, python, read_lossy, stderr, stdout};

const PROCFILE: &str = "# three processes\n\
                        web: sleep 1000\n\
                        \n\
                        ticker: sh -c 'while true; do echo tick; sleep 1; done'\n\
                        clock: sleep 2000\n";

#[test]
fn yes_writes_a_procfile_config_that_starts() {
    let pm3 = Pm3::new();
    pm3.write("Procfile", PROCFILE);
    let out = stdout(&pm3.ok(&["init", "--yes"]));
    assert!(out.contains("wrote pm3.toml with 3 processes: web, ticker, clock\n"), "{out}");
    assert!(out.contains("start them with: pm3 start"), "{out}");
    let text = read_lossy(&pm3.config_path());
    assert!(text.starts_with('#') && text.contains("# from Procfile: web, ticker, clock"), "{text}");

    pm3.ok(&["start"]);
    pm3.wait_online(&["web", "ticker", "clock"]);
    assert_eq!(pm3.list().len(), 3);
    pm3.wait_log("ticker", "out", "tick");
}

/// Procfiles set variables in front of the command (`web: PORT=5000 python3 app.py`): the
/// config `init` writes starts it; a line `/bin/sh` cannot parse is skipped, saying why.
#[test]
fn yes_writes_procfile_assignments_that_start() {
    let pm3 = Pm3::new();
    let port = free_port();
    let py = python();
    pm3.write(
        "Procfile",
        &format!("web: PORT={port} {py} -m http.server {port} --bind 127.0.0.1\nbroken: echo 'oops\n"),
    );
    let out = stdout(&pm3.ok(&["init", "--yes"]));
    assert!(out.contains("wrote pm3.toml with 1 process: web\n"), "{out}");
    assert!(out.contains("skipped Procfile line 2 (`broken`): shell syntax error: "), "{out}");
    let text = read_lossy(&pm3.config_path());
    assert!(text.contains(&format!("command = \"PORT={port} {py} -m http.server")), "{text}");
    assert!(text.contains("# not included: Procfile line 2 (`broken`): shell syntax error"), "{text}");

    pm3.ok(&["start"]);
    pm3.wait_online(&["web"]);
    pm3.wait_for("the server to answer", || http_get(port).is_some_and(|a| a.starts_with("HTTP/1.0 200")));
}

/// From `package.json`, one server (`start`, not also `dev`, the same server run another way)
/// and the long-running scripts beside it (`worker`); builds, tests and linters never.
#[test]
fn yes_proposes_one_server_and_the_workers_of_package_json() {
    let pm3 = Pm3::new();
    pm3.write(
        "package.json",
        r#"{"scripts": {"start": "echo serving && sleep 1000", "dev": "nodemon server.js",
            "worker": "echo working && sleep 1000", "build": "tsc", "test": "jest", "lint": "eslint .",
            "typecheck": "tsc --noEmit", "preview": "vite preview"}}"#,
    );
    let out = pm3.ok(&["init", "--yes"]);
    let screen = stdout(&out);
    assert!(screen.contains("wrote pm3.toml with 2 processes: start, worker\n"), "{screen}");
    assert!(screen.contains("not proposed: package.json script `dev`"), "{screen}");
    assert!(screen.contains("skipped package.json script `typecheck`: runs once"), "{screen}");
    let text = read_lossy(&pm3.config_path());
    assert!(text.contains("\n[start]\ncommand = \"npm run start\"\n"), "{text}");
    assert!(text.contains("\n[worker]\ncommand = \"npm run worker\"\n"), "{text}");
    assert!(!text.contains("[dev]") && !text.contains("[build]"), "{text}");

    if std::process::Command::new("npm").arg("--version").output().is_err() {
        eprintln!("skipped: npm is not installed, the written config is not started");
        return;
    }
    pm3.ok(&["start"]);
    pm3.wait_online(&["start", "worker"]);
    pm3.wait_log("start", "out", "serving");
    pm3.wait_log("worker", "out", "working");
}

/// From docker compose, `restart`, `env_file`, `healthcheck` (test and interval), the stop
/// signal and grace period carry over; `${VAR:-default}` keeps its meaning (pm3 expands it when
/// the process starts); what cannot carry over is named, key by key, on screen and in the file.
#[test]
fn yes_carries_compose_settings_over_and_names_what_it_cannot() {
    let pm3 = Pm3::new();
    let port = free_port();
    let py = python();
    pm3.write("app.env", "FROM_FILE=\"file value\"\n");
    // Compose reads unquoted spaces; pm3's `.env` reader does not.
    pm3.write("spaced.env", "SPACED=two words\n");
    pm3.write(
        "compose.yaml",
        &format!(
            r#"
services:
  web:
    image: python:3.12
    command: ["{py}", "-m", "http.server", "${{PM3_E2E_WEB_PORT:-{port}}}", "--bind", "127.0.0.1"]
    ports: ["{port}:{port}"]
    volumes: [".:/app"]
    restart: unless-stopped
    env_file: [app.env, missing.env, spaced.env]
    environment:
      API_URL: "${{PM3_E2E_API_URL:-http://localhost:{port}}}"
      DB_URL: "postgres://${{PM3_E2E_DB_HOST}}/app"
      FLAG: "${{PM3_E2E_FLAG:+on}}"
    healthcheck:
      test: ["CMD", "{py}", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:{port}/')"]
      interval: 200ms
      retries: 5
    stop_signal: SIGINT
    stop_grace_period: 3s
  worker:
    command: sleep 1000
    restart: "no"
"#
        ),
    );
    let screen = stdout(&pm3.ok(&["init", "--yes"]));
    for line in [
        "compose.yaml service `web`: not carried over: `ports` (the process binds this machine's ports itself)\n",
        "compose.yaml service `web`: not carried over: `volumes` (the process sees this machine's files)\n",
        "compose.yaml service `web`: not carried over: `image` (pm3 runs the command on this machine, not in the image)\n",
        "compose.yaml service `web`: not carried over: `healthcheck.retries` (",
        "compose.yaml service `web`: not carried over: `env_file` `missing.env` (not found)\n",
        "compose.yaml service `web`: not carried over: `env_file` `spaced.env` (line 1 `SPACED=two words` is not `KEY=VALUE` as pm3 reads it)\n",
        "compose.yaml service `web`: not carried over: `environment.FLAG`: `${PM3_E2E_FLAG:+on}`: pm3 expands only `${VAR}` and `${VAR:-default}`\n",
        "compose.yaml service `web`: note: `environment.DB_URL` uses `${PM3_E2E_DB_HOST}`, which is not set here: written `${PM3_E2E_DB_HOST:-}`",
    ] {
        assert!(screen.contains(line), "missing {line:?} in:\n{screen}");
    }
    let text = read_lossy(&pm3.config_path());
    for line in [
        "\n[web]\n# note: `environment.DB_URL` uses `${PM3_E2E_DB_HOST}`",
        "# not carried over: `image` (pm3 runs the command on this machine, not in the image)\n",
        "# not carried over: `ports` (the process binds this machine's ports itself)\n",
        "\nrestart = \"always\"\nkill_signal = \"SIGINT\"\nkill_timeout = 3000\n",
        "\nhealth_interval = 200\nenv_file = \"app.env\"\n",
        &format!("API_URL = \"${{PM3_E2E_API_URL:-http://localhost:{port}}}\""),
        "DB_URL = \"postgres://${PM3_E2E_DB_HOST:-}/app\"",
        "\n[worker]\ncommand = \"sleep 1000\"\nrestart = \"never\"\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(!text.contains("FLAG ="), "{text}");

    pm3.ok(&["start"]);
    // Online only once the health check carried over from compose passes.
    pm3.wait_online(&["web", "worker"]);
    assert!(http_get(port).is_some_and(|a| a.starts_with("HTTP/1.0 200")));
    let info = pm3.info("web");
    assert_eq!((&info["restart"], &info["kill_signal"]), (&"always".into(), &"SIGINT".into()), "{info}");
    let env = &info["env"];
    assert_eq!(env["API_URL"], format!("http://localhost:{port}"), "{env}");
    assert_eq!(env["DB_URL"], "postgres:///app", "{env}");
    assert_eq!(env["FROM_FILE"], "file value", "{env}");
    assert_eq!(pm3.info("worker")["restart"], "never");
}

#[test]
fn an_existing_config_is_kept_without_force() {
    let pm3 = Pm3::new();
    pm3.write("Procfile", PROCFILE);
    let old = "[old]\ncommand = \"sleep 1\"\n";
    pm3.config(old);

    for args in [&["init", "--yes"][..], &["init"][..]] {
        let err = stderr(&pm3.fails(args));
        let path = pm3.config_path();
        assert!(err.contains(&format!("{} already exists", path.display())), "{err}");
        assert!(err.contains("--force"), "{err}");
        assert_eq!(read_lossy(&path), old, "`pm3 {}` must keep the file", args.join(" "));
    }

    let report = pm3.json(&["init", "--yes", "--force"]);
    assert_eq!(report["command"], "init");
    assert_eq!(report["path"], pm3.config_path().display().to_string());
    assert_eq!(report["processes"], serde_json::json!(["web", "ticker", "clock"]));
    let text = read_lossy(&pm3.config_path());
    assert!(!text.contains("[old]") && text.contains("[clock]\ncommand = \"sleep 2000\"\n"), "{text}");
    // Nothing but pm3.toml is left in the directory (no temporary file).
    let mut entries: Vec<String> = std::fs::read_dir(&pm3.project)
        .expect("list project")
        .filter_map(|e| Some(e.ok()?.file_name().to_str()?.to_string()))
        .collect();
    entries.sort();
    assert_eq!(entries, ["Procfile", "pm3.toml"]);
}

#[test]
fn nothing_to_propose_writes_nothing() {
    let pm3 = Pm3::new();
    // Only an image service and a test script: nothing pm3 can run.
    pm3.write("docker-compose.yml", "services:\n  db:\n    image: postgres:16\n");
    pm3.write("package.json", r#"{"scripts": {"test": "jest"}}"#);
    let out = pm3.fails(&["init", "--yes"]);
    let err = stderr(&out);
    assert!(
        err.contains(
            "nothing to propose: no Procfile, package.json scripts or docker-compose services here; \
             write pm3.toml by hand (see the README)"
        ),
        "{err}"
    );
    assert!(err.contains("docker-compose.yml service `db`: image only"), "{err}");
    let msg = pm3.json_error(&["init", "--yes"]);
    assert!(msg.starts_with("nothing to propose"), "{msg}");
    assert!(!pm3.config_path().exists());

    // Without `--yes` and without a terminal, it says how to go on.
    let err = stderr(&pm3.fails(&["init"]));
    assert!(err.contains("pm3 init --yes"), "{err}");
    assert!(!pm3.config_path().exists());
}

#[test]
fn yes_merges_sources_with_unique_names() {
    let pm3 = Pm3::new();
    pm3.write("Procfile", "web: sleep 1000\n");
    pm3.write("package.json", r#"{"scripts": {"start": "node server.js", "build": "tsc"}}"#);
    pm3.write(
        "compose.yaml",
        "services:\n  db:\n    image: postgres\n  web:\n    command: [sleep, '1001']\n    depends_on: [db, cron]\n    \
         environment: ['GREETING=hello world', 'QUOTE=a\"b']\n    deploy: {replicas: 2}\n  cron:\n    command: sleep 1002\n",
    );
    let report = pm3.json(&["init", "--yes"]);
    assert_eq!(report["processes"], serde_json::json!(["web", "start", "web-2", "cron"]));
    let text = read_lossy(&pm3.config_path());
    assert!(
        text.contains(
            "[web-2]\ncommand = \"sleep 1001\"\ninstances = 2\ndepends_on = [\"cron\"]\n\
             env = { GREETING = \"hello world\", QUOTE = 'a\"b' }\n"
        ),
        "{text}"
    );
    // The config is what the loader accepts: `start` on a subset runs with its dependency.
    pm3.ok(&["start", "web-2"]);
    pm3.wait_online(&["cron", "web-2:0", "web-2:1"]);
    let info = pm3.info("web-2:0");
    assert!(info.to_string().contains("hello world"), "{info}");
}

/// A tmux server of its own (its socket in the test's temp directory, its session named
/// uniquely) running one `pm3` command in the project directory; killed on drop.
struct Tmux {
    socket: PathBuf,
    name: String,
}

impl Tmux {
    /// Starts `pm3 ARGS` on a 120x30 terminal; `None` when tmux is not installed.
    fn start(pm3: &Pm3, args: &[&str]) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            eprintln!("skipped: tmux is not installed, the interactive `pm3 init` is not tested");
            return None;
        }
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("pm3-init-{}-{}", std::process::id(), COUNT.fetch_add(1, Ordering::Relaxed));
        let mut words = vec![
            "env".to_string(),
            format!("PM3_HOME={}", pm3.home.display()),
            "NO_COLOR=1".into(),
            BIN.to_string(),
        ];
        words.extend(args.iter().map(|a| a.to_string()));
        let line = words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ");
        let script = format!("{line}; echo \"pm3 exited $?\"; sleep 600");
        let tmux = Tmux { socket: pm3.root.join(format!("{name}.sock")), name };
        let project = pm3.project.display().to_string();
        let out = tmux.run(&[
            "new-session",
            "-d",
            "-s",
            &tmux.name,
            "-x",
            "120",
            "-y",
            "30",
            "-c",
            &project,
            &script,
        ]);
        assert!(out.status.success(), "tmux new-session failed: {}", String::from_utf8_lossy(&out.stderr));
        Some(tmux)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .unwrap_or_else(|e| panic!("tmux {args:?}: {e}"))
    }

    /// The visible screen and its scrollback.
    fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-S", "-200", "-t", &self.name]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows `needle`; fails at the deadline with the screen.
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let screen = self.screen();
            if screen.contains(needle) {
                return screen;
            }
            if Instant::now() >= deadline {
                panic!("timed out after {DEADLINE:?} waiting for {needle:?} on the terminal:\n{screen}");
            }
            thread::sleep(POLL);
        }
    }

    /// Sends keys by tmux name (`Enter`, `Space`, `n`).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.name];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success(), "tmux send-keys {keys:?}");
    }

    /// Types `text` literally, then Enter.
    fn line(&self, text: &str) {
        assert!(self.run(&["send-keys", "-t", &self.name, "-l", text]).status.success());
        self.keys(&["Enter"]);
    }

    /// Waits for the prompt `prompt`, then answers with the keys.
    fn answer(&self, prompt: &str, keys: &[&str]) {
        self.wait_for(prompt);
        self.keys(keys);
    }

    /// Waits for the preview and the final question, answers yes; returns the screen.
    fn answer_before_write(&self) -> String {
        let screen = self.wait_for("Write pm3.toml? [Y/n]");
        self.keys(&["y"]);
        screen
    }

    /// Waits for the prompt `prompt`, then types a line.
    fn answer_line(&self, prompt: &str, text: &str) {
        self.wait_for(prompt);
        self.line(text);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-session", "-t", &self.name]);
        let _ = self.run(&["kill-server"]);
    }
}

/// `word` quoted for `sh`.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[test]
fn interactive_wizard_writes_the_answers() {
    let pm3 = Pm3::new();
    pm3.write("Procfile", "web: sleep 1000\nworker: sleep 2000\n");
    pm3.write(
        "package.json",
        r#"{"scripts": {"start": "sleep 3000", "preview": "sleep 4000", "test": "false"}}"#,
    );
    let Some(term) = Tmux::start(&pm3, &["init"]) else { return };

    // Pick the optional `preview` script.
    term.answer("More package.json scripts", &["Space", "Enter"]);
    // web: keep (default), new command, two instances.
    term.answer("Keep web?", &["Enter"]);
    term.answer_line("Command for web [sleep 1000]:", "sleep 1500");
    term.answer_line("Instances of web (a number or max) [1]:", "2");
    term.answer("Keep worker?", &["n"]);
    term.answer("Keep start?", &["n"]);
    term.answer("Keep preview?", &["y"]);
    term.answer_line("Command for preview [npm run preview]:", "sleep 4000");
    term.answer("Instances of preview", &["Enter"]);
    term.answer("Add another process? [y/N]", &["Enter"]);
    let screen = term.answer_before_write();
    assert!(screen.contains("[web]\ncommand = \"sleep 1500\"\ninstances = 2\n"), "preview:\n{screen}");
    let screen = term.wait_for("pm3 exited");
    assert!(screen.contains("wrote pm3.toml with 2 processes: web, preview"), "{screen}");
    assert!(screen.contains("pm3 exited 0"), "{screen}");

    let text = read_lossy(&pm3.config_path());
    assert!(text.contains("\n[web]\ncommand = \"sleep 1500\"\ninstances = 2\n"), "{text}");
    assert!(text.contains("\n[preview]\ncommand = \"sleep 4000\"\n"), "{text}");
    assert!(!text.contains("[worker]") && !text.contains("[start]"), "{text}");
    pm3.ok(&["start"]);
    pm3.wait_online(&["web:0", "web:1", "preview"]);
}

#[test]
fn interactive_wizard_asks_for_a_process_when_nothing_is_found() {
    let pm3 = Pm3::new();
    let Some(term) = Tmux::start(&pm3, &["init"]) else { return };
    term.wait_for("Nothing to propose here");
    // An invalid name is refused and asked again.
    term.answer_line("Process name:", "my app");
    term.wait_for("is not allowed");
    term.line("api");
    term.answer_line("Command for api:", "sleep 1000");
    term.answer_line("Instances of api", "0");
    term.wait_for("is not a number of instances");
    term.line("1");
    term.answer("Add another process? [y/N]", &["Enter"]);
    term.answer_before_write();
    let screen = term.wait_for("pm3 exited");
    assert!(screen.contains("wrote pm3.toml with 1 process: api"), "{screen}");
    let text = read_lossy(&pm3.config_path());
    assert!(text.ends_with("\n[api]\ncommand = \"sleep 1000\"\n"), "{text}");
    pm3.ok(&["start"]);
    pm3.wait_online(&["api"]);
}

#[test]
fn interactive_wizard_declining_everything_writes_nothing() {
    let pm3 = Pm3::new();
    pm3.write("Procfile", "web: sleep 1000\n");
    let Some(term) = Tmux::start(&pm3, &["init"]) else { return };
    term.answer("Keep web?", &["n"]);
    term.answer("Add another process? [Y/n]", &["n"]);
    let screen = term.wait_for("pm3 exited");
    assert!(screen.contains("nothing to write: every proposal was declined"), "{screen}");
    assert!(screen.contains("pm3 exited 1"), "{screen}");
    assert!(!pm3.config_path().exists());
}

#[test]
fn interactive_wizard_interrupted_writes_nothing() {
    let pm3 = Pm3::new();
    pm3.write("Procfile", "web: sleep 1000\n");
    let Some(term) = Tmux::start(&pm3, &["init"]) else { return };
    term.answer("Keep web?", &["C-c"]);
    let screen = term.wait_for("pm3 exited");
    assert!(screen.contains("pm3 init: interrupted, nothing written"), "{screen}");
    // Killed by SIGINT, as an interrupted command is (128 + 2).
    assert!(screen.contains("pm3 exited 130"), "{screen}");
    assert!(!pm3.config_path().exists());
    // The yes/no question hid the cursor; the handler showed it again.
    let out = term.run(&["display-message", "-p", "-t", &term.name, "#{cursor_flag}"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "cursor visible again");
}
