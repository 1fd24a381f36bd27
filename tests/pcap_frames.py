"""Ethernet frames in a pcap file, for daemons whose inside port is net_pcap
replaying it (the daemon tests; no lab needed)."""
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "e2e"))
import labnet as L  # noqa: E402  (packet helpers only)


def ethernet(ip_packet):
    """The IPv4 packet in an Ethernet frame from an inside host's MAC."""
    return bytes.fromhex("ffffffffffff" "020000000005" "0800") + ip_packet


def udp_frame(src, sport, dst, dport, payload=b"ephemera"):
    return ethernet(L.ipv4_packet(src, dst, L.PROTO_UDP, L.udp_segment(src, dst, sport, dport, payload)))


def tcp_syn_frame(src, sport, dst, dport, seq=1):
    return ethernet(L.ipv4_packet(src, dst, L.PROTO_TCP, L.tcp_syn_segment(src, dst, sport, dport, seq)))


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, frame in enumerate(frames):
            f.write(struct.pack("<IIII", 0, i, len(frame), len(frame)) + frame)
