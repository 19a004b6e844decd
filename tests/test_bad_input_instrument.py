"""`instrument` and `analyze` on hostile inputs (issue 14): unwritable output places are one line and
nothing is half-done (`--in-place` checks every file before rewriting any); expressions thousands of
terms long, macros nested hundreds deep, statements nested thousands deep and lvalue chains
thousands long are walked without recursion limits, and no exception is
swallowed inside a libclang callback. Real libclang parses, real files."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from bad_input_util import CLI, THREADED, cli, refused, snapshot, unwritable

A_C = """#include <pthread.h>
int counter;
void bump(void);
static void *worker(void *arg) { bump(); return arg; }
int main(void) { pthread_t t; pthread_create(&t, 0, worker, 0); counter++; pthread_join(t, 0); return counter; }
"""
B_C = """extern int counter;
void bump(void) { counter++; }
"""


def two_files(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "a.c").write_text(A_C)
    (proj / "b.c").write_text(B_C)
    return proj


def test_in_place_checks_every_file_before_rewriting_any(tmp_path):
    proj = two_files(tmp_path)
    before = snapshot(proj)
    with unwritable(proj / "b.c"):
        proc = cli("instrument", proj / "a.c", proj / "b.c", "--in-place", "--")
    refused(proc, f"{proj / 'b.c'}: cannot write", "rewrote no file")
    assert snapshot(proj) == before  # a.c untouched, no .ftmb-orig, no temporary file
    proc = cli("instrument", proj / "a.c", proj / "b.c", "--in-place", "--")  # the same, writable: both
    assert proc.returncode == 0, proc.stderr
    assert (proj / "a.c.ftmb-orig").read_text() == A_C and (proj / "b.c.ftmb-orig").read_text() == B_C
    assert "ftmb_" in (proj / "a.c").read_text() and "ftmb_" in (proj / "b.c").read_text()


def test_in_place_in_an_unwritable_directory_is_one_line(tmp_path):
    proj = two_files(tmp_path)
    before = snapshot(proj)
    with unwritable(proj):
        proc = cli("instrument", proj / "a.c", proj / "b.c", "--in-place", "--")
    refused(proc, f"{proj}: cannot write", "rewrote no file")
    assert snapshot(proj) == before


def test_an_unwritable_output_directory_is_one_line(tmp_path):
    proj = two_files(tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    with unwritable(ro):
        proc = cli("instrument", proj / "a.c", proj / "b.c", "-o", ro / "out", "--")
        refused(proc, f"-o {ro / 'out'}: cannot create it in {ro}")
        assert list(ro.iterdir()) == []


def deep_program(tmp_path, name, body_expr, defines=""):
    src = tmp_path / name
    src.write_text(f"""#include <pthread.h>
int counter, total;
{defines}
static void *worker(void *arg) {{ for (;;) {{ total = {body_expr}; if (total) break; }} return arg; }}
int main(void) {{ pthread_t t; pthread_create(&t, 0, worker, 0); counter++; pthread_join(t, 0); return total; }}
""")
    return src


def reads_of_counter(report_path):
    report = json.loads(report_path.read_text())
    var = next(v for v in report["variables"] if v["name"] == "counter")
    return var["class"], sum(1 for a in var["accesses"] if a["mode"] == "read")


def test_a_3000_term_expression_is_analyzed_whole(tmp_path):
    src = deep_program(tmp_path, "deep.c", " + ".join(["counter"] * 3000))
    proc = cli("analyze", src, "-f", "json", "-o", tmp_path / "r.json", "--")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, \
        proc.stderr
    assert reads_of_counter(tmp_path / "r.json") == ("shared_rw", 3000)


def test_long_and_nested_macro_expressions_are_instrumented_whole(tmp_path):
    wide = deep_program(tmp_path, "wide.c", "SUM(counter)", "#define SUM(x) (" + " + ".join(["x"] * 600) + ")")
    nested = "counter"
    for i in range(200):
        nested = f"N{i}({nested})"
    deep = deep_program(tmp_path, "nested.c", f"{nested} && counter && " + " && ".join(["total"] * 600),
                        "".join(f"#define N{i}(x) ((x) + 1)\n" for i in range(200)))
    for src in (wide, deep):
        proc = cli("analyze", src, "-f", "json", "-o", tmp_path / "r.json", "--")
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        cls, reads = reads_of_counter(tmp_path / "r.json")
        assert cls == "shared_rw" and reads == (1 if src == wide else 2), (src, reads)  # one per spelling
        proc = cli("instrument", src, "--")
        assert proc.returncode == 0, proc.stderr
        assert "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert "ftmb_" in proc.stdout


def test_a_jump_out_of_a_long_expression_is_still_seen(tmp_path):
    """The site scan's jump check walked the AST recursively: a deep expression ended its child
    list early and a `return` inside a statement expression could go unseen."""
    src = tmp_path / "jump.c"
    terms = " + ".join(["counter"] * 1500)
    src.write_text(THREADED.replace("counter++; return arg;",
                                    f"total = {terms} + ({{ if (total) return arg; 1; }}); return arg;")
                   .replace("int counter;", "int counter, total;"))
    proc = cli("instrument", src, "--")
    assert "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 1), proc.stderr


def nested_program(tmp_path, name, opener, closer, depth, decls="", statement="counter++;"):
    """THREADED with the worker's statement inside `depth` nested statements."""
    src = tmp_path / name
    src.write_text(THREADED.replace("int counter;", f"int counter;\n{decls}").replace(
        "counter++; return arg;", opener * depth + statement + closer * depth + " return arg;"))
    return src


