"""End-to-end scenarios of the collector (issue 4): bad input, a Kafka outage longer than the
message time-out, kill -9 and SIGTERM with a spool, failover under load, CURVE, API keys,
quotas and scrubbing — against the real daemons, the embedded broker, and what arrives in
Kafka (read back with e2e_col_consume)."""

import json
import os
import signal
import struct
import subprocess
import time

from harness import TestFailure, check, http, wait_until

# ---- a little protobuf, for hand-made bad batches ----


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def key(field, wt):
    return varint(field << 3 | wt)


def ld(field, data):
    return key(field, 2) + varint(len(data)) + data


def vi(field, n):
    return key(field, 0) + varint(n)


def f64(field, value):
    return key(field, 1) + struct.pack("<d", value)


def event(service=b"corpus", event_id=None, body=None, tags=(), extra=b""):
    eid = os.urandom(16) if event_id is None else event_id
    e = ld(1, eid) + vi(2, int(time.time() * 1e6))
    if service is not None:
        e += ld(3, service)
    for k, v in tags:
        e += ld(8, ld(1, k) + ld(2, v))
    if body is None:
        body = ld(12, ld(1, b"m") + f64(3, 1.0))
    return e + body + extra


def batch(seq, events):
    return vi(1, seq) + b"".join(ld(3, e) for e in events)


def bad_corpus(seq0):
    """(file name, bytes, expected reason) for every kind of bad input the issue lists."""
    s = iter(range(seq0, seq0 + 100))
    good3 = batch(next(s), [event() for _ in range(3)])
    frames = b"".join(ld(4, ld(1, b"f")) for _ in range(200))
    return [
        ("01-garbage", b"\xff" * 16, "malformed"),
        ("02-truncated", good3[:-5], "malformed"),
        ("03-wrong-field-type", batch(next(s), [ld(1, os.urandom(16)) + vi(3, 5)]),
         "malformed"),
        ("04-huge-length", vi(1, next(s)) + key(3, 2) + varint(2**31) + b"x" * 10,
         "malformed"),
        ("05-empty-batch", vi(1, next(s)), "empty"),
        ("06-invalid-utf8", batch(next(s), [event(service=b"svc\xc3\x28")]), "invalid_utf8"),
        ("07-10000-tags",
         batch(next(s), [event(tags=[(b"k%d" % i, b"v") for i in range(10000)])]),
         "too_many_tags"),
        ("08-too-many-events", batch(next(s), [event() for _ in range(2001)]),
         "too_many_events"),
        ("09-missing-service", batch(next(s), [event(service=None)]), "missing_service"),
        ("10-bad-event-id", batch(next(s), [event(event_id=b"12345678")]), "bad_event_id"),
        ("11-no-body", batch(next(s), [event(body=b"")]), "no_body"),
        ("12-nan-metric",
         batch(next(s), [event(body=ld(12, ld(1, b"m") + f64(3, float("nan"))))]),
         "bad_value"),
        ("13-long-string",
         batch(next(s), [event(body=ld(11, ld(1, b"/" + b"r" * 300)))]), "string_too_long"),
        ("14-nul-byte", batch(next(s), [event(service=b"svc\x00hidden")]), "invalid_utf8"),
        ("15-too-big", batch(next(s), [event(body=ld(13, ld(2, b"x" * 16000)))
                                       for _ in range(20)]), "too_big"),
        ("16-too-many-frames", batch(next(s), [event(body=ld(10, ld(1, b"E") + frames))]),
         "too_many_frames"),
        ("17-group-wire-type", vi(1, next(s)) + key(3, 3) + b"\x00", "malformed"),
    ]


# ---- helpers ----


def client(c, endpoint, *args, timeout=120, name="col-client", opts=()):
    rc, out = c.run(name, [c.bin("tests/e2e/e2e_col_client"), endpoint, *opts, *args],
                    timeout=timeout)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return rc, lines


