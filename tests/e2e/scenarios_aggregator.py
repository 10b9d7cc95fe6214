"""The aggregator's end-to-end scenarios: exactly once through kill -9 (packed records and
single-event records side by side), a takeover between two aggregators of one group, the query
API (issues, statuses, logs, ranges) answered by any instance, and the record formats (packs,
the format before packing, an unknown format refused without blocking, sampled events counted
with their weights). Events are written straight into the bus by agg_produce, as collectors
write them.
"""

import json
import os
import subprocess
import time

from harness import check, http, wait_until

# Short session time-outs, so that the group notices a killed member quickly.
GROUP = {"kafka.session.timeout.ms": "2500", "kafka.heartbeat.interval.ms": "500",
         "grace": "2s", "poll.max_wait": "50ms", "api.token": "s3cret"}


def start_producer(c, name, *args):
    """agg_produce in the background; returns (Popen, stdout path)."""
    out = os.path.join(c.dir, name + ".out")
    with open(out, "wb") as f_out, open(os.path.join(c.dir, name + ".log"), "ab") as f_err:
        p = subprocess.Popen([c.bin("tests/e2e/agg_produce"), "--bootstrap-file",
                              c.bootstrap_file] + [str(a) for a in args],
                             stdout=f_out, stderr=f_err)
    return p, out


def producer_truth(p, out, timeout=120):
    rc = p.wait(timeout)
    with open(out) as f:
        text = f.read().strip()
    check(rc == 0, f"agg_produce failed ({rc}): {text}")
    return json.loads(text.splitlines()[-1])


def query(agg, service, name="*", window="1h"):
    status, body = http("GET", f"http://127.0.0.1:{agg.http_port}/api/v1/query"
                               f"?service={service}&name={name}&window={window}")
    check(status == 200, f"query {service}/{name} on {agg.name}: {status} {body}")
    return body


def metric(agg, name):
    status, text = http("GET", f"http://127.0.0.1:{agg.http_port}/metrics")
    check(status == 200, f"/metrics of {agg.name}: {status}")
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    return 0.0


LAST_MISMATCH = {}


def totals_match(agg, truth):
    """True when the aggregator's counts equal the truth for every service."""
    for svc, t in truth["services"].items():
        got = (query(agg, svc)["count"], query(agg, svc, "$errors")["count"])
        if got != (t["requests"], t["errors"]):
            LAST_MISMATCH[agg.name] = f"{svc}: (requests, errors) {got}, sent " \
                                      f"{(t['requests'], t['errors'])}"
            return False
    return True


def wait_totals(what, agg, truth, timeout):
    try:
        wait_until(what, lambda: totals_match(agg, truth), timeout)
    except Exception:
        print(f"last mismatch on {agg.name}: {LAST_MISMATCH.get(agg.name)}")
        raise


def check_totals(agg, truth):
    for svc, t in truth["services"].items():
        r = query(agg, svc)
        e = query(agg, svc, "$errors")
        check(r["count"] == t["requests"],
              f"{agg.name} {svc}: {r['count']} requests, sent {t['requests']} unique")
        check(r["errors"] == t["request_errors"],
              f"{agg.name} {svc}: {r['errors']} failed requests, sent {t['request_errors']}")
        check(e["count"] == t["errors"],
              f"{agg.name} {svc}: {e['count']} errors, sent {t['errors']} unique")
        # name=* is answered from the service's request totals: the same as its routes'.
        routes = [query(agg, svc, route) for route in ("/a", "/b", "/c")]
        check(sum(x["count"] for x in routes) == r["count"] and
              sum(x["errors"] for x in routes) == r["errors"] and
              sum(x["late"] for x in routes) == r["late"],
              f"{agg.name} {svc}: * {r['count']}/{r['errors']}/{r['late']} is not the sum of its "
              f"routes {[(x['count'], x['errors'], x['late']) for x in routes]}")


def split(*aggs):
    """True when every aggregator owns partitions and together they own all 4."""
    n = [metric(agg, "tocsin_aggregator_assigned_partitions") for agg in aggs]
    return all(x > 0 for x in n) and sum(n) == 4


def merge_truths(*truths):
    """One truth of several producers writing distinct services."""
    out = {"written": 0, "unique": 0, "duplicates": 0, "records": 0, "services": {}}
    for t in truths:
        for k in ("written", "unique", "duplicates", "records"):
            out[k] += t[k]
        out["services"].update(t["services"])
    return out


def kill_and_forget(c, proc):
    proc.kill9()
    c.procs.remove(proc)  # killed on purpose: its exit code is not a clean stop


