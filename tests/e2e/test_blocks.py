"""End-to-end checks of ephemera's port-block mode and per-subscriber limits in the lab
(scripts/lab): blocks of consecutive ports shared by every protocol, the mapping log and IPFIX
with one event per block (RFC 7422 in spirit, RFC 8158 natEvent 16/17), `ephemeractl who` and
`ephemeractl ports` in block mode, and the two limits of RFC 6888 REQ-4 with the ICMP 3/13 of
REQ-11. Each check is one test method named after the behaviour it checks, and looks at what
the far side, the inside wire, the log, the collector or ephemeractl saw.

The lab must be up with the configuration that `tests/e2e/run_e2e.py --suite blocks` renders
(BLOCKS_CONFIG there); setUpModule refuses any other:

    [nat] ports = "50000-50031", randomize_ports = false, port_block_size = 4,
          max_blocks_per_subscriber = 2, max_ports_per_subscriber = 9, icmp_on_limit = true
    [timeouts] udp = 2, icmp = 2, tcp_transitory = 2, tcp_established = 30, quarantine = 3
    [log] file = /run/ephemera-lab/mappings.log, ipfix_collector = 127.0.0.1:4739
    one worker (its partition is the whole range: 8 blocks of 4 per pool address)

Why these numbers, in one lab run: both limits answer `subscriber_limit`, so each must bite
where the other cannot. The block limit is per protocol (2 blocks x 4 ports = the 9th UDP
flow), the port limit counts every protocol together (the 10th mapping). So with blocks of 4,
2 blocks and 9 ports:
  - 8 UDP flows fill both blocks; the 9th UDP flow is refused with 8 mappings, under the
    port limit of 9: the block limit refused it (max_blocks_per_subscriber);
  - 5 UDP + 4 TCP flows are 9 mappings in 2 blocks whose second still has 3 free UDP ports;
    a 10th flow, UDP, is refused although its blocks have room: the port limit refused it
    (max_ports_per_subscriber);
  - 5 flows (4 + 1) show the second block being opened, with TCP's 2 flows in the same
    blocks, 7 mappings under either limit.
tcp_established is long (30 s) so that the TCP connections, idle between their checks, live
through a test; udp and the quarantine are short so that blocks are freed and come back
within seconds.

Independence: with paired pooling every subscriber uses one pool address, and the blocks of a
pool address are shared by its subscribers. Each test uses its own subscriber (added on in0),
whose pool address (found with one ping, setUpModule) no other test's subscriber uses and
which is not 100.64.0.2's (the lab's own pings). The pings' ICMP mappings took a block each;
setUpModule waits until they expired, so every subscriber starts holding no block. The
mapping-log and IPFIX tests share one scenario (block_log_scenario(), run once by whichever
runs first): 5 UDP flows, then left to expire.

Every wait is bounded; every background thread and socket is closed by the test that made it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import struct
import subprocess
import threading
import time
import tomllib
import unittest
from pathlib import Path

import labnet as L
from labnet import GW_IN_IP, IN_IF, IN_IP, NS_GW, NS_IN, NS_OUT, OUT_IP, PROTO_ICMP, PROTO_UDP
import test_control as TC
from test_control import IpfixCollector, UdpFlows, decode_ipfix, wait_until

NOTES: list[str] = []

FILE_PREFIX = "ephemera-lab"
IPFIX_ADDR = TC.IPFIX_ADDR
POLL_S = 0.1

# What setUpModule insists on (BLOCKS_CONFIG in run_e2e.py; the docstring says why).
WANT_NAT = {"port_block_size": 4, "max_blocks_per_subscriber": 2, "max_ports_per_subscriber": 9,
            "randomize_ports": False}

# Set by setUpModule from the running configuration.
CTL = ""
TIMEOUTS: dict = {}
MAPPING_LOG = Path()
BLOCK = 4          # port_block_size
MAX_BLOCKS = 2     # max_blocks_per_subscriber
MAX_PORTS = 9      # max_ports_per_subscriber
FIRST, LAST = 50000, 50031
_collector: IpfixCollector | None = None
_collector_late = False

# IPFIX information elements of template 257 (RFC 8158 port blocks)
IE_BLOCK = {"361": "portRangeStart", "362": "portRangeEnd", "363": "portRangeStepSize",
            "364": "portRangeNumPorts"}
NAT_EVENT_BLOCK_ALLOC, NAT_EVENT_BLOCK_FREE = 16, 17
ICMP_UNREACH, CODE_PROHIBITED = 3, 13
CLOCK_SLACK_MS = 50   # an event's time (the worker's TSC-derived clock) against time.time()


def note(text: str) -> None:
    NOTES.append(text)


# ephemeractl and the counters: test_control's helpers, pointed at this lab's binary in
# setUpModule (TC.CTL).
now_ms, ctl, ctl_json, ctl_stats, mapping_rows, port_counts = (
    TC.now_ms, TC.ctl, TC.ctl_json, TC.ctl_stats, TC.mapping_rows, TC.port_counts)


def who(endpoint: str, at_ms: int, proto: str | None = None, as_json: bool = False) -> subprocess.CompletedProcess:
    cmd = [CTL, *(["--json"] if as_json else []), "who", endpoint, "--at", str(at_ms),
           "--log", str(MAPPING_LOG), *(["--proto", proto] if proto else [])]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=15, stdin=subprocess.DEVNULL)


# --- the mapping log ----------------------------------------------------------------------

LOG_LINE = re.compile(r"^(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?P<ms>\d+) (?:"
                      r"(?P<marker>start|stop) pid=\d+|"
                      r"(?P<event>create|delete) (?P<proto>tcp|udp|icmp|sctp) "
                      r"inside=(?P<in_addr>[\d.]+):(?P<in_port>\d+) "
                      r"external=(?P<ext_addr>[\d.]+):(?P<ext_port>\d+) worker=\d+|"
                      r"(?P<bevent>block-alloc|block-free) all inside=(?P<b_in>[\d.]+) "
                      r"external=(?P<b_addr>[\d.]+):(?P<b_first>\d+)-(?P<b_last>\d+) worker=\d+)$")


@dataclasses.dataclass(frozen=True)
class BlockLine:
    event: str      # block-alloc | block-free
    ms: int
    inside: str
    pool: str
    first: int
    last: int
    line: str


def read_log() -> list[str]:
    try:
        return MAPPING_LOG.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []


def block_lines(subscriber: str, since_ms: int = 0) -> list[BlockLine]:
    """The subscriber's block lines (from since_ms on), in the file's order."""
    out = []
    for l in read_log():
        m = LOG_LINE.match(l)
        if m and m["bevent"] and m["b_in"] == subscriber and int(m["ms"]) >= since_ms:
            out.append(BlockLine(m["bevent"], int(m["ms"]), m["b_in"], m["b_addr"], int(m["b_first"]),
                                 int(m["b_last"]), l))
    return out


def blocks_since(subscriber: str, since_ms: int) -> tuple[list[BlockLine], list[BlockLine]]:
    """The subscriber's block-alloc lines from since_ms on, and the block-free lines that
    closed them (a block freed that was allocated earlier, e.g. by the discovery ping's
    mapping, is not one of them)."""
    allocs, frees, open_ = [], [], {}
    for b in block_lines(subscriber):
        key = (b.pool, b.first, b.last)
        if b.event == "block-alloc" and b.ms >= since_ms:
            allocs.append(b)
            open_[key] = b
        elif b.event == "block-free" and key in open_:
            frees.append(b)
            del open_[key]
    return allocs, frees


def mapping_lines(subscriber: str) -> list[str]:
    return [l for l in read_log() if f" inside={subscriber}:" in l]


# --- subscribers and their pool addresses -------------------------------------------------

_pools: dict[str, str] = {}
_roles: dict[str, tuple[str, str]] = {}
ROLES = ("blocks", "log", "block-limit", "port-limit", "bystander", "ports")


def paired_pool(subscriber: str) -> str:
    """The pool address the gateway pairs with subscriber, from one ICMP echo's mapping."""
    if subscriber in _pools:
        return _pools[subscriber]
    if subscriber != IN_IP:
        L.add_subscribers([subscriber])
    r = L.ns_run(NS_IN, ["ping", "-n", "-c", "1", "-W", "2", "-I", subscriber, OUT_IP], timeout=10)
    if r.returncode != 0:
        raise RuntimeError(f"ping -I {subscriber} {OUT_IP} through the gateway failed: {r.stdout}{r.stderr}")
    rows = mapping_rows(inside=subscriber, proto="icmp")
    pools = {row["external"].rpartition(":")[0] for row in rows}
    if len(pools) != 1:
        raise AssertionError(f"paired pooling: ICMP mappings of {subscriber}: {rows}")
    _pools[subscriber] = pools.pop()
    return _pools[subscriber]


