"""Operations (issue 7): tocsinctl against the real daemons, and the deployment files
checked with the validators Debian packages.

ops_ctl: bus, two collectors, an aggregator, the alerter and a sink as processes; events sent
through libtocsin; then tocsinctl's status, query, top, alerts and rules check are compared
with what the daemons themselves answer, an unreachable daemon and a daemon that is not
ready give their documented exit codes and messages, and keygen writes czmq certificates.

ops_deploy: every file in deploy/ is checked by its own tool (docker-compose config,
promtool, systemd-analyze verify and security, yamllint), the example configs by the
daemons' own parsers (every key they know is in them), the rule files by tocsinctl rules
check (the alerter's parser), the Kubernetes manifests and the Dockerfile structurally,
and every metric a dashboard or an alert rule names is one the running daemons export.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from harness import TestFailure, check, free_port, http, wait_until

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy")

E2E_RULES = """
receivers:
  - name: sink
    webhook: {url}
rules:
  - alert: OpsErrors
    type: error_rate
    service: ops
    name: "*"
    window: 5m
    above: 0.01
    for: 1s
    min_count: 100
    severity: critical
    receiver: sink
    annotations: {{summary: "ops error rate above 1 %"}}
"""

# Exit codes documented in docs/operations.md (tools/ctl/ctl_args.h).
EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_UNSUPPORTED = 0, 1, 2, 3, 4


def ctl(c, args, env_extra=None, timeout=30):
    """Runs tocsinctl; returns (exit code, stdout, stderr)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": c.dir, "USER": "e2e"}
    env.update(env_extra or {})
    p = subprocess.run([c.bin("tools/ctl/tocsinctl")] + args, env=env, capture_output=True,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def closed_port():
    """A port nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- ops_ctl ---------------------------------------------------------------------------------

def scenario_ops_ctl(c):
    c.start_bus(brokers=3, partitions=4)
    sink = c.start_sink()
    col1 = c.start_collector("collector-1")
    col2 = c.start_collector("collector-2")
    agg = c.start_aggregator(extra={"grace": "1s", "api.token": "ops-token"})
    alerter = c.start_alerter(E2E_RULES.format(url=sink.url),
                              extra={"eval.interval": "500ms", "api.token": "ops-token"})
    env = {"TOCSIN_COLLECTORS": f"127.0.0.1:{col1.http_port},127.0.0.1:{col2.http_port}",
           "TOCSIN_AGGREGATOR": f"127.0.0.1:{agg.http_port}",
           "TOCSIN_ALERTER": f"127.0.0.1:{alerter.http_port}"}
    tok = dict(env, TOCSIN_TOKEN="ops-token")

    count, error_every = 2000, 40
    rc, out = c.run("emit", [c.bin("tests/e2e/e2e_emit"),
                             f"{col1.endpoint},{col2.endpoint}", "ops", str(count),
                             str(error_every), "7"], timeout=60)
    check(rc == 0, f"e2e_emit failed ({rc}): {out}")
    truth = json.loads(out.strip().splitlines()[-1])

    qurl = f"http://127.0.0.1:{agg.http_port}/api/v1/query?service=ops&name=*&window=5m"

    def counted():
        status, body = http("GET", qurl)
        return body if status == 200 and body["count"] >= count else None
    wait_until("the aggregator to count every event", counted, 30)

    # status: every daemon up and ready, exit 0, the collectors' counters add up.
    rc, out, err = ctl(c, ["status", "--json"], env)
    check(rc == EXIT_OK, f"status exit {rc}: {out} {err}")
    doc = json.loads(out)
    check(doc["ok"] is True, f"status not ok: {doc}")
    kinds = [d["kind"] for d in doc["daemons"]]
    check(kinds == ["collector", "collector", "aggregator", "alerter"], f"kinds {kinds}")
    for d in doc["daemons"]:
        check(d["up"] and d["ready"] and d["status"] in ("healthy", "degraded"),
              f"{d['kind']} {d['endpoint']} not up/ready: {d}")
        check(d["version"], f"no version: {d}")
        check(d["figures"], f"no figures from /metrics: {d}")
    accepted = sum(d["figures"]["accepted"] for d in doc["daemons"] if d["kind"] == "collector")
    check(accepted == count, f"collectors accepted {accepted}, sent {count}")
    rc, out, err = ctl(c, ["status", "--width", "200"], env)
    check(rc == EXIT_OK, f"status (table) exit {rc}: {err}")
    for p in (col1, col2, agg, alerter):
        check(f"http://127.0.0.1:{p.http_port}" in out, f"status table lacks {p.name}:\n{out}")
    check(out.count(" yes ") == 4, f"status table: not 4 daemons up:\n{out}")
    print(out)

    # Consumer lag from Kafka: the aggregators' group has committed everything it applied.
    with open(c.bootstrap_file) as f:
        env["TOCSIN_BROKERS"] = f.readline().strip()

    def groups(stopped=False):
        # With the aggregator stopped its HTTP port does not answer: status says so (exit
        # 3, after a short time-out) and still reports the groups' lag from Kafka.
        rc, out, err = ctl(c, ["status", "--json", "--timeout", "1s" if stopped else "5s"], env)
        check(rc == (EXIT_UNREACHABLE if stopped else EXIT_OK),
              f"status with brokers: exit {rc}: {err}")
        return {(g["group"], g["topic"]): g for g in json.loads(out)["consumer_groups"]}
    g = wait_until("the aggregators' lag to reach 0",
                   lambda: (lambda g: g if g[("tocsin-aggregator", "tocsin.events")]["lag"] == 0
                            else None)(groups()), 20)
    ev = g[("tocsin-aggregator", "tocsin.events")]
    # end_offset counts Kafka records; a record packs the events of a batch that share a key,
    # so there are at least one and at most `count` of them.
    check(ev["committed_partitions"] >= 1 and ev["uncommitted"] == 0
          and 1 <= ev["end_offset"] <= count,
          f"aggregator group: {ev}")
    check(g[("tocsin-alerter", "tocsin.rollups")]["lag"] is None,
          f"the alerter keeps its offsets in LMDB, its lag is unknown, not made up: {g}")

    # query: the same figures as the aggregator's own answer.
    status, truth_q = http("GET", qurl)
    rc, out, err = ctl(c, ["query", "ops", "--json"], env)
    check(rc == EXIT_OK, f"query exit {rc}: {err}")
    q = json.loads(out)
    for k in ("count", "errors", "error_rate", "rate_per_s", "quantiles", "from", "to"):
        check(q[k] == truth_q[k], f"query {k}: tocsinctl {q[k]} vs aggregator {truth_q[k]}")
    check(q["count"] == count and q["errors"] == truth["errors"], f"query counts wrong: {q}")
    rc, out, err = ctl(c, ["query", "ops", "/a", "--window", "5m"], env)
    check(rc == EXIT_OK and "ops" in out and "/a" in out, f"query /a: {rc} {out} {err}")
    rc, out, err = ctl(c, ["query", "ops", "--window", "banana"], env)
    check(rc == 5 and "parameter window" in err, f"bad window: {rc} {err}")

    # top: the service with its exact count.
    rc, out, err = ctl(c, ["top", "--json"], env)
    check(rc == EXIT_OK, f"top exit {rc}: {err}")
    top = json.loads(out)
    row = [r for r in top["busiest"] if r["service"] == "ops"]
    check(row and row[0]["requests"] == count and row[0]["errors"] == truth["errors"],
          f"top: {top}")
    check(top["failing"][0]["service"] == "ops", f"top failing: {top}")

    # alerts: what the alerter lists; the rule fires on 2.5 % errors.
    def firing():
        rc, out, _ = ctl(c, ["alerts", "--json"], env)
        alerts = json.loads(out)["alerts"] if rc == EXIT_OK else []
        return [a for a in alerts if a.get("state") == "firing"]
    fired = wait_until("OpsErrors firing", firing, 30)
    check(fired[0]["alertname"] == "OpsErrors", f"alerts: {fired}")
    rc, out, err = ctl(c, ["alerts"], env)
    check(rc == EXIT_OK and "OpsErrors" in out and "firing" in out, f"alerts table: {out}")

    # The on-call's path: ack (the token is required), silence, the notification log.
    rc, _, err = ctl(c, ["ack", "OpsErrors"], env)
    check(rc == 7 and "TOCSIN_TOKEN" in err, f"ack without the token: {rc} {err}")
    rc, out, err = ctl(c, ["ack", "OpsErrors", "--comment", "looking", "--for", "30m"], tok)
    check(rc == EXIT_OK and "acknowledged" in out, f"ack: {rc} {out} {err}")
    rc, out, err = ctl(c, ["alerts", "--json", "--state", "acknowledged"], env)
    acked = json.loads(out)["alerts"] if rc == EXIT_OK else []
    check(len(acked) == 1 and acked[0]["acknowledged"]["comment"] == "looking",
          f"acknowledged alert: {rc} {acked} {err}")
    rc, out, err = ctl(c, ["ack", "NoSuchAlert"], tok)
    check(rc == 6, f"ack of an unknown alert: {rc} {err}")
    rc, out, err = ctl(c, ["silence", "add", "service=ops", "--for", "1h", "--comment", "e2e",
                           "--json"], tok)
    check(rc == EXIT_OK, f"silence add: {rc} {err}")
    sid = json.loads(out)["id"]
    rc, out, err = ctl(c, ["silence", "--json"], env)
    check(rc == EXIT_OK and [x["id"] for x in json.loads(out)["silences"]] == [sid],
          f"silence list: {rc} {out} {err}")
    rc, out, err = ctl(c, ["silence", "expire", sid], tok)
    check(rc == EXIT_OK and "expired" in out, f"silence expire: {rc} {err}")
    rc, out, err = ctl(c, ["notifications", "--json"], env)
    check(rc == EXIT_OK and json.loads(out)["notifications"], f"notifications: {rc} {err}")

    # rules check, offline and with the live state.
    rules = os.path.join(c.dir, "alerter-rules.yaml")
    rc, out, err = ctl(c, ["rules", "check", rules, "--live"], env)
    check(rc == EXIT_OK and "valid, 1 rule(s)" in out and "OpsErrors" in out,
          f"rules check: {rc} {out} {err}")
    bad = os.path.join(c.dir, "bad-rules.yaml")
    with open(bad, "w") as f:
        f.write(E2E_RULES.format(url=sink.url).replace("window: 5m", "window: often"))
    rc, out, err = ctl(c, ["rules", "check", bad], env)
    check(rc == EXIT_PROBLEM and re.search(re.escape(bad) + r":\d+", err),
          f"bad rules: {rc} {err}")

    # Issues and logs: an error and log lines sent with tocsin-emit come back through
    # tocsinctl; an issue's status is set with the token; logs --follow prints a line sent
    # while it runs.
    emit = [c.bin("clients/c/tocsin-emit"), "--collector", col1.endpoint, "--service", "ops",
            "--quiet"]
    rc, out = c.run("emit-error", emit + ["error", "PaymentTimeout", "gateway did not answer"],
                    timeout=30)
    check(rc == 0, f"tocsin-emit error: {rc}")
    rc, out = c.run("emit-log", emit + ["log", "warning", "slow gateway", "--logger", "pay",
                                        "--field", "ms=2300"], timeout=30)
    check(rc == 0, f"tocsin-emit log: {rc}")

    def issue():
        rc, out, err = ctl(c, ["issues", "--service", "ops", "--json"], env)
        check(rc == EXIT_OK, f"issues: {rc} {err}")
        return json.loads(out)["issues"]
    issues = wait_until("the issue", issue, 20)
    check(len(issues) == 1 and issues[0]["type"] == "PaymentTimeout" and issues[0]["count"] == 1,
          f"issues: {issues}")
    iid = issues[0]["id"]
    rc, out, err = ctl(c, ["issue", iid], env)
    check(rc == EXIT_OK and "PaymentTimeout" in out and iid in out, f"issue: {rc} {out} {err}")
    rc, out, err = ctl(c, ["issue", iid, "--status", "resolved"], env)
    check(rc == 7, f"issue status without the token: {rc} {err}")
    rc, out, err = ctl(c, ["issue", iid, "--status", "resolved", "--json"], tok)
    check(rc == EXIT_OK and json.loads(out)["status"] == "resolved", f"resolve issue: {rc} {err}")
    rc, out, err = ctl(c, ["issue", "0" * 32], env)
    check(rc == 6, f"unknown issue: {rc} {err}")

    def logs():
        rc, out, err = ctl(c, ["logs", "--service", "ops", "--since", "10m", "--json"], env)
        check(rc == EXIT_OK, f"logs: {rc} {err}")
        return json.loads(out)["logs"]
    recs = wait_until("the log record", logs, 20)
    check(recs[0]["message"] == "slow gateway" and recs[0]["fields"]["ms"] == "2300",
          f"logs: {recs}")
    follow = subprocess.Popen([c.bin("tools/ctl/tocsinctl"), "logs", "--service", "ops",
                               "--since", "10m", "--follow", "--interval", "200ms"],
                              env=dict(env, PATH="/usr/bin:/bin"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        first = follow.stdout.readline()
        check("slow gateway" in first and "ms=2300" in first, f"logs --follow: {first!r}")
        rc, _ = c.run("emit-log2", emit + ["log", "error", "gateway down"], timeout=30)
        check(rc == 0, "tocsin-emit log 2")
        second = follow.stdout.readline()
        check("gateway down" in second and "error" in second, f"followed line: {second!r}")
        follow.send_signal(signal.SIGINT)
        check(follow.wait(10) == EXIT_OK, "logs --follow did not stop cleanly on SIGINT")
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()

    # A range: the steps add up to the window's count.
    rc, out, err = ctl(c, ["query", "ops", "--since", "10m", "--step", "1m", "--json"], env)
    check(rc == EXIT_OK, f"range: {rc} {err}")
    check(sum(p["count"] for p in json.loads(out)["points"]) == count, f"range: {out[:400]}")

    # Asking a daemon that does not serve an endpoint (here a collector taken for an
    # aggregator): "does not serve" and exit 4, never a made-up answer.
    rc, out, err = ctl(c, ["issues", "--aggregator", f"127.0.0.1:{col1.http_port}"], env)
    check(rc == EXIT_UNSUPPORTED and "does not serve GET /api/v1/issues" in err and out == "",
          f"unsupported endpoint: {rc} {out!r} {err}")

    # An unreachable daemon: a clear message and exit 3, for a command and for status.
    dead = closed_port()
    rc, out, err = ctl(c, ["query", "ops", "--aggregator", f"127.0.0.1:{dead}"], env)
    check(rc == EXIT_UNREACHABLE and f"cannot reach the aggregator at http://127.0.0.1:{dead}"
          in err and out == "", f"unreachable query: {rc} {out!r} {err}")
    rc, out, err = ctl(c, ["status", "--json", "--aggregator",
                           f"127.0.0.1:{agg.http_port},127.0.0.1:{dead}"], env)
    check(rc == EXIT_UNREACHABLE, f"status with a dead aggregator: exit {rc}")
    d = [d for d in json.loads(out)["daemons"] if d["endpoint"].endswith(f":{dead}")][0]
    check(d["status"] == "unreachable" and not d["up"] and "cannot reach" in d["error"],
          f"dead aggregator record: {d}")
    # Fail-over: the second aggregator of a list answers when the first is dead.
    rc, out, err = ctl(c, ["query", "ops", "--json", "--aggregator",
                           f"127.0.0.1:{dead},127.0.0.1:{agg.http_port}"], env)
    check(rc == EXIT_OK and json.loads(out)["count"] == count, f"fail-over: {rc} {err}")
    rc, out, err = ctl(c, ["top", "--json", "--aggregator",
                           f"127.0.0.1:{dead},127.0.0.1:{agg.http_port}"], env)
    check(rc == EXIT_OK and json.loads(out)["busiest"][0]["requests"] > 0, f"top fail-over: {err}")

    # Usage errors exit 2.
    rc, _, err = ctl(c, ["query"], env)
    check(rc == EXIT_USAGE and "query takes" in err, f"usage: {rc} {err}")
    rc, _, err = ctl(c, ["status", "--collectors", "tcp://127.0.0.1:7420"], env)
    check(rc == EXIT_USAGE and "7421" in err, f"ZeroMQ address: {rc} {err}")

    # keygen: czmq certificate files, secret private.
    keys = os.path.join(c.dir, "keys")
    rc, out, err = ctl(c, ["keygen", "collector", "--dir", keys, "--json"], env)
    check(rc == EXIT_OK, f"keygen: {rc} {err}")
    k = json.loads(out)
    pub = open(k["public_file"]).read()
    sec = open(k["secret_file"]).read()
    check(len(k["public_key"]) == 40 and f'public-key = "{k["public_key"]}"' in pub
          and "secret-key" not in pub and "secret-key" in sec, f"certificates:\n{pub}\n{sec}")
    check(oct(os.stat(k["secret_file"]).st_mode & 0o777) == "0o600", "secret file mode")
    rc, _, err = ctl(c, ["keygen", "collector", "--dir", keys], env)
    check(rc == EXIT_PROBLEM and "--force" in err, f"keygen overwrite: {rc} {err}")
    # The collector takes these files as they are: its certificate, and a client's public
    # certificate in its clients directory (as docs/operations.md tells).
    rc, _, err = ctl(c, ["keygen", "svc", "--dir", os.path.join(keys, "private")], env)
    check(rc == EXIT_OK, f"keygen svc: {err}")
    os.makedirs(os.path.join(keys, "clients"))
    os.rename(os.path.join(keys, "private", "svc.key"), os.path.join(keys, "clients", "svc.key"))
    curve = c.start_collector("collector-curve", extra={
        "curve.enabled": "true", "curve.server_cert": k["secret_file"],
        "curve.clients_dir": os.path.join(keys, "clients")})
    status, text = http("GET", f"http://127.0.0.1:{curve.http_port}/metrics")
    check(status == 200 and re.search(r"^tocsin_collector_curve_clients 1$", text, re.M),
          "the collector did not load the client certificate made by keygen")
    curve.stop()

    # Lag grows while the aggregator is stopped, by exactly the records written meanwhile
    # (the 300 events packed into at least one and at most 300 records), and shrinks back to
    # 0 when it goes on.
    before = wait_until("the lag at 0 before stopping the aggregator",
                        lambda: (lambda e: e if e["lag"] == 0 else None)(
                            groups()[("tocsin-aggregator", "tocsin.events")]), 20)
    agg.p.send_signal(signal.SIGSTOP)
    try:
        rc, out = c.run("emit2", [c.bin("tests/e2e/e2e_emit"), col1.endpoint, "ops-lag", "300",
                                  "1000000", "8"], timeout=60)
        check(rc == 0, f"e2e_emit (lag) failed ({rc}): {out}")
        after = groups(stopped=True)[("tocsin-aggregator", "tocsin.events")]
        written = after["end_offset"] - before["end_offset"]
        # Records in a partition the group has no offset for yet count as uncommitted.
        behind = after["lag"] + after["uncommitted"] - before["uncommitted"]
        check(1 <= written <= 300 and after["lag"] >= 1 and behind == written,
              f"lag with the aggregator stopped: {after['lag']}, expected the {written} "
              f"record(s) written meanwhile (before: {before}, after: {after})")
    finally:
        agg.p.send_signal(signal.SIGCONT)
    wait_until("the lag back to 0",
               lambda: groups()[("tocsin-aggregator", "tocsin.events")]["lag"] == 0, 30)

    # A daemon that is up but not ready: the brokers go down, the aggregator's Kafka check
    # fails, status exits 1 and names the dependency.
    c.bus_brokers("down")

    no_kafka = {k: v for k, v in env.items() if k != "TOCSIN_BROKERS"}

    def not_ready():
        rc, out, _ = ctl(c, ["status", "--kind", "aggregator"], no_kafka)
        return (rc, out) if rc == EXIT_PROBLEM else None
    rc, out = wait_until("status to see the aggregator not ready", not_ready, 30)
    check("NOT READY" in out and "kafka: unhealthy" in out, f"not-ready table:\n{out}")
    print(out)
    # Asked for the lag, status cannot reach Kafka itself: exit 3, and it says so.
    rc, out, err = ctl(c, ["status", "--kind", "aggregator", "--timeout", "1s"], env)
    check(rc == EXIT_UNREACHABLE and "no Kafka broker answered" in err, f"kafka down: {rc} {err}")
    c.bus_brokers("up")
    wait_until("the aggregator ready again",
               lambda: ctl(c, ["status", "--kind", "aggregator"], no_kafka)[0] == EXIT_OK, 30)


# ---- ops_deploy ------------------------------------------------------------------------------

def run_tool(argv, what, cwd=None, timeout=60):
    if not shutil.which(argv[0]):
        raise TestFailure(f"{argv[0]} is not installed ({what}); run scripts/deps.sh")
    p = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def load_yaml_all(path):
    """Every document of a YAML file. PyYAML from the running Python, else Debian's."""
    try:
        import yaml  # noqa: PLC0415 (only this scenario needs it)
        with open(path) as f:
            return [d for d in yaml.safe_load_all(f) if d is not None]
    except ImportError:
        p = subprocess.run(["/usr/bin/python3", "-c",
                            "import sys, json, yaml; json.dump([d for d in yaml.safe_load_all("
                            "open(sys.argv[1])) if d is not None], sys.stdout)", path],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise TestFailure(f"cannot parse {path} (python3-yaml missing?): {p.stderr}")
        return json.loads(p.stdout)


def exported_metrics(procs):
    """Names of every sample the running daemons export (histograms: _bucket/_sum/_count)."""
    names = set()
    for p in procs:
        status, text = http("GET", f"http://127.0.0.1:{p.http_port}/metrics")
        check(status == 200, f"{p.name} /metrics: {status}")
        for line in text.splitlines():
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)", line)
            if m and not line.startswith("#"):
                names.add(m.group(1))
    return names


def metric_names_in(expr):
    """The tocsin_ metric names an expression uses."""
    return set(re.findall(r"\b(tocsin_[a-zA-Z0-9_:]*)", expr))


def help_config_keys(binary):
    out = subprocess.run([binary, "--help-config"], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    return [line.split()[0] for line in out[1:] if line.strip()]


def check_example_config(c, binary, path):
    rc, out = run_tool([binary, "--config", path, "--print-config"], "example config")
    check(rc == 0, f"{path} refused by {os.path.basename(binary)}: {out}")
    text = open(path).read()
    missing = []
    for key in help_config_keys(binary):
        if key.endswith("*"):
            pat = r"^#?\s*" + re.escape(key[:-1]) + r"[a-z0-9_.]+\s*="
        else:
            pat = r"^#?\s*" + re.escape(key) + r"\s*="
        if not re.search(pat, text, re.M):
            missing.append(key)
    check(not missing, f"{path} does not mention {missing} (every key of --help-config)")


def check_compose(c):
    compose = os.path.join(DEPLOY, "compose", "docker-compose.yml")
    rc, out = run_tool(["docker-compose", "-f", compose, "config", "-q"], "compose")
    check(rc == 0, f"docker-compose config: {out}")
    doc = load_yaml_all(compose)[0]
    svcs = doc["services"]
    for name in ("kafka-1", "kafka-2", "kafka-3", "collector-1", "collector-2", "aggregator-1",
                 "aggregator-2", "alerter", "prometheus", "alertmanager", "grafana"):
        check(name in svcs, f"compose lacks {name}")
    voters = set()
    for i in (1, 2, 3):
        envk = svcs[f"kafka-{i}"]["environment"]
        check("controller" in envk["KAFKA_PROCESS_ROLES"], f"kafka-{i} is not a KRaft controller")
        check(envk["KAFKA_NODE_ID"] == i, f"kafka-{i} node id")
        voters.add(envk["KAFKA_CONTROLLER_QUORUM_VOTERS"])
    check(len(voters) == 1 and voters.pop().count("@") == 3, "KRaft quorum is not the 3 brokers")
    for name, s in svcs.items():
        image = s.get("image", "")
        check(image and not image.endswith(":latest") and ":" in image,
              f"{name}: image {image!r} has no exact version")
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("."):
                check(os.path.exists(os.path.join(DEPLOY, "compose", src)),
                      f"{name} mounts missing {src}")
    # The daemons' commands name configs that exist in the image (deploy/config/).
    for name in ("collector-1", "aggregator-1", "alerter"):
        conf = svcs[name]["command"][2]
        check(os.path.exists(os.path.join(DEPLOY, "config", os.path.basename(conf))),
              f"{name}: {conf} not in deploy/config")
    # Prometheus scrapes every Tocsin daemon of the compose file.
    prom = load_yaml_all(os.path.join(DEPLOY, "prometheus", "prometheus.yml"))[0]
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]}
    for name, port in (("collector-1", 7421), ("collector-2", 7421), ("aggregator-1", 7430),
                       ("aggregator-2", 7430), ("alerter", 7440)):
        check(f"{name}:{port}" in targets, f"prometheus does not scrape {name}:{port}")
    # Prometheus' alerts leave through the compose file's own Alertmanager (what watches the
    # alerter must not page through it).
    ams = [t for a in prom["alerting"]["alertmanagers"] for sc in a["static_configs"]
           for t in sc["targets"]]
    check(ams == ["alertmanager:9093"], f"prometheus alertmanagers {ams}")
    # Self-monitoring: the client certificate every daemon's config names is made by
    # curve-keys, its public half allowed by the collectors, and mounted where it is read.
    keys = " ".join(svcs["curve-keys"]["command"])
    check("keygen tocsin-selfmon" in keys and "clients/tocsin-selfmon.key" in keys,
          "curve-keys does not make the tocsin-selfmon certificate")
    for name in ("collector-1", "collector-2", "aggregator-1", "aggregator-2", "alerter"):
        check("curve:/etc/tocsin/curve:ro" in svcs[name]["volumes"],
              f"{name} does not mount the curve volume (selfmon.curve_cert)")


