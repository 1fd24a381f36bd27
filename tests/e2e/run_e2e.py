#!/usr/bin/env python3
"""Runs the end-to-end suite: brings the lab up (scripts/lab up) with a gateway and a worker
count, runs every check of test_gateway.py, prints a summary, and tears the lab down (scripts/lab
down) whatever happens: a failing check, an exception, SIGINT/SIGTERM/SIGHUP (meson's timeout),
or the interpreter exiting (atexit).

    tests/e2e/run_e2e.py [--gateway ephemera|linux] [--workers N] [--build DIR] [-k PATTERN]
                         [--keep] [--no-huge]

As root (meson test --suite e2e, via scripts/test, is how CI runs it). Exit status: 0 all
passed, 1 something failed, 77 (meson's "skipped") when not root.
"""

from __future__ import annotations

import argparse
import atexit
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LAB = REPO / "scripts" / "lab"
sys.path.insert(0, str(HERE))

_teardown_done = False
_keep = False


def log(msg: str) -> None:
    print(f"e2e: {msg}", flush=True)


def teardown() -> None:
    """scripts/lab down, once. Started in its own session: meson kills the runner's process
    group (SIGTERM, then SIGKILL 0.5 s later) on a timeout; the tear-down carries on."""
    global _teardown_done
    if _teardown_done or _keep:
        return
    _teardown_done = True
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # let the tear-down finish
    log("tearing the lab down")
    try:
        p = subprocess.Popen([str(LAB), "down"], start_new_session=True, stdin=subprocess.DEVNULL)
        p.wait(timeout=60)
    except Exception as e:  # report, never raise from a tear-down
        log(f"scripts/lab down: {e}")


def on_signal(signum, frame):
    log(f"{signal.Signals(signum).name}: stopping")
    # Tear down now: meson follows its SIGTERM with a SIGKILL 0.5 s later; the detached
    # `scripts/lab down` finishes even then. Then KeyboardInterrupt, which unittest
    # re-raises (any other exception would count as one test's error and the run go on).
    teardown()
    raise KeyboardInterrupt(f"signal {signum}")


class TimedResult(unittest.TextTestResult):
    """Also records each test's outcome and duration for the summary."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rows: list[tuple[str, str, float]] = []
        self._t0 = 0.0

    def startTest(self, test):
        self._t0 = time.monotonic()
        super().startTest(test)

    def _row(self, test, outcome):
        name = f"{type(test).__name__}.{test._testMethodName}"
        self.rows.append((name, outcome, time.monotonic() - self._t0))

    def addSuccess(self, test):
        super().addSuccess(test)
        self._row(test, "ok")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._row(test, "FAIL")

    def addError(self, test, err):
        super().addError(test, err)
        self._row(test, "ERROR")

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._row(test, "skipped")


def main() -> int:
    global _keep
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gateway", choices=["ephemera", "linux"], default="ephemera")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--build", default=str(REPO / "build"), help="meson build dir (DIR/control/ephemera)")
    ap.add_argument("-k", dest="pattern", help="run only the tests whose name contains PATTERN")
    ap.add_argument("--keep", action="store_true", help="leave the lab up afterwards (debugging)")
    ap.add_argument("--no-huge", action="store_true", help="DPDK without hugepages (scripts/lab up --no-huge)")
    args = ap.parse_args()
    _keep = args.keep
    what = f"gateway={args.gateway} workers={args.workers}"

    if os.geteuid() != 0:
        log("skipped: needs root (network namespaces)")
        return 77
    tools = ["ip", "ethtool", "ping", "curl", "iperf3", "traceroute", "ss"]
    if args.gateway == "linux":
        tools.append("nft")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        log(f"missing tools {missing}: run scripts/install-deps")
        return 1
    if args.gateway == "ephemera" and not (Path(args.build) / "control" / "ephemera").exists():
        log(f"no gateway binary at {args.build}/control/ephemera (build it: ninja -C {args.build})")
        return 1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192:  # 1000 client + 1000 server sockets in this process
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))

    atexit.register(teardown)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    t0 = time.monotonic()
    result = None
    lab_ok = False
    interrupted = False
    try:
        cmd = [str(LAB), "up", "--no-build", "--no-demo", "--workers", str(args.workers),
               "--build", args.build] + (["--linux"] if args.gateway == "linux" else []) \
            + (["--no-huge"] if args.no_huge else [])
        log(f"bringing the lab up: {' '.join(cmd)}")
        up = subprocess.run(cmd, stdin=subprocess.DEVNULL, timeout=180)
        lab_ok = up.returncode == 0
        if not lab_ok:
            log(f"scripts/lab up failed (exit {up.returncode})")
        else:
            import labnet
            import test_gateway
            log(f"lab: {labnet.lab().describe()}")
            suite = test_gateway.ordered_suite(args.pattern)
            runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2, descriptions=False,
                                             resultclass=TimedResult)
            result = runner.run(suite)
            if args.gateway == "ephemera" and not result.wasSuccessful():
                log("gateway log (last lines):")
                print(labnet.gateway_log_tail(60), flush=True)
    except KeyboardInterrupt as e:
        log(f"interrupted ({e})")
        interrupted = True
    finally:
        teardown()

    elapsed = time.monotonic() - t0
    print(f"\n===== e2e summary ({what}) =====")
    if interrupted:
        print(f"INTERRUPTED after {elapsed:.1f} s (the lab was torn down)")
        return 1
    if result is None:
        print("lab up failed: no test ran")
        print(f"FAILED in {elapsed:.1f} s")
        return 1
    import test_gateway
    for name, outcome, seconds in result.rows:
        print(f"  {outcome:8s} {seconds:6.1f} s  {name}")
    for line in test_gateway.NOTES:
        print(f"  note: {line}")
    passed = sum(1 for _, o, _ in result.rows if o == "ok")
    skipped = len(result.skipped)
    failed = len(result.failures) + len(result.errors)
    verdict = "PASSED" if result.wasSuccessful() and result.testsRun > 0 else "FAILED"
    print(f"{verdict}: {result.testsRun} tests, {passed} passed, {failed} failed, "
          f"{skipped} skipped, in {elapsed:.1f} s")
    return 0 if verdict == "PASSED" else 1


if __name__ == "__main__":
    sys.exit(main())
