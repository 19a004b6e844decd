"""Quiet-capable ring dequeues in the plan and the rewriter: a dequeue the models mark `quiet` (it
writes nothing when it finds nothing) is spliced as one expression around ftmb_ordered_quiet_begin /
ftmb_ordered_quiet_end, its arguments evaluated once, in order; other ring calls keep the plain
ordered region; a dequeue whose arguments hold another site's edit falls back to the plain form. The
runtime side is runtime/tests/test_record.c (quiet_dequeues_replay); packet_ordering end to end is
tests/test_failover_packet_ordering.py."""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from analyzer_util import dpdk_cflags

from ftmb_instrument.errors import ModelError
from ftmb_instrument.frontend import from_files
from ftmb_instrument.plan import PlanOptions
from ftmb_instrument.rewrite import apply_plan
from ftmb_instrument.rewrite.pipeline import make_plan
from ftmb_instrument.semantics import Semantics, load_semantics

INCLUDE = Path(__file__).resolve().parents[1] / "runtime" / "include"

RINGS = r"""
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_ring.h>

static struct rte_ring *ring;
static volatile int quit;
static uint64_t got[RTE_MAX_LCORE], left[RTE_MAX_LCORE];

static void on_signal(int sig) { (void)sig; quit = 1; }

static int producer(void *arg)
{
    (void)arg;
    for (uintptr_t i = 1; i < 1000; i++)
        rte_ring_enqueue_burst(ring, (void **)&i, 1, NULL);
    return 0;
}

static int consumer(void *arg)
{
    void *objs[32];
    unsigned avail, k = (unsigned)(uintptr_t)arg;
    for (;;) {
        unsigned n = rte_ring_dequeue_burst(ring,
                                            objs, 32, &avail); /* QUIET_BURST */
        got[rte_lcore_id()] += n;
        left[rte_lcore_id()] = avail;
        if (rte_ring_dequeue(ring, &objs[k++ % 32]) == 0) /* QUIET_SINGLE */
            got[rte_lcore_id()]++;
        got[rte_lcore_id()] += rte_ring_dequeue_burst(ring, objs, quit ? 1 : 32, NULL); /* PLAIN */
        rte_ring_sc_dequeue_bulk_elem(ring, objs, sizeof objs[0], 2, NULL); /* QUIET_UNUSED */
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (rte_eal_init(argc, argv) < 0)
        return EXIT_FAILURE;
    signal(SIGINT, on_signal);
    ring = rte_ring_create("r", 1024, 0, 0);
    unsigned lcore, k = 0;
    RTE_LCORE_FOREACH_WORKER(lcore) {
        rte_eal_remote_launch(k ? consumer : producer, (void *)(uintptr_t)k, lcore);
        k++;
    }
    rte_eal_mp_wait_lcore();
    return 0;
}
"""


def _plan(tmp_path: Path):
    path = tmp_path / "prog.c"
    path.write_text(textwrap.dedent(RINGS))
    _, plan = make_plan(from_files([path], ["-std=gnu11", *dpdk_cflags()]), load_semantics(), str(tmp_path),
                        PlanOptions(), jobs=1)
    return path, plan


def _line(text: str, marker: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if marker in line)


def test_ring_dequeues_become_quiet_calls_that_compile(tmp_path):
    path, plan = _plan(tmp_path)
    assert plan.errors == [], plan.errors
    original = path.read_text()
    by_line = {}
    for s in plan.sites:
        if s.kind == "ordered":
            by_line.setdefault(s.line, set()).add(s.entry)
    burst, single, plain = (_line(original, m) for m in ("QUIET_BURST", "QUIET_SINGLE", "PLAIN"))
    # the burst dequeue's site is at its first line (the call spans two)
    assert by_line.get(burst - 1) == {"ftmb_ordered_quiet_begin"}, by_line
    assert by_line.get(single) == {"ftmb_ordered_quiet_begin"}, by_line
    assert by_line.get(_line(original, "QUIET_UNUSED")) == {"ftmb_ordered_quiet_begin"}, by_line
    # an external read (quit) inside the arguments: its edit would be copied, so the plain form
    assert by_line.get(plain) == {"ftmb_ordered_begin"}, by_line
    enqueue = _line(original, "rte_ring_enqueue_burst")
    assert by_line.get(enqueue) == {"ftmb_ordered_begin"}, by_line

    [rw] = apply_plan(plan)
    text = rw.text.decode()
    # the quiet result and where it is seen: 0 and `available` for a burst, -ENOENT for one object
    m = re.search(r"ftmb_ordered_quiet_end\((_ftmb_v\d+) == \(0\) && \(!(_ftmb_q\d+_3) \|\| \*\2 == 0\), (\d+), (\d+)\)",
                  text)
    assert m, text
    assert re.search(rf"if \(ftmb_ordered_quiet_begin\({m.group(3)}, {m.group(4)}\)\) {{ {m.group(1)} = \(0\); "
                     rf"if \({m.group(2)}\) \*{m.group(2)} = 0; }}", text)
    assert re.search(r"ftmb_ordered_quiet_end\(_ftmb_v\d+ == \(-2\), \d+, \d+\)", text)
    # each argument once, into a temporary of the parameter's type, in order (k++ is evaluated once)
    assert text.count("k++ % 32") == 1
    assert re.search(r"__typeof__\(struct rte_ring \*\) _ftmb_q\d+_0 = \(ring\); "
                     r"__typeof__\(void \*\*\) _ftmb_q\d+_1 = \(&objs\[k\+\+ % 32\]\);", text)
    # the lines after a rewritten call keep their numbers
    marked = text.split("#line 1\n", 1)[1]
    for marker in ("QUIET_SINGLE", "PLAIN", "rte_eal_mp_wait_lcore"):
        assert _line(marked, marker) == _line(original, marker), marker
    out = tmp_path / "rewritten.c"
    out.write_text(text)
    res = subprocess.run(["gcc", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2", "-fsyntax-only",
                          "-I", str(INCLUDE), *dpdk_cflags(), str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("entry, message", [
    ('quiet_result = -2', "'quiet_result' and 'quiet_zero_arg' describe a quiet call, only with quiet = true"),
    ('quiet = true\nquiet_zero_arg = 40', "'quiet_zero_arg' is an argument index from -1 to 31, got 40"),
    ('quiet = "yes"', "'quiet' must be bool, got 'yes'"),
])
def test_bad_quiet_models_are_refused(tmp_path, entry, message):
    model = tmp_path / "m.toml"
    model.write_text(f'[[opaque_access]]\nnames = ["my_dequeue"]\n{entry}\n')
    with pytest.raises(ModelError) as exc:
        Semantics().add_file(model)
    assert f"{model}: [[opaque_access]] #1: {message}" == str(exc.value)
