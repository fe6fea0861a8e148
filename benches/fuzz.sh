#!/usr/bin/env bash
# The long run of the parser property tests: the same properties CI runs with 256 cases each
# (shardis/tests/it/fuzz_parsers.rs: TOML config, endpoint URLs, hash tags, twemproxy YAML; and
# the CLI's duration and size parsers in shardis-cli/src/parse.rs), here with many more cases,
# in release mode. Every case must not panic, must give a typed error or a valid value, a
# bounded message, and no password from the input.
#
#   benches/fuzz.sh [CASES]     default: 100000 per property
#
# A failure prints proptest's minimal failing input; proptest also records its seed under
# proptest-regressions/ next to the test, so the next run tries it first.
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${1:-100000}

export PROPTEST_CASES=$cases
# Shrinking a failure found late can take long; cap it.
export PROPTEST_MAX_SHRINK_ITERS=${PROPTEST_MAX_SHRINK_ITERS:-2000}

start=$(date +%s)
cargo test --release -p shardis --test it fuzz_parsers::
cargo test --release -p shardis-cli --bin shardis parse::
echo "fuzz: ${cases} cases per property passed in $(( $(date +%s) - start )) s"
