#!/usr/bin/env bash
# Compares shardis with twemproxy and with hand-routed redis-rs on this machine:
# starts 4 redis-servers and one nutcracker (ketama, fnv1a_64, same servers) on loopback, then
# runs `shardis bench` against the three targets interleaved (A B C A B C ...) for a GET/SET
# mix and for 10-key MGET, and prints the medians and the ratios.
# WORKLOADS="getset mget pipeline" picks the workloads (default: getset mget); `pipeline` is
# one pipeline of 100 GET/SET commands (80/20) per operation (`bench --pipeline-size 100`).
#
#   benches/compare.sh [ROUNDS] [DURATION] [CONCURRENCY] [THREADS]     defaults: 5 5s 64 1
# (THREADS: the load generator's runtime threads, `shardis bench --threads`.)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
duration=${2:-5s}
concurrency=${3:-64}
threads=${4:-1}

deploy/install-deps.sh
cargo build --release --quiet --bin shardis
bin=${CARGO_TARGET_DIR:-target}/release/shardis
workloads=${WORKLOADS:-getset mget}
nutcracker=$(command -v nutcracker || echo /usr/sbin/nutcracker)

work=$(mktemp -d)
cleanup() {
  for pid in "$work"/*.pid; do [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  while :; do
    local p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
}
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on port $1" >&2; exit 1
}

servers=()
for i in 1 2 3 4; do
  p=$(free_port)
  redis-server --port "$p" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --dir "$work" --pidfile "$work/redis-$p.pid" --logfile "$work/redis-$p.log"
  wait_port "$p"
  servers+=("$p")
done
proxy_port=$(free_port)
{
  echo "pool:"
  echo "  listen: 127.0.0.1:$proxy_port"
  echo "  hash: fnv1a_64"
  echo "  distribution: ketama"
  echo "  redis: true"
  echo "  servers:"
  for i in 1 2 3 4; do echo "   - 127.0.0.1:${servers[$((i-1))]}:1 s$i"; done
} > "$work/nutcracker.yml"
"$nutcracker" -d -c "$work/nutcracker.yml" -s "$(free_port)" -a 127.0.0.1 \
  -o "$work/nutcracker.log" -p "$work/nutcracker.pid"
wait_port "$proxy_port"
{
  echo "[placement]"
  echo "algorithm = \"ketama\""
  echo "hash = \"fnv1a_64\""
  for i in 1 2 3 4; do
    echo "[[shards]]"
    echo "name = \"s$i\""
    echo "primary = \"redis://127.0.0.1:${servers[$((i-1))]}\""
  done
} > "$work/shardis.toml"

echo "machine: $(nproc) cores, $(uname -m), $(date -u +%Y-%m-%d)"
echo "4 redis-servers + nutcracker $("$nutcracker" -V 2>&1 | head -1 | awk '{print $NF}'); $rounds rounds of $duration per target, interleaved; $concurrency concurrent requests on $threads load-generator thread(s)"
results="$work/results"
: > "$results"
run() { # workload target extra-args...
  local workload=$1 target=$2; shift 2
  local out
  out=$("$bin" --config "$work/shardis.toml" --format json bench --target "$target" \
    --proxy "redis://127.0.0.1:$proxy_port" --duration "$duration" --concurrency "$concurrency" \
    --threads "$threads" --no-populate "$@" 2>/dev/null)
  local ops p99 errors
  ops=$(grep -o '"ops_per_sec":[0-9.e+-]*' <<<"$out" | cut -d: -f2)
  p99=$(grep -o '"p99_us":[0-9]*' <<<"$out" | cut -d: -f2)
  errors=$(grep -o '"errors":[0-9]*' <<<"$out" | cut -d: -f2)
  echo "$workload $target $ops $p99 $errors" >> "$results"
}
# One population through shardis (ketama places keys exactly where nutcracker would).
"$bin" --config "$work/shardis.toml" --format json bench --duration 100ms --keys 100000 >/dev/null 2>&1
for workload in $workloads; do
  args=(--read-ratio 0.8)
  [ "$workload" = mget ] && args=(--read-ratio 1.0 --mget-size 10)
  [ "$workload" = pipeline ] && args=(--read-ratio 0.8 --pipeline-size 100)
  for r in $(seq 1 "$rounds"); do
    for target in shardis proxy direct; do
      run "$workload" "$target" "${args[@]}"
    done
  done
done

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
printf '\n%-8s %-8s %14s %10s %8s\n' workload target "median ops/s" "p99 us" errors
for workload in $workloads; do
  for target in shardis proxy direct; do
    ops=$(awk -v w=$workload -v t=$target '$1==w && $2==t {print $3}' "$results" | median)
    p99=$(awk -v w=$workload -v t=$target '$1==w && $2==t {print $4}' "$results" | median)
    err=$(awk -v w=$workload -v t=$target '$1==w && $2==t {s+=$5} END {print s+0}' "$results")
    printf '%-8s %-8s %14.0f %10.0f %8s\n' "$workload" "$target" "$ops" "$p99" "$err"
    eval "ops_${workload}_${target}=$ops"
  done
done
echo
for workload in $workloads; do
  s=$(eval echo "\$ops_${workload}_shardis"); p=$(eval echo "\$ops_${workload}_proxy"); d=$(eval echo "\$ops_${workload}_direct")
  awk -v w=$workload -v s="$s" -v p="$p" -v d="$d" \
    'BEGIN {printf "%-8s shardis/proxy %.2f   shardis/direct %.2f\n", w, s/p, s/d}'
done
