"""Real code: a few DPDK 22.11 example applications are instrumented as whole programs and build
(bench/instrument_dpdk_examples.py does all of them; this keeps two small ones in the test suite)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))



@pytest.mark.parametrize("name", ["l2fwd", "skeleton"])
def test_dpdk_example_builds_instrumented(name, tmp_path, monkeypatch):
    import instrument_dpdk_examples as bench
    from dpdk_examples import enumerate_examples

    from ftmb_instrument.semantics import load_semantics

    monkeypatch.setenv("FTMB_RUNTIME_BUILD", str(tmp_path / "runtime"))
    rt = bench.ensure_runtime(dpdk=True)
    [example] = [e for e in enumerate_examples()[0] if e.name == name]
    outcome = bench.run_one(example, load_semantics(), tmp_path, rt)
    assert outcome.status == "built", outcome.detail
    assert outcome.linked_uninstrumented
    app = tmp_path / name / "inst" / "app"
    syms = subprocess.run(["nm", str(app)], capture_output=True, text=True, check=True).stdout
    assert " T ftmb_rx_burst" in syms and " T ftmb_init" in syms
    # it starts and stops under EAL on a null device in passthrough mode
    run = subprocess.run(["timeout", "-s", "KILL", "20", str(app), "--no-huge", "-m", "256", "--no-pci",
                          "--no-shconf", "--no-telemetry", "--vdev=net_null0", "-l", "0", "--", "--help"],
                         capture_output=True, text=True, env={**os.environ, "FTMB_MODE": "passthrough"})
    assert run.returncode in (0, 1, 2), run.stderr[-2000:]
    assert "EAL" in run.stdout + run.stderr
