#!/usr/bin/env python3
"""A wrong configuration or a missing port: one clear error line, non-zero exit, no crash.

Runs the real `ephemera` binary (argv[1]) against broken configurations. The
EAL runs without hugepages or PCI, so this needs no lab and no root.
"""
import os
import subprocess
import sys
import tempfile
import time
import unittest

from pcap_frames import udp_frame, write_pcap

EPHEMERA = sys.argv.pop(1) if len(sys.argv) > 1 else "build/control/ephemera"

EAL = '[eal]\nargs = ["--no-huge", "-m", "256", "--no-shconf", "--no-pci", "--log-level=*:error", "--file-prefix=eph-err-{pid}"]\nlcores = "{lcores}"\n'
GOOD = """
[inside]
port = "{inside}"
address = "100.64.0.1/24"
mtu = {inside_mtu}
[outside]
port = "net_null1"
address = "203.0.113.1/24"
next_hop = "203.0.113.2"
next_hop_mac = "02:00:00:00:00:02"
[nat]
pool = ["198.51.100.0/28"]
ports = "{ports}"
{nat_extra}
[dataplane]
workers = {workers}
"""


def config(inside="net_null0", ports="49152-65535", workers=1, lcores="0,1", extra="", nat_extra="", inside_mtu=1500):
    return EAL.format(pid=os.getpid(), lcores=lcores) + GOOD.format(
        inside=inside, ports=ports, workers=workers, nat_extra=nat_extra, inside_mtu=inside_mtu) + extra


