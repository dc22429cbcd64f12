#!/usr/bin/env bash
# Builds the Pipedrive adapter (Python) into a WebAssembly component.
#
#   adapters/pipedrive-py/build.sh OUT.wasm
#
# Ensures a venv at "${LEADGATE_TOOLCHAINS:-<repo>/target/toolchains}/py" with
# componentize-py pinned to COMPONENTIZE_PY_VERSION (installed from PyPI only
# when missing or at another version), then runs componentize-py against the
# repository's WIT (world crm-adapter-with-erasure). Nothing is written into the source
# tree: the sources are staged in a temporary directory and componentize-py
# generates its bindings in memory.
set -euo pipefail

COMPONENTIZE_PY_VERSION="0.25.1"

die() { echo "build.sh: error: $*" >&2; exit 1; }
note() { echo "build.sh: $*" >&2; }

[ "$#" -eq 1 ] || die "usage: $0 OUT.wasm"
OUT="$1"
[ -n "$OUT" ] || die "usage: $0 OUT.wasm (empty output path)"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
WIT="$REPO/wit"
[ -f "$WIT/leadgate.wit" ] || die "WIT not found at $WIT/leadgate.wit"
[ -f "$HERE/app.py" ] || die "app.py not found in $HERE"

# Resolve OUT against the caller's cwd before we cd anywhere.
case "$OUT" in
  /*) ;;
  *) OUT="$PWD/$OUT" ;;
esac
OUT_DIR="$(dirname "$OUT")"
mkdir -p "$OUT_DIR" || die "cannot create output directory $OUT_DIR"

TOOLCHAINS="${LEADGATE_TOOLCHAINS:-$REPO/target/toolchains}"
VENV="$TOOLCHAINS/py"
# shellcheck source=tests/python.sh
. "$REPO/tests/python.sh"

installed_version() {
  # Prints the installed componentize-py version, or nothing.
  [ -x "$VENV/bin/python" ] || return 0
  "$VENV/bin/python" - <<'PYEOF' 2>/dev/null || true
from importlib.metadata import version, PackageNotFoundError
try:
    print(version("componentize-py"))
except PackageNotFoundError:
    pass
PYEOF
}

if [ "$(installed_version)" != "$COMPONENTIZE_PY_VERSION" ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    note "creating venv $VENV with $PY"
    mkdir -p "$TOOLCHAINS" || die "cannot create $TOOLCHAINS"
    "$PY" -m venv "$VENV" || die "'$PY -m venv $VENV' failed (is the python3-venv package installed?)"
  fi
  note "installing componentize-py==$COMPONENTIZE_PY_VERSION into $VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
      "componentize-py==$COMPONENTIZE_PY_VERSION" \
    || die "pip install componentize-py==$COMPONENTIZE_PY_VERSION failed (is PyPI reachable?)"
  [ "$(installed_version)" = "$COMPONENTIZE_PY_VERSION" ] \
    || die "componentize-py $COMPONENTIZE_PY_VERSION not found in $VENV after install"
fi

CPY="$VENV/bin/componentize-py"
[ -x "$CPY" ] || die "$CPY is missing; delete $VENV and rerun"

# componentize-py imports the app with its own Python while building and
# leaves __pycache__ next to the modules: build from a staged copy so nothing
# lands in the source tree (and test files stay out of the component).
STAGE="$(mktemp -d "${TMPDIR:-/tmp}/leadgate-pipedrive-py.XXXXXX")" || die "mktemp failed"
trap 'rm -rf "$STAGE"' EXIT
for f in "$HERE"/*.py; do
  case "$(basename "$f")" in
    test_*.py) ;;
    *) cp "$f" "$STAGE/" ;;
  esac
done

# A caller's active venv would otherwise be searched for packages too.
unset VIRTUAL_ENV

note "componentize-py $COMPONENTIZE_PY_VERSION: $HERE/app.py -> $OUT"
cd "$STAGE"
"$CPY" -q -d "$WIT" -w crm-adapter-with-erasure componentize app -p "$STAGE" -o "$OUT" \
  || die "componentize-py failed"
[ -s "$OUT" ] || die "componentize-py produced no output at $OUT"
note "built $OUT ($(wc -c <"$OUT") bytes)"
