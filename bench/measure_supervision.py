#!/usr/bin/env python3
"""Timing and /proc helpers for bench/supervision.sh (crash-to-respawn latency, daemon CPU with
health checks and memory limits). Reuses the /proc, results-file and cleanup helpers of
measure.py; results are merged into a JSON file and `report` turns it into the markdown table.
Every wait is bounded by a deadline.

Subcommands:
  freeports  print a base port B such that B .. B+count-1 are free on 127.0.0.1
  respawn    figure 1a: SIGKILL the managed process, time until its replacement has exec'd;
             pm3 and respawn_baseline alternately
  cpu        figure 1b: daemon CPU over idle windows with N instances with and without
             health checks + max_memory, alternately
  report     print the markdown table (and write it with --out)
"""

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import measure as m  # noqa: E402  (bench/measure.py: /proc helpers, results file, cleanup)

NS_PER_MS = 1_000_000


# ----------------------------------------------------------------------------- helpers

def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[:-1]
    except (FileNotFoundError, ProcessLookupError):
        return None


def ctx_switches(pid):
    """(voluntary, involuntary) context switches summed over the threads of pid."""
    vol = invol = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return 0, 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        invol += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return vol, invol


def pm3_list(a):
    r = subprocess.run([a.pm3, "list", "--json"], env=m.pm3_env(a.home), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"pm3 list --json failed ({r.returncode}): {r.stderr.strip()}")
    return json.loads(r.stdout)


def rows_of(a, process):
    return [r for r in pm3_list(a) if r.get("process") == process]


def wait_rows(a, process, count, status, timeout, poll_s=0.2):
    """Polls `pm3 list --json` (bounded) until `count` rows of `process` have `status`."""
    deadline = time.monotonic() + timeout
    while True:
        rows = rows_of(a, process)
        ok = [r for r in rows if r["status"] == status and (status != "online" or r["pid"])]
        if len(ok) >= count:
            return rows
        if time.monotonic() > deadline:
            seen = {}
            for r in rows:
                seen[r["status"]] = seen.get(r["status"], 0) + 1
            raise TimeoutError(f"{process}: {len(ok)}/{count} {status} after {timeout}s ({seen})")
        time.sleep(poll_s)


def expected_argv(cmd):
    return [c.encode() for c in cmd]


def runs_cmd(pid, argv):
    """True if pid's command line is argv (argv[0] compared by basename: a PATH lookup may have
    put the full path there)."""
    got = cmdline(pid)
    return (got is not None and len(got) == len(argv) and got[1:] == argv[1:]
            and os.path.basename(got[0]) == os.path.basename(argv[0]))


# ----------------------------------------------------------------------------- freeports

def cmd_freeports(a):
    """A base port whose whole range binds now (a hint: nothing reserves it afterwards)."""
    rng = random.Random()
    for _ in range(100):
        base = rng.randrange(a.low, a.high - a.count)
        socks = []
        try:
            for p in range(base, base + a.count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            print(base)
            return
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    sys.exit("freeports: no free range found in 100 tries")


# ----------------------------------------------------------------------------- respawn

class Side:
    """One supervisor (the pm3 daemon or respawn_baseline) and its current child."""

    def __init__(self, label, ppid, comm, argv):
        self.label = label
        self.ppid = ppid
        self.comm = comm
        self.argv = argv
        self.pid = None
        self.seen_ns = None  # perf_counter_ns when the current child was first seen exec'd

    def find_initial(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            kids = {p: s for p, s in m.live_children(self.ppid, self.comm).items()
                    if runs_cmd(p, self.argv)}
            if len(kids) == 1:
                self.pid = next(iter(kids))
                self.seen_ns = time.perf_counter_ns()
                return {self.pid: kids[self.pid]}
            if len(kids) > 1:
                raise RuntimeError(f"{self.label}: {len(kids)} children run the command, expected 1")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.label}: no child of {self.ppid} runs the command")
            time.sleep(0.01)

    def crash(self, timeout, poll_s=0.0):
        """SIGKILL the current child; returns (latency ns, scans, sched delta (cpu, wait) ns)."""
        watcher = m.ChildWatcher(self.comm)  # snapshot of /proc taken before the kill
        watcher.ppid = self.ppid
        old = self.pid
        sched0 = m.schedstat_ns(self.ppid)
        scans = 0
        deadline = time.monotonic() + timeout
        t0 = time.perf_counter_ns()
        os.kill(old, signal.SIGKILL)
        while True:
            scans += 1
            if watcher.scan():
                t1 = time.perf_counter_ns()
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.label}: no new child {timeout}s after SIGKILL of {old}")
            if poll_s:
                time.sleep(poll_s)
        sched1 = m.schedstat_ns(self.ppid)
        if len(watcher.found) != 1:
            raise RuntimeError(f"{self.label}: {len(watcher.found)} new children after one crash")
        new = next(iter(watcher.found))
        # comm changes early in execve, the new command line is in place a little later: look
        # again for a while (outside the timing) before calling it a stranger.
        settle = time.monotonic() + 0.5
        while not runs_cmd(new, self.argv) and time.monotonic() < settle:
            time.sleep(0.001)
        if not runs_cmd(new, self.argv):
            raise RuntimeError(f"{self.label}: new child {new} runs {cmdline(new)}, expected {self.argv}")
        if new == old:
            raise RuntimeError(f"{self.label}: pid {old} reused at once")
        self.pid, self.seen_ns = new, t1
        return t1 - t0, scans, (sched1[0] - sched0[0], sched1[1] - sched0[1]), watcher.found


