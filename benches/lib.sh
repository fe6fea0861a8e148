# Shared by the benchmark scripts (sourced, not run): a scratch folder removed on exit with every
# process whose pid file is in it, free loopback ports, and waiting for a port to listen.
#
#   . "$(dirname "$0")/lib.sh"     then: work=$(bench_work); free_port; wait_port PORT;
#                                  start_redis PORT [redis-server options...]

# A scratch folder, `$work`: on exit, every process with a `*.pid` file there is killed and the
# folder removed.
bench_work() {
  work=$(mktemp -d)
  trap bench_cleanup EXIT
}
bench_cleanup() {
  for pid in "$work"/*.pid; do [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true; done
  sleep 0.5  # the servers write their last log lines as they go
  rm -rf "$work" 2>/dev/null || true
}

# A loopback port nothing listens on.
free_port() {
  while :; do
    local p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
}

# Waits up to 10 s for something to listen on loopback port $1.
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on port $1" >&2; exit 1
}

# A daemonized, persistence-free redis-server on loopback port $1 (more options after it), its
# pid and log in `$work`; returns once it listens.
start_redis() {
  local p=$1; shift
  redis-server --port "$p" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --dir "$work" --pidfile "$work/redis-$p.pid" --logfile "$work/redis-$p.log" "$@"
  wait_port "$p"
}
