#!/usr/bin/env python3
"""Bad input never crashes the gateway nor loses an mbuf: the whole daemon, fuzzed.

Runs `ephemera` built with AddressSanitizer (argv[1]), in three configurations
(dynamic ports, port blocks, deterministic with overflow; two of them with two
workers), on net_pcap ports that replay, over and over,
the frames `fuzz-frames` (argv[2]) writes: well-formed frames for every path a worker has, each with mutants (cut
short, bytes changed, fields at extremes, grown). After the run the daemon must
stop cleanly on SIGINT, with no sanitizer report and every mbuf back in its
pool, and each path's counter must have moved; meanwhile bad, random and good
control commands (the /ephemera/... telemetry commands; port forwards made and
removed) must each get a reply, an error for the bad ones only, so that the run is known to have
gone through the code it is meant to fuzz. No lab and no root needed.

EPHEMERA_FUZZ_SEED picks another corpus (the default is fixed, so that a
failure can be replayed), EPHEMERA_FUZZ_MUTANTS more mutants per frame,
EPHEMERA_FUZZ_SECONDS a longer run.

AddressSanitizer watches the daemon's own heap and stack; DPDK's memory (the
mbufs, the tables) is not instrumented, so an overrun there is caught only
when it faults or corrupts what the counters or the final mbuf count show.
"""
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import unittest

from telemetry_client import ask, telemetry_socket

EPHEMERA = sys.argv.pop(1) if len(sys.argv) > 1 else "build/tests/ephemera-asan"
FUZZ_FRAMES = sys.argv.pop(1) if len(sys.argv) > 1 else "build/tests/fuzz-frames"
SEED = int(os.environ.get("EPHEMERA_FUZZ_SEED", "20261122"))
MUTANTS = int(os.environ.get("EPHEMERA_FUZZ_MUTANTS", "20"))
SECONDS = float(os.environ.get("EPHEMERA_FUZZ_SECONDS", "9"))  # > 6 s: held SYNs get their answer

EAL_AND_PORTS = """
[eal]
args = ["--no-huge", "-m", "1024", "--no-shconf", "--no-pci", "--log-level=*:error", "--file-prefix=eph-fuzz-{pid}"]
lcores = "{lcores}"
[inside]
port = "net_pcap0,{inside_queues}infinite_rx=1"
address = "100.64.0.1/24"
[outside]
port = "net_pcap1,{outside_queues}infinite_rx=1"
address = "203.0.113.1/24"
next_hop = "203.0.113.2"
next_hop_mac = "02:00:00:00:00:02"
mtu = 1280
[metrics]
listen = ""
[log]
file = "{log}"
[dataplane]
workers = {workers}
mbufs = 65536
icmp_rate = 100000
{dataplane}
[nat]
pool = ["198.51.100.0/30"]
ports = "49152-65535"
"""


# Control commands with bad parameters: each must get an error reply.
BAD_COMMANDS = [
    "/ephemera/sessions,inside=999.1.1.1", "/ephemera/sessions,limit=-5",
    "/ephemera/sessions,limit=99999999999999999999999", "/ephemera/sessions,proto=xyz",
    "/ephemera/sessions,port=70000", "/ephemera/sessions,pool=abc", "/ephemera/sessions,bogus=1",
    "/ephemera/sessions,inside", "/ephemera/sessions,=", "/ephemera/mappings,port=-1",
    "/ephemera/ports,pool=zzz", "/ephemera/ports,proto=", "/ephemera/lookup", "/ephemera/lookup,1.2.3.4",
    "/ephemera/lookup,198.51.100.0:99999", "/ephemera/lookup,198.51.100.0:80/foo", "/ephemera/lookup,:::",
    "/ephemera/lookup," + "9" * 900, "/ephemera/timeouts_set", "/ephemera/timeouts_set,udp",
    "/ephemera/timeouts_set,udp -1", "/ephemera/timeouts_set,udp 99999999999", "/ephemera/timeouts_set,nope 5",
    "/ephemera/timeouts_set,udp 5 6", "/ephemera/static_add", "/ephemera/static_add,tcp",
    "/ephemera/static_add,xyz 100.64.0.9:1 198.51.100.1:2", "/ephemera/static_add,udp 300.1.1.1:5 198.51.100.1:6",
    "/ephemera/static_add,udp 100.64.0.9:5 198.51.100.1:50000", "/ephemera/static_add,udp 100.64.0.9:0 198.51.100.9:6",
    "/ephemera/static_del", "/ephemera/static_del,udp", "/ephemera/static_del,udp 198.51.100.1:7",
    "/ephemera/stats,inside=100.64.0.10", "/ephemera/timeouts,udp", "/ephemera/config,x", "/ephemera/static_list,tcp",
    "/ephemera/sessions,bo\u00e9gus=1", "/ephemera/sessions,inside=\u00e9", "/ephemera/timeouts_set,\u00e9 5",
    # Numbers are whole: no trailing letters, no sign; a filter once.
    "/ephemera/sessions,port=5x", "/ephemera/sessions,limit=+5", "/ephemera/mappings,limit=5 limit=6",
    "/ephemera/ports,inside=100.64.0.2", "/ephemera/ports,port=50000", "/ephemera/ports,limit=0",
    "/ephemera/lookup,198.51.100.1,limit=1:80", "/ephemera/lookup,198.51.100.0:+80", "/ephemera/lookup,198.51.100.0:80/",
    "/ephemera/static_add,udp 100.64.0.9:+5 198.51.100.1:6", "/ephemera/static_del,udp 198.51.100.1: 7",
    # Past 1023 bytes DPDK telemetry cuts the command unseen; cut here it would
    # be a valid command with nothing but spaces after the comma.
    "/ephemera/sessions," + " " * 1010 + "proto=tcp",
]
CONTROL_COMMANDS = ["/ephemera/stats", "/ephemera/mappings", "/ephemera/sessions", "/ephemera/ports",
                    "/ephemera/lookup", "/ephemera/timeouts", "/ephemera/timeouts_set", "/ephemera/config",
                    "/ephemera/static_add", "/ephemera/static_del", "/ephemera/static_list"]