def check_dockerfile(c):
    path = os.path.join(DEPLOY, "docker", "Dockerfile")
    lines, cont = [], ""
    for raw in open(path):
        line = raw.rstrip("\n")
        if line.strip().startswith("#") and not cont:
            continue
        cont += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            if cont.strip():
                lines.append(cont.strip())
            cont = ""
    known = {"FROM", "RUN", "COPY", "ENV", "USER", "WORKDIR", "EXPOSE", "CMD", "ENTRYPOINT",
             "ARG", "LABEL", "HEALTHCHECK", "VOLUME", "STOPSIGNAL", "SHELL", "ADD"}
    for line in lines:
        check(line.split()[0] in known, f"Dockerfile: unknown instruction in {line!r}")
    froms = [line.split()[1] for line in lines if line.startswith("FROM")]
    check(froms and all(re.fullmatch(r"debian:12(\.\d+)?(-slim)?", f) for f in froms),
          f"Dockerfile bases {froms}: Debian 12 with an exact tag")
    check(any("scripts/deps.sh" in line for line in lines if line.startswith("RUN")),
          "Dockerfile does not install through scripts/deps.sh")
    # Every binary copied from the build stage is a target this build makes.
    copied_all = [w for line in lines if line.startswith("COPY --from=build")
                  for w in line.split() if w.startswith("/src/build/")]
    copied = [w for w in copied_all if ".so" not in os.path.basename(w)]
    copied_libs = [w for w in copied_all if ".so" in os.path.basename(w)]
    check(len(copied) >= 5, f"Dockerfile copies {copied}")
    for w in copied_all:
        check(os.path.exists(os.path.join(c.build, w[len("/src/build/"):])),
              f"Dockerfile copies {w}, which this build does not make")
    # The runtime packages cover every shared library the binaries link (with their
    # dependencies), as Debian's own package database says.
    m = re.search(r"--no-install-recommends (.*?)&&", " ".join(lines[lines.index(
        [x for x in lines if x.startswith("FROM")][1]):]))
    runtime = set(m.group(1).split()) if m else set()
    check(runtime, "Dockerfile runtime stage installs no packages")
    rc, out = run_tool(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                        "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"]
                       + sorted(runtime), "apt-cache")
    closure = set(runtime) | {w.strip().strip("<>").split(":")[0] for w in
                              re.findall(r"Depends: (\S+)", out)}
    closure |= {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}  # in every Debian image
    libs = set()
    for w in copied:
        binary = os.path.join(c.build, w[len("/src/build/"):])
        ldd = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
        for lib in re.findall(r"=> (/\S+)", ldd):
            if "libasan" in lib or "libubsan" in lib:
                continue  # sanitizer builds
            if os.path.realpath(lib).startswith(c.build + os.sep):
                # Our own library (libtocsin): the image must copy it from the build stage.
                real = os.path.basename(os.path.realpath(lib))
                check(any(w.endswith("/" + real) for w in copied_libs),
                      f"{binary} links {lib}, which the Dockerfile does not copy")
                continue
            libs.add(lib)
    # One dpkg query for all of them (by the path ldd shows and by its real path, since
    # /lib is a link to /usr/lib on Debian 12 and dpkg knows one of the two).
    paths = sorted(libs | {os.path.realpath(lib) for lib in libs})
    out = subprocess.run(["dpkg", "-S"] + paths, capture_output=True, text=True).stdout
    owned = {}
    for line in out.splitlines():
        pkg, _, path = line.partition(": ")
        owned[path.strip()] = pkg.split(":")[0]
    needed = set()
    for lib in libs:
        pkg = owned.get(lib) or owned.get(os.path.realpath(lib))
        check(pkg, f"no Debian package owns {lib}, which the binaries link")
        needed.add(pkg)
    missing = sorted(needed - closure)
    check(not missing, f"the runtime image would lack {missing} (linked by the binaries)")


