#!/usr/bin/env python3
"""Timing and checking helpers for bench/logs.sh (log throughput and loss). Reuses the /proc,
results-file and cleanup helpers of measure.py; results are merged into a JSON file and `report`
turns it into the markdown table. Every wait is bounded by a deadline.

Subcommands:
  throughput  runs, in rotating order: log_writer straight into a file, log_writer | cat > file
              (the floor of any pipe-based capture), log_writer under pm3 (plain log),
              log_writer under pm3 with log_date_format; checks every log
  report      print the markdown table (and write it with --out)
"""

import argparse
import fcntl
import json
import os
import re
import select
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import measure as m  # noqa: E402  (bench/measure.py: /proc helpers, results file, cleanup)

NS_PER_MS = 1_000_000
LINE = 100
WRITER_RE = re.compile(rb"log_writer: (\d+) lines in (\d+) ns \(monotonic (\d+)\.\.(\d+)\)")
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20  # what pm3 asks for its pipes
STARTED_RE = re.compile(r"\(pid (\d+)\)")


# ----------------------------------------------------------------------------- the expected bytes

_EXPECTED = {}


def expected(n):
    """The exact bytes `log_writer n` writes (see log_writer.rs)."""
    if n not in _EXPECTED:
        alpha = b"abcdefghijklmnopqrstuvwxyz" * 5
        tails = [b" " + alpha[k:k + LINE - 12] + b"\n" for k in range(26)]
        _EXPECTED[n] = b"".join(b"%010d%s" % (i, tails[i % 26]) for i in range(n))
    return _EXPECTED[n]


PREFIX_RE = re.compile(rb"(?m)^[^ \n]+ ")


def check_log(path, n, prefixed):
    """Compares a log with what the writer wrote. Returns a dict: lines found intact and in order,
    bytes of payload lost, lines out of order or damaged, and (prefixed) lines without a stamp."""
    want = expected(n)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        data = b""
    res = {"size": len(data), "unstamped": 0}
    if prefixed:
        payload, stamped = PREFIX_RE.subn(b"", data)
        res["unstamped"] = max(0, n - stamped) if len(data) else n
    else:
        payload = data
    if payload == want:
        res.update(intact=n, lost_bytes=0, damaged=0, out_of_order=0, extra_lines=0)
        return res
    # Slow path: which lines are there, intact, and in order?
    want_lines = want.split(b"\n")[:-1]
    seen = set()
    intact = damaged = out_of_order = extra = 0
    last = -1
    for line in payload.split(b"\n"):
        if not line:
            continue
        try:
            i = int(line[:10])
        except ValueError:
            damaged += 1
            continue
        if i >= n or line != want_lines[i]:
            damaged += 1
            continue
        if i in seen:
            extra += 1
            continue
        seen.add(i)
        if i < last:
            out_of_order += 1
        last = max(last, i)
        intact += 1
    res.update(intact=intact, lost_bytes=(n - intact) * LINE, damaged=damaged,
               out_of_order=out_of_order, extra_lines=extra)
    return res


def writer_times(text):
    """(own ns, start, end) from log_writer's stderr line; start/end on perf_counter_ns's clock."""
    found = WRITER_RE.search(text)
    if not found:
        raise RuntimeError(f"no timing line from log_writer in {text[-200:]!r}")
    return int(found.group(2)), int(found.group(3)), int(found.group(4))


# ----------------------------------------------------------------------------- the three kinds of run

def run_direct(a, i):
    """log_writer > file on the same filesystem as PM3_HOME: launch -> exit."""
    path = os.path.join(a.dir, f"direct{i}.log")
    with open(path, "wb") as out:
        t0 = time.perf_counter_ns()
        proc = subprocess.Popen([a.writer, str(a.lines)], stdout=out, stderr=subprocess.PIPE)
        try:
            m.record_pids(a.pids_file, {proc.pid: m.start_time(proc.pid) or 0})
            _, err = proc.communicate(timeout=a.timeout)
        except BaseException:
            proc.kill()
            proc.wait(timeout=5)
            raise
        t1 = time.perf_counter_ns()
    if proc.returncode != 0:
        raise RuntimeError(f"log_writer exited {proc.returncode}: {err!r}")
    check = check_log(path, a.lines, prefixed=False)
    os.unlink(path)
    own, ws, we = writer_times(err)
    return {"ns": t1 - t0, "writer_ns": own, "launch_ns": ws - t0, "tail_ns": t1 - we, "check": check}


