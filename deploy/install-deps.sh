#!/usr/bin/env bash
# Installs what shardis's demo, tests and benchmarks need on a Debian machine, when missing:
# redis-server (and redis-cli), redis-sentinel (the Sentinel-managed shards' tests and
# `shardis demo --sentinel`), nutcracker (twemproxy) as the peer of the placement tests and the
# load benchmark, and openssl (the TLS recipe's certificates). Uses sudo when not root.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
command -v nutcracker >/dev/null 2>&1 || [ -x /usr/sbin/nutcracker ] || missing+=(nutcracker)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    echo "error: ${missing[*]} missing and not root: install them with apt-get" >&2
    exit 1
  fi
fi
echo "installing ${missing[*]} with apt-get..." >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
