#!/usr/bin/env bash
# Gateway overhead and the cost of charging, measured side by side in one run: the same wrk load
# (tools/call on `echo`, a fixed body, one MCP session per target) against the demo MCP server
# directly, through the gateway as a free tool (`/mcp/demo`), and through the gateway as a paid
# tool (`/mcp/demo-paid`: the same upstream with `echo` priced 1, so every call is held, captured
# and settled). The demo server runs as its own process, the gateway as another; rounds rotate
# direct/free/paid so drift on the machine hits all alike.
#
#   bench/gateway.sh [duration-seconds] [connections] [rounds]
#   PROM_WORKER_THREADS=1 bench/gateway.sh …     # the gateway on one tokio worker thread
#   PROFILE=1 bench/gateway.sh 10 16 1            # also `perf record -g` the gateway in each round
#                                                   (bench/out/perf-<scenario>-<gateway|paid>.data)
#   PIN=1 bench/gateway.sh …                      # the upstream on core 1 alone; wrk and gateway on 0
#   SCENARIOS=stateless bench/gateway.sh …        # only one of the two scenarios
#   DELAY_MS=4 bench/gateway.sh …                 # each connection waits 4 ms after each answer:
#                                                   free and paid at (nearly) the same request rate
#
# Two scenarios: `stateless` (protocol 2026-07-28, every request independent, so the connections
# run concurrently everywhere) and `session` (protocol 2025-11-25, one MCP session shared by all
# connections, which the demo server answers one request at a time: a latency-bound pipeline).
#
# Needs wrk (Debian: apt-get install wrk) and release builds of prom and demo-mcp. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNECTIONS=${2:-16}
ROUNDS=${3:-3}
PORT=${PORT:-7391}
UPSTREAM_PORT=${UPSTREAM_PORT:-7392}
TARGET=${CARGO_TARGET_DIR:-target}/release
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
[ -x "$TARGET/prom" ] && [ -x "$TARGET/demo-mcp" ] || cargo build --release -p prom -p demo-mcp
PROM=$TARGET/prom

