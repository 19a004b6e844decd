"""`ftmb-instrument traffic`: the generator as a command (same bytes as the library, clean errors)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from ftmb_instrument import pcap, traffic
from ftmb_instrument.cli import _register_commands, app

ROOT = Path(__file__).resolve().parents[1]
_register_commands()


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_same_bytes_as_the_library(tmp_path):
    res = invoke("traffic", tmp_path / "a.pcap", "--seed", "7", "--flows", "40", "--packets", "900",
                 "--duration", "0.2", "--server", "198.51.100.10", "--server", "198.51.100.99")
    assert res.exit_code == 0, res.output
    traffic.generate(tmp_path / "b.pcap", seed=7, flows=40, packets=900, duration_s=0.2,
                     servers=["198.51.100.10", "198.51.100.99"])
    assert (tmp_path / "a.pcap").read_bytes() == (tmp_path / "b.pcap").read_bytes()
    assert "900 packets, 40 flows" in res.output
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_options_reach_the_generator(tmp_path):
    res = invoke("traffic", tmp_path / "u.pcap", "--flows", "10", "--packets", "200", "--udp-fraction", "1",
                 "--clients", "10.9.0.0/24", "--microsecond")
    assert res.exit_code == 0, res.output
    pkts = [pcap.parse(p.data) for p in pcap.read_pcap(tmp_path / "u.pcap")]
    assert all(p.proto == pcap.PROTO_UDP for p in pkts)
    assert any(p.ip_src >> 8 == pcap.ip_int("10.9.0.0") >> 8 for p in pkts)
    assert (tmp_path / "u.pcap").read_bytes()[:4] == b"\xd4\xc3\xb2\xa1"  # microsecond magic


def cli(*args):
    return subprocess.run([sys.executable, "-m", "ftmb_instrument", *map(str, args)], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)


def test_too_few_packets_is_one_line_and_writes_nothing(tmp_path):
    proc = cli("traffic", tmp_path / "x.pcap", "--flows", "100", "--packets", "10")
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "packets=10: too few" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_bad_fraction_and_missing_directory(tmp_path):
    proc = cli("traffic", tmp_path / "x.pcap", "--udp-fraction", "1.5")
    assert proc.returncode == 1 and "udp_fraction=1.5" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("traffic", tmp_path / "no" / "x.pcap")
    assert proc.returncode == 1 and "directory does not exist" in proc.stderr
    assert list(tmp_path.iterdir()) == []
