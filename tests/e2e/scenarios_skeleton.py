"""The foundation's end-to-end scenario: the walking skeleton from client to page."""

import json
import time

from harness import TestFailure, check, http, wait_until

E2E_RULES = """
receivers:
  - name: sink
    webhook: {url}
rules:
  - alert: E2EHighErrorRate
    type: error_rate
    service: e2e
    name: "*"
    window: 5m
    above: 0.01
    for: 1s
    min_count: 100
    severity: critical
    receiver: sink
    labels: {{team: e2e}}
    annotations: {{summary: "e2e error rate above 1 %"}}
"""


def scenario_skeleton(c):
    """10,000 requests (2 % errors) through libtocsin → collector → Kafka → aggregator →
    rollups → alerter → webhook: exact counts, quantiles within 2 %, one firing page."""
    c.start_bus(brokers=3, partitions=4)
    sink = c.start_sink()
    collector = c.start_collector()
    agg = c.start_aggregator(extra={"grace": "1s"})
    alerter = c.start_alerter(E2E_RULES.format(url=sink.url),
                              extra={"eval.interval": "500ms"})

    count, error_every = 10000, 50
    t0 = time.monotonic()
    rc, out = c.run("emit", [c.bin("tests/e2e/e2e_emit"), collector.endpoint, "e2e",
                             str(count), str(error_every), "42"], timeout=120)
    truth = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    check(rc == 0, f"e2e_emit failed ({rc}): {out}")
    print(f"emitted {truth['sent']} events ({truth['errors']} errors), all acked, "
          f"in {time.monotonic() - t0:.1f}s")

    url = (f"http://127.0.0.1:{agg.http_port}/api/v1/query"
           f"?service=e2e&name=*&window=5m")

    def counted():
        status, body = http("GET", url)
        check(status == 200, f"query answered {status}: {body}")
        return body if body["count"] >= count else None
    body = wait_until("aggregator to count every event", counted, 60)
    print(f"aggregator: {json.dumps(body)}")
    check(body["count"] == count, f"count {body['count']} != {count}")
    check(body["errors"] == truth["errors"], f"errors {body['errors']} != {truth['errors']}")
    check(abs(body["error_rate"] - truth["errors"] / count) < 1e-9, "error_rate wrong")
    check(abs(body["rate_per_s"] - count / 300.0) < 1e-6, "rate_per_s wrong")
    for q, exact in truth["quantiles_ms"].items():
        got = body["quantiles"][q]
        rel = abs(got - exact) / exact
        print(f"  p{float(q) * 100:g}: aggregator {got:.3f} ms, exact {exact:.3f} ms, "
              f"relative error {rel * 100:.3f} %")
        check(rel <= 0.02, f"quantile {q}: {got} vs exact {exact} ({rel * 100:.2f} %)")

    # Per-route series add up to the service-wide one.
    total = 0
    for route in ("/a", "/b", "/c"):
        status, b = http("GET", url.replace("name=*", "name=" + route))
        check(status == 200, f"route query {status}")
        total += b["count"]
    check(total == count, f"routes sum to {total}")

    # Bad parameters get a 400 naming the parameter.
    status, b = http("GET", f"http://127.0.0.1:{agg.http_port}/api/v1/query?service=e2e"
                            f"&name=*&window=banana")
    check(status == 400 and b.get("parameter") == "window", f"bad window: {status} {b}")

    def fired():
        return [line for line in c.sink_lines(sink)
                if isinstance(line.get("body"), dict) and line["body"].get("status") == "firing"]
    wait_until("the firing notification", fired, 90)
    # Several more evaluation rounds: nothing else may arrive.
    time.sleep(5)
    lines = c.sink_lines(sink)
    print(f"sink received {len(lines)} notification(s)")
    check(len(lines) == 1, f"expected exactly one notification, got {len(lines)}: {lines}")
    page = lines[0]["body"]
    check(page["version"] == "4" and page["status"] == "firing", f"page: {page}")
    alert = page["alerts"][0]
    check(alert["labels"]["alertname"] == "E2EHighErrorRate", f"labels: {alert['labels']}")
    check(alert["labels"]["service"] == "e2e", f"labels: {alert['labels']}")
    check(abs(alert["value"] - truth["errors"] / count) < 1e-9, f"value {alert['value']}")

    status, body = http("GET", f"http://127.0.0.1:{alerter.http_port}/api/v1/alerts")
    check(status == 200, f"alerts API {status}")

    for p in (collector, agg, alerter):
        status, text = http("GET", f"http://127.0.0.1:{p.http_port}/metrics")
        check(status == 200 and "# TYPE" in text, f"{p.name} /metrics: {status}")


SCENARIOS = {"skeleton": scenario_skeleton}
