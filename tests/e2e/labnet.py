"""Helpers of the end-to-end tests: the lab's names and addresses, sockets made inside the
lab's network namespaces, commands run there, IPv4/UDP/TCP/ICMP packets built and parsed
with the standard library, and a bounded AF_PACKET capture.

Everything here is bounded in time: every wait has a deadline, every loop a count.
"""

from __future__ import annotations

import ctypes
import dataclasses
import ipaddress
import json
import os
import socket
import struct
import subprocess
import threading
import time
import unittest
import tomllib
from pathlib import Path

# --- the lab (shared/lab.md; scripts/lab) -----------------------------------------------
NS_IN, NS_GW, NS_OUT = "eph-in", "eph-gw", "eph-out"
IN_IF, OUT_IF = "in0", "out0"
IN_IP = "100.64.0.2"          # the first subscriber
GW_IN_IP = "100.64.0.1"       # the gateway, inside
GW_OUT_IP = "203.0.113.1"     # the gateway, outside
OUT_IP = "203.0.113.2"        # "the Internet"
INSIDE_NET = ipaddress.ip_network("100.64.0.0/10")
STATE_DIR = Path("/run/ephemera-lab")

REPO = Path(__file__).resolve().parents[2]
LAB_SCRIPT = REPO / "scripts" / "lab"


@dataclasses.dataclass(frozen=True)
class Lab:
    """What the lab that is up says about itself (scripts/lab writes /run/ephemera-lab/state)."""
    gateway: str                       # "ephemera" or "linux"
    workers: int
    pool: tuple                        # of IPv4Network
    ports: tuple                       # (first, last)
    config: Path
    stats: Path
    log: Path

    def in_pool(self, addr: str) -> bool:
        a = ipaddress.ip_address(addr)
        return any(a in net for net in self.pool)

    def in_port_range(self, port: int) -> bool:
        return self.ports[0] <= port <= self.ports[1]

    def pool_addresses(self) -> list[str]:
        return [str(a) for net in self.pool for a in net]

    def describe(self) -> str:
        pools = ",".join(str(n) for n in self.pool)
        return f"gateway={self.gateway} workers={self.workers} pool={pools} ports={self.ports[0]}-{self.ports[1]}"


def _parse_ports(text: str) -> tuple:
    first, _, last = text.partition("-")
    return int(first), int(last or first)


_lab: Lab | None = None


def lab() -> Lab:
    """The lab that is up, read once from scripts/lab's state file (and ephemera's config)."""
    global _lab
    if _lab is not None:
        return _lab
    state_file = STATE_DIR / "state"
    if not state_file.exists():
        raise RuntimeError(f"the lab is not up ({state_file} missing): run scripts/lab up")
    state = {}
    for line in state_file.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            state.setdefault(key, value)
    gateway = state["mode"]
    pool = (ipaddress.ip_network(state["pool"]),)
    ports = _parse_ports(state["ports"])
    config = Path(state.get("config", STATE_DIR / "ephemera.toml"))
    if gateway == "ephemera" and config.exists():
        nat = tomllib.loads(config.read_text()).get("nat", {})
        if "pool" in nat:
            pool = tuple(ipaddress.ip_network(p, strict=False) for p in nat["pool"])
        if "ports" in nat:
            ports = _parse_ports(str(nat["ports"]))
    _lab = Lab(gateway=gateway, workers=int(state["workers"]), pool=pool, ports=ports,
               config=config, stats=Path(state.get("stats", STATE_DIR / "stats.json")),
               log=Path(state.get("log", STATE_DIR / "gateway.log")))
    return _lab


