#!/usr/bin/env python3
"""Collector benchmark (issue 4): events per second accepted and acked by one
tocsin-collector — small (~200 B) and large (~1.5 KB) events, without and with CURVE — with
CPU seconds per million events and peak memory; and in the same run, into the same embedded
broker, rsyslog with omkafka fed equivalent lines over TCP.

usage: bench/bench_collector.py [--build-dir DIR] [--runs N] [--small N] [--large N]
                                [--set KEY=VALUE ...] [--no-rsyslog]

Load: 8 client connections (DEALER sockets), each with 8 batches of 500 events in flight —
what 8 libtocsin clients with their default batch size send when they keep up. A single
connection with 16 batches in flight is bound by the acknowledgement latency (Little's law:
~8,000 events per ~25 ms), not by the collector.

How the 2 cores are shared: the broker (tocsin-bus), the collector and the load generator
run on the same machine. The generator (bench_collector send) encodes its batches once and
only patches sequence numbers and event ids before sending, so its own CPU is small; it is
measured and printed. The collector's CPU seconds are read from /proc for its whole process
(ZeroMQ I/O threads and librdkafka's threads included), so "CPU s per million" is the
collector's own cost whatever else ran; "events/s" is wall-clock throughput of the whole
pipeline on this machine. rsyslog is measured the same way: its CPU from /proc, the feeder's
CPU printed, the rate taken from when the first line is written until the broker's high
watermarks hold every line. Collector and rsyslog runs alternate (the machine's load drifts:
alternating puts both under the same drift), and the ratio of each collector run to the
rsyslog run after it is printed with the ratio of the medians.

Since the collector packs the events of one batch and key into one Kafka record
(tocsin.v1.EventPack, docs/collector.md), a batch of 500 events of a dozen series is a dozen
records; rsyslog writes one record per line.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing ready on :{port}")


def wait_port(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listening on :{port}")


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def write_cert(path, public, secret=None):
    lines = ["metadata", "curve", f'    public-key = "{public}"']
    if secret:
        lines.append(f'    secret-key = "{secret}"')
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build_dir)
        self.dir = tempfile.mkdtemp(prefix="tocsin-bench-collector-")
        self.tool = os.path.join(self.build, "bench", "bench_collector")
        self.procs = []

    def bin(self, rel):
        path = os.path.join(self.build, rel)
        if not os.path.exists(path):
            raise SystemExit(f"missing {path}: build the bench target first")
        return path

    def start(self, name, argv):
        log = open(os.path.join(self.dir, name + ".log"), "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def start_bus(self):
        self.bootstrap = os.path.join(self.dir, "bus.bootstrap")
        self.bus_http = free_port()
        self.bus = self.start("bus", [self.bin("tools/tocsin-bus"), "--brokers", "3",
                                      "--partitions", "4", "--bootstrap-file", self.bootstrap,
                                      "--http-port", str(self.bus_http)])
        wait_http(self.bus_http)
        with open(self.bootstrap) as f:
            self.brokers = f.readline().strip()

    def keypair(self):
        out = subprocess.run([self.tool, "keypair"], capture_output=True, text=True,
                             check=True).stdout.split()
        return out[0], out[1]

    def collector(self, curve):
        zport, hport = free_port(), free_port()
        argv = [self.bin("collector/tocsin-collector"), "--set", f"listen=tcp://127.0.0.1:{zport}",
                "--set", "http.bind=127.0.0.1", "--set", f"http.port={hport}",
                "--set", f"brokers_file={self.bootstrap}", "--set", "log.level=warn",
                "--set", "instance.id=bench"]
        for kv in self.args.set:
            argv += ["--set", kv]
        client = None
        if curve:
            spub, ssec = self.keypair()
            cpub, csec = self.keypair()
            certs = os.path.join(self.dir, "clients")
            shutil.rmtree(certs, ignore_errors=True)
            os.makedirs(certs)
            write_cert(os.path.join(self.dir, "server.cert"), spub, ssec)
            write_cert(os.path.join(certs, "bench.cert"), cpub)
            argv += ["--set", "curve.enabled=true",
                     "--set", f"curve.server_cert={os.path.join(self.dir, 'server.cert')}",
                     "--set", f"curve.clients_dir={certs}"]
            client = ["--curve-server", spub, "--curve-public", cpub, "--curve-secret", csec]
        p = self.start("collector", argv)
        wait_http(hport)
        return p, f"tcp://127.0.0.1:{zport}", client or []

    def run_collector(self, events, size, curve):
        p, endpoint, client = self.collector(curve)
        try:
            out = subprocess.run([self.tool, "send", endpoint, str(events), "500", str(size),
                                  "--pid", str(p.pid), "--window", "8", "--sockets", "8"]
                                 + client, capture_output=True, text=True, timeout=600)
        finally:
            stop(p)
        if out.returncode != 0:
            raise SystemExit(f"load generator failed: {out.stderr}{out.stdout}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    def watermark_sum(self, topic):
        out = subprocess.run([self.tool, "watermark", self.bootstrap, topic, "0", "10"],
                             capture_output=True, text=True, timeout=60)
        return json.loads(out.stdout.strip().splitlines()[-1])["records"]

    def run_rsyslog(self, lines, size, topic):
        port = free_port()
        work = os.path.join(self.dir, "rsyslog-work")
        os.makedirs(work, exist_ok=True)
        brokers = ",".join(f'"{b}"' for b in self.brokers.split(","))
        conf = os.path.join(self.dir, "rsyslog.conf")
        with open(conf, "w") as f:
            f.write(f"""
