#!/usr/bin/env bash
# Installs the peers that bench/compare.sh measures pm3 against, into target/peers/ (never
# globally): pm2 from npm into a local prefix, supervisor from pip into a venv.
#
#   bench/peers-install.sh
#
# Needs node and npm (pm2), python3 with venv (supervisor). A peer whose installer is missing is
# skipped with a note; compare.sh then skips that peer too. Knobs: PM2_VERSION (7.0.4),
# SUPERVISOR_VERSION (4.3.0).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS=$ROOT/target/peers
mkdir -p "$PEERS"

if command -v npm >/dev/null; then
  echo "==> pm2 ${PM2_VERSION:-7.0.4} into $PEERS/pm2" >&2
  npm install --prefix "$PEERS/pm2" --no-audit --no-fund --loglevel=error \
    "pm2@${PM2_VERSION:-7.0.4}" >&2
  "$PEERS/pm2/node_modules/.bin/pm2" --version >/dev/null 2>&1 || true
else
  echo "==> npm not found: pm2 skipped" >&2
fi

if python3 -c 'import venv' 2>/dev/null; then
  echo "==> supervisor ${SUPERVISOR_VERSION:-4.3.0} into $PEERS/supervisor" >&2
  python3 -m venv "$PEERS/supervisor"
  "$PEERS/supervisor/bin/pip" install --quiet --disable-pip-version-check \
    "supervisor==${SUPERVISOR_VERSION:-4.3.0}" >&2
else
  echo "==> python3 venv not available: supervisor skipped" >&2
fi
echo "==> peers in $PEERS" >&2
