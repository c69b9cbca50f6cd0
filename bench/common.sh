# Shared by bench/run.sh, bench/supervision.sh and bench/logs.sh (sourced, not run).
# Sets ROOT and BENCH, defines `log`, builds pm3 the way users get it and sets PM3.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench

log() { printf '==> %s\n' "$*" >&2; }

# Builds the binary ./install.sh installs (static-pie on Linux/glibc) and sets PM3.
# PM3_BENCH_BIN: use that pm3 binary instead (e.g. one built from an earlier commit, to compare).
build_pm3() {
  cd "$ROOT"
  mkdir -p "$ROOT/target/bench"
  if [[ -n ${PM3_BENCH_BIN:-} ]]; then
    PM3=$(realpath "$PM3_BENCH_BIN")
    log "using $PM3 (PM3_BENCH_BIN), not building"
    return
  fi
  local host
  host=$(rustc -vV | sed -n 's/^host: //p')
  case "$host" in
    *-linux-gnu)
      log "building pm3 as install.sh does (static-pie, --target $host)"
      local flags="-C target-feature=+crt-static"
      if ld --help 2>/dev/null | grep -q pack-relative-relocs; then
        flags="$flags -C link-arg=-Wl,-z,pack-relative-relocs"
      fi
      RUSTFLAGS="${RUSTFLAGS:-} $flags" \
        cargo build --release --quiet --target "$host"
      PM3=$ROOT/target/$host/release/pm3 ;;
    *)
      log "building pm3 (cargo build --release)"
      cargo build --release --quiet
      PM3=$ROOT/target/release/pm3 ;;
  esac
  mkdir -p "$ROOT/target/bench"
}

# Creates the run's temp dir (WORK, PM3_HOME, PIDS, RESULTS, M) and installs the cleanup trap:
# on exit, error or signal it stops a running helper, runs `pm3 kill` for that home, kills what
# was recorded in PIDS that is still the same process (pid + start time), removes the temp dir.
bench_workdir() {
  WORK=$(mktemp -d -p "${PM3_BENCH_TMPDIR:-/tmp}" "pm3-bench-$1.XXXXXX")
  export PM3_HOME=$WORK/home
  PIDS=$WORK/pids            # "pid starttime" of everything started, for cleanup
  RESULTS=$WORK/results.json
  M=(python3 "$BENCH/measure.py")
  HELPER=
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

# The long helpers run in the background and are waited for, so that a SIGTERM or SIGINT to
# the script is handled at once (bash defers traps while a foreground command runs).
run_helper() {
  "$@" &
  HELPER=$!
  local rc=0
  wait "$HELPER" || rc=$?
  HELPER=
  return "$rc"
}

bench_cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [[ -n ${HELPER:-} ]] && kill -0 "$HELPER" 2>/dev/null; then
    kill -TERM "$HELPER" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$HELPER" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$HELPER" 2>/dev/null
    wait "$HELPER" 2>/dev/null
  fi
  if [[ -e $PM3_HOME/pm3.sock || -e $PM3_HOME/pm3.pid ]]; then
    timeout 20 "$PM3" kill >/dev/null 2>&1 || log "pm3 kill failed; killing recorded pids"
  fi
  "${M[@]}" cleanup --pids-file "$PIDS"
  rm -rf "$WORK"
  exit "$rc"
}

starttime() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $20}'; }
