#!/usr/bin/env bash
# The standard load scenarios of docs/performance.md against a real herald
# over loopback: build, write a bench config, and for each scenario start a
# fresh herald (so that memory and CPU figures are its own), run
# herald-bench with herald's PID, stop herald. Prints a table at the end.
#
#   bash cmd/herald-bench/bench.sh                 # all the scenarios
#   SCENARIOS="a c" RUNS=2 bash cmd/herald-bench/bench.sh
#   PPROF=127.0.0.1:6060 SCENARIOS=b bash cmd/herald-bench/bench.sh   # profile while it runs
#   SCENARIOS=b5 BENCH_WRITERS=2 BENCH_FLAGS="-duration 5s" bash cmd/herald-bench/bench.sh
#     (b5: b at 5 publishes/s; BENCH_FLAGS are added to each scenario's flags, later ones win)
#   SCENARIOS=a BENCH_IO_URING=false bash cmd/herald-bench/bench.sh   # write(2) per socket, no io_uring
#   SCENARIOS=d19 bash cmd/herald-bench/bench.sh   # 19,500 idle connections (issue #18)
#
# CLUSTER=1 (make bench-cluster) runs the cluster comparison instead: for
# each of CLUSTER_SCENARIOS (default "a c"), a fresh NATS server with
# JetStream and three herald nodes on broker "nats", clients and publishes
# spread over the nodes; then (SPLIT=1, the default) the same with the
# first node taking every publish and the other two every client, which
# shows publishing and delivering costs apart; then one herald on the
# memory broker. One table holds every row, a second breaks the cluster
# rows down per process (each herald node, NATS).
#
#   CLUSTER=1 bash cmd/herald-bench/bench.sh
#   CLUSTER=1 CLUSTER_SCENARIOS="a b c" CLUSTER_DURATION=5s SPLIT=0 bash cmd/herald-bench/bench.sh
#
# Everything is bounded: each herald-bench phase has a timeout, and every
# process started here (herald nodes, NATS) is stopped (then killed) when a
# scenario ends or the script is interrupted.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=cmd/herald-bench/lib.sh
source cmd/herald-bench/lib.sh

ADDR=${BENCH_ADDR:-127.0.0.1:17512}
SCENARIOS=${SCENARIOS:-"a b c c-ws d"}
RUNS=${RUNS:-1}
OUT=${BENCH_OUT:-$(mktemp -d)}
mkdir -p "$OUT"
SECRET=bench-secret
KEY=bench-key
CLUSTER=${CLUSTER:-0}
CLUSTER_SCENARIOS=${CLUSTER_SCENARIOS:-"a c"}
CLUSTER_DURATION=${CLUSTER_DURATION:-10s}
CLUSTER_NODES=${CLUSTER_NODES:-3}
# The cluster's herald nodes listen on CLUSTER_PORT, CLUSTER_PORT+1, ...
CLUSTER_PORT=${CLUSTER_PORT:-17521}
SPLIT=${SPLIT:-1}

go build -o bin/herald ./cmd/herald
go build -o bin/herald-bench ./cmd/herald-bench
if [[ "$CLUSTER" == 1 ]]; then
  # nats-server is a tool dependency in go.mod: built from the module cache.
  go build -o bin/nats-server github.com/nats-io/nats-server/v2
fi

write_config "$OUT/herald.hcl" "$ADDR"

HERALD_PID=
NODE_PIDS=()
NATS_PID=
NATS_DIR=
stop_herald() {
  [[ -n "$HERALD_PID" ]] && stop_pid "$HERALD_PID"
  HERALD_PID=
}
# The herald nodes go first, so that none of them sees NATS leave.
stop_cluster() {
  local pid
  for pid in "${NODE_PIDS[@]}"; do stop_pid "$pid"; done
  NODE_PIDS=()
  [[ -n "$NATS_PID" ]] && stop_pid "$NATS_PID"
  NATS_PID=
  [[ -n "$NATS_DIR" ]] && rm -rf "$NATS_DIR"
  NATS_DIR=
}
trap 'stop_herald; stop_cluster' EXIT
trap 'exit 130' INT TERM

start_herald() {
  local args=(serve -config "$OUT/herald.hcl")
  [[ -n "${PPROF:-}" ]] && args+=(-pprof "$PPROF")
  bin/herald "${args[@]}" 2>>"$OUT/herald.log" &
  HERALD_PID=$!
  wait_ready "http://$ADDR/readyz" "$OUT/herald.log" "$HERALD_PID"
}

# start_nats: a fresh NATS server with JetStream in a temporary directory,
# on 127.0.0.1 and a port it picks (read from its ports file), with bounded
# stores (the runs write a few tens of MB).
NATS_URL=
start_nats() {
  NATS_DIR=$(mktemp -d "$OUT/nats.XXXXXX")
  cat > "$NATS_DIR/nats.conf" <<EOF
host: 127.0.0.1
port: -1
server_name: herald-bench
ports_file_dir: "$NATS_DIR"
jetstream {
  store_dir: "$NATS_DIR/js"
  max_memory_store: 256MB
  max_file_store: 2GB
}
EOF
  bin/nats-server -c "$NATS_DIR/nats.conf" 2>>"$OUT/nats.log" &
  NATS_PID=$!
  NATS_URL=
  local ports="$NATS_DIR/nats-server_$NATS_PID.ports"
  for _ in $(seq 100); do
    if [[ -s "$ports" ]]; then
      NATS_URL=$(grep -o 'nats://[0-9.]*:[0-9]*' "$ports" | head -n 1 || true)
      [[ -n "$NATS_URL" ]] && return 0
    fi
    kill -0 "$NATS_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "nats-server did not come up; see $OUT/nats.log" >&2
  exit 1
}