def scenario_agg_exactly_once(c):
    """A stream with 5 % duplicated event ids, half of it in packed records (25 events of a
    service per record) and half one event per record; the aggregator is killed with SIGKILL
    three times mid-stream and restarted on its data; the counts end equal to the unique
    events."""
    c.start_bus(brokers=1, partitions=4)
    data = os.path.join(c.dir, "agg-data")
    agg = c.start_aggregator("agg-0", extra=GROUP, data_dir=data)
    wait_until("the partitions", lambda: metric(agg, "tocsin_aggregator_assigned_partitions") == 4,
               30)
    prod, out = start_producer(c, "produce", "--count", 12000, "--services", 4, "--kind", "mix",
                               "--dup-rate", 0.05, "--rate", 800, "--users", 200,
                               "--error-every", 25, "--seed", 7)
    pprod, pout = start_producer(c, "produce-packed", "--count", 12000, "--services", 4,
                                 "--prefix", "pk", "--kind", "mix", "--dup-rate", 0.05, "--rate",
                                 800, "--users", 200, "--error-every", 25, "--seed", 8,
                                 "--pack", 25)
    for i in range(3):
        # Kill it once it has applied part of the stream since it started (a restart of the
        # sanitizer build on a loaded machine takes seconds: the stream lasts 15 s so that the
        # third kill still falls inside it).
        wait_until(f"agg-{i} to apply events",
                   lambda: metric(agg, "tocsin_aggregator_events_applied_total") >= 500, 30,
                   interval=0.05)
        applied = metric(agg, "tocsin_aggregator_events_applied_total")
        kill_and_forget(c, agg)
        print(f"kill -9 #{i + 1} after {applied:.0f} applied")
        agg = c.start_aggregator(f"agg-{i + 1}", extra=GROUP, data_dir=data)
    check(prod.poll() is None and pprod.poll() is None,
          "the stream ended before the third kill: not mid-stream")
    truth = merge_truths(producer_truth(prod, out), producer_truth(pprod, pout))
    print(f"sent {truth['written']} events in {truth['records']} records: {truth['unique']} unique, "
          f"{truth['duplicates']} duplicates")
    check(truth["duplicates"] > 0, "the stream must hold duplicates")
    wait_totals("the counts to reach the unique events", agg, truth, 60)
    check_totals(agg, truth)
    # Nothing more arrives later: the counts stay.
    time.sleep(1)
    check_totals(agg, truth)
    print(f"after 3 kills: duplicates dropped {metric(agg, 'tocsin_aggregator_duplicates_total'):.0f}"
          f" (this run), stale records re-read {metric(agg, 'tocsin_aggregator_stale_events_total'):.0f}")


def scenario_agg_takeover(c):
    """Two aggregators in one group share the partitions; both answer for every service (the
    view); records are packed (20 events of a service each); one is killed mid-stream, the survivor takes its partitions over from the
    checkpoints, and the totals stay exact; a new member joins and answers alike. Then the
    query API on that pair (api_checks)."""
    c.start_bus(brokers=1, partitions=4)
    a = c.start_aggregator("agg-a", extra=GROUP)
    b = c.start_aggregator("agg-b", extra=GROUP)
    wait_until("both aggregators to own partitions", lambda: split(a, b), 30)
    prod, out = start_producer(c, "produce", "--count", 20000, "--services", 8, "--kind", "mix",
                               "--dup-rate", 0.05, "--rate", 4000, "--error-every", 20,
                               "--seed", 11, "--pack", 20)
    time.sleep(2.5)
    check(metric(a, "tocsin_aggregator_events_applied_total") > 0, "agg-a applied nothing")
    check(metric(a, "tocsin_aggregator_checkpoints_published_total") > 0,
          "agg-a published no checkpoint")
    kill_and_forget(c, a)
    truth = producer_truth(prod, out)
    print(f"sent {truth['written']} records ({truth['duplicates']} duplicates) to 8 services")
    wait_totals("the survivor's counts to reach the unique events", b, truth, 60)
    check_totals(b, truth)
    check(metric(b, "tocsin_aggregator_assigned_partitions") == 4, "survivor does not own all")
    check(metric(b, "tocsin_aggregator_takeovers_total") >= 1,
          "the survivor did not resume from a checkpoint")
    # A new member joins: partitions move back, totals stay, and both answer alike.
    a2 = c.start_aggregator("agg-a2", extra=GROUP)
    wait_until("the rebalance", lambda: split(a2, b), 30)
    wait_totals("the new member's view", a2, truth, 30)
    check_totals(a2, truth)
    check_totals(b, truth)
    # The query API, on the same pair.
    api_checks(c, a2, b)


