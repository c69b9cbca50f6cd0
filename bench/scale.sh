#!/usr/bin/env bash
# 1,000-process figures of issue 12, side by side for one or more pm3 binaries and the
# spawn_baseline: cold start (first `pm3 start` on a freshly started daemon, until every pid is
# live and exec'd), daemon RSS, `pm3 list` and `list --json` called more than 1 s apart (hyperfine
# --prepare 'sleep 1.1') against /bin/true, the daemon's CPU while samples are kept fresh and
# after, `pm3 stop all` against SIGTERM + waitpid.
#
#   bench/scale.sh [N] [RUNS] LABEL=BINARY [LABEL=BINARY...]
#   e.g. bench/scale.sh 1000 3 before=/tmp/pm3-old now=target/x86_64-unknown-linux-gnu/release/pm3
#
# Every pm3 run gets a fresh PM3_HOME in a temp dir under ${PM3_BENCH_TMPDIR:-/tmp} and ends with
# `pm3 kill` for that home; the baseline stops its own children. Nothing is killed by name.
# Needs python3 and hyperfine; uses bench/measure.py for the /proc polling.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${1:-1000}; RUNS=${2:-3}; shift 2 || true
[ $# -gt 0 ] || { echo "usage: bench/scale.sh N RUNS LABEL=BINARY..." >&2; exit 2; }
mkdir -p "$ROOT/target/bench"
rustc -O -o "$ROOT/target/bench/spawn_baseline" "$ROOT/bench/spawn_baseline.rs"
export PM3_SCALE_BASELINE=$ROOT/target/bench/spawn_baseline PM3_SCALE_BENCH=$ROOT/bench
exec python3 - "$N" "$RUNS" "$@" <<'PY'
import os, sys, time, subprocess, statistics, tempfile, shutil, types, json
sys.path.insert(0, os.environ["PM3_SCALE_BENCH"])
import measure as m

N = int(sys.argv[1]); RUNS = int(sys.argv[2])
bins = [a.split("=", 1) for a in sys.argv[3:]]
BASE = os.environ["PM3_SCALE_BASELINE"]
IDLE = True
res = {}
def add(k, v): res.setdefault(k, []).append(v)

def hf(env, cmds, prepare=None, runs=8):
    out = os.path.join(tempfile.gettempdir(), f"pm3-scale-hf-{os.getpid()}.json")
    args = ["hyperfine", "-N", "-r", str(runs), "--export-json", out]
    if prepare: args += ["--prepare", prepare]
    else: args += ["-w", "3"]
    subprocess.run(args + cmds, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return [r["times"] for r in json.load(open(out))["results"]]

def one_pm3(label, binary):
    work = tempfile.mkdtemp(prefix="pm3-scale-", dir=os.environ.get("PM3_BENCH_TMPDIR", "/tmp"))
    home = os.path.join(work, "home"); cfg = os.path.join(work, "pm3.toml")
    with open(cfg, "w") as f:
        f.write(f'[sleeper]\ncommand = "sleep 100000"\ninstances = {N}\n')
    a = types.SimpleNamespace(pm3=binary, home=home, config=cfg, comm="sleep", count=N,
                              timeout=120, pids_file=os.path.join(work, "pids"))
    env = m.pm3_env(home)
    try:
        subprocess.run([binary, "list"], env=env, stdout=subprocess.DEVNULL, check=True, timeout=30)
        dpid = m.daemon_pid(home)
        try:
            st = m.pm3_start_timed(a, dpid)
        except TimeoutError as e:
            rows = json.loads(subprocess.run([binary, "list", "--json"], env=env, capture_output=True, text=True).stdout)
            bad = [r for r in rows if r["status"] != "online"]
            pids = [r["pid"] for r in rows if r["pid"]]
            print(f"{label}: {e}; daemon says {len(rows) - len(bad)} online, not online: {bad[:3]}; distinct pids {len(set(pids))}", file=sys.stderr)
            add(f"{label} start timeouts (watcher)", 1)
            return
        add(f"{label} cold start", st.all_ns / 1e6)
        add(f"{label} cold start: daemon cpu", st.cpu_ns / 1e6)
        time.sleep(1.5)
        add(f"{label} rss MiB", m.vmrss_kib(dpid) / 1024)
        t_list, t_json = hf(env, [f"{binary} list", f"{binary} list --json"], prepare="sleep 1.1")
        for t in t_list: add(f"{label} list (>1 s apart)", t * 1000)
        for t in t_json: add(f"{label} list --json (>1 s apart)", t * 1000)
        (t_true,) = hf(env, ["/bin/true"], runs=30)
        for t in t_true: add("/bin/true", t * 1000)
        add(f"{label} rss after lists MiB", m.vmrss_kib(dpid) / 1024)
        if IDLE:
            c0 = m.cpu_ticks(dpid); time.sleep(10); c1 = m.cpu_ticks(dpid)
            add(f"{label} cpu ticks, 10 s right after the lists (sweeping)", c1 - c0)
            c0 = m.cpu_ticks(dpid); time.sleep(10); c1 = m.cpu_ticks(dpid)
            add(f"{label} cpu ticks, next 10 s (nobody looks)", c1 - c0)
        t0 = time.perf_counter_ns()
        subprocess.run([binary, "stop", "all"], env=env, stdout=subprocess.DEVNULL, check=True, timeout=120)
        add(f"{label} stop all", (time.perf_counter_ns() - t0) / 1e6)
        m.check_gone(st.pids, 60)
    finally:
        subprocess.run([binary, "kill"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        shutil.rmtree(work, ignore_errors=True)

def one_base():
    b = m.Baseline(BASE, N, ["sleep", "100000"], "sleep", os.path.join(tempfile.gettempdir(), f"pm3-scale-pids-{os.getpid()}"), 120)
    try:
        add("baseline start (spawn_baseline)", b.start_ns / 1e6)
        time.sleep(0.5)
        add("baseline stop (SIGTERM + waitpid)", b.stop(120) / 1e6)
    finally:
        b.kill()

for i in range(RUNS):
    order = list(bins)
    if i % 2: order.reverse()
    one_base()
    for label, b in order:
        one_pm3(label, b)
    print(f"run {i+1}/{RUNS} done", file=sys.stderr, flush=True)

for k, v in res.items():
    show = ", ".join(f"{x:.1f}" for x in v) if len(v) <= 12 else f"{len(v)} values"
    print(f"{k:55s} median {statistics.median(v):9.2f}  [{show}]")
PY
