#!/usr/bin/env python3
"""Alert storm benchmark: 10,000 alerts fire at once, through tocsin-alerter and, in the
same run, through Prometheus Alertmanager with an equivalent configuration.

Both deliver to the same kinds of receivers, each a tocsin-sink process on 127.0.0.1:
  chat   plays Slack: answers 429 (Retry-After 1) to anything beyond 1 message a second;
  pager  plays PagerDuty Events API v2 (202), whose limit is ~120 events a minute per key;
  hook   a generic webhook (200).
Printed per system and receiver: notifications received, time from the triggering data
to the first one, refusals for exceeding the rate (429s), the most messages in any 60 s
(PagerDuty) and whether every alert that fired was reported to that receiver. Also the
time from one triggering rollup to its page, for single alerts (median, p99).

usage: bench_alerter_storm.py BUILD_DIR [--runs N] [--alerts N] [--no-alertmanager]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
from harness import Cluster, TestFailure, free_port, http, wait_until  # noqa: E402

TOKEN = "bench"


def start_sink(c, name, *args):
    port = free_port()
    out = os.path.join(c.dir, name + ".jsonl")
    p = c.start(name, [c.bin("tools/tocsin-sink"), "--port", str(port), "--out", out] + list(args))
    c.wait_ready(p, port)
    p.port, p.out, p.url = port, out, f"http://127.0.0.1:{port}/{name}"
    return p


def lines(sink):
    try:
        with open(sink.out) as f:
            return [json.loads(x) for x in f if x.strip()]
    except FileNotFoundError:
        return []


def ts_us(line):
    t = time.strptime(line["ts"][:19], "%Y-%m-%dT%H:%M:%S")
    return int((time.mktime(t) - time.timezone) * 1e6 + int(line["ts"][20:23]) * 1000)


def start_sinks(c, tag):
    return {
        "chat": start_sink(c, f"{tag}-chat", "--mode", "slack", "--max-rate", "1"),
        "pager": start_sink(c, f"{tag}-pager", "--mode", "pagerduty"),
        "hook": start_sink(c, f"{tag}-hook"),
    }


def sink_stats(sink, t0_us):
    ls = lines(sink)
    ok = [x for x in ls if not x.get("refused")]
    refused = len(ls) - len(ok)
    first = (ts_us(ok[0]) - t0_us) / 1e6 if ok else None
    times = [ts_us(x) for x in ok]
    worst60 = 0
    j = 0
    for i in range(len(times)):
        while times[i] - times[j] >= 60e6:
            j += 1
        worst60 = max(worst60, i - j + 1)
    worst1 = 0
    j = 0
    for i in range(len(times)):
        while times[i] - times[j] >= 1e6:
            j += 1
        worst1 = max(worst1, i - j + 1)
    return {"received": len(ok), "refused_429": refused, "first_s": first,
            "max_per_60s": worst60, "max_per_1s": worst1}


def push(c, records):
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    r = subprocess.run([c.bin("tests/e2e/alr_push"), c.bootstrap_file], input=data,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    if r.returncode != 0:
        raise TestFailure(f"alr_push: {r.stderr.decode()}")
    return json.loads(r.stdout.decode().strip().splitlines()[-1])["at_us"]


def tocsin_rules(sinks, n):
    out = ["settings: {group_wait: 500ms, group_interval: 1m, repeat_interval: 4h}",
           "receivers:",
           f"  - {{name: chat, type: slack, url: \"{sinks['chat'].url}\"}}",
           f"  - {{name: pager, type: pagerduty, url: \"{sinks['pager'].url}\", routing_key: k}}",
           f"  - {{name: hook, url: \"{sinks['hook'].url}\"}}",
           "policies:",
           "  - {name: all, tiers: [{receivers: [chat, pager, hook]}]}",
           "routes:",
           # A single page goes out at once (group_wait 0); the storm waits the same
           # 500 ms as Alertmanager's route below, to gather what fires together.
           "  - {match: {alertname: Single}, policy: all, group_by: [alertname, service],"
           " group_wait: 0s}",
           "  - {policy: all, group_by: [alertname, service]}",
           "rules:"]
    for i in range(n):
        out.append(f"  - {{alert: Down, type: error_rate, service: svc{i:05d}, window: 1m, "
                   f"above: 0.1, severity: critical}}")
    for i in range(20):
        out.append(f"  - {{alert: Single, type: error_rate, service: single{i:02d}, window: 1m, "
                   f"above: 0.1, severity: critical}}")
    return "\n".join(out) + "\n"


def reported(alerter, receiver):
    """Distinct alerts the notification log says were delivered to `receiver`."""
    fps = set()
    before = None
    while True:
        q = f"/api/v1/notifications?limit=1000&receiver={receiver}&status=delivered"
        if before:
            q += f"&before={before}"
        status, body = http("GET", f"http://127.0.0.1:{alerter.http_port}{q}", timeout=30)
        if status != 200:
            raise TestFailure(f"notification log: {status}")
        for n in body["notifications"]:
            fps.update(n["alerts"] or [])
        before = body["next_before"]
        if not before:
            return fps


def run_tocsin(build, n, run):
    c = Cluster(build)
    try:
        c.start_bus(brokers=1, partitions=4)
        sinks = start_sinks(c, "tocsin")
        alerter = c.start_alerter(tocsin_rules(sinks, n), extra={
            "eval.interval": "1s", "api.token": TOKEN, "log.level": "warn"})
        # Wait until the alerter evaluates (it reached the end of the empty topic) and
        # sends (HA is on by default: it leads once the elector's group has formed).
        def caught_up():
            s, b = http("GET", f"http://127.0.0.1:{alerter.http_port}/health/ready")
            deps = b.get("dependencies", {}) if s == 200 else {}
            return (deps.get("kafka", {}).get("status") == "healthy" and
                    str(deps.get("ha", {}).get("detail", "leader")).startswith("leader"))
        wait_until("alerter caught up and leading", caught_up, 60)
        start = int(time.time()) // 10 * 10
        # Single alerts first: time from one triggering rollup to its page.
        single = []
        for i in range(10):
            before = len(lines(sinks["hook"]))
            t0 = push(c, [{"bucket": {"service": f"single{i:02d}", "environment": "prod",
                                      "name": "/", "kind": 1, "start_s": start, "width_s": 10,
                                      "count": 100, "errors": 50, "revision": 1}}])
            wait_until("single page", lambda: len(lines(sinks["hook"])) > before, 30, 0.02)
            single.append((ts_us(lines(sinks["hook"])[before]) - t0) / 1e6)
            time.sleep(1.1)  # Slack's one message a second
        base = {k: len(lines(s)) for k, s in sinks.items()}
        records = [{"bucket": {"service": f"svc{i:05d}", "environment": "prod", "name": "/",
                               "kind": 1, "start_s": start, "width_s": 10, "count": 100,
                               "errors": 50, "revision": 1}} for i in range(n)]
        t0 = push(c, records)
        deadline = time.monotonic() + 90
        result = {}
        want = n
        while time.monotonic() < deadline:
            done = True
            for k in sinks:
                if len(reported(alerter, k)) < want + 10:
                    done = False
            if done:
                break
            time.sleep(1)
        time.sleep(2)
        for k, s in sinks.items():
            full = sink_stats(s, t0)
            storm_lines = lines(s)[base[k]:]
            ok = [x for x in storm_lines if not x.get("refused")]
            st = {"received": len(ok), "refused_429": full["refused_429"],
                  "first_s": (ts_us(ok[0]) - t0) / 1e6 if ok else None,
                  "max_per_60s": full["max_per_60s"], "max_per_1s": full["max_per_1s"]}
            fps = reported(alerter, k)
            st["alerts_reported"] = len(fps) - 10  # the single alerts
            result[k] = st
        result["single_page_s"] = single
        return result
    finally:
        c.close()


AM_CONFIG = """
global:
  resolve_timeout: 5m
