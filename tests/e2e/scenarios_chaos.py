"""The chaos test (issue 7): the whole pipeline on one machine loses nothing and alerts
exactly as its rules say while its parts fail in turn.

chaos_pipeline: the bus (3 brokers), two collectors (with spools), two aggregators and the
alerter, every daemon sending its own heartbeat through the pipeline (selfmon, 1 s). Two
clients (e2e_chaos_emit, libtocsin) send requests and errors at a steady rate while, in
turn:
  1. a collector is killed with SIGKILL (its clients fail over; it is restarted on the same
     port and spool);
  2. every broker goes down for longer than the collectors' producer time-out
     (kafka.message_timeout 1 s): collectors spool and ack, then replay in order;
  3. an aggregator is killed with SIGKILL (the other takes its partitions over; it is
     restarted on its data and takes partitions and events again).
The clients go on sending, every request successful now, until ChaosErrors has resolved on
that data; then they are stopped (SIGTERM: each flushes and prints exactly what it recorded
and had acknowledged), both aggregators must count exactly that (requests, failed requests,
error events), and the alerter must have sent exactly:
  - ChaosErrors (5 % of requests fail until the aggregator is killed, none after; rule
    above 2 % over 20 s): fired once, resolved once, while the traffic goes on (the buckets
    with errors leave the window). Had the traffic stopped instead, the alerter would hold
    the alert for lack of data for a window and its `for` before resolving it
    (docs/alerter.md), which is right for the on-call person but slow for a test;
  - ChaosSpooled (a collector's spool.entries gauge, sent through the pipeline, above 0 in
    2 min, so it cannot resolve before the test ends): fired once — the collectors' own
    gauges crossed the outage inside their spools;
  - PipelineStageSilent for each stage (collector, aggregator, alerter; 20 s windows): never
    — each stage kept an instance alive, and the design watches stages, not instances
    (one dead instance is Prometheus' TocsinDaemonDown);
  - PipelineStageSilent for an environment nobody sends from (the control): fired once, so
    the absence rules above were live and silent only because the heartbeats came.
Takes about 30 s in the normal build, 40 s in the sanitizer build.
"""

import json
import os
import signal
import subprocess
import time
import urllib.parse

from harness import check, http, wait_until

# service, most requests (a bound: the test stops the clients once the faults are over and
# ChaosErrors has resolved, well before), requests per second
EMITTERS = (("chaos", 18000, 180), ("chaos", 18000, 180))
ERROR_EVERY = 20
SELFMON = {"selfmon.interval": "1s", "selfmon.environment": "chaos"}
# Reconnect to brokers that come back within a second (librdkafka's default backs off to 10 s).
RECONNECT = {"kafka.reconnect.backoff.max.ms": "1000"}
GROUP = dict(RECONNECT, **{"kafka.session.timeout.ms": "2500",
                           "kafka.heartbeat.interval.ms": "500", "grace": "2s",
                           "poll.max_wait": "50ms"})
COLLECTOR = dict(RECONNECT, **{"kafka.message_timeout": "1s", "retry_after": "200ms"})

RULES = """
settings:
  group_wait: 500ms
  group_interval: 1s
receivers:
  - {{name: sink, url: "{url}"}}
rules:
  - alert: ChaosErrors
    type: error_rate
    service: chaos
    name: "*"
    window: 20s
    above: 0.02
    for: 2s
    min_count: 100
    severity: critical
    receiver: sink
  - alert: ChaosSpooled
    type: metric
    service: tocsin-collector
    environment: chaos
    name: spool.entries
    kind: gauge
    aggregate: max
    window: 2m
    above: 0
    severity: warning
    receiver: sink
  - {{alert: PipelineStageSilent, type: absence, service: tocsin-collector, environment: chaos,
     window: 20s, severity: critical, labels: {{stage: collector}}, receiver: sink}}
  - {{alert: PipelineStageSilent, type: absence, service: tocsin-aggregator, environment: chaos,
     window: 20s, severity: critical, labels: {{stage: aggregator}}, receiver: sink}}
  - {{alert: PipelineStageSilent, type: absence, service: tocsin-alerter, environment: chaos,
     window: 20s, severity: critical, labels: {{stage: alerter}}, receiver: sink}}
  - {{alert: PipelineStageSilent, type: absence, service: tocsin-aggregator,
     environment: chaos-dr, window: 20s, severity: critical, labels: {{stage: control}},
     receiver: sink}}
"""


