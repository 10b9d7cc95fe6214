"""End-to-end scenarios of libtocsin: the client library against the real collector, bus and
aggregator, as processes. The client side is tocsin-e2e-client (clients/c/testing), which
prints what it did as JSON; the truth is counted at the collector (/metrics) and the
aggregator (/api/v1/query)."""

import glob
import json
import os
import re
import signal
import subprocess
import time

from harness import check, free_port, http, wait_until

AGG_EXTRA = {"grace": "1s"}


def driver(c):
    return c.bin("tests/e2e/tocsin-e2e-client")


def run_driver(c, name, args, timeout=120):
    """Runs the driver to the end; returns (exit code, last JSON line or None)."""
    rc, out = c.run(name, [driver(c)] + args, timeout=timeout)
    lines = [line for line in out.strip().splitlines() if line.startswith("{")]
    return rc, (json.loads(lines[-1]) if lines else None)


def metric(proc, name, labels=""):
    """The value of one Prometheus sample of a daemon, 0 when absent."""
    status, text = http("GET", f"http://127.0.0.1:{proc.http_port}/metrics")
    check(status == 200, f"{proc.name} /metrics answered {status}")
    pattern = re.escape(name) + (re.escape("{" + labels + "}") if labels else "") + r" (\S+)"
    m = re.search(r"^" + pattern + r"$", text, re.M)
    return float(m.group(1)) if m else 0.0


def query(agg, service, name):
    status, body = http("GET", f"http://127.0.0.1:{agg.http_port}/api/v1/query"
                               f"?service={service}&name={name}&window=1h")
    check(status == 200, f"query {service}/{name}: {status} {body}")
    return body


def wait_count(agg, service, name, want, timeout=60):
    """Waits until the aggregator counts `want` events of a series, then checks that it
    holds exactly that many (none twice) a moment later."""
    wait_until(f"{want} events of {service}/{name} at the aggregator",
               lambda: query(agg, service, name)["count"] >= want, timeout)
    time.sleep(1.0)
    body = query(agg, service, name)
    check(body["count"] == want, f"{service}/{name}: count {body['count']} != {want}")
    return body


def forget(c, proc):
    """A process this scenario killed on purpose: not checked for a clean exit."""
    c.procs.remove(proc)


