#!/usr/bin/env bash
# pm3 log retention benchmark: the issue's burst (1,000,000 lines of 101 bytes, written as fast
# as `seq` goes) under the old defaults (10M x 3), the defaults (20M x 10, compressed) and the
# default sizes uncompressed, counting the lines kept; and the CPU cost and the bytes saved of
# compressing a service log's 20 MiB rotations. See bench/README.md ("Retention").
#
#   bench/retention.sh
#
# Knobs (environment): PM3_BENCH_TMPDIR (/tmp: where the temp dir lives, PM3_HOME in it).
#
# Everything runs against a fresh PM3_HOME in a temp dir. On exit (normal, error or Ctrl-C) the
# script runs `pm3 kill` for that home, then kills whatever it recorded (the daemon) that is
# still the same process (pid + start time), and removes the temp dir. It never kills by name.
set -euo pipefail

# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

build_pm3
bench_workdir retention
R=(python3 "$BENCH/measure_retention.py")

# One burst's logs at a time (at most ~230 MB with the uncompressed default sizes), plus the
# 41 MiB service log and its copies.
need_kib=$(( 400 * 1024 ))
free_kib=$(df -Pk "$WORK" | awk 'NR == 2 {print $4}')
if (( free_kib < need_kib )); then
    log "not enough space in $WORK: ${free_kib} KiB free, ${need_kib} KiB needed"
    exit 1
fi

log "starting the daemon (PM3_HOME=$PM3_HOME)"
timeout 30 "$PM3" list >/dev/null
DAEMON_PID=$(<"$PM3_HOME/pm3.pid")
echo "$DAEMON_PID $(starttime "$DAEMON_PID")" >>"$PIDS"

log "burst: 1,000,000 lines of 101 bytes under three retentions"
run_helper "${R[@]}" burst --results "$RESULTS" --pm3 "$PM3" --home "$PM3_HOME" --dir "$WORK"
log "compression: a service log rotated twice at 20 MiB"
run_helper "${R[@]}" compress --results "$RESULTS" --pm3 "$PM3" --home "$PM3_HOME" --dir "$WORK"

"${M[@]}" set --results "$RESULTS" machine \
    "$(nproc) CPUs, Linux $(uname -r), PM3_HOME on $(stat -f -c %T "$WORK"), load $(cut -d' ' -f1-3 /proc/loadavg)"

HEADER="# pm3 log retention benchmark results

$(date -u '+%Y-%m-%d %H:%M UTC'), pm3 $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ' (+ uncommitted src changes)'), \`bench/retention.sh\`, release build as install.sh builds it. See README.md."
echo
"${R[@]}" report --results "$RESULTS" --out "$BENCH/results-retention.md" --header "$HEADER"
