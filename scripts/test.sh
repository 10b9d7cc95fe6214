#!/usr/bin/env bash
# Builds Tocsin and runs the whole test suite: unit tests, fuzz-corpus replays and the
# end-to-end tests that start the real daemons on 127.0.0.1.
# usage: scripts/test.sh [--sanitize]   (--sanitize: the ASan + UBSan build, in build-asan/)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$("$root/scripts/build.sh" "$@" | tail -n 1)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$dir" --output-on-failure -j2 --timeout 600
