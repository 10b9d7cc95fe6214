#!/usr/bin/env python3
"""End-to-end latency benchmark (issue 7): how soon an error is visible, how soon a page comes.

usage: bench/bench_latency.py [--build-dir DIR] [--runs N] [--visible N] [--pages N]
                              [--set DAEMON:KEY=VALUE ...] [--keep]

Each run starts the real daemons on 127.0.0.1 afresh (tests/e2e/harness.py): tocsin-bus
(3 brokers, 4 partitions), one collector, one aggregator, the alerter, and tocsin-sink as
the webhook; and bench_latency_client, which records errors through libtocsin (default
options) when told to and prints the wall-clock time just before each tocsin_error call.

(a) visible: one error recorded, then the aggregator's GET /api/v1/query?name=$errors is
    polled every 2 ms until its count includes it; latency = the answer's arrival minus the
    call. Samples are spaced 50..250 ms apart at random, so they fall anywhere in the
    client's batch interval and the daemons' commit and publish ticks.
(b) page: one rule per sample, `event_count` of $errors of its own service above 2 (window
    1m). Two errors are recorded and seen in the aggregator; 300..550 ms later (at random)
    the third, which crosses the threshold, is recorded; latency = the sink's receive time
    of the firing notification ("ts" of its line) minus that call. Printed with the
    stages: the crossing event visible in the aggregator's query (polled), the alert's
    fired_at in the alerter (GET /api/v1/alerts), the page at the sink.

Every latency-relevant key is left at its default (printed); --set changes one for an
experiment, e.g. --set alerter:eval.interval=250ms. Figures: per run and over all runs,
median and p99 (nearest rank); the goals are 1 s p99 for (a) and 2 s p99 for (b).
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
from harness import Cluster, http, wait_until  # noqa: E402

ENV = "bench"
GOAL_VISIBLE_MS = 1000.0
GOAL_PAGE_MS = 2000.0

# The keys that decide the latency, with their defaults (docs/client.md, collector.md,
# aggregator.md, alerter.md). The benchmark sets none of them unless --set says so.
LATENCY_KEYS = [
    ("client", "batch_interval_ms", "50 ms", "an event waits at most this long to be batched"),
    ("collector", "kafka.linger.ms", "10", "producer batching before Kafka"),
    ("aggregator", "poll.max_wait", "100ms", "longest a consumed record waits for its commit"),
    ("aggregator", "publish.interval", "250ms", "changed bucket states go to tocsin.rollups"),
    ("aggregator", "kafka.linger.ms (rollups)", "5", "rollup producer batching"),
    ("alerter", "eval.interval", "1s", "rules re-evaluated (also at once when a service's "
                                       "data arrives)"),
    ("alerter", "settings.group_wait", "500ms", "a new group is notified this long after it "
                                                 "fires"),
]


def percentile(xs, p):
    """Nearest-rank percentile of a non-empty list."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def rfc3339_us(ts):
    """Microseconds since the epoch of "2026-11-22T16:59:01.123Z"."""
    t = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return int(t.timestamp() * 1e6)


def rules_yaml(sink_url, services):
    lines = ["receivers:", f"  - {{name: sink, url: \"{sink_url}\"}}", "rules:"]
    for s in services:
        lines.append(f"  - {{alert: BenchPage, type: event_count, service: {s}, "
                     f"environment: {ENV}, name: \"$errors\", window: 1m, above: 2, "
                     f"severity: critical, receiver: sink}}")
    return "\n".join(lines) + "\n"


