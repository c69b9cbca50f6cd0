# Shared by bench/run.sh, bench/supervision.sh and bench/logs.sh (sourced, not run).
# Sets ROOT and BENCH, defines `log`, builds pm3 the way users get it and sets PM3.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench

log() { printf '==> %s\n' "$*" >&2; }

# Builds the binary ./install.sh installs (static, non-PIE on Linux/glibc) and sets PM3.
build_pm3() {
  cd "$ROOT"
  local host
  host=$(rustc -vV | sed -n 's/^host: //p')
  case "$host" in
    *-linux-gnu)
      log "building pm3 as install.sh does (static, --target $host)"
      RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C relocation-model=static" \
        cargo build --release --quiet --target "$host"
      PM3=$ROOT/target/$host/release/pm3 ;;
    *)
      log "building pm3 (cargo build --release)"
      cargo build --release --quiet
      PM3=$ROOT/target/release/pm3 ;;
  esac
  mkdir -p "$ROOT/target/bench"
}