def client_bg(c, endpoint, *args, name="col-client-bg", opts=()):
    log = open(os.path.join(c.dir, name + ".out"), "w")
    return subprocess.Popen([c.bin("tests/e2e/e2e_col_client"), endpoint, *opts, *args],
                            stdout=log, stderr=subprocess.STDOUT), log.name


def consume(c, expect=None, timeout=30, dump=False):
    args = [c.bin("tests/e2e/e2e_col_consume"), c.bootstrap_file, "--timeout", str(timeout)]
    if expect is not None:
        args += ["--expect", str(expect)]
    if dump:
        args.append("--dump")
    rc, out = c.run("consume", args, timeout=timeout + 30)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    check(lines and lines[-1].get("summary"), f"consumer printed no summary: {out[-500:]}")
    check(expect is None or lines[-1]["finished"],
          f"fewer than {expect} distinct events reached Kafka: {lines[-1]}")
    return lines[-1], lines[:-1]


def metrics(p):
    status, text = http("GET", f"http://127.0.0.1:{p.http_port}/metrics")
    check(status == 200, f"{p.name} /metrics answered {status}")
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def metric(p, name):
    return metrics(p).get(name, 0.0)


def ready(p):
    return http("GET", f"http://127.0.0.1:{p.http_port}/health/ready")


def check_delivered(summary, services, per_service):
    """Every event of every service arrived once at least, first arrivals in order."""
    for s in services:
        got = summary["services"].get(s, {})
        check(got.get("unique") == per_service,
              f"service {s}: {got.get('unique')} distinct events in Kafka, expected "
              f"{per_service}: {summary}")
        check(got.get("violations") == 0, f"service {s}: out of order: {got}")
    check(summary["order_violations"] == 0, f"order violations: {summary}")
    check(not summary["truncated"], "the broker dropped old records: use fewer events")


# ---- scenarios ----


