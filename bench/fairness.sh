#!/usr/bin/env bash
# pm3 fairness benchmark: `pm3 list --json` latency while N processes write as fast as they can
# (`yes`), with plain logs, with log_date_format, and with the smallest log_max_size (4K, a
# rotation every 4 KiB), next to the same list with nothing writing. See bench/README.md.
#
#   bench/fairness.sh
#
# Knobs (environment): PM3_BENCH_FAIR_WRITERS ("1 2 4"), PM3_BENCH_FAIR_CALLS (60 list calls per
# case), PM3_BENCH_TMPDIR (/tmp).
set -euo pipefail

# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
WRITERS=${PM3_BENCH_FAIR_WRITERS:-1 2 4}
CALLS=${PM3_BENCH_FAIR_CALLS:-60}

build_pm3
bench_workdir fairness
cd "$WORK"

# Each case: a fresh config of N writers of one kind, started, list timed, then stopped.
run_case() {
  local kind=$1 n=$2 extra=
  case "$kind" in
    plain) extra= ;;
    stamped) extra='log_date_format = "%Y-%m-%dT%H:%M:%S%.3f"' ;;
    tiny) extra='log_max_size = "4K"' ;;
  esac
  {
    echo '[idle]'
    echo 'command = "sleep 100000"'
    if (( n > 0 )); then
      echo '[w]'
      echo 'command = "yes pm3-fairness"'
      echo "instances = $n"
      echo 'log_max_files = 1'
      [[ -n $extra ]] && echo "$extra"
    fi
  } > pm3.toml
  "$PM3" start >/dev/null
  sleep 0.5
  python3 - "$PM3" "$CALLS" "$kind" "$n" <<'PY'
import statistics, subprocess, sys, time
pm3, calls, kind, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
v = []
for _ in range(calls):
    t = time.perf_counter()
    subprocess.run([pm3, "list", "--json"], stdout=subprocess.DEVNULL, check=True)
    v.append((time.perf_counter() - t) * 1e3)
v.sort()
print(f"| {kind} | {n} | {statistics.median(v):.1f} | {v[int(len(v) * 0.95)]:.1f} | {v[-1]:.1f} |")
PY
  local t0 t1
  t0=$(date +%s%N)
  "$PM3" stop all >/dev/null
  t1=$(date +%s%N)
  log "$kind x$n: stop all took $(( (t1 - t0) / 1000000 )) ms"
  rm -f "$PM3_HOME"/logs/*
}

echo "| writers | count | list median ms | p95 ms | max ms |"
echo "|---|---|---|---|---|"
run_case none 0
for n in $WRITERS; do
  for kind in plain stamped tiny; do
    run_case "$kind" "$n"
  done
done
