#!/usr/bin/env bash
# The documents scenario of `make bench`: a fresh herald with the documents
# plugin (data in a temporary directory), 10,000 rooms with mixed filters
# over 1,000 connections, writers streaming createOrReplace through the
# client API. Prints writes/s, notifications/s, write→notification p50/p99.
#
#   bash cmd/documents-bench/bench.sh
#   DURATION=5s WRITERS=4 bash cmd/documents-bench/bench.sh
#   ACTION=publish bash cmd/documents-bench/bench.sh   # realtime messages: no storage
set -euo pipefail
cd "$(dirname "$0")/../.."

ADDR=${BENCH_ADDR:-127.0.0.1:17513}
OUT=${BENCH_OUT:-$(mktemp -d)}
mkdir -p "$OUT"
SECRET=bench-secret

go build -o bin/herald ./cmd/herald
go build -o bin/plugins/documents ./plugins/documents
go build -o bin/documents-bench ./cmd/documents-bench

# calls_per_second is raised: the writers are a handful of connections
# carrying the whole write stream.
cat > "$OUT/herald.hcl" <<EOF2
server {
  listen = "$ADDR"
}
auth {
  token_secret = "$SECRET"
  api_keys     = ["bench-key"]
}
limits {
  calls_per_second  = 1000000
  max_subscriptions = 1000
}
log {
  level = "warn"
}
plugin "documents" {
  command = "bin/plugins/documents"
  env     = { HERALD_PLUGIN_CPUPROFILE = "${PLUGIN_CPUPROFILE:-}" }
  config {
    data_dir = "$OUT/data"
  }
}
EOF2

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

bin/herald serve -config "$OUT/herald.hcl" 2>>"$OUT/herald.log" &
HERALD_PID=$!
for _ in $(seq 100); do
  curl -fsS "http://$ADDR/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://$ADDR/readyz" >/dev/null || { echo "herald did not come up; see $OUT/herald.log" >&2; exit 1; }

echo "documents-bench: $(nproc) CPUs, $(go version | cut -d' ' -f3), load $(cut -d' ' -f1 /proc/loadavg), results in $OUT"
bin/documents-bench -url "ws://$ADDR/ws" -secret "$SECRET" \
  -clients "${CLIENTS:-1000}" -rooms "${ROOMS:-10000}" -writers "${WRITERS:-8}" -duration "${DURATION:-10s}" -action "${ACTION:-createOrReplace}" | tee "$OUT/run.log"
echo "load after: $(cut -d' ' -f1 /proc/loadavg)"
