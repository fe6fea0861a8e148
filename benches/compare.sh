#!/usr/bin/env bash
# Compares shardis with twemproxy and with hand-routed redis-rs on this machine:
# starts 4 redis-servers and one nutcracker (ketama, fnv1a_64, same servers) on loopback, then
# runs `shardis bench` against four targets interleaved (A B C D A B C D ...) for a GET/SET
# mix and for 10-key MGET, on each load-generator runtime asked for, and prints the medians
# and the ratios. The targets: shardis with read coalescing (`coalesce_reads = true`), shardis
# without it (`nocoal`), the proxy, and hand-routed redis-rs (`direct`). Then a "limit" line:
# redis-benchmark pipelined (-P 16) straight at the same servers, one process per server at once.
# WORKLOADS="getset mget pipeline" picks the workloads (default: getset mget); `pipeline` is
# one pipeline of 100 GET/SET commands (80/20) per operation (`bench --pipeline-size 100`).
#
#   benches/compare.sh [ROUNDS] [DURATION] [CONCURRENCY] [THREADS...]   defaults: 5 5s 64 1 2
# (THREADS: the load generator's runtime threads, `shardis bench --threads`: 1 is a
# single-threaded runtime, 2 a 2-worker multi-threaded one, like tokio's default on 2 cores.)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
duration=${2:-5s}
concurrency=${3:-64}
shift $(( $# < 3 ? $# : 3 ))
if [ $# -gt 0 ]; then threads_list=("$@"); else threads_list=(1 2); fi

deploy/install-deps.sh
cargo build --release --quiet --bin shardis
bin=${CARGO_TARGET_DIR:-target}/release/shardis
workloads=${WORKLOADS:-getset mget}
nutcracker=$(command -v nutcracker || echo /usr/sbin/nutcracker)

. benches/lib.sh
bench_work

servers=()
for i in 1 2 3 4; do
  p=$(free_port)
  start_redis "$p"
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
# The same, without read coalescing.
awk '{print} /^hash = / {print "[pool]"; print "coalesce_reads = false"}' "$work/shardis.toml" \
  > "$work/nocoal.toml"

echo "machine: $(nproc) cores, $(uname -m), $(date -u +%Y-%m-%d)"
echo "4 redis-servers + nutcracker $("$nutcracker" -V 2>&1 | head -1 | awk '{print $NF}'); $rounds rounds of $duration per target, interleaved; $concurrency concurrent requests; load-generator threads: ${threads_list[*]}; load average $(cut -d' ' -f1-3 /proc/loadavg)"
results="$work/results"
: > "$results"
targets=(shardis nocoal proxy direct)
run() { # workload threads round target extra-args...
  local workload=$1 threads=$2 round=$3 target=$4; shift 4
  local out config=$work/shardis.toml bench_target=$target
  [ "$target" = nocoal ] && { config=$work/nocoal.toml; bench_target=shardis; }
  out=$("$bin" --config "$config" --format json bench --target "$bench_target" \
    --proxy "redis://127.0.0.1:$proxy_port" --duration "$duration" --concurrency "$concurrency" \
    --threads "$threads" --no-populate "$@" 2>/dev/null)
  local ops p99 errors
  ops=$(grep -o '"ops_per_sec":[0-9.e+-]*' <<<"$out" | cut -d: -f2)
  p99=$(grep -o '"p99_us":[0-9]*' <<<"$out" | cut -d: -f2)
  errors=$(grep -o '"errors":[0-9]*' <<<"$out" | cut -d: -f2)
  echo "$workload $threads $round $target $ops $p99 $errors" >> "$results"
}
# One population through shardis (ketama places keys exactly where nutcracker would).
"$bin" --config "$work/shardis.toml" --format json bench --duration 100ms --keys 100000 >/dev/null 2>&1
for threads in "${threads_list[@]}"; do
  for workload in $workloads; do
    args=(--read-ratio 0.8)
    [ "$workload" = mget ] && args=(--read-ratio 1.0 --mget-size 10)
    [ "$workload" = pipeline ] && args=(--read-ratio 0.8 --pipeline-size 100)
    for r in $(seq 1 "$rounds"); do
      for target in "${targets[@]}"; do
        run "$workload" "$threads" "$r" "$target" "${args[@]}"
      done
    done
  done
done

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# The median over rounds of a/b, each round's two runs side by side.
ratio() { # workload threads a b
  awk -v w="$1" -v t="$2" -v a="$3" -v b="$4" '$1==w && $2==t && $4==a {x[$3]=$5}
    $1==w && $2==t && $4==b {y[$3]=$5} END {for (r in x) if (y[r] > 0) print x[r]/y[r]}' \
    "$results" | median
}
for threads in "${threads_list[@]}"; do
  printf '\n%s load-generator thread(s)\n' "$threads"
  printf '%-8s %-8s %14s %10s %8s\n' workload target "median ops/s" "p99 us" errors
  for workload in $workloads; do
    for target in "${targets[@]}"; do
      sel() { awk -v w=$workload -v t=$threads -v x=$target '$1==w && $2==t && $4==x' "$results"; }
      ops=$(sel | awk '{print $5}' | median)
      p99=$(sel | awk '{print $6}' | median)
      err=$(sel | awk '{s+=$7} END {print s+0}')
      printf '%-8s %-8s %14.0f %10.0f %8s\n' "$workload" "$target" "$ops" "$p99" "$err"
    done
  done
  echo "ratios of throughput (median of the per-round ratios):"
  for workload in $workloads; do
    printf '%-8s shardis/proxy %.2f   shardis/direct %.2f   shardis/nocoal %.2f   nocoal/proxy %.2f   nocoal/direct %.2f\n' \
      "$workload" "$(ratio $workload $threads shardis proxy)" "$(ratio $workload $threads shardis direct)" \
      "$(ratio $workload $threads shardis nocoal)" "$(ratio $workload $threads nocoal proxy)" \
      "$(ratio $workload $threads nocoal direct)"
  done
done

# The limit: what the servers themselves do with pipelined requests and no client layer.
bench_all() { # label redis-benchmark args...
  local label=$1; shift
  local i=0
  for p in "${servers[@]}"; do
    redis-benchmark -h 127.0.0.1 -p "$p" -c 16 -P 16 -r 100000 -d 32 --csv "$@" \
      > "$work/rb-$i.csv" 2>/dev/null &
    i=$((i+1))
  done
  wait
  cat "$work"/rb-*.csv | awk -F'","' '$1 !~ /test/ {gsub(/"/,"",$2); s+=$2} END {printf "%.0f", s}'
}
get_limit=$(bench_all get -n 400000 -t get)
mget_limit=$(bench_all mget -n 200000 MGET key:__rand_int__ key:__rand_int__ key:__rand_int__)
echo
echo "limit (redis-benchmark -P 16, one process per server at once, 16 connections each):"
echo "  GET: $get_limit commands/s in all; MGET of 3 keys: $mget_limit commands/s in all"
awk -v m="$mget_limit" 'BEGIN {printf "  (a 10-key MGET touches ~3.7 of the 4 shards: about %.0f 10-key MGETs/s)\n", m/3.7}'
