#!/usr/bin/env bash
# The main job: installs what is missing (deploy/install-deps.sh), then runs `shardis demo`, which starts three
# local redis-servers, writes keys through the client, shows their spread, reads them back and
# stops the servers. Extra arguments go to `shardis demo` (e.g. `--keys 50000`, `--format json`).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
exec cargo run --release --quiet --bin shardis -- demo "$@"
