"""A user's output file is never destroyed (issue 14): `-o` onto a device or FIFO writes into it, onto a
symlink replaces the file it points to (the link stays), onto a directory or a symlink loop is one
line; a failed write leaves the previous file and no temporary file. Real commands, real files."""

from __future__ import annotations

import json
import os
import stat
import threading

from bad_input_util import THREADED, cli, refused, snapshot

from ftmb_instrument import pcap


def program(tmp_path):
    src = tmp_path / "prog.c"
    src.write_text(THREADED)
    return src


def test_a_device_is_written_not_replaced(tmp_path):
    src = program(tmp_path)
    before = os.stat("/dev/full")
    proc = cli("analyze", src, "-f", "json", "-o", "/dev/full", "--")
    refused(proc, "/dev/full: cannot write: No space left on device")
    after = os.stat("/dev/full")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_ino == before.st_ino
    proc = cli("analyze", src, "-f", "json", "-o", "/dev/null", "--")
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_fifo_receives_the_report(tmp_path):
    src = program(tmp_path)
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    proc = cli("analyze", src, "-f", "json", "-o", fifo, "--")
    reader.join(timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert json.loads(got[0])["schema"] == "ftmb-report/1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prog.c", "report.fifo"]


def test_a_symlink_is_followed_and_stays_a_link(tmp_path):
    src = program(tmp_path)
    (tmp_path / "reports").mkdir()
    target = tmp_path / "reports" / "r.json"
    target.write_text("old\n")
    target.chmod(0o640)
    link = tmp_path / "latest.json"
    link.symlink_to(target)
    proc = cli("analyze", src, "-f", "json", "-o", link, "--")
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text())["schema"] == "ftmb-report/1"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["r.json"]
    # traffic writes through the same helper
    pl = tmp_path / "trace.pcap"
    (tmp_path / "reports" / "t.pcap").write_bytes(b"old")
    pl.symlink_to(tmp_path / "reports" / "t.pcap")
    proc = cli("traffic", pl, "--flows", "3", "--packets", "30")
    assert proc.returncode == 0, proc.stderr
    assert pl.is_symlink() and len(pcap.read_pcap(pl)) == 30
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["r.json", "t.pcap"]


def test_a_directory_or_a_symlink_loop_is_one_line_and_nothing_changes(tmp_path):
    src = program(tmp_path)
    (tmp_path / "adir").mkdir()
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    before = snapshot(tmp_path)
    refused(cli("analyze", src, "-f", "json", "-o", tmp_path / "adir", "--"), "adir: cannot write: Is a directory")
    refused(cli("analyze", src, "-f", "json", "-o", tmp_path / "loop1", "--"),
            "loop1: cannot write: Too many levels of symbolic links")
    refused(cli("traffic", tmp_path / "loop1", "--flows", "3", "--packets", "30"),
            "loop1: cannot write: Too many levels of symbolic links")
    refused(cli("analyze", src, "-f", "json", "-o", tmp_path / "no" / "r.json", "--"),
            "r.json: cannot write: its directory does not exist")
    assert snapshot(tmp_path) == before


def test_a_refused_command_keeps_the_previous_output_and_leaves_no_temporary(tmp_path):
    out = tmp_path / "trace.pcap"
    out.write_text("previous\n")
    before = snapshot(tmp_path)
    refused(cli("traffic", out, "--flows", "5", "--packets", "3"), "packets=3", "flows=5")
    refused(cli("traffic", out, "--udp-fraction", "2"), "udp_fraction=2")
    assert snapshot(tmp_path) == before
