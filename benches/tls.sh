#!/usr/bin/env bash
# `shardis bench` over TLS against plain on the same servers: starts 3 redis-servers, each
# listening on a plain port and a TLS port (certificates made here with openssl: a CA and a
# server certificate for 127.0.0.1), then runs the same GET/SET load (80/20) through two
# configs that differ only in redis:// vs rediss:// (+ [tls] ca_file), interleaved
# (plain tls plain tls ...), and prints the medians and the ratio tls/plain.
#
#   benches/tls.sh [ROUNDS] [DURATION] [CONCURRENCY]     defaults: 3 5s 64
#   SHARDIS_BIN=path/to/shardis benches/tls.sh ...       with a binary already built
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
duration=${2:-5s}
concurrency=${3:-64}

# SHARDIS_BIN: a shardis binary already built (skips the release build).
if [ -z "${SHARDIS_BIN:-}" ]; then
  cargo build --release --quiet --bin shardis
fi
bin=${SHARDIS_BIN:-${CARGO_TARGET_DIR:-target}/release/shardis}

. benches/lib.sh
bench_work

# A CA and a server certificate for 127.0.0.1.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=shardis bench CA" \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' > "$work/ext.cnf"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
  -CAcreateserial -days 2 -extfile "$work/ext.cnf" -out "$work/server.pem" 2>/dev/null

plain_cfg="$work/plain.toml"
tls_cfg="$work/tls.toml"
# Generous timeouts: a loaded machine must not turn a slow handshake into a failed run.
pool='[pool]\nconnect_timeout_ms = 3000\nresponse_timeout_ms = 3000\n[health]\nprobe_timeout_ms = 2000\n\n'
printf "$pool"'[tls]\nca_file = "%s"\n\n' "$work/ca.pem" > "$tls_cfg"
printf "$pool" > "$plain_cfg"
for i in 1 2 3; do
  port=$(free_port); tls_port=$(free_port)
  redis-server --port "$port" --tls-port "$tls_port" --bind 127.0.0.1 --save "" \
    --appendonly no --daemonize no --tls-cert-file "$work/server.pem" \
    --tls-key-file "$work/server.key" --tls-ca-cert-file "$work/ca.pem" \
    --tls-auth-clients no --logfile "$work/redis-$i.log" --dir "$work" \
    --dbfilename "dump-$i.rdb" &
  echo $! > "$work/redis-$i.pid"
  printf '[[shards]]\nname = "cache-%s"\nprimary = "redis://127.0.0.1:%s"\n\n' "$i" "$port" >> "$plain_cfg"
  printf '[[shards]]\nname = "cache-%s"\nprimary = "rediss://127.0.0.1:%s"\n\n' "$i" "$tls_port" >> "$tls_cfg"
  until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
done

run() {
  "$bin" --config "$1" --format json bench --duration "$duration" --concurrency "$concurrency" \
    --keys 10000 | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["ops_per_sec"]))'
}

plain=(); tls=()
for r in $(seq "$rounds"); do
  plain+=("$(run "$plain_cfg")")
  tls+=("$(run "$tls_cfg")")
  echo "round $r: plain ${plain[-1]} ops/s, tls ${tls[-1]} ops/s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
p=$(median "${plain[@]}"); t=$(median "${tls[@]}")
echo "median: plain $p ops/s, tls $t ops/s, tls/plain $(python3 -c "print(round($t/$p, 2))")"