class DaemonStartupErrors(unittest.TestCase):
    def run_daemon(self, text=None, path=None):
        with tempfile.TemporaryDirectory() as tmp:
            if path is None:
                path = os.path.join(tmp, "gw.toml")
                with open(path, "w") as f:
                    f.write(text)
            p = subprocess.run([EPHEMERA, "--config", path], capture_output=True, text=True, timeout=60)
        return p

    def assert_one_clear_error(self, p, *expected):
        self.assertGreater(p.returncode, 0, p.stderr)
        self.assertLess(p.returncode, 128, "killed by a signal:\n" + p.stderr)
        errors = [l for l in p.stderr.splitlines() if l.startswith("ephemera: error:")]
        self.assertEqual(len(errors), 1, p.stderr)
        for text in expected:
            self.assertIn(text, errors[0])
        self.assertNotIn("ephemera: forwarding", p.stdout)

    def test_missing_config_file(self):
        self.assert_one_clear_error(self.run_daemon(path="/nonexistent/ephemera.toml"), "/nonexistent/ephemera.toml")

    def test_unknown_key_is_named(self):
        self.assert_one_clear_error(self.run_daemon(config(extra="[timeouts]\nudp_time = 5\n")), "timeouts.udp_time")

    def test_bad_port_range_is_named(self):
        self.assert_one_clear_error(self.run_daemon(config(ports="100-200")), "nat.ports", "100")

    def test_missing_interface(self):
        self.assert_one_clear_error(self.run_daemon(config(inside="auto:eph-no-such0")), "inside.port", "eph-no-such0")

    def test_a_start_that_fails_writes_nothing_into_the_mapping_log(self):
        # The log may be a running daemon's: a start line would end its mappings for `who`.
        with tempfile.TemporaryDirectory() as tmp:
            log = os.path.join(tmp, "mappings.log")
            p = self.run_daemon(config(inside="auto:eph-no-such0", extra=f'[log]\nfile = "{log}"\n'))
            self.assert_one_clear_error(p, "inside.port")
            with open(log) as f:
                self.assertEqual(f.read(), "")

    def test_missing_pci_device(self):
        self.assert_one_clear_error(self.run_daemon(config(inside="0000:99:00.0")), "inside.port", "0000:99:00.0")

    def test_static_mapping_that_cannot_be_made_is_named(self):
        spec = "tcp 100.64.0.5:80 198.51.100.1:50000"  # 50000: inside the dynamic range
        self.assert_one_clear_error(self.run_daemon(config(nat_extra=f'static = ["{spec}"]')),
                                    "nat.static", spec, "dynamic range")

    def test_two_static_mappings_of_one_inside_endpoint_are_refused_naming_the_first(self):
        first, second = "tcp 100.64.0.5:80 198.51.100.1:80", "tcp 100.64.0.5:80 198.51.100.2:80"
        self.assert_one_clear_error(self.run_daemon(config(nat_extra=f'static = ["{first}", "{second}"]')),
                                    "nat.static", second, "already forwarded from 198.51.100.1:80/tcp")

    def test_malformed_static_mapping_is_named(self):
        self.assert_one_clear_error(self.run_daemon(config(nat_extra='static = ["tcp 100.64.0.5:80"]')),
                                    "nat.static", "PROTO INSIDE:PORT POOLADDR:PORT")

    def test_deterministic_prefix_too_large_for_the_ports_is_named(self):
        # 65536 hosts on 16 pool addresses x 100 ports: no port for each host.
        self.assert_one_clear_error(
            self.run_daemon(config(ports="60000-60099", nat_extra='deterministic = "100.64.0.0/16"')),
            "nat.deterministic", "100.64.0.0/16")

    def test_jumbo_mtu_a_port_refuses_is_named(self):
        # net_ring cannot change its MTU: raising it to 9000 is refused, not ignored.
        self.assert_one_clear_error(self.run_daemon(config(inside="net_ring0", inside_mtu=9000)),
                                    "inside.mtu = 9000", "net_ring0")

    def test_tables_too_large_for_the_memory_name_what_sizes_them(self):
        # 4 M mappings do not fit the 256 MB the EAL has here.
        p = self.run_daemon(config(nat_extra="max_mappings = 4000000"))
        self.assert_one_clear_error(p, "worker 0", "not enough DPDK memory", "nat.max_mappings", "MiB free of")

    def test_too_many_mbufs_for_the_memory_name_the_key(self):
        p = self.run_daemon(config(extra="mbufs = 1000000\n"))
        self.assert_one_clear_error(p, "dataplane.mbufs = 1000000", "MiB free of")

    def test_a_reassembly_table_too_large_for_the_memory_names_its_key_alone(self):
        # 16384 datagrams take a 16 MB table; with 40 MB for the EAL and small
        # other tables, that is what does not fit.
        text = config(nat_extra="max_mappings = 1024\nmax_extra_sessions = 1024\nmax_subscribers = 1024",
                      extra="reassembly = 16384\nmbufs = 4096\n").replace('"-m", "256"', '"-m", "40"')
        p = self.run_daemon(text)
        self.assert_one_clear_error(p, "dataplane.reassembly = 16384", "not enough DPDK memory")
        self.assertNotIn("max_mappings", p.stderr, "not the key to change")
        self.assertNotIn("No such file", p.stderr, "a stale rte_errno")

    def test_too_few_lcores(self):
        p = self.run_daemon(config(workers=3, lcores="0,1"))
        self.assert_one_clear_error(p, "dataplane.workers", "lcores")
        self.assertEqual(p.returncode, 2, "a configuration error")

    def test_flow_steering_on_a_port_without_flow_rules_is_refused(self):
        # Two workers (three lcores on two CPUs); net_null has no rte_flow.
        self.assert_one_clear_error(
            self.run_daemon(config(workers=2, lcores="0@0,1@1,2@1", extra='steering = "flow"\n')),
            "dataplane.steering", "outside port", "no flow rules")

    def test_auto_steering_falls_back_to_software_and_says_why(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "gw.toml")
            with open(path, "w") as f:
                f.write(config(workers=2, lcores="0@0,1@1,2@1"))
            p = subprocess.Popen([EPHEMERA, "--config", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
            try:
                forwarding = p.stdout.readline()
                steering = p.stdout.readline()
            finally:
                p.terminate()
                out, err = p.communicate(timeout=30)
            self.assertIn("ephemera: forwarding", forwarding, err)
            self.assertIn("steering=sw/sw", forwarding)
            self.assertIn("inside: software handoff by subscriber (the port cannot hash on the IPv4 source alone: RSS offloads", steering)
            self.assertIn("outside: software handoff (the port has no flow rules: its driver implements no rte_flow)", steering)
            self.assertEqual(p.returncode, 0, err)

    def test_static_mappings_are_made_before_the_first_packet_is_forwarded(self):
        # The inside port replays, from the first moment, UDP from the port
        # forward's own inside endpoint: were it forwarded before the static
        # mapping is made, it would take that endpoint with a dynamic mapping
        # and the start would fail.
        with tempfile.TemporaryDirectory() as tmp:
            pcap = os.path.join(tmp, "inside.pcap")
            write_pcap(pcap, [udp_frame("100.64.0.5", 80, "203.0.113.50", 53)])
            spec = "udp 100.64.0.5:80 198.51.100.1:80"
            p = self.run_daemon_briefly(config(inside=f"net_pcap0,rx_pcap={pcap},infinite_rx=1",
                                               nat_extra=f'static = ["{spec}"]'))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("ephemera: forwarding", p.stdout)
        self.assertIn('"translated":{"in":0,"out":', p.stdout)
        self.assertNotIn('"translated":{"in":0,"out":0}', p.stdout, "the replayed packets went through")

    def test_static_mappings_of_the_configuration_are_logged_with_the_time_they_were_made(self):
        with tempfile.TemporaryDirectory() as tmp:
            log = os.path.join(tmp, "mappings.log")
            before = time.time()
            p = self.run_daemon_briefly(config(nat_extra='static = ["tcp 100.64.0.5:443 198.51.100.1:443"]',
                                               extra=f'[log]\nfile = "{log}"\n'))
            after = time.time()
            with open(log) as f:
                lines = f.read().splitlines()
        self.assertEqual(p.returncode, 0, p.stderr)
        created = [l for l in lines if " create tcp inside=100.64.0.5:443 external=198.51.100.1:443" in l]
        self.assertEqual(len(created), 1, lines)
        unix_ms = int(created[0].split()[1])
        self.assertGreaterEqual(unix_ms, int(before * 1000) - 1000, created[0])
        self.assertLessEqual(unix_ms, int(after * 1000) + 1000, created[0])

    def run_daemon_briefly(self, text, seconds=2):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "gw.toml")
            with open(path, "w") as f:
                f.write(text)
            p = subprocess.Popen([EPHEMERA, "--config", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
            try:
                p.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                p.terminate()
            out, err = p.communicate(timeout=30)
        return subprocess.CompletedProcess(p.args, p.returncode, out, err)

    def test_good_config_starts_and_stops_on_sigterm(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "gw.toml")
            with open(path, "w") as f:
                f.write(config())
            p = subprocess.Popen([EPHEMERA, "--config", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
            try:
                line = p.stdout.readline()
                self.assertIn("ephemera: forwarding", line)
            finally:
                p.terminate()
                out, err = p.communicate(timeout=30)
            self.assertEqual(p.returncode, 0, err)
            self.assertIn("final counters", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
