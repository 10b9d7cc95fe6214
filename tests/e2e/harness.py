"""Starts Tocsin's real daemons as processes on 127.0.0.1 for end-to-end tests.

Standard library only. Every process gets ephemeral ports, its own data directory under a
temporary folder and its stderr in a log file; everything is stopped (SIGTERM, then
SIGKILL after a bound) when the harness closes, whatever happened.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request


class TestFailure(Exception):
    pass


def check(cond, msg):
    """Fails the scenario with `msg` unless `cond` holds."""
    if not cond:
        raise TestFailure(msg)


def free_port():
    """A port the kernel just handed out on 127.0.0.1 (closed again, so free for a moment)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None, timeout=5):
    """Returns (status, parsed JSON or text). Network errors raise."""
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_until(what, fn, timeout, interval=0.2):
    """Calls fn until it returns a truthy value; raises TestFailure after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            v = fn()
            if v:
                return v
        except (OSError, ValueError, urllib.error.URLError) as e:
            last_exc = e
        time.sleep(interval)
    raise TestFailure(f"timed out after {timeout}s waiting for {what}"
                      + (f" (last error: {last_exc})" if last_exc else ""))


class Proc:
    def __init__(self, name, argv, log_path, env=None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=self.log,
                                  stdin=subprocess.DEVNULL, env=env)

    def alive(self):
        return self.p.poll() is None

    def stop(self, timeout=20):
        """SIGTERM, wait; returns the exit code (SIGKILL and None after the bound)."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                self.log.close()
                return None
        self.log.close()
        return self.p.returncode

    def kill9(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self.log.close()

    def tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""


class Cluster:
    """Bus, collectors, aggregators, alerter and sink, each a real process."""

    def __init__(self, build_dir, keep=False):
        self.build = os.path.abspath(build_dir)
        self.dir = tempfile.mkdtemp(prefix="tocsin-e2e-")
        self.keep = keep
        self.procs = []
        self.bootstrap_file = os.path.join(self.dir, "bus.bootstrap")
        self.bus_http = None

    def bin(self, rel):
        path = os.path.join(self.build, rel)
        if not os.path.exists(path):
            raise TestFailure(f"missing binary {path}: build first")
        return path

    def start(self, name, argv):
        p = Proc(name, argv, os.path.join(self.dir, name + ".log"))
        self.procs.append(p)
        return p

    def wait_ready(self, proc, port, timeout=60, path="/health/ready"):
        """`path`: "/health/live" for a daemon expected to start unready (Kafka away)."""
        def ready():
            if not proc.alive():
                raise TestFailure(f"{proc.name} exited with {proc.p.returncode}:\n{proc.tail()}")
            status, _ = http("GET", f"http://127.0.0.1:{port}{path}", timeout=2)
            return status == 200
        wait_until(f"{proc.name} ready on :{port}", ready, timeout)

    def start_bus(self, brokers=3, partitions=4):
        self.bus_http = free_port()
        p = self.start("bus", [self.bin("tools/tocsin-bus"), "--brokers", str(brokers),
                               "--partitions", str(partitions),
                               "--bootstrap-file", self.bootstrap_file,
                               "--http-port", str(self.bus_http)])
        wait_until("bus bootstrap file", lambda: os.path.exists(self.bootstrap_file), 30)
        self.wait_ready(p, self.bus_http)
        return p

    def bus_brokers(self, state, broker_id=None):
        url = f"http://127.0.0.1:{self.bus_http}/api/v1/brokers/{state}"
        if broker_id is not None:
            url += f"?id={broker_id}"
        status, body = http("POST", url)
        if status != 200:
            raise TestFailure(f"bus fault API: {status} {body}")

    def common_args(self, http_port, extra):
        # Self-monitoring (selfmon.*) is off unless a scenario sets selfmon.collectors in
        # `extra`: the daemons' own heartbeats would add events to what scenarios count.
        args = ["--set", "http.bind=127.0.0.1", "--set", f"http.port={http_port}",
                "--set", f"brokers_file={self.bootstrap_file}", "--set", "log.level=info",
                "--set", "selfmon.collectors="]
        for k, v in (extra or {}).items():
            args += ["--set", f"{k}={v}"]
        return args

    def start_collector(self, name="collector", extra=None, zport=None, wait_live=False):
        """`zport`: the ZeroMQ port to listen on (a restart on the same port); default free.
        `wait_live`: wait for /health/live only (a collector that starts unready: Kafka away
        and its spool above the high-water mark)."""
        zport, hport = zport or free_port(), free_port()
        p = self.start(name, [self.bin("collector/tocsin-collector"),
                              "--set", f"listen=tcp://127.0.0.1:{zport}",
                              "--set", f"instance.id={name}"]
                       + self.common_args(hport, extra))
        self.wait_ready(p, hport, path="/health/live" if wait_live else "/health/ready")
        p.endpoint = f"tcp://127.0.0.1:{zport}"
        p.http_port = hport
        return p

    def start_aggregator(self, name="aggregator", extra=None, data_dir=None):
        hport = free_port()
        data_dir = data_dir or os.path.join(self.dir, name + "-data")
        p = self.start(name, [self.bin("aggregator/tocsin-aggregator"),
                              "--set", f"data_dir={data_dir}",
                              "--set", f"instance.id={name}"]
                       + self.common_args(hport, extra))
        self.wait_ready(p, hport)
        p.http_port = hport
        p.data_dir = data_dir
        return p

    def start_alerter(self, rules_yaml, name="alerter", extra=None):
        hport = free_port()
        rules = os.path.join(self.dir, name + "-rules.yaml")
        with open(rules, "w") as f:
            f.write(rules_yaml)
        p = self.start(name, [self.bin("alerter/tocsin-alerter"),
                              "--set", f"rules={rules}",
                              "--set", f"data_dir={os.path.join(self.dir, name + '-data')}",
                              "--set", f"instance.id={name}",
                              "--set", f"external_url=http://127.0.0.1:{hport}"]
                       + self.common_args(hport, extra))
        self.wait_ready(p, hport)
        p.http_port = hport
        return p

    def start_sink(self, name="sink", status=200):
        port = free_port()
        out = os.path.join(self.dir, name + ".jsonl")
        p = self.start(name, [self.bin("tools/tocsin-sink"), "--port", str(port),
                              "--out", out, "--status", str(status)])
        self.wait_ready(p, port)
        p.port = port
        p.out = out
        p.url = f"http://127.0.0.1:{port}/hook"
        return p

    @staticmethod
    def sink_lines(sink):
        try:
            with open(sink.out) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def run(self, name, argv, timeout):
        """Runs a program to completion; returns (exit code, stdout)."""
        with open(os.path.join(self.dir, name + ".log"), "ab") as log:
            r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=log, timeout=timeout)
        return r.returncode, r.stdout.decode(errors="replace")

    def close(self, failed=False):
        """Stops everything in reverse start order; returns {name: exit code}."""
        codes = {}
        for p in reversed(self.procs):
            if p.p.poll() is None or not p.log.closed:
                codes[p.name] = p.stop()
            else:
                codes[p.name] = p.p.returncode
        if failed:
            for p in self.procs:
                print(f"----- {p.name} ({p.log_path}) -----\n{p.tail()}")
        if failed or self.keep:
            print(f"test files kept in {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        return codes