def scenario_bad_input(c):
    """Every kind of bad input gets its own rejection while good batches between them all
    arrive; rejections are counted by reason and logged at a bounded rate; a frame above
    ZMQ_MAXMSGSIZE costs the sender its connection and nobody else anything."""
    c.start_bus(brokers=1, partitions=2)
    col = c.start_collector(extra={"limits.max_frame_bytes": "256KiB",
                                   "limits.max_message_bytes": "1MiB"})
    corpus = os.path.join(c.dir, "bad-corpus")
    os.makedirs(corpus)
    cases = bad_corpus(1000)
    for name, data, _ in cases:
        with open(os.path.join(corpus, name), "wb") as f:
            f.write(data)
    rc, lines = client(c, col.endpoint, "corpus", corpus, "corpus")
    check(rc == 0, f"good batches between the bad ones were not all stored: {lines[-3:]}")
    acks = {line["what"]: line for line in lines if "what" in line}
    for name, _, reason in cases:
        ack = acks.get(name)
        check(ack is not None, f"{name}: no answer")
        check(ack["status"] == "rejected" and ack["reason"].startswith(reason + ":"),
              f"{name}: expected rejected {reason}, got {ack}")
    good = next(line["good_events"] for line in lines if "good_events" in line)
    print(f"{len(cases)} bad inputs rejected by reason; {good} good events stored between them")

    # Above limits.max_message_bytes ZeroMQ closes the connection before reading the frame:
    # no Ack is possible (documented); the collector goes on serving everyone.
    huge = os.path.join(c.dir, "huge")
    with open(huge, "wb") as f:
        f.write(batch(7, [event(body=ld(13, ld(2, b"x" * 16000))) for _ in range(100)]))
    rc, lines = client(c, col.endpoint, "raw", huge, opts=("--timeout-ms", "1500"))
    check(lines[0]["status"] == "timeout", f"a frame above the socket limit was answered: {lines}")
    rc, lines = client(c, col.endpoint, "seq", "after", "50", "50")
    check(rc == 0, f"good traffic after an oversized frame failed: {lines}")

    # A record above what Kafka takes (here the producer's message.max.bytes) can never be
    # stored: its batch is rejected too_big, nothing is spooled, the rest flows.
    small = c.start_collector(name="col-small", extra={
        "kafka.message.max.bytes": "1000", "spool.dir": os.path.join(c.dir, "spool-small")})
    big = os.path.join(c.dir, "big")
    with open(big, "wb") as f:
        f.write(batch(77, [event(service=b"big", body=ld(13, ld(2, b"y" * 1500)))]))
    rc, lines = client(c, small.endpoint, "raw", big)
    check(lines[0]["status"] == "rejected" and lines[0]["reason"].startswith("too_big:"),
          f"a record Kafka cannot take: {lines[0]}")
    rc, lines = client(c, small.endpoint, "seq", "beside", "20", "10")
    check(rc == 0, f"batches beside a too-large one: {lines}")
    check(metric(small, "tocsin_collector_spooling") == 0, "a too-large record made it spool")

    summary, _ = consume(c, expect=good + 50 + 20)
    check_delivered(summary, ["corpus"], good)
    check("big" not in summary["services"], "a rejected record reached Kafka")
    check(summary["services"]["after"]["unique"] == 50, f"after: {summary}")
    check(summary["duplicates"] == 0, f"duplicates without any failure: {summary}")
    m = metrics(col)
    for reason in {r for _, _, r in cases}:
        want = sum(1 for _, _, r in cases if r == reason)
        got = m.get(f'tocsin_collector_batches_rejected_total{{reason="{reason}"}}')
        check(got == want, f"rejected {reason}: counted {got}, expected {want}")
    with open(col.log_path) as f:
        logged = sum(1 for line in f if '"collector.batch_rejected"' in line)
    check(0 < logged <= 10, f"{logged} rejection lines logged for {len(cases)} bad batches "
                            f"(the limit is 10 per 10 s)")
    check(ready(col)[0] == 200, "collector not ready after bad input")


def scenario_kafka_outage(c):
    """While clients keep sending, Kafka first answers nothing for longer than
    kafka.message_timeout (the stall is detected), then all brokers are down for longer
    than it: every batch is acked (delivered or spooled), the spool is replayed when Kafka is
    back, and every event arrives, in order per key, none lost."""
    c.start_bus(brokers=3, partitions=4)
    col = c.start_collector(extra={"spool.dir": os.path.join(c.dir, "spool"),
                                   "kafka.message_timeout": "1500ms"})
    metrics_clients = client_bg(c, col.endpoint, "seq", "A,B,C", "2000", "50",
                                name="seq-metrics", opts=("--pause-ms", "25"))
    logs_clients = client_bg(c, col.endpoint, "seq", "L1,L2", "1500", "50", "log",
                             name="seq-logs", opts=("--pause-ms", "40"))
    wait_until("traffic to flow", lambda: metric(col, "tocsin_collector_events_accepted_total")
               > 500, 20)
    status, _ = http("POST", f"http://127.0.0.1:{c.bus_http}/api/v1/brokers/rtt?ms=6000")
    check(status == 200, "rtt fault")
    wait_until("the stall to be taken back",
               lambda: metric(col, 'tocsin_collector_kafka_purges_total{reason="timeout"}')
               >= 1, 10)
    status, body = ready(col)
    check(status == 200 and body["status"] == "degraded",
          f"ready while spooling below the high-water mark: {status} {body}")
    http("POST", f"http://127.0.0.1:{c.bus_http}/api/v1/brokers/rtt?ms=0")
    c.bus_brokers("down")
    time.sleep(2.5)  # down longer than kafka.message_timeout (1.5 s)
    c.bus_brokers("up")
    for proc, out in (metrics_clients, logs_clients):
        check(proc.wait(90) == 0, f"a client did not get every batch stored: "
                                  f"{open(out).read()[-500:]}")
    wait_until("the spool to empty", lambda: metric(col, "tocsin_collector_spool_entries") == 0
               and metric(col, "tocsin_collector_spooling") == 0, 60)
    m = metrics(col)
    print(f"spooled {m['tocsin_collector_spooled_events_total']:.0f} events in "
          f"{m['tocsin_collector_spooled_batches_total']:.0f} batches, replayed "
          f"{m['tocsin_collector_replayed_events_total']:.0f}, purges "
          + ", ".join(f"{k[k.index('=') + 2:-2]} {v:.0f}" for k, v in m.items()
                      if k.startswith("tocsin_collector_kafka_purges_total") and v))
    check(m["tocsin_collector_replayed_events_total"] >=
          m["tocsin_collector_spooled_events_total"] > 0, "replayed less than spooled")
    summary, _ = consume(c, expect=3 * 2000 + 2 * 1500, timeout=60)
    check_delivered(summary, ["A", "B", "C"], 2000)
    check_delivered(summary, ["L1", "L2"], 1500)
    print(f"Kafka holds {summary['unique']} distinct events ({summary['duplicates']} repeats "
          f"of events whose delivery a purge left unknown)")
    status, body = ready(col)
    check(status == 200 and body["status"] == "healthy", f"not healthy again: {body}")


