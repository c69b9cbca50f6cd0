#!/usr/bin/env bash
# pm3 log benchmarks: throughput of a fast writer through pm3's log capture, as a ratio to the
# same writer redirected straight to a file, without and with log_date_format, and bytes lost.
# See bench/README.md ("Logs").
#
#   bench/logs.sh
#
# Knobs (environment): PM3_BENCH_LOG_LINES (1000000 lines of 100 bytes), PM3_BENCH_LOG_RUNS
# (9 runs of each kind, after one warm-up round), PM3_BENCH_LOG_DATE_FORMAT
# (%Y-%m-%dT%H:%M:%S%.3f, must not contain a space), PM3_BENCH_LOG_BEFORE (another pm3 binary,
# measured in the same rounds: before/after), PM3_BENCH_TMPDIR (/tmp: where the temp
# dir lives; PM3_HOME and the direct file are both in it, so on the same filesystem).
#
# Everything runs against a fresh PM3_HOME in a temp dir. On exit (normal, error or Ctrl-C) the
# script runs `pm3 kill` for that home, then kills whatever it recorded (the daemon, the
# writers) that is still the same process (pid + start time), and removes the temp dir. It never
# kills by name.
set -euo pipefail

# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
LINES=${PM3_BENCH_LOG_LINES:-1000000}
RUNS=${PM3_BENCH_LOG_RUNS:-9}
DATE_FORMAT=${PM3_BENCH_LOG_DATE_FORMAT:-%Y-%m-%dT%H:%M:%S%.3f}


build_pm3
WRITER=$ROOT/target/bench/log_writer
rustc -O -o "$WRITER" "$BENCH/log_writer.rs"

bench_workdir logs
L=(python3 "$BENCH/measure_logs.py")

# Each run writes LINES * 100 bytes (plus stamps) into the temp dir, one run at a time.
need_kib=$(( LINES / 1024 * 100 * 3 / 2 + 1024 ))
free_kib=$(df -Pk "$WORK" | awk 'NR == 2 {print $4}')
if (( free_kib < need_kib )); then
    log "not enough space in $WORK: ${free_kib} KiB free, ${need_kib} KiB needed"
    exit 1
fi

# The daemon, started idle by a read-only command.
log "starting the daemon (PM3_HOME=$PM3_HOME)"
timeout 30 "$PM3" list >/dev/null
DAEMON_PID=$(<"$PM3_HOME/pm3.pid")
echo "$DAEMON_PID $(starttime "$DAEMON_PID")" >>"$PIDS"

log "figure 2: $LINES lines of 100 bytes: direct to a file, through \`| cat\`, through pm3, through pm3 with log_date_format; $RUNS runs each"
# PM3_BENCH_LOG_BEFORE: another pm3 binary (e.g. built from the previous commit), measured in the
# same rounds with a home of its own, for a before/after comparison.
BEFORE=()
if [[ -n ${PM3_BENCH_LOG_BEFORE:-} ]]; then
    BEFORE=(--base-pm3 "$PM3_BENCH_LOG_BEFORE" --base-home "$WORK/home-before")
fi
run_helper "${L[@]}" throughput --results "$RESULTS" --pm3 "$PM3" --home "$PM3_HOME" --writer "$WRITER" \
    --dir "$WORK" --lines "$LINES" --runs "$RUNS" --date-format "$DATE_FORMAT" --pids-file "$PIDS" "${BEFORE[@]}"
if [[ -n ${PM3_BENCH_LOG_BEFORE:-} ]]; then
    "${M[@]}" set --results "$RESULTS" log_base_label "$(basename "$PM3_BENCH_LOG_BEFORE")"
    if [[ -e $WORK/home-before/pm3.pid ]]; then PM3_HOME=$WORK/home-before timeout 20 "$PM3_BENCH_LOG_BEFORE" kill >/dev/null 2>&1 || true; fi
fi

"${M[@]}" set --results "$RESULTS" machine \
    "$(nproc) CPUs, Linux $(uname -r), PM3_HOME and the direct file on $(stat -f -c %T "$WORK"), load $(cut -d' ' -f1-3 /proc/loadavg)"

HEADER="# pm3 log benchmark results

$(date -u '+%Y-%m-%d %H:%M UTC'), pm3 $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ' (+ uncommitted src changes)'), \`bench/logs.sh\` ($LINES lines, $RUNS runs${PM3_BENCH_LOG_BEFORE:+, before = \`$(basename "$PM3_BENCH_LOG_BEFORE")\`}). Medians; see README.md."
echo
"${L[@]}" report --results "$RESULTS" --out "$BENCH/results-logs.md" --header "$HEADER"
