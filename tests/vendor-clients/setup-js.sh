#!/usr/bin/env bash
# Installs the CRM vendors' own JavaScript clients from npm, pinned by
# package.json and package-lock.json beside this script, into a folder the
# tests use to drive the simulator (tests/e2e, vendor_clients):
#
#   tests/vendor-clients/setup-js.sh   # prints the node_modules folder (a NODE_PATH)
#
# The packages live in "${LEADGATE_TOOLCHAINS:-<repo>/target/toolchains}/vendor-js"
# (never in the source tree: cargo watches tests/), installed with `npm ci`
# only when package.json or package-lock.json changed since the last
# successful install or a pinned package is missing. Works from any cwd; safe
# to run repeatedly and concurrently.
set -euo pipefail

die() { echo "setup-js.sh: error: $*" >&2; exit 1; }

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
TOOLCHAINS="${LEADGATE_TOOLCHAINS:-$REPO/target/toolchains}"
JS="$TOOLCHAINS/vendor-js"
command -v node >/dev/null 2>&1 || die "node is not installed (Node.js 18 or later is needed)"
command -v npm >/dev/null 2>&1 || die "npm is not installed"

hash_inputs() { cat "$HERE/package.json" "$HERE/package-lock.json" | sha256sum | cut -d' ' -f1; }

# Whether every dependency pinned in package.json is installed at its version.
missing() {
  [ "$(cat "$JS/.installed.sha256" 2>/dev/null || true)" = "$(hash_inputs)" ] || return 0
  node - "$HERE/package.json" "$JS/node_modules" <<'JSEOF' >/dev/null 2>&1 && return 1 || return 0
const fs = require("fs");
const path = require("path");
const [pkg, modules] = process.argv.slice(2);
for (const [name, want] of Object.entries(JSON.parse(fs.readFileSync(pkg, "utf8")).dependencies)) {
  const have = JSON.parse(fs.readFileSync(path.join(modules, name, "package.json"), "utf8")).version;
  if (have !== want) process.exit(1);
}
JSEOF
}

if missing; then
  mkdir -p "$JS" || die "cannot create $JS"
  # One installer at a time (parallel test binaries may call this; npm ci
  # deletes node_modules first).
  exec 9>"$JS/.install.lock"
  flock 9
  if missing; then
    echo "setup-js.sh: installing npm packages into $JS (npm ci)" >&2
    rm -f "$JS/.installed.sha256"
    cp "$HERE/package.json" "$HERE/package-lock.json" "$JS/"
    (cd "$JS" && npm ci --no-audit --no-fund --loglevel=error) >&2 \
      || die "npm ci failed in $JS (is the npm registry reachable?)"
    hash_inputs >"$JS/.installed.sha256"
    missing && die "npm ci in $JS did not install the versions pinned in $HERE/package.json"
  fi
fi
echo "$JS/node_modules"
