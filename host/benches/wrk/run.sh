#!/usr/bin/env bash
# Single-lead ingest of `leadgate serve` beside a bare endpoint, each its own
# process, loaded by wrk the same way: 2 threads, 64 connections, one
# distinct realistic lead per request (lead.lua). The bare endpoint
# (host/examples/bare_ingest.rs) parses the JSON and answers 202; the host
# runs with its defaults (durability full, encryption on, no destination) on
# a new SQLite store each round. Rounds alternate bare and host, since this
# machine's speed drifts; each prints req/s and p50/p99, and the host's
# rate as a share of the bare endpoint's in the same round.
#
#   host/benches/wrk/run.sh                    # 3 rounds of 10 s each
#   ROUNDS=5 SECS=20 host/benches/wrk/run.sh
#   ENCRYPTION=off host/benches/wrk/run.sh     # [store.encryption] enabled = false
#   DURABILITY=normal host/benches/wrk/run.sh  # [store] durability = "normal"
#
# Needs wrk (Debian: apt-get install wrk). Traffic goes to 127.0.0.1:18080
# and :18090 only; everything stops by itself.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
command -v wrk > /dev/null || { echo "wrk is not installed (Debian: apt-get install wrk)" >&2; exit 1; }
cargo build --release -q -p leadgate --bin leadgate --example bare_ingest --manifest-path "$ROOT/Cargo.toml"
BIN=${BIN:-$ROOT/target/release/leadgate}
BARE=${BARE:-$ROOT/target/release/examples/bare_ingest}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-10}
ENCRYPTION=${ENCRYPTION:-on}
DURABILITY=${DURABILITY:-full}
KEY=wrk-test-key-0001
DIR=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2> /dev/null || true; rm -rf "$DIR"' EXIT

wait_for() { # URL [CURL_ARGS]: until it answers 2xx, at most 2 minutes
  for _ in $(seq 1 1200); do curl -sf -o /dev/null "$@" && return 0; sleep 0.1; done
  echo "no answer from $1" >&2; exit 1
}
# wrk's output -> "REQ_PER_S P50_MS P99_MS NON_2XX"
load() { # URL [API_KEY]
  wrk -t2 -c64 -d"${SECS}s" --latency -s "$HERE/lead.lua" "$@" | awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) }
    /Requests\/sec/ { rps = $2 } /Non-2xx/ { bad = $NF }
    END { printf "%.0f %.2f %.2f %d\n", rps, p50, p99, bad }'
}
printf '%-6s %-14s %12s %9s %9s %9s  %s\n' round endpoint "req/s" "p50 ms" "p99 ms" non-2xx "share of bare"
for round in $(seq 1 "$ROUNDS"); do
  "$BARE" 127.0.0.1:18090 > /dev/null &
  PIDS=($!)
  wait_for http://127.0.0.1:18090/v1/leads -X POST -d '{}'
  read -r b_rps b_p50 b_p99 b_bad < <(load http://127.0.0.1:18090/v1/leads)
  kill "${PIDS[0]}"; wait "${PIDS[0]}" 2> /dev/null || true
  printf '%-6s %-14s %12s %9s %9s %9s\n' "$round" "bare axum" "$b_rps" "$b_p50" "$b_p99" "$b_bad"

  rm -rf "$DIR/store"; mkdir -p "$DIR/store"
  cat > "$DIR/leadgate.toml" << TOML
[server]
listen = "127.0.0.1:18080"
[store]
url = "sqlite://$DIR/store/leadgate.db"
durability = "$DURABILITY"
[store.encryption]
enabled = $([ "$ENCRYPTION" = off ] && echo false || echo true)
[plugins]
dir = "$ROOT/target/plugins"
mappings_dir = "$ROOT/mappings"
[sources.web]
api_key = "$KEY"
max_backlog = 0
[delivery]
max_backlog = 0
TOML
  RUST_LOG=warn "$BIN" serve --config "$DIR/leadgate.toml" > "$DIR/host.log" 2>&1 &
  PIDS=($!)
  wait_for http://127.0.0.1:18080/v1/health
  read -r h_rps h_p50 h_p99 h_bad < <(load http://127.0.0.1:18080/v1/leads "$KEY")
  leads=$(curl -s -H "Authorization: Bearer $(cat "$DIR/store/admin-token")" http://127.0.0.1:18080/v1/stats |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["store"]["leads"])')
  kill -TERM "${PIDS[0]}"; wait "${PIDS[0]}" 2> /dev/null || true
  share=$(awk -v h="$h_rps" -v b="$b_rps" 'BEGIN { printf "%.0f%%", 100 * h / b }')
  printf '%-6s %-14s %12s %9s %9s %9s  %s (%s leads stored)\n' "$round" "leadgate serve" "$h_rps" "$h_p50" "$h_p99" "$h_bad" "$share" "$leads"
  if [ "$b_bad" != 0 ] || [ "$h_bad" != 0 ]; then
    echo "non-2xx answers: the figures above are not comparable (host log: $DIR/host.log)" >&2
    tail -5 "$DIR/host.log" >&2
    exit 1
  fi
done
