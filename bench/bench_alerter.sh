#!/usr/bin/env bash
# The alerter's benchmarks: rule evaluations per second with 10,000 rules, then a storm of
# 10,000 alerts through tocsin-alerter and through Prometheus Alertmanager (installed by
# scripts/deps.sh --bench) in the same run.
# usage: bench/bench_alerter.sh [BUILD_DIR] [storm options, e.g. --runs 3]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
shift || true
cmake --build "$build" --target bench_alerter tocsin-alerter tocsin-sink tocsin-bus alr_push >/dev/null
"$build/bench/bench_alerter" 7
python3 "$root/bench/bench_alerter_storm.py" "$build" "$@"
