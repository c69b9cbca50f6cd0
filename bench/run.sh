#!/usr/bin/env bash
# pm3 benchmark suite: see bench/README.md.
#
#   bench/run.sh
#
# Knobs (environment): PM3_BENCH_INSTANCES (100), PM3_BENCH_RUNS (15, start/stop runs of each
# side), PM3_BENCH_LIST_RUNS (300, hyperfine runs), PM3_BENCH_IDLE_SECONDS (10, CPU window),
# PM3_BENCH_TMPDIR (/tmp: where the temp dir, and so PM3_HOME and its pipes, lives).
#
# Everything runs against a fresh PM3_HOME in a temp dir. On exit (normal, error or Ctrl-C) the
# script runs `pm3 kill` for that home, then kills whatever it recorded (the daemon, the managed
# instances, the baselines' children) that is still the same process (pid + start time), and
# removes the temp dir. It never kills by name.
set -euo pipefail

# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
N=${PM3_BENCH_INSTANCES:-100}
RUNS=${PM3_BENCH_RUNS:-15}
LIST_RUNS=${PM3_BENCH_LIST_RUNS:-300}
IDLE_SECONDS=${PM3_BENCH_IDLE_SECONDS:-10}
CMD=(sleep 100000)


build_pm3
BASELINE=$ROOT/target/bench/spawn_baseline
rustc -O -o "$BASELINE" "$BENCH/spawn_baseline.rs"

if ! command -v hyperfine >/dev/null 2>&1; then
    log "installing hyperfine"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq hyperfine >/dev/null 2>&1; then
        apt-get update -qq >/dev/null
        apt-get install -y -qq hyperfine >/dev/null
    fi
fi

bench_workdir main
CONFIG=$WORK/pm3.toml

cat >"$CONFIG" <<EOF
[sleeper]
command = "${CMD[*]}"
instances = $N
EOF

# The daemon, started idle by a read-only command.
log "starting the daemon (PM3_HOME=$PM3_HOME)"
timeout 30 "$PM3" list >/dev/null
DAEMON_PID=$(<"$PM3_HOME/pm3.pid")
echo "$DAEMON_PID $(starttime "$DAEMON_PID")" >>"$PIDS"

COMMON=(--results "$RESULTS" --pm3 "$PM3" --home "$PM3_HOME" --config "$CONFIG"
    --baseline "$BASELINE" --count "$N" --comm "${CMD[0]}" --pids-file "$PIDS")

# 3 and 4: RSS idle, then start N and read RSS and the CPU over an idle window.
log "figures 3 and 4: daemon RSS idle and with $N instances, CPU over ${IDLE_SECONDS}s idle"
"${M[@]}" resources "${COMMON[@]}" --daemon-pid "$DAEMON_PID" --clk-tck "$(getconf CLK_TCK)" \
    --seconds "$IDLE_SECONDS" -- "${CMD[@]}"

# 1: `pm3 list --json` with N instances managed vs /bin/true.
log "figure 1: pm3 list --json ($N instances) vs /bin/true, hyperfine"
hyperfine -N --warmup 20 --runs "$LIST_RUNS" --style basic --export-json "$WORK/list.json" \
    "$PM3 list --json" "/bin/true"
"${M[@]}" hyperfine --results "$RESULTS" --json "$WORK/list.json"
"${M[@]}" rss --results "$RESULTS" --pid "$DAEMON_PID" --key rss_after_list_kib

timeout 60 "$PM3" stop all >/dev/null

# 2 and 5: start N / stop all, alternating with the baseline.
log "figures 2 and 5: start $N / stop all, $RUNS runs each, alternating with spawn_baseline"
"${M[@]}" startstop "${COMMON[@]}" --runs "$RUNS" -- "${CMD[@]}"
"${M[@]}" rss --results "$RESULTS" --pid "$DAEMON_PID" --key rss_after_cycles_kib

"${M[@]}" set --results "$RESULTS" machine \
    "$(nproc) CPUs, Linux $(uname -r), PM3_HOME on $(stat -f -c %T "$PM3_HOME"), load $(cut -d' ' -f1-3 /proc/loadavg)"

HEADER="# pm3 benchmark results

$(date -u '+%Y-%m-%d %H:%M UTC'), pm3 $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ' (+ uncommitted src changes)'), $N instances of \`${CMD[*]}\`. Medians; see README.md."
echo
"${M[@]}" report --results "$RESULTS" --out "$BENCH/results.md" --header "$HEADER"