def check_systemd(c):
    tmp = tempfile.mkdtemp(dir=c.dir)
    units = sorted(f for f in os.listdir(os.path.join(DEPLOY, "systemd"))
                   if f.endswith(".service"))
    check(len(units) == 3, f"systemd units: {units}")
    for u in units:
        text = open(os.path.join(DEPLOY, "systemd", u)).read()
        daemon = u[:-len(".service")]
        for opt in ("ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes",
                    "ReadWritePaths=/var/lib/tocsin/", "User=tocsin"):
            check(opt in text, f"{u} lacks {opt}")
        # verify checks that ExecStart is executable: point it at this build's binary.
        part = {"tocsin-collector": "collector", "tocsin-aggregator": "aggregator",
                "tocsin-alerter": "alerter"}[daemon]
        text = text.replace(f"/usr/bin/{daemon}", c.bin(f"{part}/{daemon}"))
        path = os.path.join(tmp, u)
        with open(path, "w") as f:
            f.write(text)
        rc, out = run_tool(["systemd-analyze", "verify", path], "systemd units")
        check(rc == 0 and not out.strip(), f"systemd-analyze verify {u}:\n{out}")
        rc, out = run_tool(["systemd-analyze", "security", "--offline=true", "--threshold=20",
                            path], "systemd units")
        level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
        check(rc == 0 and level, f"systemd-analyze security {u}: exposure above 2.0:\n{out}")
        print(f"{u}: systemd-analyze verify clean, exposure {level.group(1)}")
    users = open(os.path.join(DEPLOY, "systemd", "tocsin.sysusers")).read()
    check(re.search(r"^u tocsin ", users, re.M), "tocsin.sysusers does not create tocsin")


