#!/usr/bin/env bash
# Builds the Standard Webhooks adapter (JavaScript) into a WebAssembly component.
#
#   adapters/webhook-js/build.sh OUT.wasm
#
# Installs the npm packages pinned in package-lock.json with `npm ci` into
# "${LEADGATE_TOOLCHAINS:-<repo>/target/toolchains}/js" (never into the source
# tree: cargo watches adapters/), skipping the install while package.json and
# package-lock.json are unchanged since the last successful install, then runs
# build.mjs from that folder so that it resolves @bytecodealliance/componentize-js
# there. Works from any cwd; safe to run repeatedly and concurrently.
set -euo pipefail

die() { echo "build.sh: error: $*" >&2; exit 1; }
note() { echo "build.sh: $*" >&2; }

[ "$#" -eq 1 ] || die "usage: $0 OUT.wasm"
OUT="$1"
[ -n "$OUT" ] || die "usage: $0 OUT.wasm (empty output path)"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
# Built against the frozen 0.2.0 contract: a Standard Webhooks receiver
# deletes by its own means, and this component keeps proving that the host
# serves 0.2.0 components (0.2.1 only added the optional `erasure` export).
WIT="$REPO/wit/v0.2.0"
[ -f "$WIT/leadgate.wit" ] || die "WIT not found at $WIT/leadgate.wit"
[ -f "$HERE/adapter.js" ] || die "adapter.js not found in $HERE"
command -v node >/dev/null 2>&1 || die "node is not installed (Node.js 18 or later is needed)"
command -v npm >/dev/null 2>&1 || die "npm is not installed"

# Resolve OUT against the caller's cwd before we cd anywhere.
case "$OUT" in
  /*) ;;
  *) OUT="${PWD%/}/$OUT" ;;
esac
mkdir -p "$(dirname "$OUT")" || die "cannot create the directory of $OUT"

TOOLCHAINS="${LEADGATE_TOOLCHAINS:-$REPO/target/toolchains}"
JS="$TOOLCHAINS/js"
mkdir -p "$JS" || die "cannot create $JS"

# One build at a time per toolchain folder (npm ci deletes node_modules first).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$JS/.build.lock"
  flock 9
fi

hash_inputs() { cat "$HERE/package.json" "$HERE/package-lock.json" | sha256sum | cut -d' ' -f1; }
WANT="$(hash_inputs)"
HAVE="$(cat "$JS/.installed.sha256" 2>/dev/null || true)"
if [ "$WANT" != "$HAVE" ] || [ ! -f "$JS/node_modules/@bytecodealliance/componentize-js/package.json" ]; then
  note "installing npm packages into $JS (npm ci)"
  rm -f "$JS/.installed.sha256"
  cp "$HERE/package.json" "$HERE/package-lock.json" "$JS/"
  (cd "$JS" && npm ci --no-audit --no-fund --loglevel=error) \
    || die "npm ci failed in $JS (is the npm registry reachable?)"
  echo "$WANT" >"$JS/.installed.sha256"
fi

# build.mjs resolves the package relative to its own location, so run a copy
# that lives beside node_modules.
cp "$HERE/build.mjs" "$JS/build.mjs"
note "componentize-js $(node -p "require('$JS/node_modules/@bytecodealliance/componentize-js/package.json').version"): $HERE/adapter.js -> $OUT"
# componentize-js maps the cwd (when it contains the source) to / inside the
# build, so relative imports such as ./logic.js resolve: run from here.
cd "$HERE"
node "$JS/build.mjs" "$HERE/adapter.js" "$WIT" crm-adapter "$OUT" || die "componentize failed"
[ -s "$OUT" ] || die "componentize produced no output at $OUT"
note "built $OUT ($(wc -c <"$OUT") bytes)"