def cmd_respawn(a):
    argv = expected_argv(a.cmd)
    comm = os.path.basename(a.cmd[0])[:15]
    dpid = m.daemon_pid(a.home)
    m.run_pm3(["-c", a.config, "start"], a, timeout=a.timeout)
    pm3 = Side("pm3", dpid, comm, argv)
    m.record_pids(a.pids_file, pm3.find_initial(a.timeout))

    proc = subprocess.Popen([a.baseline, *a.cmd], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        m.record_pids(a.pids_file, {proc.pid: m.start_time(proc.pid)})
        base = Side("respawn_baseline", proc.pid, comm, argv)
        m.record_pids(a.pids_file, base.find_initial(a.timeout))

        rows = {"respawn_pm3": [], "respawn_base": [], "respawn_pm3_scans": [],
                "respawn_base_scans": [], "respawn_pm3_daemon_cpu": [], "respawn_pm3_daemon_wait": [],
                "respawn_base_cpu": [], "respawn_base_wait": []}
        for i in range(a.runs + 1):
            keep = i > 0  # the first pair is a warm-up
            order = (pm3, base) if i % 2 == 0 else (base, pm3)
            # Both current children must have run past min_uptime (seen_ns is after their exec,
            # so this is a lower bound of their uptime).
            up_until = max(pm3.seen_ns, base.seen_ns) + int(a.min_up * 1e9)
            wait_s = (up_until - time.perf_counter_ns()) / 1e9
            if wait_s > 0:
                time.sleep(wait_s)
            for side in order:
                ns, scans, (cpu, wait), found = side.crash(a.timeout, a.poll_sleep)
                m.record_pids(a.pids_file, found)
                key = "pm3" if side is pm3 else "base"
                if keep:
                    rows[f"respawn_{key}"].append(ns)
                    rows[f"respawn_{key}_scans"].append(scans)
                    rows[f"respawn_pm3_daemon_cpu" if key == "pm3" else "respawn_base_cpu"].append(cpu)
                    rows[f"respawn_pm3_daemon_wait" if key == "pm3" else "respawn_base_wait"].append(wait)
            if keep:
                print(f"  run {i:2d}/{a.runs}: respawn pm3 {rows['respawn_pm3'][-1] / NS_PER_MS:6.2f} ms"
                      f"  base {rows['respawn_base'][-1] / NS_PER_MS:6.2f} ms", flush=True)

        # pm3's own account: one restart per kill, online, no backoff.
        time.sleep(0.2)
        prow = rows_of(a, a.process)
        res = {k + "_ns": v for k, v in rows.items() if not k.endswith("scans")}
        med = lambda k: statistics.median(rows[k]) / NS_PER_MS
        res.update({
            "respawn_pm3_ms": med("respawn_pm3"), "respawn_base_ms": med("respawn_base"),
            "respawn_pm3_min_ms": min(rows["respawn_pm3"]) / NS_PER_MS,
            "respawn_pm3_max_ms": max(rows["respawn_pm3"]) / NS_PER_MS,
            "respawn_base_min_ms": min(rows["respawn_base"]) / NS_PER_MS,
            "respawn_base_max_ms": max(rows["respawn_base"]) / NS_PER_MS,
            "respawn_pm3_daemon_cpu_ms": med("respawn_pm3_daemon_cpu"),
            "respawn_pm3_daemon_wait_ms": med("respawn_pm3_daemon_wait"),
            "respawn_base_cpu_ms": med("respawn_base_cpu"), "respawn_base_wait_ms": med("respawn_base_wait"),
            "respawn_scans_median": statistics.median(rows["respawn_pm3_scans"] + rows["respawn_base_scans"]),
            "respawn_runs": a.runs, "respawn_poll_sleep_us": a.poll_sleep * 1e6,
            "respawn_kills": a.runs + 1,
            "respawn_pm3_restarts": prow[0]["restarts"] if len(prow) == 1 else None,
            "respawn_pm3_status": prow[0]["status"] if len(prow) == 1 else None,
            "respawn_cmd": " ".join(a.cmd),
        })
        # Resolution of the poll: how long one /proc scan takes here.
        w = m.ChildWatcher(comm)
        w.ppid = dpid
        t0 = time.perf_counter_ns()
        for _ in range(200):
            w.scan()
        res["respawn_scan_us"] = (time.perf_counter_ns() - t0) / 200 / 1000
        t0 = time.perf_counter_ns()
        for _ in range(200):
            if a.poll_sleep:
                time.sleep(a.poll_sleep)
        res["respawn_poll_sleep_real_us"] = (time.perf_counter_ns() - t0) / 200 / 1000
        res["respawn_proc_pids"] = len(m.all_pids())
        m.merge_results(a.results, res)
    finally:
        if proc.poll() is None:
            try:
                proc.stdin.write(b"stop\n")
                proc.stdin.close()
                proc.wait(timeout=a.timeout)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait(timeout=5)
    m.run_pm3(["stop", "all"], a, timeout=a.timeout)


# ----------------------------------------------------------------------------- cpu

def cmd_cpu(a):
    """Alternating idle windows: `plain` (no checks/limits) and `checked` (health_check +
    max_memory), each started fresh, all online, then nothing talks to the daemon."""
    dpid = m.daemon_pid(a.home)
    configs = {"plain": a.config_plain, "checked": a.config_checked}
    out = {k: {"cpu_ms": [], "sched_ms": [], "vol_cs": [], "online_s": [], "alive_after": [],
               "restarts_after": [], "online_after": []} for k in configs}
    for rep in range(a.reps):
        order = ("checked", "plain") if rep % 2 == 0 else ("plain", "checked")
        for kind in order:
            t0 = time.monotonic()
            m.run_pm3(["-c", configs[kind], "start"], a, timeout=a.timeout)
            rows = wait_rows(a, kind, a.count, "online", a.timeout)
            online_s = time.monotonic() - t0
            pids = {r["pid"]: m.start_time(r["pid"]) for r in rows if r["pid"]}
            m.record_pids(a.pids_file, pids)
            time.sleep(a.settle)

            t0c, s0, c0 = m.cpu_ticks(dpid), m.schedstat_ns(dpid)[0], ctx_switches(dpid)[0]
            w0 = time.perf_counter_ns()
            time.sleep(a.seconds)
            t1c, s1, c1 = m.cpu_ticks(dpid), m.schedstat_ns(dpid)[0], ctx_switches(dpid)[0]
            w1 = time.perf_counter_ns()

            alive = sum(1 for p, s in pids.items() if m.same_process_alive(p, s) == "alive")
            after = rows_of(a, kind)
            o = out[kind]
            o["cpu_ms"].append((t1c - t0c) * 1000 / a.clk_tck)
            o["sched_ms"].append((s1 - s0) / NS_PER_MS)
            o["vol_cs"].append(c1 - c0)
            o["online_s"].append(online_s)
            o["alive_after"].append(alive)
            o["restarts_after"].append(sum(r["restarts"] for r in after))
            o["online_after"].append(sum(1 for r in after if r["status"] == "online"))
            print(f"  rep {rep + 1}/{a.reps} {kind:7s}: daemon CPU {o['cpu_ms'][-1]:5.0f} ms (ticks), "
                  f"{o['sched_ms'][-1]:7.2f} ms (schedstat), {o['vol_cs'][-1]:5d} wake-ups over "
                  f"{(w1 - w0) / 1e9:.1f} s; all online after {online_s:.2f} s; "
                  f"{alive}/{a.count} alive, {o['restarts_after'][-1]} restarts", flush=True)
            m.run_pm3(["stop", "all"], a, timeout=a.timeout)
            time.sleep(a.settle)

    res = {"cpu_count": a.count, "cpu_window_s": a.seconds, "cpu_reps": a.reps, "cpu_clk_tck": a.clk_tck}
    for kind, o in out.items():
        for k, v in o.items():
            res[f"cpu_{kind}_{k}"] = v
        res[f"cpu_{kind}_ms"] = statistics.median(o["cpu_ms"])
        res[f"cpu_{kind}_sched_ms_median"] = statistics.median(o["sched_ms"])
        res[f"cpu_{kind}_vol_cs_median"] = statistics.median(o["vol_cs"])
    m.merge_results(a.results, res)


# ----------------------------------------------------------------------------- report

def cmd_report(a):
    r = m.load_results(a.results)
    fmt_list = lambda v, f="{:.2f}": ", ".join(f.format(x) for x in v)

    def row(fig, pm3, base, unit, target, ok, ratio=True, fmt="{:.2f}"):
        base_s = "–" if base is None else f"{fmt.format(base)} {unit}"
        ratio_s = f"{pm3 / base:.2f}×" if ratio and base else "–"
        return (f"| {fig} | {fmt.format(pm3)} {unit} | {base_s} | {ratio_s} | "
                f"{target} | {'pass' if ok else '**miss**'} |")

    lines = [
        "| Figure | pm3 median | baseline median | ratio | target | result |",
        "|---|---|---|---|---|---|",
    ]
    notes = []
    if "respawn_pm3_ms" in r:
        ok = r["respawn_pm3_ms"] <= 3 and r["respawn_pm3_restarts"] == r["respawn_kills"]
        lines.append(row(f"1a. crash-to-respawn: SIGKILL after > 1.1 s up, until the new pid has exec'd "
                         f"(baseline: respawn_baseline, waitpid + spawn loop; {r['respawn_runs']} runs each)",
                         r["respawn_pm3_ms"], r["respawn_base_ms"], "ms", "≤ 3 ms", ok))
        notes.append(f"- respawn, all runs (ms): pm3 {fmt_list(x / NS_PER_MS for x in r['respawn_pm3_ns'])}; "
                     f"baseline {fmt_list(x / NS_PER_MS for x in r['respawn_base_ns'])}.")
        notes.append(f"- respawn, scheduler view (medians, /proc/<pid>/task/*/schedstat from the kill to the "
                     f"new pid seen): the daemon ran {r['respawn_pm3_daemon_cpu_ms']:.2f} ms on a CPU and waited "
                     f"{r['respawn_pm3_daemon_wait_ms']:.2f} ms in the run queue; respawn_baseline ran "
                     f"{r['respawn_base_cpu_ms']:.2f} ms and waited {r['respawn_base_wait_ms']:.2f} ms.")
        notes.append(f"- respawn: pm3 counted {r['respawn_pm3_restarts']} restarts for {r['respawn_kills']} kills "
                     f"(status `{r['respawn_pm3_status']}`); command `{r['respawn_cmd']}`, default "
                     f"`restart`/`min_uptime`/`restart_delay`. The poll scans /proc "
                     f"({r['respawn_scan_us']:.0f} µs per scan with {r['respawn_proc_pids']} pids on the host) and "
                     f"sleeps {r['respawn_poll_sleep_us']:.0f} µs between scans (really "
                     f"{r['respawn_poll_sleep_real_us']:.0f} µs; median {r['respawn_scans_median']:.0f} scans per "
                     f"respawn), so a figure is at most one scan and one sleep late, on both sides alike. "
                     f"A tight loop without the sleep takes one of the 2 CPUs and made both sides bimodal "
                     f"(~1 or ~3 ms).")
    if "cpu_checked_ms" in r:
        n = r["cpu_count"]
        w = r["cpu_window_s"]
        sc, sp = r["cpu_checked_sched_ms_median"], r["cpu_plain_sched_ms_median"]
        lines.append(f"| 1b. daemon CPU (utime+stime) over {w:.0f} s idle, {n} online instances with TCP health "
                     f"checks and `max_memory` (baseline: the same {n} without; median of {r['cpu_reps']} windows "
                     f"each; schedstat in brackets) | {r['cpu_checked_ms']:.0f} ms ({sc:.1f}) | "
                     f"{r['cpu_plain_ms']:.0f} ms ({sp:.1f}) | – | ≤ 20 ms | "
                     f"{'pass' if r['cpu_checked_ms'] <= 20 else '**miss**'} |")
        lines.append(f"| 1b'. daemon CPU over {w:.0f} s idle, {n} online instances without checks or limits "
                     f"(median of {r['cpu_reps']} windows) | {r['cpu_plain_ms']:.0f} ms ({sp:.1f}) | – | – | "
                     f"0 ms (as run.sh figure 4) | {'pass' if r['cpu_plain_ms'] == 0 else '**miss**'} |")
        for kind, label in (("checked", "with checks + limits"), ("plain", "without")):
            notes.append(f"- daemon CPU {label}, every window: {fmt_list(r[f'cpu_{kind}_cpu_ms'], '{:.0f}')} ms "
                         f"(utime+stime, {1000 // r['cpu_clk_tck']} ms ticks); on-CPU from schedstat "
                         f"{fmt_list(r[f'cpu_{kind}_sched_ms'])} ms; voluntary context switches (wake-ups) "
                         f"{fmt_list(r[f'cpu_{kind}_vol_cs'], '{:d}')}; all {n} online "
                         f"{fmt_list(r[f'cpu_{kind}_online_s'])} s after `pm3 start`; after each window "
                         f"{fmt_list(r[f'cpu_{kind}_online_after'], '{:d}')} online, restarts "
                         f"{fmt_list(r[f'cpu_{kind}_restarts_after'], '{:d}')}.")
    if "machine" in r:
        notes.append(f"- machine: {r['machine']}")

    text = "\n".join(lines) + ("\n\n" + "\n".join(notes) if notes else "") + "\n"
    if a.header:
        text = a.header + "\n\n" + text
    m.emit(text, a.out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="sub", required=True)

    def common(s):
        s.add_argument("--results", required=True)
        s.add_argument("--pm3", required=True)
        s.add_argument("--home", required=True)
        s.add_argument("--pids-file")
        s.add_argument("--timeout", type=float, default=30)

    s = sub.add_parser("freeports")
    s.add_argument("--count", type=int, default=100)
    s.add_argument("--low", type=int, default=20000)
    s.add_argument("--high", type=int, default=32000)  # below the usual ephemeral range
    s.set_defaults(fn=cmd_freeports)

    s = sub.add_parser("respawn")
    common(s)
    s.add_argument("--config", required=True, help="one process, one instance, running cmd")
    s.add_argument("--process", required=True, help="its name in the config")
    s.add_argument("--baseline", required=True)
    s.add_argument("--runs", type=int, default=10)
    s.add_argument("--min-up", type=float, default=1.1, help="seconds each child runs before its kill")
    s.add_argument("--poll-sleep", type=float, default=0.0001,
                   help="seconds between /proc scans after a kill (0: a tight loop, which on 2 CPUs "
                        "takes the CPU the supervisor needs and inflates both sides)")
    s.add_argument("cmd", nargs="+")
    s.set_defaults(fn=cmd_respawn)

    s = sub.add_parser("cpu")
    common(s)
    s.add_argument("--config-plain", required=True, help="process `plain`: count instances")
    s.add_argument("--config-checked", required=True, help="process `checked`: the same with checks")
    s.add_argument("--count", type=int, default=100)
    s.add_argument("--reps", type=int, default=3)
    s.add_argument("--seconds", type=float, default=10)
    s.add_argument("--settle", type=float, default=1.0)
    s.add_argument("--clk-tck", type=int, required=True)
    s.set_defaults(fn=cmd_cpu)

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