def scenario_spool_restart(c):
    """Batches acked from the spool survive kill -9 and SIGTERM of the collector: a new
    collector on the same spool replays them once Kafka is back. While Kafka is away and the
    spool is above its high-water mark, /health/ready fails; a full spool answers retry-after
    (back-pressure) and exactly what it acked arrives, never a silent drop."""
    c.start_bus(brokers=1, partitions=2)
    spool = os.path.join(c.dir, "spool")
    extra = {"spool.dir": spool, "kafka.message_timeout": "2s", "spool.max_bytes": "1MiB",
             "spool.high_water": "0.05"}
    col = c.start_collector(name="col-a", extra=extra)
    c.bus_brokers("down")
    rc, lines = client(c, col.endpoint, "seq", "K9", "1000", "100", name="k9")
    check(rc == 0, f"batches not stored while Kafka was down: {lines[-2:]}")
    check(metric(col, "tocsin_collector_spool_entries") > 0, "nothing in the spool")
    status, body = wait_until("readiness to fail",
                              lambda: (lambda r: r if r[0] == 503 else None)(ready(col)), 10)
    check(body["status"] == "unhealthy", f"ready: {body}")
    col.kill9()
    c.procs.remove(col)  # killed on purpose: its exit code is not a clean stop
    col = c.start_collector(name="col-b", extra=extra, wait_live=True)
    rc, lines = client(c, col.endpoint, "seq", "TERM", "1000", "100", name="term")
    check(rc == 0, f"batches not stored after the restart: {lines[-2:]}")
    check(col.stop() == 0, "SIGTERM while spooling did not exit 0")
    c.procs.remove(col)
    # Fill the spool: what does not fit is answered retry-after, what is acked is kept.
    col = c.start_collector(name="col-c", extra=extra, wait_live=True)
    rc, lines = client(c, col.endpoint, "seq", "FULL", "30000", "500", name="full",
                       opts=("--retries", "0"))
    full = [ln for ln in lines if ln.get("status") == "retry_after"]
    check(full and "spool full" in full[0]["reason"],
          f"no back-pressure from a full spool: {lines[-3:]}")
    stored_full = lines[-1]["events_stored"]
    check(0 < stored_full < 30000, f"FULL: {lines[-1]}")
    check(metric(col, "tocsin_collector_spool_bytes") <= 1 << 20, "spool above its bound")
    check(col.stop() == 0, "SIGTERM with a full spool did not exit 0")
    c.procs.remove(col)
    c.bus_brokers("up")
    col = c.start_collector(name="col-d", extra=extra, wait_live=True)
    wait_until("the spool to be replayed",
               lambda: metric(col, "tocsin_collector_spool_entries") == 0
               and metric(col, "tocsin_collector_spooling") == 0, 30)
    check(ready(col)[0] == 200, "not ready after the replay")
    summary, _ = consume(c, expect=2000 + stored_full)
    check_delivered(summary, ["K9", "TERM"], 1000)
    check_delivered(summary, ["FULL"], stored_full)
    check(col.stop() == 0, "col-d did not stop cleanly")
    c.procs.remove(col)

    # An entry Kafka will never take (spooled by a collector whose producer took it, replayed
    # by one whose producer does not) moves to the dead entries instead of holding the spool
    # up; the entries around it are delivered.
    c.bus_brokers("down")
    col = c.start_collector(name="col-e", extra=extra, wait_live=True)
    rc, lines = client(c, col.endpoint, "seq", "BEFORE", "10", "10", name="before")
    check(rc == 0, f"BEFORE: {lines}")
    big = os.path.join(c.dir, "big")
    with open(big, "wb") as f:
        f.write(batch(91, [event(service=b"big", body=ld(13, ld(2, b"y" * 1500)))]))
    rc, lines = client(c, col.endpoint, "raw", big, name="big")
    check(lines[0]["status"] == "stored", f"big batch not spooled: {lines}")
    rc, lines = client(c, col.endpoint, "seq", "AFTER", "10", "10", name="after")
    check(rc == 0, f"AFTER: {lines}")
    check(col.stop() == 0, "col-e did not stop cleanly")
    c.procs.remove(col)
    c.bus_brokers("up")
    col = c.start_collector(name="col-f", extra=dict(extra, **{"kafka.message.max.bytes": "1000"}),
                            wait_live=True)
    wait_until("the spool to be replayed around the dead entry",
               lambda: metric(col, "tocsin_collector_spool_entries") == 0
               and metric(col, "tocsin_collector_spooling") == 0, 30)
    check(metric(col, "tocsin_collector_spool_dead_entries") == 1, "no dead entry")
    summary, _ = consume(c, expect=2000 + stored_full + 20)
    check_delivered(summary, ["BEFORE", "AFTER"], 10)
    check("big" not in summary["services"], "the dead entry reached Kafka")
    check(col.stop() == 0, "col-f did not stop cleanly")
    c.procs.remove(col)

    # A spool entry written before packing (one Event per record, no format header) is
    # replayed as it is, in order, and arrives complete.
    rc, out = c.run("spool-seed", [c.bin("tests/e2e/e2e_col_spool_seed"), spool, "OLD", "300"],
                    timeout=30)
    check(rc == 0, f"e2e_col_spool_seed failed: {out}")
    col = c.start_collector(name="col-g", extra=extra, wait_live=True)
    wait_until("the entry written before packing to be replayed",
               lambda: metric(col, "tocsin_collector_spool_entries") == 0
               and metric(col, "tocsin_collector_spooling") == 0, 30)
    check(metric(col, "tocsin_collector_records_produced_total") == 300,
          "an entry written before packing must be produced one record per event")
    summary, _ = consume(c, expect=2000 + stored_full + 20 + 300)
    check_delivered(summary, ["OLD"], 300)
    print(f"K9 and TERM complete after kill -9 and SIGTERM; the full spool acked "
          f"{stored_full} FULL events and exactly those arrived; an entry written before "
          f"packing replayed complete")


