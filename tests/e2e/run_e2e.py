#!/usr/bin/env python3
"""End-to-end tests: the real daemons as processes on 127.0.0.1.

usage: run_e2e.py SCENARIO --build-dir DIR [--keep]

Scenarios live in scenarios_*.py next to this file, each module exporting
SCENARIOS = {"name": function(cluster)}; a scenario raises TestFailure to fail.
"""

import argparse
import glob
import importlib
import os
import sys

from harness import Cluster, TestFailure


def load_scenarios():
    here = os.path.dirname(os.path.abspath(__file__))
    found = {}
    for path in sorted(glob.glob(os.path.join(here, "scenarios_*.py"))):
        mod = importlib.import_module(os.path.basename(path)[:-3])
        for name, fn in mod.SCENARIOS.items():
            if name in found:
                raise SystemExit(f"scenario {name} defined twice")
            found[name] = fn
    return found


def main():
    scenarios = load_scenarios()
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=sorted(scenarios))
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--keep", action="store_true", help="keep logs and data")
    args = ap.parse_args()
    c = Cluster(args.build_dir, keep=args.keep)
    failed = True
    try:
        scenarios[args.scenario](c)
        failed = False
    except TestFailure as e:
        print(f"FAIL: {e}")
    finally:
        codes = c.close(failed=failed)
    bad = {k: v for k, v in codes.items() if v != 0}
    if not failed and bad:
        print(f"FAIL: processes did not exit cleanly on SIGTERM: {bad}")
        failed = True
    if not failed:
        print(f"PASS: {args.scenario}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
