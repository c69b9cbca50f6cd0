//! The command line: parse arguments (clap), load the config when the command needs it, talk to
//! the daemon, print the result. This is the only place that prints errors and picks the exit
//! code: 0 success, 1 failure, 2 usage error (spec §8).

mod export;
mod init;
mod logs;
pub mod output;
mod run;
mod startup;
mod tui;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser, Subcommand};

use crate::client::{Client, ClientError};
use crate::config::{self, ConfigError};
use crate::paths::{Paths, PathsError};
use crate::protocol::{Action, ConfigPayload, ProcessInfo, Report, Request, Response, Status};

#[derive(Debug, Parser)]
#[command(
    name = "pm3",
    version,
    about = "A small, fast process manager with cluster mode",
    arg_required_else_help = true
)]
pub struct Cli {
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    /// Config file to use instead of searching for pm3.toml.
    #[arg(short = 'c', long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start processes from pm3.toml (all of them without a target).
    Start {
        /// What to start: instances (`web:2`), processes, groups or `all`; none means every
        /// process of pm3.toml.
        targets: Vec<String>,
        /// Apply the `env_<NAME>` tables of pm3.toml on top of `env` (`--env production` uses
        /// `[web.env_production]`).
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
        /// Block until the targets are online; exit 1 if any ends errored or unhealthy.
        #[arg(long)]
        wait: bool,
    },
    /// Stop processes gracefully (dependents first).
    Stop {
        /// What to stop: instances (`web:2`), processes, groups or `all`; none means every
        /// managed process.
        targets: Vec<String>,
    },
    /// Stop then start processes, with the current config file.
    Restart {
        /// What to restart: instances (`web:2`), processes, groups or `all`; none means every
        /// process of pm3.toml.
        targets: Vec<String>,
        /// Apply the `env_<NAME>` tables of pm3.toml on top of `env` (`--env production` uses
        /// `[web.env_production]`).
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
    },
    /// Rolling restart: one instance at a time, each back online before the next.
    Reload {
        /// What to reload: instances (`web:2`), processes, groups or `all`; none means every
        /// process of pm3.toml.
        targets: Vec<String>,
        /// Apply the `env_<NAME>` tables of pm3.toml on top of `env` (`--env production` uses
        /// `[web.env_production]`).
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
    },
    /// Run in the foreground without a daemon (containers, development); Ctrl-C stops all.
    Run {
        /// What to run: instances (`web:2`), processes, groups or `all`; none means every
        /// process of pm3.toml.
        targets: Vec<String>,
        /// Apply the `env_<NAME>` tables of pm3.toml on top of `env` (`--env production` uses
        /// `[web.env_production]`).
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
    },
    /// Show every managed process.
    #[command(visible_aliases = ["ls", "view"])]
    List,
    /// Show everything about one process.
    Info {
        /// An instance (`web:2`), a process (all its instances) or a group.
        target: String,
    },
    /// Show (and follow) process output.
    #[command(visible_alias = "logs")]
    Log {
        /// An instance (`web:2`), a process, a group or `all`; none means every managed process,
        /// each line prefixed with its name.
        target: Option<String>,
        /// Number of lines to show from the end of each log.
        #[arg(short = 'n', long = "lines", default_value_t = 15)]
        lines: usize,
        /// Keep printing new lines as they are written.
        #[arg(short, long)]
        follow: bool,
        /// Only stderr.
        #[arg(long, conflicts_with = "out")]
        err: bool,
        /// Only stdout.
        #[arg(long)]
        out: bool,
    },
    /// Empty log files.
    Flush {
        /// What to empty the logs of: instances (`web:2`), processes, groups or `all`; none means every
        /// managed process.
        targets: Vec<String>,
    },
    /// Send a signal (HUP, SIGUSR1, 10…) to processes.
    Signal {
        /// An instance (`web:2`), a process, a group or `all`.
        target: String,
        /// A name (`HUP`, `SIGUSR1`) or a number, sent to the process group.
        signal: String,
    },
    /// Change the number of instances of a process at runtime (at most 1024).
    Scale {
        /// A process name (not an instance or group).
        process: String,
        /// The new number of instances, 1 to 1024.
        count: u64,
    },
    /// Write the managed processes (with absolute paths) to dump.json; the previous one is kept
    /// as dump.json.bak.
    Save {
        /// Save even when nothing is managed, replacing a dump that holds processes.
        #[arg(long)]
        force: bool,
    },
    /// Start again what `pm3 save` wrote, from any directory.
    Resurrect,
    /// Install a systemd user unit that resurrects the saved set at boot (with lingering).
    Startup {
        /// Show the unit without installing it.
        #[arg(long)]
        print: bool,
    },
    /// Remove the unit installed by `pm3 startup`.
    Unstartup,
    /// Stop every process and the daemon.
    Kill,
    /// Write manifests for systemd, Kubernetes or Compose from pm3.toml (keys a format cannot
    /// express are named on stderr).
    Export {
        /// The engine to write for.
        format: crate::export::Format,
        /// What to export: processes or groups (with what they depend on), or `all`; none
        /// means every process of pm3.toml.
        targets: Vec<String>,
        /// Write the files into this directory (created if needed) instead of printing them.
        #[arg(short = 'o', long = "output", value_name = "DIR")]
        output: Option<PathBuf>,
        /// Apply the `env_<NAME>` tables of pm3.toml on top of `env` (`--env production` uses
        /// `[web.env_production]`).
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
        /// systemd only: units for the user's service manager (`systemctl --user`,
        /// `~/.config/systemd/user`) rather than the system's.
        #[arg(long)]
        user: bool,
    },
    /// Write a pm3.toml for this directory (proposes Procfile, package.json and docker-compose entries)
    Init {
        /// Accept every proposal without asking (no terminal needed).
        #[arg(long)]
        yes: bool,
        /// Replace an existing pm3.toml.
        #[arg(long)]
        force: bool,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell to write the script for.
        shell: clap_complete::Shell,
    },
    /// Interactive terminal UI
    Tui,
    /// Print the man page (roff), e.g. `pm3 man > pm3.1`.
    Man,
    /// Run the daemon in the foreground (started automatically by other commands).
    #[command(hide = true)]
    Daemon,
}

