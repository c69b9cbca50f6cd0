#!/usr/bin/env python3
"""pm3 next to its peers (pm2, supervisord) and the bare baselines, for bench/compare.sh.

Subcommands:
  run     every workload, each round running pm3, each installed peer and the baseline in
          rotating order; results merged into a JSON file
  report  the markdown table (bench/RESULTS.md)

Every wait has a deadline: a peer that does not get there in time is recorded as "timeout" and
its daemon is shut down, and the run goes on. Processes are found in /proc by their command line
(`sleep MARK`, a number unique to the run), never by name, and everything started is recorded for
the cleanup (pid + start time). The /proc, results-file and baseline helpers come from
measure.py, the log writer check from measure_logs.py.
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import measure as m  # noqa: E402
import measure_logs as ml  # noqa: E402

NS_PER_MS = 1_000_000
MIB = 1024


class Timeout(Exception):
    pass


# ----------------------------------------------------------------------------- finding children

class MarkedWatcher:
    """New live processes running exactly `sleep MARK`, whoever their parent is (a cold start
    does not know the daemon's pid in advance). Pids that existed before, or turned out to run
    something else once exec'd, are not read again."""

    def __init__(self, mark):
        self.mark = mark.encode()
        self.skip = m.all_pids()
        self.found = {}

    def scan(self):
        for pid in m.all_pids():
            if pid in self.skip or pid in self.found:
                continue
            st = m.read_stat(pid)
            if st is None:
                self.skip.add(pid)
                continue
            comm, state, _, _, _, stt = st
            if state in ("Z", "X"):
                continue
            if comm != "sleep":
                continue  # not exec'd yet (or something else): looked at again next scan
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            argv = cmd.split(b"\0")
            # pm2 runs the resolved path (/usr/bin/sleep)
            if argv[:-1] and argv[-1] == b"" and os.path.basename(argv[0]) == b"sleep" \
                    and argv[1:-1] == [self.mark]:
                self.found[pid] = stt
            elif os.path.basename(argv[0]) == b"sleep":
                self.skip.add(pid)  # another sleep (not ours)
            # else: exec changes comm before the new command line shows: looked at again
        return len(self.found)

    def wait(self, count, deadline, poll_s=0.0005):
        while self.scan() < count:
            if time.monotonic() > deadline:
                raise Timeout(f"{len(self.found)} of {count} processes after the deadline")
            time.sleep(poll_s)
        return time.perf_counter_ns()


def marked_alive(mark):
    w = MarkedWatcher(mark)
    w.skip = set()
    w.scan()
    return w.found


def wait_gone(pids, deadline):
    while True:
        left = {p: s for p, s in pids.items() if m.same_process_alive(p, s) != "gone"}
        if not left:
            return time.perf_counter_ns()
        if time.monotonic() > deadline:
            raise Timeout(f"{len(left)} processes still there after the deadline")
        time.sleep(0.0005)


def run(argv, env, timeout, check=True):
    try:
        r = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise Timeout(f"`{' '.join(argv[:3])}` still running after {timeout}s") from e
    if check and r.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` exited {r.returncode}: {r.stderr.strip()[-400:]}")
    return r


def timed(argv, env, timeout):
    t0 = time.perf_counter_ns()
    run(argv, env, timeout)
    return time.perf_counter_ns() - t0


# ----------------------------------------------------------------------------- the managers

class Manager:
    name = "?"
    has_json = True
    has_stamps = True

    def __init__(self, a, work):
        self.a = a
        self.dir = os.path.join(work, self.name)
        os.makedirs(self.dir, exist_ok=True)
        self.env = dict(os.environ)
        self.dpid = None

    def record(self, pids):
        m.record_pids(self.a.pids_file, pids)

    def record_daemon(self):
        self.dpid = self.daemon_pid()
        if self.dpid:
            self.record({self.dpid: m.start_time(self.dpid) or 0})
        return self.dpid


class Pm3(Manager):
    name = "pm3"

    def __init__(self, a, work):
        super().__init__(a, work)
        self.home = os.path.join(self.dir, "home")
        self.env = m.pm3_env(self.home)
        self.bin = a.pm3

    def version(self):
        return run([self.bin, "--version"], self.env, 10).stdout.strip()

    def daemon_pid(self):
        try:
            return m.daemon_pid(self.home)
        except (FileNotFoundError, ValueError):
            return None

    def config(self, n, mark, autostart=True):
        path = os.path.join(self.dir, f"sleep{n}.toml")
        with open(path, "w") as f:
            f.write(f'[s]\ncommand = "sleep {mark}"\ninstances = {n}\n')
        self.cfg = path

    def cold(self):
        return [self.bin, "-c", self.cfg, "start"]

    def warm(self):
        return [self.bin, "-c", self.cfg, "start"]

    def up(self):
        run([self.bin, "list"], self.env, self.a.timeout)
        return self.record_daemon()

    def lists(self):
        return {"table": [self.bin, "list"], "json": [self.bin, "list", "--json"]}

    def stop_all(self):
        return [self.bin, "stop", "all"]

    def unload(self):
        pass

    def down(self):
        if self.daemon_pid() is not None:
            run([self.bin, "kill"], self.env, self.a.timeout, check=False)
        self.dpid = None

    def crash_config(self, mark):
        self.config(1, mark)

    def log_config(self, name, writer_argv, out, err, stamped):
        path = os.path.join(self.dir, f"{name}.toml")
        with open(path, "w") as f:
            f.write(f'[{name}]\ncommand = "{" ".join(writer_argv)}"\nrestart = "never"\n'
                    f'log_max_size = "2G"\nlog_compress = false\n')
            if stamped:
                f.write('log_date_format = "%Y-%m-%dT%H:%M:%S%.3f"\n')
        self.cfg = path
        return os.path.join(self.home, "logs", f"{name}-out.log")


class Pm2(Manager):
    name = "pm2"

    def __init__(self, a, work):
        super().__init__(a, work)
        self.home = os.path.join(self.dir, "home")
        self.env["PM2_HOME"] = self.home
        self.env["PM2_DISABLE_VERSION_CHECK"] = "true"
        self.bin = a.pm2

    def version(self):
        return "pm2 " + run([self.bin, "--version"], self.env, 60).stdout.strip().splitlines()[-1]

    def daemon_pid(self):
        try:
            with open(os.path.join(self.home, "pm2.pid")) as f:
                pid = int(f.read().strip())
            return pid if m.read_stat(pid) else None
        except (FileNotFoundError, ValueError):
            return None

    def _eco(self, apps, name):
        path = os.path.join(self.dir, f"{name}.config.json")
        with open(path, "w") as f:
            json.dump({"apps": apps}, f)
        self.cfg = path

    def config(self, n, mark, autostart=True):
        self._eco([{"name": f"s{i}", "script": "sleep", "args": mark, "interpreter": "none",
                    "exec_mode": "fork", "autorestart": True} for i in range(n)], f"sleep{n}")

    def cold(self):
        return [self.bin, "start", self.cfg]

    def warm(self):
        return [self.bin, "start", self.cfg]

    def up(self):
        run([self.bin, "ping"], self.env, self.a.timeout)
        return self.record_daemon()

    def lists(self):
        return {"table": [self.bin, "ls"], "json": [self.bin, "jlist"]}

    def stop_all(self):
        return [self.bin, "stop", "all"]

    def unload(self):
        run([self.bin, "delete", "all"], self.env, self.a.timeout_big, check=False)

    def down(self):
        if self.daemon_pid() is not None:
            run([self.bin, "kill"], self.env, self.a.timeout_big, check=False)
        self.dpid = None

    def crash_config(self, mark):
        self.config(1, mark)

    def log_config(self, name, writer_argv, out, err, stamped):
        app = {"name": name, "script": writer_argv[0], "args": writer_argv[1:], "interpreter": "none",
               "exec_mode": "fork", "autorestart": False, "out_file": out, "error_file": err}
        if stamped:
            app["log_date_format"] = "YYYY-MM-DDTHH:mm:ss.SSS"
        self._eco([app], name)
        return out


class Supervisord(Manager):
    name = "supervisord"
    has_json = False
    has_stamps = False

    def __init__(self, a, work):
        super().__init__(a, work)
        self.bindir = a.supervisor_bin
        self.conf = os.path.join(self.dir, "supervisord.conf")
        self.programs = ""

    def version(self):
        return "supervisord " + run([os.path.join(self.bindir, "supervisord"), "--version"],
                                    self.env, 30).stdout.strip()

    def _write(self):
        d = self.dir
        os.makedirs(os.path.join(d, "childlogs"), exist_ok=True)
        with open(self.conf, "w") as f:
            f.write(f"""[unix_http_server]
file={d}/supervisor.sock

[supervisord]
logfile={d}/supervisord.log
pidfile={d}/supervisord.pid
childlogdir={d}/childlogs
minfds=8192
minprocs=200

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{d}/supervisor.sock
{self.programs}""")

    def ctl(self, *args):
        return [os.path.join(self.bindir, "supervisorctl"), "-c", self.conf, *args]

    def daemon_pid(self):
        try:
            with open(os.path.join(self.dir, "supervisord.pid")) as f:
                pid = int(f.read().strip())
            return pid if m.read_stat(pid) else None
        except (FileNotFoundError, ValueError):
            return None

    def config(self, n, mark, autostart=True):
        self.programs = f"""
[program:s]
command=sleep {mark}
numprocs={n}
process_name=%(program_name)s_%(process_num)d
autostart={'true' if autostart else 'false'}
autorestart=true
"""
        self._write()

    def cold(self):
        return [os.path.join(self.bindir, "supervisord"), "-c", self.conf]

    def warm(self):
        return self.ctl("start", "all")

    def up(self):
        """A daemon with the current programs not started."""
        self.programs = self.programs.replace("autostart=true", "autostart=false")
        self._write()
        run(self.cold(), self.env, self.a.timeout)
        deadline = time.monotonic() + self.a.timeout
        while not os.path.exists(os.path.join(self.dir, "supervisor.sock")) or self.daemon_pid() is None:
            if time.monotonic() > deadline:
                raise Timeout("supervisord did not come up")
            time.sleep(0.01)
        return self.record_daemon()

    def lists(self):
        return {"table": self.ctl("status"), "json": None}

    def stop_all(self):
        return self.ctl("stop", "all")

    def unload(self):
        pass

    def down(self):
        pid = self.daemon_pid()
        if pid is None:
            return
        stt = m.start_time(pid)
        run(self.ctl("shutdown"), self.env, self.a.timeout_big, check=False)
        deadline = time.monotonic() + self.a.timeout_big
        while m.same_process_alive(pid, stt) == "alive" and time.monotonic() < deadline:
            time.sleep(0.01)
        if m.same_process_alive(pid, stt) == "alive":
            os.kill(pid, signal.SIGKILL)
        self.dpid = None

    def crash_config(self, mark):
        self.config(1, mark)

    def log_config(self, name, writer_argv, out, err, stamped):
        self.programs = f"""
[program:{name}]
command={' '.join(writer_argv)}
autostart=true
autorestart=false
startsecs=0
stdout_logfile={out}
stdout_logfile_maxbytes=0
stderr_logfile={err}
stderr_logfile_maxbytes=0
"""
        self._write()
        return out


# ----------------------------------------------------------------------------- workloads

class Results:
    def __init__(self):
        self.v = {}

    def add(self, key, value):
        self.v.setdefault(key, []).append(value)


def rotate(items, i):
    k = i % len(items)
    return items[k:] + items[:k]


def bounded(res, key, fn):
    """Runs fn; a timeout is recorded as such (and re-raised as Timeout for the caller)."""
    try:
        return fn()
    except Timeout as e:
        print(f"    {key}: timeout ({e})", flush=True)
        res.add(key, "timeout")
        raise


def median_time(argv, env, runs, timeout):
    return statistics.median(timed(argv, env, timeout) for _ in range(runs))


def sleep_round(a, res, n, mgr, rnd, mark, is_baseline):
    """One round at n processes for one subject: cold start, stop, warm start, RSS, list, (idle
    CPU), stop."""
    big = n >= 1000
    deadline = lambda: time.monotonic() + (a.timeout_big if big else a.timeout)
    if is_baseline:
        b = m.Baseline(a.baseline, n, ["sleep", mark], "sleep", a.pids_file,
                       a.timeout_big if big else a.timeout)
        try:
            res.add(f"cold{n}/base", b.start_ns)
            time.sleep(a.settle)
            res.add(f"rss{n}/base", m.vmrss_kib(b.proc.pid))
            if n == 100 and rnd == 0:
                c0 = m.schedstat_ns(b.proc.pid)[0]
                time.sleep(a.idle_seconds)
                res.add("idlecpu/base", m.schedstat_ns(b.proc.pid)[0] - c0)
            res.add(f"list{n}/base", median_time(["/bin/true"], None, a.list_runs, a.timeout))
            res.add(f"stop{n}/base", b.stop(a.timeout_big))
        finally:
            b.kill()
        return
    name = mgr.name
    mgr.down()
    mgr.config(n, mark)
    # Cold start: no daemon; the start command brings it up.
    w = MarkedWatcher(mark)
    t0 = time.perf_counter_ns()
    proc = subprocess.Popen(mgr.cold(), env=mgr.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t1 = bounded(res, f"cold{n}/{name}", lambda: w.wait(n, deadline()))
        res.add(f"cold{n}/{name}", t1 - t0)
    finally:
        try:
            proc.wait(timeout=a.timeout_big)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        mgr.record(w.found)
        mgr.record_daemon()
    if mgr.dpid:
        # The daemon's whole life so far is the cold start: on-CPU and run-queue wait.
        res.add(f"schedcold{n}/{name}", list(m.schedstat_ns(mgr.dpid)))
    # Back to nothing running, daemon kept: stop (and for pm2, delete) outside the timing. A stop
    # that does not end in time counts as this count's stop figure (and the round ends here).
    bounded(res, f"stop{n}/{name}", lambda: run(mgr.stop_all(), mgr.env, a.timeout_big))
    bounded(res, f"stop{n}/{name}", lambda: wait_gone(w.found, deadline()))
    mgr.unload()
    time.sleep(a.settle)
    # Warm start.
    if isinstance(mgr, Supervisord):
        pass  # the daemon is up with the programs stopped: `start all`
    w = MarkedWatcher(mark)
    dpid = mgr.daemon_pid()
    sched0 = m.schedstat_ns(dpid) if dpid else None
    t0 = time.perf_counter_ns()
    proc = subprocess.Popen(mgr.warm(), env=mgr.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t1 = bounded(res, f"warm{n}/{name}", lambda: w.wait(n, deadline()))
        res.add(f"warm{n}/{name}", t1 - t0)
        if sched0:
            res.add(f"schedwarm{n}/{name}", [b - a_ for a_, b in zip(sched0, m.schedstat_ns(dpid))])
    finally:
        try:
            proc.wait(timeout=a.timeout_big)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        mgr.record(w.found)
    time.sleep(a.settle)
    dpid = mgr.daemon_pid()
    res.add(f"rss{n}/{name}", m.vmrss_kib(dpid))
    runs = max(3, a.list_runs // 2) if big else a.list_runs
    for kind, argv in mgr.lists().items():
        if argv is None:
            continue
        res.add(f"list{n}{'json' if kind == 'json' else ''}/{name}",
                median_time(argv, mgr.env, runs, a.timeout_big))
    if n == 100 and rnd == 0:
        c0 = m.schedstat_ns(dpid)[0]
        time.sleep(a.idle_seconds)
        res.add(f"idlecpu/{name}", m.schedstat_ns(dpid)[0] - c0)
    # Stop, timed until the command returned and every process is gone.
    sched0 = m.schedstat_ns(dpid)
    t0 = time.perf_counter_ns()
    bounded(res, f"stop{n}/{name}", lambda: run(mgr.stop_all(), mgr.env, a.timeout_big))
    t1 = wait_gone(w.found, deadline())
    res.add(f"stop{n}/{name}", t1 - t0)
    res.add(f"schedstop{n}/{name}", [b - a_ for a_, b in zip(sched0, m.schedstat_ns(dpid))])
    mgr.unload()
    mgr.down()


def rss0_round(a, res, mgr):
    mgr.down()
    mgr.config(1, "0")
    dpid = mgr.up()
    time.sleep(a.settle)
    res.add(f"rss0/{mgr.name}", m.median_of_readings(lambda: m.vmrss_kib(dpid), 3, 0.1)[0])
    mgr.down()


def crash_round(a, res, mgr, mark, kills):
    """SIGKILL of a process that has been up > 1.1 s, until its replacement has exec'd."""
    mgr.down()
    mgr.crash_config(mark)
    w = MarkedWatcher(mark)
    run(mgr.cold(), mgr.env, a.timeout)
    mgr.record_daemon()
    w.wait(1, time.monotonic() + a.timeout)
    mgr.record(w.found)
    try:
        for _ in range(kills):
            time.sleep(1.2)
            (pid,) = list(w.found)
            w = MarkedWatcher(mark)
            w.skip.discard(pid)
            w.skip.add(pid)
            t0 = time.perf_counter_ns()
            os.kill(pid, signal.SIGKILL)
            t1 = bounded(res, f"respawn/{mgr.name}", lambda: w.wait(1, time.monotonic() + 10, 0.0001))
            res.add(f"respawn/{mgr.name}", t1 - t0)
            mgr.record(w.found)
    finally:
        mgr.down()


def crash_base(a, res, mark, kills):
    w = MarkedWatcher(mark)
    proc = subprocess.Popen([a.respawn_baseline, "sleep", mark], stdin=subprocess.PIPE)
    m.record_pids(a.pids_file, {proc.pid: m.start_time(proc.pid) or 0})
    try:
        w.wait(1, time.monotonic() + a.timeout)
        for _ in range(kills):
            time.sleep(1.2)
            (pid,) = list(w.found)
            w = MarkedWatcher(mark)
            w.skip.add(pid)
            t0 = time.perf_counter_ns()
            os.kill(pid, signal.SIGKILL)
            res.add("respawn/base", w.wait(1, time.monotonic() + 10, 0.0001) - t0)
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


STAMP_RE = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}:? ")


def lost_bytes(path, stamped, lines):
    """0 if the log holds exactly what the writer wrote (stamps stripped), else the payload bytes
    missing (-1: none missing but the bytes differ)."""
    with open(path, "rb") as f:
        data = f.read()
    payload = STAMP_RE.sub(b"", data) if stamped else data
    want = ml.expected(lines)
    return 0 if payload == want else max(0, len(want) - len(payload)) or -1


def log_round(a, res, mgr, i, stamped):
    """The writer under a manager (fresh daemon), launch -> its last line is in the file."""
    kind = "dated" if stamped else "plain"
    name = f"w{kind}{i}"
    out = os.path.join(mgr.dir, f"{name}-out.log")
    err = os.path.join(mgr.dir, f"{name}-err.log")
    mgr.down()
    path = mgr.log_config(name, [a.writer, str(a.lines)], out, err, stamped)
    if isinstance(mgr, Supervisord):
        argv = mgr.cold()
    else:
        mgr.up()
        argv = mgr.cold()
    last = ml.expected(a.lines)[-ml.LINE:]
    size = a.lines * ml.LINE
    deadline = time.monotonic() + a.timeout
    t0 = time.perf_counter_ns()
    proc = subprocess.Popen(argv, env=mgr.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t1 = None
    try:
        while t1 is None:
            try:
                with open(path, "rb") as f:
                    sz = os.fstat(f.fileno()).st_size
                    if sz >= size and os.pread(f.fileno(), ml.LINE, sz - ml.LINE) == last:
                        t1 = time.perf_counter_ns()
                        break
            except FileNotFoundError:
                pass
            if time.monotonic() > deadline:
                raise Timeout("last line not in the log")
            time.sleep(0.0002)
        res.add(f"log{kind}/{mgr.name}", t1 - t0)
        res.add(f"loglost{kind}/{mgr.name}", lost_bytes(path, stamped, a.lines))
    except Timeout as e:
        print(f"    log{kind}/{mgr.name}: timeout ({e})", flush=True)
        res.add(f"log{kind}/{mgr.name}", "timeout")
    finally:
        try:
            proc.wait(timeout=a.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        mgr.down()
        if t1 is not None:
            # Once the daemon is gone: what was missing when the last line showed and is still
            # missing is lost; what arrived since was late.
            res.add(f"loglostfinal{kind}/{mgr.name}", lost_bytes(path, stamped, a.lines))
        for p in (out, err, path):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


def cmd_run(a):
    work = a.dir
    mgrs = [Pm3(a, work)]
    if a.pm2:
        mgrs.append(Pm2(a, work))
    if a.supervisor_bin:
        mgrs.append(Supervisord(a, work))
    res = Results()
    versions = {}
    for mg in mgrs:
        try:
            versions[mg.name] = mg.version()
        except Exception as e:  # a broken install is skipped, not fatal
            print(f"==> {mg.name}: cannot run ({e}); skipped", flush=True)
    mgrs = [mg for mg in mgrs if mg.name in versions]
    subjects = ["base"] + [mg.name for mg in mgrs]
    by_name = {mg.name: mg for mg in mgrs}
    mark_n = [int(a.mark_base)]

    def mark():
        mark_n[0] += 1
        return str(mark_n[0])

    def attempt(label, fn):
        try:
            fn()
        except Timeout as e:
            print(f"    {label}: timeout ({e}); the rest of this step is skipped", flush=True)
        except Exception as e:
            print(f"    {label}: failed: {e}", flush=True)
            res.add(f"error/{label}", str(e)[:300])
        for mg in mgrs:
            try:
                mg.down()
            except Exception:
                pass

    t_start = time.monotonic()
    for mg in mgrs:
        attempt(f"rss0 {mg.name}", lambda mg=mg: rss0_round(a, res, mg))
    for n in a.counts:
        rounds = a.rounds_big if n >= 1000 else a.rounds
        for r in range(rounds):
            for s in rotate(subjects, r):
                print(f"==> {n} processes, round {r + 1}/{rounds}: {s}", flush=True)
                mk = mark()
                attempt(f"{n} {s}", lambda s=s, mk=mk: sleep_round(
                    a, res, n, by_name.get(s), r, mk, s == "base"))
        m.merge_results(a.results, {"peers": res.v})
    print(f"==> crash -> respawn, {a.kills} kills each", flush=True)
    for r, s in enumerate(subjects):
        mk = mark()
        if s == "base":
            attempt("respawn base", lambda mk=mk: crash_base(a, res, mk, a.kills))
        else:
            attempt(f"respawn {s}", lambda s=s, mk=mk: crash_round(a, res, by_name[s], mk, a.kills))
    print(f"==> log throughput, {a.log_runs} rounds", flush=True)
    ml.expected(a.lines)
    for i in range(a.log_runs):
        for s in rotate(subjects, i):
            if s == "base":
                d = ml.run_direct(argparse.Namespace(dir=a.dir, writer=a.writer, lines=a.lines,
                                                     pids_file=a.pids_file, timeout=a.timeout), i)
                res.add("logplain/base", d["ns"])
                res.add("logdated/base", d["ns"])
                continue
            mg = by_name[s]
            for stamped in (False, True):
                if stamped and not mg.has_stamps:
                    continue
                attempt(f"log {s}", lambda mg=mg, stamped=stamped: log_round(a, res, mg, i, stamped))
        print(f"    round {i + 1}: " + ", ".join(
            f"{k} {v[-1] / NS_PER_MS:.0f} ms" for k, v in res.v.items()
            if k.startswith("log") and not k.startswith("loglost") and v and v[-1] != "timeout"),
            flush=True)
    m.merge_results(a.results, {"peers": res.v, "peer_versions": versions,
                                "peers_seconds": time.monotonic() - t_start,
                                "peers_counts": a.counts, "peers_rounds": a.rounds,
                                "peers_rounds_big": a.rounds_big, "peers_log_lines": a.lines,
                                "peers_log_runs": a.log_runs, "peers_kills": a.kills,
                                "peers_list_runs": a.list_runs, "peers_idle_seconds": a.idle_seconds})


# ----------------------------------------------------------------------------- report

def cmd_report(a):
    r = m.load_results(a.results)
    v = r.get("peers", {})
    versions = r.get("peer_versions", {})
    peers = [p for p in ("pm2", "supervisord") if p in versions]
    cols = ["pm3"] + peers

    def med(key):
        vals = v.get(key)
        if not vals:
            return None
        nums = [x for x in vals if not isinstance(x, str)]
        if len(nums) < len(vals):
            return "timeout"
        return statistics.median(nums)

    def ms(x):
        if x is None:
            return "–"
        if x == "timeout":
            return "timeout"
        x /= NS_PER_MS
        return f"{x:.0f} ms" if x >= 100 else f"{x:.1f} ms" if x >= 1 else f"{x:.2f} ms"

    def kib(x):
        return "–" if x is None else "timeout" if x == "timeout" else f"{x / MIB:.1f} MiB"

    def ratio(p, b, inverse=False):
        if not isinstance(p, (int, float)) or not isinstance(b, (int, float)) or not p or not b:
            return "–"
        return f"{(b / p if inverse else p / b):.2f}×"

    rows = []
    # (label, key, baseline label, baseline key, formatter, target (ratio, text), inverse)
    counts = r.get("peers_counts", [10, 100, 1000])
    for n in counts:
        tgt = (1.5, "≤ 1.5×") if n >= 100 else None
        rows.append((f"cold start of {n} (fresh daemon)", f"cold{n}", "fork/exec loop", f"cold{n}/base", ms, tgt, False))
    for n in counts:
        rows.append((f"warm start of {n} (daemon up)", f"warm{n}", "fork/exec loop", f"cold{n}/base", ms, None, False))
    for n in counts:
        tgt = (1.5, "≤ 1.5×") if n >= 1000 else None
        rows.append((f"`list` (table) at {n}", f"list{n}", "`/bin/true`", f"list{n}/base", ms, tgt, False))
        rows.append((f"`list --json` at {n}", f"list{n}json", "`/bin/true`", f"list{n}/base", ms, tgt, False))
    rows.append(("daemon RSS, nothing managed", "rss0", "–", None, kib, None, False))
    for n in counts:
        tgt = (12 * MIB, "≤ 12 MiB", "abs") if n >= 1000 else None
        rows.append((f"daemon RSS at {n}", f"rss{n}", "fork/exec loop holding them", f"rss{n}/base", kib, tgt, False))
    rows.append((f"daemon CPU idle with 100 over {r.get('peers_idle_seconds', 5)} s", "idlecpu",
                 "fork/exec loop holding them", "idlecpu/base", ms, None, False))
    rows.append(("crash → respawn (SIGKILL → new process exec'd)", "respawn", "waitpid + fork/exec loop",
                 "respawn/base", ms, None, False))
    for n in counts:
        if n < 100:
            continue
        tgt = (1.5, "≤ 1.5×") if n >= 1000 else None
        rows.append((f"stop of {n} (until all gone)", f"stop{n}", "SIGTERM + waitpid", f"stop{n}/base", ms, tgt, False))
    mb = r.get("peers_log_lines", 0) * ml.LINE / 1e6
    rows.append((f"log throughput, plain ({mb:.0f} MB, until the last line is in the file)", "logplain",
                 "direct write", "logplain/base", ms, (0.95, "≥ 0.95×"), True))
    rows.append((f"log throughput, stamped (`log_date_format`)", "logdated", "direct write", "logdated/base",
                 ms, (0.8, "≥ 0.8×"), True))

    head = ["Workload"] + cols + ["baseline", "pm3 / baseline", "target", "pm3"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, key, blabel, bkey, fmt, tgt, inverse in rows:
        pm3 = med(f"{key}/pm3")
        cells = [label] + [fmt(med(f"{key}/{c}")) if c == "pm3" or med(f"{key}/{c}") is not None else "–" for c in cols]
        for i, c in enumerate(cols):
            if c != "pm3":
                if key.endswith("json") and c == "supervisord":
                    cells[i + 1] = "n/a"
                if key == "logdated" and c == "supervisord":
                    cells[i + 1] = "n/a (no stamps)"
        base = med(bkey) if bkey else None
        cells.append(f"{blabel}: {fmt(base)}" if bkey else "–")
        rt = ratio(pm3, base, inverse) if key not in ("idlecpu",) else "–"
        if key.startswith("rss"):
            rt = ratio(pm3, base)
        cells.append(rt)
        verdict = "–"
        if tgt:
            cells.append(tgt[1])
            if isinstance(pm3, (int, float)):
                if len(tgt) == 3:
                    ok = pm3 <= tgt[0]
                elif inverse:
                    ok = isinstance(base, (int, float)) and base / pm3 >= tgt[0]
                else:
                    ok = isinstance(base, (int, float)) and pm3 / base <= tgt[0]
                verdict = "pass" if ok else "**miss**"
            elif pm3 == "timeout":
                verdict = "**miss**"
        else:
            cells.append("–")
        cells.append(verdict)
        out.append("| " + " | ".join(cells) + " |")

    lost = {k: v[k] for k in v if k.startswith("loglost")}
    notes = ["", "Medians. Payload bytes missing from the logs (per run; -1: none missing but the bytes "
             "differ) when the last line showed / once the daemon was shut down: "
             + "; ".join(f"{k.split('/')[1]} {k.split('/')[0][-5:]} {vals} / {v.get(k.replace('loglost', 'loglostfinal'))}"
                         for k, vals in sorted(lost.items()) if not k.startswith("loglostfinal")) + "."]
    errs = {k: v[k] for k in v if k.startswith("error/")}
    if errs:
        notes.append("Errors: " + "; ".join(f"{k[6:]}: {vals[0]}" for k, vals in errs.items()))
    sched = {k: vals for k, vals in v.items() if k.startswith("sched") and k.endswith("/pm3")}
    if sched:
        notes.append("pm3 daemon during each workload, median on-CPU / run-queue wait (schedstat; for a cold "
                     "start, the daemon's whole life): " + "; ".join(
                         f"{k.split('/')[0][5:]} {statistics.median(x[0] for x in vals) / NS_PER_MS:.1f} / "
                         f"{statistics.median(x[1] for x in vals) / NS_PER_MS:.1f} ms"
                         for k, vals in sorted(sched.items())) + ".")
    notes.append("Every run (ms, in the order measured): " + "; ".join(
        f"`{k}` " + ", ".join("timeout" if isinstance(x, str) else f"{x / NS_PER_MS:.1f}" for x in vals)
        for k, vals in sorted(v.items()) if not k.startswith(("rss", "loglost", "error", "sched"))) + ".")
    text = "\n".join(out + notes) + "\n"
    m.emit(text, a.out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="sub", required=True)
    s = sub.add_parser("run")
    s.add_argument("--results", required=True)
    s.add_argument("--dir", required=True)
    s.add_argument("--pids-file", required=True)
    s.add_argument("--pm3", required=True)
    s.add_argument("--pm2", default="")
    s.add_argument("--supervisor-bin", default="")
    s.add_argument("--baseline", required=True)
    s.add_argument("--respawn-baseline", required=True)
    s.add_argument("--writer", required=True)
    s.add_argument("--counts", type=lambda x: [int(c) for c in x.split(",")], default=[10, 100, 1000])
    s.add_argument("--rounds", type=int, default=3)
    s.add_argument("--rounds-big", type=int, default=1)
    s.add_argument("--list-runs", type=int, default=10)
    s.add_argument("--idle-seconds", type=float, default=5)
    s.add_argument("--kills", type=int, default=5)
    s.add_argument("--lines", type=int, default=1_000_000)
    s.add_argument("--log-runs", type=int, default=5)
    s.add_argument("--settle", type=float, default=0.3)
    s.add_argument("--timeout", type=float, default=60)
    s.add_argument("--timeout-big", type=float, default=180)
    s.add_argument("--mark-base", default=str(7_000_000 + os.getpid() % 100_000 * 10))
    s.set_defaults(fn=cmd_run)
    s = sub.add_parser("report")
    s.add_argument("--results", required=True)
    s.add_argument("--out")
    s.set_defaults(fn=cmd_report)
    a = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    a.fn(a)


if __name__ == "__main__":
    main()
