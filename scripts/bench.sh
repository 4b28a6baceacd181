#!/usr/bin/env bash
# Runs the benchmark scenarios of BENCHMARKS.md and prints the target table:
# every figure of this build next to the null broker's (vtp-load
# -null-broker: frames, acks and forwards, nothing else) measured in the
# same run on the same machine, the ratio, and with -b the same figures of
# another git revision (A/B). Builds are interleaved within each run (null,
# this, base; the next run in reverse order), each scenario with a fresh
# broker and a fresh store (embedded durable bus), driven by vtp-load with
# the standard workload.
#
# Usage: scripts/bench.sh [-r RUNS] [-b REV] [-o DIR] [scenario...]
#   -r RUNS  runs of every scenario (default 2: the targets must hold twice)
#   -b REV   also measure comet built from git revision REV (A/B)
#   -o DIR   keep the reports there (default: a temporary directory)
#   scenarios (default: all but cmd and nocmd):
#     c32    30,000 events from 32 concurrent authors, no subscribers
#     m10    20,000 events, 32 authors, 10 subscribers
#     m50    10,000 events, 32 authors, 50 subscribers
#     paced  5,000 events at 250/s from 32 authors, 50 subscribers
#     m10k   200 events at 100/s to 10,000 subscribers
#     ext1   c32 against one comet --receive on an external nats-server
#     ext2   the same server, two comet --receive, 16 authors each
#     cmd / nocmd  200 events at 250/s to 50 subscribers with / without a
#            --cmd that sleeps 1 s (pool 8); reports when the last finished
#            (this build only, outside the table)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=2 BASE="" OUT=""
while getopts "r:b:o:" opt; do
  case $opt in
    r) RUNS=$OPTARG ;;
    b) BASE=$OPTARG ;;
    o) OUT=$OPTARG ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
scenarios=${*:-c32 m10 m50 paced m10k ext1 ext2}
WORKLOAD=${WORKLOAD:-testdata/bench/gbm_flt_pos_v20.xml}
BIN=$(mktemp -d)
[ -n "$OUT" ] || OUT=$BIN/out
mkdir -p "$OUT"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$BIN"
}
trap cleanup EXIT

go build -o "$BIN/this/" ./cmd/comet ./cmd/vtp-load
go build -o "$BIN/" github.com/nats-io/nats-server/v2
builds=(null this)
if [ -n "$BASE" ]; then
  mkdir -p "$BIN/src-base"
  git archive "$BASE" | tar -x -C "$BIN/src-base"
  (cd "$BIN/src-base" && go build -o "$BIN/base/" ./cmd/comet)
  builds+=(base)
  echo "A/B: this build ($(git describe --always --dirty)) against $BASE ($(git rev-parse --short "$BASE"))"
fi
LOAD=$BIN/this/vtp-load
BROKER_ARGS=()
TCK=$(getconf CLK_TCK)
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); workload $WORKLOAD"