def scenario_failover_kill9(c):
    """kill -9 of one collector while libtocsin sends through two: the client fails over and
    the aggregator counts every event exactly once."""
    c.start_bus(brokers=3, partitions=4)
    c1 = c.start_collector(name="col-1")
    c2 = c.start_collector(name="col-2")
    agg = c.start_aggregator(extra={"grace": "1s"})
    count = 12000
    emit = subprocess.Popen([c.bin("tests/e2e/e2e_col_emit"), f"{c1.endpoint},{c2.endpoint}",
                             "failover", str(count), "5000"], stdout=subprocess.PIPE,
                            stderr=open(os.path.join(c.dir, "emit.log"), "w"))
    wait_until("col-1 to take traffic",
               lambda: metric(c1, "tocsin_collector_events_accepted_total") > 2000, 30)
    c1.kill9()
    c.procs.remove(c1)  # killed on purpose: its exit code is not a clean stop
    out, _ = emit.communicate(timeout=120)
    check(emit.returncode == 0, f"e2e_emit: not every event acked ({emit.returncode}): {out}")
    check(metric(c2, "tocsin_collector_events_accepted_total") > 0, "no failover to col-2")
    url = (f"http://127.0.0.1:{agg.http_port}/api/v1/query?service=failover&name=*"
           f"&window=5m")

    def counted():
        status, body = http("GET", url)
        return body if status == 200 and body.get("count", 0) >= count else None
    body = wait_until("the aggregator to count every event", counted, 60)
    time.sleep(2)  # nothing more may arrive
    status, body = http("GET", url)
    check(body["count"] == count, f"aggregator counted {body['count']}, sent {count}")
    print(f"col-1 killed after {metric(c2, 'tocsin_collector_events_accepted_total'):.0f} "
          f"events went through col-2; aggregator counted {body['count']} of {count}")


