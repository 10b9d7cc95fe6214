#!/usr/bin/env bash
# Runs bench_client against a real tocsin-collector fed into tocsin-bus (the embedded
# Kafka-protocol broker), all on 127.0.0.1 with ephemeral ports; stops them afterwards.
# usage: bench/bench_client.sh BUILD_DIR [bench_client options, e.g. --events 200000 --runs 5]
set -euo pipefail
build=$(cd "${1:?usage: bench/bench_client.sh BUILD_DIR [options]}" && pwd)
shift
dir=$(mktemp -d /tmp/tocsin-bench-client-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ready() { # port
    for _ in $(seq 1 300); do
        curl -fs "http://127.0.0.1:$1/health/ready" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "bench_client.sh: nothing ready on :$1 (logs in $dir)" >&2
    return 1
}
bus_http=$(port)
"$build/tools/tocsin-bus" --brokers 1 --partitions 4 --bootstrap-file "$dir/bootstrap" \
    --http-port "$bus_http" >"$dir/bus.log" 2>&1 &
pids+=($!)
ready "$bus_http"
zport=$(port)
hport=$(port)
"$build/collector/tocsin-collector" --set "listen=tcp://127.0.0.1:$zport" \
    --set http.bind=127.0.0.1 --set "http.port=$hport" --set "brokers_file=$dir/bootstrap" \
    --set log.level=warn >"$dir/collector.log" 2>&1 &
pids+=($!)
ready "$hport"
"$build/bench/bench_client" --collector "tcp://127.0.0.1:$zport" "$@"
