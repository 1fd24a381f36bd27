"""End-to-end checks of ephemera's deterministic mode (RFC 7422) in the lab (scripts/lab), with
two workers: every subscriber of nat.deterministic leaves from the pool address and the range of
ports that the configuration alone computes, whichever worker owns it; `ephemeractl who
POOLADDR:PORT --config FILE` names the subscriber from the configuration; the mapping log gets
no line per mapping or block.

The lab must be up with the configuration `tests/e2e/run_e2e.py --suite deterministic` renders
(DETERMINISTIC_CONFIG there); setUpModule refuses any other:

    [nat] pool 198.51.100.0/28 (the lab's), ports = "49152-65535", deterministic = "100.64.0.0/24"
    [log] file = /run/ephemera-lab/mappings.log
    two workers: partitions of 8192 ports, 256 hosts over 16 addresses x 2 workers = 8 hosts
    per partition, 1024 ports each

The expected ranges are computed here from RFC 7422's idea as deterministic.hpp writes it down,
independently of the gateway's code: host h = address - prefix; pool address h // (W * k);
worker (h % (W * k)) % W; range number (h % (W * k)) // W.

Every wait is bounded; every socket is closed by the test that made it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import time
import tomllib
import unittest

import labnet as L
import test_control as TC
from labnet import NS_IN, NS_OUT, OUT_IP

PREFIX = ipaddress.ip_network("100.64.0.0/24")
SUBSCRIBERS = ["100.64.0.2", "100.64.0.3", "100.64.0.4", "100.64.0.5", "100.64.0.130"]
CONFIG = ""
NOTES: list[str] = []


def note(text: str) -> None:
    NOTES.append(text)


def ctl(*args, check: bool = True) -> subprocess.CompletedProcess:
    return TC.ctl(*args, check=check)  # ephemeractl against the lab's gateway (TC.CTL set below)


def expected_range(subscriber: str) -> tuple[str, int, int, int]:
    """(pool address, first port, last port, worker) of a subscriber, from the configuration."""
    lab = L.lab()
    pool = lab.pool_addresses()
    first, last = lab.ports
    workers = lab.workers
    size = (last - first + 1) // workers  # equal partitions here (16384 / 2)
    hosts = PREFIX.num_addresses
    k = -(-hosts // (len(pool) * workers))
    per_host = size // k
    h = int(ipaddress.ip_address(subscriber)) - int(PREFIX.network_address)
    r = h % (workers * k)
    w, j = r % workers, r // workers
    start = first + w * size + j * per_host
    return pool[h // (workers * k)], start, start + per_host - 1, w


def setUpModule():
    global CONFIG
    lab = L.lab()
    if lab.gateway != "ephemera":
        raise unittest.SkipTest("deterministic mode is ephemera's")
    state = dict(line.partition("=")[::2] for line in (L.STATE_DIR / "state").read_text().splitlines())
    TC.CTL = os.path.join(state["build"], "control", "ephemeractl")
    CONFIG = str(lab.config)
    nat = tomllib.loads(lab.config.read_text()).get("nat", {})
    if nat.get("deterministic") != str(PREFIX) or lab.workers != 2:
        raise RuntimeError(f"the lab runs {lab.config} with {lab.workers} workers; this module needs "
                           f"nat.deterministic = \"{PREFIX}\" and 2 workers (run_e2e.py --suite deterministic)")
    L.add_subscribers(SUBSCRIBERS[1:])


def tearDownModule():
    L.remove_subscribers(SUBSCRIBERS[1:])


class Deterministic(unittest.TestCase):

    def udp_from(self, subscriber: str, sport: int, server: socket.socket, dport: int) -> tuple[str, int]:
        """One datagram from subscriber:sport to the server; the source the server saw. The
        server answers, and the answer must come back to the subscriber (the return path goes
        to the worker owning the port)."""
        client = L.ns_socket(NS_IN, socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(client.close)
        client.bind((subscriber, sport))
        client.settimeout(2)
        got = L.send_until_received(client, b"det", (OUT_IP, dport), server)
        self.assertIsNotNone(got, f"nothing from {subscriber} reached the server")
        server.sendto(b"back", got[1])
        self.assertEqual(b"back", client.recv(100), f"the answer to {subscriber} did not come back")
        return got[1]

    def test_rfc7422_each_subscriber_leaves_from_its_computed_address_and_range(self):
        server = L.ns_socket(NS_OUT, socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(server.close)
        server.bind((OUT_IP, 48000))
        server.settimeout(1)
        workers = set()
        for sub in SUBSCRIBERS:
            pool, first, last, worker = expected_range(sub)
            workers.add(worker)
            for sport in (40000, 40001):
                addr, port = self.udp_from(sub, sport, server, 48000)
                self.assertEqual(pool, addr, f"{sub}: pool address")
                self.assertTrue(first <= port <= last, f"{sub}: port {port} outside {first}-{last}")
            note(f"{sub} -> {pool}:{first}-{last} (worker {worker})")
        self.assertEqual({0, 1}, workers, "the subscribers span both workers")

    def test_rfc7422_tcp_takes_ports_from_the_same_range(self):
        listener = L.ns_socket(NS_OUT, socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((OUT_IP, 48001))
        listener.listen(8)
        listener.settimeout(5)
        sub = SUBSCRIBERS[1]
        pool, first, last, _ = expected_range(sub)
        for _ in range(3):
            c = L.ns_socket(NS_IN, socket.AF_INET, socket.SOCK_STREAM)
            self.addCleanup(c.close)
            c.bind((sub, 0))
            c.settimeout(5)
            c.connect((OUT_IP, 48001))
            conn, peer = listener.accept()
            self.addCleanup(conn.close)
            self.assertEqual(pool, peer[0])
            self.assertTrue(first <= peer[1] <= last, f"TCP port {peer[1]} outside {first}-{last}")

    def test_rfc7422_who_names_the_subscriber_from_the_configuration(self):
        sub = SUBSCRIBERS[2]
        pool, first, last, _ = expected_range(sub)
        for port in (first, (first + last) // 2, last):
            p = ctl("who", f"{pool}:{port}", "--config", CONFIG)
            self.assertEqual(sub, p.stdout.split()[0], p.stdout)
            self.assertIn(f"{pool}:{first}-{last}", p.stdout)
        as_json = ctl("--json", "who", f"{pool}:{first}", "--config", CONFIG).stdout
        self.assertIn(f'"inside": "{sub}"', as_json)
        other_pool = L.lab().pool_addresses()[1]
        self.assertNotEqual(sub, ctl("who", f"{other_pool}:{first}", "--config", CONFIG).stdout.split()[0])
        p = ctl("who", f"203.0.113.9:{first}", "--config", CONFIG, check=False)
        self.assertNotEqual(0, p.returncode, "not a pool address")
        self.assertIn("not a pool address", p.stderr)

    def test_rfc7422_the_mapping_log_has_no_line_per_mapping_or_block(self):
        server = L.ns_socket(NS_OUT, socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(server.close)
        server.bind((OUT_IP, 48002))
        server.settimeout(1)
        self.udp_from(SUBSCRIBERS[3], 40100, server, 48002)
        log = tomllib.loads(L.lab().config.read_text())["log"]["file"]
        time.sleep(1.5)  # the control plane writes the log every few hundred ms
        lines = open(log, errors="replace").read().splitlines()
        self.assertTrue(lines and "start" in lines[0], f"the log is written: {lines[:3]}")
        flows = [l for l in lines if SUBSCRIBERS[3] in l]
        self.assertEqual([], flows, "deterministic mappings are not logged one by one")

    def test_config_and_start_line_say_deterministic(self):
        self.assertEqual(str(PREFIX), json.loads(ctl("--json", "config").stdout)["nat_deterministic"])
        self.assertIn("deterministic (RFC 7422): 256 hosts of 100.64.0.0/24, 1024 ports each",
                      L.gateway_log_tail(200))


def ordered_suite(pattern: str | None = None) -> unittest.TestSuite:
    return L.ordered_suite([Deterministic], pattern)


def load_tests(loader, tests, pattern):
    return ordered_suite()