def metric(proc, name):
    status, text = http("GET", f"http://127.0.0.1:{proc.http_port}/metrics")
    check(status == 200, f"/metrics of {proc.name}: {status}")
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.split()[-1])
            seen = True
    return total if seen else None


def query(agg, service, name="*", window="1h", env=None):
    url = (f"http://127.0.0.1:{agg.http_port}/api/v1/query?service={service}"
           f"&name={urllib.parse.quote(name, safe='')}"
           f"&window={window}" + (f"&environment={env}" if env else ""))
    status, body = http("GET", url)
    check(status == 200, f"query {service}/{name} on {agg.name}: {status} {body}")
    return body


def killed(c, proc):
    proc.kill9()
    c.procs.remove(proc)  # killed on purpose: its exit code is not a clean stop


def start_emitter(c, name, collectors, service, count, rate):
    out = os.path.join(c.dir, name + ".out")
    with open(out, "wb") as f_out, open(os.path.join(c.dir, name + ".log"), "ab") as f_err:
        p = subprocess.Popen([c.bin("tests/e2e/e2e_chaos_emit"), collectors, service,
                              str(count), str(rate), str(ERROR_EVERY)],
                             stdout=f_out, stderr=f_err)
    return p, out


def emitter_truth(p, out, timeout):
    """What a client recorded and had acknowledged, after it was told to stop."""
    p.send_signal(signal.SIGTERM)
    rc = p.wait(timeout)
    text = open(out).read().strip()
    check(rc == 0, f"e2e_chaos_emit: not every event acknowledged ({rc}): {text}")
    return json.loads(text.splitlines()[-1])


def notifications(c, sink):
    """(alertname, stage or service, status) of every alert in every notification."""
    got = []
    for line in c.sink_lines(sink):
        body = line.get("body")
        check(isinstance(body, dict), f"sink got a body that is not JSON: {line}")
        for a in body.get("alerts", []):
            lab = a["labels"]
            got.append((lab["alertname"], lab.get("stage", lab.get("service")), a["status"]))
    return got


def chaos(c, t0, emitters, col1, col2, agg1, agg_extra):
    """The three faults, in turn, while the clients send; returns the restarted col-1 and
    agg-1."""
    def say(what):
        print(f"[{time.monotonic() - t0:5.1f}s] {what}")

    # 1. A collector killed while it takes traffic; restarted on its port and spool.
    wait_until("col-1 to take traffic",
               lambda: (metric(col1, "tocsin_collector_events_accepted_total") or 0) > 300, 20,
               interval=0.05)
    killed(c, col1)
    say("col-1 killed (SIGKILL)")
    time.sleep(1)
    col1 = c.start_collector("col-1b", zport=int(col1.endpoint.rsplit(":", 1)[1]),
                             extra=dict(COLLECTOR, **SELFMON, **{
                                 "selfmon.collectors": "self",
                                 "spool.dir": os.path.join(c.dir, "col-1-spool")}))
    say("col-1 restarted")

    # 2. Every broker down for longer than the producer time-out (1 s): collectors spool.
    time.sleep(1)
    c.bus_brokers("down")
    say("brokers down")
    wait_until("a collector to spool",
               lambda: any((metric(p, "tocsin_collector_spooled_batches_total") or 0) > 0
                           for p in (col1, col2)), 15, interval=0.1)
    time.sleep(2.5)  # the outage: 2.5 s and more, the producer time-out is 1 s
    c.bus_brokers("up")
    say("brokers up")
    wait_until("the spools to be replayed",
               lambda: all(metric(p, "tocsin_collector_spool_entries") == 0
                           and metric(p, "tocsin_collector_spooling") == 0
                           for p in (col1, col2)), 30, interval=0.1)
    say("spools replayed")

    # 3. An aggregator killed while it applies events; restarted on its data.
    applied = metric(agg1, "tocsin_aggregator_events_applied_total") or 0
    wait_until("agg-1 to apply more events",
               lambda: (metric(agg1, "tocsin_aggregator_events_applied_total") or 0) > applied,
               20, interval=0.05)
    killed(c, agg1)
    say("agg-1 killed (SIGKILL)")
    # Every fault has now happened with failed requests in the stream; from here on the
    # clients' requests succeed, so ChaosErrors can resolve while they still send.
    for p, _ in emitters:
        p.send_signal(signal.SIGUSR1)
    time.sleep(1)
    agg1 = c.start_aggregator("agg-1b", extra=agg_extra, data_dir=agg1.data_dir)
    # The clients still send until the restarted aggregator owns partitions again and
    # applies their events: the hand-back is part of what the counts must survive.
    wait_until("agg-1b to own partitions and apply events",
               lambda: (metric(agg1, "tocsin_aggregator_assigned_partitions") or 0) > 0
               and (metric(agg1, "tocsin_aggregator_events_applied_total") or 0) > 0, 30,
               interval=0.1)
    say("agg-1b applies events")
    return col1, agg1


