"""End-to-end checks of ephemera's control plane in the lab (scripts/lab): expiry, port
quarantine and FIFO reuse, port exhaustion, the mapping log and `ephemeractl who`, IPFIX
(RFC 7011 / RFC 8158), the Prometheus endpoint and `ephemeractl sessions`. Each check is one
test method named after the behaviour it checks, and looks at what the far side, the log,
the collector or ephemeractl saw.

The lab must be up with the configuration that `tests/e2e/run_e2e.py --suite control`
renders (short timeouts, 8 ports 50000-50007 without shuffling, one worker, a mapping log,
an IPFIX collector at 127.0.0.1:4739 and metrics at 127.0.0.1:9469 inside eph-gw);
setUpModule refuses any other. The tests read the timeouts, the port range and the log
path from the running configuration rather than assuming them. The runner opens the IPFIX
collector (start_collector_before_gateway) as soon as scripts/lab has made eph-gw, before the
gateway sends its first message, the only one with the template for the next 60 s.

Independence: with paired pooling every subscriber uses one pool address, and every pool
address has its own 8-port partition per protocol. The port-reuse and exhaustion tests each
use a subscriber whose pool address (found with one ping, ICMP having partitions of its
own) nobody else uses, so that they start from a fresh partition. The expiry, mapping-log
and IPFIX tests share one UDP flow (100.64.0.2:40001 -> 203.0.113.2:9999), run once and
remembered (expired_reference_flow()); whichever of them runs first makes it.

Every wait is bounded; every background thread is stopped by the test that started it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import tomllib
import unittest
from pathlib import Path

import labnet as L
from labnet import GW_IN_IP, IN_IF, IN_IP, NS_GW, NS_IN, NS_OUT, OUT_IP, PROTO_UDP

NOTES: list[str] = []  # one line per test worth printing in the runner's summary

FILE_PREFIX = "ephemera-lab"
IPFIX_ADDR = ("127.0.0.1", 4739)    # [log] ipfix_collector, inside eph-gw
METRICS_ADDR = ("127.0.0.1", 9469)  # [metrics] listen, inside eph-gw
POLL_S = 0.1                        # how often the waits below look again
KEEPALIVE_S = 0.25                  # how often a flow kept alive sends (UDP timeout: seconds)

# Set by setUpModule from the running configuration.
CTL = ""
TIMEOUTS: dict = {}
MAPPING_LOG = Path()


def note(text: str) -> None:
    NOTES.append(text)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- ephemeractl --------------------------------------------------------------------------

def ctl(*args, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([CTL, "--file-prefix", FILE_PREFIX, *map(str, args)], capture_output=True,
                       text=True, timeout=15, stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError(f"ephemeractl {' '.join(map(str, args))}: exit {p.returncode}: "
                             f"{p.stderr.strip() or p.stdout.strip()}")
    return p


def ctl_json(*args):
    return json.loads(ctl("--json", *args).stdout)


def ctl_stats() -> dict:
    return ctl_json("stats")


def udp_socket(test: unittest.TestCase, ns: str, addr: str, port: int, timeout: float) -> socket.socket:
    """A UDP socket in ns bound to addr:port, closed when the test ends."""
    s = L.ns_socket(ns, socket.AF_INET, socket.SOCK_DGRAM)
    test.addCleanup(s.close)
    s.bind((addr, port))
    s.settimeout(timeout)
    return s

def tcp_listener(test: unittest.TestCase, ns: str, addr: str, port: int, timeout: float) -> socket.socket:
    """A listening TCP socket in ns on addr:port, closed when the test ends."""
    s = L.ns_socket(ns, socket.AF_INET, socket.SOCK_STREAM)
    test.addCleanup(s.close)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(1)
    s.settimeout(timeout)
    return s



def mapping_rows(**filters) -> list[dict]:
    """`ephemeractl --json mappings` with filters (inside=, pool=, port=, proto=), as rows."""
    args = ["mappings", "--limit", "200"]
    for k, v in filters.items():
        args += [f"--{k}", v]
    t = ctl_json(*args)
    cols = [c for c in ("protocol", "inside", "external", "sessions", "expires_in", "worker") if c in t]
    return [dict(zip(cols, vals)) for vals in zip(*(t[c] for c in cols))]


def port_counts(pool: str, proto: str = "udp") -> tuple[int, int, int]:
    """(free, quarantined, in_use) of a pool address and protocol, summed over workers."""
    t = ctl_json("ports", "--pool", pool, "--proto", proto)
    if not t.get("free"):
        raise AssertionError(f"ephemeractl ports --pool {pool} --proto {proto}: no rows: {t}")
    return sum(t["free"]), sum(t["quarantined"]), sum(t["in_use"])


def wait_until(predicate, timeout: float, interval: float = POLL_S):
    """Calls predicate until it returns something true (returned) or timeout passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


# --- UDP flows ----------------------------------------------------------------------------

