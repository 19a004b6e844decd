"""`ftmb-instrument instrument` and `config` from the command line: output modes, all-or-nothing
writes, one clear error line for bad input."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ftmb_instrument.cli import main

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = ROOT / "corpus" / "pt_nat_mutex.c"
BAD = """#include <pthread.h>
static int n;
#define RETRY(x) do { void *at = &&again; again: if ((x)++ < 5) goto *at; } while (0)
static void *w(void *a) { (void)a; for (;;) { RETRY(n); } }
int main(void) { pthread_t t[2]; for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, w, 0);
  for (int i = 0; i < 2; i++) pthread_join(t[i], 0); return 0; }
"""


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(PROGRAM, src / "nat.c")
    (src / "README").write_text("not C\n")
    return src


def test_default_is_a_unified_diff(tree, capsys):
    assert main(["instrument", str(tree / "nat.c"), "--", "-std=gnu11"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("--- a/nat.c\n+++ b/nat.c\n")
    assert "+\tftmb_pthread_mutex_lock(&nat_mutex, " in out
    assert "would change" in err
    assert (tree / "nat.c").read_bytes() == PROGRAM.read_bytes()


def test_output_dir_is_a_copy_of_the_tree(tree, tmp_path, capsys):
    out = tmp_path / "out"
    plan = tmp_path / "ftmb_plan.json"
    assert main(["instrument", str(tree / "nat.c"), "-o", str(out), "--plan", str(plan), "--", "-std=gnu11"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README", "nat.c"]
    assert "ftmb_pthread_mutex_lock" in (out / "nat.c").read_text()
    assert '"schema": "ftmb-plan/2"' in plan.read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no temporary left


def test_failed_run_writes_nothing(tree, tmp_path, capsys):
    (tree / "bad.c").write_text(BAD)
    out = tmp_path / "out"
    assert main(["instrument", str(tree / "bad.c"), "-o", str(out), "--", "-std=gnu11"]) == 1
    err = capsys.readouterr().err
    assert "bad.c:4: error: access to n in macro RETRY, whose expansion has a label" in err, err
    assert err.strip().splitlines()[-1].startswith("ftmb-instrument: error: 1 site(s) cannot be instrumented")
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]


def test_in_place_keeps_the_original(tree, capsys):
    assert main(["instrument", str(tree / "nat.c"), "--in-place", "--", "-std=gnu11"]) == 0
    assert (tree / "nat.c.ftmb-orig").read_bytes() == PROGRAM.read_bytes()
    assert (tree / "nat.c").read_text().startswith("/* FTMB-INSTRUMENTED")
    # running it again on the instrumented file is a clear error, not a second instrumentation
    assert main(["instrument", str(tree / "nat.c"), "--in-place", "--", "-std=gnu11"]) == 1
    assert "already instrumented" in capsys.readouterr().err


def test_conflicting_output_modes(tree, tmp_path, capsys):
    assert main(["instrument", str(tree / "nat.c"), "--in-place", "-o", str(tmp_path / "o")]) == 1
    assert "choose one of" in capsys.readouterr().err


def test_nonempty_output_dir_is_refused(tree, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep").write_text("x")
    assert main(["instrument", str(tree / "nat.c"), "-o", str(out), "--", "-std=gnu11"]) == 1
    assert "not an empty directory" in capsys.readouterr().err
    assert (out / "keep").read_text() == "x"


def test_config_prints_flags(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FTMB_RUNTIME_BUILD", str(tmp_path / "rt"))
    assert main(["config", "--cflags", "--libs"]) == 0
    out = capsys.readouterr().out.split()
    assert out[0] == f"-I{ROOT / 'runtime' / 'include'}"
    assert out[1] == str(tmp_path / "rt" / "libftmb.a") and os.path.exists(out[1])
    assert main(["config"]) == 1