# start_cluster: NATS, then CLUSTER_NODES herald nodes on it, each ready.
NODE_URLS=
start_cluster() {
  start_nats
  local i urls=() host=${ADDR%:*}
  for i in $(seq 0 $((CLUSTER_NODES - 1))); do
    write_config "$OUT/node$i.hcl" "$host:$((CLUSTER_PORT + i))" "broker \"nats\" {
  url = \"$NATS_URL\"
}"
    bin/herald serve -config "$OUT/node$i.hcl" 2>>"$OUT/node$i.log" &
    NODE_PIDS+=($!)
    urls+=("http://$host:$((CLUSTER_PORT + i))")
  done
  for i in $(seq 0 $((CLUSTER_NODES - 1))); do
    wait_ready "http://$host:$((CLUSTER_PORT + i))/readyz" "$OUT/node$i.log" "${NODE_PIDS[$i]}"
  done
  NODE_URLS=$(IFS=,; echo "${urls[*]}")
}

scenario() {
  case $1 in
    a) echo "-name a -mode broadcast -clients 1000 -rate 200 -duration 10s" ;;
    b) echo "-name b -mode broadcast -clients 10000 -rate 20 -duration 10s" ;;
    # b at 5 publishes/s: one publication's fan-out to 10,000 rather than a queue
    b5) echo "-name b5 -mode broadcast -clients 10000 -rate 5 -duration 10s" ;;
    c) echo "-name c -mode personal -clients 10000 -rate 2000 -duration 10s" ;;
    # c over one pipelined publishing WebSocket (-publish ws) instead of HTTP/1.1 requests
    c-ws) echo "-name c-ws -mode personal -clients 10000 -rate 2000 -duration 10s -publish ws" ;;
    d) echo "-name d -mode broadcast -clients 15000 -rate 0 -settle 5s" ;;
    # d at the machine's open-file limit (20,000 a process): issue #18's idle
    # measurement; not in the default set (it takes a minute to connect)
    d19) echo "-name d19 -mode broadcast -clients 19500 -rate 0 -settle 5s" ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}

# cluster_scenario S: scenario S for the cluster comparison, publishing for
# CLUSTER_DURATION after a warm-up (one publish to every channel, not
# counted: on NATS a channel's first publish reads its position and records
# its run, which c's 10,000 channels would otherwise pay in the measured
# phase), with 30 s for the warm-up's and the run's deliveries to come in;
# b is cut to 3,000 clients so that three nodes, NATS and the generator fit
# the machine. Later flags override earlier ones.
cluster_scenario() {
  echo "$(scenario "$1") -duration $CLUSTER_DURATION -warmup -drain 30s"
  [[ "$1" == b ]] && echo "-clients 3000"
  return 0
}

# bench ARGS...: one herald-bench run; its summary goes to results.jsonl.
bench() {
  bin/herald-bench -key "$KEY" -secret "$SECRET" "$@" | tee "$OUT/run.log"
  cat "$OUT/run.log" >>"$OUT/runs.log"
  tail -n 1 "$OUT/run.log" >>"$OUT/results.jsonl"
}

echo "herald-bench: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(go version | cut -d' ' -f3), load $(cut -d' ' -f1-3 /proc/loadavg), results in $OUT"

if [[ "$CLUSTER" == 1 ]]; then
  for s in $CLUSTER_SCENARIOS; do
    if [[ "$s" == d ]]; then
      echo "scenario d publishes nothing: left out of the cluster comparison" >&2
      continue
    fi
    for r in $(seq "$RUNS"); do
      echo "== scenario $s, run $r: $CLUSTER_NODES nodes on NATS"
      start_cluster
      # shellcheck disable=SC2046
      bench -url "$NODE_URLS" -pid "$(IFS=,; echo "${NODE_PIDS[*]}")" -nats-pid "$NATS_PID" \
        $(cluster_scenario "$s") -name "$s $CLUSTER_NODES nodes nats"
      stop_cluster
      sleep 2 # let the closed sockets of this run leave the ephemeral port range
      if [[ "$SPLIT" == 1 ]]; then
        echo "== scenario $s, run $r: $CLUSTER_NODES nodes on NATS, node 0 publishing, the others delivering"
        start_cluster
        # shellcheck disable=SC2046
        bench -url "$NODE_URLS" -pid "$(IFS=,; echo "${NODE_PIDS[*]}")" -nats-pid "$NATS_PID" -split \
          $(cluster_scenario "$s") -name "$s $CLUSTER_NODES nodes nats split"
        stop_cluster
        sleep 2
      fi
      echo "== scenario $s, run $r: 1 node, memory broker"
      start_herald
      # shellcheck disable=SC2046
      bench -url "http://$ADDR" -pid "$HERALD_PID" $(cluster_scenario "$s") -name "$s 1 node memory"
      stop_herald
      sleep 2
    done
  done
  echo
  bin/herald-bench -table "$OUT/results.jsonl"
  exit 0
fi

for s in $SCENARIOS; do
  for r in $(seq "$RUNS"); do
    echo "== scenario $s, run $r"
    start_herald
    # shellcheck disable=SC2046
    bench -url "http://$ADDR" -pid "$HERALD_PID" $(scenario "$s") ${BENCH_FLAGS:-}
    stop_herald
    sleep 2 # let the closed sockets of this run leave the ephemeral port range
  done
done
echo
bin/herald-bench -table "$OUT/results.jsonl"