# free_port: a loopback port nothing listens on (others may run this
# script at the same time, so no fixed ports), below the ephemeral range
# that the load tool's thousands of connections draw from.
EPHEMERAL=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
free_port() {
  local p
  while :; do
    p=$((10000 + RANDOM % (EPHEMERAL - 10000)))
    (echo > "/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
# ready port: a probe submission is acked (listeners open before the bus).
ready() {
  local i
  for i in $(seq 200); do
    "$LOAD" -receive "127.0.0.1:$1" -file "$WORKLOAD" -n 1 -c 1 -m 0 -timeout 2s \
      -prefix "ivo://bench.author/probe#p$1x$RANDOM$RANDOM" > /dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "nothing acked a probe on port $1" >&2
  return 1
}
wait_port() { # port: until something listens there
  local i
  for i in $(seq 200); do
    (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on port $1" >&2
  return 1
}
cpu_ticks() { # pid...: utime+stime of the processes, in clock ticks
  local sum=0 p f
  for p in "$@"; do
    read -ra f < "/proc/$p/stat"
    sum=$((sum + f[13] + f[14]))
  done
  echo "$sum"
}
stop() { # pid...: SIGTERM, then wait
  local p
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}

# broker build recv cast dir [comet args...]: starts a broker of the build,
# sets BROKER to its pid.
broker() {
  local build=$1 recv=$2 cast=$3 dir=$4; shift 4
  if [ "$build" = null ]; then
    "$LOAD" -null-broker -receive "127.0.0.1:$recv" -broadcast "127.0.0.1:$cast" 2> "$dir/broker.log" &
  else
    "$BIN/$build/comet" --receive "tcp:$recv:interface=127.0.0.1" --broadcast "tcp:$cast:interface=127.0.0.1" \
      --local-ivo ivo://bench.broker/comet --eventdb "$dir/db" --broadcast-test-interval 0 -q \
      --max-connections 0 --max-connections-per-peer 0 "${BROKER_ARGS[@]}" "$@" > "$dir/broker.log" 2>&1 &
  fi
  BROKER=$!
  PIDS+=("$BROKER")
  ready "$recv"
}

# measure run scenario build vtp-load-args...
measure() {
  local run=$1 s=$2 build=$3; shift 3
  local dir=$OUT/$run/$s/$build recv cast
  mkdir -p "$dir"
  recv=$(free_port) cast=$(free_port)
  broker "$build" "$recv" "$cast" "$dir"
  "$LOAD" -receive "127.0.0.1:$recv" -broadcast "127.0.0.1:$cast" -file "$WORKLOAD" -pid "$BROKER" -json \
    -prefix "ivo://bench.author/load#$run-$s-$build" "$@" > "$dir/load-0.json" 2> "$dir/load-0.err" || true
  stop "$BROKER"
  rm -rf "$dir/db"
  printf '  run %s %-6s %-5s done\n' "$run" "$s" "$build"
}

# external run scenario build ingresses: one nats-server, that many comet
# --receive processes on it, 32 authors shared among them.
external() {
  local run=$1 s=$2 build=$3 n=$4 dir=$OUT/$1/$2/$3
  [ "$build" = null ] && return 0
  mkdir -p "$dir/nats"
  local np; np=$(free_port)
  printf 'listen: "127.0.0.1:%s"\njetstream { store_dir: "%s" }\n' "$np" "$dir/nats/store" > "$dir/nats/nats.conf"
  "$BIN/nats-server" -c "$dir/nats/nats.conf" > "$dir/nats/log" 2>&1 &
  local nats=$!
  PIDS+=("$nats")
  wait_port "$np"
  local all=("$nats") ports=() i
  for ((i = 0; i < n; i++)); do
    local recv; recv=$(free_port)
    "$BIN/$build/comet" --receive "tcp:$recv:interface=127.0.0.1" --local-ivo ivo://bench.broker/comet \
      --nats "nats://127.0.0.1:$np" --node "ingress-$i" --broadcast-test-interval 0 -q > "$dir/comet-$i.log" 2>&1 &
    all+=($!)
    PIDS+=($!)
    ports+=("$recv")
  done
  for p in "${ports[@]}"; do ready "$p"; done
  local cpu0 ncpu0 loads=()
  cpu0=$(cpu_ticks "${all[@]}") ncpu0=$(cpu_ticks "$nats")
  for ((i = 0; i < n; i++)); do
    "$LOAD" -receive "127.0.0.1:${ports[$i]}" -file "$WORKLOAD" -n $((30000 / n)) -c $((32 / n)) -m 0 -json \
      -prefix "ivo://bench.author/load#$run-$s-$build-$i" > "$dir/load-$i.json" 2> "$dir/load-$i.err" &
    loads+=($!)
  done
  for p in "${loads[@]}"; do wait "$p" || true; done
  echo "$(($(cpu_ticks "${all[@]}") - cpu0)) $TCK" > "$dir/cpu"
  echo "$(($(cpu_ticks "$nats") - ncpu0)) $TCK" > "$dir/cpu-nats"
  stop "${all[@]}"
  rm -rf "$dir/nats/store"
  printf '  run %s %-6s %-5s done\n' "$run" "$s" "$build"
}

scenario() { # run scenario build
  case $2 in
    c32)   measure "$@" -n 30000 -c 32 -m 0 ;;
    m10)   measure "$@" -n 20000 -c 32 -m 10 ;;
    m50)   measure "$@" -n 10000 -c 32 -m 50 ;;
    paced) measure "$@" -n 5000 -c 32 -m 50 -rate 250 ;;
    # The keep-alive tick would drop, by Comet's rule, subscribers with
    # 10 events unacked at that moment, which 10,000 of them on two cores
    # may well have: this scenario measures memory and completeness.
    m10k)
      BROKER_ARGS=(--iamalive-interval 10m)
      measure "$@" -n 200 -c 8 -m 10000 -rate 100 -settle 60s -timeout 60s
      BROKER_ARGS=() ;;
    ext1)  external "$@" 1 ;;
    ext2)  external "$@" 2 ;;
    *) echo "unknown scenario $2" >&2; exit 2 ;;
  esac
}

# cmd / nocmd: this build only, with the handler's finishing times.
handlers() {
  local s=$1 dir=$OUT/handlers/$1 recv cast args=()
  mkdir -p "$dir"
  if [ "$s" = cmd ]; then
    printf '#!/bin/sh\ncat > /dev/null\nsleep 1\ndate +%%s.%%N >> %s\n' "$dir/done.log" > "$dir/sleep1.sh"
    chmod +x "$dir/sleep1.sh"
    args=(--cmd "$dir/sleep1.sh" --cmd-pool 8)
  fi
  recv=$(free_port) cast=$(free_port)
  broker this "$recv" "$cast" "$dir" "${args[@]}"
  local t0; t0=$(date +%s.%N)
  echo "== $s: vtp-load -n 200 -c 8 -m 50 -rate 250"
  "$LOAD" -receive "127.0.0.1:$recv" -broadcast "127.0.0.1:$cast" -file "$WORKLOAD" -pid "$BROKER" \
    -n 200 -c 8 -m 50 -rate 250 || true
  if [ "$s" = cmd ]; then
    for _ in $(seq 120); do [ "$(wc -l < "$dir/done.log" 2>/dev/null || echo 0)" -ge 200 ] && break; sleep 0.5; done
    echo "handlers finished: $(wc -l < "$dir/done.log") in $(echo "$(tail -1 "$dir/done.log") - $t0" | bc) s"
  fi
  stop "$BROKER"
}

table=() extra=()
for s in $scenarios; do
  case $s in cmd|nocmd) extra+=("$s") ;; *) table+=("$s") ;; esac
done
for ((run = 1; run <= RUNS; run++)); do
  order=("${builds[@]}")
  if ((run % 2 == 0)); then
    order=()
    for ((i = ${#builds[@]} - 1; i >= 0; i--)); do order+=("${builds[$i]}"); done
  fi
  for s in "${table[@]}"; do
    for b in "${order[@]}"; do scenario "$run" "$s" "$b"; done
  done
done
for s in "${extra[@]}"; do handlers "$s"; done
if [ ${#table[@]} -gt 0 ]; then
  echo
  go run ./scripts/benchtable "$OUT"
fi
