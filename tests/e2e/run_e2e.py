#!/usr/bin/env python3
"""Runs the end-to-end suite: brings the lab up (scripts/lab up) with a gateway and a worker
count, runs every check of test_gateway.py, prints a summary, and tears the lab down (scripts/lab
down) whatever happens: a failing check, an exception, SIGINT/SIGTERM/SIGHUP (meson's timeout),
or the interpreter exiting (atexit).

    tests/e2e/run_e2e.py [--suite gateway|control|blocks|deterministic] [--gateway ephemera|linux] [--workers N]
                         [--build DIR] [-k PATTERN] [--keep] [--no-huge]

--suite control runs test_control.py instead (ephemera, one worker): the lab comes up with
its own configuration, scripts/lab-config.toml.in rendered like scripts/lab renders it and
then given short timeouts (udp/icmp/tcp_transitory 2 s, tcp_established 4 s, quarantine
3 s), 8 ports (50000-50007) without shuffling, a mapping log, an IPFIX collector address
and a metrics endpoint (CONTROL_CONFIG below), passed as scripts/lab up --config FILE.

--suite blocks runs test_blocks.py the same way (ephemera, one worker) with BLOCKS_CONFIG:
port-block mode (32 ports 50000-50031 without shuffling, blocks of 4, at most 2 blocks and 9
ports per subscriber), short timeouts, a mapping log and an IPFIX collector address.

--suite deterministic runs test_deterministic.py with DETERMINISTIC_CONFIG (ephemera, two
workers): nat.deterministic = "100.64.0.0/24" (RFC 7422) with 8 overflow ranges, a mapping log, and an inside MTU
of 9000 (jumbo frames; the test module raises in0's MTU to match).

As root (meson test --suite e2e, via scripts/test, is how CI runs it). Exit status: 0 all
passed, 1 something failed, 77 (meson's "skipped") when not root.
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import resource
import shutil
import signal
import fcntl
import subprocess
import sys
import tempfile
import time
import tomllib
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LAB = REPO / "scripts" / "lab"
sys.path.insert(0, str(HERE))

_teardown_done = False
_keep = False
_lab_lock = None

# --suite control: what the control-plane tests need on top of the lab's template.
CONTROL_CONFIG = {
    "nat": {"ports": "50000-50007", "randomize_ports": False,
            "static": ["udp 100.64.0.2:7000 198.51.100.2:7000"],  # a port forward from the start
            "exclude": ["203.0.113.48/29"]},  # not translated (test_control.Exclusions)
    "timeouts": {"udp": 2, "icmp": 2, "tcp_transitory": 2, "tcp_established": 4, "quarantine": 3},
    "log": {"file": "/run/ephemera-lab/mappings.log", "ipfix_collector": "127.0.0.1:4739"},
    "metrics": {"listen": "127.0.0.1:9469"},
    "outside": {"mtu": 1400},  # below the veths' 1500: fragmentation and ICMP 3/4 (test_control.PathMtu)
    "dataplane": {"mss_clamp": True},  # SYNs announce at most 1360 (test_control.MssClamp)
}
# --suite blocks: port-block mode and the per-subscriber limits (test_blocks.py's docstring
# says why these numbers: both limits, and every block behaviour, in one lab run).
BLOCKS_CONFIG = {
    "nat": {"ports": "50000-50031", "randomize_ports": False, "port_block_size": 4,
            "max_blocks_per_subscriber": 2, "max_ports_per_subscriber": 9, "icmp_on_limit": True},
    "timeouts": {"udp": 2, "icmp": 2, "tcp_transitory": 2, "tcp_established": 30, "quarantine": 3},
    "log": {"file": "/run/ephemera-lab/mappings.log", "ipfix_collector": "127.0.0.1:4739"},
}
# --suite deterministic: RFC 7422 mode for the lab's inside /24, two workers (test_deterministic.py).
DETERMINISTIC_CONFIG = {
    "nat": {"deterministic": "100.64.0.0/24", "deterministic_overflow": 8},
    "log": {"file": "/run/ephemera-lab/mappings.log"},
    "inside": {"mtu": 9000},  # and jumbo frames on the inside (test_deterministic.JumboInside)
}
SUITE_CONFIGS = {"control": CONTROL_CONFIG, "blocks": BLOCKS_CONFIG, "deterministic": DETERMINISTIC_CONFIG}
SUITE_WORKERS = {"deterministic": 2}  # the others: one worker, whose partition is the whole range
# --suite gateway with ephemera: the lab's template plus an excluded destination
# (test_gateway.ExcludedDestination: RFC 6888 REQ-6 with 1 and with 4 workers), port
# preservation (test_gateway.PortPreservation) and the PCP server (test_gateway.PcpServer).
GATEWAY_CONFIG = {"nat": {"exclude": ["203.0.113.48/29"], "port_preservation": True},
                  "pcp": {"enabled": True}}  # test_gateway.PcpServer
DPDK_PREFIX = "ephemera-lab"
LAB_LOCK = "/tmp/ephemera-lab.lock"


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


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _lcores(workers: int) -> str:
    """scripts/lab's lcores_for: the main lcore first, then the workers round-robin over the
    CPUs this process may use."""
    cpus = sorted(os.sched_getaffinity(0)) or [0]
    return ",".join([f"0@{cpus[0]}"] + [f"{k}@{cpus[k % len(cpus)]}" for k in range(1, workers + 1)])


def _free_hugepages() -> int:
    try:
        m = re.search(r"^HugePages_Free:\s+(\d+)", Path("/proc/meminfo").read_text(), re.M)
        return int(m.group(1)) if m else 0
    except OSError:
        return 0


def render_control_config(workers: int, no_huge: bool, config: dict | None = None) -> str:
    """scripts/lab-config.toml.in rendered as scripts/lab renders it (EAL arguments, lcores,
    workers), then every key of config (CONTROL_CONFIG unless given) set in its section
    (replaced where the template has it, added otherwise). Checked by parsing it back."""
    config = CONTROL_CONFIG if config is None else config
    if no_huge:
        eal = ["--no-huge", "-m", "512"]
    else:
        eal = ["--in-memory"]
    eal += [f"--file-prefix={DPDK_PREFIX}", "--no-pci", "--log-level=*:notice"]
    text = (REPO / "scripts" / "lab-config.toml.in").read_text()
    text = text.replace("@EAL_ARGS@", ", ".join(_toml_value(a) for a in eal))
    text = text.replace("@LCORES@", _lcores(workers)).replace("@WORKERS@", str(workers))
    out: list[str] = []
    pending = {sec: dict(keys) for sec, keys in config.items()}
    section = None

    def close_section():
        if section in pending:
            # add what the template's section lacks, before its trailing blank lines
            tail = []
            while out and not out[-1].strip():
                tail.append(out.pop())
            out.extend(f"{k} = {_toml_value(v)}" for k, v in pending.pop(section).items())
            out.extend(tail)

    for line in text.splitlines():
        m = re.match(r"^\s*\[([A-Za-z0-9_.-]+)\]\s*(#.*)?$", line)
        if m:
            close_section()
            section = m.group(1)
            out.append(line)
            continue
        k = re.match(r"^\s*([A-Za-z0-9_-]+)\s*=", line)
        if k and section in pending and k.group(1) in pending[section]:
            out.append(f"{k.group(1)} = {_toml_value(pending[section].pop(k.group(1)))}")
            continue
        out.append(line)
    close_section()
    for sec, keys in pending.items():
        out += ["", f"[{sec}]"] + [f"{k} = {_toml_value(v)}" for k, v in keys.items()]
    rendered = "\n".join(out) + "\n"
    parsed = tomllib.loads(rendered)
    for sec, keys in config.items():
        for k, v in keys.items():
            if parsed.get(sec, {}).get(k) != v:
                raise RuntimeError(f"rendering the control configuration: [{sec}] {k} is "
                                   f"{parsed.get(sec, {}).get(k)!r}, not {v!r}")
    return rendered


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
    ap.add_argument("--suite", choices=["gateway", "control", "blocks", "deterministic"], default="gateway",
                    help="test_gateway.py (default), test_control.py, test_blocks.py or "
                         "test_deterministic.py (each of the last three with its own lab configuration)")
    ap.add_argument("--gateway", choices=["ephemera", "linux"], default="ephemera")
    ap.add_argument("--workers", type=int, default=None, help="gateway suite: 1 (default) or more")
    ap.add_argument("--build", default=str(REPO / "build"), help="meson build dir (DIR/control/ephemera)")
    ap.add_argument("-k", dest="pattern", help="run only the tests whose name contains PATTERN")
    ap.add_argument("--keep", action="store_true", help="leave the lab up afterwards (debugging)")
    ap.add_argument("--no-huge", action="store_true", help="DPDK without hugepages (scripts/lab up --no-huge)")
    args = ap.parse_args()
    _keep = args.keep
    want_workers = SUITE_WORKERS.get(args.suite, 1)
    if args.workers is None:
        args.workers = want_workers
    what = f"gateway={args.gateway} workers={args.workers}"
    # control and blocks: ephemera with a configuration of their own (SUITE_CONFIGS)
    control = args.suite in SUITE_CONFIGS
    suite_config = SUITE_CONFIGS.get(args.suite)
    if control:
        what = {"control": "control plane", "blocks": "port blocks and subscriber limits",
                "deterministic": "deterministic mapping (RFC 7422)"}[args.suite]
        what = f"{what}, gateway=ephemera workers={args.workers}"
        if args.gateway != "ephemera" or args.workers != want_workers:
            log(f"--suite {args.suite} runs ephemera with {want_workers} worker(s) (what its checks are written for)")
            return 2

    if os.geteuid() != 0:
        log("skipped: needs root (network namespaces)")
        return 77
    tools = ["ip", "ethtool", "ping", "ss"] if control else ["ip", "ethtool", "ping", "curl", "iperf3", "traceroute", "ss"]
    if args.gateway == "linux":
        tools.append("nft")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        log(f"missing tools {missing}: run scripts/install-deps")
        return 1
    if args.gateway == "ephemera" and not (Path(args.build) / "control" / "ephemera").exists():
        log(f"no gateway binary at {args.build}/control/ephemera (build it: ninja -C {args.build})")
        return 1
    if control and not (Path(args.build) / "control" / "ephemeractl").exists():
        log(f"no ephemeractl at {args.build}/control/ephemeractl (build it: ninja -C {args.build})")
        return 1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192:  # 1000 client + 1000 server sockets in this process
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))

    # The lab's names are fixed, so one lab at a time: the e2e suites, bench/compare-linux and
    # a person's scripts/lab all take this lock (meson may start them side by side).
    global _lab_lock  # held until the process exits, after the atexit tear-down
    _lab_lock = lock = open(LAB_LOCK, "a")
    deadline = time.monotonic() + 600
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                log(f"the lab is busy ({LAB_LOCK} held for 10 minutes): giving up")
                return 1
            time.sleep(0.5)
    os.environ["EPHEMERA_LAB_LOCKED"] = "1"  # scripts/lab: we hold its lock

    atexit.register(teardown)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    t0 = time.monotonic()
    result = None
    lab_ok = False
    interrupted = False
    config_file = None
    suite_module = None
    try:
        no_huge = args.no_huge
        extra = []
        if control:
            # scripts/lab reserves hugepages and leaves the EAL arguments of a --config FILE
            # alone: ask for --in-memory only when enough of them are free already.
            no_huge = no_huge or _free_hugepages() < 256
            fd, config_file = tempfile.mkstemp(prefix=f"ephemera-e2e-{args.suite}-", suffix=".toml")
            with os.fdopen(fd, "w") as f:
                f.write(render_control_config(args.workers, no_huge, suite_config))
            extra = ["--config", config_file]
            # The IPFIX collector must listen before the gateway sends its first message (the
            # one with the template): it is opened in eph-gw as soon as scripts/lab makes the
            # namespace. A lab already up is taken down first (up would anyway: other config).
            if Path("/run/netns/eph-gw").exists():
                subprocess.run([str(LAB), "down"], stdin=subprocess.DEVNULL, timeout=60)
            collector_thread = None
            if args.suite == "blocks":
                import test_blocks as collector_module
            elif args.suite == "control":
                import test_control as collector_module
            else:
                collector_module = None  # no IPFIX collector: nothing to open before the gateway
            if collector_module:
                collector_thread = collector_module.start_collector_before_gateway()
            log(f"{args.suite} configuration ({config_file}): " +
                "; ".join(f"[{s}] " + ", ".join(f"{k}={v}" for k, v in keys.items())
                          for s, keys in suite_config.items()))
        elif args.gateway == "ephemera":
            no_huge = no_huge or _free_hugepages() < 256
            fd, config_file = tempfile.mkstemp(prefix="ephemera-e2e-gateway-", suffix=".toml")
            with os.fdopen(fd, "w") as f:
                f.write(render_control_config(args.workers, no_huge, GATEWAY_CONFIG))
            extra = ["--config", config_file]
            log(f"gateway configuration ({config_file}): the lab's template with {GATEWAY_CONFIG}")
        cmd = [str(LAB), "up", "--no-build", "--no-demo", "--workers", str(args.workers),
               "--build", args.build] + (["--linux"] if args.gateway == "linux" else []) \
            + (["--no-huge"] if no_huge else []) + extra
        log(f"bringing the lab up: {' '.join(cmd)}")
        up = subprocess.run(cmd, stdin=subprocess.DEVNULL, timeout=180)
        lab_ok = up.returncode == 0
        if control and collector_thread:
            collector_thread.join(5)
        if not lab_ok:
            log(f"scripts/lab up failed (exit {up.returncode})")
        else:
            import labnet
            if args.suite == "blocks":
                import test_blocks as suite_module
            elif args.suite == "deterministic":
                import test_deterministic as suite_module
            elif control:
                import test_control as suite_module
            else:
                import test_gateway as suite_module
            log(f"lab: {labnet.lab().describe()}")
            suite = suite_module.ordered_suite(args.pattern)
            runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2, descriptions=False,
                                             resultclass=TimedResult)
            result = runner.run(suite)
            if args.gateway == "ephemera" and not result.wasSuccessful():
                log("gateway log (last lines):")
                print(labnet.gateway_log_tail(60), flush=True)
                mapping_log = Path(suite_config["log"]["file"]) if control else None
                if control and mapping_log.exists():
                    log(f"mapping log {mapping_log} (last lines):")
                    print("\n".join(mapping_log.read_text(errors="replace").splitlines()[-40:]), flush=True)
    except KeyboardInterrupt as e:
        log(f"interrupted ({e})")
        interrupted = True
    finally:
        teardown()
        if config_file:
            try:
                os.unlink(config_file)
            except OSError:
                pass

    elapsed = time.monotonic() - t0
    print(f"\n===== e2e summary ({what}) =====")
    if interrupted:
        print(f"INTERRUPTED after {elapsed:.1f} s (the lab was torn down)")
        return 1
    if result is None:
        print("lab up failed: no test ran")
        print(f"FAILED in {elapsed:.1f} s")
        return 1
    for name, outcome, seconds in result.rows:
        print(f"  {outcome:8s} {seconds:6.1f} s  {name}")
    for line in suite_module.NOTES:
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
