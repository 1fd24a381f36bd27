#!/usr/bin/env python3
"""ephemeractl on its own side of the socket: what it refuses before asking the
daemon, how it reads times and mapping logs for `who`, and how it finds the
daemon's telemetry socket among those that killed processes leave behind.

Runs the real `ephemeractl` (argv[1]); no daemon, no lab. The discovery test
needs root and unshare(1): it works in a private mount namespace with its own
/run/dpdk, so that no DPDK process of the machine is seen or disturbed.
"""
import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import unittest

CTL = sys.argv.pop(1) if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "build/control/ephemeractl"

# 2026-11-21T16:30:00Z
T0 = 1795278600


def log_line(ms, kind, inside, external, proto="udp"):
    """A line of the text mapping log (control/mapping_log.hpp)."""
    iso = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{iso}.{ms % 1000:03d}Z {ms} {kind} {proto} inside={inside} external={external} worker=0\n"


def ctl(*args, timeout=30):
    return subprocess.run([CTL, *args], capture_output=True, text=True, timeout=timeout)


class RefusedBeforeAsking(unittest.TestCase):
    """Bad arguments end with a message and a non-zero exit, without a daemon to ask."""

    def test_an_address_filter_cannot_carry_more_filters(self):
        # The daemon splits its parameters at ',' and spaces: this would have
        # reached it as inside=100.64.0.2 limit=1.
        for command in ("mappings", "sessions"):
            r = ctl(command, "--inside", "100.64.0.2,limit=1")
            self.assertNotEqual(r.returncode, 0, command)
            self.assertIn("not an IPv4 address", r.stderr, command)
        r = ctl("ports", "--pool", "198.51.100.1 proto=tcp")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("not an IPv4 address", r.stderr)

    def test_a_socket_path_longer_than_unix_sockets_take_is_named(self):
        path = "/tmp/" + "d" * 150 + "/dpdk_telemetry.v2"
        r = ctl("--socket", path, "stats")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("too long", r.stderr)
        self.assertIn("at most 107", r.stderr)

    def test_a_lookup_port_must_be_a_whole_number(self):
        for bad in ("198.51.100.1:5x", "198.51.100.1:+5", "198.51.100.1:0", "198.51.100.1:65536",
                    "198.51.100.1:99999999999999999999"):
            r = ctl("--socket", "/nonexistent/sock", "lookup", bad)
            self.assertEqual(r.returncode, 1, bad)
            self.assertIn("not a port", r.stderr, bad)


