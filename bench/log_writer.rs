//! The writer of the log-throughput benchmark (bench/logs.sh): COUNT numbered lines of exactly
//! 100 bytes on stdout, as fast as it can.
//!
//!     log_writer COUNT
//!
//! Line i (0-based) is `i` as 10 zero-padded digits, a space, 88 filler bytes (`a`..`z` cycling,
//! starting at `i % 26`) and `\n`, so every line is different and a lost, doubled, cut or
//! reordered line shows when the log is checked (measure.py `logcheck` rebuilds the same bytes).
//! Output goes through one 64 KiB buffer straight to fd 1 (not Rust's line-buffered stdout), so
//! the writer costs one write(2) per 655 lines and is not the bottleneck.
//!
//! At the end it prints `log_writer: COUNT lines in NS ns (monotonic START..END)` on stderr: its
//! own time from start to the last byte accepted by fd 1 (for a pipe: until the reader made room
//! for it), and both ends on CLOCK_MONOTONIC, the clock of Python's `time.perf_counter_ns()`, so
//! the driver can split a pm3 run into launch → writer start → writer done → `stopped`.
//!
//! Compile: rustc -O -o target/bench/log_writer bench/log_writer.rs

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::FromRawFd;

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

unsafe extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
}

const CLOCK_MONOTONIC: i32 = 1;

fn monotonic_ns() -> i128 {
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: clock_gettime writes one timespec (two 64-bit fields on 64-bit Linux).
    unsafe {
        clock_gettime(CLOCK_MONOTONIC, &mut ts);
    }
    ts.sec as i128 * 1_000_000_000 + ts.nsec as i128
}

const LINE: usize = 100;
const DIGITS: usize = 10;

fn main() {
    let start = monotonic_ns();
    let count: u64 = match std::env::args().nth(1).and_then(|s| s.parse().ok()) {
        Some(n) => n,
        None => {
            eprintln!("usage: log_writer COUNT");
            std::process::exit(2);
        }
    };
    // SAFETY: fd 1 is open for the life of the process and nothing else in it uses it.
    let stdout = unsafe { File::from_raw_fd(1) };
    let mut out = BufWriter::with_capacity(64 * 1024, stdout);

    // The 26 possible filler tails, built once.
    let mut tails = [[0u8; LINE - DIGITS]; 26];
    for (k, tail) in tails.iter_mut().enumerate() {
        tail[0] = b' ';
        for j in 1..LINE - DIGITS - 1 {
            tail[j] = b'a' + ((k + j - 1) % 26) as u8;
        }
        tail[LINE - DIGITS - 1] = b'\n';
    }
    let mut digits = [b'0'; DIGITS];
    for i in 0..count {
        let mut n = i;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        if out.write_all(&digits).and_then(|_| out.write_all(&tails[(i % 26) as usize])).is_err() {
            std::process::exit(1);
        }
    }
    if out.flush().is_err() {
        std::process::exit(1);
    }
    let end = monotonic_ns();
    eprintln!("log_writer: {count} lines in {} ns (monotonic {start}..{end})", end - start);
}
