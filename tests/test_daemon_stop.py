#!/usr/bin/env python3
"""The daemon stops cleanly while control commands keep arriving.

DPDK's telemetry threads go on calling the /ephemera/... commands while the
daemon shuts down (a command cannot be unregistered), and a worker may be in
the middle of a table scan for `sessions` when it is told to stop. Runs
`ephemera` built with AddressSanitizer (argv[1]) on net_null ports with a
table large enough that a scan takes many slices, keeps several clients
asking `sessions`, `mappings`, `stats` and `ports`, and sends SIGTERM: the
daemon must exit 0 within the time limit, with its final counters, and with
no sanitizer report; every command must get a reply (an answer, or the error
that the daemon is stopping) or find the socket gone. No lab and no root needed.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from telemetry_client import ask, telemetry_socket

EPHEMERA = sys.argv.pop(1) if len(sys.argv) > 1 else "build/tests/ephemera-asan"
ROUNDS = 3
CLIENTS = 4

CONFIG = """
[eal]
args = ["--no-huge", "-m", "1024", "--no-shconf", "--no-pci", "--log-level=*:error", "--file-prefix={prefix}"]
lcores = "0@0,1@1,2@1"
[inside]
port = "net_null0"
address = "100.64.0.1/24"
[outside]
port = "net_null1"
address = "203.0.113.1/24"
next_hop = "203.0.113.2"
next_hop_mac = "02:00:00:00:00:02"
[metrics]
listen = ""
[nat]
pool = ["198.51.100.0/28"]
max_mappings = 1048576
[dataplane]
workers = 2
"""
COMMANDS = ["/ephemera/sessions", "/ephemera/mappings,limit=200", "/ephemera/stats", "/ephemera/ports"]


def client(path, first, stop, results):
    """Asks one command after another, each on a fresh connection, until `stop`
    (at most 2000 commands): records the replies, None where the socket is gone."""
    for i in range(2000):
        if stop.is_set():
            return
        command = COMMANDS[(first + i) % len(COMMANDS)]
        try:
            results.append((command, ask(path, command)))
        except (ConnectionError, FileNotFoundError, socket.timeout, OSError):
            results.append((command, None))
            if stop.is_set():
                return
            time.sleep(0.01)


class StopUnderControlTraffic(unittest.TestCase):
    def test_sigterm_while_commands_arrive_exits_cleanly(self):
        for round_ in range(ROUNDS):
            with self.subTest(round=round_), tempfile.TemporaryDirectory() as tmp:
                prefix = f"eph-stop-{os.getpid()}-{round_}"
                path = os.path.join(tmp, "gw.toml")
                with open(path, "w") as f:
                    f.write(CONFIG.format(prefix=prefix))
                p = subprocess.Popen([EPHEMERA, "--config", path], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
                stop = threading.Event()
                results = []
                threads = []
                try:
                    self.assertIn("ephemera: forwarding", p.stdout.readline())
                    sock = telemetry_socket(prefix, wait_s=10)
                    self.assertIsNotNone(sock, "no telemetry socket")
                    threads = [threading.Thread(target=client, args=(sock, c, stop, results))
                               for c in range(CLIENTS)]
                    for t in threads:
                        t.start()
                    time.sleep(1.0)
                    answered_before = sum(1 for _, r in results if r is not None)
                    p.send_signal(signal.SIGTERM)
                    try:
                        out, err = p.communicate(timeout=30)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        out, err = p.communicate()
                        self.fail("still running 30 s after SIGTERM (a hang in shutdown)")
                finally:
                    stop.set()
                    for t in threads:
                        t.join(timeout=20)
                    if p.poll() is None:
                        p.kill()
                        p.communicate()
                self.assertNotIn("AddressSanitizer", err)
                self.assertEqual(p.returncode, 0, err[-4000:])
                self.assertIn("final counters", out)
                self.assertGreater(answered_before, 0, "no command was answered before the signal")
                stopping = sum(1 for c, r in results if r and "stopping" in json.dumps(r.get(c.split(",")[0])))
                print(f"round {round_}: {len(results)} commands, {answered_before} answered before SIGTERM, "
                      f"{stopping} answered 'stopping', {sum(1 for _, r in results if r is None)} found no socket",
                      file=sys.stderr)
                for command, reply in results:
                    if reply is None:
                        continue
                    body = reply.get(command.split(",")[0])
                    if isinstance(body, dict) and "error" in body:
                        self.assertIn("stopping", body["error"], command)


if __name__ == "__main__":
    unittest.main(verbosity=2)
