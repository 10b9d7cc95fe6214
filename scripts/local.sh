#!/usr/bin/env bash
# Runs Tocsin locally: the embedded broker, a collector, an aggregator, the alerter, a
# webhook receiver and demo traffic, all on 127.0.0.1. Ctrl-C stops everything.
# The embedded broker keeps its data in memory only, so every start begins from empty
# (run/ is cleared).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=$("$root/scripts/build.sh" | tail -n 1)

run="$root/run"
rm -rf "$run"
mkdir -p "$run/data"

pids=()
names=()
# Each process gets a session of its own: Ctrl-C reaches only this script, which stops them
# in the reverse order of their start (the bus last, so the daemons can still flush to it).
start() { # name, then the command
    local name=$1
    shift
    setsid "$@" >>"$run/$name.log" 2>&1 &
    pids+=($!)
    names+=("$name")
}

stop_all() {
    trap - INT TERM
    echo
    echo "tocsin: stopping..."
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[$i]}" 2>/dev/null || true
        # Each daemon drains on SIGTERM; give it a bounded time.
        for _ in $(seq 1 100); do
            kill -0 "${pids[$i]}" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "${pids[$i]}" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    echo "tocsin: stopped. Logs are in $run/"
    exit 0
}
trap stop_all INT TERM

wait_http() { # name, port
    for _ in $(seq 1 150); do
        if curl -fs "http://127.0.0.1:$2/health/ready" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    echo "tocsin: $1 did not become ready; see $run/$1.log" >&2
    stop_all
}

start bus "$build/tools/tocsin-bus" --brokers 3 --partitions 4 \
    --bootstrap-file "$run/bus.bootstrap" --http-port 7409
wait_http bus 7409
start sink "$build/tools/tocsin-sink" --port 7450 --out "$run/sink.jsonl"
wait_http sink 7450
start collector "$build/collector/tocsin-collector" -c deploy/local/collector.conf
start aggregator "$build/aggregator/tocsin-aggregator" -c deploy/local/aggregator.conf
start alerter "$build/alerter/tocsin-alerter" -c deploy/local/alerter.conf
wait_http collector 7421
wait_http aggregator 7430
wait_http alerter 7440
start demo "$build/tools/tocsin-demo" --collector tcp://127.0.0.1:7420

cat <<TXT

Tocsin is running locally (embedded broker, memory only).

  Query the demo service:  curl 'http://127.0.0.1:7430/api/v1/query?service=demo&name=*&window=5m'
  One route:               curl 'http://127.0.0.1:7430/api/v1/query?service=demo&name=/api/checkout&window=1m'
  Alerts:                  curl http://127.0.0.1:7440/api/v1/alerts
  Pages received:          tail -f $run/sink.jsonl
  Health and metrics:      curl http://127.0.0.1:7421/health/ready   (collector 7421, aggregator 7430, alerter 7440)
  Logs:                    $run/*.log   (demo progress: tail -f $run/demo.log)

The demo sends ~200 requests/s; after 60 s it starts a 60 s burst of failing requests.
The rule in deploy/local/rules.yaml (error rate above 5 % over 1 m for 10 s) fires once,
and its page lands in $run/sink.jsonl; it resolves after the burst.
Press Ctrl-C to stop everything.
TXT

while true; do
    for i in "${!pids[@]}"; do
        if ! kill -0 "${pids[$i]}" 2>/dev/null; then
            echo "tocsin: ${names[$i]} exited; see $run/${names[$i]}.log" >&2
            stop_all
        fi
    done
    sleep 1
done