def instrumented_whole(src, *needles):
    """`analyze` sees the unit whole and `instrument` rewrites it (one parse each, walks as deep as
    the program: no recursion limit, no traceback, no unit failed for its depth)."""
    proc = cli("analyze", src, "--")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, \
        proc.stderr
    assert "1 translation units ok, 0 failed" in proc.stderr + proc.stdout, proc.stderr
    proc = cli("instrument", src, "--")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, \
        proc.stderr
    for n in needles:
        assert n in proc.stdout, n


@pytest.mark.parametrize("opener,closer,depth", [
    ("while (counter) ", "", 3000),   # nests without brackets: no clang limit (5000 passes too, slowly)
    ("if (counter) ", "", 3000),
    ("{ ", " }", 2000),               # clang allows 2048 nested brackets
    ("if (counter) { ", " }", 2000),
])
def test_deeply_nested_statements_are_instrumented_whole(tmp_path, opener, closer, depth):
    # 20 nested loops took 32 s (the lockset walk went through the innermost body 2**depth times),
    # 2000 a traceback (a RecursionError wrapped by ctypes)
    instrumented_whole(nested_program(tmp_path, "nest.c", opener, closer, depth), "ftmb_")


def chain_types(depth, member):
    """struct t0 { int v; }; struct tK { struct tK-1 MEMBER; } ..."""
    return "struct t0 { int v; };\n" + "".join(
        f"struct t{i} {{ struct t{i - 1} {member}; }};\n" for i in range(1, depth + 1))


@pytest.mark.parametrize("decls,lvalue", [
    (chain_types(1000, "m") + "struct t1000 a;", "a" + ".m" * 1000 + ".v"),
    (chain_types(1000, "*q") + "struct t1000 *a;", "a" + "->q" * 1000 + "->v"),
    ("int x" + "[1]" * 300 + ";", "x" + "[0]" * 300),
])
def test_long_lvalue_chains_are_instrumented_whole(tmp_path, decls, lvalue):
    # a 1000-long p->q chain was a traceback, then minutes (each sub-lvalue walked the rest of the chain)
    src = nested_program(tmp_path, "chain.c", "", "", 0, decls, f"{lvalue} = counter++;")
    instrumented_whole(src, "ftmb_")


def test_sigint_to_instrument_ends_its_parse_workers_and_writes_nothing(tmp_path):
    # its parses (analysis and site scan in one) run in the pool analyze uses, which ends on SIGINT
    terms = " + ".join(["counter"] * 20000)
    files = []
    for i in range(6):
        files.append(tmp_path / f"big{i}.c")
        files[-1].write_text(f"int counter;\nint f{i}(void) {{ return {terms}; }}\n")
    before = snapshot(tmp_path)
    proc = subprocess.Popen([*CLI, "instrument", *map(str, files), "-j", "2", "-o", str(tmp_path / "out"), "--"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers: list[int] = []
    while not workers and proc.poll() is None:  # the parse pool has started
        time.sleep(0.05)
        workers = [int(x) for x in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    assert workers, "instrument finished before its workers were seen"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and err.strip() == "ftmb-instrument: interrupted", (proc.returncode, err)
    for w in workers:
        assert not Path(f"/proc/{w}").exists() or "Z" in Path(f"/proc/{w}/stat").read_text().split()[2]
    assert snapshot(tmp_path) == before  # no OUTDIR, no temporary directory


def test_verify_refuses_zero_and_negative_queues(tmp_path):
    for q in ("0", "-1"):
        proc = cli("verify", "--in", tmp_path / "i.pcap", "--released", tmp_path / "o.pcap", "--queues", q,
                   "--", "true")
        refused(proc, "--queues", rc=2)
