//! Log retention: the default `log_max_size` / `log_max_files` keep a burst of 1,000,000 lines
//! (101 MB) whole; `log_compress` gzips rotated files off the daemon's loop (`.1.gz` …), with
//! exactly their lines, `pm3 log -n` reads back through them, and `flush` removes them.
//! `bench/retention.sh` measures the same burst under the old and the new defaults.

use std::time::Instant;

use crate::harness::{Pm3, read_rotated, rotated, stdout, uncompressed};

/// The number at the end of each line of `bytes`, checking that every line is `width` bytes.
fn numbers(bytes: &[u8], width: usize, what: &str) -> Vec<u64> {
    let body = bytes.strip_suffix(b"\n").unwrap_or_else(|| panic!("{what} does not end with a whole line"));
    body.split(|&b| b == b'\n')
        .map(|line| {
            assert!(width == 0 || line.len() == width, "{what}: a line of {} bytes", line.len());
            let digits = &line[line.len().saturating_sub(10)..];
            std::str::from_utf8(digits).ok().and_then(|d| d.parse().ok()).unwrap_or_else(|| {
                panic!("{what}: `{}` is not a numbered line", String::from_utf8_lossy(line))
            })
        })
        .collect()
}

fn assert_contiguous(nums: &[u64], first: u64, last: u64) {
    assert_eq!(nums.first(), Some(&first), "the first line kept");
    assert_eq!(nums.last(), Some(&last), "the last line written");
    if let Some(w) = nums.windows(2).find(|w| w[1] != w[0] + 1) {
        panic!("{} follows {}: lines lost, doubled or out of order", w[1], w[0]);
    }
}

/// The burst: 1,000,000 lines of 101 bytes (100 digits and a newline), written as fast
/// as `seq` goes, under the default retention (no `log_*` key): every line is kept, across the
/// current file and the rotated ones (compressed by default), in order, none twice.
#[test]
fn a_burst_of_a_million_lines_is_kept_whole_under_the_default_retention() {
    const LINES: u64 = 1_000_000;
    let pm3 = Pm3::with_config("[burst]\ncommand = \"seq -f %0100.0f 1 1000000\"\nrestart = \"never\"\n");
    let t = Instant::now();
    pm3.ok(&["start"]);
    pm3.wait_until("the burst has been written", |rows| {
        rows.iter().any(|r| r["name"] == "burst" && r["status"] == "stopped" && r["exit_code"] == 0)
    });
    let written = t.elapsed();
    let log = pm3.log_path("burst", "out");
    pm3.wait_for("every rotated file to be compressed", || uncompressed(&log, 10) == (vec![], false));
    let compressed = t.elapsed();
    let mut nums = Vec::with_capacity(LINES as usize);
    let mut files = 0;
    for k in (1..=10).rev() {
        if let Some(bytes) = read_rotated(&log, k) {
            assert!(rotated(&log, k, true).exists(), "rotation {k} is compressed");
            nums.extend(numbers(&bytes, 100, &format!("rotation {k}")));
            files += 1;
        }
    }
    nums.extend(numbers(&std::fs::read(&log).expect("the current log"), 100, "the current log"));
    eprintln!(
        "{} of {LINES} lines kept in {files} rotated files and the current one; written in {written:?}, \
         compressed by {compressed:?}",
        nums.len()
    );
    assert_contiguous(&nums, 1, LINES);
    assert_eq!(nums.len() as u64, LINES, "every line of the burst is kept");
}

