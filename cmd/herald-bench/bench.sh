#!/usr/bin/env bash
# The standard load scenarios of docs/performance.md against a real herald
# over loopback: build, write a bench config, and for each scenario start a
# fresh herald (so that memory and CPU figures are its own), run
# herald-bench with herald's PID, stop herald. Prints a table at the end.
#
#   bash cmd/herald-bench/bench.sh                 # all the scenarios
#   SCENARIOS="a c" RUNS=2 bash cmd/herald-bench/bench.sh
#   PPROF=127.0.0.1:6060 SCENARIOS=b bash cmd/herald-bench/bench.sh   # profile while it runs
#
# Everything is bounded: each herald-bench phase has a timeout, and herald is
# stopped (then killed) when a scenario ends or the script is interrupted.
set -euo pipefail
cd "$(dirname "$0")/../.."

ADDR=${BENCH_ADDR:-127.0.0.1:17512}
SCENARIOS=${SCENARIOS:-"a b c c-ws d"}
RUNS=${RUNS:-1}
OUT=${BENCH_OUT:-$(mktemp -d)}
mkdir -p "$OUT"
SECRET=bench-secret
KEY=bench-key

go build -o bin/herald ./cmd/herald
go build -o bin/herald-bench ./cmd/herald-bench

# The bench config: defaults everywhere except the log level (a warning per
# connection would be noise). delivery {} is spelled out because these are
# the knobs that shape the figures: max_delay is the batching window,
# outbox_limit the slow-consumer bound that a 100 % delivery must not hit.
cat > "$OUT/herald.hcl" <<EOF
server {
  listen = "$ADDR"
}
auth {
  token_secret = "$SECRET"
  api_keys     = ["$KEY"]
}
delivery {
  max_batch    = 128
  max_delay    = "${BENCH_MAX_DELAY:-2ms}"
  outbox_limit = 4096
  writers      = ${BENCH_WRITERS:-0}
}
limits {
  max_subscriptions = 1000
}
overload {
  busy_connections = 50000
}
log {
  level = "warn"
}
EOF

HERALD_PID=
stop_herald() {
  if [[ -n "$HERALD_PID" ]] && kill -0 "$HERALD_PID" 2>/dev/null; then
    kill -TERM "$HERALD_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$HERALD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$HERALD_PID" 2>/dev/null || true
    wait "$HERALD_PID" 2>/dev/null || true
  fi
  HERALD_PID=
}
trap stop_herald EXIT INT TERM

start_herald() {
  local args=(serve -config "$OUT/herald.hcl")
  [[ -n "${PPROF:-}" ]] && args+=(-pprof "$PPROF")
  bin/herald "${args[@]}" 2>>"$OUT/herald.log" &
  HERALD_PID=$!
  for _ in $(seq 100); do
    curl -fsS "http://$ADDR/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "herald did not come up; see $OUT/herald.log" >&2
  exit 1
}

scenario() {
  case $1 in
    a) echo "-name a -mode broadcast -clients 1000 -rate 200 -duration 10s" ;;
    b) echo "-name b -mode broadcast -clients 10000 -rate 20 -duration 10s" ;;
    c) echo "-name c -mode personal -clients 10000 -rate 2000 -duration 10s" ;;
    # c over one pipelined publishing WebSocket (-publish ws) instead of HTTP/1.1 requests
    c-ws) echo "-name c-ws -mode personal -clients 10000 -rate 2000 -duration 10s -publish ws" ;;
    d) echo "-name d -mode broadcast -clients 15000 -rate 0 -settle 5s" ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}

echo "herald-bench: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(go version | cut -d' ' -f3), results in $OUT"
for s in $SCENARIOS; do
  for r in $(seq "$RUNS"); do
    echo "== scenario $s, run $r"
    start_herald
    # shellcheck disable=SC2046
    bin/herald-bench -url "http://$ADDR" -key "$KEY" -secret "$SECRET" -pid "$HERALD_PID" $(scenario "$s") \
      | tee "$OUT/run.log"
    cat "$OUT/run.log" >>"$OUT/runs.log"
    tail -n 1 "$OUT/run.log" >>"$OUT/results.jsonl"
    stop_herald
    sleep 2 # let the closed sockets of this run leave the ephemeral port range
  done
done
echo
bin/herald-bench -table "$OUT/results.jsonl"
