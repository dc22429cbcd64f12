#!/usr/bin/env bash
# Installs schemathesis from PyPI, pinned, into a venv the contract test
# uses against a running host's /openapi.json (tests/e2e, contract):
#
#   tests/openapi/setup.sh      # prints the path of its `st` command
#
# The venv lives at "${LEADGATE_TOOLCHAINS:-<repo>/target/toolchains}/schemathesis-py"
# and is only touched when the pinned version is missing or differs.
set -euo pipefail

PIN="schemathesis==4.32.5"

die() { echo "setup.sh: error: $*" >&2; exit 1; }

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
TOOLCHAINS="${LEADGATE_TOOLCHAINS:-$REPO/target/toolchains}"
VENV="$TOOLCHAINS/schemathesis-py"
# shellcheck source=tests/python.sh
. "$REPO/tests/python.sh"

missing() {
  [ -x "$VENV/bin/st" ] || return 0
  [ "$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("schemathesis"))' 2>/dev/null)" = "${PIN#*==}" ] && return 1 || return 0
}

if missing; then
  mkdir -p "$TOOLCHAINS"
  exec 9>"$TOOLCHAINS/schemathesis-py.lock"
  flock 9
  if missing; then
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV" >&2 || die "cannot create a venv at $VENV"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet "$PIN" >&2 \
      || die "pip install $PIN failed (PyPI unreachable?)"
  fi
fi
echo "$VENV/bin/st"
