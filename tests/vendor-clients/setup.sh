#!/usr/bin/env bash
# Installs the CRM vendors' own client libraries from PyPI, pinned, into a
# venv the tests use to drive the simulator (tests/e2e, vendor_clients):
#
#   tests/vendor-clients/setup.sh      # prints the venv's python
#
# The venv lives at "${LEADGATE_TOOLCHAINS:-<repo>/target/toolchains}/vendor-py"
# and is only touched when a pinned version is missing or differs.
set -euo pipefail

PINS=(
  "simple-salesforce==1.12.10"
  "hubspot-api-client==12.0.0"
  "zohocrmsdk8-0==7.0.0"
  "PowerPlatform-Dataverse-Client==1.1.0"
)

die() { echo "setup.sh: error: $*" >&2; exit 1; }

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
TOOLCHAINS="${LEADGATE_TOOLCHAINS:-$REPO/target/toolchains}"
VENV="$TOOLCHAINS/vendor-py"
# shellcheck source=tests/python.sh
. "$REPO/tests/python.sh"

missing() {
  [ -x "$VENV/bin/python" ] || return 0
  "$VENV/bin/python" - "${PINS[@]}" <<'PYEOF' >/dev/null 2>&1 && return 1 || return 0
import sys
from importlib.metadata import version
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    if version(name) != want:
        raise SystemExit(1)
PYEOF
}

if missing; then
  mkdir -p "$TOOLCHAINS"
  # One installer at a time (parallel test binaries may call this).
  exec 9>"$TOOLCHAINS/vendor-py.lock"
  flock 9
  if missing; then
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV" >&2 || die "cannot create a venv at $VENV"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet "${PINS[@]}" >&2 \
      || die "pip install ${PINS[*]} failed (PyPI unreachable?)"
  fi
fi
echo "$VENV/bin/python"
