#!/usr/bin/env python3
"""Timing and /proc helpers for bench/run.sh (the parts hyperfine does not fit).

Every figure is written into a JSON results file (--results), merged key by key, and
`report` turns that file into the markdown table. Every wait is bounded by a deadline.

Subcommands:
  resources  daemon RSS idle / with N instances, CPU over an idle window; same for the baseline
  rss        median VmRSS of one pid (informational readings)
  startstop  alternating runs: `pm3 start` of N vs spawn_baseline, then `pm3 stop all` vs baseline stop
  hyperfine  pull the medians out of a hyperfine --export-json file
  report     print the markdown table (and write it with --out)
  cleanup    kill recorded pids that are still the same processes (pid + start time)
"""

import argparse
import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import time

NS_PER_MS = 1_000_000


# ----------------------------------------------------------------------------- /proc helpers

def read_stat(pid):
    """(comm, state, ppid, utime, stime, starttime) of pid, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    lp = data.find(b"(")
    rp = data.rfind(b")")
    comm = data[lp + 1:rp].decode(errors="replace")
    rest = data[rp + 2:].split()
    # rest[0] is field 3 (state); field n is rest[n - 3].
    return (comm, rest[0].decode(), int(rest[1]), int(rest[11]), int(rest[12]), int(rest[19]))


def start_time(pid):
    st = read_stat(pid)
    return None if st is None else st[5]


def same_process_alive(pid, starttime):
    """'alive', 'zombie' or 'gone' for the process identified by (pid, starttime)."""
    st = read_stat(pid)
    if st is None or st[5] != starttime:
        return "gone"
    return "zombie" if st[1] in ("Z", "X") else "alive"


def all_pids():
    return {int(n) for n in os.listdir("/proc") if n.isdigit()}


def vmrss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def rss_split_kib(pid):
    """(RssAnon, RssFile) in KiB: private memory vs mapped pages of the binary and libraries."""
    vals = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("RssAnon:", "RssFile:", "RssShmem:")):
                vals[line.split(":")[0]] = int(line.split()[1])
    return vals.get("RssAnon", 0), vals.get("RssFile", 0) + vals.get("RssShmem", 0)


def schedstat_ns(pid):
    """(on-CPU ns, runqueue-wait ns) summed over the threads of pid (/proc/<pid>/task/*/schedstat)."""
    run = wait = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return 0, 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                parts = f.read().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        run += int(parts[0])
        wait += int(parts[1])
    return run, wait


def cpu_ticks(pid):
    st = read_stat(pid)
    if st is None:
        raise RuntimeError(f"pid {pid} is gone")
    return st[3] + st[4]


class ChildWatcher:
    """Finds the live, exec'd (comm == `comm`) children of `ppid` that appeared after creation.

    The kernel here may lack /proc/<pid>/task/<tid>/children (CONFIG_PROC_CHILDREN), so this
    scans /proc; pids that existed before the watcher was made, or that turned out to belong to
    another parent, are never read again, which keeps a scan well under a millisecond.
    """

    def __init__(self, comm):
        self.comm = comm
        self.ppid = None
        self.skip = all_pids()
        self.found = {}  # pid -> starttime
        self.first_ns = None  # perf_counter_ns when the first child was seen
        self.has_children_file = os.path.exists(f"/proc/self/task/{os.getpid()}/children")

    def _candidates(self):
        if self.has_children_file:
            pids = set()
            try:
                for tid in os.listdir(f"/proc/{self.ppid}/task"):
                    try:
                        with open(f"/proc/{self.ppid}/task/{tid}/children") as f:
                            pids.update(int(p) for p in f.read().split())
                    except FileNotFoundError:
                        pass
            except FileNotFoundError:
                pass
            return pids
        return all_pids()

    def scan(self):
        for pid in self._candidates():
            if pid in self.skip or pid in self.found:
                continue
            st = read_stat(pid)
            if st is None:
                continue
            comm, state, ppid, _, _, stt = st
            if ppid != self.ppid:
                self.skip.add(pid)  # a new process of someone else (the pm3 CLI, ...)
                continue
            if state in ("Z", "X") or comm != self.comm:
                continue  # forked but not exec'd yet, or already dead: look again next scan
            self.found[pid] = stt
        return len(self.found)

    def wait(self, count, deadline, poll_s=0.0002):
        while self.scan() < count:
            if self.first_ns is None and self.found:
                self.first_ns = time.perf_counter_ns()
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self.found)} of {count} children of {self.ppid} appeared")
            time.sleep(poll_s)
        now = time.perf_counter_ns()
        if self.first_ns is None:
            self.first_ns = now
        return now


def live_children(ppid, comm):
    """Live children of ppid running `comm` right now (one full scan)."""
    out = {}
    for pid in all_pids():
        st = read_stat(pid)
        if st and st[2] == ppid and st[0] == comm and st[1] not in ("Z", "X"):
            out[pid] = st[5]
    return out


def record_pids(path, pids):
    if not path:
        return
    with open(path, "a") as f:
        for pid, stt in pids.items():
            f.write(f"{pid} {stt}\n")


def median_of_readings(fn, n, interval):
    vals = []
    for i in range(n):
        if i:
            time.sleep(interval)
        vals.append(fn())
    return statistics.median(vals), vals


# ----------------------------------------------------------------------------- results file

def load_results(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def merge_results(path, new):
    data = load_results(path)
    data.update(new)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- baseline process

class Baseline:
    """A running spawn_baseline: started, watched from outside, stopped through its stdin."""

    def __init__(self, binary, count, cmd, comm, pids_file, timeout):
        self.count = count
        self.pids_file = pids_file
        watcher = ChildWatcher(comm)
        t0 = time.perf_counter_ns()
        self.proc = subprocess.Popen([binary, str(count), *cmd], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        watcher.ppid = self.proc.pid
        try:
            t1 = watcher.wait(count, time.monotonic() + timeout) if count else time.perf_counter_ns()
        except BaseException:
            self.kill()
            raise
        self.start_ns = t1 - t0
        self.first_ns = (watcher.first_ns or t1) - t0
        self.pids = watcher.found
        record_pids(pids_file, self.pids)
        line = self.proc.stdout.readline().split()
        self.internal_ns = int(line[1]) if len(line) == 2 and line[0] == "ready" else None
        # Its whole life so far is the spawn loop (it now blocks on stdin).
        self.sched = schedstat_ns(self.proc.pid)

    def stop(self, timeout):
        """Asks it to SIGTERM + reap its children and exit; returns ns until it has exited."""
        t0 = time.perf_counter_ns()
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=timeout)
        t1 = time.perf_counter_ns()
        self.proc.stdout.close()
        self.proc.stdin.close()
        return t1 - t0

    def kill(self):
        """Emergency cleanup: EOF on stdin makes it stop its children; SIGKILL if it hangs."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


# ----------------------------------------------------------------------------- pm3 helpers

def pm3_env(home):
    env = dict(os.environ)
    env["PM3_HOME"] = home
    return env


def run_pm3(args, a, timeout=60, check=True):
    r = subprocess.run([a.pm3, *args], env=pm3_env(a.home), stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"pm3 {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def daemon_pid(home):
    with open(os.path.join(home, "pm3.pid")) as f:
        return int(f.read().strip())


@dataclasses.dataclass
class StartRun:
    all_ns: int    # launch -> `count` live exec'd children (the figure)
    cmd_ns: int    # launch -> `pm3 start` returned
    first_ns: int  # launch -> first child seen
    pids: dict     # pid -> starttime
    cpu_ns: int    # daemon on-CPU time meanwhile
    wait_ns: int   # daemon run-queue wait meanwhile


def pm3_start_timed(a, dpid):
    """Launch `pm3 start` and time it (see StartRun)."""
    leftover = live_children(dpid, a.comm)
    if leftover:
        raise RuntimeError(f"{len(leftover)} children of the daemon still alive before start")
    watcher = ChildWatcher(a.comm)
    watcher.ppid = dpid
    sched0 = schedstat_ns(dpid)
    t0 = time.perf_counter_ns()
    proc = subprocess.Popen([a.pm3, "-c", a.config, "start"], env=pm3_env(a.home),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        t1 = watcher.wait(a.count, time.monotonic() + a.timeout)
    finally:
        # Bounded: the command itself returns once every instance is spawned.
        _, err = proc.communicate(timeout=a.timeout)
    t_ret = time.perf_counter_ns()
    sched1 = schedstat_ns(dpid)
    if proc.returncode != 0:
        raise RuntimeError(f"pm3 start failed ({proc.returncode}): {err.strip()}")
    # The figure is t1 (all pids live, seen from /proc); t_ret (the command returned) is kept
    # for information.
    record_pids(a.pids_file, watcher.found)
    return StartRun(all_ns=t1 - t0, cmd_ns=t_ret - t0, first_ns=watcher.first_ns - t0,
                    pids=watcher.found, cpu_ns=sched1[0] - sched0[0], wait_ns=sched1[1] - sched0[1])


def check_gone(pids, timeout):
    """Right after a stop: how many are still alive / zombies, and ns until all gone."""
    states = [same_process_alive(p, s) for p, s in pids.items()]
    alive = states.count("alive")
    zombie = states.count("zombie")
    t0 = time.perf_counter_ns()
    deadline = time.monotonic() + timeout
    remaining = dict(pids)
    while remaining:
        remaining = {p: s for p, s in remaining.items() if same_process_alive(p, s) != "gone"}
        if not remaining:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(remaining)} processes still present {timeout}s after stop")
        time.sleep(0.0005)
    return alive, zombie, time.perf_counter_ns() - t0


# ----------------------------------------------------------------------------- subcommands

def cmd_resources(a):
    """Figures 3 and 4. Expects the daemon started idle (0 instances) by the caller."""
    dpid = a.daemon_pid
    res = {}
    time.sleep(a.settle)
    res["rss_idle_pm3_kib"], res["rss_idle_pm3_readings"] = median_of_readings(
        lambda: vmrss_kib(dpid), a.readings, a.interval)
    res["rss_idle_pm3_anon_kib"], res["rss_idle_pm3_file_kib"] = rss_split_kib(dpid)

    b0 = Baseline(a.baseline, 0, [], a.comm, a.pids_file, a.timeout)
    try:
        time.sleep(a.settle)
        res["rss_idle_base_kib"], _ = median_of_readings(
            lambda: vmrss_kib(b0.proc.pid), a.readings, a.interval)
    finally:
        b0.kill()

    first = pm3_start_timed(a, dpid)
    res["start_pm3_fresh_ns"], pids = first.all_ns, first.pids
    b = Baseline(a.baseline, a.count, a.cmd, a.comm, a.pids_file, a.timeout)
    try:
        time.sleep(a.settle)
        res["rss_busy_pm3_kib"], res["rss_busy_pm3_readings"] = median_of_readings(
            lambda: vmrss_kib(dpid), a.readings, a.interval)
        res["rss_busy_pm3_anon_kib"], res["rss_busy_pm3_file_kib"] = rss_split_kib(dpid)
        res["rss_busy_base_kib"], _ = median_of_readings(
            lambda: vmrss_kib(b.proc.pid), a.readings, a.interval)

        # Figure 4: nothing talks to either process during the window.
        p0, q0 = cpu_ticks(dpid), cpu_ticks(b.proc.pid)
        w0 = time.perf_counter_ns()
        time.sleep(a.seconds)
        p1, q1 = cpu_ticks(dpid), cpu_ticks(b.proc.pid)
        w1 = time.perf_counter_ns()
        res["cpu_idle_pm3_ms"] = (p1 - p0) * 1000 / a.clk_tck
        res["cpu_idle_base_ms"] = (q1 - q0) * 1000 / a.clk_tck
        res["cpu_idle_window_s"] = (w1 - w0) / 1e9
        res["cpu_clk_tck"] = a.clk_tck
        still = sum(1 for p, s in pids.items() if same_process_alive(p, s) == "alive")
        res["busy_instances_alive_after_window"] = still
    finally:
        b.stop(a.timeout)
    merge_results(a.results, res)
    print(json.dumps({k: v for k, v in res.items() if not k.endswith("readings")}))


def cmd_rss(a):
    med, vals = median_of_readings(lambda: vmrss_kib(a.pid), a.readings, a.interval)
    merge_results(a.results, {a.key: med, a.key + "_readings": vals})
    print(f"{a.key}: {med} KiB {vals}")


def cmd_startstop(a):
    """Figures 2 and 5: alternate pm3 and baseline, swapping the order every pair so a slow
    drift of the machine hits both. The first pair is a warm-up and is not kept."""
    dpid = daemon_pid(a.home)
    rows = {"start_pm3": [], "start_pm3_cmd": [], "start_pm3_first": [],
            "start_pm3_daemon_cpu": [], "start_pm3_daemon_wait": [],
            "start_base": [], "start_base_internal": [], "start_base_first": [],
            "start_base_cpu": [], "start_base_wait": [],
            "stop_pm3": [], "stop_pm3_gone": [], "stop_base": [],
            "stop_pm3_alive_after": [], "stop_pm3_zombie_after": [], "stop_base_alive_after": []}

    def one_pm3(keep):
        st = pm3_start_timed(a, dpid)
        pids = st.pids
        time.sleep(a.settle)
        t0 = time.perf_counter_ns()
        r = subprocess.run([a.pm3, "stop", "all"], env=pm3_env(a.home), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, timeout=a.timeout)
        t1 = time.perf_counter_ns()
        if r.returncode != 0:
            raise RuntimeError(f"pm3 stop all failed ({r.returncode}): {r.stderr.strip()}")
        alive, zombie, extra_ns = check_gone(pids, a.timeout)
        if keep:
            rows["start_pm3"].append(st.all_ns)
            rows["start_pm3_cmd"].append(st.cmd_ns)
            rows["start_pm3_first"].append(st.first_ns)
            rows["start_pm3_daemon_cpu"].append(st.cpu_ns)
            rows["start_pm3_daemon_wait"].append(st.wait_ns)
            rows["stop_pm3"].append(t1 - t0)
            rows["stop_pm3_gone"].append(t1 - t0 + extra_ns)
            rows["stop_pm3_alive_after"].append(alive)
            rows["stop_pm3_zombie_after"].append(zombie)
        time.sleep(a.settle)

    def one_base(keep):
        b = Baseline(a.baseline, a.count, a.cmd, a.comm, a.pids_file, a.timeout)
        try:
            time.sleep(a.settle)
            stop_ns = b.stop(a.timeout)
        finally:
            b.kill()
        alive, _, _ = check_gone(b.pids, a.timeout)
        if keep:
            rows["start_base"].append(b.start_ns)
            rows["start_base_internal"].append(b.internal_ns)
            rows["start_base_first"].append(b.first_ns)
            rows["start_base_cpu"].append(b.sched[0])
            rows["start_base_wait"].append(b.sched[1])
            rows["stop_base"].append(stop_ns)
            rows["stop_base_alive_after"].append(alive)
        time.sleep(a.settle)

    for i in range(a.runs + 1):
        keep = i > 0
        order = (one_pm3, one_base) if i % 2 == 0 else (one_base, one_pm3)
        for f in order:
            f(keep)
        if keep:
            print(f"  run {i:2d}/{a.runs}: start pm3 {rows['start_pm3'][-1] / NS_PER_MS:7.2f} ms"
                  f"  base {rows['start_base'][-1] / NS_PER_MS:7.2f} ms |"
                  f" stop pm3 {rows['stop_pm3'][-1] / NS_PER_MS:7.2f} ms"
                  f"  base {rows['stop_base'][-1] / NS_PER_MS:7.2f} ms", flush=True)

    res = {k + "_ns": v for k, v in rows.items()}
    med = lambda k: statistics.median(rows[k]) / NS_PER_MS
    res.update({
        "start_pm3_ms": med("start_pm3"), "start_pm3_cmd_ms": med("start_pm3_cmd"),
        "start_base_ms": med("start_base"), "start_base_internal_ms": med("start_base_internal"),
        "start_pm3_first_ms": med("start_pm3_first"), "start_base_first_ms": med("start_base_first"),
        "start_pm3_daemon_cpu_ms": med("start_pm3_daemon_cpu"),
        "start_pm3_daemon_wait_ms": med("start_pm3_daemon_wait"),
        "start_base_cpu_ms": med("start_base_cpu"), "start_base_wait_ms": med("start_base_wait"),
        "stop_pm3_ms": med("stop_pm3"), "stop_pm3_gone_ms": med("stop_pm3_gone"),
        "stop_base_ms": med("stop_base"),
        "stop_pm3_runs_with_alive": sum(1 for x in rows["stop_pm3_alive_after"] if x),
        "stop_pm3_runs_with_zombies": sum(1 for x in rows["stop_pm3_zombie_after"] if x),
        "startstop_runs": a.runs, "count": a.count,
    })
    merge_results(a.results, res)


def cmd_hyperfine(a):
    with open(a.json) as f:
        data = json.load(f)["results"]
    by_cmd = {r["command"]: r for r in data}
    pm3 = next(r for c, r in by_cmd.items() if "pm3" in c)
    base = next(r for c, r in by_cmd.items() if "pm3" not in c)
    merge_results(a.results, {
        "list_pm3_ms": pm3["median"] * 1000, "list_base_ms": base["median"] * 1000,
        "list_pm3_mean_ms": pm3["mean"] * 1000, "list_base_mean_ms": base["mean"] * 1000,
        "list_runs": len(pm3["times"]),
    })


def cmd_report(a):
    r = load_results(a.results)
    mib = lambda k: r[k] / 1024

    def row(fig, pm3, base, unit, target, ok, ratio=True, fmt="{:.2f}"):
        ratio_s = f"{pm3 / base:.2f}×" if ratio and base else "–"
        return (f"| {fig} | {fmt.format(pm3)} {unit} | {fmt.format(base)} {unit} | {ratio_s} | "
                f"{target} | {'pass' if ok else '**miss**'} |")

    lines = [
        "| Figure | pm3 median | baseline median | ratio | target | result |",
        "|---|---|---|---|---|---|",
    ]
    n = r.get("count", 100)
    if "list_pm3_ms" in r:
        q = r["list_pm3_ms"] / r["list_base_ms"]
        lines.append(row(f"1. `pm3 list --json`, {n} instances (baseline `/bin/true`; {r['list_runs']} runs)",
                         r["list_pm3_ms"], r["list_base_ms"], "ms", "≤ 1.6×", q <= 1.6))
    if "start_pm3_ms" in r:
        q = r["start_pm3_ms"] / r["start_base_ms"]
        lines.append(row(f"2. start {n} until {n} pids live (baseline spawn_baseline; {r['startstop_runs']} runs each)",
                         r["start_pm3_ms"], r["start_base_ms"], "ms", "≤ 1.5×", q <= 1.5))
    if "rss_idle_pm3_kib" in r:
        lines.append(row("3a. daemon RSS idle, 0 instances (baseline: spawn_baseline, 0 children)",
                         mib("rss_idle_pm3_kib"), mib("rss_idle_base_kib"), "MiB", "≤ 4 MiB",
                         mib("rss_idle_pm3_kib") <= 4))
        lines.append(row(f"3b. daemon RSS, {n} instances (baseline: spawn_baseline holding {n})",
                         mib("rss_busy_pm3_kib"), mib("rss_busy_base_kib"), "MiB", "≤ 6 MiB",
                         mib("rss_busy_pm3_kib") <= 6))
    if "cpu_idle_pm3_ms" in r:
        lines.append(row(f"4. daemon CPU over {r['cpu_idle_window_s']:.0f} s idle, {n} instances (baseline: spawn_baseline)",
                         r["cpu_idle_pm3_ms"], r["cpu_idle_base_ms"], "ms", "0 ms",
                         r["cpu_idle_pm3_ms"] == 0, ratio=False, fmt="{:.0f}"))
    if "stop_pm3_ms" in r:
        ok = r["stop_pm3_ms"] <= 25 and r["stop_pm3_runs_with_alive"] == 0
        lines.append(row(f"5. `pm3 stop all`, {n} instances, until all gone (baseline: SIGTERM + reap; {r['startstop_runs']} runs each)",
                         r["stop_pm3_ms"], r["stop_base_ms"], "ms", "≤ 25 ms, 0 left", ok))

    notes = []
    if "start_pm3_cmd_ms" in r:
        notes.append(f"- start of {n}: first pid live after {r['start_pm3_first_ms']:.2f} ms with pm3, "
                     f"{r['start_base_first_ms']:.2f} ms with the baseline; the `pm3 start` command returned "
                     f"after {r['start_pm3_cmd_ms']:.2f} ms; spawn_baseline's own spawn loop took "
                     f"{r['start_base_internal_ms']:.2f} ms (medians).")
    if "start_pm3_daemon_cpu_ms" in r:
        notes.append(f"- start of {n}, scheduler view (/proc/<pid>/task/*/schedstat, medians): the daemon ran "
                     f"{r['start_pm3_daemon_cpu_ms']:.1f} ms on a CPU and waited {r['start_pm3_daemon_wait_ms']:.1f} ms "
                     f"in the run queue; the baseline process ran {r['start_base_cpu_ms']:.1f} ms and waited "
                     f"{r['start_base_wait_ms']:.1f} ms. Children's own exec work is in neither.")
    if "start_pm3_fresh_ns" in r:
        notes.append(f"- first start of {n} on a fresh PM3_HOME (single run, before any stop/start churn of its pipes): "
                     f"{r['start_pm3_fresh_ns'] / NS_PER_MS:.2f} ms.")
    if "stop_pm3_ms" in r:
        notes.append(f"- after `pm3 stop all` returned: runs with a pid still alive "
                     f"{r['stop_pm3_runs_with_alive']}/{r['startstop_runs']}, with a zombie "
                     f"{r['stop_pm3_runs_with_zombies']}/{r['startstop_runs']}; "
                     f"median until every pid gone {r['stop_pm3_gone_ms']:.2f} ms.")
    if "rss_idle_pm3_anon_kib" in r:
        notes.append(f"- daemon RSS split (RssAnon private + RssFile mapped binary/libc pages): idle "
                     f"{mib('rss_idle_pm3_anon_kib'):.2f} + {mib('rss_idle_pm3_file_kib'):.2f} MiB, "
                     f"{n} instances {mib('rss_busy_pm3_anon_kib'):.2f} + {mib('rss_busy_pm3_file_kib'):.2f} MiB.")
    if "rss_after_list_kib" in r:
        notes.append(f"- daemon RSS after the `pm3 list` runs: {mib('rss_after_list_kib'):.2f} MiB; "
                     f"after all start/stop cycles: {mib('rss_after_cycles_kib'):.2f} MiB"
                     if "rss_after_cycles_kib" in r else
                     f"- daemon RSS after the `pm3 list` runs: {mib('rss_after_list_kib'):.2f} MiB")
    if "busy_instances_alive_after_window" in r:
        notes.append(f"- instances alive at the end of the CPU window: {r['busy_instances_alive_after_window']}/{n}")
    if "machine" in r:
        notes.append(f"- machine: {r['machine']}")

    text = "\n".join(lines) + ("\n\n" + "\n".join(notes) if notes else "") + "\n"
    if a.header:
        text = a.header + "\n\n" + text
    emit(text, a.out)


