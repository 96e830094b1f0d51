#!/usr/bin/env bash
# The plugin path end to end (docs/performance.md, "Plugin path"): for each
# scenario a fresh herald with the emitter test plugin, WebSocket clients
# subscribed over loopback, and the plugin emitting through the SDK; then
# core/pluginhost's BenchmarkEmit (the same emit shapes into a recording
# Core, no broker, hub or clients) in the same run, and a table with the
# ratio of the two, by rate and by CPU per notification.
#
#   bash cmd/plugin-bench/bench.sh                        # make bench-plugin
#   SCENARIOS="single batched" bash cmd/plugin-bench/bench.sh
#   PPROF=127.0.0.1:6061 SCENARIOS=single bash cmd/plugin-bench/bench.sh
#   PLUGIN_CPUPROFILE=/tmp/emitter.prof SCENARIOS=single bash cmd/plugin-bench/bench.sh
#   READER=gorilla bash cmd/plugin-bench/bench.sh          # a goroutine and gorilla's reader per client
#
# Bounded: every scenario emits a fixed count, the driver waits at most
# -drain for deliveries, and herald is stopped (then killed) when a
# scenario ends or the script is interrupted.
set -euo pipefail
cd "$(dirname "$0")/../.."

ADDR=${BENCH_ADDR:-127.0.0.1:17514}
SCENARIOS=${SCENARIOS:-"single batched paced fanout"}
RECORDER_N=${RECORDER_N:-300000}
OUT=${BENCH_OUT:-$(mktemp -d)}
mkdir -p "$OUT"
SECRET=bench-secret
KEY=bench-key

go build -o bin/herald ./cmd/herald
go build -o bin/plugin-bench ./cmd/plugin-bench
go build -o bin/plugin-bench-emitter ./internal/testplugins/emitter

# Defaults everywhere except the log level; delivery {} spelled out as in
# cmd/herald-bench/bench.sh, since these knobs shape the figures.
cat > "$OUT/herald.hcl" <<EOF2
server {
  listen = "$ADDR"
}
auth {
  token_secret = "$SECRET"
  api_keys     = ["$KEY"]
}
delivery {
  max_batch    = 128
  max_delay    = "2ms"
  outbox_limit = 4096
  io_uring     = ${BENCH_IO_URING:-true}
}
log {
  level = "warn"
}
plugin "emitter" {
  command = "$PWD/bin/plugin-bench-emitter"
  env     = { HERALD_PLUGIN_CPUPROFILE = "${PLUGIN_CPUPROFILE:-}" }
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

start_herald() {
  local args=(serve -config "$OUT/herald.hcl")
  [[ -n "${PPROF:-}" ]] && args+=(-pprof "$PPROF")
  bin/herald "${args[@]}" 2>>"$OUT/herald.log" &
  HERALD_PID=$!
  for _ in $(seq 100); do
    curl -fsS "http://$ADDR/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "herald did not come up ready; see $OUT/herald.log" >&2
  exit 1
}

# The emit shapes of single and batched are BenchmarkEmit's (512 goroutines
# with one notification per Emit; 8 with 100 each), so that the ratio
# compares like with like. One client per channel: delivered = emitted.
# paced and fanout emit at a set rate, for latency below saturation; fanout
# has ten clients per channel (each emit is ten deliveries). Every scenario
# first emits as many again, unmeasured (-warmup; WARMUP=N sets another
# count, WARMUP=0 none), as BenchmarkEmit warms the recorder: the figures are
# a running herald's, and the warm-up's own (a fresh herald's) are printed
# beside them.
scenario() {
  local args
  case $1 in
    single)  args="-workers 512 -per 1 -clients 100 -channels 100 -count 300000 -warmup 300000" ;;
    batched) args="-workers 8 -per 100 -clients 100 -channels 100 -count 600000 -warmup 600000" ;;
    paced)   args="-workers 64 -per 1 -clients 100 -channels 100 -count 100000 -rate 20000 -warmup 100000" ;;
    fanout)  args="-workers 64 -per 1 -clients 1000 -channels 100 -count 50000 -rate 10000 -warmup 50000" ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
  [[ -n "${WARMUP:-}" ]] && args+=" -warmup $WARMUP"
  echo "$args"
}

echo "plugin-bench: $(nproc) CPUs, $(go version | cut -d' ' -f3), load $(cut -d' ' -f1-3 /proc/loadavg), results in $OUT"
# The recorder first, so that it runs next to single and batched, the two
# scenarios compared with it.
echo "== recorder: core/pluginhost BenchmarkEmit, ${RECORDER_N} notifications per shape, after as many unmeasured"
go test -run '^$' -bench 'Emit$' -benchtime "${RECORDER_N}x" ./core/pluginhost/ | tee "$OUT/recorder.txt"
: >"$OUT/results.jsonl"
for s in $SCENARIOS; do
  echo "== $s"
  start_herald
  # shellcheck disable=SC2046
  bin/plugin-bench -url "http://$ADDR" -key "$KEY" -secret "$SECRET" -pid "$HERALD_PID" -reader "${READER:-epoll}" -name "$s" $(scenario "$s") \
    | tee "$OUT/run.log" || true
  tail -n 1 "$OUT/run.log" >>"$OUT/results.jsonl"
  stop_herald
done


echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
bin/plugin-bench -table "$OUT/results.jsonl" -recorder "$OUT/recorder.txt"
