#!/usr/bin/env bash
# The test suite: installs redis-server and nutcracker if missing, then runs every unit,
# integration and doc test against real local redis-server processes.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
exec cargo test --locked "$@"