def write_cert(path, public, secret=None):
    """A czmq certificate file (zcert's text format)."""
    lines = ["#   ZeroMQ CURVE Certificate (written by the collector's e2e test)", "",
             "metadata", "curve", f'    public-key = "{public}"']
    if secret:
        lines.append(f'    secret-key = "{secret}"')
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def keypair(c):
    rc, out = c.run("keypair", [c.bin("tests/e2e/e2e_col_client"), "keypair"], timeout=10)
    pub, sec = out.split()
    return pub, sec


def scenario_curve(c):
    """CURVE with client keys from a directory: a known key works, an unknown key and a
    plain client are refused, and removing the key file cuts the client off — its next
    batch on the same connection is refused, and so is a new connection."""
    c.start_bus(brokers=1, partitions=2)
    server_pub, server_sec = keypair(c)
    known_pub, known_sec = keypair(c)
    other_pub, other_sec = keypair(c)
    certs = os.path.join(c.dir, "clients")
    os.makedirs(certs)
    server_cert = os.path.join(c.dir, "server.cert")
    write_cert(server_cert, server_pub, server_sec)
    write_cert(os.path.join(certs, "known.cert"), known_pub)
    col = c.start_collector(extra={"curve.enabled": "true", "curve.server_cert": server_cert,
                                   "curve.clients_dir": certs})
    known = ("--curve-server", server_pub, "--curve-public", known_pub, "--curve-secret",
             known_sec)
    other = ("--curve-server", server_pub, "--curve-public", other_pub, "--curve-secret",
             other_sec)
    gate = os.path.join(c.dir, "gate")
    proc, out = client_bg(c, col.endpoint, "twice", "curve-known", gate, name="known-twice",
                          opts=known + ("--timeout-ms", "2000"))
    rc, lines = client(c, col.endpoint, "seq", "curve-ok", "20", "10", opts=known)
    check(rc == 0, f"a known client key was refused: {lines}")
    # libtocsin's CURVE options (ZMQ_CURVE_SERVERKEY, PUBLICKEY, SECRETKEY in Z85) agree.
    rc, emitted = c.run("libtocsin-curve", [c.bin("tests/e2e/e2e_col_emit"), col.endpoint,
                                            "curve-libtocsin", "300", "3000", server_pub,
                                            known_pub, known_sec], timeout=60)
    check(rc == 0, f"libtocsin with a known CURVE key: {emitted}")
    rc, lines = client(c, col.endpoint, "seq", "curve-unknown", "10", "10",
                       opts=other + ("--timeout-ms", "1000", "--retries", "0"))
    check(rc != 0 and lines[-1]["stored"] == 0 and lines[-1]["timeouts"] >= 1,
          f"an unknown client key was served: {lines}")
    rc, lines = client(c, col.endpoint, "seq", "plain", "10", "10",
                       opts=("--timeout-ms", "1000", "--retries", "0"))
    check(rc != 0 and lines[-1]["stored"] == 0, f"a client without CURVE was served: {lines}")
    wait_until("the long-lived client's first batch",
               lambda: '"what":"first"' in open(out).read(), 20)
    os.remove(os.path.join(certs, "known.cert"))
    time.sleep(1)  # the collector checks the directory every 250 ms
    open(gate, "w").close()
    check(proc.wait(30) == 0, "the long-lived client failed")
    acks = [json.loads(line) for line in open(out) if line.startswith('{"what"')]
    check(acks[0]["status"] == "stored", f"first batch: {acks[0]}")
    check(acks[1]["status"] == "rejected" and acks[1]["reason"].startswith("unauthorized"),
          f"a removed key still gets its batches stored: {acks[1]}")
    rc, lines = client(c, col.endpoint, "seq", "curve-removed", "10", "10",
                       opts=known + ("--timeout-ms", "1000", "--retries", "0"))
    check(rc != 0 and lines[-1]["stored"] == 0,
          f"a new connection with a removed key was served: {lines}")
    # Putting it back (and SIGHUP) lets it in again.
    write_cert(os.path.join(certs, "known.cert"), known_pub)
    col.p.send_signal(signal.SIGHUP)
    wait_until("the reload", lambda: metric(col, 'tocsin_collector_reloads_total{result="ok"}')
               >= 1, 10)
    rc, lines = client(c, col.endpoint, "seq", "curve-back", "10", "10", opts=known)
    check(rc == 0, f"a key put back was refused: {lines}")
    summary, _ = consume(c, expect=335)
    for s, n in (("curve-ok", 20), ("curve-known", 5), ("curve-back", 10),
                 ("curve-libtocsin", 300)):
        check(summary["services"].get(s, {}).get("unique") == n, f"{s}: {summary}")
    for s in ("curve-unknown", "plain", "curve-removed"):
        check(s not in summary["services"], f"{s} reached Kafka: {summary}")


