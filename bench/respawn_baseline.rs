//! Baseline for the pm3 crash-to-respawn benchmark (bench/supervision.sh): the least a process
//! manager has to do to bring a crashed process back, with nothing but the standard library.
//!
//!     respawn_baseline PROGRAM [ARGS...]
//!
//! 1. Starts PROGRAM with `std::process::Command` in its own process group (`process_group(0)`,
//!    as pm3 does), stdin from /dev/null, stdout/stderr on fresh pipes whose read ends it keeps
//!    (pm3 gives every run two new pipes too).
//! 2. Blocks in `waitpid` (`Child::wait`); as soon as the child exits, for any reason, it spawns
//!    it again. No delay, no policy, no bookkeeping: a bare waitpid + fork/exec loop.
//! 3. A line or EOF on stdin (the driver is done, or died) stops the loop: the current child's
//!    group gets SIGTERM, the child is reaped and the program exits. At most MAX_SPAWNS spawns,
//!    so a command that exits at once cannot make it loop forever.
//!
//! It prints nothing: the driver finds each new pid in `/proc`, exactly as it does for pm3.
//!
//! Compile: rustc -O -o target/bench/respawn_baseline bench/respawn_baseline.rs

use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

const SIGTERM: i32 = 15;
const MAX_SPAWNS: u32 = 100_000;

static STOP: AtomicBool = AtomicBool::new(false);
static CURRENT: AtomicI32 = AtomicI32::new(0);

fn main() {
    let mut args = std::env::args().skip(1);
    let program = args.next().unwrap_or_else(|| usage());
    let rest: Vec<String> = args.collect();

    // The stop request arrives on stdin, read by a thread so the main one can sit in waitpid.
    std::thread::spawn(|| {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        STOP.store(true, Ordering::SeqCst);
        let pid = CURRENT.load(Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: plain kill(2) on the process group of the child we spawned.
            unsafe {
                kill(-pid, SIGTERM);
            }
        }
    });

    for _ in 0..MAX_SPAWNS {
        if STOP.load(Ordering::SeqCst) {
            break;
        }
        let mut child = match Command::new(&program)
            .args(&rest)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("respawn_baseline: cannot run {program}: {e}");
                std::process::exit(1);
            }
        };
        CURRENT.store(child.id() as i32, Ordering::SeqCst);
        // A stop that came between the check above and the store: the thread saw pid 0.
        if STOP.load(Ordering::SeqCst) {
            // SAFETY: as above.
            unsafe {
                kill(-(child.id() as i32), SIGTERM);
            }
        }
        let _ = child.wait();
        CURRENT.store(0, Ordering::SeqCst);
        // The pipes (child.stdout / child.stderr) are dropped here, with the child.
    }
}

fn usage() -> ! {
    eprintln!("usage: respawn_baseline PROGRAM [ARGS...]");
    std::process::exit(2);
}
