#!/usr/bin/env bash
# Accepted events/s with an external NATS server and two ingress processes,
# against the single-process embedded-bus figure (BENCHMARKS.md's c32: 32
# concurrent authors, no subscribers, 30,000 events of the standard
# workload, one TCP connection per event; everything on this machine).
#
# Usage: scripts/bench-cluster.sh [scenario...]   (default: embedded ext1 ext2)
#   embedded  one comet --receive --broadcast on its embedded bus (as
#             scripts/bench.sh c32)
#   ext1      one nats-server (JetStream, file store), one comet --receive
#             --nats; vtp-load -c 32
#   ext2      the same nats-server, two comet --receive --nats processes;
#             two vtp-load -c 16 at once, one per ingress (32 authors in all)
#   r3        three nats-servers in a cluster, --replicas 3, two ingresses
#             (as ext2)
# Every scenario gets fresh stores. Reported: accepted events/s (events
# accepted by all ingresses / the longest vtp-load duration), ack latency,
# and the CPU time of the broker processes (comet and nats-server) per
# accepted event.
set -euo pipefail
cd "$(dirname "$0")/.."
WORKLOAD=${WORKLOAD:-testdata/bench/gbm_flt_pos_v20.xml}
N=${N:-30000}
C=${C:-32}
BIN=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$BIN"
}
trap cleanup EXIT
go build -o "$BIN/" ./cmd/comet ./cmd/vtp-load
go build -o "$BIN/nats-server" github.com/nats-io/nats-server/v2
TCK=$(getconf CLK_TCK)

# ready port: a probe submission to the port is acked (the listener opens
# before the bus is connected, so an open port is not enough).
ready() {
  "$BIN/vtp-load" -receive "127.0.0.1:$1" -file "$WORKLOAD" -n 1 -c 1 -m 0 -timeout 2s \
    -prefix "ivo://bench.author/probe#p$1x$RANDOM$RANDOM" > /dev/null 2>&1
}
cpu_ticks() { # pid...: utime+stime of the processes, in clock ticks
  local sum=0 p f
  for p in "$@"; do
    read -ra f < "/proc/$p/stat"
    sum=$((sum + f[13] + f[14]))
  done
  echo "$sum"
}
json_field() { # file field
  sed -n "s/^  \"$2\": \([0-9.]*\),*$/\1/p" "$1" | head -1
}

# start_nats name port cluster_port routes  (routes empty: no cluster)
start_nats() {
  local name=$1 port=$2 cport=$3 routes=$4 dir=$BIN/$1
  mkdir -p "$dir"
  {
    echo "server_name: $name"
    echo "listen: 127.0.0.1:$port"
    echo "jetstream { store_dir: \"$dir/store\" }"
    if [ -n "$routes" ]; then
      echo "cluster { name: bench, listen: 127.0.0.1:$cport, routes: [$routes] }"
    fi
  } > "$dir/nats.conf"
  "$BIN/nats-server" -c "$dir/nats.conf" > "$dir/log" 2>&1 &
  PIDS+=($!)
  NATS_PIDS+=($!)
}

# start_comet port args...: a comet receiving on port, started again while
# it exits at start-up (a cluster without a JetStream leader yet), until a
# probe submission is acked.
start_comet() {
  local port=$1; shift
  local pid=""
  for _ in $(seq 100); do
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
      "$BIN/comet" --receive "tcp:$port:interface=127.0.0.1" --local-ivo ivo://bench.broker/comet \
        --broadcast-test-interval 0 -q "$@" >> "$BIN/comet-$port.log" 2>&1 &
      pid=$!
    fi
    if ready "$port"; then
      PIDS+=($pid)
      COMET_PIDS+=($pid)
      return 0
    fi
    sleep 0.2
  done
  echo "comet on $port never acked a probe:" >&2
  tail "$BIN/comet-$port.log" >&2
  return 1
}