def scenario_chaos_pipeline(c):
    t0 = time.monotonic()
    c.start_bus(brokers=3, partitions=4)
    sink = c.start_sink()
    col1, col2 = (c.start_collector(f"col-{i}", extra=dict(COLLECTOR, **SELFMON, **{
        "selfmon.collectors": "self", "spool.dir": os.path.join(c.dir, f"col-{i}-spool")}))
        for i in (1, 2))
    both = f"{col1.endpoint},{col2.endpoint}"
    agg_extra = dict(GROUP, **SELFMON, **{"selfmon.collectors": both})
    agg1 = c.start_aggregator("agg-1", extra=agg_extra)
    agg2 = c.start_aggregator("agg-2", extra=agg_extra)
    alerter = c.start_alerter(RULES.format(url=sink.url), extra=dict(SELFMON, **RECONNECT, **{
        "selfmon.collectors": both, "eval.interval": "500ms"}))
    wait_until("both aggregators to own partitions",
               lambda: (metric(agg1, "tocsin_aggregator_assigned_partitions") or 0) > 0
               and (metric(agg2, "tocsin_aggregator_assigned_partitions") or 0) > 0, 30,
               interval=0.1)
    print(f"pipeline up after {time.monotonic() - t0:.1f}s")

    # Two clients, each with its own first collector, so both collectors carry traffic.
    (svc, n, rate), _ = EMITTERS
    emitters = [start_emitter(c, "emit-1", both, svc, n, rate),
                start_emitter(c, "emit-2", f"{col2.endpoint},{col1.endpoint}", svc, n, rate)]
    try:
        col1, agg1 = chaos(c, t0, emitters, col1, col2, agg1, agg_extra)
        # ChaosErrors resolves on data: the errors' buckets leave its 20 s window while the
        # clients' requests (all successful now) keep it judged, about 15 to 25 s after the
        # last error.
        resolved = ("ChaosErrors", "chaos", "resolved")
        wait_until("ChaosErrors to resolve while the clients send",
                   lambda: resolved in notifications(c, sink), 60, interval=0.2)
        print(f"[{time.monotonic() - t0:5.1f}s] ChaosErrors resolved")
        truths = [emitter_truth(p, out, 60) for p, out in emitters]
    finally:
        for p, _ in emitters:  # a failed step leaves no client behind
            if p.poll() is None:
                p.kill()
                p.wait()
    print(f"[{time.monotonic() - t0:5.1f}s] clients stopped: {truths}")
    sent = {k: sum(t[k] for t in truths) for k in ("requests", "request_errors", "errors")}
    routes = {r: [sum(t["routes"][r][i] for t in truths) for i in (0, 1)]
              for r in ("/cart", "/pay")}

    # Exact counts, per series, on both aggregators (each answers for every service): every
    # route's requests and failed requests, all requests (name "*"), the error events.
    want_counts = ([("*", sent["requests"], sent["request_errors"]),
                    ("$errors", sent["errors"], None)]
                   + [(r, n, e) for r, (n, e) in routes.items()])

    def exact(agg):
        got = []
        for name, _, errs in want_counts:
            q = query(agg, svc, name)
            got.append((name, q["count"], q["errors"] if errs is not None else None))
        exact.last = (agg.name, got)
        return got == want_counts
    exact.last = None
    for agg in (agg2, agg1):
        try:
            wait_until(f"{agg.name} to count exactly what was sent", lambda a=agg: exact(a), 45)
        except Exception:
            print(f"sent (series, count, errors) {want_counts}; last answer {exact.last}")
            raise
    time.sleep(1)  # nothing more arrives later
    for agg in (agg2, agg1):
        check(exact(agg),
              f"{agg.name}: counts changed after settling: {exact.last}, sent {want_counts}")
    print(f"both aggregators count {sent['requests']} requests, {sent['request_errors']} "
          f"failed, {sent['errors']} error events, per route {routes}: exactly what the "
          f"clients sent")
    dups = sum(metric(a, "tocsin_aggregator_duplicates_total") or 0 for a in (agg1, agg2))
    print(f"duplicates dropped by event_id (this run of each): {dups:.0f}")

    # Every stage's heartbeat came through the pipeline, with its gauges.
    for service, gauge in (("tocsin-collector", "spool.entries"),
                           ("tocsin-aggregator", "consumer.lag"),
                           ("tocsin-alerter", "consumer.lag")):
        hb = query(agg2, service, "heartbeat", "5m", env="chaos")
        g = query(agg2, service, gauge, "5m", env="chaos")
        check(hb["kind"] == "counter" and hb["count"] > 0, f"{service} heartbeat: {hb}")
        check(g["kind"] == "gauge" and g["count"] > 0, f"{service} {gauge}: {g}")
    spooled_max = query(agg2, "tocsin-collector", "spool.entries", "5m", env="chaos")["max"]
    check(spooled_max > 0, f"the collectors' spool.entries never showed the outage: {spooled_max}")

    # The alerts: exactly as the rules say (ChaosErrors has fired and resolved by now).
    want = [("ChaosErrors", "chaos", "firing"), ("ChaosErrors", "chaos", "resolved"),
            ("ChaosSpooled", "tocsin-collector", "firing"),
            ("PipelineStageSilent", "control", "firing")]
    wait_until("the four expected notifications",
               lambda: set(want) <= set(notifications(c, sink)), 45, interval=0.2)
    time.sleep(1.5)  # anything more would have come by now too (group_wait 500 ms, interval 1 s)
    got = notifications(c, sink)
    check(sorted(got) == sorted(want), f"notifications {got}, want exactly {sorted(want)}")
    check(got.index(want[0]) < got.index(want[1]), f"ChaosErrors resolved before firing: {got}")
    status, body = http("GET", f"http://127.0.0.1:{alerter.http_port}/api/v1/alerts")
    check(status == 200, f"alerts: {status}")
    states = {(a["alertname"], a["labels"].get("stage", a["labels"].get("service"))): a["state"]
              for a in body["alerts"]}
    for stage in ("collector", "aggregator", "alerter"):
        check(states.get(("PipelineStageSilent", stage)) == "inactive",
              f"PipelineStageSilent {stage}: {states}")
    check(states.get(("ChaosErrors", "chaos")) == "resolved", f"ChaosErrors: {states}")
    check(states.get(("ChaosSpooled", "tocsin-collector")) == "firing", f"ChaosSpooled: {states}")
    check(states.get(("PipelineStageSilent", "control")) == "firing", f"control: {states}")
    print(f"notifications: {got}; stage rules inactive; total {time.monotonic() - t0:.1f}s")


SCENARIOS = {"chaos_pipeline": scenario_chaos_pipeline}
