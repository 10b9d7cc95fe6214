#!/usr/bin/env bash
# Installs the Debian packages Tocsin needs to build, run and test, when missing.
# This is the one list of them; README's two commands and .ci/run all come through here.
# usage: scripts/deps.sh [--bench]
set -euo pipefail

PACKAGES=(
    build-essential cmake pkg-config git
    libzmq3-dev libczmq-dev
    librdkafka-dev
    liblmdb-dev lmdb-utils
    libprotobuf-c-dev protobuf-c-compiler
    libcurl4-openssl-dev
    libmicrohttpd-dev
    libjansson-dev
    libcyaml-dev libyaml-dev
    libxxhash-dev
    libcmocka-dev
    libdw-dev                      # libtocsin: stack frames to function, file and line (elfutils)
    python3 curl
    python3-yaml yamllint prometheus prometheus-alertmanager docker-compose systemd  # deploy/ checks (promtool: prometheus, amtool: prometheus-alertmanager)
)

# Peers the benchmarks compare against, installed only by `scripts/deps.sh --bench`.
BENCH_PACKAGES=(
    rsyslog rsyslog-kafka          # collector benchmark: rsyslog + omkafka into the same broker
    prometheus-alertmanager        # alerter benchmark: the same alert storm through Alertmanager
)

if [ "${1:-}" = "--bench" ]; then
    PACKAGES+=("${BENCH_PACKAGES[@]}")
fi

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

echo "tocsin: installing Debian packages: ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