class Client:
    """bench_latency_client, driven line by line."""

    def __init__(self, c, collectors):
        self.p = subprocess.Popen([c.bin("bench/bench_latency_client"), collectors, ENV],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=open(os.path.join(c.dir, "client.log"), "ab"),
                                  text=True, bufsize=1)

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        answer = self.p.stdout.readline().strip()
        if not answer or answer.startswith("error"):
            raise RuntimeError(f"bench_latency_client: {line}: {answer or 'no answer'}")
        return answer

    def error(self, service):
        return int(self.cmd(f"err {service}"))  # µs since the epoch, just before the call

    def close(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.close()
            self.p.wait(30)
        except (OSError, subprocess.TimeoutExpired):
            self.p.kill()
            self.p.wait()


def metric(proc, name):
    """Sum of every sample of metric `name` on proc's /metrics."""
    status, text = http("GET", f"http://127.0.0.1:{proc.http_port}/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics of {proc.name}: {status}")
    return sum(float(ln.split()[-1]) for ln in text.splitlines()
               if ln.startswith(name + " ") or ln.startswith(name + "{"))


def error_count(agg, service):
    status, body = http("GET", f"http://127.0.0.1:{agg.http_port}/api/v1/query?service={service}"
                               f"&name=$errors&window=5m&environment={ENV}", timeout=5)
    if status != 200:
        raise RuntimeError(f"query {service}: {status} {body}")
    return body["count"]


def wait_count(agg, service, want, timeout=30, interval=0.002):
    """Polls the query until its count reaches `want`; returns the wall clock (µs) of the
    answer that showed it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = error_count(agg, service)
        now = time.time()
        if n >= want:
            return int(now * 1e6)
        time.sleep(interval)
    raise RuntimeError(f"{service}: count {want} not seen within {timeout}s")


def sink_page(c, sink, service):
    """The sink's receive time (µs) of the firing page of `service`, or None."""
    for line in c.sink_lines(sink):
        body = line.get("body")
        if not isinstance(body, dict):
            continue
        for a in body.get("alerts", []):
            if a["labels"].get("service") == service and a["status"] == "firing":
                return rfc3339_us(line["ts"])
    return None


def fired_at(alerter, service):
    status, body = http("GET", f"http://127.0.0.1:{alerter.http_port}/api/v1/alerts"
                               f"?alertname=BenchPage&service={service}")
    if status != 200:
        raise RuntimeError(f"alerts: {status} {body}")
    for a in body["alerts"]:
        if a.get("fired_at"):
            return rfc3339_us(a["fired_at"])
    return None


def extra_for(sets, daemon):
    return {k: v for d, k, v in sets if d == daemon}


def one_run(build, run, args, sets):
    c = Cluster(build, keep=args.keep)
    client = None
    failed = True
    try:
        c.start_bus(brokers=3, partitions=4)
        sink = c.start_sink()
        col = c.start_collector(extra=extra_for(sets, "collector"))
        agg = c.start_aggregator(extra=extra_for(sets, "aggregator"))
        pages = [f"page-{i:03d}" for i in range(args.pages + 1)]  # the first warms up
        alerter = c.start_alerter(rules_yaml(sink.url, pages), extra=extra_for(sets, "alerter"))
        wait_until("the aggregator to own partitions",
                   lambda: metric(agg, "tocsin_aggregator_assigned_partitions") > 0, 30)
        client = Client(c, col.endpoint)
        for s in ["visible"] + pages:
            client.cmd(f"open {s}")

        # (a) visible in the query answer.
        client.error("visible")  # warm-up: connections, the first batch, the series' creation
        wait_count(agg, "visible", 1)
        vis = []
        for i in range(args.visible):
            time.sleep(random.uniform(0.05, 0.25))
            t0 = client.error("visible")
            t1 = wait_count(agg, "visible", i + 2)
            vis.append((t1 - t0) / 1000.0)

        # (b) threshold crossed -> page at the webhook.
        pg, stages = [], []
        for k, s in enumerate(pages):
            client.error(s)
            client.error(s)
            wait_count(agg, s, 2)
            time.sleep(random.uniform(0.3, 0.55))  # any phase of the publish tick
            t0 = client.error(s)  # the third error: above 2
            t_agg = wait_count(agg, s, 3, interval=0.005)
            t_page = wait_until(f"the page of {s}", lambda s=s: sink_page(c, sink, s), 30,
                                interval=0.005)
            t_fired = fired_at(alerter, s)
            if k == 0:
                continue  # warm-up
            pg.append((t_page - t0) / 1000.0)
            stages.append(((t_agg - t0) / 1000.0,
                           (t_fired - t0) / 1000.0 if t_fired else float("nan"),
                           (t_page - t0) / 1000.0))
        failed = False
        return vis, pg, stages
    finally:
        if client:
            client.close()
        c.close(failed=failed)


def line(label, xs, goal=None):
    med, p99 = statistics.median(xs), percentile(xs, 99)
    out = f"{label}: median {med:7.1f} ms  p99 {p99:7.1f} ms  (n={len(xs)})"
    if goal is not None:
        out += f"  goal p99 <= {goal:.0f} ms: {'met' if p99 <= goal else 'MISSED'}"
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--visible", type=int, default=100, help="samples of (a) per run")
    ap.add_argument("--pages", type=int, default=20, help="samples of (b) per run")
    ap.add_argument("--set", action="append", default=[], metavar="DAEMON:KEY=VALUE",
                    help="daemon collector, aggregator or alerter")
    ap.add_argument("--keep", action="store_true", help="keep the daemons' logs and data")
    args = ap.parse_args()
    sets = []
    for s in args.set:
        d, _, kv = s.partition(":")
        k, _, v = kv.partition("=")
        if d not in ("collector", "aggregator", "alerter") or not k or not _:
            ap.error(f"--set {s}: want DAEMON:KEY=VALUE")
        sets.append((d, k, v))

    print("latency-relevant settings (defaults unless --set):")
    for d, k, v, what in LATENCY_KEYS:
        print(f"  {d:10s} {k:26s} {v:7s} {what}")
    for d, k, v in sets:
        print(f"  {d:10s} {k:26s} {v:7s} SET FOR THIS RUN")
    all_vis, all_pg, all_st = [], [], []
    for run in range(1, args.runs + 1):
        vis, pg, st = one_run(args.build_dir, run, args, sets)
        all_vis += vis
        all_pg += pg
        all_st += st
        print(line(f"run {run} (a) error -> counted in /api/v1/query", vis))
        print(line(f"run {run} (b) threshold crossed -> page at webhook", pg))
        sys.stdout.flush()
    print(f"over {args.runs} runs:")
    print(line("(a) tocsin_error() -> counted in the aggregator's /api/v1/query", all_vis,
               GOAL_VISIBLE_MS))
    print(line("(b) threshold-crossing tocsin_error() -> page at the webhook", all_pg,
               GOAL_PAGE_MS))
    for i, name in enumerate(("crossing event visible in the aggregator's query",
                              "alert fired in the alerter (fired_at)",
                              "page received by the webhook (tocsin-sink)")):
        xs = [s[i] for s in all_st if s[i] == s[i]]
        if xs:
            print("    " + line(f"(b) stage: {name}", xs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