KEYS = """# service   key                        events/s  burst
keyed       kd_live_0123456789abcdef   10        100
other       ot_live_0123456789abcdef   -
"""

SCRUB = "emails = mask\nuser_ids = hash\nextra_secret_keys = ssn\n"


def scenario_keys_quota_scrub(c):
    """API keys per service, quotas answered with retry-after in milliseconds, SIGHUP
    reloading keys and scrub rules; secrets scrubbed, errors grouped, clamped times, in what
    reaches Kafka."""
    c.start_bus(brokers=1, partitions=2)
    keys = os.path.join(c.dir, "keys")
    scrub = os.path.join(c.dir, "scrub")
    with open(keys, "w") as f:
        f.write(KEYS)
    with open(scrub, "w") as f:
        f.write("")
    col = c.start_collector(extra={"auth.keys_file": keys, "scrub.rules_file": scrub})
    ok = ("--api-key", "kd_live_0123456789abcdef", "--retries", "0")
    rc, lines = client(c, col.endpoint, "seq", "keyed", "100", "100", opts=ok)
    check(rc == 0, f"a good key was refused: {lines}")
    # The bucket (burst 100, 10/s) is empty now: the next 50 wait up to 5 s, less what came
    # back since (exact figures: test_col_keys, on a virtual clock).
    rc, lines = client(c, col.endpoint, "seq", "keyed", "50", "50", opts=ok)
    ack = next(line for line in lines if "what" in line)
    check(ack["status"] == "retry_after" and 0 < ack["retry_after_ms"] <= 5000
          and "quota" in ack["reason"], f"over quota: {ack}")
    for opts, service, why in (
            (("--api-key", "nope_not_a_key_at_all"), "keyed", "unknown"),
            ((), "keyed", "missing"),
            (("--api-key", "ot_live_0123456789abcdef"), "keyed", "not for this service")):
        rc, lines = client(c, col.endpoint, "seq", service, "5", "5",
                           opts=opts + ("--retries", "0"))
        ack = next(line for line in lines if "what" in line)
        check(ack["status"] == "rejected" and ack["reason"].startswith("unauthorized")
              and why in ack["reason"], f"{why}: {ack}")
    # A new key and stricter scrub rules, reloaded without a restart.
    with open(keys, "a") as f:
        f.write("samples     sm_live_0123456789abcdef\n")
    with open(scrub, "w") as f:
        f.write(SCRUB)
    col.p.send_signal(signal.SIGHUP)
    wait_until("the reload", lambda: metric(col, 'tocsin_collector_reloads_total{result="ok"}')
               >= 1, 10)
    rc, lines = client(c, col.endpoint, "samples", "samples",
                       opts=("--api-key", "sm_live_0123456789abcdef"))
    check(rc == 0, f"samples not stored: {lines}")
    summary, records = consume(c, expect=105, dump=True)
    samples = [r for r in records if r["service"] == "samples"]
    check(len(samples) == 5, f"samples: {samples}")
    blob = json.dumps(samples)
    for secret in ("hunter2", "4111 1111 1111 1111", "abcdef0123456789xyz", "s3cr3tT0k3n",
                   "AKIA1234567890", "pa55word", "MIIEow", "alice@example.com"):
        check(secret not in blob, f"{secret!r} left the collector: {blob}")
    # Records of different keys (errors are keyed by grouping hash) come back from Kafka in
    # no fixed order across partitions: find each error by what it is, not by its place.
    errors = [r for r in samples if r["body"] == "error"]
    hashes = [r["grouping_hash"] for r in errors]
    check(hashes.count("client-chosen-id") == 1, f"a client's grouping id was not kept: {hashes}")
    grouped = [r for r in errors if r["grouping_hash"] != "client-chosen-id"]
    check(len(grouped) == 2 and len(grouped[0]["grouping_hash"]) == 32
          and grouped[0]["grouping_hash"] == grouped[1]["grouping_hash"],
          f"the same error from other lines must group together: {hashes}")
    # The first error the client sent is the one with a user id (an e-mail) and a time a day
    # ahead.
    with_user = [r for r in grouped if r["user_id"]]
    check(len(with_user) == 1, f"one error carries a user id: {grouped}")
    first = with_user[0]
    check(first["time_us"] == first["received_us"], "a time a day ahead was not clamped")
    check(len(first["user_id"]) == 32, f"user id not hashed: {first['user_id']}")
    check(first["key"] == "samples|" + first["grouping_hash"], f"error key: {first['key']}")
    log = next(r for r in samples if r["body"] == "log")
    check(log["key"] == "samples" and log["topic"] == "tocsin.logs", f"log routing: {log}")
    m = metrics(col)
    check(m.get('tocsin_collector_scrubbed_total{kind="secret_key"}', 0) >= 3, "secrets count")
    check(m.get('tocsin_collector_time_clamped_total{direction="future"}', 0) >= 1, "clamps")
    check(m.get('tocsin_collector_rate_limited_events_total', 0) == 50, "rate-limited count")


SCENARIOS = {
    "collector_bad_input": scenario_bad_input,
    "collector_kafka_outage": scenario_kafka_outage,
    "collector_spool_restart": scenario_spool_restart,
    "collector_failover_kill9": scenario_failover_kill9,
    "collector_curve": scenario_curve,
    "collector_keys_quota_scrub": scenario_keys_quota_scrub,
}
