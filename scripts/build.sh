#!/usr/bin/env bash
# Builds Tocsin. usage: scripts/build.sh [--sanitize] [--release]
#   default:     build/       (RelWithDebInfo, warnings are errors)
#   --sanitize:  build-asan/  (AddressSanitizer + UndefinedBehaviorSanitizer)
#   --release:   build-release/ (Release)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/deps.sh"

dir=build
args=(-DTOCSIN_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo)
for a in "$@"; do
    case "$a" in
        --sanitize) dir=build-asan; args+=(-DTOCSIN_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug) ;;
        --release) dir=build-release; args=(-DTOCSIN_WERROR=ON -DCMAKE_BUILD_TYPE=Release) ;;
        *) echo "usage: $0 [--sanitize] [--release]" >&2; exit 2 ;;
    esac
done
cmake -S "$root" -B "$root/$dir" "${args[@]}" >/dev/null
cmake --build "$root/$dir" -j"$(nproc)"
echo "$root/$dir"