def scenario_queue_full(c):
    """The collector frozen (SIGSTOP): the client's queue fills, every drop is counted, and
    once the collector runs again the exact drop count reaches it, with every event that fit."""
    c.start_bus(brokers=1, partitions=2)
    col = c.start_collector()
    col.p.send_signal(signal.SIGSTOP)
    try:
        p = subprocess.Popen([driver(c), "--collectors", col.endpoint, "--service", "e2e-full",
                              "--queue", "200", "--batch", "50", "--ack-timeout", "60000",
                              "burst", "20000"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        first = json.loads(p.stdout.readline())
        print(f"while frozen: {first}")
        check(first["full"] > 0, "the queue never filled")
        check(first["recorded"] + first["full"] == 20000, f"lost calls: {first}")
    finally:
        col.p.send_signal(signal.SIGCONT)
    p.stdin.write("go\n")
    p.stdin.flush()
    out, _ = p.communicate(timeout=60)
    final = json.loads(out.strip().splitlines()[-1])
    print(f"after: {final}")
    check(p.returncode == 0 and final["flush"] == 0, f"driver: {p.returncode} {final}")
    check(final["acked"] == final["recorded"] == first["recorded"], f"not all acked: {final}")
    check(final["dropped_queue_full"] == first["full"], f"drops miscounted: {final}")
    name = "tocsin_collector_client_dropped_total"
    wait_until("the drop count at the collector",
               lambda: metric(col, name, 'reason="queue_full"') >= first["full"], 20)
    got = metric(col, name, 'reason="queue_full"')
    check(got == first["full"], f"collector counts {got} dropped, client {first['full']}")
    print(f"collector: {name}{{reason=\"queue_full\"}} = {got:.0f}, exactly the client's count")


def scenario_no_collector(c):
    """Nobody listens: 200,000 recording calls all answer OK or EFULL at once (counted), and
    destroy gives up well within its bound; tocsin-emit says 69 within its time-out."""
    dead = f"tcp://127.0.0.1:{free_port()}"
    rc, res = run_driver(c, "nocol", ["--collectors", dead, "--queue", "4096",
                                      "--flush-timeout", "200", "--shutdown-timeout", "10000",
                                      "stream", "200000", "0"], timeout=60)
    print(f"driver: {res}")
    check(rc == 0 and res is not None, f"driver exit {rc}")
    check(res["bad_rc"] == 0, f"{res['bad_rc']} recording calls failed otherwise than EFULL")
    check(res["recorded"] + res["full"] == 200000, f"calls unaccounted for: {res}")
    check(res["full"] == res["dropped_queue_full"] and res["full"] > 0, f"drops: {res}")
    check(res["acked"] == 0 and res["flush"] != 0, f"nothing can be acked: {res}")
    check(res["destroy_ms"] < 10000, f"destroy took {res['destroy_ms']} ms, bound 10000")
    t0 = time.monotonic()
    rc, _ = c.run("emit-dead", [c.bin("clients/c/tocsin-emit"), "--collector", dead,
                                "--service", "cron", "--timeout", "500", "heartbeat"], 30)
    took = time.monotonic() - t0
    check(rc == 69, f"tocsin-emit without a collector exited {rc}, want 69")
    print(f"tocsin-emit without a collector: exit 69 after {took:.2f}s (time-out 0.5 s)")


def stream_args(collectors, service, count, rate):
    return ["--collectors", collectors, "--service", service, "--queue", "16384",
            "--ack-timeout", "500", "stream", str(count), str(rate)]


def scenario_collector_restart(c):
    """The collector is killed (SIGKILL) and restarted on the same port mid-stream: every
    event, all of which fit in the client's buffer, is counted once by the aggregator."""
    c.start_bus(brokers=1, partitions=2)
    port = free_port()
    col = c.start_collector(zport=port)
    agg = c.start_aggregator(extra=AGG_EXTRA)
    count = 6000
    p = subprocess.Popen([driver(c)] + stream_args(col.endpoint, "e2e-restart", count, 2000),
                         stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    col.kill9()
    forget(c, col)
    print("collector killed mid-stream")
    time.sleep(0.5)
    col2 = c.start_collector(name="collector-restarted", zport=port)
    print("collector restarted on the same port")
    out, _ = p.communicate(timeout=90)
    res = json.loads(out.strip().splitlines()[-1])
    print(f"driver: {res}")
    check(p.returncode == 0 and res["flush"] == 0, f"driver: {p.returncode} {res}")
    check(res["full"] == 0 and res["recorded"] == count, f"not everything fit: {res}")
    check(res["acked"] == count, f"acked {res['acked']} of {count}")
    body = wait_count(agg, "e2e-restart", "/e2e", count)
    check(body["errors"] == count // 10, f"errors {body['errors']}")
    print(f"aggregator: {body['count']} events, {body['errors']} errors: none lost, none twice;"
          f" {res['batches_retried']} batches resent")
    check(metric(col2, "tocsin_collector_batches_received_total") > 0, "restarted one idle")


def scenario_failover(c):
    """Two collectors, the first killed mid-stream: the traffic moves to the second and every
    event is counted once by the aggregator."""
    c.start_bus(brokers=1, partitions=2)
    col1 = c.start_collector(name="collector-1")
    col2 = c.start_collector(name="collector-2")
    agg = c.start_aggregator(extra=AGG_EXTRA)
    count = 6000
    p = subprocess.Popen([driver(c)] + stream_args(f"{col1.endpoint},{col2.endpoint}",
                                                   "e2e-failover", count, 2000),
                         stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    before = metric(col2, "tocsin_collector_batches_received_total")
    col1.kill9()
    forget(c, col1)
    print("collector-1 killed mid-stream")
    out, _ = p.communicate(timeout=90)
    res = json.loads(out.strip().splitlines()[-1])
    print(f"driver: {res}")
    check(p.returncode == 0 and res["flush"] == 0, f"driver: {p.returncode} {res}")
    check(res["acked"] == count and res["full"] == 0, f"driver: {res}")
    after = metric(col2, "tocsin_collector_batches_received_total")
    check(after > before, f"collector-2 took no batches after the kill ({before} -> {after})")
    body = wait_count(agg, "e2e-failover", "/e2e", count)
    print(f"collector-2 took {after - before:.0f} batches after the kill; aggregator counts "
          f"{body['count']}: no loss, none twice")


def issues_api(agg):
    """The aggregator's issue list for a service when it has one (the aggregator engineer's
    /api/v1/issues), else None."""
    status, body = http("GET", f"http://127.0.0.1:{agg.http_port}/api/v1/issues"
                               f"?service=e2e-crash")
    return body if status == 200 and isinstance(body, (dict, list)) else None


def scenario_crash_emit_example(c):
    """A process that segfaults leaves a crash report; the next start sends it and the
    aggregator counts it. tocsin-emit's commands arrive with trustworthy exit codes, and the
    example program's events are counted too."""
    c.start_bus(brokers=1, partitions=2)
    col = c.start_collector()
    agg = c.start_aggregator(extra=AGG_EXTRA)
    crash_dir = os.path.join(c.dir, "crashes")
    os.mkdir(crash_dir)
    args = ["--collectors", col.endpoint, "--service", "e2e-crash", "--crash-dir", crash_dir]

    rc, _ = c.run("crasher", [driver(c)] + args + ["crash"], timeout=30)
    check(rc == -signal.SIGSEGV, f"the crasher exited {rc}, not killed by SIGSEGV")
    files = glob.glob(os.path.join(crash_dir, "tocsin-crash-*.crash"))
    check(len(files) == 1, f"crash files: {files}")
    with open(files[0]) as f:
        report = f.read()
    check("signal 11" in report and "\nframe " in report, f"report:\n{report}")
    print(f"crash report {os.path.basename(files[0])}: "
          f"{report.count(chr(10) + 'frame ')} frames")

    rc, res = run_driver(c, "next-start", args + ["none"], timeout=60)
    print(f"next start: {res}")
    check(rc == 0 and res["crashes_found"] == 1 and res["crashes_sent"] == 1, f"{rc} {res}")
    check(not glob.glob(os.path.join(crash_dir, "*.crash")), "the crash file was not deleted")
    body = wait_count(agg, "e2e-crash", "$errors", 1)
    issues = issues_api(agg)
    where = "the $errors series"
    if issues is not None:
        where = "the $errors series and /api/v1/issues"
        check("SIGSEGV" in json.dumps(issues), f"no SIGSEGV issue: {issues}")
    print(f"the crash reached {where}: count {body['count']}")

    emit = c.bin("clients/c/tocsin-emit")
    common = ["--collector", col.endpoint, "--service", "e2e-cron", "--timeout", "10000"]
    for cmd in (["heartbeat"], ["metric", "backup.bytes", "123456", "--kind", "gauge"],
                ["log", "warning", "disk almost full", "--field", "mount=/var"],
                ["error", "BackupFailed", "exit status 3", "--fingerprint", "backup"],
                ["request", "/nightly", "200", "1500"]):
        rc, _ = c.run("emit", [emit] + common + cmd, timeout=30)
        check(rc == 0, f"tocsin-emit {cmd[0]} exited {rc}")
    p = subprocess.run([emit] + common + ["log", "info", "-"], input="line one\nline two\n",
                       text=True, capture_output=True, timeout=30)
    check(p.returncode == 0, f"tocsin-emit log from stdin: {p.returncode} {p.stderr}")
    rc, _ = c.run("emit-bad", [emit] + common + ["metric", "x", "not-a-number"], timeout=30)
    check(rc == 64, f"a bad number exited {rc}, want 64")
    rc, _ = c.run("emit-bad2", [emit, "heartbeat"], timeout=30)
    check(rc == 64, f"no service exited {rc}, want 64")
    wait_count(agg, "e2e-cron", "heartbeat", 1)
    wait_count(agg, "e2e-cron", "/nightly", 1)
    wait_count(agg, "e2e-cron", "$errors", 1)
    print("tocsin-emit: heartbeat, metric, log, error, request stored (exit 0); bad usage 64")

    rc, out = c.run("example", [c.bin("clients/c/tocsin-example"), col.endpoint], timeout=60)
    check(rc == 0, f"tocsin-example exited {rc}:\n{out}")
    wait_count(agg, "hello", "*", 4)
    print("tocsin-example: its 4 requests counted by the aggregator")


def keypair(c):
    rc, out = c.run("keypair", [driver(c), "keypair"], timeout=10)
    check(rc == 0, f"keypair: {rc}")
    pub, sec = out.split()
    return pub, sec


def write_cert(path, pub, sec=None):
    """A czmq certificate (ZPL): the public file, and with `sec` the _secret one."""
    body = ("metadata\ncurve\n"
            f'    public-key = "{pub}"\n' + (f'    secret-key = "{sec}"\n' if sec else ""))
    with open(path, "w") as f:
        f.write("#   ****  Generated by the libtocsin e2e scenario  ****\n" + body)


def scenario_curve(c):
    """The collector with CURVE and client authentication (czmq zauth, standard libzmq
    options on the client's side): a client with the server's key and an allowed key pair
    delivers; one with a key pair the collector does not know, or without CURVE, gets
    nothing stored (tocsin-emit exits 69)."""
    c.start_bus(brokers=1, partitions=2)
    server_pub, server_sec = keypair(c)
    client_pub, client_sec = keypair(c)
    stranger_pub, stranger_sec = keypair(c)
    cert = os.path.join(c.dir, "collector.cert")
    write_cert(cert, server_pub)
    write_cert(cert + "_secret", server_pub, server_sec)
    clients = os.path.join(c.dir, "clients")
    os.mkdir(clients)
    write_cert(os.path.join(clients, "e2e.cert"), client_pub)
    col = c.start_collector(extra={"curve.enabled": "true", "curve.server_cert": cert,
                                   "curve.clients_dir": clients})
    rc, res = run_driver(c, "curve-ok", ["--collectors", col.endpoint, "--service", "e2e-curve",
                                         "--curve-server-key", server_pub,
                                         "--curve-public-key", client_pub,
                                         "--curve-secret-key", client_sec,
                                         "stream", "500", "0"], timeout=60)
    print(f"allowed client: {res}")
    check(rc == 0 and res["flush"] == 0 and res["acked"] == 500, f"allowed client: {rc} {res}")
    emit = c.bin("clients/c/tocsin-emit")
    rc, _ = c.run("emit-stranger", [emit, "--collector", col.endpoint, "--service", "e2e-curve",
                                    "--curve-server-key", server_pub, "--timeout", "1000",
                                    "heartbeat"], timeout=30)
    check(rc == 69, f"a client the collector does not know exited {rc}, want 69")
    rc, _ = c.run("emit-plain", [emit, "--collector", col.endpoint, "--service", "e2e-curve",
                                 "--timeout", "1000", "heartbeat"], timeout=30)
    check(rc == 69, f"a client without CURVE exited {rc}, want 69")
    got = metric(col, "tocsin_collector_events_accepted_total")
    check(got == 500, f"the collector accepted {got} events, want exactly the allowed 500")
    print("CURVE: the allowed client's 500 events stored; a stranger and a plain client: 69")


SCENARIOS = {
    "client_queue_full": scenario_queue_full,
    "client_no_collector": scenario_no_collector,
    "client_collector_restart": scenario_collector_restart,
    "client_failover": scenario_failover,
    "client_crash_emit_example": scenario_crash_emit_example,
    "client_curve": scenario_curve,
}
