"""`ftmb-instrument run` given bad input or hit by faults (issue 14), with the real command: one
line naming the value or file and a nonzero exit, no traceback, nothing the user had destroyed,
released packets always in OUT (written as they are released), and nothing left behind (processes,
shared memory, temporary files) whatever ends the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftmb_instrument import pcap, traffic
from ftmb_instrument.abi.spec import ABI_VERSION

ROOT = Path(__file__).resolve().parents[1]
FWD = ROOT / "runtime" / "build" / "ftmb-test-fwd"
CLI = [sys.executable, "-m", "ftmb_instrument"]


@pytest.fixture(scope="module", autouse=True)
def built():
    subprocess.run(["make", "-s", "-C", str(ROOT / "runtime"), "-j2", "all"], check=True, capture_output=True,
                   timeout=600)


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("trace") / "trace.pcap"
    traffic.generate(path, seed=3, flows=60, packets=3000, duration_s=0.3)
    return path


def leftovers(pid: int, tmpdir: Path) -> list[str]:
    """What a run in process `pid` left: processes naming its sessions (run-PID-...), their shared
    memory, and anything in its temporary directory."""
    marker = f"run-{pid}-".encode()
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) in (os.getpid(), pid):
            continue
        for what in ("cmdline", "environ"):
            try:
                if marker in (d / what).read_bytes():
                    found.append(f"pid {d.name}: {(d / 'cmdline').read_bytes()[:80]!r}")
                    break
            except OSError:
                pass
    found += [str(p) for p in Path("/dev/shm").glob(f"ftmb-run-{pid}-*")]
    found += [str(p) for p in tmpdir.iterdir()]
    return found


def env_for(tmp_path: Path) -> dict:
    """The run's temporary files go to a directory of the test's own, so the test can see them all."""
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir(exist_ok=True)
    return dict(os.environ, TMPDIR=str(tmpdir))


def cli(tmp_path, *args, timeout=90):
    p = subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=ROOT, env=env_for(tmp_path))
    out, err = p.communicate(timeout=timeout)
    assert leftovers(p.pid, tmp_path / "tmpdir") == []
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def one_line(proc, code: int, *parts: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def released(path: Path) -> int:
    return sum(1 for _ in pcap.iter_pcap(path))


@pytest.mark.parametrize("opt,value,says", [
    ("--timeout", "0", "--timeout 0: expected a positive number of seconds"),
    ("--timeout", "-3", "--timeout -3: expected a positive number of seconds"),
    ("--kill-master-at", "-1", "--kill-master-at -1: expected seconds after the master's start"),
    ("--grace", "-1", "--grace -1: expected seconds"),
])
def test_a_bad_number_is_refused_before_anything_starts(trace, tmp_path, opt, value, says):
    out = tmp_path / "o.pcap"
    proc = cli(tmp_path, "run", "--in", trace, "--out", out, opt, value, "--", FWD, "1")
    one_line(proc, 1, says)
    assert not out.exists()


def test_in_and_out_the_same_file_is_refused(trace, tmp_path):
    before = trace.read_bytes()
    proc = cli(tmp_path, "run", "--in", trace, "--out", trace, "--", FWD, "1")
    one_line(proc, 1, str(trace), "--out is the input")
    assert trace.read_bytes() == before


def test_log_and_out_the_same_file_is_refused(trace, tmp_path):
    out = tmp_path / "o.pcap"
    out.write_bytes(b"the user's file")
    proc = cli(tmp_path, "run", "--in", trace, "--out", out, "--log", out, "--", FWD, "1")
    one_line(proc, 1, "--log and --out are the same file")
    assert out.read_bytes() == b"the user's file"


@pytest.mark.parametrize("opt", ["--out", "--log"])
def test_an_unwritable_output_is_refused_at_the_start(trace, tmp_path, opt):
    # sysfs refuses to create files, even for root (file modes would not stop root)
    where = Path("/sys/ftmb-test-output")
    args = ["--out", where, "--log", tmp_path / "l.log"] if opt == "--out" else \
        ["--out", tmp_path / "o.pcap", "--log", where]
    proc = cli(tmp_path, "run", "--in", trace, *args, "--", FWD, "1")
    one_line(proc, 1, str(where), f"cannot write {opt}")
    assert not (tmp_path / "o.pcap").exists() and not (tmp_path / "l.log").exists()


def start_paced(tmp_path, trace, out, rate=300, **env):
    """A 10 s run (3000 packets at 300/s on two queues) that has released some packets already (long,
    so that on a loaded machine the test's signal still comes before the input ends)."""
    proc = subprocess.Popen([*CLI, "run", "--in", str(trace), "--out", str(out), "--queues", "2", "--rate", str(rate),
                             "--", str(FWD), "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=dict(env_for(tmp_path), **env))
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        try:  # (a run that fails removes an OUT without packets: it may go between two looks)
            if out.stat().st_size > 24 + 16 * 10:  # the pcap header and some packets
                return proc
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    out_, err = proc.communicate(timeout=60) if proc.poll() is not None else (proc.kill(), proc.communicate())[1]
    pytest.fail(f"the paced run released nothing: {err[-2000:]}")


def run_children(pid: int) -> dict[str, int]:
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out[os.path.basename((d / "cmdline").read_bytes().split(b"\0")[0].decode())] = int(d.name)
            except (OSError, IndexError, ValueError):
                pass
    return out


def test_a_second_run_to_the_same_output_is_refused(trace, tmp_path):
    out = tmp_path / "o.pcap"
    first = start_paced(tmp_path, trace, out, rate=300)  # 3000 packets: several seconds
    (tmp_path / "second").mkdir()  # (its own temporary directory: the first run's is in use)
    second = cli(tmp_path / "second", "run", "--in", trace, "--out", out, "--", FWD, "1")
    one_line(second, 1, str(out), "another run is writing this output")
    assert first.poll() is None, "the first run ended before the second tried: the test proves nothing"
    stdout, stderr = first.communicate(timeout=90)
    assert first.returncode == 0, stderr
    assert released(out) == 3000  # the forwarder sends every packet; the second run took nothing away


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_keeps_what_it_released_and_says_so(trace, tmp_path, sig):
    out = tmp_path / "o.pcap"
    proc = start_paced(tmp_path, trace, out)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    line = one_line(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), 130, "interrupted",
                    f"{out} keeps the")
    n = released(out)
    assert 0 < n < 3000 and f"keeps the {n} packets released until then" in line, (n, line)
    assert leftovers(proc.pid, tmp_path / "tmpdir") == []


@pytest.mark.parametrize("victim", ["ftmb-test-fwd", "ftmb-output-logger"])
def test_released_packets_stay_in_out_whatever_dies(trace, tmp_path, victim):
    out = tmp_path / "o.pcap"
    proc = start_paced(tmp_path, trace, out)
    os.kill(run_children(proc.pid)[victim], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=60)
    name = "output-logger" if victim == "ftmb-output-logger" else victim
    line = one_line(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), 1, name,
                    "killed by SIGKILL", f"{out} keeps the")
    n = released(out)
    assert n > 0 and f"keeps the {n} packets" in line, (n, line)
    assert leftovers(proc.pid, tmp_path / "tmpdir") == []


def stop_for(pid: int, seconds: float) -> None:
    """SIGSTOP `pid`, SIGCONT it `seconds` later (if the run has not ended it meanwhile)."""
    os.kill(pid, signal.SIGSTOP)
    time.sleep(seconds)
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


@pytest.mark.parametrize("victim,who", [("ftmb-output-logger", "output"), ("ftmb-input-logger", "input")])
def test_a_logger_stopped_past_the_peer_timeout_is_declared_gone_and_the_run_says_so(trace, tmp_path, victim, who):
    # stopped 5 s with a 1 s peer timeout: the master gives up on it (as on a dead one: one line, no
    # hang), and the run fails saying so instead of exiting 0 with part of the packets
    out = tmp_path / "o.pcap"
    proc = start_paced(tmp_path, trace, out, FTMB_PEER_TIMEOUT_MS="1000")
    pid = run_children(proc.pid)[victim]
    stop_for(pid, 5)
    stdout, stderr = proc.communicate(timeout=90)
    line = one_line(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), 1,
                    f"ftmb-test-fwd (pid ", f"declared the {who} logger (pid {pid}) gone: no heartbeat for 1000 ms",
                    f"{out} keeps the")
    n = released(out)
    assert 0 < n < 3000 and f"keeps the {n} packets" in line, (n, line)
    assert leftovers(proc.pid, tmp_path / "tmpdir") == []


