#!/usr/bin/env bash
# make bench-pair: the load scenarios on herald and on Centrifugo v6.9.1 in
# the same run, with the same generator (herald-bench, -server centrifugo for
# Centrifugo: its JSON client protocol and HTTP API), so that every figure
# is a ratio measured under the same conditions. For each scenario: a fresh
# herald, herald-bench, stop; a fresh Centrifugo, the same herald-bench
# flags, stop. Prints one table with both servers and herald's figures as a
# ratio of Centrifugo's (herald-bench -pair-table).
#
#   bash cmd/herald-bench/pair.sh
#   PAIR_SCENARIOS="a c" PAIR_DURATION=3s bash cmd/herald-bench/pair.sh
#   PAIR_READER=gorilla bash cmd/herald-bench/pair.sh   # a goroutine per client instead of epoll
#
# Scenarios are bench.sh's (a, b, b5, c, d, d19): b5 is b at 5 publishes/s, d19
# is d at 19,500 idle connections (the open-file limit), not in the default set.
# Centrifugo is built into bin/centrifugo from the module proxy if it is
# missing (go install github.com/centrifugal/centrifugo/v6@v6.9.1, a few
# minutes). Every phase of herald-bench has a timeout, a server that does
# not come up within 30 s ends the run, and every process started here is
# stopped (then killed) when its scenario ends or the script is
# interrupted.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=cmd/herald-bench/lib.sh
source cmd/herald-bench/lib.sh

HERALD_ADDR=${PAIR_HERALD_ADDR:-127.0.0.1:17512}
CENTRIFUGO_HOST=127.0.0.1
CENTRIFUGO_PORT=${PAIR_CENTRIFUGO_PORT:-18000}
CENTRIFUGO_VERSION=v6.9.1
SCENARIOS=${PAIR_SCENARIOS:-"a b b5 c d"}
DURATION=${PAIR_DURATION:-10s}
READER=${PAIR_READER:-epoll}
OUT=${BENCH_OUT:-$(mktemp -d)}
mkdir -p "$OUT"
SECRET=bench-secret
KEY=bench-key

go build -o bin/herald ./cmd/herald
go build -o bin/herald-bench ./cmd/herald-bench
# A build from the module proxy says "v0.0.0" to `centrifugo version` (the
# release sets it at link time); its module version is in the binary.
if [[ ! -x bin/centrifugo ]] || ! go version -m bin/centrifugo 2>/dev/null | grep -q "centrifugo/v6[[:space:]]*$CENTRIFUGO_VERSION"; then
  echo "building Centrifugo $CENTRIFUGO_VERSION into bin/ (a few minutes)"
  GOBIN="$PWD/bin" go install "github.com/centrifugal/centrifugo/v6@$CENTRIFUGO_VERSION"
fi
# Up to 19,500 clients in scenario d19: the servers need the open files.
ulimit -n "$(ulimit -Hn)"

# herald's config is bench.sh's (lib.sh), so that these herald rows compare
# with make bench's.
write_config "$OUT/herald.hcl" "$HERALD_ADDR"

# Centrifugo's: its defaults but for what a run needs. The token secret and
# API key are herald's; clients may subscribe to channels without a
# namespace (bench, bench-N) with their connection token; no history (the
# default, spelled out: herald keeps none either in these runs); the health
# endpoint to know when it is up; warnings only in its log.
cat > "$OUT/centrifugo.json" <<EOF
{
  "http_server": {"address": "$CENTRIFUGO_HOST", "port": $CENTRIFUGO_PORT},
  "log": {"level": "warn"},
  "health": {"enabled": true},
  "client": {"token": {"hmac_secret_key": "$SECRET"}},
  "http_api": {"key": "$KEY"},
  "channel": {
    "without_namespace": {
      "allow_subscribe_for_client": true,
      "history_size": 0
    }
  }
}
EOF

SERVER_PID=
stop_server() {
  [[ -n "$SERVER_PID" ]] && stop_pid "$SERVER_PID"
  SERVER_PID=
}
trap 'stop_server' EXIT
trap 'exit 130' INT TERM

# start SERVER: a fresh server process; sets SERVER_PID and SERVER_URL.
SERVER_URL=
start() {
  case $1 in
    herald)
      bin/herald serve -config "$OUT/herald.hcl" 2>>"$OUT/herald.log" &
      SERVER_PID=$!
      SERVER_URL="http://$HERALD_ADDR"
      wait_ready "$SERVER_URL/readyz" "$OUT/herald.log" "$SERVER_PID"
      ;;
    centrifugo)
      bin/centrifugo -c "$OUT/centrifugo.json" >>"$OUT/centrifugo.log" 2>&1 &
      SERVER_PID=$!
      SERVER_URL="http://$CENTRIFUGO_HOST:$CENTRIFUGO_PORT"
      wait_ready "$SERVER_URL/health" "$OUT/centrifugo.log" "$SERVER_PID"
      # Centrifugo ignores a key it does not know, with a warning: a
      # misspelt key would silently measure its default instead.
      if grep -q '"unknown key' "$OUT/centrifugo.log"; then
        grep '"unknown key' "$OUT/centrifugo.log" >&2
        exit 1
      fi
      ;;
  esac
}

# scenario S: bench.sh's scenario S with PAIR_DURATION of publishing.
scenario() {
  case $1 in
    a) echo "-mode broadcast -clients 1000 -rate 200 -duration $DURATION" ;;
    b) echo "-mode broadcast -clients 10000 -rate 20 -duration $DURATION" ;;
    b5) echo "-mode broadcast -clients 10000 -rate 5 -duration $DURATION" ;;
    c) echo "-mode personal -clients 10000 -rate 2000 -duration $DURATION" ;;
    d) echo "-mode broadcast -clients 15000 -rate 0 -settle 5s" ;;
    d19) echo "-mode broadcast -clients 19500 -rate 0 -settle 5s" ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}

echo "bench-pair: herald against Centrifugo $CENTRIFUGO_VERSION, $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(go version | cut -d' ' -f3), reader $READER, load $(cut -d' ' -f1-3 /proc/loadavg), results in $OUT"

for s in $SCENARIOS; do
  scenario "$s" >/dev/null
  for server in herald centrifugo; do
    echo "== scenario $s on $server"
    start "$server"
    # shellcheck disable=SC2046
    bin/herald-bench -server "$server" -url "$SERVER_URL" -pid "$SERVER_PID" -key "$KEY" -secret "$SECRET" -reader "$READER" \
      $(scenario "$s") -name "$s $server" | tee "$OUT/run.log"
    cat "$OUT/run.log" >>"$OUT/runs.log"
    tail -n 1 "$OUT/run.log" >>"$OUT/results.jsonl"
    stop_server
    sleep 2 # let the closed sockets of this run leave the ephemeral port range
  done
done
echo
bin/herald-bench -pair-table "$OUT/results.jsonl"