def check_prometheus_and_grafana(c, exported):
    tmp = tempfile.mkdtemp(dir=c.dir)
    for f in ("prometheus.yml", "tocsin-alerts.yml"):
        shutil.copy(os.path.join(DEPLOY, "prometheus", f), tmp)
    rc, out = run_tool(["promtool", "check", "config", os.path.join(tmp, "prometheus.yml")],
                       "prometheus config")
    check(rc == 0, f"promtool check config:\n{out}")
    rc, out = run_tool(["promtool", "check", "rules", os.path.join(tmp, "tocsin-alerts.yml")],
                       "prometheus rules")
    check(rc == 0, f"promtool check rules:\n{out}")
    rc, out = run_tool(["amtool", "check-config",
                        os.path.join(DEPLOY, "prometheus", "alertmanager.yml")],
                       "alertmanager config (prometheus-alertmanager)")
    check(rc == 0, f"amtool check-config:\n{out}")
    used = {}
    rules = load_yaml_all(os.path.join(DEPLOY, "prometheus", "tocsin-alerts.yml"))[0]
    for g in rules["groups"]:
        for r in g["rules"]:
            check(os.path.exists(os.path.join(ROOT, r["annotations"]["runbook"])),
                  f"rule {r['alert']}: runbook {r['annotations']['runbook']} missing")
            for m in metric_names_in(r["expr"]):
                used.setdefault(m, f"alert rule {r['alert']}")
    prov = load_yaml_all(os.path.join(DEPLOY, "grafana", "provisioning", "datasources",
                                      "prometheus.yaml"))[0]
    ds_uids = {d["uid"] for d in prov["datasources"]}
    dash_dir = os.path.join(DEPLOY, "grafana", "dashboards")
    dashboards = sorted(f for f in os.listdir(dash_dir) if f.endswith(".json"))
    check(dashboards, "no Grafana dashboards")
    npanels = 0
    for f in dashboards:
        d = json.load(open(os.path.join(dash_dir, f)))
        check(d.get("uid") and d.get("title") and isinstance(d.get("panels"), list),
              f"{f}: not a dashboard")
        ids = [p["id"] for p in d["panels"]]
        check(len(ids) == len(set(ids)), f"{f}: panel ids repeat")
        for p in d["panels"]:
            if p["type"] == "row":
                continue
            npanels += 1
            check(p["datasource"]["uid"] in ds_uids, f"{f} {p['title']}: unknown datasource")
            check(p.get("targets"), f"{f} {p['title']}: no query")
            for t in p["targets"]:
                for m in metric_names_in(t["expr"]):
                    used.setdefault(m, f"dashboard {f} panel {p['title']!r}")
    unknown = {m: where for m, where in used.items() if m not in exported}
    check(not unknown, f"metrics no daemon exports: {unknown}")
    nrules = sum(len(g["rules"]) for g in rules["groups"])
    check(any(r["alert"] == "TocsinAlerterDown" for g in rules["groups"] for r in g["rules"]),
          "no Prometheus rule watches the alerter")
    print(f"{len(used)} metric names in {npanels} panels and {nrules} alert rules, all "
          f"exported by the daemons")


