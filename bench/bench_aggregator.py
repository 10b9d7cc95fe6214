#!/usr/bin/env python3
"""Benchmark of tocsin-aggregator (issue 5).

usage: python3 bench/bench_aggregator.py BUILD_DIR [--events N] [--runs R] [--pack N]
                                         [--skip-inprocess]

Prints:
  - events per second consumed and committed by one aggregator process (events already in
    the embedded broker, read through the consumer group, applied and committed to LMDB with
    their offsets), median and p99 over R runs, for requests only and for a mix of requests
    and error events (issues);
  - LMDB bytes per million events after each run;
  - query latency through HTTP (5 m and 1 h windows) on the daemon just run;
  - bench_aggregator: query latency in process for 5 m, 1 h and 30 d windows over 31 days of
    data (one route, and name=* over 3 routes), then 5 m and 1 h over a service of 50 routes,
    each with name=* answered the former way (every route merged) beside it, and the quantile
    error table of Tocsin's sketch next to Prometheus'
    histogram_quantile over its default buckets.
Goals (issue 5): at least 500,000 events/s per process; a 1 h query under 1 ms; quantile
error at most 1 % where Prometheus' is often tens of percent.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

PARTITIONS = 32  # the embedded broker keeps about 5 MiB per partition: room for 10^6 events


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def metric(port, name):
    text = get(f"http://127.0.0.1:{port}/metrics").decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def cpu_seconds(pid):
    """User + system CPU time of a process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(q * len(v) + 0.5)) - 1))]


def produce(build, bootstrap_file, topic, kind, n, seed, spread, pack):
    """Writes n events; with `spread`, their event times cover the last hour (a backlog),
    else each is timestamped when written (a live stream). With `pack`, as collectors write
    them: `pack` events of a service per record (tocsin.v1.EventPack); else one per record."""
    now_us = int(time.time() * 1e6)
    argv = [os.path.join(build, "tests/e2e/agg_produce"), "--bootstrap-file", bootstrap_file,
            "--topic", topic, "--count", str(n), "--services", "64", "--kind", kind,
            "--users", "5000", "--error-every", "50", "--seed", str(seed)]
    if pack:
        argv += ["--pack", str(pack)]
    if spread:
        argv += ["--time-us", str(now_us - 3600 * 1000000), "--spread-s", "3590",
                 "--received-delay-ms", "200"]
    out = subprocess.run(argv, check=True, stdout=subprocess.PIPE).stdout.decode()
    truth = json.loads(out.strip().splitlines()[-1])
    events = sum(s["requests"] + s["errors"] for s in truth["services"].values())
    return truth, events