work=$(mktemp -d)
cleanup() {
  kill "${server:-}" "${upstream_pid:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# With PIN=1 the upstream gets core 1 to itself and wrk and the gateway share core 0, as when the
# gateway runs on its own host in front of the MCP server (each then sizes its runtime to one core);
# without it all three share both cores.
UPSTREAM_CPU=() GATEWAY_CPU=() WRK=(wrk)
if [ -n "${PIN:-}" ]; then
  UPSTREAM_CPU=(taskset -c 1) GATEWAY_CPU=(taskset -c 0) WRK=(taskset -c 0 wrk)
fi
"${UPSTREAM_CPU[@]}" "$TARGET/demo-mcp" --http "127.0.0.1:$UPSTREAM_PORT" 2>"$work/demo.log" &
upstream_pid=$!
# The upstream is on loopback, which the egress policy refuses unless the operator allows it.
PROM_EGRESS__ALLOW_HOSTS="[\"127.0.0.1:$UPSTREAM_PORT\"]" PROM_LOG=warn "${GATEWAY_CPU[@]}" "$PROM" serve --listen "127.0.0.1:$PORT" --data-dir "$work/data" 2>"${GATEWAY_LOG:-$work/log}" &
server=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

# An owner, a session, the service and a key, through the real API.
echo 'benchmark-password' | "$PROM" admin create-user --email bench@example.com --tenant bench --role owner \
  --password-stdin --data-dir "$work/data" >/dev/null
api() { curl -sf "http://127.0.0.1:$PORT$1" -H 'content-type: application/json' "${@:2}"; }
token=$(api /v1/auth/login -d '{"email":"bench@example.com","password":"benchmark-password"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
upstream="http://127.0.0.1:$UPSTREAM_PORT/mcp"
api /v1/services -H "authorization: Bearer $token" \
  -d "{\"slug\":\"demo\",\"name\":\"demo\",\"upstream\":{\"url\":\"$upstream\"},\"prices\":{\"fortune\":\"250\"}}" >/dev/null
api /v1/services -H "authorization: Bearer $token" \
  -d "{\"slug\":\"demo-paid\",\"name\":\"demo, paid echo\",\"upstream\":{\"url\":\"$upstream\"},\"prices\":{\"echo\":\"1\"}}" >/dev/null
"$PROM" admin mint --tenant bench --amount 1000000000000 --data-dir "$work/data" >/dev/null
curl -sf -X PUT "http://127.0.0.1:$PORT/v1/services/demo-paid/allowance" -H "authorization: Bearer $token" \
  -H 'content-type: application/json' -d '{"amount":"1000000000000"}' >/dev/null
key=$(api /v1/keys -H "authorization: Bearer $token" -d '{"label":"benchmark"}' | sed 's/.*"key":"\([^"]*\)".*/\1/')
gateway="http://127.0.0.1:$PORT/mcp/demo"
paid="http://127.0.0.1:$PORT/mcp/demo-paid"

# One MCP session per target (the demo server is stateful, protocol 2025-11-25).
open_session() { # url, extra curl args...
  local url=$1; shift
  curl -s -D - -o /dev/null "$url" "$@" -H 'content-type: application/json' \
    -H 'accept: application/json, text/event-stream' \
    -d '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"wrk","version":"1"}}}' \
    | tr -d '\r' | sed -n 's/^mcp-session-id: //Ip'
}
direct_session=$(open_session "$upstream")
gateway_session=$(open_session "$gateway" -H "x-api-key: $key")
paid_session=$(open_session "$paid" -H "x-api-key: $key")
for target in "$upstream|$direct_session|" "$gateway|$gateway_session|$key" "$paid|$paid_session|$key"; do
  IFS='|' read -r url session k <<<"$target"
  curl -s -o /dev/null "$url" -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
    -H "mcp-session-id: $session" -H 'mcp-protocol-version: 2025-11-25' ${k:+-H "x-api-key: $k"} \
    -d '{"jsonrpc":"2.0","method":"notifications/initialized"}'
done

META='"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}'
for scenario in session stateless; do
  case $scenario in
    session) meta=; version=2025-11-25 ;;
    stateless) meta=",$META"; version=2026-07-28 ;;
  esac
  cat >"$work/$scenario.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello from the benchmark"}$meta}}'
wrk.headers["content-type"] = "application/json"
wrk.headers["accept"] = "application/json, text/event-stream"
wrk.headers["mcp-protocol-version"] = "$version"
LUA
  if [ -n "${DELAY_MS:-}" ]; then
    printf 'delay = function() return %d end\n' "$DELAY_MS" >>"$work/$scenario.lua"
  fi
  cat >>"$work/$scenario.lua" <<'LUA'
done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT rps=%.1f p50_us=%d p99_us=%d errors=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99), errors, summary.requests))
end
LUA
done


