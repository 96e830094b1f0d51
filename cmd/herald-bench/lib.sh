# Shared by bench.sh and pair.sh (sourced, not run): starting and stopping
# the server processes they measure.

# stop_pid PID: TERM, up to 10 s to drain, then KILL.
stop_pid() {
  local pid=$1
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# wait_ready URL LOG PID: until URL answers 200 (herald's /readyz: its
# broker reachable, plugins running), at most 30 s. Ends the script,
# pointing at LOG, when the process PID exits first or time runs out.
wait_ready() {
  local url=$1 log=$2 pid=$3
  for _ in $(seq 300); do
    curl -fsS "$url" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "no answer from $url; see $log" >&2
  curl -sS "$url" >&2 || true
  exit 1
}

# The bench config: defaults everywhere except the log level (a warning per
# connection would be noise). delivery {} is spelled out because these are
# the knobs that shape the figures: max_delay is the batching window,
# outbox_limit the slow-consumer bound that a 100 % delivery must not hit.
# write_config FILE LISTEN [BROKER-BLOCK] (reads SECRET, KEY and the
# BENCH_MAX_DELAY, BENCH_WRITERS and BENCH_IO_URING knobs)
write_config() {
  cat > "$1" <<EOF
server {
  listen = "$2"
}
${3:-}
auth {
  token_secret = "$SECRET"
  api_keys     = ["$KEY"]
}
delivery {
  max_batch    = 128
  max_delay    = "${BENCH_MAX_DELAY:-2ms}"
  outbox_limit = 4096
  writers      = ${BENCH_WRITERS:-0}
  io_uring     = ${BENCH_IO_URING:-true}
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
}