def assign_roles() -> None:
    """A subscriber for every role, each on a pool address of its own (and not 100.64.0.2's)."""
    taken = {paired_pool(IN_IP)}
    for i in range(100, 160):
        if len(_roles) == len(ROLES):
            return
        sub = f"100.64.0.{i}"
        pool = paired_pool(sub)
        if pool not in taken:
            taken.add(pool)
            _roles[ROLES[len(_roles)]] = (sub, pool)
    raise RuntimeError(f"100.64.0.100-159 are paired with only {len(taken)} pool addresses; "
                       f"{len(ROLES)} roles need one each: {_roles}")


def role(name: str) -> tuple[str, str]:
    return _roles[name]


# --- TCP connections ----------------------------------------------------------------------

class TcpConns:
    """A listener in eph-out and connections to it from one subscriber (one inside port each):
    for each, the client socket, the server's socket and the external endpoint it saw."""

    def __init__(self, subscriber: str, server_port: int):
        self.subscriber = subscriber
        self.listener = L.ns_socket(NS_OUT, socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((OUT_IP, server_port))
        self.listener.listen(16)
        self.listener.settimeout(3)
        self.port = server_port
        self.conns: dict[int, tuple[socket.socket, socket.socket, tuple]] = {}

    def open(self, inside_port: int) -> tuple[str, int]:
        c = L.ns_socket(NS_IN, socket.AF_INET, socket.SOCK_STREAM)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        c.bind((self.subscriber, inside_port))
        c.settimeout(3)
        try:
            c.connect((OUT_IP, self.port))
            s, peer = self.listener.accept()
        except OSError:
            c.close()
            raise
        s.settimeout(3)
        self.conns[inside_port] = (c, s, peer)
        return peer

    def both_ways(self, inside_port: int) -> bool:
        """Data out and back on the connection."""
        c, s, _ = self.conns[inside_port]
        try:
            c.sendall(b"ping %d" % inside_port)
            if s.recv(100) != b"ping %d" % inside_port:
                return False
            s.sendall(b"pong %d" % inside_port)
            return c.recv(100) == b"pong %d" % inside_port
        except OSError:
            return False

    def close(self) -> None:
        for c, s, _ in self.conns.values():
            c.close()
            s.close()
        self.listener.close()


# --- helpers of the tests -----------------------------------------------------------------

def open_udp(test: unittest.TestCase, flows: UdpFlows, inside_ports) -> list[tuple[str, int]]:
    out = []
    for p in inside_ports:
        ext = flows.open(p)
        test.assertIsNotNone(ext, f"flow {flows.subscriber}:{p} did not reach the server")
        out.append(ext)
    return out


def echo_both_ways(flows: UdpFlows, inside_port: int) -> bool:
    """An echo datagram on the flow: the server answers it to the external endpoint it came
    from; True when the answer reached the inside socket."""
    want = b"echo %d %d" % (inside_port, time.monotonic_ns())
    flows.send(inside_port, want)
    s = flows.socks[inside_port]
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data, src = s.recvfrom(2048)
        except socket.timeout:
            return False
        if data == want and src == (OUT_IP, flows.server.port):
            return True
    return False


def prohibited_for(sniff: L.Sniffer, subscriber: str, inside_port: int, timeout: float) -> L.Packet | None:
    """An ICMP destination unreachable, code 13 (administratively prohibited), to subscriber
    on in0 that quotes its UDP datagram from inside_port to the server."""
    def match(p: L.Packet) -> bool:
        if p.proto != PROTO_ICMP or p.dst != subscriber or len(p.l4) < 8 + 20 + 4:
            return False
        if (p.l4[0], p.l4[1]) != (ICMP_UNREACH, CODE_PROHIBITED):
            return False
        inner = p.l4[8:]
        ihl = (inner[0] & 0x0F) * 4
        if inner[0] >> 4 != 4 or len(inner) < ihl + 4:
            return False
        src, dst = socket.inet_ntoa(inner[12:16]), socket.inet_ntoa(inner[16:20])
        sport = struct.unpack("!H", inner[ihl:ihl + 2])[0]
        return (inner[9], src, dst, sport) == (PROTO_UDP, subscriber, OUT_IP, inside_port)
    return sniff.wait_for(match, timeout)


def block_of(port: int) -> tuple[int, int]:
    """The block (first, last) that holds port: blocks are aligned on the range's start."""
    first = FIRST + (port - FIRST) // BLOCK * BLOCK
    return first, first + BLOCK - 1


# --- the shared mapping-log scenario --------------------------------------------------------

@dataclasses.dataclass
class LogScenario:
    subscriber: str
    pool: str
    external: list = dataclasses.field(default_factory=list)   # what the server saw, per flow
    start_ms: int = 0          # just before the first datagram
    opened_ms: int = 0         # when the server had the last flow's first datagram
    last_ms: int = 0           # just after the last keep-alive datagram
    gone_ms: int = 0           # when ephemeractl listed none of the flows any more (0: never)
    alloc: list = dataclasses.field(default_factory=list)      # BlockLine, after the flows opened
    free: list = dataclasses.field(default_factory=list)       # BlockLine, after expiry
    mapping_lines: list = dataclasses.field(default_factory=list)


_scenario: LogScenario | None = None


def block_log_scenario() -> LogScenario:
    """Once: the "log" subscriber opens BLOCK + 1 UDP flows (two blocks), keeps them alive for
    a second, then lets them expire; what the log had after the opening and after the expiry."""
    global _scenario
    if _scenario is not None:
        return _scenario
    sub, pool = role("log")
    sc = LogScenario(sub, pool)
    flows = UdpFlows(sub, 47301)
    try:
        sc.start_ms = now_ms() - CLOCK_SLACK_MS
        for i in range(BLOCK + 1):
            ext = flows.open(45000 + i)
            if ext is None:
                break
            sc.external.append(ext)
        sc.opened_ms = now_ms()
        def allocs():
            return blocks_since(sub, sc.start_ms)[0]
        sc.alloc = wait_until(lambda: (lambda a: a if len(a) >= 2 else None)(allocs()), 2.0) or allocs()
        time.sleep(1.0)
        for i in range(BLOCK + 1):
            flows.stop(45000 + i)
        time.sleep(TC.KEEPALIVE_S + 0.05)   # a keep-alive round may be under way
        sc.last_ms = now_ms()
        udp = TIMEOUTS["udp"]

        def gone():
            return not [r for r in mapping_rows(inside=sub, proto="udp")]
        if wait_until(gone, udp + 4):
            sc.gone_ms = now_ms()

        def frees():
            return blocks_since(sub, sc.start_ms)[1]
        sc.free = wait_until(lambda: (lambda f: f if len(f) >= max(len(sc.alloc), 1) else None)(frees()), 3.0) \
            or frees()
        sc.mapping_lines = mapping_lines(sub)
    finally:
        flows.close()
    _scenario = sc
    return sc


# --- module set-up ------------------------------------------------------------------------

def start_collector_before_gateway(timeout: float = 120.0) -> threading.Thread:
    """For the runner, before `scripts/lab up`: test_control's early collector (opened in eph-gw
    as soon as the namespace exists, before the gateway's first message with the templates)."""
    return TC.start_collector_before_gateway(timeout)


def setUpModule():
    global CTL, TIMEOUTS, MAPPING_LOG, BLOCK, MAX_BLOCKS, MAX_PORTS, FIRST, LAST, _collector, _collector_late
    lab = L.lab()
    if lab.gateway != "ephemera":
        raise unittest.SkipTest("port blocks are ephemera's")
    state = dict(line.partition("=")[::2] for line in (L.STATE_DIR / "state").read_text().splitlines())
    CTL = os.path.join(state["build"], "control", "ephemeractl")
    TC.CTL = CTL
    config = tomllib.loads(lab.config.read_text())
    TIMEOUTS = {"udp": 300, "icmp": 60, "tcp_transitory": 240, "tcp_established": 7440, "quarantine": 120}
    TIMEOUTS.update(config.get("timeouts", {}))
    nat = config.get("nat", {})
    log = config.get("log", {})
    MAPPING_LOG = Path(log.get("file", ""))
    FIRST, LAST = lab.ports
    BLOCK = nat.get("port_block_size", 0)
    MAX_BLOCKS = nat.get("max_blocks_per_subscriber", 8)
    MAX_PORTS = nat.get("max_ports_per_subscriber", 0)
    problems = []
    if lab.workers != 1 or config.get("dataplane", {}).get("workers", 1) != 1:
        problems.append("one worker")
    if LAST - FIRST + 1 != 32:
        problems.append("32 ports")
    for k, v in WANT_NAT.items():
        if nat.get(k) != v:
            problems.append(f"[nat] {k} = {v}")
    if not nat.get("icmp_on_limit", True):
        problems.append("icmp_on_limit = true")
    if TIMEOUTS["udp"] > 3 or TIMEOUTS["quarantine"] > 5 or TIMEOUTS["icmp"] > 3 or TIMEOUTS["tcp_established"] < 20:
        problems.append("udp <= 3 s, icmp <= 3 s, quarantine <= 5 s, tcp_established >= 20 s")
    if not log.get("file") or log.get("ipfix_collector") != "%s:%d" % IPFIX_ADDR:
        problems.append(f"a mapping log file and ipfix_collector = \"{IPFIX_ADDR[0]}:{IPFIX_ADDR[1]}\"")
    if problems:
        raise RuntimeError(f"test_blocks needs the lab of `run_e2e.py --suite blocks` ({', '.join(problems)}); "
                           f"running: {lab.describe()} {lab.config}")
    gw_ns = os.stat(Path("/run/netns") / NS_GW).st_ino
    _collector = TC._collector
    if _collector is not None and _collector.ns_inode != gw_ns:
        _collector.close()
        _collector = None
    if _collector is None:
        _collector = IpfixCollector()
        _collector_late = True
    assign_roles()
    # The discovery pings' ICMP mappings hold a block each: wait until they expired (icmp
    # timeout, a second more, the scanner), so that every subscriber starts with no block.
    subs = list(_pools)

    def no_mappings():
        return not any(mapping_rows(inside=s) for s in subs)
    if not wait_until(no_mappings, TIMEOUTS["icmp"] + 5, 0.25):
        raise RuntimeError(f"the discovery pings' mappings still listed {TIMEOUTS['icmp'] + 5} s later: "
                           f"{[r for s in subs for r in mapping_rows(inside=s)]}")
    note("subscribers: " + ", ".join(f"{r} {s} ({p})" for r, (s, p) in _roles.items()))


def tearDownModule():
    global _collector
    if _collector is not None:
        _collector.close()
        _collector = None
        TC._collector = None
    L.remove_subscribers([sub for sub in _pools if sub != IN_IP])


# --- the tests ----------------------------------------------------------------------------

class PortBlocks(unittest.TestCase):

    def test_flows_take_consecutive_ports_of_one_aligned_block_then_a_second_block_and_tcp_shares_them(self):
        """A subscriber's first 4 UDP flows reach the server from 4 consecutive ports of one
        block (its first port block-aligned: (port - 50000) % 4 == 0), all from its paired pool
        address; the 5th flow comes from a second, also aligned, block. Two TCP connections
        from the same subscriber then get the first two ports of the first block: the block
        holds its port numbers in every protocol, and TCP opened no block of its own."""
        sub, pool = role("blocks")
        flows = UdpFlows(sub, 47201)
        self.addCleanup(flows.close)
        ext = open_udp(self, flows, [44000 + i for i in range(BLOCK + 1)])
        self.assertEqual({pool}, {a for a, _ in ext}, f"paired pooling: {sub} (pool address {pool}) got {ext}")
        ports = [p for _, p in ext]
        a = ports[0]
        self.assertEqual(0, (a - FIRST) % BLOCK, f"the first flow's port {a} does not start a block of {BLOCK} "
                                                 f"from {FIRST}: flows got {ports}")
        self.assertEqual(list(range(a, a + BLOCK)), ports[:BLOCK],
                         f"the first {BLOCK} flows: consecutive ports of one block, in order")
        b = ports[BLOCK]
        self.assertEqual(0, (b - FIRST) % BLOCK, f"flow {BLOCK + 1} got {b}: not the first port of a block")
        self.assertNotIn(b, range(a, a + BLOCK), f"flow {BLOCK + 1} got {b}, inside the full first block")

        tcp = TcpConns(sub, 47202)
        self.addCleanup(tcp.close)
        tcp_ext = [tcp.open(44100 + i) for i in range(2)]
        self.assertEqual([(pool, a), (pool, a + 1)], tcp_ext,
                         f"TCP from {sub}: the first ports of its first block {a}-{a + BLOCK - 1} "
                         f"(UDP flows hold {ports})")
        for port in (44100, 44101):
            self.assertTrue(tcp.both_ways(port), f"TCP {sub}:{port} carries no data both ways")
        # The UDP flows still come from where they did (the TCP flows took no UDP port).
        for i in range(BLOCK + 1):
            self.assertTrue(echo_both_ways(flows, 44000 + i), f"UDP {sub}:{44000 + i} ({ext[i]}) got no echo")
            self.assertEqual({ext[i]}, flows.server.seen(44000 + i))
        note(f"blocks: {sub} on {pool}: UDP {ports} (blocks {a}-{a + BLOCK - 1}, {b}-{b + BLOCK - 1}); "
             f"TCP {[p for _, p in tcp_ext]}")


class BlockMappingLog(unittest.TestCase):

    def test_mapping_log_has_one_alloc_and_one_free_line_per_block_and_no_mapping_lines(self):
        """Five UDP flows of one subscriber (two blocks), left to expire: the mapping log has
        exactly two block-alloc lines for it, naming the two blocks the server saw the flows
        come from (pool:first-last, 4 ports each), no create or delete line for any of its
        flows, and, after the flows expired, a block-free line for each block, later than the
        flows' last packet. Every line of the file has the documented fields; no destination
        appears (RFC 6888 REQ-12)."""
        sc = block_log_scenario()
        self.assertEqual(BLOCK + 1, len(sc.external), f"flows of {sc.subscriber} reaching the server: {sc.external}")
        want = sorted({block_of(p) for _, p in sc.external})
        self.assertEqual(2, len(want), f"the flows came from {sc.external}")
        self.assertEqual({sc.pool}, {a for a, _ in sc.external})
        got_alloc = sorted((b.first, b.last) for b in sc.alloc)
        self.assertEqual(want, got_alloc, "block-alloc lines of " + sc.subscriber + ":\n" +
                         "\n".join(b.line for b in sc.alloc))
        self.assertEqual({sc.pool}, {b.pool for b in sc.alloc})
        others = [b.line for b in block_lines(sc.subscriber) if b.event == "block-alloc" and b.ms >= sc.start_ms
                  and b not in sc.alloc]
        self.assertEqual([], others, f"more block-alloc lines for {sc.subscriber}")
        for b in sc.alloc:
            self.assertLessEqual(b.ms, sc.opened_ms + 1000, b.line)
        self.assertEqual([], sc.mapping_lines, f"mapping lines for {sc.subscriber}'s flows in block mode")
        self.assertTrue(sc.gone_ms, f"{sc.subscriber}'s flows still listed {TIMEOUTS['udp'] + 4} s after their last packet")
        self.assertEqual(want, sorted((b.first, b.last) for b in sc.free),
                         "block-free lines of " + sc.subscriber + ":\n" + "\n".join(b.line for b in sc.free))
        for b in sc.free:
            self.assertLess(sc.last_ms - 1000, b.ms, f"block freed before the flows' last packet: {b.line}")
            self.assertLessEqual(b.ms, sc.gone_ms + 3000, b.line)
        text = MAPPING_LOG.read_text(errors="replace")
        bad = []
        for l in text.splitlines():
            m = LOG_LINE.match(l)
            if not m:
                bad.append(l)
                continue
            iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(m["ms"]) // 1000)) + ".%03dZ" % (int(m["ms"]) % 1000)
            if iso != m["iso"]:
                bad.append(f"{l}   (ISO time is not the Unix ms)")
            if m["bevent"]:
                first, last = int(m["b_first"]), int(m["b_last"])
                if not (L.lab().in_pool(m["b_addr"]) and last - first + 1 == BLOCK and block_of(first) == (first, last)):
                    bad.append(f"{l}   (not a block of {BLOCK} of the pool)")
        self.assertEqual([], bad, "lines of the mapping log not in the documented format")
        self.assertNotIn("203.0.113.", text, f"a destination address is in {MAPPING_LOG}")
        note(f"block log: {sc.subscriber} " + ", ".join(f"{b.pool}:{b.first}-{b.last}" for b in sc.alloc) +
             f"; freed {[b.ms - sc.last_ms for b in sc.free]} ms after the last packet")

    def test_who_names_the_block_holder_for_any_port_and_protocol_between_alloc_and_free(self):
        """`ephemeractl who POOL:PORT --at T --log FILE`, T between a block's alloc and free
        lines, names the subscriber and the block, for a port a flow used and for one of the
        block's ports no flow used, and for --proto tcp as well (the flows were UDP: a block
        holds its ports in every protocol); JSON from_ms/to_ms are the lines' times; for a T
        after the free line it answers nobody (exit 1)."""
        sc = block_log_scenario()
        self.assertTrue(sc.alloc and sc.free, f"alloc {sc.alloc}, free {sc.free}")
        checked = []
        for alloc in sc.alloc:
            free = [f for f in sc.free if (f.first, f.last) == (alloc.first, alloc.last)]
            self.assertEqual(1, len(free), f"block-free lines for {alloc.line}: {free}")
            free = free[0]
            block = f"{alloc.pool}:{alloc.first}-{alloc.last}"
            used = sorted(p for _, p in sc.external if alloc.first <= p <= alloc.last)
            unused = [p for p in range(alloc.first, alloc.last + 1) if p not in used]
            mid = (alloc.ms + free.ms) // 2
            for port in used[:1] + unused[-1:]:
                ep = f"{alloc.pool}:{port}"
                for proto in (None, "udp", "tcp"):
                    p = who(ep, mid, proto)
                    self.assertEqual(0, p.returncode, f"who {ep} --at {mid} --proto {proto}: {p.stdout}{p.stderr}")
                    self.assertIn(sc.subscriber, p.stdout.split(), p.stdout)
                    self.assertIn(block, p.stdout, p.stdout)
                p = who(ep, mid, "udp", as_json=True)
                self.assertEqual(0, p.returncode, p.stderr)
                holders = json.loads(p.stdout)
                self.assertEqual([(sc.subscriber, block, alloc.ms, free.ms)],
                                 [(h["inside"], h["block"], h["from_ms"], h["to_ms"]) for h in holders], p.stdout)
                after = free.ms + 1000
                p = who(ep, after, "udp")
                self.assertEqual(1, p.returncode, f"who {ep} --at {after} (after the block-free at {free.ms}): "
                                                  f"{p.stdout}{p.stderr}")
                checked.append(port)
        note(f"who: {sc.subscriber} named for ports {checked} between alloc and free, nobody after")


class BlockIpfix(unittest.TestCase):

    def test_ipfix_sends_port_block_allocation_and_deallocation_records(self):
        """The collector in eph-gw decodes template 257 (observationTimeMilliseconds, natEvent,
        sourceIPv4Address, postNATSourceIPv4Address, portRangeStart/End/StepSize/NumPorts, no
        destination) and, for the scenario's two blocks, one natEvent 16 (allocation) and one
        17 (de-allocation) each: the subscriber, its pool address, first and last port, step 1,
        4 ports, at the times of the log's lines; no per-mapping record (template 256) for the
        subscriber."""
        sc = block_log_scenario()
        want = sorted({block_of(p) for _, p in sc.external})

        def block_records(dec):
            """The subscriber's allocation records from the scenario's start on, and the
            de-allocations that closed them (not those of the discovery ping's block)."""
            out, open_ = [], set()
            for r in dec.records:
                r = {IE_BLOCK.get(k, k): v for k, v in r.items()}
                if r.get("sourceIPv4Address") != sc.subscriber:
                    continue
                key = (r.get("postNATSourceIPv4Address"), r.get("portRangeStart"))
                if r.get("natEvent") == NAT_EVENT_BLOCK_ALLOC and r.get("observationTimeMilliseconds", 0) >= sc.start_ms:
                    out.append(r)
                    open_.add(key)
                elif r.get("natEvent") == NAT_EVENT_BLOCK_FREE and key in open_:
                    out.append(r)
                    open_.discard(key)
            return out

        def done():
            dec = decode_ipfix(_collector.snapshot())
            return dec if sum(1 for r in block_records(dec) if r["natEvent"] == 17) >= len(want) else None
        dec = wait_until(done, 3.0) or decode_ipfix(_collector.snapshot())
        late = (" (the collector was opened after the gateway had started: the templates are re-sent "
                "every 100 messages or 60 s)") if _collector_late else ""
        self.assertTrue(dec.headers, f"no datagram reached the collector at {IPFIX_ADDR[0]}:{IPFIX_ADDR[1]}")
        self.assertEqual([], dec.problems, "messages not following RFC 7011")
        tmpl = {tid: fields for (_, tid), fields in dec.templates.items()}
        self.assertIn(257, tmpl, f"templates received: {sorted(tmpl)}{late}")
        ies = {ie for ie, ent, _ in tmpl[257] if ent is None}
        self.assertTrue({323, 230, 8, 225, 361, 362, 363, 364} <= ies, f"template 257: {tmpl[257]}")
        self.assertFalse({11, 12, 226, 228} & ies, f"template 257 carries a destination: {tmpl[257]}")
        recs = block_records(dec)
        for r in recs:
            self.assertEqual(257, r["_template"], r)
            self.assertEqual(sc.pool, r.get("postNATSourceIPv4Address"), r)
            self.assertEqual((r["portRangeStart"] + BLOCK - 1, 1, BLOCK),
                             (r["portRangeEnd"], r["portRangeStepSize"], r["portRangeNumPorts"]), r)
        got = sorted((r["natEvent"], r["portRangeStart"], r["portRangeEnd"]) for r in recs)
        self.assertEqual(sorted([(16, f, l) for f, l in want] + [(17, f, l) for f, l in want]), got,
                         f"block records of {sc.subscriber}: {recs}; {dec.undecodable} data sets without "
                         f"their template{late}")
        times = {(r["natEvent"], r["portRangeStart"]): r["observationTimeMilliseconds"] for r in recs}
        for b in sc.alloc + sc.free:
            t = times[(16 if b.event == "block-alloc" else 17, b.first)]
            self.assertLessEqual(abs(t - b.ms), 1000, f"record at {t}, log line {b.line}")
        per_mapping = [r for r in dec.records if r.get("_template") == 256 and r.get("sourceIPv4Address") == sc.subscriber]
        self.assertEqual([], per_mapping, f"per-mapping IPFIX records for {sc.subscriber} in block mode")
        note(f"ipfix: {len(dec.headers)} messages; blocks of {sc.subscriber}: " +
             ", ".join(f"{e}:{f}-{l}" for e, f, l in got))


class SubscriberLimits(unittest.TestCase):

    def check_refused(self, flows: UdpFlows, inside_port: int, held: dict, why: str) -> dict:
        """A new UDP flow of flows.subscriber, which holds the mappings `held` (inside port ->
        external endpoint): it reaches nobody, the subscriber gets an ICMP 3/13 quoting it,
        drops_out_subscriber_limit grows by the datagrams sent, no mapping is made and none
        taken away. Returns the counters' growth."""
        sub = flows.subscriber
        before = ctl_stats()
        with L.Sniffer(NS_IN, IN_IF) as sniff:
            refused = flows.open(inside_port, timeout=1.0)
            flows.stop(inside_port)
            flows.send(inside_port, b"more %d 1" % inside_port)
            sent = 2
            icmp = prohibited_for(sniff, sub, inside_port, 2.0)
            time.sleep(0.3)
        self.assertIsNone(refused, f"{why}: a new flow {sub}:{inside_port} reached the server from {refused}")
        self.assertEqual(set(), flows.server.seen(inside_port), f"{why}: the refused flow reached the server")
        self.assertIsNotNone(icmp, f"{why}: no ICMP destination unreachable code 13 to {sub} quoting its "
                                   f"datagram from port {inside_port} (RFC 6888 REQ-11)")
        self.assertEqual(GW_IN_IP, icmp.src, f"the ICMP 3/13 came from {icmp.src}")
        self.assertTrue(icmp.ip_ok and icmp.l4_checksum_ok(), f"checksums of the ICMP 3/13: {icmp}")
        after = ctl_stats()
        grew = {k: after.get(k, 0) - before.get(k, 0) for k in ("drops_out_subscriber_limit", "prohibited_sent")}
        self.assertGreaterEqual(grew["drops_out_subscriber_limit"], sent,
                                f"{why}: drops_out_subscriber_limit grew by {grew}, {sent} datagrams refused")
        self.assertGreaterEqual(grew["prohibited_sent"], 1, f"{why}: {grew}")
        rows = mapping_rows(inside=sub)
        self.assertEqual(sorted(f"{sub}:{p}" for p in held), sorted(r["inside"] for r in rows),
                         f"{why}: {sub}'s mappings after the refusal (none made, none taken away)")
        return grew

    def check_still_working(self, flows: UdpFlows, held: dict, tcp: TcpConns | None = None) -> None:
        """RFC 6888 REQ-11: the subscriber's flows still carry traffic both ways, from the same
        external endpoints."""
        for port, ext in held.items():
            if tcp is not None and port in tcp.conns:
                self.assertTrue(tcp.both_ways(port), f"TCP {flows.subscriber}:{port} ({ext}) after the refusal")
                continue
            self.assertTrue(echo_both_ways(flows, port), f"UDP {flows.subscriber}:{port} ({ext}) got no echo "
                                                         f"after the refusal")
            self.assertEqual({ext}, flows.server.seen(port), f"UDP {flows.subscriber}:{port}")

    def check_bystander(self, inside_port: int) -> tuple[str, int]:
        """Another subscriber (own pool address) opens a new flow while the first is at its
        limit: it reaches the server."""
        sub, pool = role("bystander")
        flows = UdpFlows(sub, 47401)
        try:
            ext = flows.open(inside_port)
            self.assertIsNotNone(ext, f"another subscriber, {sub}, could not open a flow")
            self.assertEqual(pool, ext[0])
            self.assertTrue(echo_both_ways(flows, inside_port))
            return ext
        finally:
            flows.close()

    def test_rfc6888_req4_block_limit_refuses_a_new_flow_with_icmp_3_13_and_keeps_existing_flows(self):
        """max_blocks_per_subscriber = 2: 8 UDP flows fill the subscriber's two blocks; the 9th
        UDP flow, with 8 mappings (under the port limit of 9), is refused by the block limit:
        it reaches nobody, the subscriber gets ICMP 3/13, drops_out_subscriber_limit grows, no
        third block is allocated (log); the 8 flows still pass both ways and another
        subscriber still opens flows."""
        sub, pool = role("block-limit")
        flows = UdpFlows(sub, 47402)
        self.addCleanup(flows.close)
        t0 = now_ms() - CLOCK_SLACK_MS
        n = MAX_BLOCKS * BLOCK
        self.assertLess(n, MAX_PORTS, "the block limit must bite before the port limit here")
        inside = [46000 + i for i in range(n)]
        ext = open_udp(self, flows, inside)
        blocks = sorted({block_of(p) for _, p in ext})
        self.assertEqual(MAX_BLOCKS, len(blocks), f"{n} flows: {ext}")
        self.assertEqual(n, len({p for _, p in ext}), f"{n} flows, {n} ports: {ext}")
        held = dict(zip(inside, ext))
        grew = self.check_refused(flows, 46100, held, f"{sub} holding {MAX_BLOCKS} full blocks")
        time.sleep(0.2)
        allocs = blocks_since(sub, t0)[0]
        self.assertEqual(blocks, sorted((b.first, b.last) for b in allocs),
                         "block-alloc lines (no third block for the refused flow):\n" + "\n".join(b.line for b in allocs))
        self.check_still_working(flows, held)
        other = self.check_bystander(46200)
        note(f"block limit: {sub} with {n} flows in {blocks}: 9th refused, {grew}; bystander got {other}")

    def test_rfc6888_req4_port_limit_counts_every_protocol_and_refuses_with_icmp_3_13(self):
        """max_ports_per_subscriber = 9: 5 UDP and 4 TCP flows are 9 mappings in two blocks
        whose second still has 3 free UDP ports; a 10th flow (UDP) is refused all the same: it
        reaches nobody, the subscriber gets ICMP 3/13, drops_out_subscriber_limit grows; the 9
        flows, UDP and TCP, still pass both ways (RFC 6888 REQ-11) and another subscriber
        still opens flows."""
        sub, pool = role("port-limit")
        flows = UdpFlows(sub, 47403)
        self.addCleanup(flows.close)
        tcp = TcpConns(sub, 47404)
        self.addCleanup(tcp.close)
        n_udp = BLOCK + 1
        n_tcp = MAX_PORTS - n_udp
        self.assertLessEqual(n_tcp, MAX_BLOCKS * BLOCK)
        udp_inside = [47000 + i for i in range(n_udp)]
        held = dict(zip(udp_inside, open_udp(self, flows, udp_inside)))
        for i in range(n_tcp):
            held[47100 + i] = tcp.open(47100 + i)
        blocks = sorted({block_of(p) for _, p in held.values()})
        self.assertEqual({pool}, {a for a, _ in held.values()})
        self.assertEqual(2, len(blocks), f"{n_udp} UDP + {n_tcp} TCP flows: {held}")
        udp_used = {held[p][1] for p in udp_inside}
        free_udp = [p for f, l in blocks for p in range(f, l + 1) if p not in udp_used]
        self.assertEqual(MAX_BLOCKS * BLOCK - n_udp, len(free_udp))
        self.assertEqual(MAX_PORTS, len(mapping_rows(inside=sub)), f"{sub} at the port limit")
        grew = self.check_refused(flows, 47050, held,
                                  f"{sub} with {MAX_PORTS} mappings (UDP ports {free_udp} of its blocks still free)")
        self.check_still_working(flows, held, tcp)
        other = self.check_bystander(47200)
        note(f"port limit: {sub} with {n_udp} UDP + {n_tcp} TCP mappings: 10th refused, {grew}; bystander got {other}")


class PortsInBlockMode(unittest.TestCase):

    def assert_counts(self, pool: str, want: tuple, flows_open: int, why: str) -> None:
        """ephemeractl ports --proto udp shows want (free, quarantined, in_use) (waiting,
        bounded, for the expiry scan), adding up to the 32 ports; in use = the flows open =
        the UDP mappings listed on the address."""
        size = LAST - FIRST + 1
        got = wait_until(lambda: (lambda c: c if c == want else None)(port_counts(pool)), 3.0) or port_counts(pool)
        self.assertEqual(size, sum(got), f"{why}: free + quarantined + in use = {got} on {pool}")
        self.assertEqual(want, got, f"{why}: ports --pool {pool} --proto udp (free, quarantined, in_use)")
        self.assertEqual(flows_open, got[2], why)
        self.assertEqual(flows_open, len(mapping_rows(pool=pool, proto="udp")), why)

    def test_ports_counts_free_quarantined_and_in_use_ports_of_blocks(self):
        """On a pool address of its own: 32 free UDP ports; 5 flows (two blocks) make 5 in use
        and 27 free (24 in free blocks, 3 in the second block) while TCP shows 32 free, none in
        use; the flow alone in the second block expires: that block, emptied, is quarantined
        (4 quarantined, 24 free, 4 in use); after the quarantine it is free again (28, 0, 4);
        the other flows expire: the first block quarantined (28, 4, 0); then (32, 0, 0). At
        every step in_use = the flows open = the mappings listed."""
        sub, pool = role("ports")
        size = LAST - FIRST + 1
        q = TIMEOUTS["quarantine"]
        udp = TIMEOUTS["udp"]
        # The discovery ping's block may still be in quarantine.
        start = wait_until(lambda: (lambda c: c if c == (size, 0, 0) else None)(port_counts(pool)), q + 3)
        self.assertEqual((size, 0, 0), start or port_counts(pool), f"{pool} before any flow")
        flows = UdpFlows(sub, 47501)
        self.addCleanup(flows.close)
        inside = [48000 + i for i in range(BLOCK + 1)]
        ext = open_udp(self, flows, inside)
        self.assertEqual(2, len({block_of(p) for _, p in ext}), f"{ext}")
        self.assert_counts(pool, (size - 2 * BLOCK + (BLOCK - 1), 0, BLOCK + 1), BLOCK + 1, "5 flows in 2 blocks")
        tf, tq, tu = port_counts(pool, "tcp")
        self.assertEqual((size, 0, 0), (tf, tq, tu), f"TCP on {pool} with 5 UDP flows")

        flows.stop(inside[-1])       # alone in the second block
        self.assert_counts_after(pool, (size - 2 * BLOCK, BLOCK, BLOCK), BLOCK, udp + 4,
                                 "the second block emptied: quarantined")
        t_q = time.monotonic()
        self.assert_counts_after(pool, (size - BLOCK, 0, BLOCK), BLOCK, q + 3, "the second block back from quarantine")
        back = time.monotonic() - t_q
        for p in inside[:-1]:
            flows.stop(p)
        self.assert_counts_after(pool, (size - BLOCK, BLOCK, 0), 0, udp + 4, "the first block emptied: quarantined")
        self.assert_counts_after(pool, (size, 0, 0), 0, q + 3, "every block free again")
        note(f"ports {pool}: 5 flows -> {size - BLOCK - 1}/0/5; emptied blocks quarantined, back about {back:.1f} s later")

    def assert_counts_after(self, pool: str, want: tuple, flows_open: int, timeout: float, why: str) -> None:
        """Polls ports until it shows want (bounded); every look adds up to the 32 ports."""
        size = LAST - FIRST + 1
        deadline = time.monotonic() + timeout
        while True:
            got = port_counts(pool)
            self.assertEqual(size, sum(got), f"{why}: free + quarantined + in use = {got} on {pool}")
            if got == want:
                break
            self.assertLess(time.monotonic(), deadline, f"{why}: ports --pool {pool} --proto udp shows {got}, "
                                                        f"not {want}, {timeout} s on")
            time.sleep(POLL_S)
        self.assertEqual(flows_open, len(mapping_rows(pool=pool, proto="udp")), why)


ORDER = [PortBlocks, BlockMappingLog, BlockIpfix, SubscriberLimits, PortsInBlockMode]


def ordered_suite(pattern: str | None = None) -> unittest.TestSuite:
    return L.ordered_suite(ORDER, pattern)


def load_tests(loader, tests, pattern):  # python3 -m unittest keeps the order too
    return ordered_suite()
