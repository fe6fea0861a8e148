#!/usr/bin/env bash
# The hot-path cost of metrics: `shardis bench` with no recorder installed (the `metrics`
# feature on, every call going to the facade's no-op recorder) against the same run with a
# Prometheus recorder installed and serving (`--prometheus`), interleaved (A B A B ...) against
# 3 local redis-servers. Each Prometheus run is scraped once while it runs. Reports throughput
# and the load generator's CPU time per operation (user + system): on a machine shared with
# other work, CPU per operation moves far less with the neighbours than throughput does.
#
#   benches/metrics_overhead.sh [ROUNDS] [DURATION] [CONCURRENCY]     defaults: 5 5s 64
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
duration=${2:-5s}
concurrency=${3:-64}

deploy/install-deps.sh
cargo build --release --quiet --bin shardis
bin=${CARGO_TARGET_DIR:-target}/release/shardis

. benches/lib.sh
bench_work

# Prints how many shardis_ sample lines a GET /metrics on port $1 returns.
scrape() {
  exec 3<>"/dev/tcp/127.0.0.1/$1"
  printf 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
  grep -c '^shardis_' <&3 || true
  exec 3<&-
}

for i in 1 2 3; do
  p=$(free_port)
  start_redis "$p"
  { echo "[[shards]]"; echo "name = \"cache-$i\""; echo "primary = \"redis://127.0.0.1:$p\""; } \
    >> "$work/shardis.toml"
done

echo "machine: $(nproc) cores, $(uname -m), $(date -u +%Y-%m-%d); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "3 redis-servers; $rounds rounds of $duration per variant, interleaved; 80% GET / 20% SET, $concurrency concurrent requests on 1 load-generator thread"
"$bin" --config "$work/shardis.toml" --format json bench --duration 100ms --keys 100000 >/dev/null 2>&1
results="$work/results"
: > "$results"
for r in $(seq 1 "$rounds"); do
  for variant in none prometheus; do
    extra=()
    if [ "$variant" = prometheus ]; then
      port=$(free_port)
      extra=(--prometheus "127.0.0.1:$port")
      ( sleep 2; echo "round $r: scraped $(scrape "$port") shardis_ samples while the run was going" >&2 ) &
    fi
    TIMEFORMAT='%U %S'
    cpu=$( { time "$bin" --config "$work/shardis.toml" --format json bench --duration "$duration" \
      --concurrency "$concurrency" --no-populate "${extra[@]}" >"$work/out.json" 2>/dev/null ; } 2>&1 )
    wait || true
    out=$(cat "$work/out.json")
    ops=$(grep -o '"ops_per_sec":[0-9.e+-]*' <<<"$out" | cut -d: -f2)
    total=$(grep -o '"ops":[0-9]*' <<<"$out" | cut -d: -f2)
    p99=$(grep -o '"p99_us":[0-9]*' <<<"$out" | cut -d: -f2)
    errors=$(grep -o '"errors":[0-9]*' <<<"$out" | cut -d: -f2)
    us_per_op=$(awk -v c="$cpu" -v n="$total" 'BEGIN {split(c, t, " "); printf "%.3f", (t[1] + t[2]) * 1e6 / n}')
    printf '%-10s %10.0f ops/s  %6s CPU us/op  p99 %5s us  errors %s\n' "$variant" "$ops" "$us_per_op" "$p99" "$errors"
    echo "$variant $ops $p99 $errors $us_per_op $r" >> "$results"
  done
done

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
col() { awk -v v="$1" -v c="$2" '$1==v {print $c}' "$results" | median; }
# Ratios within each round (A then B, back to back), so slow drifts of the machine cancel.
ratio() { awk -v c="$1" '$1=="none" {n[$6]=$c} $1=="prometheus" {p[$6]=$c} END {for (r in p) print p[r]/n[r]}' "$results" | median; }
echo
printf '%-10s %14s %14s %8s\n' variant "median ops/s" "CPU us/op" "p99 us"
for v in none prometheus; do
  printf '%-10s %14.0f %14.3f %8.0f\n' "$v" "$(col $v 2)" "$(col $v 5)" "$(col $v 3)"
done
echo "prometheus/none, median of the per-round ratios: throughput $(ratio 2), CPU per operation $(ratio 5)"
