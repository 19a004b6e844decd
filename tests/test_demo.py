"""`ftmb-instrument demo` end to end: shows the NAT's analysis and plan, builds it with ftmb-cc, crashes
its master, recovers, verifies, plots the releases around the crash (real processes; one run of about a
minute)."""

from __future__ import annotations

import os
import re

from ftmb_instrument.cli import main
from ftmb_instrument.demo import dpdk_runtime_dir


def test_demo_recovers_and_verifies(tmp_path, capsys, monkeypatch):
    from ftmb_instrument import verify
    served = []  # verify's reference run is served as the demo's run was (its manifest: rate and tick)
    real = verify.verify
    monkeypatch.setattr(verify, "verify", lambda *a, **kw: served.append(kw) or real(*a, **kw))
    rc = main(["demo", "--workdir", str(tmp_path), "--workers", "1", "--kill-at", "0.5"])
    out = capsys.readouterr().out
    assert rc == 0, out
    prefix = f"ftmbdemo{os.getpid()}"  # DPDK's runtime directories of the run and the reference run are gone
    assert not dpdk_runtime_dir(prefix).exists() and not dpdk_runtime_dir(prefix + "r").exists()
    text = " ".join(out.split())  # the console wraps long lines at its width
    # what the analysis found (table rows, a cell wrapped onto the next line joined again) and what the plan does
    cells = " ".join(out.replace("│", " ").split())
    assert re.search(r"port_pool\.lock nat\.c:\d+ atomic acquisition order logged", cells), out
    assert re.search(r"pool_exhausted_drops nat\.c:\d+ atomic each result logged", cells), out
    assert re.search(r"What the plan does: \d+ edited sites \(.*\d+ lock,", text), text
    assert "verification: PASS" in text
    assert [kw.get("rate") for kw in served] == [5000], served  # the demo's default rate
    assert re.search(r"(the newest checkpoint|the standby \(from the start\)) live [\d.]+ ms after the failure",
                     text) or "no failure happened" in text, text
    if "no failure happened" not in text:
        lines = out.splitlines()
        plot = next(i for i, ln in enumerate(lines) if ln.startswith("  |"))
        spark, marks = lines[plot], lines[plot + 1]
        assert set(spark.strip("| ")) <= set(" ▁▂▃▄▅▆▇█") and "█" in spark, spark
        assert marks.index("K") < marks.index("L")  # the backup goes live after the kill
        k = marks.index("K")  # marks line up with the sparkline's columns
        assert spark[3:k].strip() and spark[k + 1:-1].strip()  # packets released before the kill and after
