"""End-to-end scenarios of the alerter: the real daemon on the embedded broker, fed
tocsin.rollups records by alr_push, delivering to tocsin-sink processes that play Slack
(body "ok", 429 past one message a second), PagerDuty (202 JSON), a generic webhook
(scripted 500 then 200) and an SMTP server."""

import json
import os
import signal
import subprocess
import time

from harness import TestFailure, check, free_port, http, wait_until

TOKEN = "e2e-token"


def start_sink(c, name, *args):
    port = free_port()
    out = os.path.join(c.dir, name + ".jsonl")
    argv = [c.bin("tools/tocsin-sink"), "--port", str(port), "--out", out] + list(args)
    p = c.start(name, argv)
    c.wait_ready(p, port)
    p.port, p.out, p.url = port, out, f"http://127.0.0.1:{port}/{name}"
    return p


def lines(sink):
    try:
        with open(sink.out) as f:
            return [json.loads(x) for x in f if x.strip()]
    except FileNotFoundError:
        return []


def push(c, records):
    """Writes records to tocsin.rollups through alr_push; returns when they are acked."""
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    r = subprocess.run([c.bin("tests/e2e/alr_push"), c.bootstrap_file], input=data,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    check(r.returncode == 0, f"alr_push failed: {r.stderr.decode()}")


def bucket(service, start_s, count, errors, revision=1, name="/pay", kind=1, open_=False):
    return {"bucket": {"service": service, "environment": "prod", "name": name, "kind": kind,
                       "start_s": start_s, "width_s": 10, "count": count, "errors": errors,
                       "revision": revision, "open": open_}}


def now_bucket():
    return int(time.time()) // 10 * 10


def alerter_extra(**more):
    extra = {"eval.interval": "200ms", "api.token": TOKEN,
             "kafka.session.timeout.ms": "6000", "kafka.heartbeat.interval.ms": "500"}
    extra.update(more)
    return extra


def api(alerter, method, path, body=None, token=TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http(method, f"http://127.0.0.1:{alerter.http_port}{path}", body=body,
                headers=headers)


def metric(alerter, name):
    status, text = http("GET", f"http://127.0.0.1:{alerter.http_port}/metrics")
    check(status == 200, f"/metrics {status}")
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            if line.split(" ")[0] == name or name.endswith("}"):
                return float(line.split(" ")[-1])
    return None


RECEIVERS = """
receivers:
  - {{name: chat, type: slack, url: "{chat}"}}
  - {{name: pager, type: pagerduty, url: "{pager}", routing_key: e2e-key}}
  - {{name: hook, url: "{hook}"}}
  - {{name: mail, type: email, url: "smtp://127.0.0.1:{smtp}", from: tocsin@e2e.test,
      to: [oncall@e2e.test]}}
"""


def scenario_receivers(c):
    """One alert fires and resolves through Slack, PagerDuty, a webhook answering 500 then
    200, and e-mail; unknown and malformed rollup records are counted and skipped."""
    c.start_bus(brokers=1, partitions=2)
    chat = start_sink(c, "chat", "--mode", "slack", "--max-rate", "1")
    pager = start_sink(c, "pager", "--mode", "pagerduty")
    hook = start_sink(c, "hook", "--script", "500,200")
    smtp_port = free_port()
    mail = start_sink(c, "mail", "--smtp-port", str(smtp_port))
    rules = ("settings: {group_wait: 0s, group_interval: 1s, repeat_interval: 0s,\n"
             "  retry: {base: 300ms, max: 1s}}\n"
             + RECEIVERS.format(chat=chat.url, pager=pager.url, hook=hook.url, smtp=smtp_port)
             + "policies:\n  - {name: all, tiers: [{receivers: [chat, pager, hook, mail]}]}\n"
               "routes:\n  - {policy: all}\n"
               "rules:\n"
               "  - {alert: CheckoutErrors, type: error_rate, service: checkout, window: 1m,\n"
               "     above: 0.05, clear: 0.02, severity: critical,\n"
               "     annotations: {summary: 'error rate {{ $value | percent }} above "
               "{{ $threshold | percent }}'}}\n")
    alerter = c.start_alerter(rules, extra=alerter_extra())
    start = now_bucket()
    push(c, [{"unknown": True}, {"garbage": True}, bucket("checkout", start, 200, 20)])

    def fired():
        return all(lines(s) for s in (chat, pager, mail)) and \
            any(x.get("status") == 200 for x in lines(hook))
    wait_until("the firing notification on every receiver", fired, 30)

    slack = lines(chat)[0]["body"]
    check("FIRING" in slack["text"] and "CheckoutErrors" in slack["text"], f"slack: {slack}")
    check("10%" in slack["text"], f"the templated value: {slack['text']}")
    pd = lines(pager)[0]["body"]
    check(pd["event_action"] == "trigger" and pd["routing_key"] == "e2e-key", f"pd: {pd}")
    check(pd["payload"]["severity"] == "critical" and pd["dedup_key"], f"pd: {pd}")
    hooks = lines(hook)
    check([h["status"] for h in hooks] == [500, 200], f"webhook attempts: {hooks}")
    am = hooks[1]["body"]
    check(am["version"] == "4" and am["status"] == "firing", f"webhook body: {am}")
    check(am["alerts"][0]["labels"]["alertname"] == "CheckoutErrors", f"labels: {am}")
    check(am == hooks[0]["body"], "the retry sent the same body")
    m = lines(mail)[0]
    check(m["to"] == ["<oncall@e2e.test>"] and "[FIRING:1] CheckoutErrors" in m["data"],
          f"mail: {m}")

    # The error rate falls below the clear threshold: everyone hears of the resolve.
    push(c, [bucket("checkout", start, 400, 2, revision=2)])

    def resolved():
        return (len(lines(chat)) >= 2 and len(lines(pager)) >= 2 and len(lines(mail)) >= 2
                and len(lines(hook)) >= 3)
    wait_until("the resolve on every receiver", resolved, 30)
    pd2 = lines(pager)[1]["body"]
    check(pd2["event_action"] == "resolve" and pd2["dedup_key"] == pd["dedup_key"],
          f"pd resolve: {pd2}")
    check("RESOLVED" in lines(chat)[1]["body"]["text"], "slack resolve")
    check(lines(hook)[2]["body"]["status"] == "resolved", "webhook resolve")
    check("[RESOLVED]" in lines(mail)[1]["data"], "mail resolve")
    time.sleep(2)
    check(len(lines(chat)) == 2 and len(lines(pager)) == 2 and len(lines(mail)) == 2
          and len(lines(hook)) == 3, "nothing more")
    check(not any(x.get("refused") for x in lines(chat)), "slack never above 1/s")
    check(metric(alerter, 'tocsin_alerter_rollups_skipped_total{kind="unknown"}') == 1,
          "the unknown record is counted")
    check(metric(alerter, 'tocsin_alerter_rollups_rejected_total{reason="protobuf"}') == 1,
          "the garbage record is counted")
    status, log = api(alerter, "GET", "/api/v1/notifications?limit=50")
    check(status == 200 and len(log["notifications"]) == 8, f"notification log: {log}")
    check(all(n["status"] == "delivered" for n in log["notifications"]), f"log: {log}")


ESCALATION = """
settings: {{group_wait: 0s, repeat_interval: 0s}}
receivers:
  - {{name: chat, type: slack, url: "{chat}"}}
  - {{name: pager, type: pagerduty, url: "{pager}", routing_key: first}}
  - {{name: pager2, type: pagerduty, url: "{pager2}", routing_key: second}}
policies:
  - name: critical
    tiers:
      - {{receivers: [chat], timeout: 3s}}
      - {{receivers: [pager], timeout: 3s}}
      - {{receivers: [pager2], timeout: 3s}}
routes:
  - {{match: {{severity: critical}}, policy: critical}}
rules:
  - {{alert: PaymentsDown, type: error_rate, service: payments, window: 1m, above: 0.5,
      severity: critical}}
"""


def scenario_escalation_restart(c):
    """Escalation through three tiers survives a kill -9 between the second and the third
    tier: after the restart the third tier is paged, nobody is paged twice; then an
    acknowledgement through the API reaches the pagers."""
    c.start_bus(brokers=1, partitions=2)
    chat = start_sink(c, "chat", "--mode", "slack")
    pager = start_sink(c, "pager", "--mode", "pagerduty")
    pager2 = start_sink(c, "pager2", "--mode", "pagerduty")
    rules = ESCALATION.format(chat=chat.url, pager=pager.url, pager2=pager2.url)
    # One instance, without HA: its LMDB state alone carries the escalation over the
    # restart (alerter_ha_failover covers a pair; a restarted HA instance would first wait
    # for its killed self's group session to end).
    extra = alerter_extra(**{"ha.enabled": "false"})
    alerter = c.start_alerter(rules, extra=extra)
    push(c, [bucket("payments", now_bucket(), 100, 90)])
    wait_until("the first tier", lambda: lines(chat), 30)
    wait_until("the second tier", lambda: lines(pager), 10)
    time.sleep(0.5)
    alerter.kill9()
    c.procs.remove(alerter)  # killed on purpose: its exit code is not a clean stop
    check(not lines(pager2), "third tier not paged yet")
    alerter = c.start_alerter(rules, extra=extra)
    wait_until("the third tier after the restart", lambda: lines(pager2), 30)
    time.sleep(1)
    check(len(lines(chat)) == 1 and len(lines(pager)) == 1 and len(lines(pager2)) == 1,
          f"each tier paged once: {len(lines(chat))}, {len(lines(pager))}, "
          f"{len(lines(pager2))}")
    status, body = api(alerter, "GET", "/api/v1/alerts?state=firing")
    check(status == 200 and len(body["alerts"]) == 1, f"alerts: {body}")
    fp = body["alerts"][0]["fingerprint"]
    check(body["alerts"][0]["tier"] == 2, f"tier: {body['alerts'][0]}")
    status, a = api(alerter, "POST", f"/api/v1/alerts/{fp}/ack",
                    {"by": "alice", "comment": "on it"})
    check(status == 200 and a["state"] == "acknowledged", f"ack: {status} {a}")
    wait_until("acknowledge on both pagers",
                lambda: len(lines(pager)) == 2 and len(lines(pager2)) == 2, 10)
    check(lines(pager2)[1]["body"]["event_action"] == "acknowledge", "PD acknowledge")
    check(lines(pager2)[1]["body"]["dedup_key"] == lines(pager2)[0]["body"]["dedup_key"],
          "same dedup key")


def scenario_api(c):
    """The HTTP API: tokens, alerts with their next action, silences, the notification log,
    reload of a broken file; a new issue and a missing heartbeat page; a one-bucket
    window's alert holds over a bucket edge without data to judge, then resolves once."""
    c.start_bus(brokers=1, partitions=2)
    hook = start_sink(c, "hook")
    rules = (f"settings: {{group_wait: 0s, group_interval: 1s, repeat_interval: 0s}}\n"
             f"receivers:\n  - {{name: hook, url: \"{hook.url}\"}}\n"
             "rules:\n"
             "  - {alert: SearchSlow, type: latency, service: search, window: 1m,\n"
             "     quantile: 0.95, above: 500, severity: warning, receiver: hook, for: 20s}\n"
             "  - {alert: NewIssue, type: new_issue, severity: error, receiver: hook}\n"
             "  - {alert: WorkerSilent, type: absence, service: worker, window: 3s,\n"
             "     severity: critical, receiver: hook}\n"
             "  - {alert: EdgeErrors, type: error_rate, service: edge, window: 10s,\n"
             "     above: 0.05, min_count: 100, severity: critical, receiver: hook}\n")
    alerter = c.start_alerter(rules, extra=alerter_extra())
    start = now_bucket()
    # Latency p95 of 900 ms: pending for 20 s (its next action is to fire).
    lat = {"bucket": {"service": "search", "environment": "prod", "name": "/q", "kind": 1,
                      "start_s": start, "width_s": 10, "count": 20, "errors": 0,
                      "revision": 1, "latency_us": [900000] * 20}}
    heartbeat = bucket("worker", start, 1, 0, name="heartbeat", kind=3)
    push(c, [lat, heartbeat, {"issue": {"kind": "new", "service": "shop",
                                        "issue_id": "a1b2", "type": "KeyError",
                                        "message": "'user'", "level": 5}}])

    def pending():
        s, b = api(alerter, "GET", "/api/v1/alerts?state=pending")
        return b["alerts"] if s == 200 and b["alerts"] else None
    alerts = wait_until("the latency alert pending", pending, 20)
    check(alerts[0]["alertname"] == "SearchSlow" and alerts[0]["value"] > 800,
          f"pending: {alerts}")
    check(alerts[0]["next_action"]["action"] == "fire", f"next action: {alerts[0]}")

    def paged(name):
        return [x for x in lines(hook) if x["body"]["alerts"][0]["labels"]["alertname"] == name]
    wait_until("the new-issue page", lambda: paged("NewIssue"), 15)
    issue = paged("NewIssue")[0]["body"]["alerts"][0]
    check(issue["labels"]["issue_id"] == "a1b2", f"issue alert: {issue}")
    wait_until("the heartbeat page (no heartbeat for 3 s)", lambda: paged("WorkerSilent"), 20)

    # Tokens: none, wrong, right.
    status, _ = api(alerter, "POST", "/api/v1/silences", {"matchers": ["service=x"],
                                                           "duration": "1h"}, token=None)
    check(status == 401, f"no token: {status}")
    status, _ = api(alerter, "POST", "/api/v1/silences", {"matchers": ["service=x"],
                                                           "duration": "1h"}, token="nope")
    check(status == 401, f"wrong token: {status}")
    status, body = api(alerter, "POST", "/api/v1/silences", {"matchers": [".*"],
                                                              "duration": "1h"})
    check(status == 400, f"bad matcher: {status} {body}")
    status, sil = api(alerter, "POST", "/api/v1/silences",
                      {"matchers": [{"name": "service", "op": "=", "value": "search"}],
                       "duration": "1h", "created_by": "e2e", "comment": "deploy"})
    check(status == 201 and sil["state"] == "active", f"silence: {status} {sil}")
    status, body = api(alerter, "GET", "/api/v1/silences?state=active")
    check(status == 200 and [s["id"] for s in body["silences"]] == [sil["id"]], f"{body}")
    status, body = api(alerter, "DELETE", f"/api/v1/silences/{sil['id']}")
    check(status == 200 and body["state"] == "expired", f"expire: {status} {body}")
    status, body = api(alerter, "DELETE", "/api/v1/silences/0000000000000000")
    check(status == 404, f"unknown silence: {status}")

    # Acknowledging something that is not firing is refused; unknown alerts are 404.
    fp = alerts[0]["fingerprint"]
    status, _ = api(alerter, "POST", f"/api/v1/alerts/{fp}/ack", {})
    check(status == 409, f"ack of a pending alert: {status}")
    status, _ = api(alerter, "POST", "/api/v1/alerts/0123456789abcdef/ack", {})
    check(status == 404, f"unknown alert: {status}")
    status, _ = api(alerter, "GET", "/api/v1/alerts/zz")
    check(status == 400, f"bad fingerprint: {status}")

    status, body = api(alerter, "GET", "/api/v1/notifications?limit=10")
    check(status == 200 and len(body["notifications"]) >= 2, f"log: {body}")
    status, body = api(alerter, "GET", "/api/v1/receivers")
    check(status == 200 and body["receivers"][0]["name"] == "hook", f"receivers: {body}")

    # A broken rule file is rejected with file and line; the loaded rules keep running.
    path = os.path.join(c.dir, "alerter-rules.yaml")
    with open(path, "w") as f:
        f.write(rules + "  - {alert: Bad, type: error_rate, service: s, window: 1m,\n"
                        "     above: 2, severity: critical, receiver: hook}\n")
    status, body = api(alerter, "POST", "/api/v1/reload")
    check(status == 400 and "alerter-rules.yaml:" in body["error"], f"reload: {status} {body}")
    os.kill(alerter.p.pid, signal.SIGHUP)
    wait_until("the failed reload counted",
               lambda: metric(alerter, "tocsin_alerter_rule_reload_failures_total") == 2, 10)
    status, body = api(alerter, "GET", "/api/v1/rules")
    check(status == 200 and len(body["rules"]) == 4, f"rules kept: {body}")

    # A one-bucket window at a bucket edge, before any bucket closed (as right after the
    # alerter starts): the new open bucket holds too few requests for min_count, so no
    # window can judge; the firing alert holds (it used to resolve here and page again).
    # The buckets lie ahead of the clock (accepted up to 120 s) so that no wait for a real
    # bucket edge is needed: their windows end ahead of now, as an open bucket's does.
    edge = now_bucket() + 30
    push(c, [bucket("edge", edge, 200, 20, open_=True)])
    wait_until("EdgeErrors firing", lambda: paged("EdgeErrors"), 15)

    def edge_alert():
        s, b = api(alerter, "GET", "/api/v1/alerts?alertname=EdgeErrors")
        return b["alerts"][0] if s == 200 and b["alerts"] else None
    push(c, [bucket("edge", edge + 10, 5, 0, open_=True)])
    held = wait_until("EdgeErrors holding without judging data",
                      lambda: (edge_alert() or {}).get("no_data_until") and edge_alert(), 15)
    check(held["state"] == "firing", f"held: {held}")
    check([x["body"]["status"] for x in paged("EdgeErrors")] == ["firing"], "no resolve")
    # The first bucket closes (10 % errors: still firing), then the second one with 200
    # requests and no errors while a third begins thin: resolved, once.
    push(c, [bucket("edge", edge, 200, 20, revision=2)])
    wait_until("EdgeErrors judged again",
               lambda: (edge_alert() or {}).get("no_data_until", 1) is None, 15)
    push(c, [bucket("edge", edge + 10, 200, 0, revision=2),
             bucket("edge", edge + 20, 5, 0, open_=True)])
    wait_until("EdgeErrors resolved", lambda: len(paged("EdgeErrors")) >= 2, 15)
    time.sleep(0.5)
    kinds = [x["body"]["status"] for x in paged("EdgeErrors")]
    check(kinds == ["firing", "resolved"], f"one page, one resolve: {kinds}")


def ha_role(alerter):
    """"leader", "follower", "taking over", "joining" or None (not ready), from
    /health/ready."""
    status, body = http("GET", f"http://127.0.0.1:{alerter.http_port}/health/ready")
    if status != 200:
        return None
    deps = body.get("dependencies", {})
    if deps.get("kafka", {}).get("status") != "healthy":
        return None
    detail = deps.get("ha", {}).get("detail", "")
    for role in ("leader", "follower", "taking over", "joining"):
        if detail.startswith(role):
            return role
    return None


HA_ESCALATION = """
settings: {{group_wait: 0s, group_interval: 1s, repeat_interval: 0s}}
receivers:
  - {{name: chat, type: slack, url: "{chat}"}}
  - {{name: pager, type: pagerduty, url: "{pager}", routing_key: first}}
  - {{name: pager2, type: pagerduty, url: "{pager2}", routing_key: second}}
policies:
  - name: critical
    tiers:
      - {{receivers: [chat], timeout: 2s}}
      - {{receivers: [pager], timeout: 2s}}
      - {{receivers: [pager2], timeout: 2s}}
routes:
  - {{match: {{severity: critical}}, policy: critical}}
rules:
  - {{alert: PaymentsDown, type: error_rate, service: payments, window: 1m, above: 0.5,
      clear: 0.2, severity: critical}}
"""


def scenario_ha_failover(c):
    """An HA pair on one Kafka: only the leader pages. The leader is killed with kill -9
    between the second and the third tier of an escalation: the follower takes over, pages
    the third tier (owed), pages nobody twice, and sends every receiver the resolve."""
    c.start_bus(brokers=1, partitions=2)
    chat = start_sink(c, "chat", "--mode", "slack")
    pager = start_sink(c, "pager", "--mode", "pagerduty")
    pager2 = start_sink(c, "pager2", "--mode", "pagerduty")
    rules = HA_ESCALATION.format(chat=chat.url, pager=pager.url, pager2=pager2.url)
    # A dead leader's group session ends after 6 s (the broker's minimum): the follower
    # takes over then.
    extra = alerter_extra()
    # Both start together (one group formation): either may lead.
    a = c.start_alerter(rules, name="alerter-a", extra=extra)
    b = c.start_alerter(rules, name="alerter-b", extra=extra)
    wait_until("one leader, one follower",
               lambda: sorted([ha_role(a), ha_role(b)], key=str) == ["follower", "leader"], 30)
    if ha_role(b) == "leader":
        a, b = b, a  # `a` is the leader from here on
    start = now_bucket()
    push(c, [bucket("payments", start, 100, 90)])
    wait_until("the first tier", lambda: lines(chat), 15)
    wait_until("the second tier", lambda: lines(pager), 10)
    # The follower mirrors the leader's notifications (delivered, not its own).
    def mirrored():
        s, body = api(b, "GET", "/api/v1/notifications?receiver=pager")
        return s == 200 and any(n["status"] == "delivered" for n in body["notifications"])
    wait_until("the follower mirrors the second tier's page", mirrored, 5, 0.05)
    check(not lines(pager2), "third tier not paged yet")
    a.kill9()
    c.procs.remove(a)  # killed on purpose: its exit code is not a clean stop
    wait_until("alerter-b takes over", lambda: ha_role(b) == "leader", 30)
    wait_until("the third tier, paged by alerter-b", lambda: lines(pager2), 15)
    status, body = api(b, "GET", "/api/v1/alerts?state=firing")
    check(status == 200 and len(body["alerts"]) == 1 and body["alerts"][0]["tier"] == 2,
          f"the alert at the third tier on alerter-b: {body}")
    # The condition clears: the new leader owes every receiver that was paged the resolve.
    push(c, [bucket("payments", start, 1000, 10, revision=2)])
    wait_until("the resolve on every receiver",
               lambda: len(lines(chat)) >= 2 and len(lines(pager)) >= 2
               and len(lines(pager2)) >= 2, 15)
    time.sleep(1)
    counts = [len(lines(s)) for s in (chat, pager, pager2)]
    check(counts == [2, 2, 2], f"each receiver paged once and resolved once: {counts}")
    for s in (pager, pager2):
        acts = [x["body"]["event_action"] for x in lines(s)]
        keys = {x["body"]["dedup_key"] for x in lines(s)}
        check(acts == ["trigger", "resolve"] and len(keys) == 1, f"{s.name}: {acts} {keys}")
    check("RESOLVED" in lines(chat)[1]["body"]["text"], "slack resolve")
    check(metric(b, "tocsin_alerter_consumer_lag") == 0, "alerter-b's consumer lag is 0")


SCENARIOS = {
    "alerter_receivers": scenario_receivers,
    "alerter_escalation_restart": scenario_escalation_restart,
    "alerter_api": scenario_api,
    "alerter_ha_failover": scenario_ha_failover,
}
