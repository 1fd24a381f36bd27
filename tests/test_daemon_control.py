#!/usr/bin/env python3
"""Control replies that would not fit DPDK telemetry's 16 KB: cut by rows, never by columns.

DPDK leaves out, silently, whatever does not fit a reply, a whole column at a
time. Runs the real `ephemera` (argv[1]) with 400 port forwards from the
configuration and 300 TCP connections being opened (SYNs replayed on a
net_pcap inside port, from long inside addresses to long remote ones: 200
session rows would take about 18 KB), and asks for them: every column must be
there with as many entries as `shown` says, with fewer rows than match where
they would not fit, and the filters must reach the rest. No lab and no root needed.
"""
import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

from pcap_frames import tcp_syn_frame, write_pcap
from telemetry_client import ask, telemetry_socket

EPHEMERA = sys.argv.pop(1) if len(sys.argv) > 1 else "build/control/ephemera"
FORWARDS = 400
CONNECTIONS = 300

CONFIG = """
[eal]
args = ["--no-huge", "-m", "256", "--no-shconf", "--no-pci", "--log-level=*:error", "--file-prefix={prefix}"]
lcores = "0,1"
[inside]
port = "net_pcap0,rx_pcap={pcap},infinite_rx=1"
address = "100.64.0.1/16"
[outside]
port = "net_null1"
address = "203.0.113.1/24"
next_hop = "203.0.113.2"
next_hop_mac = "02:00:00:00:00:02"
[metrics]
listen = ""
[nat]
pool = ["198.51.100.0/28"]
ports = "49152-65535"
max_static_mappings = 1024
static = [{statics}]
"""


def syn(i):
    return tcp_syn_frame(f"100.64.{200 + i // 100}.{100 + i % 100}", 40000 + i, f"203.0.113.{200 + i % 50}", 50000 + i)


def forward(i):
    """The i-th port forward: long addresses, so that rows are as wide as they get."""
    return f"udp 100.64.{100 + i // 200}.{100 + i % 100}:{10000 + i} 198.51.100.{1 + i % 2}:{20000 + i}"