def run_once(build, workdir, bootstrap_file, topic, events, run_id):
    port = free_port()
    data = os.path.join(workdir, f"agg-{run_id}")
    log = open(os.path.join(workdir, f"agg-{run_id}.log"), "wb")
    p = subprocess.Popen(
        [os.path.join(build, "aggregator/tocsin-aggregator"),
         "--set", f"brokers_file={bootstrap_file}", "--set", "http.bind=127.0.0.1",
         "--set", f"http.port={port}", "--set", f"data_dir={data}",
         "--set", f"instance.id=bench-{run_id}", "--set", f"group.id=bench-{run_id}",
         "--set", f"topic.events={topic}", "--set", f"topic.rollups=bench.rollups.{run_id}",
         "--set", "kafka.session.timeout.ms=2500", "--set", "kafka.heartbeat.interval.ms=500",
         "--set", "log.level=warn"],
        stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        t1 = c1 = None
        while time.monotonic() < deadline:
            try:
                c = metric(port, "tocsin_aggregator_events_consumed_total")
            except OSError:
                time.sleep(0.05)
                continue
            now = time.monotonic()
            if t1 is None and c >= events * 0.02:
                t1, c1, cpu1 = now, c, cpu_seconds(p.pid)
            if c >= events:
                rate = (c - c1) / (now - t1)
                per_cpu = (c - c1) / max(cpu_seconds(p.pid) - cpu1, 1e-3)
                used = metric(port, "tocsin_aggregator_lmdb_used_bytes")
                applied = metric(port, "tocsin_aggregator_events_applied_total")
                lat = {}
                for window in ("5m", "1h"):
                    ts = []
                    for _ in range(200):
                        t0 = time.perf_counter()
                        get(f"http://127.0.0.1:{port}/api/v1/query?service=svc-7&name=*"
                            f"&window={window}")
                        ts.append((time.perf_counter() - t0) * 1000)
                    lat[window] = (percentile(ts, 0.5), percentile(ts, 0.99))
                return rate, per_cpu, used, applied, lat
            time.sleep(0.02)
        raise RuntimeError(f"run {run_id}: timed out; see {workdir}/agg-{run_id}.log")
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log.close()
        shutil.rmtree(data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--events", type=int, default=1000000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--skip-inprocess", action="store_true")
    ap.add_argument("--pack", type=int, default=50,
                    help="events per record (0: one event per record, as before packing)")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    workdir = tempfile.mkdtemp(prefix="bench-agg-")
    bootstrap_file = os.path.join(workdir, "bus.bootstrap")
    topics = ["tocsin.events", "tocsin.logs", "tocsin.rollups", "bench.mix", "bench.hour",
              "bench.single"]
    topics += [f"bench.rollups.{i}" for i in range(4 * args.runs)]
    argv = [os.path.join(build, "tools/tocsin-bus"), "--brokers", "1", "--partitions",
            str(PARTITIONS), "--bootstrap-file", bootstrap_file, "--log-level", "warn"]
    for t in topics:
        argv += ["--topic", t]
    bus = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                           stderr=open(os.path.join(workdir, "bus.log"), "wb"))
    try:
        while not os.path.exists(bootstrap_file):
            time.sleep(0.05)
        print(f"tocsin-aggregator throughput: {args.events:,} events already in an embedded "
              f"broker ({PARTITIONS} partitions), 64 services x 3 routes, 5,000 users; one "
              f"aggregator reads them through the consumer group and commits them to LMDB "
              f"with their offsets; {args.runs} runs each (fresh LMDB, fresh group)")
        print(f"Records as collectors write them: the events of one batch and key packed into "
              f"one record (tocsin.v1.EventPack), here {args.pack} events of a service per "
              f"record; the last set is one event per record (the format before packing)")
        sets = []
        t0 = time.monotonic()
        _, n = produce(build, bootstrap_file, "tocsin.events", "request", args.events, 1, False,
                       args.pack)
        sets.append(("requests, live (timestamped as written)", "tocsin.events", n))
        _, n = produce(build, bootstrap_file, "bench.mix", "mix", args.events, 2, False,
                       args.pack)
        sets.append(("live mix: 78 % requests, 22 % errors (issues)", "bench.mix", n))
        _, n = produce(build, bootstrap_file, "bench.hour", "request", args.events, 3, True,
                       args.pack)
        sets.append(("requests, a backlog spread over the last hour (69,000 buckets of ~14 "
                     "events)", "bench.hour", n))
        _, n = produce(build, bootstrap_file, "bench.single", "request", args.events, 4, False, 0)
        sets.append(("requests, live, one event per record (before packing)", "bench.single",
                     n))
        print(f"(produced the sets in {time.monotonic() - t0:.1f} s)")
        run_id = 0
        for name, topic, events in sets:
            rates, cpus, sizes, lat5, lat60 = [], [], [], [], []
            for _ in range(args.runs):
                rate, per_cpu, used, applied, lat = run_once(build, workdir, bootstrap_file,
                                                             topic, events, run_id)
                cpus.append(per_cpu)
                run_id += 1
                if applied != events:
                    print(f"  warning: {applied:.0f} applied of {events} events")
                rates.append(rate)
                sizes.append(used / (events / 1e6))
                lat5.append(lat["5m"])
                lat60.append(lat["1h"])
                print(f"  {name}: run {len(rates)}: {rate:,.0f} events/s ({per_cpu:,.0f} per "
                      f"CPU-second of the process, all threads), LMDB {used / 1048576:.1f} MiB")
            print(f"{name} ({events:,} events): median {percentile(rates, 0.5):,.0f} events/s, "
                  f"p99 {percentile(rates, 0.99):,.0f}, worst {min(rates):,.0f}; median "
                  f"{percentile(cpus, 0.5):,.0f} events per CPU-second; LMDB "
                  f"{percentile(sizes, 0.5) / 1048576:.1f} MiB per million events")
            print(f"  HTTP query service=svc-7 name=* (3 routes), round trip through urllib: "
                  f"5m median {percentile([x[0] for x in lat5], 0.5):.2f} ms / p99 "
                  f"{percentile([x[1] for x in lat5], 0.5):.2f} ms; 1h median "
                  f"{percentile([x[0] for x in lat60], 0.5):.2f} ms / p99 "
                  f"{percentile([x[1] for x in lat60], 0.5):.2f} ms")
    finally:
        bus.send_signal(signal.SIGTERM)
        bus.wait(30)
        shutil.rmtree(workdir, ignore_errors=True)
    if not args.skip_inprocess:
        sys.stdout.flush()
        subprocess.run([os.path.join(build, "bench/bench_aggregator"), "all"], check=True)
        # name=* over a service of 50 routes (one day of data: enough for 1 h windows).
        subprocess.run([os.path.join(build, "bench/bench_aggregator"), "query", "--routes", "50",
                        "--days", "1"], check=True)


if __name__ == "__main__":
    main()