@pytest.mark.parametrize("victim,who", [("ftmb-output-logger", "output"), ("ftmb-input-logger", "input")])
def test_a_logger_killed_mid_run_keeps_what_was_released_and_the_run_says_so(trace, tmp_path, victim, who):
    # a real SIGKILL of a logger on one host: the master declares it gone (runtime/README.md, The
    # loggers, Faults), the run fails in one line, and OUT keeps every packet released before the kill
    out = tmp_path / "o.pcap"
    proc = start_paced(tmp_path, trace, out, FTMB_PEER_TIMEOUT_MS="1000")
    pid = run_children(proc.pid)[victim]
    os.kill(pid, signal.SIGKILL)
    at_kill = released(out)
    stdout, stderr = proc.communicate(timeout=90)
    line = one_line(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), 1, f"{out} keeps the")
    n = released(out)
    assert 0 < at_kill <= n < 3000 and f"keeps the {n} packets" in line, (at_kill, n, line)
    if who == "output":
        assert n == at_kill  # nothing released after its death
    assert leftovers(proc.pid, tmp_path / "tmpdir") == []


def test_a_master_stopped_for_a_while_is_waited_for(trace, tmp_path):
    # the loggers judge the master by its process only: a stopped master may resume, and giving up
    # on it would leave two masters; the run's --timeout bounds the wait
    out = tmp_path / "o.pcap"
    proc = start_paced(tmp_path, trace, out, FTMB_PEER_TIMEOUT_MS="1000")
    stop_for(run_children(proc.pid)["ftmb-test-fwd"], 5)
    stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 0, stderr
    assert released(out) == 3000
    assert leftovers(proc.pid, tmp_path / "tmpdir") == []