class WhoFromTheLog(unittest.TestCase):
    """`who POOLADDR:PORT --at TIME --log FILE`: 100.64.0.2 held 198.51.100.11:60966
    from T0 to T0+600 s, 100.64.0.3 from T0+1200 s on."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.log = os.path.join(cls.tmp.name, "map.log")
        with open(cls.log, "w") as f:
            f.write(log_line(T0 * 1000, "create", "100.64.0.2:40001", "198.51.100.11:60966"))
            f.write(log_line((T0 + 600) * 1000, "delete", "100.64.0.2:40001", "198.51.100.11:60966"))
            f.write(log_line((T0 + 1200) * 1000, "create", "100.64.0.3:40002", "198.51.100.11:60966"))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def who(self, at):
        return ctl("--json", "who", "198.51.100.11:60966", "--at", at, "--log", self.log)

    def holder(self, at):
        r = self.who(at)
        self.assertIn(r.returncode, (0, 1), r.stderr)
        rows = json.loads(r.stdout)
        return [row["inside"] for row in rows]

    def test_a_time_without_an_offset_is_utc(self):
        self.assertEqual(self.holder("2026-11-21T16:35:00"), ["100.64.0.2:40001"])
        self.assertEqual(self.holder("2026-11-21T16:35:00Z"), ["100.64.0.2:40001"])
        self.assertEqual(self.holder("2026-11-21 16:35:00.250"), ["100.64.0.2:40001"])

    def test_a_utc_offset_is_applied(self):
        # 18:35+02:00 is 16:35Z: the first holder. Read as UTC it would be
        # 18:35Z, when the second one held the port.
        self.assertEqual(self.holder("2026-11-21T18:35:00+02:00"), ["100.64.0.2:40001"])
        self.assertEqual(self.holder("2026-11-21T11:35:00-0500"), ["100.64.0.2:40001"])
        self.assertEqual(self.holder("2026-11-21T16:45:00+00:00"), [])  # in quarantine
        self.assertEqual(self.holder("2026-11-21T17:55:00+01:00"), ["100.64.0.3:40002"])

    def test_unix_seconds_and_milliseconds(self):
        self.assertEqual(self.holder(str(T0 + 300)), ["100.64.0.2:40001"])
        self.assertEqual(self.holder(str((T0 + 1300) * 1000)), ["100.64.0.3:40002"])

    def test_a_time_with_anything_after_it_is_refused(self):
        for bad in ("2026-11-21T16:35:00garbage", "2026-11-21T16:35:00+2", "2026-11-21T16:35:00+25:00",
                    "2026-11-21T16:35:00.", "2026-11-21T16:35", "yesterday", "99999999999999999999999"):
            r = self.who(bad)
            self.assertEqual(r.returncode, 1, bad)
            self.assertIn("--at", r.stderr, bad)
            self.assertIn("expected", r.stderr, bad)
            self.assertNotIn("stoull", r.stderr, bad)

    def test_a_device_is_refused_as_a_log(self):
        # /dev/zero has no line end: read as a log it would never end.
        r = ctl("who", "198.51.100.11:60966", "--at", str(T0), "--log", "/dev/zero", timeout=10)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("not a file or a pipe", r.stderr)

    def test_a_pipe_is_read_as_a_log(self):
        # A rotated, compressed log is read as `--log <(zcat map.log.1.gz)`.
        r = subprocess.run(["bash", "-c", f'"{CTL}" --json who 198.51.100.11:60966 --at {T0 + 60} --log <(cat "{self.log}")'],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([row["inside"] for row in json.loads(r.stdout)], ["100.64.0.2:40001"])


class TelemetryServer:
    """A socket that answers like DPDK telemetry: a greeting, then one reply per command."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.bind(path)
        self.sock.listen(4)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.send(json.dumps({"version": "DPDK 22.11", "pid": os.getpid(), "max_output_len": 16384}).encode())
                    command = conn.recv(1024).decode()
                    if command:
                        conn.send(json.dumps({command.split(",")[0]: {"answered_by": "live"}}).encode())
                except OSError:
                    pass  # the client went away

    def close(self):
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()  # the file stays, as a killed process leaves it
        self.thread.join(5)


def discovery_scenario():
    """Run inside a private mount namespace with an empty /run/dpdk: prints what
    ephemeractl answered with one stale socket beside a live one, then with
    only stale ones."""
    base = "/var/run/dpdk"
    for name in ("old", "live"):
        os.makedirs(os.path.join(base, name))
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    stale.bind(os.path.join(base, "old", "dpdk_telemetry.v2"))
    stale.close()
    server = TelemetryServer(os.path.join(base, "live", "dpdk_telemetry.v2"))
    one_live = ctl("stats")
    server.close()
    none_live = ctl("stats")
    print(json.dumps({"one_live": [one_live.returncode, one_live.stdout, one_live.stderr],
                      "none_live": [none_live.returncode, none_live.stdout, none_live.stderr]}))


class FindingTheDaemon(unittest.TestCase):
    def test_sockets_left_by_killed_processes_are_passed_over(self):
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            self.skipTest("needs root and unshare(1) for a private /run/dpdk")
        script = (f'mkdir -p /run/dpdk && mount -t tmpfs ephemeractl-test /run/dpdk && '
                  f'exec "{sys.executable}" "{os.path.abspath(__file__)}" "{CTL}" --discovery-scenario')
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout.strip().splitlines()[-1])
        rc, stdout, stderr = out["one_live"]
        self.assertEqual(rc, 0, stderr)
        self.assertIn("live", stdout, "the live daemon's answer, not 'several DPDK processes'")
        rc, stdout, stderr = out["none_live"]
        self.assertEqual(rc, 2)
        self.assertIn("no running DPDK process", stderr)
        self.assertIn("nothing answers", stderr)
        self.assertIn("/var/run/dpdk/old/dpdk_telemetry.v2", stderr)
        self.assertIn("/var/run/dpdk/live/dpdk_telemetry.v2", stderr)


if __name__ == "__main__":
    if "--discovery-scenario" in sys.argv:
        discovery_scenario()
    else:
        unittest.main(verbosity=2)
