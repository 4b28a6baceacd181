#!/usr/bin/env bash
# The cost of TLS per submitted event, end to end: a fresh comet per run
# (embedded durable bus, fresh --eventdb, no subscribers), driven by
# vtp-load on the same machine with -pid (so the broker's own CPU time is
# read from /proc), one connection and so one TLS handshake per event.
# Variants, interleaved round by round: tcp (plaintext), tls (ssl: with an
# ECDSA P-256 certificate; authors on tls:) and mtls (clientCA=, authors
# with client certificates). The certificates are made with the openssl
# commands of the README. The in-process comparison with the null
# receiver is go test -bench SubmitTLS ./internal/broker (BENCHMARKS.md).
# Usage: scripts/bench-tls.sh [rounds] (default 2); N and C set the load.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
N=${N:-20000}
C=${C:-32}
WORKLOAD=${WORKLOAD:-testdata/bench/gbm_flt_pos_v20.xml}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
go build -o "$WORK/" ./cmd/comet ./cmd/vtp-load

# Test certificates, as the README makes them.
PKI=$WORK/pki
mkdir -p "$PKI/trust"
(
  cd "$PKI"
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=Comet bench CA" -keyout ca.key -out ca.crt 2>/dev/null
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=bench-broker" -addext "subjectAltName=IP:127.0.0.1" -addext "basicConstraints=critical,CA:FALSE" \
    -CA ca.crt -CAkey ca.key -keyout broker.key -out broker.crt 2>/dev/null
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=bench-author" -addext "basicConstraints=critical,CA:FALSE" \
    -CA ca.crt -CAkey ca.key -keyout author.key -out author.crt 2>/dev/null
  cp ca.crt trust/ca.pem
)

PORT=18198
run() { # variant
  local variant=$1 listen target
  case $variant in
    tcp)  listen="tcp:$PORT:interface=127.0.0.1"; target="127.0.0.1:$PORT" ;;
    tls)  listen="ssl:$PORT:interface=127.0.0.1:privateKey=$PKI/broker.key:certKey=$PKI/broker.crt"
          target="tls:127.0.0.1:$PORT:trustRoots=$PKI/trust" ;;
    mtls) listen="ssl:$PORT:interface=127.0.0.1:privateKey=$PKI/broker.key:certKey=$PKI/broker.crt:clientCA=$PKI/ca.crt"
          target="tls:127.0.0.1:$PORT:trustRoots=$PKI/trust:certificate=$PKI/author.crt:privateKey=$PKI/author.key" ;;
  esac
  local db; db=$(mktemp -d)
  "$WORK/comet" --receive "$listen" --local-ivo ivo://bench.broker/comet --eventdb "$db" -q > "$db.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
  echo "== $variant: vtp-load -receive $target -n $N -c $C -m 0"
  "$WORK/vtp-load" -receive "$target" -file "$WORKLOAD" -pid "$pid" -n "$N" -c "$C" -m 0 || true
  kill -TERM "$pid"; wait "$pid" || true
  rm -rf "$db" "$db.log"
}

uptime
for round in $(seq "$ROUNDS"); do
  echo "### round $round"
  for v in tcp tls mtls; do run "$v"; done
done