class UdpServer:
    """A UDP socket in eph-out that records, per tag (the first word of each datagram: the
    client's inside port), the source endpoint it arrived from; answers datagrams that start
    with b"echo" to their source."""

    def __init__(self, port: int):
        self.sock = L.ns_socket(NS_OUT, socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((OUT_IP, port))
        self.sock.settimeout(0.05)
        self.port = port
        self.lock = threading.Lock()
        self.sources: dict[int, set] = {}    # tag -> {(addr, port)}
        self.log: list[tuple[float, int, bytes, tuple]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"udp-server-{port}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 120
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                data, src = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                break
            words = data.split()
            tag = int(words[1]) if len(words) > 1 and words[1].isdigit() else -1
            with self.lock:
                self.sources.setdefault(tag, set()).add(src)
                self.log.append((time.monotonic(), tag, data, src))
            if data.startswith(b"echo"):
                try:
                    self.sock.sendto(data, src)
                except OSError:
                    pass

    def seen(self, tag: int) -> set:
        with self.lock:
            return set(self.sources.get(tag, ()))

    def received(self, payload: bytes) -> list[tuple]:
        with self.lock:
            return [src for _, _, data, src in self.log if data == payload]

    def count(self, tag: int) -> int:
        with self.lock:
            return sum(1 for _, t, _, _ in self.log if t == tag)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


class UdpFlows:
    """UDP flows from one subscriber address (one inside port each) to one UdpServer, kept
    alive by a background thread that sends on every flow still wanted every KEEPALIVE_S.
    Sockets are unconnected: an ICMP error from the gateway never turns a later send into an
    exception."""

    def __init__(self, subscriber: str, server_port: int):
        self.subscriber = subscriber
        self.server = UdpServer(server_port)
        self.socks: dict[int, socket.socket] = {}
        self.external: dict[int, tuple[str, int]] = {}
        self._alive: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ka = threading.Thread(target=self._keepalive, name="udp-keepalive", daemon=True)
        self._ka.start()

    def _keepalive(self) -> None:
        deadline = time.monotonic() + 120
        n = 0
        while not self._stop.wait(KEEPALIVE_S) and time.monotonic() < deadline:
            with self._lock:
                ports = sorted(self._alive)
            for p in ports:
                n += 1
                self.send(p, b"ka %d %d" % (p, n))

    def sock(self, inside_port: int) -> socket.socket:
        if inside_port not in self.socks:
            s = L.ns_socket(NS_IN, socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((self.subscriber, inside_port))
            s.settimeout(2.0)
            self.socks[inside_port] = s
        return self.socks[inside_port]

    def send(self, inside_port: int, payload: bytes) -> None:
        self.sock(inside_port).sendto(payload, (OUT_IP, self.server.port))

    def open(self, inside_port: int, timeout: float = 1.5) -> tuple[str, int] | None:
        """Sends the flow's first datagram; returns the external endpoint the server saw it
        from (and keeps the flow alive from then on), or None when nothing arrived."""
        self.send(inside_port, b"new %d" % inside_port)
        seen = wait_until(lambda: self.server.seen(inside_port), timeout, 0.01)
        if not seen:
            return None
        if len(seen) != 1:
            raise AssertionError(f"flow from {self.subscriber}:{inside_port} arrived from several "
                                 f"external endpoints: {sorted(seen)}")
        ext = next(iter(seen))
        self.external[inside_port] = ext
        with self._lock:
            self._alive.add(inside_port)
        return ext

    def stop(self, inside_port: int) -> None:
        """Stops keeping the flow alive (it expires after the UDP timeout)."""
        with self._lock:
            self._alive.discard(inside_port)

    def close(self) -> None:
        self._stop.set()
        self._ka.join(5)
        for s in self.socks.values():
            s.close()
        self.server.close()


def wait_mapping_gone(subscriber: str, inside_port: int, timeout: float) -> float | None:
    """time.monotonic() when ephemeractl first no longer lists subscriber:inside_port (UDP)."""
    key = f"{subscriber}:{inside_port}"

    def gone():
        rows = mapping_rows(inside=subscriber, proto="udp")
        return time.monotonic() if all(r["inside"] != key for r in rows) else None
    return wait_until(gone, timeout)


# --- subscribers and their pool addresses -------------------------------------------------

_pools: dict[str, str] = {}


def paired_pool(subscriber: str) -> str:
    """The pool address the gateway pairs with subscriber, found with one ICMP echo (ICMP has
    partitions of its own: the UDP partitions stay untouched)."""
    if subscriber in _pools:
        return _pools[subscriber]
    if subscriber != IN_IP:
        L.add_subscribers([subscriber])
    r = L.ns_run(NS_IN, ["ping", "-n", "-c", "1", "-W", "2", "-I", subscriber, OUT_IP], timeout=10)
    if r.returncode != 0:
        raise RuntimeError(f"ping -I {subscriber} {OUT_IP} through the gateway failed: {r.stdout}{r.stderr}")
    rows = mapping_rows(inside=subscriber, proto="icmp")
    if not rows:
        raise RuntimeError(f"no ICMP mapping listed for {subscriber} right after its ping")
    pools = {r["external"].rpartition(":")[0] for r in rows}
    if len(pools) != 1:
        raise AssertionError(f"paired pooling: subscriber {subscriber} has ICMP mappings on {pools}")
    _pools[subscriber] = pools.pop()
    return _pools[subscriber]


_roles: dict[str, tuple[str, str]] = {}


def subscriber_for(role: str) -> tuple[str, str]:
    """(subscriber, pool address) for a test role ("reuse", "exhaustion"): a subscriber whose
    pool address is that of no other role and not that of 100.64.0.2."""
    if role in _roles:
        return _roles[role]
    taken = {paired_pool(IN_IP)} | {pool for _, pool in _roles.values()}
    used_subs = {IN_IP} | {sub for sub, _ in _roles.values()}
    for i in range(3, 64):
        sub = f"100.64.0.{i}"
        if sub in used_subs:
            continue
        pool = paired_pool(sub)
        if pool not in taken:
            _roles[role] = (sub, pool)
            return _roles[role]
    raise RuntimeError(f"no subscriber among 100.64.0.3-63 is paired with a pool address other than {taken}")


# --- IPFIX --------------------------------------------------------------------------------

IE_NAMES = {323: "observationTimeMilliseconds", 230: "natEvent", 4: "protocolIdentifier",
            8: "sourceIPv4Address", 7: "sourceTransportPort", 225: "postNATSourceIPv4Address",
            227: "postNAPTSourceTransportPort", 12: "destinationIPv4Address",
            11: "destinationTransportPort", 226: "postNATDestinationIPv4Address",
            228: "postNAPTDestinationTransportPort"}
IPV4_IES = {8, 12, 225, 226}
NAT44_BIB_CREATE, NAT44_BIB_DELETE = 8, 9


def _collector_socket() -> tuple[socket.socket, int]:
    """Called in eph-gw: the collector's socket and the namespace's inode."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.bind(IPFIX_ADDR)
    except OSError:
        s.close()
        raise
    return s, os.stat("/proc/thread-self/ns/net").st_ino


class IpfixCollector:
    """A UDP socket at 127.0.0.1:4739 inside eph-gw keeping every datagram it receives.
    ns_inode: the network namespace it was made in."""

    def __init__(self, made: tuple[socket.socket, int] | None = None):
        self.sock, self.ns_inode = made or L.in_netns(NS_GW, _collector_socket)
        self.sock.settimeout(0.05)
        self.lock = threading.Lock()
        self.datagrams: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ipfix-collector", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 600
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                data = self.sock.recv(65535)
            except socket.timeout:
                continue
            except OSError:
                break
            with self.lock:
                self.datagrams.append(data)

    def snapshot(self) -> list[bytes]:
        with self.lock:
            return list(self.datagrams)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@dataclasses.dataclass
class IpfixDecoded:
    headers: list[dict]
    templates: dict          # (domain, template id) -> [(ie, enterprise, length)]
    records: list[dict]      # decoded data records, IE names as keys (plus "_template")
    problems: list[str]      # what does not follow RFC 7011
    undecodable: int = 0     # data sets whose template had not arrived (yet)


def _field_value(ie: int, raw: bytes):
    if ie in IPV4_IES and len(raw) == 4:
        return socket.inet_ntoa(raw)
    return int.from_bytes(raw, "big")


def decode_ipfix(datagrams: list[bytes]) -> IpfixDecoded:
    """A small RFC 7011 decoder: message headers, template sets (id 2), data sets (id >= 256),
    variable-length fields; options templates (id 3) skipped."""
    out = IpfixDecoded([], {}, [], [])
    for n, msg in enumerate(datagrams):
        if len(msg) < 16:
            out.problems.append(f"message {n}: {len(msg)} bytes, shorter than a header")
            continue
        version, length, export_time, seq, domain = struct.unpack("!HHIII", msg[:16])
        out.headers.append({"version": version, "length": length, "export_time": export_time,
                            "sequence": seq, "domain": domain, "size": len(msg), "records": 0})
        if version != 10:
            out.problems.append(f"message {n}: version {version}, not 10")
            continue
        if length != len(msg):
            out.problems.append(f"message {n}: length field {length}, datagram {len(msg)} bytes")
            continue
        off = 16
        try:
            while off + 4 <= length:
                set_id, set_len = struct.unpack("!HH", msg[off:off + 4])
                if set_len < 4 or off + set_len > length:
                    out.problems.append(f"message {n}: set {set_id} at {off} has length {set_len}")
                    break
                body = msg[off + 4:off + set_len]
                off += set_len
                if set_id == 2:
                    pos = 0
                    while len(body) - pos >= 4:
                        tid, count = struct.unpack("!HH", body[pos:pos + 4])
                        pos += 4
                        fields = []
                        for _ in range(count):
                            ie, flen = struct.unpack("!HH", body[pos:pos + 4])
                            pos += 4
                            ent = None
                            if ie & 0x8000:
                                ent = struct.unpack("!I", body[pos:pos + 4])[0]
                                pos += 4
                                ie &= 0x7FFF
                            fields.append((ie, ent, flen))
                        if tid < 256:
                            out.problems.append(f"message {n}: template id {tid} < 256")
                        if count == 0:
                            out.templates.pop((domain, tid), None)  # withdrawal
                        else:
                            out.templates[(domain, tid)] = fields
                elif set_id == 3:
                    continue
                elif set_id >= 256:
                    fields = out.templates.get((domain, set_id))
                    if fields is None:
                        # RFC 7011 §8: over UDP a collector that starts late waits for the
                        # template's next refresh; these records are lost to it.
                        out.undecodable += 1
                        continue
                    min_len = sum(1 if fl == 65535 else fl for _, _, fl in fields)
                    pos = 0
                    while len(body) - pos >= max(min_len, 1):
                        rec = {"_template": set_id}
                        for ie, ent, fl in fields:
                            if fl == 65535:
                                fl = body[pos]
                                pos += 1
                                if fl == 255:
                                    fl = struct.unpack("!H", body[pos:pos + 2])[0]
                                    pos += 2
                            raw = body[pos:pos + fl]
                            pos += fl
                            name = IE_NAMES.get(ie, str(ie)) if ent is None else f"{ent}/{ie}"
                            rec[name] = _field_value(ie, raw)
                        out.records.append(rec)
                        out.headers[-1]["records"] += 1
                else:
                    out.problems.append(f"message {n}: set id {set_id} (reserved)")
        except (struct.error, IndexError) as e:
            out.problems.append(f"message {n}: truncated set at {off}: {e}")
    return out


_collector: IpfixCollector | None = None
_collector_late = False  # made after the gateway started (the template may be a minute away)


def start_collector_before_gateway(timeout: float = 120.0) -> threading.Thread:
    """For the runner, before `scripts/lab up`: a thread that opens the collector in eph-gw
    as soon as scripts/lab has made the namespace, i.e. before the gateway starts there and
    sends its first message, the one with the template (over UDP the template is repeated
    only every 100 messages or 60 s, README). setUpModule checks that it is the namespace
    the gateway runs in, and makes a late one otherwise."""
    def run():
        global _collector
        deadline = time.monotonic() + timeout
        path = Path("/run/netns") / NS_GW
        while time.monotonic() < deadline:
            if path.exists():
                try:
                    _collector = IpfixCollector(L.in_netns(NS_GW, _collector_socket))
                    return
                except OSError:
                    pass  # not yet a namespace (ip netns add mounts it a moment later)
            time.sleep(0.002)
    t = threading.Thread(target=run, name="ipfix-collector-early", daemon=True)
    t.start()
    return t


# --- the reference flow: 100.64.0.2:40001 -> 203.0.113.2:9999, made once, left to expire ---

REF_INSIDE_PORT = 40001
REF_SERVER_PORT = 9999


@dataclasses.dataclass
class RefFlow:
    inside: tuple
    remote: tuple
    external: tuple = ()                # what the server saw
    sent_ms: int = 0                    # wall clock just before the first datagram
    seen_ms: int = 0                    # wall clock when the server had it
    last_ms: int = 0                    # wall clock of the last packet through the mapping
    listed: list = dataclasses.field(default_factory=list)   # ephemeractl rows while live
    reply_delivered: bool = False       # the server's answer reached the inside (while live)
    gone_after_s: float | None = None   # since the last packet, when ephemeractl stopped listing it
    gone_ms: int = 0
    in_use_live: int = 0                # ports in use on its pool address while it was live
    released_after_s: float | None = None  # since gone, when its port left "in use"
    late_inbound: list = dataclasses.field(default_factory=list)  # what reached eph-in afterwards
    late_inbound_sent: int = 0
    inbound_drops: dict = dataclasses.field(default_factory=dict)  # drops_in_* growth meanwhile


_ref: RefFlow | None = None


def expired_reference_flow() -> RefFlow:
    """Runs the reference scenario once: one datagram out, the answer back, ephemeractl lists
    the mapping; then no traffic until ephemeractl no longer lists it (bounded: UDP timeout +
    4 s); then the server sends to the old external endpoint and eph-in is watched."""
    global _ref
    if _ref is not None:
        return _ref
    ref = RefFlow(inside=(IN_IP, REF_INSIDE_PORT), remote=(OUT_IP, REF_SERVER_PORT))
    inside = L.ns_socket(NS_IN, socket.AF_INET, socket.SOCK_DGRAM)
    server = L.ns_socket(NS_OUT, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        inside.bind(ref.inside)
        inside.settimeout(2.0)
        server.bind(ref.remote)
        server.settimeout(2.0)
        ref.sent_ms = now_ms()
        inside.sendto(b"ephemera-e2e expiry", ref.remote)
        _, ref.external = server.recvfrom(2048)
        ref.seen_ms = now_ms()
        ref.listed = [r for r in mapping_rows(inside=IN_IP, proto="udp")
                      if r["inside"] == f"{IN_IP}:{REF_INSIDE_PORT}"]
        ref.in_use_live = port_counts(ref.external[0])[2]
        server.sendto(b"answer", ref.external)
        try:
            data, src = inside.recvfrom(2048)
            ref.reply_delivered = (data, src) == (b"answer", ref.remote)
        except socket.timeout:
            pass
        ref.last_ms = now_ms()
        last = time.monotonic()
        gone_at = wait_mapping_gone(IN_IP, REF_INSIDE_PORT, TIMEOUTS["udp"] + 4)
        if gone_at is not None:
            ref.gone_after_s = gone_at - last
            ref.gone_ms = now_ms()
            # The old external endpoint, from the server's socket: nothing may reach eph-in,
            # neither at once (expired, perhaps not yet released) nor once the port is released.
            before = ctl_stats()
            with L.Sniffer(NS_IN, IN_IF) as sniff:
                server.sendto(b"too late 0", ref.external)
                ref.late_inbound_sent += 1
                released = wait_until(lambda: port_counts(ref.external[0])[2] < ref.in_use_live
                                      and time.monotonic(), 3.0)
                ref.released_after_s = released - gone_at if released else None
                for i in (1, 2):
                    server.sendto(b"too late %d" % i, ref.external)
                    ref.late_inbound_sent += 1
                    time.sleep(0.05)
                time.sleep(1.0)
                ref.late_inbound = [str(p) for p in sniff.snapshot()
                                    if p.proto == PROTO_UDP and p.src == OUT_IP and p.sport == REF_SERVER_PORT]
            inside.settimeout(0.01)
            try:
                data, src = inside.recvfrom(2048)
                ref.late_inbound.append(f"socket {IN_IP}:{REF_INSIDE_PORT} received {data!r} from {src}")
            except socket.timeout:
                pass
            after = ctl_stats()
            ref.inbound_drops = {k[len("drops_in_"):]: after[k] - before.get(k, 0) for k in after
                                 if k.startswith("drops_in_") and after[k] != before.get(k, 0)}
    finally:
        inside.close()
        server.close()
    _ref = ref
    return ref


def read_mapping_log() -> list[str]:
    return MAPPING_LOG.read_text(errors="replace").splitlines()


# --- module set-up ------------------------------------------------------------------------

def setUpModule():
    global CTL, TIMEOUTS, MAPPING_LOG, _collector, _collector_late
    lab = L.lab()
    if lab.gateway != "ephemera":
        raise unittest.SkipTest("the control plane is ephemera's")
    state = dict(line.partition("=")[::2] for line in (L.STATE_DIR / "state").read_text().splitlines())
    CTL = os.path.join(state["build"], "control", "ephemeractl")
    config = tomllib.loads(lab.config.read_text())
    TIMEOUTS = {"udp": 300, "icmp": 60, "tcp_transitory": 240, "tcp_established": 7440, "quarantine": 120}
    TIMEOUTS.update(config.get("timeouts", {}))
    log = config.get("log", {})
    MAPPING_LOG = Path(log.get("file", ""))
    problems = []
    if lab.workers != 1 or config.get("dataplane", {}).get("workers", 1) != 1:
        problems.append("one worker")
    if lab.ports[1] - lab.ports[0] + 1 != 8 or config.get("nat", {}).get("randomize_ports", True):
        problems.append("8 ports with randomize_ports = false")
    if TIMEOUTS["udp"] > 3 or TIMEOUTS["quarantine"] > 5 or TIMEOUTS["tcp_established"] < 3:
        problems.append("udp <= 3 s, quarantine <= 5 s, tcp_established >= 3 s")
    if not log.get("file") or log.get("ipfix_collector") != "%s:%d" % IPFIX_ADDR:
        problems.append(f"a mapping log file and ipfix_collector = \"{IPFIX_ADDR[0]}:{IPFIX_ADDR[1]}\"")
    if config.get("metrics", {}).get("listen") != "%s:%d" % METRICS_ADDR:
        problems.append(f"metrics listen = \"{METRICS_ADDR[0]}:{METRICS_ADDR[1]}\"")
    if problems:
        raise RuntimeError(f"test_control needs the lab of `run_e2e.py --suite control` ({', '.join(problems)}); "
                           f"running: {lab.describe()} {lab.config}")
    gw_ns = os.stat(Path("/run/netns") / NS_GW).st_ino
    if _collector is not None and _collector.ns_inode != gw_ns:
        _collector.close()
        _collector = None
    if _collector is None:
        _collector = IpfixCollector()
        _collector_late = True
    # Pool addresses of the subscribers (ICMP mappings: their creation also sends the IPFIX
    # messages that reach the collector now that it listens).
    for role in ("reuse", "exhaustion"):
        subscriber_for(role)
    wait_until(lambda: _collector.snapshot(), 3.0)


def tearDownModule():
    global _collector
    if _collector is not None:
        _collector.close()
        _collector = None
    L.remove_subscribers([sub for sub in _pools if sub != IN_IP])


# --- the tests ----------------------------------------------------------------------------

class UdpMappingExpiry(unittest.TestCase):

    def test_udp_mapping_disappears_after_its_timeout_and_inbound_no_longer_reaches_inside(self):
        """100.64.0.2:40001 -> 203.0.113.2:9999: ephemeractl lists the mapping with the
        external endpoint the server saw; after the UDP timeout without traffic it is gone
        (never before: the daemon counts whole seconds and adds one, so a flow lives at
        least its timeout and at most a second more, plus the scanner's period), its
        port is no longer counted in use, and datagrams from the server to the old external
        endpoint are dropped, never reaching eph-in."""
        ref = expired_reference_flow()
        udp = TIMEOUTS["udp"]
        ext = f"{ref.external[0]}:{ref.external[1]}"
        self.assertTrue(L.lab().in_pool(ref.external[0]) and L.lab().in_port_range(ref.external[1]),
                        f"the server saw {ext}: not a pool endpoint")
        self.assertEqual(1, len(ref.listed), f"ephemeractl mappings rows for {IN_IP}:{REF_INSIDE_PORT}: {ref.listed}")
        row = ref.listed[0]
        self.assertEqual(("udp", ext), (row["protocol"], row["external"]), row)
        self.assertLessEqual(row["expires_in"], udp + 1, row)  # whole seconds, plus the one the packet came in
        self.assertTrue(ref.reply_delivered, "the server's answer did not reach the inside while the mapping was live")
        self.assertIsNotNone(ref.gone_after_s,
                             f"the mapping was still listed {udp + 4} s after its last packet (udp timeout {udp} s)")
        self.assertGreaterEqual(ref.gone_after_s, udp - 0.1,
                                f"the mapping went {ref.gone_after_s:.2f} s after its last packet, "
                                f"before its {udp} s timeout")
        self.assertLessEqual(ref.gone_after_s, udp + 3.0)
        self.assertIsNotNone(ref.released_after_s,
                             f"{ext} still counted in use by ephemeractl ports 3 s after the mapping expired")
        self.assertEqual([], ref.late_inbound,
                         f"after expiry, datagrams from {OUT_IP}:{REF_SERVER_PORT} to {ext} reached eph-in")
        self.assertGreaterEqual(sum(ref.inbound_drops.values()), ref.late_inbound_sent,
                                f"inbound drops grew by {ref.inbound_drops} for "
                                f"{ref.late_inbound_sent} datagrams to the expired endpoint")
        nobody = ctl("lookup", ext, "--proto", "udp", check=False)
        self.assertEqual(1, nobody.returncode, f"lookup {ext} after expiry: {nobody.stdout}{nobody.stderr}")
        note(f"expiry: {IN_IP}:{REF_INSIDE_PORT} as {ext} gone {ref.gone_after_s:.1f} s after its last "
             f"packet (udp = {udp} s); later inbound dropped as {ref.inbound_drops}")


class MappingLog(unittest.TestCase):

    LINE = re.compile(r"^(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?P<ms>\d+) (?:"
                      r"(?P<marker>start|stop) pid=\d+|"
                      r"(?P<event>create|delete) (?P<proto>tcp|udp|icmp|sctp) "
                      r"inside=(?P<in_addr>[\d.]+):(?P<in_port>\d+) "
                      r"external=(?P<ext_addr>[\d.]+):(?P<ext_port>\d+) worker=\d+)$")

    def _lines_for(self, ref):
        inside = f"inside={ref.inside[0]}:{ref.inside[1]} external={ref.external[0]}:{ref.external[1]} "

        def found():
            lines = [l for l in read_mapping_log() if f" udp {inside}" in l + " "]
            return lines if any(" delete " in l for l in lines) else None
        return wait_until(found, 3.0) or [l for l in read_mapping_log() if f" udp {inside}" in l + " "]

    def test_mapping_log_has_create_and_delete_with_endpoints_and_no_destination(self):
        """The mapping log has one create and one delete line for the reference flow, with its
        inside and external endpoints and times that bracket its life; every line of the file
        has exactly the documented fields, and no destination appears anywhere (RFC 6888
        REQ-12)."""
        ref = expired_reference_flow()
        self.assertIsNotNone(ref.gone_after_s, "the reference flow never expired (see the expiry test)")
        lines = self._lines_for(ref)
        text = MAPPING_LOG.read_text(errors="replace")
        events = [l.split()[2] for l in lines]
        self.assertEqual(["create", "delete"], events, "\n".join(lines))
        create_ms, delete_ms = (int(l.split()[1]) for l in lines)
        self.assertLessEqual(ref.sent_ms - 1000, create_ms, lines[0])
        self.assertLessEqual(create_ms, ref.seen_ms + 1000, lines[0])
        self.assertLess(ref.last_ms, delete_ms, f"delete logged before the flow's last packet: {lines[1]}")
        self.assertLessEqual(delete_ms, ref.gone_ms + 3000, lines[1])
        bad = []
        for l in text.splitlines():
            m = self.LINE.match(l)
            if not m:
                bad.append(l)
                continue
            iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(m["ms"]) // 1000)) + ".%03dZ" % (int(m["ms"]) % 1000)
            if iso != m["iso"]:
                bad.append(f"{l}   (ISO time is not the Unix ms)")
            if m["event"] and not L.lab().in_pool(m["ext_addr"]):
                bad.append(f"{l}   (external address not of the pool)")
        self.assertEqual([], bad, "lines of the mapping log not in the documented format")
        for dest in (OUT_IP, "203.0.113."):
            self.assertNotIn(dest, text, f"a destination address is in {MAPPING_LOG}")
        note(f"mapping log: {len(text.splitlines())} lines, create/delete of {ref.inside[0]}:{ref.inside[1]} "
             f"{delete_ms - create_ms} ms apart")

    def test_who_names_the_holder_between_create_and_delete_and_nobody_after(self):
        """`ephemeractl who EXT --at T --log FILE` names 100.64.0.2:40001 for a T between the
        create and the delete, and exits 1 for a T after the delete."""
        ref = expired_reference_flow()
        lines = self._lines_for(ref)
        self.assertEqual(["create", "delete"], [l.split()[2] for l in lines], "\n".join(lines))
        create_ms, delete_ms = (int(l.split()[1]) for l in lines)
        ext = f"{ref.external[0]}:{ref.external[1]}"

        def who(*args, as_json=False):
            cmd = [CTL, *(["--json"] if as_json else []), "who", ext, "--log", str(MAPPING_LOG), *map(str, args)]
            return subprocess.run(cmd, capture_output=True, text=True, timeout=15, stdin=subprocess.DEVNULL)
        mid = (create_ms + delete_ms) // 2
        for extra in ([], ["--proto", "udp"]):
            p = who("--at", mid, *extra)
            self.assertEqual(0, p.returncode, f"who {ext} --at {mid} {extra}: {p.stdout}{p.stderr}")
            self.assertIn(f"{ref.inside[0]}:{ref.inside[1]}", p.stdout)
        p = who("--at", mid, "--proto", "udp", as_json=True)
        self.assertEqual(0, p.returncode, p.stderr)
        holders = json.loads(p.stdout)
        self.assertEqual([f"{ref.inside[0]}:{ref.inside[1]}"], [h["inside"] for h in holders], p.stdout)
        self.assertEqual((create_ms, delete_ms), (holders[0]["from_ms"], holders[0]["to_ms"]), p.stdout)
        after = delete_ms + 1000
        p = who("--at", after, "--proto", "udp")
        self.assertEqual(1, p.returncode, f"who {ext} --at {after} (after the delete at {delete_ms}): {p.stdout}{p.stderr}")
        note(f"who {ext}: {ref.inside[0]}:{ref.inside[1]} at {mid}, nobody at {after}")


class Ipfix(unittest.TestCase):

    def test_ipfix_collector_receives_bib_create_and_delete_for_the_flow(self):
        """The collector in eph-gw receives RFC 7011 messages (version 10, length = datagram)
        whose template 256 decodes into a NAT44 BIB create (natEvent 8) and a delete (9) for
        the reference flow: protocol 17, source 100.64.0.2:40001, post-NAT source = the external
        endpoint the server saw; no destination element in the template."""
        ref = expired_reference_flow()
        self.assertIsNotNone(ref.gone_after_s, "the reference flow never expired (see the expiry test)")
        want = {"protocolIdentifier": 17, "sourceIPv4Address": ref.inside[0],
                "sourceTransportPort": ref.inside[1], "postNATSourceIPv4Address": ref.external[0],
                "postNAPTSourceTransportPort": ref.external[1]}

        def flow_records(dec):
            return [r for r in dec.records if all(r.get(k) == v for k, v in want.items())]

        def done():
            dec = decode_ipfix(_collector.snapshot())
            events = [r.get("natEvent") for r in flow_records(dec)]
            return dec if NAT44_BIB_DELETE in events else None
        dec = wait_until(done, 3.0) or decode_ipfix(_collector.snapshot())
        self.assertTrue(dec.headers, f"no datagram reached the collector at {IPFIX_ADDR[0]}:{IPFIX_ADDR[1]} in {NS_GW}")
        self.assertEqual([], dec.problems, "messages not following RFC 7011")
        self.assertEqual({10}, {h["version"] for h in dec.headers})
        for h in dec.headers:
            self.assertLess(abs(h["export_time"] - time.time()), 120, h)
            self.assertLessEqual(h["size"], 1400, h)
        late = (" (the collector was opened after the gateway had started: its first template went "
                "nowhere, the next is due after 100 messages or 60 s)") if _collector_late else ""
        self.assertTrue(dec.templates, f"no template set received in {len(dec.headers)} messages, "
                                       f"{dec.undecodable} data sets undecodable{late}")
        mapping_templates = {k: f for k, f in dec.templates.items() if k[1] == 256}
        self.assertTrue(mapping_templates, f"no mapping template (256): {list(dec.templates)}")
        for key, fields in dec.templates.items():
            ies = {ie for ie, ent, _ in fields if ent is None}
            self.assertFalse({11, 12, 226, 228} & ies, f"template {key} carries a destination: {fields}")
        for key, fields in mapping_templates.items():
            ies = {ie for ie, ent, _ in fields if ent is None}
            self.assertTrue({323, 230, 4, 8, 7, 225, 227} <= ies, f"template {key}: {fields}")
            self.assertFalse({11, 12, 226, 228} & ies, f"template {key} carries a destination: {fields}")
        recs = flow_records(dec)
        events = [r["natEvent"] for r in recs]
        self.assertEqual([NAT44_BIB_CREATE, NAT44_BIB_DELETE], events,
                         f"records of the flow {want}: {recs}; last records: {dec.records[-20:]}; "
                         f"{dec.undecodable} data sets without their template{late}")
        created, deleted = (r["observationTimeMilliseconds"] for r in recs)
        self.assertLessEqual(ref.sent_ms - 1000, created)
        self.assertLessEqual(created, ref.seen_ms + 1000)
        self.assertLess(ref.last_ms, deleted)
        # RFC 7011 §3.1: the sequence number counts the data records sent before the message.
        for a, b in zip(dec.headers, dec.headers[1:]):
            self.assertGreaterEqual((b["sequence"] - a["sequence"]) % (1 << 32), a["records"], (a, b))
        note(f"ipfix: {len(dec.headers)} messages, {len(dec.records)} records; flow created at {created}, "
             f"deleted at {deleted}")


class PortReuse(unittest.TestCase):

    def assert_ports(self, pool: str, free: int, quarantined: int, in_use: int, why: str) -> None:
        """ephemeractl ports shows these counts (waiting, bounded, for a release the expiry
        scan has yet to make), and in use = the mappings ephemeractl lists on the address."""
        want = (free, quarantined, in_use)
        got = wait_until(lambda: (lambda c: c if c == want else None)(port_counts(pool)), 2.0)
        got = got or port_counts(pool)
        self.assertEqual(want, got, f"{why}: ports --pool {pool} --proto udp (free, quarantined, in_use)")
        rows = mapping_rows(pool=pool, proto="udp")
        self.assertEqual(in_use, len(rows), f"{why}: mappings on {pool}: {rows}")

    def wait_released(self, flows: UdpFlows, port: int, pool: str, in_use: int) -> float:
        """Stops keeping port alive; returns time.monotonic() once ephemeractl no longer lists
        its mapping and ports counts in_use ports (its port went into quarantine)."""
        flows.stop(port)
        udp = TIMEOUTS["udp"]
        gone = wait_mapping_gone(flows.subscriber, port, udp + 4)
        self.assertIsNotNone(gone, f"{flows.subscriber}:{port} still listed {udp + 4} s after its last packet")
        released = wait_until(lambda: time.monotonic() if port_counts(pool)[2] == in_use else None, 3.0)
        self.assertIsNotNone(released, f"after {flows.subscriber}:{port} expired, ports still shows "
                                       f"{port_counts(pool)} (want {in_use} in use)")
        return released

    def wait_free(self, pool: str, free: int, in_use: int, since: float) -> float:
        """Polls ports until free ports are back from quarantine; free + quarantined stays the
        size minus in_use at every look. Returns the seconds since `since`."""
        size = L.lab().ports[1] - L.lab().ports[0] + 1
        q = TIMEOUTS["quarantine"]
        deadline = time.monotonic() + q + 3
        while True:
            f, qu, u = port_counts(pool)
            self.assertEqual((u, f + qu), (in_use, size - in_use), f"ports --pool {pool}: free {f}, quarantined {qu}, in use {u}")
            if f >= free:
                self.assertEqual(free, f)
                return time.monotonic() - since
            self.assertLess(time.monotonic(), deadline, f"ports freed {q} s after release: still {f} free, {qu} quarantined")
            time.sleep(POLL_S)

    def test_freed_port_returns_only_after_quarantine_in_fifo_order_after_never_used_ports(self):
        """One subscriber on a fresh 8-port partition (randomize_ports = false): six flows get
        50000-50005 in order, all from the subscriber's paired pool address. 50004 expires:
        quarantined, not free, for about the quarantine; once free it still comes after the
        never-used 50006 and 50007. With every port in use, 50002 expires: while it is in
        quarantine a new flow gets no port (dropped, ports_exhausted). Then 50000 expires
        too; the next two new flows get 50002 then 50000: the order they were freed in, not
        port order or the order they were first handed out. ephemeractl ports agrees at each
        step."""
        sub, pool = subscriber_for("reuse")
        first, last = L.lab().ports
        q = TIMEOUTS["quarantine"]
        flows = UdpFlows(sub, 47102)
        self.addCleanup(flows.close)
        self.assert_ports(pool, 8, 0, 0, "a fresh partition")

        ports = {}
        for i in range(1, 7):
            ext = flows.open(42000 + i)
            self.assertIsNotNone(ext, f"flow {sub}:{42000 + i} did not reach the server")
            ports[i] = ext
        self.assertEqual({pool}, {a for a, _ in ports.values()},
                         f"paired pooling: {sub} (pool address {pool}) got {ports}")
        self.assertEqual([first + i for i in range(6)], [ports[i][1] for i in range(1, 7)],
                         "the first six flows, randomize_ports = false: the FIFO starts in port order")
        self.assert_ports(pool, 2, 0, 6, "six flows")

        # Flow 5 (port first+4) expires: quarantined, not free.
        released5 = self.wait_released(flows, 42005, pool, in_use=5)
        self.assert_ports(pool, 2, 1, 5, f"{ports[5][1]} just released")
        back5 = self.wait_free(pool, 3, 5, released5)
        # At least the quarantine (RFC 6888 REQ-8), less only the poll that saw the release late.
        self.assertGreaterEqual(back5, q - POLL_S - 0.1, f"{ports[5][1]} was free {back5:.2f} s after release (quarantine {q} s)")
        self.assertLessEqual(back5, q + 2.0, f"{ports[5][1]} was free {back5:.2f} s after release (quarantine {q} s)")

        # The never-used ports first, then the freed one.
        got = [flows.open(42010 + i) for i in (1, 2, 3)]
        self.assertNotIn(None, got, f"new flows after the release: {got}")
        self.assertEqual([(pool, first + 6), (pool, first + 7), ports[5]], got,
                         f"new flows while {ports[5][1]} was free again: never-used ports first, then the freed one")
        self.assert_ports(pool, 0, 0, 8, "every port in use")

        # Flow 3 (port first+2) expires: in quarantine it is not handed out; a new flow is dropped.
        released3 = self.wait_released(flows, 42003, pool, in_use=7)
        self.assert_ports(pool, 0, 1, 7, f"{ports[3][1]} just released")
        drops = ctl_stats()["drops_out_ports_exhausted"]
        blocked = flows.open(42014, timeout=0.5)
        in_quarantine = time.monotonic() - released3
        self.assertIsNone(blocked, f"a new flow got {blocked} {in_quarantine:.2f} s after {ports[3][1]} "
                                   f"was released (quarantine {q} s)")
        flows.stop(42014)
        self.assertGreater(ctl_stats()["drops_out_ports_exhausted"], drops, "the refused flow was not counted")

        # Then flow 1 (port first) expires, later than flow 3.
        released1 = self.wait_released(flows, 42001, pool, in_use=6)
        self.assertGreater(released1, released3)
        self.wait_free(pool, 2, 6, released1)
        got = [flows.open(42020 + i) for i in (1, 2)]
        self.assertEqual([ports[3], ports[1]], got,
                         f"ports freed in the order {ports[3][1]}, {ports[1][1]} came back as {got}")
        self.assert_ports(pool, 0, 0, 8, "every port in use again")
        note(f"port reuse on {pool}: {[p for _, p in ports.values()]} then {first + 6}, {first + 7}, "
             f"{ports[5][1]} (back {back5:.1f} s after release); refused in quarantine after "
             f"{in_quarantine:.1f} s; freed {ports[3][1]}, {ports[1][1]} came back in that order")


class PortExhaustion(unittest.TestCase):

    def test_ninth_flow_is_dropped_and_counted_while_eight_flows_keep_working(self):
        """One subscriber holds all 8 ports of its pool address; a ninth flow reaches nobody
        and is counted in drops_out_ports_exhausted; the eight flows still carry traffic both
        ways from the same external endpoints."""
        sub, pool = subscriber_for("exhaustion")
        first, last = L.lab().ports
        flows = UdpFlows(sub, 47103)
        self.addCleanup(flows.close)
        ext = {}
        for i in range(1, 9):
            ext[43000 + i] = flows.open(43000 + i)
        self.assertNotIn(None, ext.values(), f"flows: {ext}")
        self.assertEqual({(pool, p) for p in range(first, last + 1)}, set(ext.values()),
                         "eight flows, eight ports of the subscriber's pool address")
        self.assertEqual((0, 0, 8), port_counts(pool))

        before = ctl_stats()["drops_out_ports_exhausted"]
        ninth = 43009
        self.assertIsNone(flows.open(ninth, timeout=0.5), "a ninth flow reached the server")
        flows.stop(ninth)
        for i in range(2):
            flows.send(ninth, b"more %d %d" % (ninth, i))
        sent = 3
        time.sleep(0.5)
        self.assertEqual(set(), flows.server.seen(ninth), "the ninth flow reached the server")
        grew = ctl_stats()["drops_out_ports_exhausted"] - before
        self.assertGreaterEqual(grew, sent, f"drops_out_ports_exhausted grew by {grew}, {sent} datagrams of a ninth flow")

        for port in ext:
            flows.send(port, b"echo %d" % port)
        for port, e in ext.items():
            s = flows.socks[port]
            s.settimeout(2.0)
            data = b""
            deadline = time.monotonic() + 2
            while data != b"echo %d" % port and time.monotonic() < deadline:
                try:
                    data, src = s.recvfrom(2048)
                except socket.timeout:
                    break
            self.assertEqual(b"echo %d" % port, data, f"flow {sub}:{port} ({e}) got no answer after exhaustion")
            self.assertEqual([e], flows.server.received(b"echo %d" % port), f"flow {sub}:{port}")
        note(f"exhaustion on {pool}: 8 flows hold {first}-{last}; ninth refused, ports_exhausted +{grew}")


def http_get_in_gw(path: str) -> tuple[int, dict, bytes]:
    """GET http://127.0.0.1:9469<path> from inside eph-gw: (status, headers, body)."""
    s = L.ns_socket(NS_GW, socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(5)
        s.connect(METRICS_ADDR)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {METRICS_ADDR[0]}:{METRICS_ADDR[1]}\r\n"
                  "Connection: close\r\n\r\n".encode())
        chunks = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    finally:
        s.close()
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    return status, headers, body


SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> tuple[dict, list[str]]:
    """{(name, frozenset(labels)): value} and the lines that are not in the text format."""
    samples, bad = {}, []
    types = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) != 4 or parts[3] not in ("counter", "gauge", "untyped", "histogram", "summary"):
                bad.append(line)
            types[parts[2]] = parts[3] if len(parts) > 3 else None
            continue
        m = SAMPLE.match(line)
        if not m:
            bad.append(line)
            continue
        labels = frozenset(LABEL.findall(m["labels"] or ""))
        try:
            value = float(m["value"])
        except ValueError:
            bad.append(line)
            continue
        if m["name"] not in types:
            bad.append(f"{line}   (no # TYPE before it)")
        samples[(m["name"], labels)] = value
    return samples, bad


class Metrics(unittest.TestCase):

    def test_prometheus_endpoint_counts_translated_packets_and_ports_in_use(self):
        """GET /metrics in eph-gw: 200, the Prometheus text format;
        ephemera_packets_translated_total{direction="out"} grows by at least the datagrams
        sent, and ephemera_pool_ports{pool=P,protocol="udp",state="in_use"} goes from 0 to 1
        with one live mapping on P (the same count as ephemeractl ports); the mappings and
        sessions gauges and the creations carry a protocol label."""
        pool = paired_pool(IN_IP)
        key_in_use = ("ephemera_pool_ports", frozenset({("pool", pool), ("protocol", "udp"),
                                                         ("worker", "0"), ("state", "in_use")}))
        key_out = ("ephemera_packets_translated_total", frozenset({("direction", "out")}))
        # No UDP port of 100.64.0.2's pool address may be in use (the reference flow
        # expires in its own test; released up to a second after it expired).
        wait_until(lambda: port_counts(pool)[2] == 0, TIMEOUTS["udp"] + 4)
        status, headers, body = http_get_in_gw("/metrics")
        self.assertEqual(200, status)
        self.assertTrue(headers.get("content-type", "").startswith("text/plain"), headers)
        self.assertIn("version=0.0.4", headers.get("content-type", ""))
        self.assertEqual(len(body), int(headers.get("content-length", -1)))
        before, bad = parse_prometheus(body.decode())
        self.assertEqual([], bad, "lines not in the Prometheus text format")
        self.assertIn(key_out, before, sorted(k for k in before if k[0].startswith("ephemera_packets")))
        self.assertEqual(0, before.get(key_in_use), f"{key_in_use} before the flow")

        flows = UdpFlows(IN_IP, 47106)
        self.addCleanup(flows.close)
        ext = flows.open(40006)
        self.assertIsNotNone(ext)
        n = 20
        for i in range(n - 1):
            flows.send(40006, b"count %d %d" % (40006, i))
        self.assertIsNotNone(wait_until(lambda: flows.server.count(40006) >= n, 2.0),
                             f"the server got {flows.server.count(40006)} of {n} datagrams")
        status, _, body = http_get_in_gw("/metrics")
        self.assertEqual(200, status)
        after, bad = parse_prometheus(body.decode())
        self.assertEqual([], bad)
        grew = after[key_out] - before[key_out]
        self.assertGreaterEqual(grew, n, f"packets_translated out grew by {grew}, {n} datagrams sent")
        self.assertEqual(1, after.get(key_in_use), f"{key_in_use} with {IN_IP}:40006 mapped to {ext}")
        self.assertEqual(1, port_counts(pool)[2])
        udp = frozenset({("protocol", "udp")})
        created = ("ephemera_mappings_created_total", udp)
        self.assertGreaterEqual(after[created] - before[created], 1, "UDP mappings created, by protocol")
        self.assertGreaterEqual(after[("ephemera_mappings", udp)], 1, "live UDP mappings, by protocol")
        self.assertGreaterEqual(after[("ephemera_sessions", udp)], 1, "live UDP sessions, by protocol")
        self.assertEqual(8, sum(v for (name, labels), v in after.items()
                                if name == "ephemera_pool_ports" and ("pool", pool) in labels
                                and ("protocol", "udp") in labels), "free + quarantined + in use")
        note(f"metrics: translated out +{grew:.0f} for {n} datagrams; {pool} udp in_use 0 -> 1")


class SessionsTable(unittest.TestCase):

    def test_sessions_shows_remote_endpoint_and_established_tcp_state(self):
        """A TCP connection from 100.64.0.2:40007 to a server in eph-out, held open with data
        both ways: `ephemeractl sessions` (the table) lists it with its external endpoint (the
        one the server sees), the remote endpoint and the state `established`."""
        listener = tcp_listener(self, NS_OUT, OUT_IP, 47107, 3)
        client = L.ns_socket(NS_IN, socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(client.close)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        client.bind((IN_IP, 40007))
        client.settimeout(3)
        client.connect((OUT_IP, 47107))
        conn, peer = listener.accept()
        self.addCleanup(conn.close)
        conn.settimeout(3)
        client.sendall(b"hello")
        self.assertEqual(b"hello", conn.recv(100))
        conn.sendall(b"world")
        self.assertEqual(b"world", client.recv(100))

        text = ctl("sessions", "--inside", IN_IP, "--proto", "tcp").stdout
        header = text.splitlines()[0].split()
        self.assertEqual(["protocol", "inside", "external", "remote", "state", "expires_in", "worker"], header, text)
        rows = [l.split() for l in text.splitlines()[1:] if f"{IN_IP}:40007" in l.split()]
        self.assertEqual(1, len(rows), text)
        proto, inside, external, remote, state, expires_in, worker = rows[0]
        self.assertEqual(("tcp", f"{IN_IP}:40007", f"{peer[0]}:{peer[1]}", f"{OUT_IP}:47107", "established"),
                         (proto, inside, external, remote, state), text)
        self.assertLessEqual(int(expires_in), TIMEOUTS["tcp_established"] + 1, text)
        note(f"sessions: {inside} -> {external} -> {remote} {state} (expires in {expires_in} s)")


class StaticMappings(unittest.TestCase):
    """ephemeractl static add|del|list: a port forward from a pool address to a server in
    eph-in that has never sent anything (the gateway finds its MAC by ARP)."""

    EXT_POOL = "198.51.100.1"
    EXT_PORT = 8081          # outside the dynamic range 50000-50007
    INSIDE_PORT = 8080

    def connect_from_outside(self, timeout: float) -> tuple[socket.socket | None, str]:
        client = L.ns_socket(NS_OUT, socket.AF_INET, socket.SOCK_STREAM)
        client.settimeout(timeout)
        try:
            client.connect((self.EXT_POOL, self.EXT_PORT))
            return client, ""
        except OSError as e:
            client.close()
            return None, str(e)

    def static_rows(self) -> list[list[str]]:
        text = ctl("static", "list").stdout
        lines = text.splitlines()
        self.assertEqual(["protocol", "external", "inside", "inside_mac", "worker", "state"], lines[0].split(), text)
        return [l.split() for l in lines[1:] if l.strip()]

    def test_port_forward_reaches_an_inside_server_and_ends_with_del(self):
        """Before: a connection from eph-out to 198.51.100.1:8081 gets nowhere. After
        `static add tcp 100.64.0.2:8080 198.51.100.1:8081` it reaches the server in eph-in, which
        sees the real client address (only the destination is translated); data flows both
        ways; `static list` shows the mapping with the server's MAC; the mapping log has its
        create line. After `static del` new connections get nowhere again, the list is empty
        and the log has the delete line."""
        listener = L.ns_socket(NS_IN, socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((IN_IP, self.INSIDE_PORT))
        listener.listen(4)
        listener.settimeout(8)
        ext = f"{self.EXT_POOL}:{self.EXT_PORT}"
        inside = f"{IN_IP}:{self.INSIDE_PORT}"

        before, why = self.connect_from_outside(1.5)
        self.assertIsNone(before, "a connection to the pool reached the inside with no static mapping")
        self.addCleanup(lambda: ctl("static", "del", "tcp", ext, check=False))
        added = ctl("static", "add", "tcp", inside, ext)
        self.assertIn(ext, added.stdout)

        client, why = self.connect_from_outside(8)  # the first SYN may wait for ARP
        self.assertIsNotNone(client, f"connection to {ext} after static add: {why}; stats drops: "
                                     f"{ctl_stats().get('drops')}")
        self.addCleanup(client.close)
        conn, peer = listener.accept()
        self.addCleanup(conn.close)
        conn.settimeout(3)
        self.assertEqual(OUT_IP, peer[0], "the server must see the client's own address")
        client.sendall(b"ping")
        self.assertEqual(b"ping", conn.recv(100))
        conn.sendall(b"pong")
        self.assertEqual(b"pong", client.recv(100))
        self.assertEqual((self.EXT_POOL, self.EXT_PORT), client.getpeername())

        rows = [r for r in self.static_rows() if r[1] == ext]
        self.assertEqual(1, len(rows), rows)
        proto, external, inside_seen, mac, worker, state = rows[0]
        self.assertEqual(("tcp", ext, inside, "active"), (proto, external, inside_seen, state))
        self.assertRegex(mac, r"^([0-9A-F]{2}:){5}[0-9A-F]{2}$", f"the server's MAC: {rows}")
        as_json = ctl_json("static", "list")
        self.assertIn(ext, as_json["external"])

        conn.close()
        client.close()
        ctl("static", "del", "tcp", ext)
        self.assertEqual([], [r for r in self.static_rows() if r[1] == ext])
        after, _ = self.connect_from_outside(1.5)
        self.assertIsNone(after, "a connection reached the inside after static del")
        lines = [l for l in read_mapping_log() if f"inside={inside}" in l and ext in l]
        kinds = [l.split()[2] for l in lines]
        self.assertEqual(["create", "delete"], kinds, "\n".join(lines))
        note(f"static: {ext} -> {inside} (MAC {mac}, worker {worker}), forwarded, then deleted")

    def test_static_mapping_from_the_configuration_forwards_from_the_start(self):
        """[nat] static = ["udp 100.64.0.2:7000 198.51.100.2:7000"] in the lab's configuration:
        listed from the start, and a datagram from eph-out to 198.51.100.2:7000 reaches a socket
        on 100.64.0.2:7000 that has never sent anything, with the sender's own address."""
        rows = [r for r in self.static_rows() if r[1] == "198.51.100.2:7000"]
        self.assertEqual([["udp", "198.51.100.2:7000", f"{IN_IP}:7000"]], [r[:3] for r in rows])
        server = L.ns_socket(NS_IN, socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(server.close)
        server.bind((IN_IP, 7000))
        server.settimeout(0.5)
        client = L.ns_socket(NS_OUT, socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(client.close)
        got = L.send_until_received(client, lambda i: b"forwarded %d" % i, ("198.51.100.2", 7000), server, 10)
        self.assertIsNotNone(got, f"nothing reached {IN_IP}:7000; drops: {ctl_stats().get('drops')}")
        self.assertEqual(OUT_IP, got[1][0])

    def test_rfc4787_req9_hairpinning_to_a_port_forward(self):
        """A second inside host reaches a port forward of the first through the pool address:
        the datagram arrives from the sender's own mapping (a pool address and a port of the
        dynamic range, not its inside address), and the answer comes back from the forward's
        pool address and port."""
        a2 = "100.64.0.21"
        L.add_subscribers([a2])
        self.addCleanup(L.remove_subscribers, [a2])
        ext = f"{self.EXT_POOL}:7101"
        self.addCleanup(lambda: ctl("static", "del", "udp", ext, check=False))
        ctl("static", "add", "udp", f"{IN_IP}:7100", ext)
        server = udp_socket(self, NS_IN, IN_IP, 7100, 0.5)
        host2 = udp_socket(self, NS_IN, a2, 0, 2)
        got = L.send_until_received(host2, lambda i: b"hairpin %d" % i, (self.EXT_POOL, 7101), server, 10)
        self.assertIsNotNone(got, f"nothing reached {IN_IP}:7100 from {a2}; drops: {ctl_stats().get('drops')}")
        seen = got[1]
        self.assertTrue(L.lab().in_pool(seen[0]), f"the server saw {seen}: not a pool address")
        self.assertTrue(L.lab().in_port_range(seen[1]), f"the server saw port {seen[1]}")
        server.sendto(b"back", seen)
        data, source = host2.recvfrom(100)
        self.assertEqual((b"back", (self.EXT_POOL, 7101)), (data, source))

    def test_static_add_refuses_bad_requests_with_a_reason(self):
        """A port inside the dynamic range, an inside host off the inside subnet, an address
        that is not in the pool, a duplicate: each refused with a reason naming it."""
        ext = f"{self.EXT_POOL}:{self.EXT_PORT + 1}"
        cases = [
            (("tcp", f"{IN_IP}:80", f"{self.EXT_POOL}:50003"), "dynamic range"),
            (("tcp", "100.65.0.2:80", ext), "inside subnet"),
            (("tcp", f"{IN_IP}:80", "203.0.113.9:8082"), "not a pool address"),
            (("icmp", f"{IN_IP}:80", ext), ""),
        ]
        for args, reason in cases:
            p = ctl("static", "add", *args, check=False)
            self.assertNotEqual(0, p.returncode, f"static add {args} was accepted")
            self.assertIn(reason, p.stderr, f"static add {args}: {p.stderr}")
        self.addCleanup(lambda: ctl("static", "del", "udp", ext, check=False))
        ctl("static", "add", "udp", f"{IN_IP}:5353", ext)
        dup = ctl("static", "add", "udp", f"{IN_IP}:5354", ext, check=False)
        self.assertEqual(1, dup.returncode, dup.stderr)
        self.assertIn("already forwarded", dup.stderr)
        missing = ctl("static", "del", "udp", f"{self.EXT_POOL}:9", check=False)
        self.assertEqual(1, missing.returncode, missing.stderr)


class MssClamp(unittest.TestCase):
    """`dataplane.mss_clamp = true` with `[outside] mtu = 1400`: a TCP connection through the
    gateway announces at most 1360 (1400 - 40) in both SYNs, so neither end sends segments
    the outside link cannot carry. Runs before PathMtu, while eph-in has learnt no path MTU."""

    def test_syn_mss_is_clamped_to_the_outside_mtu_both_ways(self):
        listener = tcp_listener(self, NS_OUT, OUT_IP, 47700, 5)
        before = ctl_stats()
        client = L.ns_socket(NS_IN, socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(client.close)
        client.settimeout(5)
        client.connect((OUT_IP, 47700))
        conn, _ = listener.accept()
        self.addCleanup(conn.close)
        # TCP_MAXSEG of a connected socket: what it will send, at most the peer's MSS
        # (less the timestamp option); 1448 on these 1500-byte links without clamping.
        server_mss = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
        client_mss = client.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
        self.assertLessEqual(server_mss, 1360, "the client's SYN reached eph-out unclamped")
        self.assertLessEqual(client_mss, 1360, "the server's SYN-ACK reached eph-in unclamped")
        self.assertGreaterEqual(ctl_stats()["mss_clamped"] - before["mss_clamped"], 2)


IP_RECVERR = 11  # <linux/in.h>; Python's socket module lacks it


def icmp_error_after(sock: socket.socket, send, tries: int = 5):
    """Calls send() until sock (with IP_RECVERR set) has an ICMP error on its error queue, a
    second at most each time: (sock_extended_err fields, the offender's address), or None."""
    for _ in range(tries):
        send()
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            try:
                _, anc, _, _ = sock.recvmsg(2048, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
            except BlockingIOError:
                time.sleep(0.05)
                continue
            for level, kind, data in anc:
                if level == socket.IPPROTO_IP and kind == IP_RECVERR:  # a sock_extended_err, then
                    # the offender's sockaddr_in: port, address
                    return struct.unpack_from("=IBBBBII", data), socket.inet_ntoa(data[20:24])
    return None


class PathMtu(unittest.TestCase):
    """RFC 4787 REQ-13 with `[outside] mtu = 1400` (the suite's configuration) on a lab whose
    links all carry 1500: a packet too big for the outside with DF set is answered with ICMP
    3/4 carrying the MTU; without DF it arrives, in fragments, intact."""

    MTU = 1400
    PAYLOAD = 1450 - 28  # a 1450-byte IPv4 packet
    IP_MTU_DISCOVER = 10  # <linux/in.h>; Python's socket module lacks it

    def udp_from_inside(self, pmtudisc: int) -> socket.socket:
        s = udp_socket(self, NS_IN, IN_IP, 0, 2)
        # PROBE (3): DF set, the cached path MTU ignored (the first 3/4 would otherwise make the
        # kernel refuse or fragment the next one itself); INTERFACE (4): no DF, the interface MTU.
        s.setsockopt(socket.IPPROTO_IP, self.IP_MTU_DISCOVER, pmtudisc)
        s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        return s

    def test_rfc4787_req13_too_big_with_df_is_answered_with_icmp_3_4_and_the_mtu(self):
        before = ctl_stats()
        s = self.udp_from_inside(3)
        got = icmp_error_after(s, lambda: s.sendto(b"x" * self.PAYLOAD, (OUT_IP, 47300)))
        self.assertIsNotNone(got, "no ICMP error came back for a 1450-byte packet with DF")
        (errno_, origin, icmp_type, code, _, info, _), offender = got
        self.assertEqual((2, 3, 4), (origin, icmp_type, code), "not an ICMP 3/4")  # SO_EE_ORIGIN_ICMP
        self.assertEqual(self.MTU, info, "the next-hop MTU in the ICMP error")
        self.assertEqual(GW_IN_IP, offender, "3/4 comes from the gateway's inside address")
        after = ctl_stats()
        self.assertGreaterEqual(after["frag_needed_sent"] - before["frag_needed_sent"], 1)
        self.assertGreaterEqual(after["too_big"] - before["too_big"], 1)

    def test_rfc4787_req13_too_big_without_df_arrives_in_fragments_intact(self):
        server = udp_socket(self, NS_OUT, OUT_IP, 47301, 1)
        s = self.udp_from_inside(4)
        payload = bytes(range(256)) * 5 + bytes(self.PAYLOAD - 1280)
        before = ctl_stats()
        got = L.send_until_received(s, payload, (OUT_IP, 47301), server)
        self.assertIsNotNone(got, f"the datagram did not arrive; stats: {ctl_stats()}")
        data, peer = got
        self.assertEqual(payload, data, "reassembled at the receiver with its UDP checksum valid")
        self.assertTrue(L.lab().in_pool(peer[0]), peer)
        after = ctl_stats()
        self.assertGreaterEqual(after["fragmented"] - before["fragmented"], 1)
        self.assertGreaterEqual(after["fragments_sent"] - before["fragments_sent"], 2)
        self.assertEqual(after["fragment_failed"], before["fragment_failed"])


class Fragments(unittest.TestCase):
    """RFC 4787 REQ-14: fragmented datagrams cross the gateway both ways. Linux hosts
    fragment a 3000-byte UDP datagram at their 1500-byte links; ephemera reassembles it,
    translates it and fragments it again for the next link (1400 outside, 1500 inside)."""

    SIZE = 3000

    def test_rfc4787_req14_fragmented_udp_crosses_both_ways_intact(self):
        server = udp_socket(self, NS_OUT, OUT_IP, 47310, 1)
        client = udp_socket(self, NS_IN, IN_IP, 0, 1)
        for sock in (server, client):  # IP_PMTUDISC_OMIT: fragments of the interface's 1500, whatever path
            sock.setsockopt(socket.IPPROTO_IP, PathMtu.IP_MTU_DISCOVER, 5)  # MTU was learnt before
        request = bytes((i * 7) & 0xFF for i in range(self.SIZE))
        reply = bytes((i * 13 + 5) & 0xFF for i in range(self.SIZE))
        before = ctl_stats()
        got = L.send_until_received(client, request, (OUT_IP, 47310), server)
        self.assertIsNotNone(got, f"the fragmented datagram did not arrive; stats: {ctl_stats()}")
        self.assertEqual(request, got[0])
        self.assertTrue(L.lab().in_pool(got[1][0]), got[1])
        server.sendto(reply, got[1])
        data, source = client.recvfrom(65536)
        self.assertEqual(reply, data, "the fragmented answer, reassembled, translated back")
        self.assertEqual((OUT_IP, 47310), source)
        after = ctl_stats()
        grew = {k: after[k] - before[k] for k in ("fragments_received", "reassembled", "fragmented",
                                                   "reassembly_dropped")}
        self.assertGreaterEqual(grew["fragments_received"], 6, grew)  # 3 fragments each way
        self.assertGreaterEqual(grew["reassembled"], 2, grew)
        self.assertGreaterEqual(grew["fragmented"], 2, grew)
        self.assertEqual(grew["reassembly_dropped"], 0, grew)

    def test_rfc4787_req14_ping_with_a_fragmented_echo_is_answered(self):
        p = L.ns_run(NS_IN, ["ping", "-c", "1", "-W", "3", "-s", self.SIZE, OUT_IP], timeout=10)
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)


class Exclusions(unittest.TestCase):
    """RFC 6888 REQ-6: translation turned off for chosen destinations. The suite's
    configuration has `nat.exclude = ["203.0.113.48/29"]`; the test gives eph-out the
    address 203.0.113.50 and a route back to 100.64.0.0/10 through the gateway, as a
    provider's internal server would have."""

    SERVER = "203.0.113.50"

    def setUp(self):
        L.add_excluded_server(self, self.SERVER)

    def test_rfc6888_req6_excluded_destination_sees_the_inside_address_and_answers(self):
        server = udp_socket(self, NS_OUT, self.SERVER, 47500, 1)
        client = udp_socket(self, NS_IN, IN_IP, 47501, 1)
        before = ctl_stats()
        got = L.send_until_received(client, b"no nat", (self.SERVER, 47500), server)
        self.assertIsNotNone(got, f"nothing reached {self.SERVER}; stats: {ctl_stats()}")
        self.assertEqual((b"no nat", (IN_IP, 47501)), got, "the source must stay the inside address")
        server.sendto(b"back", got[1])
        self.assertEqual((b"back", (self.SERVER, 47500)), client.recvfrom(100))
        after = ctl_stats()
        self.assertGreaterEqual(after["untranslated_out"] - before["untranslated_out"], 1)
        self.assertGreaterEqual(after["untranslated_in"] - before["untranslated_in"], 1)
        self.assertEqual([], [r for r in mapping_rows(inside=IN_IP, proto="udp") if r["inside"] == f"{IN_IP}:47501"],
                         "no mapping for an excluded flow")

    def test_rfc6888_req6_icmp_errors_from_routers_on_the_way_reach_the_inside_host(self):
        """An excluded flow crosses routers that are not excluded themselves; their ICMP errors
        (here fragmentation needed, path MTU discovery's) are addressed to the inside host and
        must reach it: a connected UDP socket in eph-in gets the 3/4 with its MTU, from the
        router's address. The same error about a translated destination is not for an inside
        address (counted not_for_us)."""
        ip_mtu_discover = 10  # <linux/in.h>
        server = udp_socket(self, NS_OUT, self.SERVER, 47510, 1)
        client = udp_socket(self, NS_IN, IN_IP, 47511, 1)
        client.setsockopt(socket.IPPROTO_IP, ip_mtu_discover, 2)  # IP_PMTUDISC_DO
        client.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        client.connect((self.SERVER, 47510))
        got = L.send_until_received(client, b"learn me", (self.SERVER, 47510), server)
        self.assertIsNotNone(got, f"nothing reached {self.SERVER}; stats: {ctl_stats()}")

        raw = L.ns_socket(NS_OUT, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.addCleanup(raw.close)

        def frag_needed(quoted_dst: str, mtu: int) -> bytes:
            udp = struct.pack("!HHHH", 47511, 47510, 8 + 1400, 0)
            quoted = L.ipv4_packet(IN_IP, quoted_dst, PROTO_UDP, udp)[:28]
            icmp = struct.pack("!BBHHH", 3, 4, 0, 0, mtu) + quoted
            icmp = icmp[:2] + struct.pack("!H", L.inet_checksum(icmp)) + icmp[4:]
            return L.ipv4_packet(OUT_IP, IN_IP, 1, icmp)  # from a router that is not excluded

        before = ctl_stats()
        err = icmp_error_after(client, lambda: raw.sendto(frag_needed(self.SERVER, 1280), (IN_IP, 0)))
        self.assertIsNotNone(err, f"the router's 3/4 did not reach the inside host; stats: {ctl_stats()}")
        (_, origin, icmp_type, code, _, info, _), offender = err
        self.assertEqual((2, 3, 4, 1280), (origin, icmp_type, code, info), "an ICMP 3/4 with MTU 1280")
        self.assertEqual(OUT_IP, offender, "from the router, untranslated")
        middle = ctl_stats()
        self.assertGreaterEqual(middle["untranslated_in"] - before["untranslated_in"], 1)

        raw.sendto(frag_needed(OUT_IP, 1280), (IN_IP, 0))  # about a translated destination
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and ctl_stats()["not_for_us"] == middle["not_for_us"]:
            time.sleep(0.1)
        after = ctl_stats()
        self.assertGreaterEqual(after["not_for_us"] - middle["not_for_us"], 1, "not routed in")
        self.assertEqual(middle["untranslated_in"], after["untranslated_in"])

    def test_rfc6888_req6_other_destinations_are_still_translated(self):
        server = udp_socket(self, NS_OUT, OUT_IP, 47502, 1)
        client = udp_socket(self, NS_IN, IN_IP, 47503, 1)
        got = L.send_until_received(client, b"nat", (OUT_IP, 47502), server)
        self.assertIsNotNone(got)
        self.assertTrue(L.lab().in_pool(got[1][0]), got[1])


class LiveTimeouts(unittest.TestCase):
    """`ephemeractl timeouts set KEY SECONDS` on a running gateway: every worker takes the
    new value for what it creates or refreshes from then on; bad keys and values are refused
    with a usage line. Restores the suite's UDP timeout (2 s) when it ends."""

    def setUp(self):
        self.udp = ctl_json("timeouts")["udp"]
        self.addCleanup(ctl, "timeouts", "set", "udp", self.udp)

    def test_timeouts_set_changes_the_timeout_of_new_mappings(self):
        out = ctl("timeouts", "set", "udp", "9").stdout
        self.assertIn("udp = 9", out)
        self.assertEqual(9, ctl_json("timeouts")["udp"])
        server = udp_socket(self, NS_OUT, OUT_IP, 47800, 1)
        client = udp_socket(self, NS_IN, IN_IP, 47801, 1)
        self.assertIsNotNone(L.send_until_received(client, b"t", (OUT_IP, 47800), server))
        rows = [r for r in mapping_rows(inside=IN_IP, proto="udp") if r["inside"] == f"{IN_IP}:47801"]
        self.assertEqual(1, len(rows), rows)
        self.assertGreater(rows[0]["expires_in"], self.udp + 1, f"the old {self.udp} s still applies: {rows}")
        self.assertLessEqual(rows[0]["expires_in"], 10, rows)

    def test_timeouts_set_refuses_unknown_keys_and_values_out_of_range(self):
        for args in (["nonsense", "5"], ["udp", "0"], ["quarantine", "4000"]):
            p = ctl("timeouts", "set", *args, check=False)
            self.assertNotEqual(0, p.returncode, args)
            self.assertTrue(p.stderr.strip(), args)
        self.assertEqual(self.udp, ctl_json("timeouts")["udp"], "a refused change changed nothing")


class MappingLogRotation(unittest.TestCase):
    """logrotate's way: the mapping log is renamed and the daemon gets SIGHUP; it goes on
    running and writes what follows to a new file at the configured path, not to the renamed
    one; `who --log OLD NEW` reads both. Runs last: it moves the log the other tests read."""

    def test_sighup_reopens_the_mapping_log_at_its_path_after_a_rename(self):
        pid = int((L.STATE_DIR / "gateway.pid").read_text().strip())
        rotated = MAPPING_LOG.with_name(MAPPING_LOG.name + ".1")
        os.replace(MAPPING_LOG, rotated)
        self.addCleanup(lambda: rotated.unlink(missing_ok=True))
        os.kill(pid, signal.SIGHUP)
        self.assertTrue(wait_until(MAPPING_LOG.exists, 3.0), f"no new {MAPPING_LOG} after SIGHUP:\n{L.gateway_log_tail(5)}")
        os.kill(pid, 0)  # still running: SIGHUP did not stop it
        self.assertIn(f"mapping log {MAPPING_LOG} reopened", L.gateway_log_tail(20))

        server = udp_socket(self, NS_OUT, OUT_IP, 47950, 0.5)
        client = udp_socket(self, NS_IN, IN_IP, 47951, 0.5)
        # Eight ports in this lab, some still quarantined by the tests before: keep trying.
        got = wait_until(lambda: L.send_until_received(client, b"after rotation", (OUT_IP, 47950), server, 2), 12.0)
        self.assertIsNotNone(got, f"no flow through the gateway after SIGHUP; drops: {ctl_json('stats')}")
        ext = f"{got[1][0]}:{got[1][1]}"
        wanted = f" create udp inside={IN_IP}:47951 external={ext} "
        line = wait_until(lambda: next((l for l in read_mapping_log() if wanted in l + " "), None), 3.0)
        self.assertIsNotNone(line, f"the new file has no {wanted.strip()!r}")
        self.assertNotIn(wanted, rotated.read_text(errors="replace").replace("\n", " \n"),
                         "the renamed file got a line written after the SIGHUP")
        self.assertEqual("start", rotated.read_text().split("\n", 1)[0].split()[2], "the renamed file lost its head")

        at = line.split()[1]
        p = subprocess.run([CTL, "who", ext, "--at", at, "--proto", "udp", "--log", str(rotated), str(MAPPING_LOG)],
                           capture_output=True, text=True, timeout=15, stdin=subprocess.DEVNULL)
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        self.assertIn(f"{IN_IP}:47951", p.stdout)
        note(f"log rotation: SIGHUP reopened {MAPPING_LOG}; {ext} logged in the new file, `who` over both answers")


ORDER = [UdpMappingExpiry, MappingLog, Ipfix, PortReuse, PortExhaustion, Metrics, SessionsTable, StaticMappings, MssClamp, PathMtu, Fragments, Exclusions,
         LiveTimeouts, MappingLogRotation]


def ordered_suite(pattern: str | None = None) -> unittest.TestSuite:
    return L.ordered_suite(ORDER, pattern)


def load_tests(loader, tests, pattern):  # python3 -m unittest keeps the order too
    return ordered_suite()
