# Sourced by the scripts that make Python venvs (tests/openapi/setup.sh,
# tests/vendor-clients/setup.sh, adapters/pipedrive-py/build.sh): sets PY
# to $PYTHON, else the first of python3.11, 3.12, 3.13, python3 on PATH;
# stops the script when there is none. Needs the script's die().
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3.13 python3; do
    if command -v "$cand" >/dev/null 2>&1; then PY="$cand"; break; fi
  done
fi
[ -n "$PY" ] || die "no python3 found (set PYTHON=/path/to/python3)"