def test_a_run_killed_by_sigkill_leaves_nothing_but_out(trace, tmp_path):
    out = tmp_path / "o.pcap"
    proc = start_paced(tmp_path, trace, out, rate=100)
    proc.kill()
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while leftovers(proc.pid, tmp_path / "tmpdir"):
        assert time.monotonic() < deadline, leftovers(proc.pid, tmp_path / "tmpdir")
        time.sleep(0.05)
    # no .partial or .tmp; OUT.arrivals (the input logger's complete record of what it served, written
    # at its exit as a .tmp and renamed) may stay with OUT and its manifest
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n for n in names if n != "o.pcap.arrivals"] == ["o.pcap", "o.pcap.ftmb.json", "tmpdir"], names
    assert released(out) > 0


def test_the_manifest_says_how_the_run_ran_and_verify_reproduces_it(trace, tmp_path):
    import json
    out = tmp_path / "o.pcap"
    proc = cli(tmp_path, "run", "--in", trace, "--out", out, "--queues", "2", "--rate", "20000", "--", FWD, "2")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "o.pcap.ftmb.json").read_text())
    assert doc["format"] == "ftmb-run-manifest/1" and doc["program"] == [str(FWD), "2"], doc
    assert (doc["queues"], doc["rate"], doc["tick_us"], doc["checkpoint_ms"]) == (2, 20000, None, None), doc
    assert doc["tool"]["version"] and doc["runtime"]["abi_version"] == ABI_VERSION, doc
    # verify without the program or the queues: both, and the rate, come from the manifest
    checked = cli(tmp_path, "verify", "--in", trace, "--released", out)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"conditions from {out}.ftmb.json: {FWD}, 2 queues, rate 20000" in checked.stdout
    assert "violations: 0" in checked.stdout


def test_a_malformed_manifest_is_one_line(trace, tmp_path):
    out = tmp_path / "o.pcap"
    pcap.write_pcap(out, pcap.read_pcap(trace))
    (tmp_path / "o.pcap.ftmb.json").write_text('{"format": "ftmb-run-manifest/1", "queues": "two"}')
    proc = cli(tmp_path, "verify", "--in", trace, "--released", out)
    one_line(proc, 1, "o.pcap.ftmb.json", "program: missing or of the wrong type")


def test_out_may_be_a_device(trace, tmp_path):
    # written as it is: /dev/null stays the device (it used to be replaced by a regular file)
    proc = cli(tmp_path, "run", "--in", trace, "--out", "/dev/null", "--", FWD, "1")
    assert proc.returncode == 0, proc.stderr
    assert Path("/dev/null").is_char_device()
    assert not Path("/dev/null.ftmb.json").exists()
