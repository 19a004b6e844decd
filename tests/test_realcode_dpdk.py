"""`analyze` on every DPDK 22.11 example application (Debian's dpdk-doc sources, libdpdk-dev headers).

Every application is analyzed in place (`--project-root` its directory; nothing is written under
/usr/share) with the sources and flags its meson.build gives (bench/dpdk_examples.py). A translation
unit may fail only where gcc, with the same flags, fails too: the examples that do not compile
uninstrumented (a library Debian does not package) are the only allowed failures, and each is
checked with gcc. Applications run two at a time, one parse job each, for the 2-core CI machine.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ftmb_instrument.schema import check

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import dpdk_examples  # noqa: E402

pytestmark = pytest.mark.slow

LAUNCH = re.compile(r"\b(rte_eal_mp_remote_launch|rte_eal_remote_launch)\s*\(")


def _analyze(example: dpdk_examples.Example, db: Path, out: Path) -> tuple[subprocess.CompletedProcess, dict | None]:
    exe = Path(sys.executable).parent / "ftmb-instrument"
    proc = subprocess.run(
        [str(exe), "analyze", "-p", str(db), "--project-root", str(example.directory), "-f", "json", "-o", str(out),
         "--jobs", "1", "--keep-going"],
        capture_output=True, text=True, timeout=600,
    )
    return proc, json.loads(out.read_text()) if out.exists() else None


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory):
    """{application: (example, completed process, report)} for every application."""
    if not dpdk_examples.EXAMPLES_DIR.is_dir():
        pytest.fail(f"{dpdk_examples.EXAMPLES_DIR} missing: install dpdk-doc and libdpdk-dev (./dev.sh does)")
    examples, _ = dpdk_examples.enumerate_examples()
    tmp = tmp_path_factory.mktemp("dpdk")
    everything = dpdk_examples.CompileResult(ok=[(e, s) for e in examples for s in e.sources])
    dbs = dpdk_examples.write_databases(everything, tmp / "db")
    by_name = {e.name: e for e in examples}
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = {name: pool.submit(_analyze, by_name[name], db, tmp / (name.replace("/", "__") + ".json"))
                for name, db in dbs.items()}
        return {name: (by_name[name], *f.result()) for name, f in runs.items()}


def test_every_application_is_found(analyzed):
    assert len(analyzed) >= 50  # examples/meson.build lists 51 in 22.11
    for name in ("l2fwd", "l3fwd", "ipsec-secgw", "multi_process/simple_mp", "server_node_efd/server"):
        assert name in analyzed


def test_runs_to_completion_and_reports_validate(analyzed):
    for name, (_, proc, report) in analyzed.items():
        assert "Traceback" not in proc.stderr, f"{name}: {proc.stderr}"
        assert proc.returncode == 0, f"{name}: exit {proc.returncode}: {proc.stderr[-2000:]}"
        assert report is not None, name
        assert check(report) == [], name


def test_only_units_gcc_rejects_fail(analyzed):
    failed = []
    for name, (example, _, report) in analyzed.items():
        for unit in report["translation_units"]:
            if unit["status"] != "ok":
                source = example.directory / unit["file"]
                failed.append((name, unit["file"], dpdk_examples.gcc_error(example, source), unit["diagnostics"][:1]))
    compiles = [f for f in failed if f[2] is None]
    assert compiles == [], "translation units gcc compiles but the analyzer failed on: " + repr(compiles)
    # The applications that need a library Debian does not package (pqos, libvirt, flow_classify).
    assert {name for name, *_ in failed} <= {"l2fwd-cat", "vm_power_manager", "flow_classify"}, failed
    ok_units = sum(r["coverage"]["translation_units_ok"] for _, _, r in analyzed.values())
    assert ok_units >= 125, ok_units


def test_l2fwd_threads_and_packet_io(analyzed):
    _, _, report = analyzed["l2fwd"]
    [root] = [t for t in report["threads"] if t["entry"] == "l2fwd_launch_one_lcore"]
    assert root["how"] == "rte_eal_mp_remote_launch" and root["instances"] == "several"
    rx = [p for p in report["packet_io"] if p["call"] == "rte_eth_rx_burst"]
    assert rx and all(p["category"] == "rx" for p in rx)
    assert all("l2fwd_launch_one_lcore" in p["threads"] for p in rx)


def test_every_launcher_has_its_lcore_threads_and_rx_sites(analyzed):
    for name, (example, _, report) in analyzed.items():
        if report["coverage"]["translation_units_failed"]:
            continue
        text = "".join(s.read_text(errors="replace") for s in example.sources)
        launchers = set(LAUNCH.findall(text))
        if launchers:
            hows = {t["how"] for t in report["threads"]}
            assert hows & launchers, f"{name}: launches lcores with {launchers} but the threads are {hows}"
        if "rte_eth_rx_burst(" in text:
            assert any(p["call"] == "rte_eth_rx_burst" for p in report["packet_io"]), name
