//! Baseline for the pm3 benchmarks: the least a process manager has to do to start and stop N
//! copies of a command, with nothing but the standard library.
//!
//!     spawn_baseline COUNT PROGRAM [ARGS...]
//!
//! 1. Starts COUNT children with `std::process::Command`, each in its own process group
//!    (`process_group(0)`, as pm3 does), stdin from /dev/null and stdout/stderr on pipes whose read
//!    ends are kept open (pm3 keeps the read ends of its per-process pipes too).
//! 2. Prints `ready <ns>` (its own spawn time, for information) and waits for a line or EOF on
//!    stdin. The benchmark driver measures "all children exist" from the outside, exactly as it
//!    does for the pm3 daemon.
//! 3. On that line (or EOF: the driver died), sends SIGTERM to every child's process group, reaps
//!    every child, prints `stopped <ns>` and exits.
//!
//! Compile: rustc -O -o target/bench/spawn_baseline bench/spawn_baseline.rs

use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

const SIGTERM: i32 = 15;

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| usage());
    let program = args.next().unwrap_or_else(|| if count == 0 { String::new() } else { usage() });
    let rest: Vec<String> = args.collect();

    let start = Instant::now();
    let mut children: Vec<Child> = Vec::with_capacity(count);
    for _ in 0..count {
        let child = Command::new(&program)
            .args(&rest)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn();
        match child {
            Ok(c) => children.push(c),
            Err(e) => {
                eprintln!("spawn_baseline: cannot run {program}: {e}");
                stop(&mut children);
                std::process::exit(1);
            }
        }
    }
    let spawned = start.elapsed();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready {}", spawned.as_nanos());
    let _ = out.flush();

    // Block until told to stop (a line) or until the driver goes away (EOF).
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);

    let t = Instant::now();
    stop(&mut children);
    let _ = writeln!(out, "stopped {}", t.elapsed().as_nanos());
    let _ = out.flush();
}

/// SIGTERM to every child's process group, then reap them all.
fn stop(children: &mut Vec<Child>) {
    for c in children.iter() {
        // SAFETY: plain kill(2) on a process group we created.
        unsafe {
            kill(-(c.id() as i32), SIGTERM);
        }
    }
    for c in children.iter_mut() {
        let _ = c.wait();
    }
    children.clear();
}

fn usage() -> ! {
    eprintln!("usage: spawn_baseline COUNT PROGRAM [ARGS...]");
    std::process::exit(2);
}
