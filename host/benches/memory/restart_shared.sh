#!/usr/bin/env bash
# A rolling restart on a shared PostgreSQL store: host A keeps taking one
# lead at a time while host B, which shares A's store, is restarted and
# rebuilds its dedupe index. Prints A's latencies (the slowest posts and
# when they came), when B was ready and how long B's first lead took.
#
#   host/benches/memory/restart_shared.sh                 # 100k leads stored
#   PERSONS=500000 host/benches/memory/restart_shared.sh  # 1M leads stored
#   BIN_A=… BIN_B=… (two builds side by side); KEEP=1 keeps the filled schema
#   and the next run with KEEP=1 reuses it.
#
# The store is schema `lg_restart_shared` of the test PostgreSQL
# (LEADGATE_TEST_POSTGRES, default postgres://root@127.0.0.1:5432/test),
# dropped at the end. Traffic goes to 127.0.0.1:18080/18082 only;
# everything stops by itself.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
if [ -z "${BIN_A:-}" ] || [ -z "${BIN_B:-}" ]; then
  cargo build --release -q -p leadgate --manifest-path "$ROOT/Cargo.toml"
fi
BIN_A=${BIN_A:-$ROOT/target/release/leadgate}
BIN_B=${BIN_B:-$BIN_A}
PERSONS=${PERSONS:-50000}
PG=${LEADGATE_TEST_POSTGRES:-postgres://root@127.0.0.1:5432/test}
SCHEMA=lg_restart_shared
DIR=/tmp/$SCHEMA
mkdir -p "$DIR"
config() {
  cat > "$DIR/$1.toml" <<TOML
[server]
listen = "127.0.0.1:$2"
[store]
url = "$PG?options=-c%20search_path%3D$SCHEMA"
[store.encryption]
key_file = "$DIR/keys"
[auth]
token_file = "$DIR/admin-token"
[plugins]
dir = "$ROOT/target/plugins"
mappings_dir = "$ROOT/mappings"
hot_reload = false
[sources.web]
api_key = "mem-test-key-0001"
max_backlog = 0
[delivery]
max_backlog = 0
TOML
}
config a 18080
config b 18082
ready() { for _ in $(seq 1 2400); do curl -sf -o /dev/null "http://127.0.0.1:$1/v1/health" && return; sleep 0.05; done; }
PIDS=()
cleanup() {
  kill "${PIDS[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" != 1 ]; then
    psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" 2>/dev/null
    rm -rf "$DIR"
  fi
}
trap cleanup EXIT
if [ "${KEEP:-0}" != 1 ] || [ ! -f "$DIR/filled" ]; then
  psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" -c "CREATE SCHEMA $SCHEMA" 2>/dev/null
  RUST_LOG=warn "$BIN_A" serve --config "$DIR/a.toml" > "$DIR/a.log" 2>&1 &
  FILL=$!
  ready 18080
  python3 "$HERE/load.py" 127.0.0.1 18080 mem-test-key-0001 "$PERSONS"
  kill -TERM $FILL; wait $FILL || true
  touch "$DIR/filled"
fi
RUST_LOG=info "$BIN_A" serve --config "$DIR/a.toml" > "$DIR/a.log" 2>&1 &
PIDS+=($!)
RUST_LOG=info "$BIN_B" serve --config "$DIR/b.toml" > "$DIR/b.log" 2>&1 &
B=$!
PIDS+=($B)
ready 18080
ready 18082
sleep 1
# A's poster: one lead at a time for 25 s; B is restarted 5 s in.
python3 - <<'PY' &
import http.client, json, random, time
conn = http.client.HTTPConnection("127.0.0.1", 18080)
t0, lat, n = time.time(), [], 0
while time.time() - t0 < 25:
    n += 1
    body = json.dumps({"email": f"probe{random.getrandbits(40)}@probe.example.com",
                       "first_name": "Probe", "last_name": f"N{n}"})
    s = time.time()
    conn.request("POST", "/v1/leads", body=body, headers={
        "Authorization": "Bearer mem-test-key-0001", "Content-Type": "application/json"})
    r = conn.getresponse(); r.read()
    lat.append((s - t0, time.time() - s, r.status))
    time.sleep(0.01)
ms = sorted(l[1] * 1000 for l in lat)
print(f"A: {len(lat)} posts in 25 s, p50 {ms[len(ms)//2]:.1f} ms, p99 {ms[int(len(ms)*.99)]:.1f} ms, "
      f"statuses {sorted(set(l[2] for l in lat))}")
print("A: slowest:", ", ".join(f"{l[1]*1000:.0f} ms at t={l[0]:.1f} s"
                               for l in sorted(lat, key=lambda l: -l[1])[:4]))
PY
POSTER=$!
sleep 5
kill -TERM $B; wait $B || true
t0=$(date +%s.%N)
RUST_LOG=info "$BIN_B" serve --config "$DIR/b.toml" > "$DIR/b2.log" 2>&1 &
PIDS+=($!)
ready 18082
echo "B restarted at t=5 s: ready after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}') s"
curl -s -o /dev/null -w "B's first lead: %{http_code} in %{time_total} s\n" \
  -H "Authorization: Bearer mem-test-key-0001" -H "Content-Type: application/json" \
  -d "{\"email\":\"first$RANDOM@b.example.com\",\"first_name\":\"First\",\"last_name\":\"Lead\"}" \
  http://127.0.0.1:18082/v1/leads
wait $POSTER
grep -h "dedupe index loaded" "$DIR/b2.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g' | grep -o "leads=.*"
