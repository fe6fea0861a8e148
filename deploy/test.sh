#!/usr/bin/env bash
# The test suite: installs what is missing (deploy/install-deps.sh: redis-server, redis-sentinel,
# nutcracker, openssl...), then runs every unit, integration and doc test against real local processes.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
exec cargo test --locked "$@"