# Port forwards made and removed while the frames are replayed: each must succeed.
GOOD_COMMANDS = [c for i in range(10) for c in (f"/ephemera/static_add,udp 100.64.0.21:{6000 + i} 198.51.100.2:{6000 + i}",
                                               "/ephemera/static_list",
                                               f"/ephemera/lookup,198.51.100.2:{6000 + i}/udp",
                                               f"/ephemera/static_del,udp 198.51.100.2:{6000 + i}")]


def fuzz_control(path, rng):
    """Bad, random and good commands; returns (command, reply) pairs."""
    commands = list(BAD_COMMANDS) + GOOD_COMMANDS
    alphabet = "0123456789.:/,= -abcdefghijklmnopqrstuvwxyz\"\\%{}[]\x7f"
    for _ in range(200):
        params = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        commands.append(rng.choice(CONTROL_COMMANDS) + "," + params)
    return [(c, ask(path, c)) for c in commands]


def common_paths(c):
    return {
        "translated out": c["translated"]["out"],
        "malformed out": c["drops"]["out"]["malformed"],
        "malformed in": c["drops"]["in"]["malformed"],
    }


def queues(pcap, n):
    return "".join(f"rx_pcap={pcap},tx_pcap=/dev/null," for _ in range(n))


class FuzzedDaemon(unittest.TestCase):
    """Dynamic ports with port preservation, PCP, an exclusion, MSS clamping; two workers."""
    WORKERS = 2
    LCORES = "0@0,1@0,2@1"
    CONFIG = """
port_preservation = true
exclude = ["203.0.113.128/25"]
[pcp]
enabled = true
"""
    DATAPLANE = "mss_clamp = true"

    @staticmethod
    def paths(c):
        return common_paths(c) | {
            "translated in": c["translated"]["in"],
            "bad checksum out": c["drops"]["out"]["bad_checksum"],
            "handed off out": c["handoff"]["out"],
            "handed off in": c["handoff"]["in"],
            "hairpinned": c["hairpinned"],
            "ICMP errors translated out": c["icmp_errors_translated"]["out"],
            "ICMP errors translated in": c["icmp_errors_translated"]["in"],
            "ARP replies": c["arp_replies"],
            "ARP ignored": c["arp_ignored"],
            "echo replies": c["echo_replies"],
            "time exceeded": c["time_exceeded_sent"],
            "fragmentation needed (3/4)": c["frag_needed_sent"],
            "fragmented for the outside MTU": c["fragmented"],
            "reassembled": c["reassembled"],
            "reassembly dropped": c["reassembly_dropped"],
            "untranslated out": c["untranslated"]["out"],
            "untranslated in": c["untranslated"]["in"],
            "MSS clamped": c["mss_clamped"],
            "PCP answered": c["pcp"]["answered"],
            "PCP errors": c["pcp"]["errors"],
            "unsolicited SYNs held": c["unsolicited_syn"]["held"],
            "unsolicited SYNs answered": c["unsolicited_syn"]["answered"],
        }

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        inside = os.path.join(cls.tmp.name, "inside.pcap")
        outside = os.path.join(cls.tmp.name, "outside.pcap")
        made = subprocess.run([FUZZ_FRAMES, str(SEED), str(MUTANTS), inside, outside], capture_output=True,
                              text=True, check=True)
        print(f"{cls.__name__}, seed {SEED}: {made.stdout.strip()}", file=sys.stderr)
        path = os.path.join(cls.tmp.name, "gw.toml")
        with open(path, "w") as f:
            f.write(EAL_AND_PORTS.format(pid=os.getpid(), lcores=cls.LCORES,
                                         inside_queues=queues(inside, cls.WORKERS),
                                         outside_queues=queues(outside, cls.WORKERS), workers=cls.WORKERS,
                                         log=os.path.join(cls.tmp.name, "mappings.log"),
                                         dataplane=cls.DATAPLANE) + cls.CONFIG)
        p = subprocess.Popen([EPHEMERA, "--config", path, "--check-mbufs"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        cls.control = None
        try:
            cls.started = "ephemera: forwarding" in p.stdout.readline()
            deadline = time.monotonic() + SECONDS
            if cls.started and (path := telemetry_socket(f"eph-fuzz-{os.getpid()}")):
                cls.control = fuzz_control(path, random.Random(SEED))
            time.sleep(max(0.0, deadline - time.monotonic()) if cls.started else 0)
        finally:
            p.send_signal(2)
            try:
                cls.out, cls.err = p.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                cls.out, cls.err = p.communicate()
        cls.returncode = p.returncode
        cls.counters = {}
        for line in cls.out.splitlines():
            if "final counters: " in line:
                cls.counters = json.loads(line.split("final counters: ", 1)[1])

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_fuzzed_frames_neither_crash_nor_trip_the_sanitizer(self):
        self.assertTrue(self.started, self.err)
        self.assertNotIn("AddressSanitizer", self.err)
        self.assertIn(self.returncode, (0, 3), self.err[-4000:])  # 3: mbufs missing, the next test
        self.assertTrue(self.counters, "no final counters:\n" + self.out[-2000:])

    def test_every_mbuf_is_back_in_the_pool_at_exit(self):
        self.assertNotIn("not back in the pool", self.err)
        self.assertEqual(self.returncode, 0, self.err[-4000:])

    def test_control_commands_get_a_reply_an_error_for_the_bad_ones_none_for_the_good(self):
        if self.control is None:
            self.skipTest("no telemetry socket found")
        for command, reply in self.control:
            with self.subTest(command=command):
                self.assertIsNotNone(reply, "no reply")
                if command in BAD_COMMANDS:
                    self.assertIn("error", json.dumps(reply), "no error for a bad command")
                if command in GOOD_COMMANDS:
                    self.assertNotIn("error", json.dumps(reply))

    def test_every_path_was_exercised(self):
        self.assertTrue(self.counters, "no final counters")
        for name, value in self.paths(self.counters).items():
            with self.subTest(path=name):
                self.assertGreater(value, 0, f"{name}: the run never went there")


class FuzzedDaemonPortBlocks(FuzzedDaemon):
    """Port blocks with a per-subscriber limit (one block of 8 ports, which the mutants'
    source ports exceed), a port forward, address-and-port-dependent filtering; one worker.
    The outside frames find no mapping but the port forward's: the blocks' ports are random."""
    WORKERS = 1
    LCORES = "0@0,1@1"
    CONFIG = """
filtering = "address-and-port-dependent"
port_block_size = 8
max_blocks_per_subscriber = 1
static = ["udp 100.64.0.20:5000 198.51.100.1:5000", "tcp 100.64.0.20:5000 198.51.100.1:5000"]
"""
    DATAPLANE = ""

    @staticmethod
    def paths(c):
        return common_paths(c) | {
            "translated in": c["translated"]["in"],
            "no mapping in": c["drops"]["in"]["no_mapping"],
            "subscriber limit": c["drops"]["out"]["subscriber_limit"],
            "ICMP 3/13 for the limit": c["prohibited_sent"],
            "reassembled": c["reassembled"],
            "hairpinned": c["hairpinned"],
        }


class FuzzedDaemonDeterministic(FuzzedDaemon):
    """Deterministic mapping (RFC 7422): a host's worker is the owner of its ports, and the
    hosts outside the prefix get none; 4096 hosts with 64 overflow ranges per worker and pool
    address leave 14 ports per host, which the busy host's 20 flows exceed: it borrows an
    overflow range, and the log records it. Two workers, as above."""
    CONFIG = """
deterministic = "100.64.0.0/20"
deterministic_overflow = 64
"""
    DATAPLANE = ""

    @staticmethod
    def paths(c):
        return common_paths(c) | {
            "handed off out": c["handoff"]["out"],
            "subscriber limit (outside the prefix)": c["drops"]["out"]["subscriber_limit"],
            "overflow ranges lent and logged": c["log"]["events"],
            "ICMP errors translated out": c["icmp_errors_translated"]["out"],
        }


if __name__ == "__main__":
    unittest.main(verbosity=2)