/// Everything that can make a command fail, printed in one place.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Paths(#[from] PathsError),
    #[error("{0}")]
    Other(String),
    /// Already reported on the way (e.g. a failed outcome in a report).
    #[error("")]
    Reported,
    /// Whoever read our output has gone (`pm3 … | head`): stop quietly, as Unix tools do.
    #[error("")]
    ClosedPipe,
    /// Our output cannot be written (`> /dev/full`).
    #[error("cannot write to stdout: {0}")]
    Stdout(std::io::Error),
}

impl CliError {
    /// A failed write to stdout: a closed pipe ends quietly, anything else is an error.
    fn from_stdout(e: std::io::Error) -> CliError {
        if e.kind() == std::io::ErrorKind::BrokenPipe { CliError::ClosedPipe } else { CliError::Stdout(e) }
    }
}

/// Writes to stderr, ignoring failure: with stderr gone there is nowhere left to report to, and
/// `eprintln!` would panic.
pub(crate) fn to_stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        to_stderr(&format!("error: internal error: {msg} (please report this)\n"));
    }));
    if let Some(code) = fast_list() {
        return code;
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        // Bare `pm3` on a terminal opens the TUI instead of the help.
        Err(e)
            if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                && std::env::args_os().len() == 1
                && tui::on_terminal() =>
        {
            Cli { json: false, config: None, command: Some(Command::Tui) }
        }
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let json = cli.json;
    match run(cli) {
        Ok(()) => 0,
        Err(e) => report_error(&e, json),
    }
}