def check_kubernetes(c):
    kdir = os.path.join(DEPLOY, "kubernetes")
    docs = []
    for f in sorted(os.listdir(kdir)):
        if f.endswith(".yaml") and f != "kustomization.yaml":
            docs += [(f, d) for d in load_yaml_all(os.path.join(kdir, f))]
    kust = load_yaml_all(os.path.join(kdir, "kustomization.yaml"))[0]
    for r in kust["resources"]:
        check(os.path.exists(os.path.join(kdir, r)), f"kustomization names missing {r}")
    by_kind = {}
    for f, d in docs:
        for k in ("apiVersion", "kind", "metadata"):
            check(k in d, f"{f}: a document without {k}")
        check(d["metadata"].get("name"), f"{f}: a {d['kind']} without a name")
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    check(by_kind.get("Deployment", {}).get("tocsin-collector"), "collectors: no Deployment")
    for name in ("tocsin-aggregator", "tocsin-alerter"):
        ss = by_kind.get("StatefulSet", {}).get(name)
        check(ss and ss["spec"].get("volumeClaimTemplates"), f"{name}: no StatefulSet with "
              "a volume")
    cm = by_kind["ConfigMap"]["tocsin-config"]["data"]
    workloads = list(by_kind["Deployment"].values()) + list(by_kind["StatefulSet"].values())
    for w in workloads:
        name = w["metadata"]["name"]
        sel = w["spec"]["selector"]["matchLabels"]
        tmpl = w["spec"]["template"]
        check(sel.items() <= tmpl["metadata"]["labels"].items(), f"{name}: selector does not "
              "match the pod labels")
        vols = {v["name"]: v for v in tmpl["spec"].get("volumes", [])}
        claims = {v["metadata"]["name"] for v in w["spec"].get("volumeClaimTemplates", [])}
        for ctr in tmpl["spec"]["containers"]:
            ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
            for probe, path in (("livenessProbe", "/health/live"),
                                ("readinessProbe", "/health/ready")):
                g = ctr[probe]["httpGet"]
                check(g["path"] == path and g["port"] in ports, f"{name}: {probe} is not "
                      f"{path} on a declared port")
            for vm in ctr["volumeMounts"]:
                check(vm["name"] in vols or vm["name"] in claims, f"{name}: mount of unknown "
                      f"volume {vm['name']}")
                if vm["name"] in vols and "configMap" in vols[vm["name"]] and "subPath" in vm:
                    check(vm["subPath"] in cm, f"{name}: ConfigMap has no {vm['subPath']}")
            check(ctr["securityContext"].get("allowPrivilegeEscalation") is False,
                  f"{name}: privilege escalation allowed")
            args = ctr["args"]
            conf = os.path.basename(args[args.index("--config") + 1])
            check(conf in cm, f"{name}: --config {conf} not in the ConfigMap")
        check(tmpl["spec"]["securityContext"].get("runAsNonRoot") is True, f"{name}: root")
    for s in by_kind["Service"].values():
        sel = s["spec"]["selector"]
        check(any(sel.items() <= w["spec"]["template"]["metadata"]["labels"].items()
                  for w in workloads), f"Service {s['metadata']['name']} selects no workload")
    # The configs in the ConfigMap are valid for the daemons, the rules for the alerter.
    tmp = tempfile.mkdtemp(dir=c.dir)
    for key, part in (("collector.conf", "collector"), ("aggregator.conf", "aggregator"),
                      ("alerter.conf", "alerter")):
        path = os.path.join(tmp, key)
        with open(path, "w") as f:
            f.write(cm[key])
        rc, out = run_tool([c.bin(f"{part}/tocsin-{part}"), "--config", path, "--print-config"],
                           "ConfigMap config")
        check(rc == 0, f"ConfigMap {key}: {out}")
    path = os.path.join(tmp, "rules.yaml")
    with open(path, "w") as f:
        f.write(cm["rules.yaml"])
    rc, out, err = ctl(c, ["rules", "check", path])
    check(rc == 0, f"ConfigMap rules.yaml: {err}")


