#!/usr/bin/env bash
# Runs the standard benchmark scenarios of BENCHMARKS.md: a fresh broker
# (embedded durable bus, fresh --eventdb) per scenario, driven by vtp-load on
# the same machine. Usage: scripts/bench.sh [scenario...]
#   scenarios: c32 (c=32, no subscribers), m10, m50 (c=32 with 10 / 50
#   subscribers), paced (250 events/s with 50 subscribers)
set -euo pipefail
cd "$(dirname "$0")/.."
WORKLOAD=${WORKLOAD:-../shared/testdata/bench/gbm_flt_pos_v20.xml}
BIN=$(mktemp -d)
trap 'rm -rf "$BIN"' EXIT
go build -o "$BIN/" ./cmd/comet ./cmd/vtp-load

run() { # name, vtp-load args...
  local name=$1; shift
  local db; db=$(mktemp -d)
  "$BIN/comet" --receive tcp:18098:interface=127.0.0.1 --broadcast tcp:18099:interface=127.0.0.1 \
    --local-ivo ivo://bench.broker/comet --eventdb "$db" --broadcast-test-interval 0 -q \
    > "$db.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/18098) 2>/dev/null && break; sleep 0.05; done
  echo "== $name: vtp-load $*"
  "$BIN/vtp-load" -receive 127.0.0.1:18098 -broadcast 127.0.0.1:18099 -file "$WORKLOAD" -pid "$pid" "$@" || true
  kill -TERM "$pid"; wait "$pid" || true
  rm -rf "$db" "$db.log"
}

scenarios=${*:-c32 m10 m50 paced}
for s in $scenarios; do
  case $s in
    c32)   run c32 -n 30000 -c 32 -m 0 ;;
    m10)   run m10 -n 20000 -c 32 -m 10 ;;
    m50)   run m50 -n 10000 -c 32 -m 50 ;;
    paced) run paced -n 5000 -c 32 -m 50 -rate 250 ;;
    *) echo "unknown scenario $s" >&2; exit 2 ;;
  esac
done