/// Prints `e` (as `{"error": …}` on stdout with `--json`, a config error's problems one per line
/// there; else on stderr) and returns the exit code: 1, or 0 for a closed pipe.
fn report_error(e: &CliError, json: bool) -> i32 {
    match e {
        CliError::ClosedPipe => 0,
        CliError::Reported => 1,
        // stdout is what failed: say so where it can still be read.
        CliError::Stdout(_) => {
            to_stderr(&format!("error: {e}\n"));
            1
        }
        _ if json => {
            let line = format!("{}\n", serde_json::json!({ "error": e.to_string() }));
            let mut out = std::io::stdout().lock();
            if out.write_all(line.as_bytes()).and_then(|()| out.flush()).is_err() {
                to_stderr(&format!("error: {e}\n"));
            }
            1
        }
        // Snippets of the file with each problem underlined, as cargo shows compile errors.
        CliError::Config(c) => {
            to_stderr(&format!("{}\n", c.render(output::color_on(&std::io::stderr()))));
            1
        }
        _ => {
            to_stderr(&format!("error: {e}\n"));
            1
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let Some(command) = cli.command else {
        let _ = Cli::command().print_help();
        return Ok(());
    };
    let paths = Paths::from_env()?;
    let out = Out { json: cli.json };
    match command {
        Command::Daemon => std::process::exit(crate::daemon::main(paths)),
        Command::Man => out.print(MAN_PAGE),
        Command::Completions { shell } => {
            // Into a buffer: clap_complete panics when its writer fails (`| head -1`).
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "pm3", &mut buf);
            out.print(&String::from_utf8_lossy(&buf))
        }
        Command::Start { targets, env, wait } => {
            let config = load_config(cli.config.as_ref(), env.as_deref(), &targets)?;
            sized(Request::Start { config: config.clone(), targets: Vec::new() })?;
            let mut client = Client::connect_or_start(&paths)?;
            let config = keep_env(config, env.as_deref(), &mut client);
            let file = config.as_ref().map(|c| c.file.path.clone());
            let req = Request::Start { config, targets };
            let report = expect_done(client.request(req).map_err(|e| located(e, file.as_deref()))?)?;
            out.report("start", &report)?;
            if wait {
                drop(client);
                wait_online(&paths, &report, &out)?;
            }
            Ok(())
        }
        Command::Restart { targets, env } => {
            let config = load_config(cli.config.as_ref(), env.as_deref(), &targets)?;
            sized(Request::Restart { config: config.clone(), targets: Vec::new() })?;
            let mut client = Client::connect_or_start(&paths)?;
            let config = keep_env(config, env.as_deref(), &mut client);
            let file = config.as_ref().map(|c| c.file.path.clone());
            let req = Request::Restart { config, targets };
            let report = expect_done(client.request(req).map_err(|e| located(e, file.as_deref()))?)?;
            out.report("restart", &report)
        }
        Command::Reload { targets, env } => {
            let config = load_config(cli.config.as_ref(), env.as_deref(), &targets)?;
            sized(Request::Reload { config: config.clone(), targets: Vec::new() })?;
            let mut client = Client::connect_or_start(&paths)?;
            let config = keep_env(config, env.as_deref(), &mut client);
            let file = config.as_ref().map(|c| c.file.path.clone());
            let req = Request::Reload { config, targets };
            let report = expect_done(client.request(req).map_err(|e| located(e, file.as_deref()))?)?;
            out.report("reload", &report)
        }
        Command::Run { targets, env } => {
            let Some(config) = load_config(cli.config.as_ref(), env.as_deref(), &[])? else {
                return Err(CliError::Other("`pm3 run` needs a pm3.toml".into()));
            };
            match run::run(paths, config, targets).map_err(CliError::Other)? {
                0 => Ok(()),
                _ => Err(CliError::Reported),
            }
        }
        Command::Init { yes, force } => init::run(yes, force, &out),
        Command::Export { format, targets, output, env, user } => {
            export::run(cli.config.as_ref(), format, &targets, output.as_deref(), env.as_deref(), user, &out)
        }
        Command::Save { force } => {
            let mut client = Client::connect_or_start(&paths)?;
            let report = expect_done(client.request(Request::Save { force })?)?;
            out.report("save", &report)?;
            if report.processes.is_empty() && !out.json {
                out.print(&format!("saved an empty set to {}\n", paths.dump_file().display()))?;
            }
            Ok(())
        }
        Command::Resurrect => simple(&paths, &out, "resurrect", Request::Resurrect),
        Command::Startup { print } => {
            let unit = startup::unit(&paths).map_err(CliError::Other)?;
            if print {
                if out.json {
                    return out.print_json(&serde_json::json!({"path": unit.path, "unit": unit.text}));
                }
                return out.print(&unit.text);
            }
            let lines = startup::install(&unit).map_err(CliError::Other)?;
            if out.json {
                return out.print_json(
                    &serde_json::json!({"command": "startup", "path": unit.path, "messages": lines}),
                );
            }
            out.print(&format!("{}\n", lines.join("\n")))
        }
        Command::Unstartup => {
            let unit = startup::unit(&paths).map_err(CliError::Other)?;
            let lines = startup::remove(&unit).map_err(CliError::Other)?;
            if out.json {
                return out.print_json(
                    &serde_json::json!({"command": "unstartup", "path": unit.path, "messages": lines}),
                );
            }
            out.print(&format!("{}\n", lines.join("\n")))
        }
        Command::Stop { targets } => simple(&paths, &out, "stop", Request::Stop { targets }),
        Command::Flush { targets } => simple(&paths, &out, "flush", Request::Flush { targets }),
        Command::Signal { target, signal } => {
            let signal = signal
                .parse()
                .map_err(|e: crate::process::signal::UnknownSignal| CliError::Other(e.to_string()))?;
            simple(&paths, &out, "signal", Request::Signal { targets: vec![target], signal })
        }
        Command::Scale { process, count } => {
            let count =
                u32::try_from(count).ok().filter(|&n| n <= crate::spec::MAX_INSTANCES).ok_or_else(|| {
                    CliError::Other(format!(
                        "cannot scale `{process}` to {count} instances: the maximum is {}",
                        crate::spec::MAX_INSTANCES
                    ))
                })?;
            simple(&paths, &out, "scale", Request::Scale { process, count })
        }
        Command::List => {
            let rows = list(&mut Client::connect_or_start(&paths)?)?;
            if out.json { out.print_json(&rows) } else { out.print(&output::table(&rows, run::use_color())) }
        }
        Command::Info { target } => {
            let mut client = Client::connect_or_start(&paths)?;
            let Response::Info(details) = client.request(Request::Info { target })? else {
                return Err(unexpected());
            };
            match (out.json, details.as_slice()) {
                (true, [one]) => out.print_json(one),
                (true, many) => out.print_json(&many),
                (false, many) => {
                    let text: Vec<String> = many.iter().map(output::detail).collect();
                    out.print(&text.join("\n"))
                }
            }
        }
        Command::Log { target, lines, follow, err, out: only_out } => {
            let mut client = Client::connect_or_start(&paths)?;
            let targets: Vec<String> = target.into_iter().collect();
            let Response::Names(names) = client.request(Request::Resolve { targets: targets.clone() })?
            else {
                return Err(unexpected());
            };
            drop(client);
            let streams = logs::Streams { out: !err, err: !only_out };
            // With no target, `-f` also follows processes that appear later.
            let mut discover = || {
                let mut c = Client::connect(&paths).ok()??;
                match c.request(Request::Resolve { targets: Vec::new() }) {
                    Ok(Response::Names(n)) => Some(n),
                    _ => None,
                }
            };
            let discover: Option<logs::Discover<'_>> =
                (targets.is_empty() && follow).then_some(&mut discover as logs::Discover<'_>);
            logs::show(&names, lines, streams, follow, out.json, discover)
                .map_err(|e| CliError::Other(e.to_string()))
        }
        Command::Tui => tui::run(&paths),
        Command::Kill => {
            let client = match Client::connect(&paths)? {
                Some(c) => Some(c),
                // A daemon that died (even by SIGKILL) left its state behind: a new one adopts
                // what still runs, so that this kill stops it too.
                None if paths.state_file().exists() || paths.pid_file().exists() => {
                    Some(Client::connect_or_start(&paths)?)
                }
                None => None,
            };
            let Some(mut client) = client else {
                if out.json {
                    return out.print_json(
                        &serde_json::json!({"command": "kill", "processes": [], "daemon": "not running"}),
                    );
                }
                return out.print("no daemon is running\n");
            };
            let pid =
                std::fs::read_to_string(paths.pid_file()).ok().and_then(|s| s.trim().parse::<u32>().ok());
            let report = expect_done(client.request(Request::Kill)?)?;
            drop(client);
            // The daemon answers just before it exits: wait for it to be gone.
            if let Some(pid) = pid {
                let deadline = Instant::now() + Duration::from_secs(5);
                // A zombie has exited: its parent (often an init that reaps slowly) is left.
                while crate::process::stats::is_live(pid) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            out.report("kill", &report)?;
            if !out.json {
                out.print("daemon stopped\n")?;
            }
            Ok(())
        }
    }
}

/// `pm3 list --json` (and its aliases) is what scripts and dashboards poll, and `pm3 list` what
/// people type most: answer both without building the whole clap command tree, whose code is
/// most of the start-up cost of a binary this size. Any other argument list goes through clap.
fn fast_list() -> Option<i32> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let is_list = |a: &std::ffi::OsString| matches!(a.to_str(), Some("list" | "ls" | "view"));
    let json = |a: &std::ffi::OsString| a.to_str() == Some("--json");
    let as_json = match args.as_slice() {
        [a] if is_list(a) => false,
        [a, b] if (is_list(a) && json(b)) || (json(a) && is_list(b)) => true,
        _ => return None,
    };
    let out = Out { json: as_json };
    let client =
        Paths::from_env().map_err(CliError::from).and_then(|paths| Ok(Client::connect_or_start(&paths)?));
    let result = if as_json {
        client.and_then(|mut client| Ok(client.list_json()?)).and_then(|rows| out.print(&format!("{rows}\n")))
    } else {
        client
            .and_then(|mut client| list(&mut client))
            .and_then(|rows| out.print(&output::table(&rows, run::use_color())))
    };
    Some(match result {
        Ok(()) => 0,
        Err(e) => report_error(&e, as_json),
    })
}

/// Loads the config for `start`/`restart`: `-c PATH`, else the nearest `pm3.toml`. Without
/// either, the command works on what the daemon already manages.
fn load_config(
    explicit: Option<&PathBuf>,
    env: Option<&str>,
    targets: &[String],
) -> Result<Option<ConfigPayload>, CliError> {
    let path = match explicit {
        Some(p) => Some(p.clone()),
        None => {
            let cwd = std::env::current_dir()
                .map_err(|e| CliError::Other(format!("cannot read the current directory: {e}")))?;
            config::find(&cwd)
        }
    };
    let Some(path) = path else {
        if targets.is_empty() || env.is_some() {
            let cwd = std::env::current_dir().unwrap_or_default();
            return Err(CliError::Other(format!(
                "no {} found in {} or any parent directory (use -c PATH)",
                config::FILE_NAME,
                cwd.display()
            )));
        }
        return Ok(None);
    };
    let base = config::own_environment();
    let file = config::load_with(&path, env, &base)?;
    Ok(Some(ConfigPayload { file, env: base }))
}

/// The environment choice (`--env`) is part of a process's state: given, it is recorded in each
/// definition; not given, each process keeps the one it was last started with, so `restart`,
/// `reload` and a later `start` never silently fall back to the base environment. A choice
/// whose `env_<name>` is gone from the file falls back to the base environment, with a warning.
fn keep_env(config: Option<ConfigPayload>, env: Option<&str>, client: &mut Client) -> Option<ConfigPayload> {
    let mut payload = config?;
    if let Some(name) = env {
        for def in &mut payload.file.processes {
            def.env_name = Some(name.to_string());
        }
        return Some(payload);
    }
    let choices = match client.request(Request::EnvChoices { config: payload.file.path.clone() }) {
        Ok(Response::EnvChoices(choices)) => choices,
        // A daemon that does not know the request: nothing to keep.
        _ => return Some(payload),
    };
    let names: std::collections::BTreeSet<&String> = choices.values().collect();
    for name in names {
        match config::load(&payload.file.path, Some(name)) {
            Ok(variant) => {
                for def in &mut payload.file.processes {
                    if choices.get(&def.name) == Some(name)
                        && let Some(v) = variant.processes.iter().find(|v| v.name == def.name)
                    {
                        *def = v.clone();
                        def.env_name = Some(name.clone());
                    }
                }
            }
            Err(_) => to_stderr(&format!(
                "warning: `env_{name}` is no longer in {}; processes started with `--env {name}` get the base environment\n",
                payload.file.path.display()
            )),
        }
    }
    Some(payload)
}

/// `req` when it fits in one request line; otherwise an error naming the config file and its
/// largest value (a 50 MB `env` value), before any daemon is started or reached.
fn sized(req: Request) -> Result<Request, CliError> {
    let envelope = crate::protocol::Envelope { v: crate::protocol::VERSION, req };
    let bytes = serde_json::to_vec(&envelope).map_or(0, |b| b.len() + 1);
    if bytes <= crate::protocol::MAX_REQUEST_BYTES {
        return Ok(envelope.req);
    }
    let config = match &envelope.req {
        Request::Start { config, .. } | Request::Restart { config, .. } | Request::Reload { config, .. } => {
            config.as_ref()
        }
        _ => None,
    };
    let limit = crate::protocol::MAX_REQUEST_BYTES;
    let Some(c) = config else {
        return Err(CliError::Client(ClientError::TooLarge { bytes }));
    };
    let largest = largest_value(c)
        .map(|(what, len)| format!("; its largest value is {what} ({})", output::size(len as u64)))
        .unwrap_or_default();
    Err(CliError::Other(format!(
        "{}: too large to send to the daemon: {} of definitions and environment, more than the {} a request may have{largest}",
        c.file.path.display(),
        output::size(bytes as u64),
        output::size(limit as u64),
    )))
}

/// The largest string a config payload carries, and where it comes from.
fn largest_value(c: &ConfigPayload) -> Option<(String, usize)> {
    let mut all: Vec<(String, usize)> = Vec::new();
    for d in &c.file.processes {
        all.push((format!("`command` of [{}]", d.name), d.command.len()));
        all.extend(d.env.iter().map(|(k, v)| (format!("`env.{k}` of [{}]", d.name), v.len())));
        for (key, hook) in [("pre_start", &d.pre_start), ("post_stop", &d.post_stop)] {
            all.extend(hook.iter().map(|h| (format!("`{key}` of [{}]", d.name), h.len())));
        }
    }
    all.extend(c.env.iter().map(|(k, v)| (format!("environment variable `{k}`"), v.len())));
    all.into_iter().max_by_key(|(_, len)| *len)
}

fn simple(paths: &Paths, out: &Out, name: &str, req: Request) -> Result<(), CliError> {
    let mut client = Client::connect_or_start(paths)?;
    let report = expect_done(client.request(req)?)?;
    out.report(name, &report)
}

fn list(client: &mut Client) -> Result<Vec<ProcessInfo>, CliError> {
    match client.request(Request::List)? {
        Response::List(rows) => Ok(rows),
        _ => Err(unexpected()),
    }
}

/// A socket the daemon could not bind is shown at its `listen` entry in the file, like a
/// config error; every other error as it is.
fn located(e: ClientError, file: Option<&std::path::Path>) -> CliError {
    match (&e, file) {
        (ClientError::Daemon(reply), Some(path)) if reply.kind == crate::protocol::ErrorKind::Bind => {
            match &reply.listen {
                Some((process, index)) => {
                    CliError::Config(config::locate(path, process, "listen", *index, &reply.message))
                }
                None => CliError::Client(e),
            }
        }
        _ => CliError::Client(e),
    }
}

fn expect_done(r: Response) -> Result<Report, CliError> {
    match r {
        Response::Done(report) => Ok(report),
        _ => Err(unexpected()),
    }
}

fn unexpected() -> CliError {
    CliError::Other("unexpected answer from the daemon (is it another pm3 version? try `pm3 kill`)".into())
}

/// `start --wait`: polls until every started instance is online; fails on any that ends
/// errored or unhealthy.
fn wait_online(paths: &Paths, report: &Report, out: &Out) -> Result<(), CliError> {
    use std::io::IsTerminal;
    use std::sync::atomic::{AtomicBool, Ordering};
    let names: Vec<String> =
        report.processes.iter().filter(|o| o.action != Action::Removed).map(|o| o.name.clone()).collect();
    let done = std::sync::Arc::new(AtomicBool::new(false));
    // On a terminal, a second connection shows what is still pending while the daemon waits.
    let progress = (!out.json && std::io::stderr().is_terminal()).then(|| {
        let (paths, names, done) = (paths.clone(), names.clone(), done.clone());
        std::thread::spawn(move || {
            let Ok(mut client) = Client::connect_or_start(&paths) else { return };
            while !done.load(Ordering::Relaxed) {
                if let Ok(rows) = list(&mut client) {
                    let pending: Vec<String> = rows
                        .iter()
                        .filter(|r| names.contains(&r.name) && r.status != Status::Online)
                        .map(|r| format!("{} {}", r.name, r.status.as_str()))
                        .collect();
                    to_stderr(&format!("\r\x1b[Kwaiting for {}: {}", pending.len(), pending.join(", ")));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            to_stderr("\r\x1b[K");
        })
    });
    let waited =
        Client::connect_or_start(paths).and_then(|mut c| c.request(Request::Wait { names: names.clone() }));
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(t) = progress {
        let _ = t.join();
    }
    let report = expect_done(waited?)?;
    let failed: Vec<String> = report
        .processes
        .iter()
        .filter(|o| o.action == Action::Failed)
        .map(|o| format!("{} ({})", o.name, o.detail.as_deref().unwrap_or(o.status.as_str())))
        .collect();
    if !failed.is_empty() {
        return Err(CliError::Other(format!("not online: {}", failed.join(", "))));
    }
    if !out.json {
        out.print(&format!("online: {}\n", names.join(", ")))?;
    }
    Ok(())
}

/// Where results go: JSON or text on stdout.
struct Out {
    json: bool,
}

impl Out {
    /// Writes `text` to stdout. A closed pipe (`pm3 list | head`) ends the command quietly
    /// (exit 0); any other failure (`> /dev/full`) is an error naming stdout.
    fn print(&self, text: &str) -> Result<(), CliError> {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).map_err(CliError::from_stdout)
    }

    fn print_json<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<(), CliError> {
        let text = serde_json::to_string(value).map_err(|e| CliError::Other(e.to_string()))?;
        self.print(&format!("{text}\n"))
    }

    /// Prints what a command did; fails (exit 1) if any process failed, with the reasons on
    /// stderr (spec §8) and what went well on stdout.
    fn report(&self, command: &str, report: &Report) -> Result<(), CliError> {
        let (failed, done): (Vec<_>, Vec<_>) =
            report.processes.iter().cloned().partition(|o| o.action == Action::Failed);
        if self.json {
            self.print_json(&serde_json::json!({ "command": command, "processes": report.processes }))?;
        } else {
            self.print(&output::report(&Report { processes: done }))?;
            for line in output::report(&Report { processes: failed.clone() }).lines() {
                to_stderr(&format!("error: {line}\n"));
            }
        }
        if !failed.is_empty() {
            return Err(CliError::Reported);
        }
        Ok(())
    }
}

/// The man page, generated from the CLI's definition by clap_mangen when the CLI changes (a test
/// checks that it is up to date), so that the binary carries no roff writer.
const MAN_PAGE: &str = include_str!("../../doc/pm3.1");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ConfigFile, ProcessDef};
    use std::collections::BTreeMap;

    fn payload(value_len: usize) -> ConfigPayload {
        let mut def = ProcessDef::new("web", "sleep 1", PathBuf::from("/p"));
        def.env = vec![("SMALL".into(), "1".into()), ("BIG".into(), "x".repeat(value_len))];
        ConfigPayload {
            file: ConfigFile { path: PathBuf::from("/p/pm3.toml"), processes: vec![def] },
            env: BTreeMap::from([("HOME".to_string(), "/root".to_string())]),
        }
    }

    /// `doc/pm3.1` is what clap_mangen makes of the CLI today. After a change to the CLI,
    /// `PM3_BLESS=1 cargo test --lib man_page` writes it again; review the diff.
    #[test]
    fn the_man_page_is_up_to_date() {
        let mut page = Vec::new();
        clap_mangen::Man::new(Cli::command()).render(&mut page).expect("render the man page");
        let page = String::from_utf8(page).expect("a UTF-8 man page");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("doc/pm3.1");
        if std::env::var_os("PM3_BLESS").is_some_and(|v| !v.is_empty()) {
            std::fs::write(&path, &page).expect("write doc/pm3.1");
            return;
        }
        assert!(
            page == MAN_PAGE,
            "doc/pm3.1 differs from the CLI's man page (PM3_BLESS=1 cargo test --lib man_page \
             regenerates it)"
        );
    }

    #[test]
    fn a_request_too_large_names_the_file_the_limit_and_the_value() {
        let ok = sized(Request::Start { config: Some(payload(1 << 20)), targets: vec![] });
        assert!(ok.is_ok());
        let err = sized(Request::Start { config: Some(payload(9 << 20)), targets: vec![] })
            .expect_err("too large")
            .to_string();
        assert!(err.starts_with("/p/pm3.toml: too large to send to the daemon: 9.0MiB"), "{err}");
        assert!(
            err.ends_with(
                "more than the 8.0MiB a request may have; its largest value is `env.BIG` of [web] (9.0MiB)"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_closed_pipe_is_quiet_other_write_errors_are_not() {
        let closed = CliError::from_stdout(std::io::ErrorKind::BrokenPipe.into());
        assert!(matches!(closed, CliError::ClosedPipe));
        assert_eq!(report_error(&closed, false), 0);
        let full = CliError::from_stdout(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(full.to_string().starts_with("cannot write to stdout: No space left on device"), "{full}");
    }
}