# --- namespaces ---------------------------------------------------------------------------
_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def in_netns(ns: str, fn, *args, **kwargs):
    """Calls fn in a short-lived thread that has joined network namespace ns (setns applies to
    the calling thread only) and returns its result. Sockets made there belong to ns for good,
    whichever thread uses them afterwards."""
    box: dict = {}

    def run():
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn(*args, **kwargs)
        except BaseException as e:  # handed to the caller
            box["error"] = e

    t = threading.Thread(target=run, name=f"netns-{ns}", daemon=True)
    t.start()
    t.join(30)
    if t.is_alive():
        raise TimeoutError(f"in_netns({ns}, {fn}) did not return within 30 s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def ns_socket(ns: str, family=socket.AF_INET, type_=socket.SOCK_DGRAM, proto=0) -> socket.socket:
    return in_netns(ns, socket.socket, family, type_, proto)


def ordered_suite(classes: list, pattern: str | None = None):
    """The tests of classes in that order (they build on each other's state), those whose
    name matches pattern (a glob, or a substring) only when it is given."""
    loader = unittest.TestLoader()
    if pattern:
        loader.testNamePatterns = [pattern if "*" in pattern else f"*{pattern}*"]
    return unittest.TestSuite(loader.loadTestsFromTestCase(cls) for cls in classes)


def add_excluded_server(test, addr: str) -> None:
    """Gives eph-out the address addr (in 203.0.113.0/24) and a route back to 100.64.0.0/10
    through the gateway, as a server behind an excluded destination (nat.exclude) has:
    its answers go to the inside addresses themselves. Undone when the test ends."""
    for cmd, undo in (
            (["ip", "-n", NS_OUT, "addr", "add", f"{addr}/24", "dev", "out0"],
             ["ip", "-n", NS_OUT, "addr", "del", f"{addr}/24", "dev", "out0"]),
            (["ip", "-n", NS_OUT, "route", "add", "100.64.0.0/10", "via", "203.0.113.1"],
             ["ip", "-n", NS_OUT, "route", "del", "100.64.0.0/10", "via", "203.0.113.1"])):
        subprocess.run(cmd, check=True, capture_output=True, timeout=10)
        test.addCleanup(subprocess.run, undo, capture_output=True, timeout=10)


def send_until_received(sender: socket.socket, payload, dest: tuple, receiver: socket.socket,
                        tries: int = 5) -> tuple | None:
    """Sends payload (bytes, or a function of the try number giving them) to dest until
    receiver (with a timeout set) gets a datagram: (data, peer), or None after `tries`
    sends. The first may wait for an ARP resolution in the gateway."""
    for i in range(tries):
        sender.sendto(payload(i) if callable(payload) else payload, dest)
        try:
            return receiver.recvfrom(65536)
        except socket.timeout:
            continue
    return None


def ns_run(ns: str, args: list, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """Runs a command in ns (ip netns exec), output captured as text, bounded by timeout."""
    return subprocess.run(["ip", "netns", "exec", ns, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kwargs)


def udp_rcvbuf_errors(ns: str) -> int:
    """UDP datagrams the kernel of ns dropped because a receiving socket's buffer was full
    (/proc/net/snmp Udp RcvbufErrors): lost after crossing the gateway, at a slow reader."""
    text = ns_run(ns, ["cat", "/proc/net/snmp"], timeout=5).stdout
    rows = [line.split() for line in text.splitlines() if line.startswith("Udp:")]
    if len(rows) < 2 or "RcvbufErrors" not in rows[0]:
        raise RuntimeError(f"no Udp RcvbufErrors in /proc/net/snmp of {ns}")
    return int(rows[1][rows[0].index("RcvbufErrors")])


def backlog_drops() -> int:
    """Packets the kernel dropped because a CPU's input backlog was full (/proc/net/softnet_stat,
    second column, all CPUs). Not per namespace: read around traffic that is the only traffic,
    it counts what a veth peer without XDP (eph-out's) could not queue for a busy CPU."""
    with open("/proc/net/softnet_stat") as f:
        return sum(int(line.split()[1], 16) for line in f if line.strip())


def ns_popen(ns: str, args: list, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", ns, *map(str, args)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def stop_process(p: subprocess.Popen, grace: float = 0.0, timeout: float = 5.0) -> tuple[str, str]:
    """Lets p finish for grace seconds, then terminates it (then kills it, bounded);
    returns its (stdout, stderr)."""
    try:
        return p.communicate(timeout=grace) if grace > 0 else p.communicate(timeout=0.01)
    except subprocess.TimeoutExpired:
        pass
    p.terminate()
    try:
        return p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.communicate(timeout=timeout)


def wait_listening(ns: str, port: int, proto: str = "tcp", timeout: float = 5.0) -> bool:
    """True once something listens on port in ns (ss), polled at most timeout seconds."""
    flag = "-Hltn" if proto == "tcp" else "-Hlun"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = ns_run(ns, ["ss", flag, f"sport = :{port}"], timeout=5).stdout
        if out.strip():
            return True
        time.sleep(0.05)
    return False


def add_subscribers(addresses: list[str]) -> None:
    """Adds the subscriber addresses on in0 (idempotent)."""
    for a in addresses:
        r = subprocess.run(["ip", "-n", NS_IN, "addr", "replace", f"{a}/24", "dev", IN_IF],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise RuntimeError(f"ip addr replace {a}/24 dev {IN_IF}: {r.stderr.strip()}")


def remove_subscribers(addresses: list[str]) -> None:
    for a in addresses:
        subprocess.run(["ip", "-n", NS_IN, "addr", "del", f"{a}/24", "dev", IN_IF],
                       capture_output=True, text=True, timeout=10)


# --- gateway state (ephemera) -------------------------------------------------------------

def read_stats() -> dict:
    """ephemera's --stats-file (rewritten every second)."""
    return json.loads(lab().stats.read_text())


def fresh_stats(after: float, timeout: float = 5.0) -> dict:
    """The stats file once it was rewritten after time.time() == after (bounded)."""
    deadline = time.monotonic() + timeout
    path = lab().stats
    while time.monotonic() < deadline:
        try:
            if path.stat().st_mtime > after:
                return read_stats()
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{path} was not rewritten within {timeout} s")


def gateway_log_tail(lines: int = 40) -> str:
    try:
        return "\n".join(lab().log.read_text(errors="replace").splitlines()[-lines:])
    except (FileNotFoundError, RuntimeError):
        return "(no gateway log)"


# --- packets ------------------------------------------------------------------------------
PROTO_ICMP, PROTO_TCP, PROTO_UDP = 1, 6, 17


def inet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4_packet(src: str, dst: str, proto: int, payload: bytes, ttl: int = 64,
                ident: int = 0x4242) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, ttl, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    return hdr[:10] + struct.pack("!H", inet_checksum(hdr)) + hdr[12:] + payload


def _pseudo(src: str, dst: str, proto: int, length: int) -> bytes:
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, proto, length)


def udp_segment(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    hdr = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    c = inet_checksum(_pseudo(src, dst, PROTO_UDP, 8 + len(payload)) + hdr + payload) or 0xFFFF
    return hdr[:6] + struct.pack("!H", c) + payload


def tcp_syn_segment(src: str, dst: str, sport: int, dport: int, seq: int) -> bytes:
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    c = inet_checksum(_pseudo(src, dst, PROTO_TCP, len(hdr)) + hdr)
    return hdr[:16] + struct.pack("!H", c) + hdr[18:]


def icmp_echo(ident: int, seq: int, payload: bytes, type_: int = 8) -> bytes:
    hdr = struct.pack("!BBHHH", type_, 0, 0, ident, seq)
    c = inet_checksum(hdr + payload)
    return hdr[:2] + struct.pack("!H", c) + hdr[4:] + payload


@dataclasses.dataclass
class Packet:
    """An IPv4 packet as seen on a wire."""
    src: str
    dst: str
    proto: int
    ttl: int
    ip_ok: bool                 # header checksum valid
    l4: bytes
    pkttype: int = 0            # AF_PACKET: 0 host, 1 broadcast, 3 other host, 4 outgoing

    @property
    def sport(self) -> int | None:
        return struct.unpack("!H", self.l4[0:2])[0] if self.proto in (PROTO_TCP, PROTO_UDP) and len(self.l4) >= 4 else None

    @property
    def dport(self) -> int | None:
        return struct.unpack("!H", self.l4[2:4])[0] if self.proto in (PROTO_TCP, PROTO_UDP) and len(self.l4) >= 4 else None

    @property
    def icmp_type(self) -> int | None:
        return self.l4[0] if self.proto == PROTO_ICMP and self.l4 else None

    @property
    def icmp_id(self) -> int | None:
        return struct.unpack("!H", self.l4[4:6])[0] if self.proto == PROTO_ICMP and len(self.l4) >= 8 else None

    @property
    def icmp_seq(self) -> int | None:
        return struct.unpack("!H", self.l4[6:8])[0] if self.proto == PROTO_ICMP and len(self.l4) >= 8 else None

    @property
    def payload(self) -> bytes:
        if self.proto == PROTO_UDP:
            return self.l4[8:]
        if self.proto == PROTO_ICMP:
            return self.l4[8:]
        if self.proto == PROTO_TCP and len(self.l4) >= 20:
            return self.l4[(self.l4[12] >> 4) * 4:]
        return b""

    def l4_checksum_ok(self) -> bool:
        if self.proto == PROTO_ICMP:
            return inet_checksum(self.l4) == 0
        if self.proto == PROTO_UDP and len(self.l4) >= 8 and self.l4[6:8] == b"\0\0":
            return True
        if self.proto in (PROTO_TCP, PROTO_UDP):
            return inet_checksum(_pseudo(self.src, self.dst, self.proto, len(self.l4)) + self.l4) == 0
        return True

    def __str__(self) -> str:
        names = {PROTO_ICMP: "icmp", PROTO_TCP: "tcp", PROTO_UDP: "udp"}
        what = names.get(self.proto, f"proto {self.proto}")
        if self.proto in (PROTO_TCP, PROTO_UDP):
            return f"{what} {self.src}:{self.sport} -> {self.dst}:{self.dport}"
        if self.proto == PROTO_ICMP:
            return f"icmp type {self.icmp_type} id {self.icmp_id} {self.src} -> {self.dst}"
        return f"{what} {self.src} -> {self.dst}"


def parse_ipv4(buf: bytes, pkttype: int = 0) -> Packet | None:
    if len(buf) < 20 or buf[0] >> 4 != 4:
        return None
    ihl = (buf[0] & 0x0F) * 4
    total = struct.unpack("!H", buf[2:4])[0]
    if ihl < 20 or total < ihl or len(buf) < total:
        return None
    return Packet(src=socket.inet_ntoa(buf[12:16]), dst=socket.inet_ntoa(buf[16:20]),
                  proto=buf[9], ttl=buf[8], ip_ok=inet_checksum(buf[:ihl]) == 0,
                  l4=bytes(buf[ihl:total]), pkttype=pkttype)


ETH_P_IP = 0x0800
PACKET_OUTGOING = 4


class Sniffer:
    """Captures the IPv4 frames on interface ifname in namespace ns (AF_PACKET) in a
    background thread, from start() until stop() or max_seconds."""

    def __init__(self, ns: str, ifname: str, incoming_only: bool = True, max_seconds: float = 60):
        self.ns, self.ifname, self.incoming_only, self.max_seconds = ns, ifname, incoming_only, max_seconds
        self.packets: list[Packet] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def __enter__(self) -> "Sniffer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        s = ns_socket(self.ns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        s.bind((self.ifname, ETH_P_IP))
        s.settimeout(0.05)
        self._sock = s
        self._thread = threading.Thread(target=self._run, name=f"sniff-{self.ifname}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                frame, addr = self._sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                break
            pkttype = addr[2]
            if self.incoming_only and pkttype == PACKET_OUTGOING:
                continue
            # SOCK_RAW on AF_PACKET keeps the Ethernet header
            if len(frame) < 34 or frame[12:14] != b"\x08\x00":
                continue
            p = parse_ipv4(frame[14:], pkttype)
            if p is not None:
                with self._lock:
                    self.packets.append(p)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()

    def snapshot(self) -> list[Packet]:
        with self._lock:
            return list(self.packets)

    def wait_for(self, predicate, timeout: float) -> Packet | None:
        deadline = time.monotonic() + timeout
        while True:
            for p in self.snapshot():
                if predicate(p):
                    return p
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)