route:
  receiver: all
  group_by: [alertname, service]
  group_wait: 500ms
  group_interval: 1m
  repeat_interval: 4h
receivers:
  - name: all
    slack_configs:
      - api_url: "{chat}"
        channel: "#alerts"
        send_resolved: true
    pagerduty_configs:
      - routing_key: k
        url: "{pager}"
        send_resolved: true
    webhook_configs:
      - url: "{hook}"
        send_resolved: true
"""


def run_alertmanager(build, n):
    am = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if not am:
        return None
    c = Cluster(build)
    try:
        sinks = start_sinks(c, "am")
        cfg = os.path.join(c.dir, "am.yml")
        with open(cfg, "w") as f:
            f.write(AM_CONFIG.format(chat=sinks["chat"].url, pager=sinks["pager"].url,
                                     hook=sinks["hook"].url))
        port = free_port()
        p = c.start("alertmanager", [am, f"--config.file={cfg}",
                                     f"--storage.path={os.path.join(c.dir, 'am-data')}",
                                     f"--web.listen-address=127.0.0.1:{port}",
                                     "--cluster.listen-address=", "--log.level=warn"])
        wait_until("alertmanager ready", lambda: http(
            "GET", f"http://127.0.0.1:{port}/-/ready")[0] == 200, 30)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        alerts = [{"labels": {"alertname": "Down", "service": f"svc{i:05d}",
                              "severity": "critical"}, "startsAt": now} for i in range(n)]
        # The storm starts when the first alerts reach it: Alertmanager notifies while the
        # rest are still being posted.
        t0 = int(time.time() * 1e6)
        for i in range(0, n, 1000):
            status, body = http("POST", f"http://127.0.0.1:{port}/api/v2/alerts",
                                body=alerts[i:i + 1000], timeout=120)
            if status != 200:
                raise TestFailure(f"alertmanager: {status} {body}")
        posted_s = (time.time() * 1e6 - t0) / 1e6
        time.sleep(60)
        result = {}
        for k, s in sinks.items():
            st = sink_stats(s, t0)
            if k == "hook":
                seen = set()
                for x in lines(s):
                    for a in x["body"].get("alerts", []):
                        seen.add(a["labels"].get("service"))
                st["alerts_reported"] = len(seen)
            else:
                st["alerts_reported"] = None
            result[k] = st
        result["post_s"] = posted_s
        return result
    finally:
        c.close()


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--alerts", type=int, default=10000)
    ap.add_argument("--no-alertmanager", action="store_true")
    a = ap.parse_args()
    runs = [run_tocsin(a.build, a.alerts, i) for i in range(a.runs)]
    single = [x for r in runs for x in r["single_page_s"]]
    print(f"\n== tocsin-alerter: storm of {a.alerts} alerts, {a.runs} run(s) ==")
    print(f"single alert, rollup produced -> page received: median {statistics.median(single):.3f} s,"
          f" p99 {pct(single, 0.99):.3f} s ({len(single)} samples)")
    for k in ("chat", "pager", "hook"):
        rs = [r[k] for r in runs]
        firsts = [r["first_s"] for r in rs if r["first_s"] is not None]
        print(f"  {k:5s}: notifications median {statistics.median(r['received'] for r in rs):.0f}"
              f" (runs: {[r['received'] for r in rs]}), first after median "
              f"{statistics.median(firsts):.3f} s p99 {pct(firsts, 0.99):.3f} s, "
              f"429s {sum(r['refused_429'] for r in rs)}, max/1s {max(r['max_per_1s'] for r in rs)},"
              f" max/60s {max(r['max_per_60s'] for r in rs)}, alerts reported "
              f"{min(r['alerts_reported'] for r in rs)}/{a.alerts}")
    result = {"tocsin": runs}
    if not a.no_alertmanager:
        am = run_alertmanager(a.build, a.alerts)
        result["alertmanager"] = am
        if am is None:
            print("\n== Prometheus Alertmanager: not installed (scripts/deps.sh --bench) ==")
        else:
            print(f"\n== Prometheus Alertmanager: same storm (posted through its v2 API in "
                  f"{am['post_s']:.1f} s), 60 s observed ==")
            for k in ("chat", "pager", "hook"):
                r = am[k]
                print(f"  {k:5s}: notifications {r['received']}, first after "
                      f"{r['first_s'] if r['first_s'] is None else round(r['first_s'], 3)} s, "
                      f"429s {r['refused_429']}, max/1s {r['max_per_1s']}, max/60s "
                      f"{r['max_per_60s']}, alerts reported "
                      f"{r['alerts_reported'] if r['alerts_reported'] is not None else 'n/a'}")
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
