"""End-to-end checks of ephemera's deterministic mode (RFC 7422) in the lab (scripts/lab), with
two workers: every subscriber of nat.deterministic leaves from the pool address and the range of
ports that the configuration alone computes, whichever worker owns it; `ephemeractl who
POOLADDR:PORT --config FILE` names the subscriber from the configuration; the mapping log gets
no line per mapping or block, only the mapping in force on its start line. A host that fills its
range borrows an overflow range (RFC 7422 §2.3) of its pool address and worker, and the mapping
log names it (`who --log`), where `who --config` says the port is in an overflow range.

The same lab carries jumbo frames on the inside (JumboInside): an 8000-byte datagram crosses
from the 9000-byte inside link to the 1500-byte outside and back.

The lab must be up with the configuration `tests/e2e/run_e2e.py --suite deterministic` renders
(DETERMINISTIC_CONFIG there); setUpModule refuses any other:

    [nat] pool 198.51.100.0/28 (the lab's), ports = "49152-65535", deterministic = "100.64.0.0/24",
          deterministic_overflow = 8
    [log] file = /run/ephemera-lab/mappings.log
    [inside] mtu = 9000 (setUpModule raises in0's MTU to it)
    two workers: partitions of 8192 ports, 256 hosts over 16 addresses x 2 workers = 8 hosts
    per partition, and 8 overflow ranges: 512 ports each

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
BORROWER = "100.64.0.6"  # fills its range, then borrows an overflow range
OVERFLOW = 8  # run_e2e.py's DETERMINISTIC_CONFIG: nat.deterministic_overflow
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
    per_host = size // (k + OVERFLOW)
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
    L.add_subscribers(SUBSCRIBERS[1:] + [BORROWER])
    inside_mtu = tomllib.loads(lab.config.read_text()).get("inside", {}).get("mtu", 1500)
    subprocess.run(["ip", "-n", NS_IN, "link", "set", L.IN_IF, "mtu", str(inside_mtu)], check=True, timeout=10)


def tearDownModule():
    L.remove_subscribers(SUBSCRIBERS[1:] + [BORROWER])
    subprocess.run(["ip", "-n", NS_IN, "link", "set", L.IN_IF, "mtu", "1500"], timeout=10)


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

    def test_rfc7422_who_says_an_overflow_range_is_named_by_the_log(self):
        # 8 hosts' ranges and 8 overflow ranges (RFC 7422 §2.3) in each worker's 8192 ports:
        # 512 ports each, worker 0's first overflow range right after its 8 hosts'.
        pool = L.lab().pool_addresses()[0]
        lent = ctl("who", f"{pool}:53300", "--config", CONFIG, check=False)
        self.assertEqual(1, lent.returncode, lent.stdout + lent.stderr)
        self.assertIn(f"an overflow range: {pool}:53248-53759", lent.stdout)
        self.assertIn("--log FILE --at TIME", lent.stdout)
        as_json = json.loads(ctl("--json", "who", f"{pool}:53248", "--config", CONFIG, check=False).stdout)
        self.assertEqual([{"block": f"{pool}:53248-53759", "overflow": True}], as_json)
        own = ctl("who", f"{pool}:53247", "--config", CONFIG)
        self.assertIn(f"{pool}:52736-53247", own.stdout, "the last host's range")

    def test_rfc7422_a_host_beyond_its_range_borrows_an_overflow_range_that_the_log_names(self):
        sub = BORROWER
        pool, first, last, worker = expected_range(sub)
        server = L.ns_socket(NS_OUT, socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(server.close)
        server.bind((OUT_IP, 48003))
        server.settimeout(2)
        seen = []
        for i in range(last - first + 2):  # its whole range, and one flow more
            client = L.ns_socket(NS_IN, socket.AF_INET, socket.SOCK_DGRAM)
            self.addCleanup(client.close)
            client.bind((sub, 41000 + i))
            got = L.send_until_received(client, b"flow", (OUT_IP, 48003), server)
            self.assertIsNotNone(got, f"flow {i} from {sub} did not reach the server")
            seen.append(got[1])
        own = seen[:-1]
        self.assertTrue(all(a == pool and first <= p <= last for a, p in own), "first its own range, whole")
        addr, port = seen[-1]
        self.assertEqual(pool, addr, "the overflow range is on its own pool address (paired pooling)")
        self.assertFalse(first <= port <= last, "beyond its range")
        lent = ctl("--json", "who", f"{pool}:{port}", "--config", CONFIG, check=False).stdout
        self.assertIn('"overflow": true', lent, f"{pool}:{port} is in an overflow range")
        server.sendto(b"back", seen[-1])
        self.assertEqual(b"back", client.recv(100), "the answer through the overflow port comes back")
        log = tomllib.loads(L.lab().config.read_text())["log"]["file"]
        at = int(time.time() * 1000)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            p = ctl("who", f"{pool}:{port}", "--at", at, "--log", log, check=False)
            if p.returncode == 0:
                break
            time.sleep(0.3)  # the control plane writes the log every few hundred ms
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        self.assertIn(sub, p.stdout, "the mapping log names who borrowed the range")
        note(f"{sub}: {last - first + 1} ports of its own, then {pool}:{port} from an overflow range "
             f"(worker {worker}), logged")

    def test_rfc7422_the_mapping_log_has_no_line_per_mapping_or_block(self):
        server = L.ns_socket(NS_OUT, socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(server.close)
        server.bind((OUT_IP, 48002))
        server.settimeout(1)
        self.udp_from(SUBSCRIBERS[3], 40100, server, 48002)
        log = tomllib.loads(L.lab().config.read_text())["log"]["file"]
        time.sleep(1.5)  # the control plane writes the log every few hundred ms
        lines = open(log, errors="replace").read().splitlines()
        starts = [l for l in lines if " start pid=" in l]
        self.assertTrue(starts, f"the log is written: {lines[:3]}")
        self.assertTrue(starts[-1].endswith(
            " deterministic=100.64.0.0/24 pool=198.51.100.0-198.51.100.15 ports=49152-65535 workers=2 "
            "ports_per_host=512 overflow=8"), f"the start line records the mapping in force: {starts[-1]}")
        flows = [l for l in lines if SUBSCRIBERS[3] in l]
        self.assertEqual([], flows, "deterministic mappings are not logged one by one")

    def test_config_and_start_line_say_deterministic(self):
        self.assertEqual(str(PREFIX), json.loads(ctl("--json", "config").stdout)["nat_deterministic"])
        self.assertIn("deterministic (RFC 7422): 256 hosts of 100.64.0.0/24, 512 ports each, 8 overflow ranges",
                      L.gateway_log_tail(200))


class JumboInside(unittest.TestCase):
    """Jumbo frames: `[inside] mtu = 9000` in this suite's configuration (the outside keeps
    1500) and in0's MTU raised to 9000 by setUpModule. An 8000-byte datagram leaves the inside
    host as one packet; the gateway sends it on in 1500-byte fragments (no DF), and the server's
    8000-byte answer, fragmented by eph-out, comes back to the inside host as one packet. With
    DF, the same datagram is answered with ICMP 3/4 carrying the outside MTU."""

    SIZE = 8000

    def test_jumbo_datagram_crosses_from_a_9000_byte_inside_link_to_a_1500_byte_outside(self):
        sub = SUBSCRIBERS[4]
        server = TC.udp_socket(self, NS_OUT, OUT_IP, 48100, 2)
        client = TC.udp_socket(self, NS_IN, sub, 48101, 2)
        client.setsockopt(socket.IPPROTO_IP, TC.PathMtu.IP_MTU_DISCOVER, 0)  # IP_PMTUDISC_DONT: no DF
        request = bytes((i * 7) & 0xFF for i in range(self.SIZE))
        reply = bytes((i * 11 + 3) & 0xFF for i in range(self.SIZE))
        before = TC.ctl_stats()
        got = L.send_until_received(client, request, (OUT_IP, 48100), server)
        self.assertIsNotNone(got, f"the 8000-byte datagram did not arrive; stats: {TC.ctl_stats()}")
        self.assertEqual(request, got[0])
        pool, first, last, _ = expected_range(sub)
        self.assertEqual(pool, got[1][0])
        with L.Sniffer(NS_IN, L.IN_IF) as sniff:
            server.sendto(reply, got[1])
            data, source = client.recvfrom(65536)
            time.sleep(0.2)
            seen = [p for p in sniff.snapshot() if p.src == OUT_IP and p.proto == L.PROTO_UDP]
        self.assertEqual((reply, (OUT_IP, 48100)), (data, source))
        self.assertTrue(any(len(p.l4) == 8 + self.SIZE for p in seen),
                        f"the answer reached in0 in pieces of {[len(p.l4) for p in seen]} bytes, not as one packet")
        after = TC.ctl_stats()
        self.assertGreaterEqual(after["fragmented"] - before["fragmented"], 1, "fragmented for the outside")
        self.assertEqual(after["fragment_failed"], before["fragment_failed"])

    def test_jumbo_datagram_with_df_gets_icmp_3_4_with_the_outside_mtu(self):
        client = TC.udp_socket(self, NS_IN, SUBSCRIBERS[4], 0, 2)
        client.setsockopt(socket.IPPROTO_IP, TC.PathMtu.IP_MTU_DISCOVER, 3)  # PROBE: DF, no PMTU cache
        client.setsockopt(socket.IPPROTO_IP, TC.IP_RECVERR, 1)
        got = TC.icmp_error_after(client, lambda: client.sendto(bytes(self.SIZE), (OUT_IP, 48102)))
        self.assertIsNotNone(got, "no ICMP error for an 8000-byte packet with DF")
        (_, origin, icmp_type, code, _, info, _), offender = got
        self.assertEqual((2, 3, 4, 1500), (origin, icmp_type, code, info), "ICMP 3/4 with the outside MTU")


def ordered_suite(pattern: str | None = None) -> unittest.TestSuite:
    return L.ordered_suite([Deterministic, JumboInside], pattern)


def load_tests(loader, tests, pattern):
    return ordered_suite()
