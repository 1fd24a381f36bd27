"""The daemon's DPDK telemetry socket, for the daemon tests (no lab needed)."""
import glob
import json
import os
import socket
import time


def telemetry_socket(prefix, wait_s=0.0):
    """The socket of the DPDK process with EAL --file-prefix `prefix`; None if
    none appears within `wait_s` seconds."""
    deadline = time.monotonic() + wait_s
    while True:
        for base in ("/var/run/dpdk", os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/nonexistent"), "dpdk"),
                     "/tmp/dpdk"):
            found = glob.glob(os.path.join(base, prefix, "dpdk_telemetry.v2"))
            if found:
                return found[0]
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def ask(path, command, timeout=10):
    """One command on a fresh connection: the JSON reply, or None when there was none."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.recv(1 << 16)  # the greeting
        s.send(command.encode())
        reply = s.recv(1 << 20)
    return json.loads(reply) if reply else None