def emit(text, out):
    """Prints a results table, and writes it to `out` too when one is given."""
    sys.stdout.write(text)
    if out:
        with open(out, "w") as f:
            f.write(text)


def cmd_cleanup(a):
    """Kill the recorded processes that still exist as the same process (pid + start time)."""
    try:
        with open(a.pids_file) as f:
            entries = {}
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    entries[int(parts[0])] = int(parts[1])
    except FileNotFoundError:
        return
    left = {p: s for p, s in entries.items() if same_process_alive(p, s) == "alive"}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, stt in left.items():
            if same_process_alive(pid, stt) == "alive":
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and any(
                same_process_alive(p, s) == "alive" for p, s in left.items()):
            time.sleep(0.01)
    if left:
        print(f"cleanup: killed {len(left)} leftover process(es)", file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="sub", required=True)

    def common(s, pm3=True):
        s.add_argument("--results", required=True)
        if pm3:
            s.add_argument("--pm3", required=True)
            s.add_argument("--home", required=True)
            s.add_argument("--config", required=True)
            s.add_argument("--baseline", required=True)
            s.add_argument("--count", type=int, default=100)
            s.add_argument("--comm", default="sleep", help="comm of the exec'd children")
            s.add_argument("--pids-file")
            s.add_argument("--timeout", type=float, default=30)
            s.add_argument("--settle", type=float, default=0.3)
            s.add_argument("cmd", nargs="+", help="command the baseline runs, e.g. sleep 100000")

    s = sub.add_parser("resources")
    common(s)
    s.add_argument("--daemon-pid", type=int, required=True)
    s.add_argument("--readings", type=int, default=5)
    s.add_argument("--interval", type=float, default=0.2)
    s.add_argument("--seconds", type=float, default=10)
    s.add_argument("--clk-tck", type=int, required=True)
    s.set_defaults(fn=cmd_resources)

    s = sub.add_parser("rss")
    common(s, pm3=False)
    s.add_argument("--pid", type=int, required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--readings", type=int, default=5)
    s.add_argument("--interval", type=float, default=0.2)
    s.set_defaults(fn=cmd_rss)

    s = sub.add_parser("startstop")
    common(s)
    s.add_argument("--runs", type=int, default=15)
    s.set_defaults(fn=cmd_startstop)

    s = sub.add_parser("hyperfine")
    common(s, pm3=False)
    s.add_argument("--json", required=True)
    s.set_defaults(fn=cmd_hyperfine)

    s = sub.add_parser("report")
    common(s, pm3=False)
    s.add_argument("--out")
    s.add_argument("--header")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("set")
    common(s, pm3=False)
    s.add_argument("key")
    s.add_argument("value")
    s.set_defaults(fn=lambda a: merge_results(a.results, {a.key: a.value}))

    s = sub.add_parser("cleanup")
    s.add_argument("--pids-file", required=True)
    s.set_defaults(fn=cmd_cleanup)

    a = p.parse_args()
    # SIGTERM (e.g. from run.sh's process group being stopped) unwinds through the `finally`
    # blocks, so running baselines are told to stop their children.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    a.fn(a)


if __name__ == "__main__":
    main()