# measure name loads: runs one vtp-load per "port:concurrency:events" at once.
measure() {
  local name=$1; shift
  local all=("${COMET_PIDS[@]}" "${NATS_PIDS[@]}")
  local cpu0; cpu0=$(cpu_ticks "${all[@]}")
  local i=0 loads=() spec
  for spec in "$@"; do
    IFS=: read -r port c n <<< "$spec"
    "$BIN/vtp-load" -receive "127.0.0.1:$port" -file "$WORKLOAD" -n "$n" -c "$c" -m 0 -json \
      -prefix "ivo://bench.author/load#$name-$i" > "$BIN/load-$i.json" 2> "$BIN/load-$i.err" &
    loads+=($!)
    i=$((i + 1))
  done
  for p in "${loads[@]}"; do wait "$p" || true; done
  local cpu1; cpu1=$(cpu_ticks "${all[@]}")
  local accepted=0 errors=0 dur=0 p50="" p99=""
  for ((k = 0; k < i; k++)); do
    local f=$BIN/load-$k.json a e d
    a=$(json_field "$f" accepted); e=$(json_field "$f" errors); d=$(json_field "$f" duration_ns)
    accepted=$((accepted + a)); errors=$((errors + e))
    [ "$d" -gt "$dur" ] && dur=$d
    p50+="$(echo "scale=2; $(sed -n '/"ack_latency"/,/}/s/^    "p50_ns": \([0-9]*\).*/\1/p' "$f") / 1000000" | bc) "
    p99+="$(echo "scale=2; $(sed -n '/"ack_latency"/,/}/s/^    "p99_ns": \([0-9]*\).*/\1/p' "$f") / 1000000" | bc) "
  done
  local rate cpu_us
  rate=$(echo "scale=1; $accepted * 1000000000 / $dur" | bc)
  cpu_us=$(echo "scale=0; ($cpu1 - $cpu0) * 1000000 / $TCK / $accepted" | bc)
  printf '%-9s accepted %6d (errors %d) in %5.2f s: %8s events/s; ack p50 %sms p99 %sms; broker CPU %s us/event (%d comet + %d nats-server processes)\n' \
    "$name" "$accepted" "$errors" "$(echo "scale=2; $dur / 1000000000" | bc)" "$rate" "$p50" "$p99" "$cpu_us" \
    "${#COMET_PIDS[@]}" "${#NATS_PIDS[@]}"
}

stop_all() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=() COMET_PIDS=() NATS_PIDS=()
  rm -rf "${BIN:?}"/n? "$BIN"/db "$BIN"/*.log "$BIN"/load-*
  sleep 1 # let the kernel release the ports
}

PIDS=() COMET_PIDS=() NATS_PIDS=()
for s in ${*:-embedded ext1 ext2}; do
  case $s in
    embedded)
      mkdir -p "$BIN/db"
      start_comet 18098 --broadcast tcp:18099:interface=127.0.0.1 --eventdb "$BIN/db"
      measure embedded "18098:$C:$N" ;;
    ext1)
      start_nats n1 14222 0 ""
      start_comet 18098 --nats nats://127.0.0.1:14222 --node ingress-1
      measure ext1 "18098:$C:$N" ;;
    ext2)
      start_nats n1 14222 0 ""
      start_comet 18098 --nats nats://127.0.0.1:14222 --node ingress-1
      start_comet 18198 --nats nats://127.0.0.1:14222 --node ingress-2
      measure ext2 "18098:$((C / 2)):$((N / 2))" "18198:$((C / 2)):$((N / 2))" ;;
    r3)
      routes="nats://127.0.0.1:16221, nats://127.0.0.1:16222, nats://127.0.0.1:16223"
      start_nats n1 14221 16221 "$routes"
      start_nats n2 14222 16222 "$routes"
      start_nats n3 14223 16223 "$routes"
      urls=nats://127.0.0.1:14221,nats://127.0.0.1:14222,nats://127.0.0.1:14223
      start_comet 18098 --nats "$urls" --replicas 3 --node ingress-1
      start_comet 18198 --nats "$urls" --replicas 3 --node ingress-2
      measure r3 "18098:$((C / 2)):$((N / 2))" "18198:$((C / 2)):$((N / 2))" ;;
    *) echo "unknown scenario $s" >&2; exit 2 ;;
  esac
  stop_all
done
