#!/usr/bin/env bash
# pm3 next to pm2 and supervisord and the bare baselines, the same workloads interleaved round by
# round, written to bench/RESULTS.md. See bench/README.md ("Peers").
#
#   bench/peers-install.sh      # once: pm2 and supervisor into target/peers/
#   bench/compare.sh            # ~20 min
#   QUICK=1 bench/compare.sh    # ~3 min: no 1000, 1 round, 200,000 log lines, 3 log runs
#
# Knobs (environment): QUICK, PEERS_COUNTS (10,100,1000), PEERS_ROUNDS (3), PEERS_ROUNDS_BIG
# (1 round at 1000), PEERS_LIST_RUNS (10 timed calls per list, median), PEERS_IDLE_SECONDS (5),
# PEERS_KILLS (5), PEERS_LOG_LINES (1000000), PEERS_LOG_RUNS (5), PEERS_TIMEOUT (60 s for one
# step, 180 s at 1000), PEERS_ONLY (e.g. "pm2": skip the other peer), PM3_BENCH_TMPDIR (/tmp).
#
# Everything runs in a temp dir: PM3_HOME, PM2_HOME and a supervisord.conf with its own socket,
# pid file and logs. On exit (normal, error or Ctrl-C) each daemon is shut down by its own command
# for its own home, then what was recorded (pid + start time) and is still the same process is
# killed, and the temp dir is removed. Nothing is killed by name.
set -euo pipefail

# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
PEERS=$ROOT/target/peers

if [[ -n ${QUICK:-} ]]; then
  : "${PEERS_COUNTS:=10,100}" "${PEERS_ROUNDS:=1}" "${PEERS_LOG_LINES:=200000}" "${PEERS_LOG_RUNS:=3}"
  : "${PEERS_KILLS:=3}" "${PEERS_LIST_RUNS:=5}" "${PEERS_IDLE_SECONDS:=2}"
fi

build_pm3
for prog in spawn_baseline respawn_baseline log_writer; do
  rustc -O -o "$ROOT/target/bench/$prog" "$BENCH/$prog.rs"
done

PM2=
SUP=
if [[ ${PEERS_ONLY:-pm2} == *pm2* && -x $PEERS/pm2/node_modules/.bin/pm2 ]]; then
  PM2=$PEERS/pm2/node_modules/.bin/pm2
else
  log "pm2 not installed (bench/peers-install.sh) or left out: skipped"
fi
if [[ ${PEERS_ONLY:-supervisord} == *supervisord* && -x $PEERS/supervisor/bin/supervisord ]]; then
  SUP=$PEERS/supervisor/bin
else
  log "supervisord not installed (bench/peers-install.sh) or left out: skipped"
fi

bench_workdir compare
PEERS_WORK=$WORK/peers
mkdir -p "$PEERS_WORK"

# Each peer's daemon is shut down by its own command for its own home before the generic cleanup.
peers_down() {
  if [[ -n $PM2 && -e $PEERS_WORK/pm2/home/pm2.pid ]]; then
    PM2_HOME=$PEERS_WORK/pm2/home timeout 60 "$PM2" kill >/dev/null 2>&1
  fi
  if [[ -n $SUP && -e $PEERS_WORK/supervisord/supervisord.pid ]]; then
    timeout 60 "$SUP/supervisorctl" -c "$PEERS_WORK/supervisord/supervisord.conf" shutdown >/dev/null 2>&1
  fi
  if [[ -e $PEERS_WORK/pm3/home/pm3.pid ]]; then
    PM3_HOME=$PEERS_WORK/pm3/home timeout 20 "$PM3" kill >/dev/null 2>&1
  fi
  return 0
}
trap 'rc=$?; set +e; peers_down; (exit $rc); bench_cleanup' EXIT

need_kib=$(( ${PEERS_LOG_LINES:-1000000} / 1024 * 100 * 3 + 1024 ))
free_kib=$(df -Pk "$WORK" | awk 'NR == 2 {print $4}')
if (( free_kib < need_kib )); then
  log "not enough space in $WORK: ${free_kib} KiB free, ${need_kib} KiB needed"
  exit 1
fi

log "pm3 $PM3; pm2 ${PM2:-(skipped)}; supervisord ${SUP:-(skipped)}"
run_helper python3 "$BENCH/measure_peers.py" run --results "$RESULTS" --dir "$PEERS_WORK" \
  --pids-file "$PIDS" --pm3 "$PM3" --pm2 "$PM2" --supervisor-bin "$SUP" \
  --baseline "$ROOT/target/bench/spawn_baseline" --respawn-baseline "$ROOT/target/bench/respawn_baseline" \
  --writer "$ROOT/target/bench/log_writer" \
  --counts "${PEERS_COUNTS:-10,100,1000}" --rounds "${PEERS_ROUNDS:-3}" --rounds-big "${PEERS_ROUNDS_BIG:-1}" \
  --list-runs "${PEERS_LIST_RUNS:-10}" --idle-seconds "${PEERS_IDLE_SECONDS:-5}" --kills "${PEERS_KILLS:-5}" \
  --lines "${PEERS_LOG_LINES:-1000000}" --log-runs "${PEERS_LOG_RUNS:-5}" \
  --timeout "${PEERS_TIMEOUT:-60}" --timeout-big "$(( ${PEERS_TIMEOUT:-60} * 3 ))"

versions=$(python3 -c 'import json,sys; v=json.load(open(sys.argv[1])).get("peer_versions",{}); print("; ".join(v.values()))' "$RESULTS")
seconds=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1])).get("peers_seconds",0)))' "$RESULTS")
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
dirty=$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ' (+ uncommitted src changes)')
OUT=$BENCH/RESULTS.md
{
  cat <<EOF
# pm3 next to its peers

$(date -u '+%Y-%m-%d %H:%M UTC'), \`bench/compare.sh\`${QUICK:+ (QUICK=1)}, pm3 $rev$dirty. Machine: $(nproc) CPUs,
Linux $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg) at the end, the temp dir on $(stat -f -c %T "$WORK").
Versions: $versions. Total run time ${seconds} s.

Every figure is a median, measured in the same run as its baseline, with pm3, the peers and the
baseline taking turns round by round (the order rotates each round). Starts are timed from the
launch of the command until every process has exec'd (seen in \`/proc\`), stops until the command
returned and every process is gone, lists as the wall time of the whole command, logs until the
writer's last line is in the file. \`pm3 / baseline\` is pm3's median over the baseline's (for log
throughput: the baseline's time over pm3's, a throughput ratio). See bench/README.md ("Peers")
for how each workload is run and what the baselines are.

EOF
  python3 "$BENCH/measure_peers.py" report --results "$RESULTS"
  if [[ -f $BENCH/RESULTS-notes.md ]]; then
    echo
    cat "$BENCH/RESULTS-notes.md"
  fi
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo
cat "$OUT"