def api_checks(c, a, b):
    """Issues (new, resolved through the API with a bearer token, regressed), logs by level
    and text, range queries and 400s naming the parameter, answered by an instance that may
    not own the service's partition; and an event visible there within seconds."""
    truth = producer_truth(*start_producer(c, "produce-api", "--count", 300, "--services", 2,
                                           "--prefix", "api", "--kind", "mix", "--users", 20,
                                           "--seed", 3))
    wait_until("both views to hold every count",
               lambda: totals_match(a, truth) and totals_match(b, truth), 30)
    base = f"http://127.0.0.1:{b.http_port}/api/v1"
    for svc, t in truth["services"].items():
        status, issues = http("GET", f"{base}/issues?service={svc}&sort=count")
        check(status == 200, f"issues: {status} {issues}")
        check(sum(i["count"] for i in issues["issues"]) == t["errors"],
              f"{svc}: issue counts {issues} vs {t['errors']} errors")
        counts = [i["count"] for i in issues["issues"]]
        check(counts == sorted(counts, reverse=True), f"not sorted by count: {counts}")
        status, logs = http("GET", f"{base}/logs?service={svc}&since=1h&limit=1000")
        check(status == 200 and len(logs["logs"]) == t["logs"],
              f"{svc}: {len(logs.get('logs', []))} logs, sent {t['logs']}")
        status, logs = http("GET", f"{base}/logs?service={svc}&level=error")
        check(status == 200 and logs["logs"] == [], f"no error logs were sent: {logs}")
        status, logs = http("GET", f"{base}/logs?service={svc}&q=line%201&limit=1000")
        check(status == 200 and all("line 1" in e["message"] for e in logs["logs"]),
              f"substring filter: {logs}")
    svc = "api-0"
    status, issues = http("GET", f"{base}/issues?service={svc}")
    issue = issues["issues"][0]
    status, detail = http("GET", f"{base}/issues/{issue['id']}?service={svc}")
    check(status == 200 and detail["sample"]["error"]["frames"][0]["function"] == "handle",
          f"issue detail: {status} {detail}")
    # Mutations need the bearer token.
    url = f"{base}/issues/{issue['id']}"
    status, body = http("POST", url, {"status": "resolved", "service": svc})
    check(status == 401, f"POST without a token: {status} {body}")
    status, body = http("POST", url, {"status": "resolved", "service": svc},
                        headers={"Authorization": "Bearer wrong"})
    check(status == 401, f"POST with a wrong token: {status} {body}")
    auth = {"Authorization": "Bearer s3cret"}
    status, body = http("POST", url, {"status": "closed", "service": svc}, headers=auth)
    check(status == 400 and body.get("parameter") == "status", f"bad status: {status} {body}")
    status, body = http("POST", url, {"status": "resolved", "service": svc}, headers=auth)
    check(status == 200 and body["status"] == "resolved", f"resolve: {status} {body}")
    # Both instances see the status (the other one through tocsin.rollups).
    for agg in (a, b):
        def resolved(agg=agg):
            _, d = http("GET", f"http://127.0.0.1:{agg.http_port}/api/v1/issues/"
                               f"{issue['id']}?service={svc}")
            return d.get("status") == "resolved"
        wait_until(f"{agg.name} to show the issue resolved", resolved, 10)
    status, res = http("GET", f"{base}/issues?service={svc}&status=resolved")
    check(status == 200 and [i["id"] for i in res["issues"]] == [issue["id"]],
          f"status filter: {res}")
    # The same errors again: the issue regresses (whoever owns its partition notices).
    regressed_before = metric(a, "tocsin_aggregator_issues_regressed_total") + \
        metric(b, "tocsin_aggregator_issues_regressed_total")
    t0 = time.monotonic()
    producer_truth(*start_producer(c, "produce2", "--count", 60, "--service", svc,
                                   "--kind", "error", "--seed", 5))

    def regressed():
        _, d = http("GET", f"{base}/issues/{issue['id']}?service={svc}")
        return d.get("status") == "unresolved" and d["status_updated_by"] == "regression"
    wait_until("the issue to regress", regressed, 10)
    print(f"regression visible on the other instance after {time.monotonic() - t0:.2f} s")
    check(metric(a, "tocsin_aggregator_issues_regressed_total") +
          metric(b, "tocsin_aggregator_issues_regressed_total") == regressed_before + 1,
          "exactly one regression")
    # An event's visibility on an instance that may not own it.
    t0 = time.monotonic()
    before = query(b, "api-1")["count"]
    producer_truth(*start_producer(c, "produce3", "--count", 1, "--service", "api-1",
                                   "--seed", 9))
    wait_until("one more request", lambda: query(b, "api-1")["count"] == before + 1, 10,
               interval=0.02)
    print(f"one request visible after {(time.monotonic() - t0) * 1000:.0f} ms "
          f"(producer start included)")
    # Ranges, series and 400s naming the parameter.
    status, rng = http("GET", f"{base}/range?service={svc}&name=*&from=5m&to=now&step=1m")
    check(status == 200 and len(rng["points"]) >= 5, f"range: {status} {rng}")
    check(sum(p["count"] for p in rng["points"]) == query(b, svc, window="10m")["count"],
          "range points add up to the window")
    status, series = http("GET", f"{base}/series?service={svc}")
    check(status == 200 and {"/a", "/b", "/c", "$errors"} <= {s["name"] for s in series["series"]},
          f"series: {series}")
    for path, param in (("query?service=api-0&name=*&window=banana", "window"),
                        ("query?name=*&window=5m", "service"),
                        ("range?service=api-0&name=*&from=1h&to=now&step=7s", "step"),
                        ("issues?service=api-0&sort=loudest", "sort"),
                        ("issues?status=open", "status"),
                        ("logs?service=api-0&level=loud", "level"),
                        ("logs?level=info", "service"),
                        ("logs?service=api-0&limit=0", "limit")):
        status, body = http("GET", f"{base}/{path}")
        check(status == 400 and body.get("parameter") == param,
              f"{path}: {status} {body} (want 400 naming {param})")
    status, body = http("GET", f"{base}/issues/nope?service={svc}")
    check(status == 404, f"unknown issue: {status} {body}")