/// With `log_compress = true` and small files, the rotated files become `.1.gz` … `.3.gz`, each
/// holding exactly the whole lines that were cut there (the oldest beyond `log_max_files` gone);
/// `pm3 log -n` reads back through them when the current file is short; `flush` removes them.
#[test]
fn rotated_logs_are_gzipped_hold_their_lines_and_pm3_log_reads_through_them() {
    const LAST: u64 = 60_000;
    let pm3 = Pm3::with_config(&format!(
        "[w]\ncommand = \"seq 1 {LAST}\"\nrestart = \"never\"\nlog_max_size = \"64K\"\nlog_max_files = 3\n\
         log_compress = true\n"
    ));
    pm3.ok(&["start"]);
    pm3.wait_until("w has exited", |rows| {
        rows.iter().any(|r| r["name"] == "w" && r["status"] == "stopped" && r["exit_code"] == 0)
    });
    let log = pm3.log_path("w", "out");
    pm3.wait_for("the rotated files to be gzipped", || {
        uncompressed(&log, 3) == (vec![], false) && (1..=3).all(|k| rotated(&log, k, true).exists())
    });
    assert!(!rotated(&log, 4, true).exists() && !rotated(&log, 4, false).exists(), "3 rotated files kept");
    let mut all = Vec::new();
    for k in (1..=3).rev() {
        let bytes = read_rotated(&log, k).expect("a rotated file");
        assert!(bytes.len() <= 64 * 1024, "rotation {k} holds {} bytes, over log_max_size", bytes.len());
        all.extend(numbers(&bytes, 0, &format!("rotation {k}")));
    }
    let current = numbers(&std::fs::read(&log).expect("the current log"), 0, "the current log");
    all.extend(&current);
    let first = all[0];
    assert!(first > 1, "the oldest lines were rotated away");
    assert_contiguous(&all, first, LAST);

    let log_n = |n: usize| -> Vec<u64> {
        let out = stdout(&pm3.ok(&["log", "w", "--out", "-n", &n.to_string()]));
        numbers(out.as_bytes(), 0, "pm3 log")
    };
    let n = current.len() + 10;
    assert_eq!(log_n(n), all[all.len() - n..], "-n {n} reaches into .1.gz");
    let n = all.len() - 5;
    assert_eq!(log_n(n), all[5..], "-n {n} reaches into .3.gz");
    assert_eq!(log_n(1_000_000), all, "everything kept, oldest first");

    pm3.ok(&["flush", "w"]);
    for k in 1..=3 {
        assert!(!rotated(&log, k, true).exists(), "flush removes w-out.log.{k}.gz");
    }
    assert_eq!(std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0), 0);
}

/// A daemon SIGKILLed in the middle of a compression: the rotated file stays whole beside the
/// partial temporary file, which never takes its place; the next daemon (started by `pm3 list`,
/// adopting the still running writer) compresses that file again, and the `.gz` holds exactly
/// its bytes.
#[test]
fn a_daemon_killed_mid_compression_leaves_the_rotated_file_whole_and_the_next_one_compresses_it() {
    let pm3 = Pm3::new();
    // 8.5 MB of hex (slow enough to compress that the temporary file is seen), then it stays.
    let writer = pm3.write(
        "writer.py",
        "import os, sys, time\n\
         sys.stdout.write(''.join(os.urandom(40).hex() + '\\n' for _ in range(105000)))\n\
         sys.stdout.flush()\nopen('wrote', 'w').close()\ntime.sleep(1000)\n",
    );
    pm3.config(&format!(
        "[w]\ncommand = \"{} {}\"\nlog_max_size = \"8M\"\nlog_max_files = 3\n",
        crate::harness::python(),
        writer.display()
    ));
    let log = pm3.log_path("w", "out");
    let tmp = log.with_file_name(".w-out.log.gz.tmp");
    pm3.ok(&["start"]);
    // Kill as soon as the compression has begun: the temporary file appears.
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    while !tmp.exists() {
        assert!(Instant::now() < deadline, "no compression began\n{}", pm3.diagnostics());
        std::thread::yield_now();
    }
    crate::durability::kill_daemon(&pm3);
    let plain = std::fs::read(rotated(&log, 1, false)).expect("w-out.log.1 is still there, whole");
    assert!(!rotated(&log, 1, true).exists(), "no .gz took its place");
    assert!(plain.len() > 7 << 20 && plain.ends_with(b"\n"), "{} bytes", plain.len());
    pm3.wait_for("the writer to finish", || pm3.project.join("wrote").exists());

    pm3.list();
    pm3.wait_for("the next daemon to compress it", || uncompressed(&log, 3) == (vec![], false));
    assert_eq!(read_rotated(&log, 1).expect("w-out.log.1.gz"), plain, "exactly its bytes");
    assert!(rotated(&log, 1, true).exists());
    let mut all = plain;
    all.extend(std::fs::read(&log).expect("the current log"));
    assert_eq!(all.len(), 105_000 * 81, "every line is in .1.gz or the current file");
}
