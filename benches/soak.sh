#!/usr/bin/env bash
# Soak benchmark (not CI): minutes of 80/20 GET/SET from many tasks over 3 local shards, each a
# primary with one replica, while a fault rotation runs every few seconds (SIGKILL + restart,
# SIGSTOP, hot swap, config reload); then every key's last acknowledged write is checked on its
# owning primary. See shardis/examples/soak/main.rs.
#
#   benches/soak.sh [--minutes N] [--tasks T] [--fault-every SECS] [--keys K] [--json]
#   defaults: 10 minutes, 64 tasks, a fault every 5 s, 100000 keys
set -euo pipefail
cd "$(dirname "$0")/.."
server=${SHARDIS_REDIS_SERVER:-redis-server}
if ! command -v "$server" >/dev/null; then
  echo "soak: $server not found; install it (Debian: apt-get install redis-server, or deploy/install-deps.sh) or set SHARDIS_REDIS_SERVER" >&2
  exit 2
fi
exec cargo run --release --quiet -p shardis --example soak -- "$@"