global(workDirectory="{work}" maxMessageSize="8k")
module(load="imptcp")
module(load="omkafka")
template(name="raw" type="string" string="%msg%")
input(type="imptcp" address="127.0.0.1" port="{port}" ruleset="tokafka")
ruleset(name="tokafka" queue.type="LinkedList" queue.size="2000000"
        queue.dequeueBatchSize="1024") {{
  action(type="omkafka" broker=[{brokers}] topic="{topic}" template="raw"
         confParam=["compression.codec=lz4", "linger.ms=10", "batch.num.messages=10000",
                    "queue.buffering.max.messages=2000000", "queue.buffering.max.kbytes=2097151",
                    "enable.idempotence=true", "acks=all"])
}}
""")
        p = self.start("rsyslog", ["rsyslogd", "-n", "-f", conf, "-i", os.path.join(work, "pid")])
        try:
            wait_port(port)
            before = self.watermark_sum(topic)
            feed = subprocess.Popen([self.tool, "lines", "127.0.0.1", str(port), str(lines),
                                     str(size)], stdout=subprocess.PIPE, text=True)
            wm = subprocess.run([self.tool, "watermark", self.bootstrap, topic,
                                 str(before + lines), "600", "--pid", str(p.pid)],
                                capture_output=True, text=True, timeout=700)
            fed = json.loads(feed.communicate(timeout=60)[0].strip().splitlines()[-1])
        finally:
            stop(p)
        res = json.loads(wm.stdout.strip().splitlines()[-1])
        if not res["reached"]:
            raise SystemExit(f"rsyslog did not deliver every line: {res}")
        return {"events": lines, "seconds": res["seconds"],
                "events_per_s": lines / res["seconds"], "target_cpu_s": res["target_cpu_s"],
                "target_peak_rss_kb": res["target_peak_rss_kb"],
                "sender_cpu_s": fed["sender_cpu_s"]}

    def close(self):
        for p in reversed(self.procs):
            stop(p)
        shutil.rmtree(self.dir, ignore_errors=True)


def summarize(name, runs):
    rates = [r["events_per_s"] for r in runs]
    cpu_per_m = [r["target_cpu_s"] / r["events"] * 1e6 for r in runs]
    gen_per_m = [r["sender_cpu_s"] / r["events"] * 1e6 for r in runs]
    row = {
        "what": name,
        "runs": len(runs),
        "events_per_s_median": round(statistics.median(rates)),
        "events_per_s_min": round(min(rates)),
        "events_per_s_max": round(max(rates)),
        "cpu_s_per_million_median": round(statistics.median(cpu_per_m), 3),
        "peak_rss_mb_max": round(max(r["target_peak_rss_kb"] for r in runs) / 1024, 1),
        "feeder_cpu_s_per_million": round(statistics.median(gen_per_m), 3),
    }
    if "ack_ms_p99" in runs[0]:
        row["ack_ms_p50_median"] = round(statistics.median(r["ack_ms_p50"] for r in runs), 2)
        row["ack_ms_p99_median"] = round(statistics.median(r["ack_ms_p99"] for r in runs), 2)
        row["ack_ms_p99_max"] = round(max(r["ack_ms_p99"] for r in runs), 2)
        row["event_bytes"] = runs[0]["event_bytes"]
    return row


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--build-dir", default=os.path.join(here, "..", "build"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--small", type=int, default=2000000, help="small events per run")
    ap.add_argument("--large", type=int, default=400000, help="large events per run")
    ap.add_argument("--set", action="append", default=[], help="collector config override")
    ap.add_argument("--no-rsyslog", action="store_true")
    args = ap.parse_args()
    b = Bench(args)
    rows = []
    ratios = []
    if not args.no_rsyslog and not shutil.which("rsyslogd"):
        raise SystemExit("rsyslogd missing: scripts/deps.sh --bench")
    try:
        b.start_bus()
        # Without CURVE, the collector's and rsyslog's runs alternate (collector, rsyslog,
        # collector, ...): the machine is shared and its load drifts, and alternating puts
        # both under the same drift. Each pair's ratio is kept too.
        peer_rows = []
        for size, n in ((200, args.small), (1500, args.large)):
            label = "small" if size == 200 else "large"
            runs, peer = [], []
            for _ in range(args.runs):
                runs.append(b.run_collector(n, size, False))
                if not args.no_rsyslog:
                    peer.append(b.run_rsyslog(n, size, f"bench.rsyslog.{size}"))
                    if size == 200:
                        ratios.append(runs[-1]["events_per_s"] / peer[-1]["events_per_s"])
            rows.append(summarize(f"tocsin-collector {label} ({size} B)", runs))
            print(json.dumps(rows[-1]), flush=True)
            if peer:
                peer_rows.append(summarize(f"rsyslog+omkafka {label} ({size} B)", peer))
                print(json.dumps(peer_rows[-1]), flush=True)
        for size, n in ((200, args.small), (1500, args.large)):
            name = f"tocsin-collector {'small' if size == 200 else 'large'} ({size} B) CURVE"
            runs = [b.run_collector(n, size, True) for _ in range(args.runs)]
            rows.append(summarize(name, runs))
            print(json.dumps(rows[-1]), flush=True)
        rows += peer_rows
    finally:
        b.close()
    print()
    print(f"{'':44} {'events/s (median, min-max)':>30} {'CPU s/M':>8} {'peak MB':>8} "
          f"{'ack p99 ms':>10} {'feeder CPU s/M':>15}")
    for r in rows:
        print(f"{r['what']:44} {r['events_per_s_median']:>12,} ({r['events_per_s_min']:,}-"
              f"{r['events_per_s_max']:,}) {r['cpu_s_per_million_median']:>8} "
              f"{r['peak_rss_mb_max']:>8} {r.get('ack_ms_p99_median', '-'):>10} "
              f"{r['feeder_cpu_s_per_million']:>15}")
    col = next((r for r in rows if r["what"].startswith("tocsin-collector small (200 B)")), None)
    rs = next((r for r in rows if r["what"].startswith("rsyslog+omkafka small")), None)
    if col and rs:
        print(f"\nsmall events: collector / rsyslog = "
              f"{col['events_per_s_median'] / rs['events_per_s_median']:.2f}x (goal >= 2x); "
              f"collector {col['events_per_s_median']:,}/s (goal >= 500,000/s)")
    if ratios:
        print(f"small events, run by run (collector run / the rsyslog run right after it): "
              f"median {statistics.median(ratios):.2f}x, min {min(ratios):.2f}x, "
              f"max {max(ratios):.2f}x")


if __name__ == "__main__":
    sys.exit(main())
