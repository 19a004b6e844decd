"""The checkers catch real bugs in real runs: each test builds an example with one deliberate
bug (an edit of a temporary copy of its source), runs it with one worker on generated traffic,
and expects the example's checker to report the matching violation."""

import subprocess

import pytest
from test_examples import EXAMPLES, run_example

from ftmb_instrument import invariants as inv
from ftmb_instrument import traffic


MUTANTS = {
    # The limit check lets one connection too many in.
    "firewall": ("if (live_conns < config.max_conns) {",
                 "if (live_conns <= config.max_conns) {"),
    # The pool hands out its top port without taking it off the stack.
    "nat": ("port = port_pool.free_ports[--port_pool.nb_free];",
            "port = port_pool.free_ports[port_pool.nb_free - 1];"),
    # Every packet of a flow is sent to the next backend instead of the flow's own.
    "lb": ("b = &backends[f->backend];",
           "b = &backends[(f->backend + st->to_backend) % nb_backends];"),
    # Alerts fire at half the threshold.
    "ids": ("if (estimate >= config.threshold) {",
            "if (estimate >= config.threshold / 2) {"),
}


@pytest.fixture(scope="module")
def mutants(tmp_path_factory):
    build = tmp_path_factory.mktemp("mutants")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libdpdk"], capture_output=True,
                           text=True, check=True).stdout.split()
    procs = []
    for name, (old, new) in MUTANTS.items():
        source = (EXAMPLES / name / f"{name}.c").read_text()
        assert source.count(old) == 1, f"{name}.c changed: mutation site {old!r} not unique"
        mutant = build / f"{name}.c"
        mutant.write_text(source.replace(old, new))
        procs.append(subprocess.Popen(["cc", "-O1", "-w", "-o", str(build / name), str(mutant),
                                       *flags, "-lpthread", "-lm"], stderr=subprocess.PIPE,
                                      text=True))
        if len(procs) == 2:  # at most two compilers at once on this machine
            assert procs[0].wait(timeout=300) == 0, procs[0].stderr.read()
            procs.pop(0)
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    return build


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("mutant-trace") / "trace.pcap"
    traffic.generate(path, seed=5, flows=150, packets=6000, duration_s=0.5,
                     servers=["198.51.100.10", "198.51.100.11"])
    return path


def found(violations):
    return {v.invariant for v in violations}


def test_firewall_admitting_one_too_many_is_caught(mutants, trace, tmp_path):
    ins, outs, stats, _ = run_example(mutants, "firewall", trace, 1, tmp_path,
                                      "--max-conns", "5")
    assert stats["peak"] == "6"
    assert "firewall.limit" in found(inv.check_firewall(ins, outs, max_conns=5))


def test_nat_handing_one_port_to_every_flow_is_caught(mutants, trace, tmp_path):
    ins, outs, _, _ = run_example(mutants, "nat", trace, 1, tmp_path)
    assert "nat.port-unique" in found(inv.check_nat(ins, outs))


def test_lb_losing_flow_affinity_is_caught(mutants, trace, tmp_path):
    ins, outs, _, _ = run_example(mutants, "lb", trace, 1, tmp_path)
    assert found(inv.check_lb(ins, outs)) == {"lb.affinity"}


def test_ids_alerting_early_is_caught(mutants, trace, tmp_path):
    ins, outs, stats, _ = run_example(mutants, "ids", trace, 1, tmp_path, "--threshold", "100")
    assert int(stats["alerts"]) > 0
    assert "ids.alert" in found(inv.check_ids(ins, outs, threshold=100))
