#!/usr/bin/env bash
# pm3 supervision benchmarks: crash-to-respawn latency and daemon CPU with health checks and
# memory limits. See bench/README.md ("Supervision").
#
#   bench/supervision.sh
#
# Knobs (environment): PM3_BENCH_RESPAWN_RUNS (10 kills of each side), PM3_BENCH_RESPAWN_POLL_US
# (100: sleep between /proc scans while waiting for the new pid), PM3_BENCH_INSTANCES (100),
# PM3_BENCH_IDLE_SECONDS (10, CPU window), PM3_BENCH_CPU_REPS (3 windows of each kind),
# PM3_BENCH_TMPDIR (/tmp: where the temp dir, and so PM3_HOME, lives).
#
# Everything runs against a fresh PM3_HOME in a temp dir. On exit (normal, error or Ctrl-C) the
# script runs `pm3 kill` for that home, then kills whatever it recorded (the daemon, the managed
# instances, the baseline and its children) that is still the same process (pid + start time),
# and removes the temp dir. It never kills by name.
set -euo pipefail

# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
N=${PM3_BENCH_INSTANCES:-100}
RESPAWN_RUNS=${PM3_BENCH_RESPAWN_RUNS:-10}
RESPAWN_POLL_US=${PM3_BENCH_RESPAWN_POLL_US:-100}
IDLE_SECONDS=${PM3_BENCH_IDLE_SECONDS:-10}
CPU_REPS=${PM3_BENCH_CPU_REPS:-3}
CMD=(sleep 100000)


build_pm3
BASELINE=$ROOT/target/bench/respawn_baseline
LISTENER=$ROOT/target/bench/tcp_listener
rustc -O -o "$BASELINE" "$BENCH/respawn_baseline.rs"
rustc -O -o "$LISTENER" "$BENCH/tcp_listener.rs"

bench_workdir sup
S=(python3 "$BENCH/measure_supervision.py")

# 1a: one instance of the command, default restart settings (on_failure, min_uptime 1000 ms,
# restart_delay 100 ms: a run longer than min_uptime comes back with no delay).
cat >"$WORK/respawn.toml" <<EOF
[crasher]
command = "${CMD[*]}"
EOF

# 1b: the same tiny TCP listener twice, once plain, once with a TCP health check and a memory
# limit. Both use the same free port range (never at the same time).
PORT_BASE=$("${S[@]}" freeports --count "$N")
cat >"$WORK/plain.toml" <<EOF
[plain]
command = "$LISTENER"
instances = $N
increment_var = "PORT"
env = { PORT = $PORT_BASE }
EOF
cat >"$WORK/checked.toml" <<EOF
[checked]
command = "$LISTENER"
instances = $N
increment_var = "PORT"
env = { PORT = $PORT_BASE }
health_check = "tcp://127.0.0.1:\${PORT}"
max_memory = "200M"
EOF

# The daemon, started idle by a read-only command.
log "starting the daemon (PM3_HOME=$PM3_HOME)"
timeout 30 "$PM3" list >/dev/null
DAEMON_PID=$(<"$PM3_HOME/pm3.pid")
echo "$DAEMON_PID $(starttime "$DAEMON_PID")" >>"$PIDS"

COMMON=(--results "$RESULTS" --pm3 "$PM3" --home "$PM3_HOME" --pids-file "$PIDS")

log "figure 1a: crash-to-respawn of \`${CMD[*]}\`, $RESPAWN_RUNS kills each, pm3 and respawn_baseline alternately"
run_helper "${S[@]}" respawn "${COMMON[@]}" --config "$WORK/respawn.toml" --process crasher \
    --baseline "$BASELINE" --runs "$RESPAWN_RUNS" \
    --poll-sleep "$(awk -v us="$RESPAWN_POLL_US" 'BEGIN { printf "%.6f", us / 1e6 }')" -- "${CMD[@]}"

log "figure 1b: daemon CPU over ${IDLE_SECONDS}s idle, $N listeners (ports $PORT_BASE..$((PORT_BASE + N - 1))), with and without checks, $CPU_REPS windows each"
run_helper "${S[@]}" cpu "${COMMON[@]}" --config-plain "$WORK/plain.toml" --config-checked "$WORK/checked.toml" \
    --count "$N" --reps "$CPU_REPS" --seconds "$IDLE_SECONDS" --clk-tck "$(getconf CLK_TCK)"

"${M[@]}" set --results "$RESULTS" machine \
    "$(nproc) CPUs, Linux $(uname -r), PM3_HOME on $(stat -f -c %T "$PM3_HOME"), load $(cut -d' ' -f1-3 /proc/loadavg)"

HEADER="# pm3 supervision benchmark results

$(date -u '+%Y-%m-%d %H:%M UTC'), pm3 $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ' (+ uncommitted src changes)'), \`bench/supervision.sh\`. Medians; see README.md."
echo
"${S[@]}" report --results "$RESULTS" --out "$BENCH/results-supervision.md" --header "$HEADER"