def scenario_agg_formats(c):
    """The formats of tocsin.events records side by side on one partition set: packs (with
    duplicates inside and across them), single events (the format before packing), packs
    under a format name the aggregator does not know (refused whole and counted, the records
    after them still applied), and sampled events (rate 0.1: each counts as 10, and the
    answer says it is an estimate)."""
    c.start_bus(brokers=1, partitions=4)
    agg = c.start_aggregator("agg-0", extra=GROUP)
    wait_until("the partitions", lambda: metric(agg, "tocsin_aggregator_assigned_partitions") == 4,
               30)
    common = ["--kind", "mix", "--dup-rate", 0.05, "--error-every", 10, "--users", 50]
    runs = [start_producer(c, "future", "--count", 300, "--service", "future", "--pack", 20,
                           "--format", "tocsin.v9.Future", *common, "--seed", 1),
            start_producer(c, "packed", "--count", 3000, "--services", 2, "--prefix", "pk",
                           "--pack", 50, *common, "--seed", 2),
            start_producer(c, "single", "--count", 1000, "--services", 1, "--prefix", "one",
                           *common, "--seed", 3),
            start_producer(c, "sampled", "--count", 400, "--service", "sampled", "--pack", 20,
                           "--sample-rate", 0.1, "--kind", "request", "--error-every", 10,
                           "--seed", 4)]
    future, packed, single, sampled = [producer_truth(p, out) for p, out in runs]
    truth = merge_truths(packed, single)
    print(f"packed: {packed['written']} events in {packed['records']} records; single: "
          f"{single['records']} records; unknown format: {future['records']} records; sampled: "
          f"{sampled['written']} events")
    check(packed["records"] < packed["written"] / 10, "the packed producer must pack")
    wait_totals("the counts of packs and single events", agg, truth, 30)
    check_totals(agg, truth)
    base = f"http://127.0.0.1:{agg.http_port}/api/v1"
    for svc, t in truth["services"].items():
        status, logs = http("GET", f"{base}/logs?service={svc}&since=1h&limit=1000")
        check(status == 200 and len(logs["logs"]) == t["logs"],
              f"{svc}: {len(logs.get('logs', []))} logs, sent {t['logs']}")
    # Unknown format: every such record refused and counted; nothing of it applied.
    wait_until("the unknown records counted",
               lambda: metric(agg, "tocsin_aggregator_records_unreadable_total")
               == future["records"], 30)
    q = query(agg, "future")
    check(q["count"] == 0, f"records of an unknown format were applied: {q}")
    # Sampled at 0.1: every event counts 10, and the answer says the figures are estimated.
    st = sampled["services"]["sampled"]
    wait_until("the sampled events", lambda: query(agg, "sampled")["count"] == 10 * st["requests"],
               30)
    q = query(agg, "sampled")
    check(q["errors"] == 10 * st["request_errors"] and q["sampled"] is True
          and q["sampled_events"] == st["requests"]
          and q["sampled_count"] == 10 * st["requests"],
          f"sampled: {q} (sent {st})")
    check(query(agg, "pk-0")["sampled"] is False, "unsampled figures must say exact")
    print(f"records consumed {metric(agg, 'tocsin_aggregator_records_consumed_total'):.0f}, "
          f"events {metric(agg, 'tocsin_aggregator_events_consumed_total'):.0f}, unreadable "
          f"{metric(agg, 'tocsin_aggregator_records_unreadable_total'):.0f}, duplicates "
          f"{metric(agg, 'tocsin_aggregator_duplicates_total'):.0f}")


SCENARIOS = {
    "agg_exactly_once": scenario_agg_exactly_once,
    "agg_takeover": scenario_agg_takeover,
    "agg_formats": scenario_agg_formats,
}
