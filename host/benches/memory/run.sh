#!/usr/bin/env bash
# Resident memory of a loaded host: `leadgate serve` (release) with one
# HubSpot destination delivering to `crm-sim`, both as their own processes;
# PERSONS persons (default 50,000) each posted twice, the second copy with
# another email and the same phone (a duplicate that merges), 100 leads per
# request. Prints VmRSS/VmHWM idle, right after the load, drained, 5 s
# later, how long a restart takes to answer, and idle after it with the
# leads stored.
#
#   host/benches/memory/run.sh                # 100k leads
#   PERSONS=500000 host/benches/memory/run.sh # 1M leads
#   ALL_ADAPTERS=1 host/benches/memory/run.sh # Pipedrive (Python) and a
#       Standard Webhooks destination (JavaScript) loaded and delivering
#       too, at their own limits (the drain is not awaited)
#
# Traffic goes to 127.0.0.1:18080/18081 only; everything stops by itself.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
cargo build --release -q -p leadgate -p leadgate-sim --manifest-path "$ROOT/Cargo.toml"
BIN=${BIN:-$ROOT/target/release/leadgate}
SIM=${SIM:-$ROOT/target/release/crm-sim}
DIR=${DIR:-$(mktemp -d)}
PERSONS=${PERSONS:-50000}
$SIM --port 18081 --burst 100000000 > "$DIR/sim.log" 2>&1 &
SIMPID=$!
trap 'kill $SIMPID 2>/dev/null || true' EXIT
sleep 0.5
cat > "$DIR/leadgate.toml" <<TOML
[server]
listen = "127.0.0.1:18080"
[store]
url = "sqlite://$DIR/leadgate.db"
[plugins]
dir = "$ROOT/target/plugins"
mappings_dir = "$ROOT/mappings"
[sources.web]
api_key = "mem-test-key-0001"
max_backlog = 0
[delivery]
max_backlog = 0
[destinations.hubspot]
adapter = "hubspot"
mapping = "hubspot.yaml"
allowed_hosts = ["127.0.0.1"]
[destinations.hubspot.config]
base-url = "http://127.0.0.1:18081"
[destinations.hubspot.rate_limits]
burst = { max_requests = 100000000, window_ms = 10000 }
daily = { max_requests = 100000000, window_ms = 86400000 }
[destinations.hubspot.secrets]
access-token = "sim-token"
client-secret = "x"
TOML
if [ "${ALL_ADAPTERS:-0}" = 1 ]; then
  cat >> "$DIR/leadgate.toml" <<TOML
[destinations.pipedrive]
adapter = "pipedrive-py"
mapping = "pipedrive.yaml"
allowed_hosts = ["127.0.0.1"]
[destinations.pipedrive.config]
base-url = "http://127.0.0.1:18081"
[destinations.pipedrive.secrets]
api-token = "sim-token"
[destinations.hook]
adapter = "webhook-js"
mapping = "webhook.yaml"
allowed_hosts = ["127.0.0.1"]
[destinations.hook.config]
url = "http://127.0.0.1:18081/hooks/mem"
[destinations.hook.secrets]
signing-key = "whsec_c2ltLXdlYmhvb2stc2lnbmluZy1rZXktMDEyMzQ1Njc4OQ=="
TOML
fi
DRAIN_S=300
[ "${ALL_ADAPTERS:-0}" = 1 ] && DRAIN_S=10
rss() { awk '/VmRSS|VmHWM|RssAnon|RssFile/ {printf "%s %s MB  ", $1, int($2/1024)}' "/proc/$1/status"; echo; }
# Starts the host and waits until it listens (LISTENING_S) and until its
# health says ready (STARTED_S; at most 2 minutes each: a restart rebuilds
# the dedupe index first, while it listens).
start_host() {
  local t0
  t0=$(date +%s.%N)
  RUST_LOG=warn $BIN serve --config "$DIR/leadgate.toml" > "$DIR/host.log" 2>&1 &
  HOSTPID=$!
  for _ in $(seq 1 1200); do curl -s -o /dev/null http://127.0.0.1:18080/v1/health && break; sleep 0.1; done
  LISTENING_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  # 503 `starting` until the dedupe index is rebuilt.
  for _ in $(seq 1 1200); do curl -sf -o /dev/null http://127.0.0.1:18080/v1/health && break; sleep 0.1; done
  STARTED_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
}
outstanding() {
  curl -s -H "Authorization: Bearer $(cat "$DIR/admin-token")" http://127.0.0.1:18080/v1/stats | python3 -c \
    'import json,sys; s=json.load(sys.stdin)["store"]; print(s["jobs_pending"]+s["jobs_leased"])'
}
start_host
echo -n "idle, empty store:        "; rss $HOSTPID
python3 "$HERE/load.py" 127.0.0.1 18080 mem-test-key-0001 "$PERSONS"
echo -n "right after the load:     "; rss $HOSTPID
for i in $(seq 1 $DRAIN_S); do [ "$(outstanding)" = "0" ] && break; sleep 1; done
echo "after ${i} s: $(outstanding) jobs outstanding"
echo -n "drained (or 10 s later):  "; rss $HOSTPID
sleep 5
echo -n "5 s later:                "; rss $HOSTPID
curl -s -H "Authorization: Bearer $(cat "$DIR/admin-token")" http://127.0.0.1:18080/v1/stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["store"])'
kill -TERM $HOSTPID; wait $HOSTPID || true
start_host
echo "restarted: listening after ${LISTENING_S} s, ready after ${STARTED_S} s (the dedupe index rebuilt from the store)"
sleep 2
echo -n "idle after restart:       "; rss $HOSTPID
kill -TERM $HOSTPID; wait $HOSTPID || true
rm -rf "$DIR"