# CPU time (clock ticks: user + system) a process has used so far.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
run() { # scenario name url [session] [key]
  local out g0 u0 g1 u1 requests headers=()
  if [ "$1" = stateless ]; then
    headers=(-H 'mcp-method: tools/call' -H 'mcp-name: echo')
  else
    headers=(-H "mcp-session-id: $4")
  fi
  g0=$(ticks "$server"); u0=$(ticks "$upstream_pid")
  local perf_pid=
  if [ -n "${PROFILE:-}" ] && [ "$2" != "${2#[gp]}" ]; then
    mkdir -p bench/out
    perf record -q -g -p "$server" -o "bench/out/perf-$1-${2%% *}.data" -- sleep "$DURATION" 2>/dev/null &
    perf_pid=$!
  fi
  out=$("${WRK[@]}" -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$work/$1.lua" "${headers[@]}" ${5:+-H "x-api-key: $5"} "$3" | grep RESULT)
  g1=$(ticks "$server"); u1=$(ticks "$upstream_pid")
  [ -z "$perf_pid" ] || wait "$perf_pid"
  requests=$(sed 's/.*requests=\([0-9]*\).*/\1/' <<<"$out")
  # CPU per request, in microseconds, of the gateway and of the upstream demo server.
  echo "$1 $2 $out gateway_cpu_us=$(( (g1 - g0) * 1000000 / HZ / requests )) upstream_cpu_us=$(( (u1 - u0) * 1000000 / HZ / requests ))"
}
HZ=$(getconf CLK_TCK)
echo "# $(date -u +%FT%TZ) duration=${DURATION}s connections=$CONNECTIONS rounds=$ROUNDS cores=$(nproc) gateway_workers=${PROM_WORKER_THREADS:-default} pinned=${PIN:-no}"
for round in $(seq 1 "$ROUNDS"); do
  for scenario in ${SCENARIOS:-stateless session}; do
    run "$scenario" "direct  round=$round" "$upstream" "$direct_session"
    run "$scenario" "gateway round=$round" "$gateway" "$gateway_session" "$key"
    run "$scenario" "paid    round=$round" "$paid" "$paid_session" "$key"
  done
done | tee "$work/results"
for scenario in ${SCENARIOS:-stateless session}; do
  case $scenario in
    stateless) echo "== stateless (protocol 2026-07-28): $CONNECTIONS connections, independent requests" ;;
    session) echo "== one session (protocol 2025-11-25): $CONNECTIONS connections, one MCP session the upstream serves in order" ;;
  esac
  grep "^$scenario " "$work/results" | cut -d' ' -f2- | awk '
  /^direct/  { for (i=1;i<=NF;i++) { split($i,kv,"="); v[kv[1]]=kv[2] } d_rps+=v["rps"]; d50+=v["p50_us"]; d99+=v["p99_us"]; n++ }
  /^gateway/ { for (i=1;i<=NF;i++) { split($i,kv,"="); v[kv[1]]=kv[2] } g_rps+=v["rps"]; g50+=v["p50_us"]; g99+=v["p99_us"]; e+=v["errors"] }
  /^paid/    { for (i=1;i<=NF;i++) { split($i,kv,"="); v[kv[1]]=kv[2] } p_rps+=v["rps"]; p50+=v["p50_us"]; p99+=v["p99_us"]; pe+=v["errors"] }
  /^gateway/ { gc+=v["gateway_cpu_us"] } /^paid/ { pc+=v["gateway_cpu_us"] } /^direct/ { uc+=v["upstream_cpu_us"] }
  END {
    printf "CPU per request: upstream (direct) %.0f us, gateway free %.0f us, gateway paid %.0f us\n", uc/n, gc/n, pc/n
    printf "direct:  %.0f req/s  p50 %.0f us  p99 %.0f us\n", d_rps/n, d50/n, d99/n
    printf "gateway: %.0f req/s  p50 %.0f us  p99 %.0f us  (errors %d)\n", g_rps/n, g50/n, g99/n, e
    printf "paid:    %.0f req/s  p50 %.0f us  p99 %.0f us  (errors %d)\n", p_rps/n, p50/n, p99/n, pe
    printf "throughput ratio gateway/direct: %.1f%%   added p50: %.0f us   added p99: %.0f us\n", 100*g_rps/d_rps, (g50-d50)/n, (g99-d99)/n
    printf "paid vs free through the gateway: throughput %.1f%%   added p50: %.0f us   added p99: %.0f us\n", 100*p_rps/g_rps, (p50-g50)/n, (p99-g99)/n
  }'
done
# Every paid call was charged: the allowance shows what was captured and settled.
curl -sf "http://127.0.0.1:$PORT/v1/services/demo-paid/allowance" -H "authorization: Bearer $token"; echo