def scenario_ops_deploy(c):
    # The daemons, to learn the metric names they really export.
    c.start_bus(brokers=1, partitions=1)
    col = c.start_collector()
    agg = c.start_aggregator()
    alerter = c.start_alerter(E2E_RULES.format(url="http://127.0.0.1:9/hook"))
    exported = exported_metrics([col, agg, alerter])
    exported.add("up")

    rc, out = run_tool(["yamllint", "-s", "-c", os.path.join(DEPLOY, ".yamllint"),
                        os.path.join(DEPLOY, "compose"), os.path.join(DEPLOY, "prometheus"),
                        os.path.join(DEPLOY, "grafana"), os.path.join(DEPLOY, "kubernetes"),
                        os.path.join(DEPLOY, "config", "rules.yaml")], "YAML")
    check(rc == 0, f"yamllint:\n{out}")
    check_compose(c)
    check_dockerfile(c)
    check_systemd(c)
    check_prometheus_and_grafana(c, exported)
    check_kubernetes(c)
    for part in ("collector", "aggregator", "alerter"):
        check_example_config(c, c.bin(f"{part}/tocsin-{part}"),
                             os.path.join(DEPLOY, "config", f"{part}.conf"))
    # Every default rule names its runbook, and the runbook exists.
    for r in load_yaml_all(os.path.join(DEPLOY, "config", "rules.yaml"))[0]["rules"]:
        rb = r.get("annotations", {}).get("runbook")
        check(rb and os.path.exists(os.path.join(ROOT, rb)), f"rule {r['alert']}: runbook {rb}")
    rc, out, err = ctl(c, ["--config", os.path.join(DEPLOY, "config", "tocsinctl.conf"),
                           "rules", "check", os.path.join(DEPLOY, "config", "rules.yaml")])
    check(rc == 0, f"deploy/config/tocsinctl.conf or rules.yaml: {err}")
    print(out)
    # The pipeline's own rules ship in every rule file: a dead-man's switch per stage, spool
    # depth, consumer lag (the same in deploy/config, the ConfigMap and local mode).
    cm = [d for d in load_yaml_all(os.path.join(DEPLOY, "kubernetes", "configmap.yaml"))
          if d["kind"] == "ConfigMap"][0]["data"]["rules.yaml"]
    import yaml  # noqa: PLC0415 (load_yaml_all made sure it is there)
    for where, doc in (("deploy/config/rules.yaml",
                        load_yaml_all(os.path.join(DEPLOY, "config", "rules.yaml"))[0]),
                       ("the ConfigMap", yaml.safe_load(cm)),
                       ("deploy/local/rules.yaml",
                        load_yaml_all(os.path.join(DEPLOY, "local", "rules.yaml"))[0])):
        got = {(r["alert"], r["type"], r["service"], r.get("name", "heartbeat"), r["severity"])
               for r in doc["rules"] if r["alert"].startswith("Pipeline")}
        want = {("PipelineStageSilent", "absence", f"tocsin-{s}", "heartbeat", "critical")
                for s in ("collector", "aggregator", "alerter")}
        want |= {("PipelineSpoolDepth", "metric", "tocsin-collector", "spool.fill", "warning"),
                 ("PipelineConsumerLag", "metric", "tocsin-aggregator", "consumer.lag",
                  "warning"),
                 ("PipelineConsumerLag", "metric", "tocsin-alerter", "consumer.lag", "warning")}
        check(got == want, f"{where}: pipeline rules {sorted(got)}")
        for r in doc["rules"]:
            if r["alert"].startswith("Pipeline"):
                rb = r["annotations"]["runbook"]
                check(os.path.exists(os.path.join(ROOT, rb)), f"{where} {r['alert']}: {rb}")
    rc, out, err = ctl(c, ["rules", "check", os.path.join(DEPLOY, "local", "rules.yaml")])
    check(rc == 0, f"deploy/local/rules.yaml: {err}")


SCENARIOS = {"ops_ctl": scenario_ops_ctl, "ops_deploy": scenario_ops_deploy}