class RepliesThatWouldNotFit(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        prefix = f"eph-ctl-{os.getpid()}"
        pcap = os.path.join(cls.tmp.name, "inside.pcap")
        write_pcap(pcap, [syn(i) for i in range(CONNECTIONS)])
        path = os.path.join(cls.tmp.name, "gw.toml")
        with open(path, "w") as f:
            f.write(CONFIG.format(prefix=prefix, pcap=pcap, statics=", ".join(f'"{forward(i)}"' for i in range(FORWARDS))))
        cls.daemon = subprocess.Popen([EPHEMERA, "--config", path], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
        cls.started = "ephemera: forwarding" in cls.daemon.stdout.readline()
        cls.sock = telemetry_socket(prefix, wait_s=10) if cls.started else None

    @classmethod
    def tearDownClass(cls):
        cls.daemon.terminate()
        try:
            cls.daemon.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            cls.daemon.kill()
            cls.daemon.communicate()
        cls.tmp.cleanup()

    def table(self, command, columns):
        self.assertTrue(self.started, "the daemon did not start")
        self.assertIsNotNone(self.sock, "no telemetry socket")
        reply = ask(self.sock, command)[command.split(",")[0]]
        self.assertNotIn("error", reply)
        for c in columns:
            self.assertTrue(c in reply, f"column {c} left out of {command}")
            self.assertEqual(len(reply[c]), reply["shown"], f"column {c} of {command}")
        return reply

    def test_sessions_of_more_than_fits_show_whole_rows_and_say_how_many(self):
        columns = ("protocol", "inside", "external", "remote", "state", "expires_in", "worker")
        t = self.table("/ephemera/sessions,proto=tcp limit=200", columns)
        for _ in range(50):  # the replayed SYNs open their sessions within moments of the start
            if t["matched"] == CONNECTIONS:
                break
            time.sleep(0.1)
            t = self.table("/ephemera/sessions,proto=tcp limit=200", columns)
        self.assertEqual(t["matched"], CONNECTIONS)
        self.assertGreater(t["shown"], 100)
        self.assertLess(t["shown"], 200, "200 rows this wide do not fit 16 KB: nothing held the reply to it")
        self.assertEqual(set(t["state"]), {"syn-out"})

    def test_static_list_shows_every_column_and_how_many_match(self):
        t = self.table("/ephemera/static_list,limit=200",
                       ("protocol", "inside", "external", "inside_mac", "worker", "state"))
        self.assertEqual((t["matched"], t["shown"]), (FORWARDS, 200))

    def test_static_list_filters_reach_every_forward(self):
        for pool in ("198.51.100.1", "198.51.100.2"):
            t = self.table(f"/ephemera/static_list,pool={pool} proto=udp", ("protocol", "inside", "external"))
            self.assertEqual(t["matched"], FORWARDS // 2, pool)
            self.assertTrue(all(e.startswith(pool + ":") for e in t["external"]), t["external"])
        one = self.table("/ephemera/static_list,pool=198.51.100.2 port=20399", ("external", "inside"))
        self.assertEqual((one["matched"], one["external"]), (1, ["198.51.100.2:20399"]))
        self.assertEqual(one["inside"], [forward(399).split()[1]])

    def test_mappings_show_port_forwards_as_static_never_expiring(self):
        t = self.table("/ephemera/mappings,proto=udp limit=200",
                       ("protocol", "inside", "external", "sessions", "kind", "expires_in", "worker"))
        self.assertEqual((t["matched"], t["shown"]), (FORWARDS, 200))
        self.assertEqual(set(t["kind"]), {"static"})
        self.assertEqual(set(t["expires_in"]), {0}, "a static mapping never expires: 0, not a countdown")

    def test_ports_rows_stop_at_the_limit_and_say_how_many_there_are(self):
        columns = ("pool", "protocol", "worker", "free", "quarantined", "in_use")
        every = self.table("/ephemera/ports", columns)
        self.assertEqual(every["matched"], 16 * 4, "16 pool addresses x 4 protocols x 1 worker")
        self.assertEqual(every["shown"], every["matched"])
        some = self.table("/ephemera/ports,limit=10", columns)
        self.assertEqual((some["matched"], some["shown"]), (64, 10))
        one = self.table("/ephemera/ports,pool=198.51.100.3 proto=sctp", columns)
        self.assertEqual((one["matched"], one["pool"], one["protocol"]), (1, ["198.51.100.3"], ["sctp"]))

    def test_ports_refuses_filters_it_cannot_apply(self):
        for params in ("inside=100.64.0.2", "port=50000"):
            reply = ask(self.sock, "/ephemera/ports," + params)["/ephemera/ports"]
            self.assertIn("unknown filter", reply.get("error", ""), params)


LARGE_POOL_CONFIG = """
[eal]
args = ["--no-huge", "-m", "256", "--no-shconf", "--no-pci", "--log-level=*:error", "--file-prefix={prefix}"]
lcores = "0,1"
[inside]
port = "net_null0"
address = "100.64.0.1/16"
[outside]
port = "net_null1"
address = "203.0.113.1/24"
next_hop = "203.0.113.2"
next_hop_mac = "02:00:00:00:00:02"
[metrics]
listen = "127.0.0.1:{port}"
[nat]
pool = ["198.51.100.0/24", "203.0.113.16/28"]
ports = "60000-60999"
max_mappings = 1024
"""


def free_tcp_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MetricsOfALargePool(unittest.TestCase):
    """272 pool addresses: the port-use gauges are summed over the pool, one
    series per protocol, worker and state, not 272 times that."""

    def test_port_use_is_summed_over_a_pool_of_more_than_256_addresses(self):
        with tempfile.TemporaryDirectory() as tmp:
            port = free_tcp_port()
            path = os.path.join(tmp, "gw.toml")
            with open(path, "w") as f:
                f.write(LARGE_POOL_CONFIG.format(prefix=f"eph-ctl-pool-{os.getpid()}", port=port))
            daemon = subprocess.Popen([EPHEMERA, "--config", path], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
            try:
                self.assertIn("ephemera: forwarding", daemon.stdout.readline(), "the daemon did not start")
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=20) as r:
                    text = r.read().decode()
            finally:
                daemon.terminate()
                daemon.communicate(timeout=30)
        series = [l for l in text.splitlines() if l.startswith("ephemera_pool_ports{")]
        self.assertEqual(len(series), 4 * 3, "4 protocols x 3 states, one worker:\n" + "\n".join(series[:20]))
        self.assertTrue(all('pool="all"' in l for l in series), series)
        free_udp = [l for l in series if 'protocol="udp"' in l and 'state="free"' in l]
        self.assertEqual(len(free_udp), 1, series)
        self.assertEqual(float(free_udp[0].rsplit(" ", 1)[1]), 272 * 1000, "every address's ports, summed")


if __name__ == "__main__":
    unittest.main(verbosity=2)
