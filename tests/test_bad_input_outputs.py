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


def full_device(tmp_path):
    """A character device that refuses writes (ENOSPC): a node of /dev/full made in tmp_path when we
    may (root), so that a regression replaces a test file and not the system's /dev/full; /dev/full
    itself otherwise, which a non-root process cannot replace."""
    if os.geteuid() != 0:
        return "/dev/full"
    node = tmp_path / "full"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    return str(node)


def test_a_device_is_written_not_replaced(tmp_path):
    src = program(tmp_path)
    full = full_device(tmp_path)
    before = os.stat(full)
    proc = cli("analyze", src, "-f", "json", "-o", full, "--")
    refused(proc, f"{full}: cannot write: No space left on device")
    after = os.stat(full)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_ino == before.st_ino
    null = tmp_path / "null"
    if os.geteuid() == 0:
        os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    else:
        null = "/dev/null"
    proc = cli("analyze", src, "-f", "json", "-o", null, "--")
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISCHR(os.stat(null).st_mode)
    proc = cli("analyze", src, "-f", "json", "-o", "/dev/stdout", "--")  # a pipe here, through /proc/self/fd/1
    assert proc.returncode == 0 and json.loads(proc.stdout)["schema"] == "ftmb-report/1", proc.stderr
    log = tmp_path / "appended.txt"  # a file the shell opened for appending gets the bytes, is not replaced
    log.write_text("kept\n")
    with open(log, "a") as f:
        proc = cli("analyze", src, "-f", "json", "-o", "/dev/stdout", "--", stdout=f)
    assert proc.returncode == 0 and log.read_text().startswith("kept\n{"), proc.stderr


def test_a_fifo_receives_the_report(tmp_path):
    src = program(tmp_path)
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
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