def run_cat(a, i):
    """log_writer | cat > file, through a 1 MiB pipe as pm3 uses: launch -> cat's exit. The floor
    of any capture that puts a pipe and a second process between the writer and the file."""
    path = os.path.join(a.dir, f"cat{i}.log")
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_SIZE)
        with open(path, "wb") as out:
            t0 = time.perf_counter_ns()
            writer = subprocess.Popen([a.writer, str(a.lines)], stdout=w, stderr=subprocess.PIPE)
            os.close(w)
            w = -1
            cat = subprocess.Popen(["cat"], stdin=r, stdout=out)
            os.close(r)
            r = -1
            try:
                m.record_pids(a.pids_file, {p.pid: m.start_time(p.pid) or 0 for p in (writer, cat)})
                _, err = writer.communicate(timeout=a.timeout)
                cat.wait(timeout=a.timeout)
            except BaseException:
                for p in (writer, cat):
                    p.kill()
                    p.wait(timeout=5)
                raise
            t1 = time.perf_counter_ns()
    finally:
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)
    if writer.returncode != 0 or cat.returncode != 0:
        raise RuntimeError(f"log_writer exited {writer.returncode}, cat {cat.returncode}: {err!r}")
    check = check_log(path, a.lines, prefixed=False)
    os.unlink(path)
    own, ws, we = writer_times(err)
    return {"ns": t1 - t0, "writer_ns": own, "launch_ns": ws - t0, "tail_ns": t1 - we, "check": check}


def list_status(a, name):
    r = subprocess.run([a.pm3, "list", "--json"], env=m.pm3_env(a.home), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=a.timeout)
    if r.returncode != 0:
        raise RuntimeError(f"pm3 list --json failed ({r.returncode}): {r.stderr.strip()}")
    for row in json.loads(r.stdout):
        if row["name"] == name:
            return row
    raise RuntimeError(f"{name} is not in `pm3 list`")


