#!/usr/bin/env bash
# bench-filter: Herald's filter engine and Koncorde side by side, on the
# very same generated files, both single-threaded; prints one table.
#
#   bash cmd/filterbench/bench.sh
#
# Environment:
#   SECONDS_PER_RUN  matching time per engine and size (default 5)
#   FILTER_COUNTS    comma-separated sizes (default 1000,10000,100000)
#   KONCORDE_DIR     reuse an existing npm install of koncorde 4.x there
#   HERALD_KONCORDE_RE2=native  build Koncorde's re2 (slow) instead of using its js regexp engine
#                    (its re2 dependency compiles from source when no
#                    prebuilt binary can be downloaded: minutes)
set -euo pipefail

cd "$(dirname "$0")/../.."
secs="${SECONDS_PER_RUN:-5}"
counts="${FILTER_COUNTS:-1000,10000,100000}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), go $(go env GOVERSION), node $(node --version)" >&2

go build -o "$work/filterbench" ./cmd/filterbench
go run ./cmd/filterbench/gen -out "$work/data" -filters "$counts" -docs 2000 -seed 1

kdir="${KONCORDE_DIR:-}"
if [[ -z "$kdir" ]]; then
	kdir="$work/koncorde"
fi
if [[ ! -f "$kdir/node_modules/koncorde/package.json" ]]; then
	mkdir -p "$kdir"
	cp cmd/filterbench/koncorde/package.json "$kdir/"
	echo "== npm install koncorde into $kdir" >&2
	if [[ "${HERALD_KONCORDE_RE2:-}" == native ]]; then
		(cd "$kdir" && npm install --no-audit --no-fund --loglevel=error >&2)
	else
		# Building re2 from source takes about 25 minutes on 2 cores: skip it,
		# build Koncorde's other native modules, and run Koncorde with its js
		# regexp engine (see plugins/documents/filter/testdata/koncorde_load.js).
		(cd "$kdir" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error >&2 &&
			npm rebuild --no-audit --no-fund --loglevel=error kuzzle-espresso-logic-minimizer boost-geospatial-index >&2)
	fi
fi

results="$work/results.jsonl"
IFS=, read -ra sizes <<<"$counts"
for n in "${sizes[@]}"; do
	f="$work/data/filters-$n.json"
	d="$work/data/docs.json"
	echo "== $n filters: herald" >&2
	"$work/filterbench" -filters "$f" -docs "$d" -seconds "$secs" | tee -a "$results" >&2
	echo "== $n filters: koncorde" >&2
	NODE_PATH="$kdir/node_modules" node --expose-gc --max-old-space-size=8192 \
		cmd/filterbench/koncorde/filterbench.js -filters "$f" -docs "$d" -seconds "$secs" | tee -a "$results" >&2
done

"$work/filterbench" -table "$results"
