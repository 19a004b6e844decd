from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace

import pytest
from test_report_sample import sample_report

from ftmb_instrument.report import dot

NODE = re.compile(r'^  "(?P<id>(?:[^"\\]|\\.)*)" \[(?P<attrs>.*)\];$')
EDGE = re.compile(r'^  "(?P<src>(?:[^"\\]|\\.)*)" -> "(?P<dst>(?:[^"\\]|\\.)*)" \[(?P<attrs>.*)\];$')


def parse(text: str) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """Nodes (id -> attributes) and edges ((src, dst) -> attributes) of our DOT output; fails on
    any line that is neither, so the structure stays simple enough to check."""
    lines = text.splitlines()
    assert lines[0] == "digraph ftmb {" and lines[-1] == "}"
    nodes: dict[str, str] = {}
    edges: dict[tuple[str, str], str] = {}
    for line in lines[1:-1]:
        if m := EDGE.match(line):
            assert (m["src"], m["dst"]) not in edges
            edges[(m["src"], m["dst"])] = m["attrs"]
        elif m := NODE.match(line):
            nodes[m["id"]] = m["attrs"]
        else:
            assert re.match(r"^  (rankdir=LR|node \[.*\]|edge \[.*\]);$", line), line
    for src, dst in edges:
        assert src in nodes and dst in nodes
    return nodes, edges


def test_threads_are_boxes_and_shared_variables_ellipses() -> None:
    nodes, _ = parse(dot.render(sample_report()))
    threads = {n for n, a in nodes.items() if "shape=box" in a}
    variables = {n for n, a in nodes.items() if "shape=ellipse" in a}
    assert threads == {"thread:main", "thread:worker", "thread:on_signal"}
    assert variables == {"var:id-counter", "var:id-flows", "var:id-stats", "var:id-hits", "var:id-quiet",
                         "var:id-config", "var:id-per-core"}  # thread_private scratch is left out
    assert 'fillcolor="#f4a6a6"' in nodes["var:id-counter"]
    assert 'fillcolor="#a6c8f4"' in nodes["var:id-config"]
    assert 'fillcolor="#b6e3b0"' in nodes["var:id-per-core"]
    assert r'label="flows\nshared_rw, lock\nflow_lock"' in nodes["var:id-flows"]
    assert r'label="worker\npthread_create (several)"' in nodes["thread:worker"]


def test_edges_carry_the_modes_and_unprotected_ones_are_red() -> None:
    _, edges = parse(dot.render(sample_report()))
    labels = {k: re.search(r'label="([^"]*)"', a)[1] for k, a in edges.items()}
    assert labels[("thread:worker", "var:id-flows")] == "r,w"
    assert labels[("thread:worker", "var:id-counter")] == "rmw"
    assert labels[("thread:main", "var:id-config")] == "w"
    assert labels[("thread:on_signal", "var:id-stats")] == "w"
    assert 'color="red"' in edges[("thread:worker", "var:id-counter")]
    assert 'color="red"' not in edges[("thread:main", "var:id-counter")]  # before the spawn
    assert 'color="red"' not in edges[("thread:worker", "var:id-quiet")]  # suppressed
    assert 'color="red"' not in edges[("thread:worker", "var:id-flows")]


def test_quotes_and_backslashes_in_names_are_escaped() -> None:
    report = sample_report()
    odd = replace(report.variables[1], name='say "hi" \\ bye')
    nodes, _ = parse(dot.render(replace(report, variables=(odd,))))
    assert r'label="say \"hi\" \\ bye\nshared_ro"' in nodes["var:id-config"]


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz `dot` is not installed")
def test_graphviz_accepts_it() -> None:
    done = subprocess.run(["dot", "-Tsvg"], input=dot.render(sample_report()), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