def fresh_daemon(a, pm3=None, home=None):
    """Ends the daemon of the bench's PM3_HOME (`pm3 kill`) and starts a new idle one (`pm3
    list`), outside the timing, so that every pm3 run starts from the same state. Returns its pid,
    recorded for the cleanup."""
    pm3, home = pm3 or a.pm3, home or a.home
    env = m.pm3_env(home)
    if os.path.exists(os.path.join(home, "pm3.pid")):
        subprocess.run([pm3, "kill"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=a.timeout)
    subprocess.run([pm3, "list"], env=env, stdout=subprocess.DEVNULL, check=True, timeout=a.timeout)
    dpid = m.daemon_pid(home)
    m.record_pids(a.pids_file, {dpid: m.start_time(dpid) or 0})
    return dpid


def run_pm3(a, i, dated, base=False):
    """`pm3 start` of one log_writer (restart never): launch -> first `pm3 list --json` that shows
    it stopped (returned). The writer's exit is awaited first without polling (a pidfd turns
    readable when it exits), so no CLI poll competes with the copy for the 2 CPUs."""
    name = f"{'dated' if dated else 'plain'}{'base' if base else ''}{i}"
    pm3 = a.base_pm3 if base else a.pm3
    home = a.base_home if base else a.home
    a = argparse.Namespace(**{**vars(a), "pm3": pm3, "home": home})
    cfg = os.path.join(a.dir, f"{name}.toml")
    with open(cfg, "w") as f:
        f.write(f'[{name}]\ncommand = "{a.writer} {a.lines}"\nrestart = "never"\n'
                f'log_max_size = "2G"\n')
        if dated:
            f.write(f'log_date_format = "{a.date_format}"\n')
    out_log = os.path.join(a.home, "logs", f"{name}-out.log")
    err_log = os.path.join(a.home, "logs", f"{name}-err.log")
    dpid = fresh_daemon(a)
    sched0 = m.schedstat_ns(dpid)
    t0 = time.perf_counter_ns()
    r = subprocess.run([a.pm3, "-c", cfg, "start", name], env=m.pm3_env(a.home),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=a.timeout)
    t_cmd = time.perf_counter_ns()
    if r.returncode != 0:
        raise RuntimeError(f"pm3 start failed ({r.returncode}): {r.stderr.strip()}")
    found = STARTED_RE.search(r.stdout)
    if not found:
        raise RuntimeError(f"no pid in the output of pm3 start: {r.stdout!r}")
    pid = int(found.group(1))
    deadline = time.monotonic() + a.timeout
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        pidfd = None  # already exited and reaped
    if pidfd is not None:
        try:
            st = m.read_stat(pid)  # (comm, state, ppid, utime, stime, starttime)
            if st is not None and st[0] == os.path.basename(a.writer)[:15]:
                m.record_pids(a.pids_file, {pid: st[5]})
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                if not poller.poll(int(a.timeout * 1000)):
                    raise TimeoutError(f"log_writer {pid} still running after {a.timeout}s")
        finally:
            os.close(pidfd)
    t_gone = time.perf_counter_ns()
    # The end of the timing: the writer's last line is in the file (the file ends with it and
    # holds at least every payload byte). Stat + a 100-byte pread every 0.2 ms.
    last = expected(a.lines)[-LINE:]
    t1 = None
    while t1 is None:
        try:
            with open(out_log, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size >= a.lines * LINE and os.pread(f.fileno(), LINE, size - LINE) == last:
                    t1 = time.perf_counter_ns()
                    break
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: last line not in the log after {a.timeout}s")
        time.sleep(0.0002)
    # Then (outside the timing) pm3 must show it stopped, with exit code 0.
    polls = 0
    while True:
        polls += 1
        t_ask = time.perf_counter_ns()
        row = list_status(a, name)
        if row["status"] == "stopped":
            break
        if row["status"] not in ("online", "stopping"):
            raise RuntimeError(f"{name}: status {row['status']}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} not stopped after {a.timeout}s")
        time.sleep(0.001)
    sched1 = m.schedstat_ns(dpid)
    if row.get("exit_code") not in (0, None) or row.get("exit_signal"):
        raise RuntimeError(f"{name}: exit code {row.get('exit_code')} signal {row.get('exit_signal')}")
    check = check_log(out_log, a.lines, prefixed=dated)
    with open(err_log, "rb") as f:
        own, ws, we = writer_times(f.read())
    for p in (out_log, err_log, cfg):
        os.unlink(p)
    return {"ns": t1 - t0, "ask_ns": t_ask - t0, "cmd_ns": t_cmd - t0, "gone_ns": t_gone - t0,
            "polls": polls, "writer_ns": own, "launch_ns": ws - t0, "tail_ns": t1 - we,
            "daemon_cpu_ns": sched1[0] - sched0[0],
            "daemon_wait_ns": sched1[1] - sched0[1], "check": check}


def cmd_throughput(a):
    kinds = {"direct": lambda i: run_direct(a, i),
             "cat": lambda i: run_cat(a, i),
             "plain": lambda i: run_pm3(a, i, dated=False),
             "dated": lambda i: run_pm3(a, i, dated=True)}
    if a.base_pm3:
        kinds["plainbase"] = lambda i: run_pm3(a, i, dated=False, base=True)
        kinds["datedbase"] = lambda i: run_pm3(a, i, dated=True, base=True)
    names = list(kinds)
    expected(a.lines)  # built once, outside every timing
    runs = {k: [] for k in names}
    for i in range(a.runs + 1):
        keep = i > 0  # one warm-up round
        order = names[i % len(names):] + names[:i % len(names)]
        for k in order:
            r = kinds[k](i)
            if keep:
                runs[k].append(r)
        if keep:
            line = "  ".join(
                f"{k} {runs[k][-1]['ns'] / NS_PER_MS:7.1f} ms (lost {runs[k][-1]['check']['lost_bytes']} B)"
                for k in names)
            print(f"  run {i}/{a.runs}: {line}", flush=True)

    mb = a.lines * LINE / 1e6
    res = {"log_lines": a.lines, "log_mb": mb, "log_runs": a.runs, "log_date_format": a.date_format}
    for k in names:
        rs = runs[k]
        res[f"log_{k}_ns"] = [r["ns"] for r in rs]
        res[f"log_{k}_ms"] = statistics.median(r["ns"] for r in rs) / NS_PER_MS
        res[f"log_{k}_mbps"] = mb / (res[f"log_{k}_ms"] / 1000)
        for f in ("writer", "launch", "tail"):
            res[f"log_{k}_{f}_ms"] = statistics.median(r[f"{f}_ns"] for r in rs) / NS_PER_MS
        res[f"log_{k}_lost_bytes_max"] = max(r["check"]["lost_bytes"] for r in rs)
        res[f"log_{k}_damaged_max"] = max(r["check"]["damaged"] for r in rs)
        res[f"log_{k}_out_of_order_max"] = max(r["check"]["out_of_order"] for r in rs)
        res[f"log_{k}_extra_max"] = max(r["check"]["extra_lines"] for r in rs)
        res[f"log_{k}_unstamped_max"] = max(r["check"]["unstamped"] for r in rs)
        res[f"log_{k}_size_median"] = statistics.median(r["check"]["size"] for r in rs)
        if k.startswith(("plain", "dated")):
            for f in ("ask", "cmd", "gone", "daemon_cpu", "daemon_wait"):
                res[f"log_{k}_{f}_ms"] = statistics.median(r[f"{f}_ns"] for r in rs) / NS_PER_MS
            res[f"log_{k}_polls_median"] = statistics.median(r["polls"] for r in rs)
    for k in names:
        if k.startswith(("plain", "dated")):
            res[f"log_ratio_{k}"] = [d["ns"] / p["ns"] for d, p in zip(runs["direct"], runs[k])]
    m.merge_results(a.results, res)


# ----------------------------------------------------------------------------- report

def cmd_report(a):
    r = m.load_results(a.results)
    lines = [
        "| Figure | pm3 median | baseline median | ratio | target | result |",
        "|---|---|---|---|---|---|",
    ]
    notes = []
    if "log_direct_ms" in r:
        n, mb, runs = r["log_lines"], r["log_mb"], r["log_runs"]
        d = r["log_direct_ms"]
        what = (f"{n:,} lines of {LINE} B, launch of `pm3 start` (fresh daemon) → the last line is in the "
                f"file (baseline: the same writer `> file`, launch → exit; {runs} runs each)")
        for k, fig, target in (("plain", "2a. log throughput, plain log", 0.95),
                               ("dated", f"2b. log throughput, `log_date_format = \"{r['log_date_format']}\"`", 0.8)):
            p = r[f"log_{k}_ms"]
            q = d / p
            lines.append(
                f"| {fig}: {what} | {p:.1f} ms ({r[f'log_{k}_mbps']:.0f} MB/s) | "
                f"{d:.1f} ms ({r['log_direct_mbps']:.0f} MB/s) | {q:.2f}× | ≥ {target}× | "
                f"{'pass' if q >= target else '**miss**'} |")
        for k, fig in (("plainbase", "2a (before). plain log, the other binary"),
                       ("datedbase", "2b (before). stamped log, the other binary")):
            if f"log_{k}_ms" in r:
                p = r[f"log_{k}_ms"]
                lines.append(f"| {fig} ({r.get('log_base_label', '')}) | {p:.1f} ms ({r[f'log_{k}_mbps']:.0f} MB/s) | "
                             f"{d:.1f} ms | {d / p:.2f}× | – | – |")
        c = r["log_cat_ms"]
        lines.append(
            f"| 2a'. for reference, not pm3: `log_writer \\| cat > file` through a 1 MiB pipe, launch → cat exits "
            f"(the floor of any capture through a pipe and a second process) | {c:.1f} ms "
            f"({r['log_cat_mbps']:.0f} MB/s) | {d:.1f} ms ({r['log_direct_mbps']:.0f} MB/s) | {d / c:.2f}× | – | – |")
        lost = max(r["log_plain_lost_bytes_max"], r["log_dated_lost_bytes_max"])
        bad = sum(r[f"log_{k}_{f}_max"] for k in ("plain", "dated")
                  for f in ("damaged", "out_of_order", "extra", "unstamped"))
        lines.append(f"| 2c. bytes lost when pm3 reports the exit (worst run of {2 * runs}; lines damaged, "
                     f"reordered, doubled or unstamped: {bad}) | {lost} B | "
                     f"{r['log_direct_lost_bytes_max']} B | – | 0 | {'pass' if lost == 0 and bad == 0 else '**miss**'} |")
        fl = lambda v: ", ".join(f"{x / NS_PER_MS:.1f}" for x in v)
        def spread(k):
            v = r[f"log_{k}_ns"]
            med = statistics.median(v)
            return f"{min(v) / NS_PER_MS:.1f}–{max(v) / NS_PER_MS:.1f} ms (±{(max(v) - min(v)) / 2 / med * 100:.0f} %)"
        notes.append("- spread (min–max of the runs, half-range / median): "
                     + "; ".join(f"{label} {spread(k)}" for k, label in
                                 (("direct", "direct"), ("cat", "`| cat`"), ("plain", "pm3 plain"),
                                  ("dated", "pm3 dated"), ("plainbase", "before, plain"),
                                  ("datedbase", "before, dated")) if f"log_{k}_ns" in r) + ".")
        ks = [k for k in ("plain", "dated", "plainbase", "datedbase") if f"log_ratio_{k}" in r]
        notes.append("- ratio per round (direct / pm3, same round), and its median: " + "; ".join(
            f"{k} " + ", ".join(f"{x:.2f}" for x in r[f"log_ratio_{k}"])
            + f" (median {statistics.median(r[f'log_ratio_{k}']):.2f})" for k in ks) + ".")
        notes.append(f"- every run (ms): direct {fl(r['log_direct_ns'])}; `| cat` {fl(r['log_cat_ns'])}; "
                     f"pm3 plain {fl(r['log_plain_ns'])}; pm3 dated {fl(r['log_dated_ns'])}.")
        notes.append("- where the time goes (medians; the writer stamps its start and end on the same monotonic "
                     "clock): launch → writer running / writer's own time (start → last byte accepted by fd 1) / "
                     "writer done → end of the measurement: "
                     + "; ".join(f"{label} {r[f'log_{k}_launch_ms']:.1f} / {r[f'log_{k}_writer_ms']:.1f} / "
                                 f"{r[f'log_{k}_tail_ms']:.1f} ms"
                                 for k, label in (("direct", "direct"), ("cat", "`| cat`"),
                                                  ("plain", "pm3 plain"), ("dated", "pm3 dated"))) + ".")
        for k in ("plain", "dated"):
            notes.append(
                f"- pm3 {k}, medians from the launch of `pm3 start`: the command returned after "
                f"{r[f'log_{k}_cmd_ms']:.1f} ms, the writer's exit was seen (pidfd) after {r[f'log_{k}_gone_ms']:.1f} ms, the "
                f"last line was in the file at {r[f'log_{k}_ms']:.1f} ms; the "
                f"`pm3 list --json` that showed `stopped` (not timed) was launched at {r[f'log_{k}_ask_ms']:.1f} ms "
                f"({r[f'log_{k}_polls_median']:.0f} poll(s)); the daemon ran {r[f'log_{k}_daemon_cpu_ms']:.1f} ms "
                f"on a CPU and waited {r[f'log_{k}_daemon_wait_ms']:.1f} ms in the run queue; "
                f"log size {r[f'log_{k}_size_median'] / 1e6:.1f} MB.")
        notes.append(f"- {mb:.0f} MB of payload per run; `log_max_size = \"2G\"` so nothing rotates; PM3_HOME and "
                     f"the direct file are in the same directory tree (same filesystem); each log is checked "
                     f"byte for byte (stamps stripped) right after `stopped` shows, then deleted; every pm3 run starts "
                     f"on a fresh daemon (`pm3 kill`, then `pm3 list`, outside the timing).")
    if "machine" in r:
        notes.append(f"- machine: {r['machine']}")

    text = "\n".join(lines) + ("\n\n" + "\n".join(notes) if notes else "") + "\n"
    if a.header:
        text = a.header + "\n\n" + text
    m.emit(text, a.out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="sub", required=True)

    s = sub.add_parser("throughput")
    s.add_argument("--results", required=True)
    s.add_argument("--pm3", required=True)
    s.add_argument("--home", required=True)
    s.add_argument("--writer", required=True)
    s.add_argument("--dir", required=True, help="where the direct file and the configs go")
    s.add_argument("--lines", type=int, default=1_000_000)
    s.add_argument("--runs", type=int, default=5)
    s.add_argument("--date-format", default="%Y-%m-%dT%H:%M:%S%.3f")
    s.add_argument("--pids-file")
    s.add_argument("--timeout", type=float, default=60)
    s.add_argument("--base-pm3", default="", help="another pm3 binary, measured interleaved (before/after)")
    s.add_argument("--base-home", default="")
    s.set_defaults(fn=cmd_throughput)

    s = sub.add_parser("report")
    s.add_argument("--results", required=True)
    s.add_argument("--out")
    s.add_argument("--header")
    s.set_defaults(fn=cmd_report)

    a = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    a.fn(a)


if __name__ == "__main__":
    main()
