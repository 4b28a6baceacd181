#!/usr/bin/env bash
# Runs the standard benchmark scenarios of BENCHMARKS.md: a fresh broker
# (embedded durable bus, fresh --eventdb) per scenario, driven by vtp-load on
# the same machine. Usage: scripts/bench.sh [scenario...]
#   scenarios: c32 (c=32, no subscribers), m10, m50 (c=32 with 10 / 50
#   subscribers), paced (250 events/s with 50 subscribers), cmd / nocmd
#   (200 events at 250/s to 50 subscribers with / without a --cmd that
#   sleeps 1 s, pool 8; reports when the last command finished)
set -euo pipefail
cd "$(dirname "$0")/.."
WORKLOAD=${WORKLOAD:-testdata/bench/gbm_flt_pos_v20.xml}
BIN=$(mktemp -d)
trap 'rm -rf "$BIN"' EXIT
go build -o "$BIN/" ./cmd/comet ./cmd/vtp-load

BROKER_ARGS=()
run() { # name, vtp-load args...
  local name=$1; shift
  local db; db=$(mktemp -d)
  "$BIN/comet" --receive tcp:18098:interface=127.0.0.1 --broadcast tcp:18099:interface=127.0.0.1 \
    --local-ivo ivo://bench.broker/comet --eventdb "$db" --broadcast-test-interval 0 -q \
    "${BROKER_ARGS[@]}" > "$db.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/18098) 2>/dev/null && break; sleep 0.05; done
  echo "== $name: vtp-load $*"
  local t0; t0=$(date +%s.%N)
  "$BIN/vtp-load" -receive 127.0.0.1:18098 -broadcast 127.0.0.1:18099 -file "$WORKLOAD" -pid "$pid" "$@" || true
  if [ -n "${WAIT_FILE:-}" ]; then # wait for handlers before stopping the broker
    for _ in $(seq 120); do [ "$(wc -l < "$WAIT_FILE" 2>/dev/null || echo 0)" -ge "$WAIT_LINES" ] && break; sleep 0.5; done
    echo "handlers finished: $(wc -l < "$WAIT_FILE") in $(echo "$(tail -1 "$WAIT_FILE") - $t0" | bc) s"
  fi
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
    nocmd) run nocmd -n 200 -c 8 -m 50 -rate 250 ;;
    cmd)
      done_log=$BIN/cmd-done.log
      printf '#!/bin/sh\ncat > /dev/null\nsleep 1\ndate +%%s.%%N >> %s\n' "$done_log" > "$BIN/sleep1.sh"
      chmod +x "$BIN/sleep1.sh"
      BROKER_ARGS=(--cmd "$BIN/sleep1.sh" --cmd-pool 8)
      WAIT_FILE=$done_log WAIT_LINES=200 run cmd -n 200 -c 8 -m 50 -rate 250
      BROKER_ARGS=() ;;
    *) echo "unknown scenario $s" >&2; exit 2 ;;
  esac
done
