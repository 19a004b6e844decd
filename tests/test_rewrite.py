"""The rewriter on C snippets: each edit kind is spliced where it should be, the result compiles
without warnings (-Wall -Wextra -Werror), and in passthrough mode behaves like the original; sites
that cannot be instrumented safely are reported with file:line."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest
from session_util import end_session

from ftmb_instrument.bundle import ensure_runtime
from ftmb_instrument.errors import RewriteError
from ftmb_instrument.frontend import from_files
from ftmb_instrument.plan import MARKER_PREFIX, Plan
from ftmb_instrument.rewrite import apply_plan
from ftmb_instrument.rewrite.pipeline import make_plan
from ftmb_instrument.semantics import load_semantics

FLAGS = ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2", "-pthread"]

FEATURES = r"""#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NT 3
#define BUMP(x) do { (x)++; } while (0)
#define MAX(a, b) ({ __typeof__(a) _a = (a); __typeof__(b) _b = (b); _a > _b ? _a : _b; })

struct flags {
	unsigned on : 1;
	unsigned level : 7;
};

static long hits;
static long limit = 1000000;
static int mode;
static struct flags fl;
static unsigned long total;
static unsigned long sync_total;
static atomic_ulong c11_total;
static int cas_word;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static long locked_sum;
static long *shared_buf;
static long seen_max;

static long next_hit(void)
{
	return hits++;
}

static void *worker(void *arg)
{
	long id = (long)arg;
	for (int i = 0; i < 1000; i++) {
		if (hits < limit)
			next_hit();
		while (mode > 5)
			mode--;
		for (long j = hits; j < 0; j++)
			;
		long snapshot = hits;
		(void)snapshot;
		switch (mode) {
		case 0:
			mode = 0;
			break;
		default:
			break;
		}
		if (fl.on)
			fl.level = 3;
		BUMP(hits);
		seen_max = MAX(seen_max, (long)i);
		__atomic_fetch_add(&total, 1, __ATOMIC_RELAXED);
		__sync_fetch_and_add(&sync_total, 2);
		atomic_fetch_add(&c11_total, 1);
		int expected = cas_word;
		__sync_bool_compare_and_swap(&cas_word, expected, expected + 1);
		pthread_mutex_lock(&mu);
		locked_sum += id;
		shared_buf[i % 8] += 1;
		pthread_mutex_unlock(&mu);
	}
	return NULL;
}

int main(void)
{
	pthread_t t[NT];
	time_t now = time(NULL);
	shared_buf = calloc(8, sizeof *shared_buf);
	long *scratch = malloc(4 * sizeof *scratch);
	scratch = realloc(scratch, 16 * sizeof *scratch);
	fl.on = 1;
	for (long i = 0; i < NT; i++)
		pthread_create(&t[i], NULL, worker, (void *)i);
	for (int i = 0; i < NT; i++)
		pthread_join(t[i], NULL);
	long sum = 0;
	for (int i = 0; i < 8; i++)
		sum += shared_buf[i];
	printf("total=%lu sync=%lu c11=%lu locked=%ld buf=%ld level=%u max=%ld now>0=%d\n", total, sync_total,
	       (unsigned long)atomic_load(&c11_total), locked_sum, sum, fl.level, seen_max, now > 0);
	free(scratch);
	free(shared_buf);
	return 0;
}
"""


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    old = os.environ.get("FTMB_RUNTIME_BUILD")
    os.environ["FTMB_RUNTIME_BUILD"] = str(tmp_path_factory.mktemp("runtime-build"))
    try:
        yield ensure_runtime()
    finally:
        if old is None:
            del os.environ["FTMB_RUNTIME_BUILD"]
        else:
            os.environ["FTMB_RUNTIME_BUILD"] = old


def plan_for(tmp: Path, source: str, name: str = "prog.c") -> tuple[Path, Plan]:
    path = tmp / name
    path.write_text(source)
    _, plan = make_plan(from_files([path], ["-std=gnu11"]), load_semantics(), str(tmp), jobs=1)
    return path, plan


def build_and_run(rt, source: Path, out: Path, env_mode: bool) -> str:
    cmd = ["gcc", *FLAGS, "-I", str(rt["include"]), str(source), str(rt["core"]), "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    env = {**os.environ, "FTMB_MODE": "passthrough"} if env_mode else None
    run = subprocess.run(["timeout", "30", str(out)], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_every_edit_kind_compiles_cleanly_and_behaves_the_same(tmp_path, runtime):
    path, plan = plan_for(tmp_path, FEATURES)
    assert plan.errors == []
    kinds = {s.kind for s in plan.sites}
    # free() and realloc() are not rewritten (the runtime interposes them); rte_free is (test_rewrite_alloc.py)
    assert kinds == {"ordered", "atomic", "lock", "nondet", "spawn", "alloc", "init", "include"}
    [rw] = apply_plan(plan)
    text = rw.text.decode()
    assert text.startswith(MARKER_PREFIX) and "#include <ftmb/ftmb.h>\n#line 1\n" in text
    # site names and thread roots follow the last line, guarded (plan.register_file)
    body, table = text.rsplit("\n#ifndef _FTMB_REGISTER_", 1)
    assert re.search(r"static void \(\*const _ftmb_thread_roots_\w+\[\]\)\(void\) = \{\(void \(\*\)\(void\)\)worker\};",
                     table)
    assert re.search(r"ftmb_register_file\(_ftmb_site_ids_\w+, _ftmb_site_where_\w+, \d+, _ftmb_thread_roots_\w+, 1\)",
                     table) and table.count("\n") == 8 and table.endswith("); }\n#endif\n")
    assert [(r.entry, r.how) for r in plan.roots] == [("main", "main"), ("worker", "pthread_create")]
    lines = body.splitlines()[3:]
    orig = FEATURES.splitlines()
    assert len(lines) == len(orig)  # no edit adds a line: diagnostics keep their line numbers

    def line_of(needle: str) -> str:
        return lines[next(i for i, ln in enumerate(orig) if needle in ln)]

    # conditions and initializers are wrapped as expressions, statements as blocks
    assert "if (__extension__ ({ __auto_type _ftmb_v" in line_of("if (hits < limit)")
    assert "while (__extension__ ({ __auto_type _ftmb_v" in line_of("while (mode > 5)")
    assert "switch (__extension__ ({" in line_of("switch (mode)")
    assert "for (long j = __extension__ ({" in line_of("for (long j = hits")
    assert "return __extension__ ({" in line_of("return hits++")
    # a declaration's region is made of declarations: no statement among them (C90's rule, HAProxy's
    # -Wdeclaration-after-statement)
    assert re.match(r"ftmb_obj_t _ftmb_b\d+_\d+ __attribute__\(\(unused\)\) = \(ftmb_ordered_begin\(\d+, \d+\), "
                    r"\d+\); long snapshot = hits;.* ftmb_obj_t _ftmb_e\d+_\d+ __attribute__\(\(unused\)\) = "
                    r"\(ftmb_ordered_end\(\d+\), \d+\);", line_of("long snapshot = hits").strip())
    assert "+(fl.on)" in line_of("if (fl.on)")  # a bit-field is read by value, never by address
    # a macro's expansion is never edited: its whole invocation statement is wrapped, `;` included
    assert line_of("BUMP(hits);").strip().startswith("{ ftmb_ordered_begin(")
    assert "BUMP(hits); ftmb_ordered_end(" in line_of("BUMP(hits);")
    assert line_of("BUMP(hits);").strip().endswith("); }")
    # atomics become wrappers with the operand size; C11 generic macros get the explicit order
    assert "ftmb_atomic_fetch_add_8(&total, 1, __ATOMIC_RELAXED, " in line_of("__atomic_fetch_add(&total")
    assert "ftmb_atomic_fetch_add_8(&sync_total, 2, __ATOMIC_SEQ_CST, " in line_of("__sync_fetch_and_add")
    assert "ftmb_atomic_fetch_add_8(&c11_total, 1, __ATOMIC_SEQ_CST, " in line_of("atomic_fetch_add(&c11")
    assert "ftmb_pthread_mutex_lock(&mu, " in line_of("pthread_mutex_lock(&mu)")
    assert "ftmb_time(NULL)" in line_of("time(NULL)")
    assert "ftmb_state_calloc(8" in line_of("shared_buf = calloc")
    assert "malloc(4" in line_of("scratch = malloc")  # thread-private memory stays where it was
    assert line_of("realloc(scratch") == orig[orig.index("\tscratch = realloc(scratch, 16 * sizeof *scratch);")]
    assert "ftmb_pthread_create(&t[i]" in line_of("pthread_create")
    assert "if (ftmb_init() != 0) return 1;" in line_of("int main(void)") + lines[orig.index("int main(void)") + 1]
    # every shared_rw object has one strategy; the lock protects locked_sum and shared_buf
    strategies = {o.name: o.strategy for o in plan.objects}
    assert strategies["mu"] == "lock" and strategies["total"] == "atomic" and strategies["hits"] == "ordered"
    assert strategies["cas_word"] == "ordered"  # read plainly too: its CAS is ordered, not wrapped
    assert "locked_sum" not in strategies
    assert any(s.what == "locked_sum" or s.what.startswith("locked_sum @") for s in plan.skipped)

    inst = tmp_path / "inst.c"
    inst.write_bytes(rw.text)
    want = build_and_run(runtime, path, tmp_path / "orig", False)
    assert build_and_run(runtime, inst, tmp_path / "inst", True) == want


def test_edits_are_deduplicated_across_translation_units(tmp_path):
    (tmp_path / "shared.h").write_text(
        "static inline void bump(long *c) { (*c)++; }\nextern long counter;\n")
    (tmp_path / "a.c").write_text(
        '#include <pthread.h>\n#include "shared.h"\nlong counter;\n'
        "static void *w(void *a) { (void)a; counter++; bump(&counter); return 0; }\n"
        "void start(void) { pthread_t t[2]; for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, w, 0); "
        "for (int i = 0; i < 2; i++) pthread_join(t[i], 0); }\n")
    (tmp_path / "b.c").write_text('#include "shared.h"\nvoid start(void);\n'
                                  "int main(void) { start(); bump(&counter); return (int)counter; }\n")
    _, plan = make_plan(from_files([tmp_path / "a.c", tmp_path / "b.c"], ["-std=gnu11"]), load_semantics(),
                        str(tmp_path), jobs=1)
    assert plan.errors == []
    out = {Path(r.path).name: r.text.decode() for r in apply_plan(plan)}
    assert out["a.c"].count("ftmb_ordered_begin(") == 1
    assert out["shared.h"].count("ftmb_ordered_begin(") == 1  # edited once although two units include it
    assert "ftmb_init()" in out["b.c"]


def test_suppressed_site_is_listed_not_an_error(tmp_path):
    src = ("#include <pthread.h>\nstatic int n;\n#define RETRY(x) do { void *at = &&again; again: if ((x)++ < 5) goto *at; } while (0)\n"
           "static void *w(void *a) { (void)a; for (;;) { RETRY(n); /* ftmb: ignore(access) test only */ } }\n"
           "int main(void) { pthread_t t[2]; for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, w, 0); "
           "for (int i = 0; i < 2; i++) pthread_join(t[i], 0); return 0; }\n")
    _, plan = plan_for(tmp_path, src)
    assert plan.errors == []
    assert any("suppressed: test only" in s.reason for s in plan.skipped) or \
        any(p.suppressed == "test only" for p in plan.problems)


def test_a_call_replay_cannot_reproduce_is_refused_unless_suppressed(tmp_path):
    """rte_timer_manage fires timers by the library's own clock read: no replay repeats it."""
    body = ("#include <pthread.h>\nint rte_timer_manage(void);\nstatic int n;\n"
            "static void *w(void *a) { (void)a; for (int i = 0; i < 9; i++) { n++; rte_timer_manage();%s } return 0; }\n"
            "int main(void) { pthread_t t[2]; for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, w, 0); "
            "for (int i = 0; i < 2; i++) pthread_join(t[i], 0); return n; }\n")
    _, plan = plan_for(tmp_path, body % "")
    assert [p.where for p in plan.errors] == ["prog.c:4"]
    assert "rte_timer_manage() fires the timers" in plan.errors[0].message
    _, plan = plan_for(tmp_path, body % " /* ftmb: ignore(access) its timers only print */")
    assert plan.errors == [] and [p.suppressed for p in plan.problems] == ["its timers only print"]


def test_a_statement_ending_in_a_macro_is_ordered_whole(tmp_path, runtime):
    """libclang ends a statement whose last token comes from a macro at the invocation's start
    (HAProxy's `if (ptr) smp->data.u.sint = stktable_data_cast(ptr, std_t_uint);`): the access
    inside the macro was outside the statement, and the site refused."""
    src = ("#include <pthread.h>\n#include <stdio.h>\nstruct cell { long v; };\nstatic struct cell cells[2];\n"
           "static long total;\n#define CELL_CAST(p, member) ((struct cell *)(p))->member\n"
           "static void *w(void *a) { void *p = &cells[(long)a & 1]; for (int i = 0; i < 100; i++) {\n"
           "  if (p) total += CELL_CAST(p, v);\n  cells[0].v++; } return 0; }\n"
           "int main(void) { pthread_t t[2]; for (long i = 0; i < 2; i++) pthread_create(&t[i], 0, w, (void *)i);\n"
           "  for (int i = 0; i < 2; i++) pthread_join(t[i], 0); printf(\"%ld\\n\", cells[0].v); return 0; }\n")
    path, plan = plan_for(tmp_path, src)
    assert plan.errors == []
    line = src.splitlines()[7]
    assert any(s.line == 8 and src.encode()[s.start:s.end].decode().strip() == line.strip().removeprefix("if (p) ")
               for s in plan.sites), [(s.line, src.encode()[s.start:s.end]) for s in plan.sites]
    [rw] = apply_plan(plan)
    inst = tmp_path / "inst.c"
    inst.write_bytes(rw.text)
    assert build_and_run(runtime, inst, tmp_path / "prog", env_mode=True) == "200\n"


def record_and_replay(rt, source: Path, tmp: Path) -> str:
    """Build the instrumented `source`, run it in record mode with real loggers (no input), replay
    its log, and return the recorded stdout after checking that the replay printed the same. In
    record mode every ordered region takes its object's sequence lock: a region that is never left,
    or that waits for itself, stops the program (the 60 s timeout fails the test)."""
    prog = tmp / "prog"
    res = subprocess.run(["gcc", *FLAGS, "-I", str(rt["include"]), str(source), str(rt["core"]), "-o", str(prog)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    session = f"rr-{uuid.uuid4().hex[:12]}"
    log = tmp / "ftmb.log"
    pcap = tmp / "in.pcap"
    pcap.write_bytes(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))  # no packets
    ol = subprocess.Popen([rt["output_logger"], "--session", session, "--out", tmp / "out.pcap",
                           "--threads", "3", "--log", log], stderr=subprocess.PIPE, text=True)
    il = subprocess.Popen([rt["input_logger"], "--session", session, "--in", pcap, "--queues", "1"],
                          stderr=subprocess.PIPE, text=True)
    try:
        recorded = subprocess.run(["timeout", "60", str(prog)], capture_output=True, text=True,
                                  env={**os.environ, "FTMB_MODE": "record", "FTMB_SESSION": session})
        _, ol_err = ol.communicate(timeout=60)
        il.communicate(timeout=60)
    finally:
        end_session([ol, il], session)
    assert recorded.returncode == 0, recorded.stderr
    assert ol.returncode == 0, ol_err
    env = {k: v for k, v in os.environ.items() if k != "FTMB_SESSION"}
    replayed = subprocess.run(["timeout", "60", str(prog)], capture_output=True, text=True,
                              env={**env, "FTMB_MODE": "replay", "FTMB_REPLAY_LOG": str(log)})
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == recorded.stdout
    return recorded.stdout


JUMPING = r"""#include <pthread.h>
#include <stdio.h>
static long hits, budget = 300, rounds;
#define ADD_OR_LEAVE(n) do { if (hits >= 1000) goto done; hits += (n); } while (0)
#define TAKE_OR_RETURN() do { if (budget <= 0) return 0; budget--; } while (0)
#define STEP_OR_STOP() if (rounds >= 400) break; else rounds++
static void *adder(void *a) {
    for (;;) ADD_OR_LEAVE((long)a);
done:
    for (;;) { STEP_OR_STOP(); }
    for (;;) TAKE_OR_RETURN();
}
int main(void) {
    pthread_t t[2];
    for (long i = 0; i < 2; i++) pthread_create(&t[i], 0, adder, (void *)(i + 1));
    for (int i = 0; i < 2; i++) pthread_join(t[i], 0);
    printf("%ld %ld %ld\n", hits, rounds, budget);
    return 0;
}
"""


def test_statements_that_jump_out_of_themselves_end_their_region_however_they_leave(tmp_path, runtime):
    """A macro whose expansion leaves by goto, return or break (HAProxy's LOGCHAR: `goto out`) is
    wrapped in a block whose variable's cleanup ends the ordered region. Record mode with real
    loggers takes each object's sequence lock, so a region left open by a jump would stop the other
    thread's next access for ever; the replay reproduces the recorded result."""
    runtime = ensure_runtime(loggers=True)
    path, plan = plan_for(tmp_path, JUMPING)
    assert plan.errors == []
    scoped = sorted(s.line for s in plan.sites if s.kind == "ordered" and s.how == "scope")
    assert scoped == [8, 10, 11], [(s.line, s.how) for s in plan.sites]
    [rw] = apply_plan(plan)
    inst = tmp_path / "inst.c"
    inst.write_bytes(rw.text)
    recorded = record_and_replay(runtime, inst, tmp_path)
    hits, rounds, budget = map(int, recorded.split())
    assert hits in (1000, 1001) and rounds == 400 and budget == 0, recorded


def test_a_label_whose_address_is_taken_keeps_its_statement_unwrapped(tmp_path):
    """A computed goto anywhere may enter a statement at a label whose address is taken (`&&again`):
    no region can be begun on that path, so the access is refused with its place."""
    src = ("#include <pthread.h>\nstatic long n;\n"
           "#define RETRY(x) do { void *at = &&again; again: if ((x)++ < 5) goto *at; } while (0)\n"
           "static void *w(void *a) { (void)a; RETRY(n); return 0; }\n"
           "int main(void) { pthread_t t[2]; for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, w, 0); "
           "for (int i = 0; i < 2; i++) pthread_join(t[i], 0); return 0; }\n")
    _, plan = plan_for(tmp_path, src)
    assert sorted({p.where for p in plan.errors}) == ["prog.c:4"]
    assert all("label or case" in p.message for p in plan.errors), plan.errors


LABELS = r"""#include <pthread.h>
#include <stdio.h>
static long hits, tries, limit = 1000;
#define RETRY(x) do { again: if ((x)++ % 7) goto again; } while (0)
#define each(i, n) for (i = 0; i < (n); i++)
static long peek(void) { if (hits < 0) limit = 0; return(hits); }
static void *w(void *a) {
    long i = 0;
    RETRY(tries);
    if ((long)a == 2) { i = 10; goto resume; }
    each(i, limit) {
resume:
        hits++;
    }
    return (void *)peek();
}
int main(void) {
    pthread_t t[2];
    for (long i = 0; i < 2; i++) pthread_create(&t[i], 0, w, (void *)(i + 1));
    for (int i = 0; i < 2; i++) pthread_join(t[i], 0);
    printf("%ld %ld\n", hits, tries);
    return 0;
}
"""


def test_labels_entered_from_inside_or_from_a_goto_before_are_ordered(tmp_path):
    """A label whose gotos are all inside the statement (RETRY's `again:`) is no way in: the
    invocation is a region of its own. A label a goto before the statement enters at (HAProxy's
    `goto resume_execution;` into a list_for_each_entry loop's body) widens the region to the
    statements from the goto's to the end of the block. Both are recorded and replayed with real
    loggers; `return(hits)` keeps its `return` a word of its own."""
    runtime = ensure_runtime(loggers=True)
    path, plan = plan_for(tmp_path, LABELS)
    assert plan.errors == []
    text = path.read_bytes().decode()
    regions = [(s.line, s.how, text[s.start:s.end]) for s in plan.sites if s.kind == "ordered"]
    assert (9, "statement", "RETRY(tries);") in regions, regions
    [(_, how, tail)] = [r for r in regions if r[0] == 10]
    assert how == "scope" and tail.startswith("if ((long)a == 2)") and tail.endswith("return (void *)peek();\n")
    assert not [r for r in regions if r[0] == 11], regions
    [rw] = apply_plan(plan)
    assert any(r[0] == 6 and r[2] == "(hits)" for r in regions), regions
    assert b"return __extension__ ({" in rw.text  # not `return__extension__`
    inst = tmp_path / "inst.c"
    inst.write_bytes(rw.text)
    hits, tries = map(int, record_and_replay(runtime, inst, tmp_path).split())
    assert hits == 1990 and tries == 8, (hits, tries)


def test_a_statement_expression_keeps_its_value_when_a_label_in_it_widens_a_region(tmp_path):
    """A statement expression's last statement is its value: the statements from a goto's to the end
    of its block are no region of their own (the block would make the value void); the statement
    around the expression is."""
    runtime = ensure_runtime(loggers=True)
    src = LABELS.replace("    RETRY(tries);\n",
                         "    tries += ({ long j = 0, r = 0; if (a) goto in; if (limit) each(j, limit) { in: r++; } r; });\n")
    path, plan = plan_for(tmp_path, src)
    assert plan.errors == []
    text = path.read_bytes().decode()
    assert [text[s.start:s.end].split("({")[0] for s in plan.sites if s.kind == "ordered" and s.line == 9] == \
        ["tries += "], [(s.line, text[s.start:s.end]) for s in plan.sites]
    [rw] = apply_plan(plan)
    inst = tmp_path / "inst.c"
    inst.write_bytes(rw.text)
    hits, tries = map(int, record_and_replay(runtime, inst, tmp_path).split())
    assert hits == 1990 and tries == 2 * 1000, (hits, tries)


def test_a_for_header_with_a_bracket_in_a_literal_is_split_into_its_parts(tmp_path):
    """HAProxy's url2sa: `for (end = curr; end < url + ulen && *end != ']'; end++, p++)`: the `]` of
    the literal closed no bracket, the header did not split into init, condition and step, and
    every access in it was refused."""
    src = ("#include <pthread.h>\nstatic char buf[64] = \"ab]\";\nstatic long n;\n"
           "static void *w(void *a) { (void)a; char *e;\n"
           "    for (e = buf; *e != ']' && n < 100; e++) n++;\n"
           "    return 0; }\n"
           "int main(void) { pthread_t t[2]; for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, w, 0); "
           "for (int i = 0; i < 2; i++) pthread_join(t[i], 0); return 0; }\n")
    path, plan = plan_for(tmp_path, src)
    assert plan.errors == []
    text = path.read_bytes().decode()
    assert "*e != ']' && n < 100" in [text[s.start:s.end] for s in plan.sites if s.kind == "ordered" and s.line == 5]


def test_many_variables_skipped_at_one_place_are_one_entry(tmp_path):
    """A pointer that may point at any of ten shared counters, written before the threads start: the
    plan lists one skipped entry there naming three and counting the rest (HAProxy's 140 units
    skipped 1.6 million (variable, access) pairs at 3,176 places: most of a 306 MB plan)."""
    names = [f"c{i}" for i in range(10)]
    src = ("#include <pthread.h>\n"
           f"static long {', '.join(names)};\n"
           f"static long *const all[] = {{ {', '.join('&' + n for n in names)} }};\n"
           "static void *w(void *a) { for (int i = 0; i < 10; i++) (*all[i])++; return a; }\n"
           "int main(int argc, char **argv) { (void)argv; pthread_t t[2];\n"
           "    *all[argc % 10] = 5;\n"
           "    for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, w, 0);\n"
           "    for (int i = 0; i < 2; i++) pthread_join(t[i], 0); return 0; }\n")
    _, plan = plan_for(tmp_path, src)
    at6 = [k for k in plan.skipped if k.where.startswith("prog.c:6:")]
    assert len(at6) == 1 and at6[0].what.startswith("c0, c1, c2 and 7 more @ prog.c:6:"), at6
    assert "before spawn" in at6[0].reason


LOOP_MACRO = r"""#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
struct list { struct list *n, *p; };
struct item { int v; struct list l; };
struct sess { struct list lst; };
#define LIST_ELEM(lh, pt, el) ((pt)(((const char *)(lh)) - ((size_t)&((pt)NULL)->el)))
#define list_for_each_entry(item, list_head, member) \
	for (item = LIST_ELEM((list_head)->n, typeof(item), member); &item->member != (list_head); \
	     item = LIST_ELEM(item->member.n, typeof(item), member))
static long found;
static void *w(void *a) {
    struct sess *s = a;
    struct item *it;
    for (int i = 0; i < 100; i++) {
        list_for_each_entry(it, &s->lst, l) {
            if (it->v == 3) {
                found++;
                break;
            }
        }
        s->lst.n = s->lst.n;
    }
    return 0;
}
int main(void) {
    pthread_t t[2];
    struct sess *s = malloc(sizeof *s);
    struct item *items = calloc(5, sizeof *items);
    struct list *prev = &s->lst;
    for (int i = 0; i < 5; i++) {
        items[i].v = i + 1;
        prev->n = &items[i].l;
        items[i].l.p = prev;
        prev = &items[i].l;
    }
    prev->n = &s->lst;
    s->lst.p = prev;
    for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, w, s);
    for (int i = 0; i < 2; i++) pthread_join(t[i], 0);
    printf("%ld\n", found);
    return 0;
}
"""


def test_a_loop_whose_header_a_macro_wrote_is_ordered_with_its_body(tmp_path):
    """`list_for_each_entry(it, &s->lst, l) { ... break; }` (HAProxy's lists): the for's init,
    condition and step come from the macro, its body from the file. The init was taken for a
    statement of its own and the region closed right after the invocation: the loop's body became
    the region's end, and the body's `break` a compile error. The whole loop is the region now."""
    runtime = ensure_runtime(loggers=True)
    path, plan = plan_for(tmp_path, LOOP_MACRO)
    assert plan.errors == []
    text = path.read_bytes()
    [loop] = [s for s in plan.sites if s.kind == "ordered" and s.line == 17]
    assert text[loop.start:loop.end].decode().startswith("list_for_each_entry(it, &s->lst, l) {")
    assert text[loop.start:loop.end].decode().rstrip().endswith("}")
    [rw] = apply_plan(plan)
    inst = tmp_path / "inst.c"
    inst.write_bytes(rw.text)
    assert record_and_replay(runtime, inst, tmp_path) == "200\n"


ARG_FIRST_LOOP = r"""#include <pthread.h>
#include <stdio.h>

#define N 4
/* a loop header whose own statement starts with an argument (HAProxy's mt_list_for_each_entry_safe) */
#define each_slot(cur, list, i) \
	for (i = 0; i < N; i++) \
		for (({ cur = list[i]; }); cur; cur = 0)

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static long slots[N] = {1, 2, 3, 4};
static long sum;

static void *worker(void *arg)
{
	long cur, local = 0;
	int i;
	(void)arg;
	for (int r = 0; r < 100; r++)
		each_slot(cur, slots, i)
			local += cur;
	slots[0] = 1;
	pthread_mutex_lock(&mu);
	sum += local;
	pthread_mutex_unlock(&mu);
	return NULL;
}

int main(void)
{
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, worker, NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	printf("%ld\n", sum);
	return 0;
}
"""


def test_a_macro_statement_starting_with_an_argument_is_the_macros(tmp_path, runtime):
    """`cur = list[i];` inside the loop header macro starts with the argument `cur`, written in the
    file, but the rest is the macro's: it was taken for a statement written in the file, with the
    invocation's extent, and its region closed right after the invocation, so the loop's body became
    `ftmb_ordered_end(...)` and `local += cur;` ran once after the loop (HAProxy's server.c:1409).
    The region is the whole loop now, body included, and the program sums what the original does."""
    path, plan = plan_for(tmp_path, ARG_FIRST_LOOP)
    assert plan.errors == []
    text = path.read_bytes()
    [loop] = [s for s in plan.sites if s.kind == "ordered" and s.line == 20]
    assert text[loop.start:loop.end].decode().split() == "each_slot(cur, slots, i) local += cur;".split()
    [rw] = apply_plan(plan)
    inst = tmp_path / "inst.c"
    inst.write_bytes(rw.text)
    assert build_and_run(runtime, inst, tmp_path / "prog", True) == "2000\n"


def test_an_address_passed_to_a_macro_does_not_hide_the_reads_of_its_expansion(tmp_path):
    """`list_for_each_entry(it, &head, l)`: `&head`, a macro argument, has the invocation's location,
    and so has the expansion's read of `head.n`; that read was skipped as an address computation."""
    src = LOOP_MACRO.replace("static long found;", "static long found; static struct list head = { &head, &head };")
    src = src.replace("&s->lst", "&head").replace("s->lst.n = s->lst.n;", "head.n = head.n;")
    path, plan = plan_for(tmp_path, src)
    assert plan.errors == []
    assert any(s.kind == "ordered" and s.line == 17 for s in plan.sites), [(s.line, s.reason) for s in plan.sites]
    assert not [k for k in plan.skipped if k.where.startswith("prog.c:17")], plan.skipped


def test_lock_call_inside_a_macro_is_reported(tmp_path):
    src = ("#include <pthread.h>\nstatic pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;\nstatic int n;\n"
           "#define LOCKED(s) do { pthread_mutex_lock(&m); s; pthread_mutex_unlock(&m); } while (0)\n"
           "static void *w(void *a) { (void)a; LOCKED(n++); return 0; }\n"
           "int main(void) { pthread_t t[2]; for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, w, 0); "
           "for (int i = 0; i < 2; i++) pthread_join(t[i], 0); return n; }\n")
    _, plan = plan_for(tmp_path, src)
    wheres = sorted({p.where for p in plan.errors})
    assert wheres == ["prog.c:5"]
    assert all("macro LOCKED" in p.message for p in plan.errors)


def test_instrumented_source_is_refused(tmp_path, runtime):
    path, plan = plan_for(tmp_path, FEATURES)
    [rw] = apply_plan(plan)
    path.write_bytes(rw.text)
    with pytest.raises(RewriteError, match="already instrumented"):
        plan_for(tmp_path, rw.text.decode())


def test_plan_for_a_changed_file_is_refused(tmp_path):
    path, plan = plan_for(tmp_path, FEATURES)
    path.write_text(FEATURES.replace("limit = 1000000", "limit = 100000"))
    with pytest.raises(RewriteError, match="changed since the plan was made"):
        apply_plan(plan)


def test_translation_unit_that_fails_to_parse_is_not_rewritten(tmp_path):
    _, plan = plan_for(tmp_path, FEATURES + "\nint broken(void) { return undeclared_thing; }\n")
    assert plan.failed_units == ("prog.c",)
    assert plan.errors and "failed to parse" in plan.errors[0].message
    assert apply_plan(plan) == []


def test_a_region_enclosing_a_call_that_orders_its_object_again_is_reentrant(tmp_path):
    """`hits += next_hit()`, where next_hit() orders hits too: a read next to the call is narrowed to
    the value read; an update cannot be, so hits becomes reentrant (ftmb_ordered_reenter in every
    region of it): the region next_hit() begins inside the caller's takes nothing. Record mode would
    otherwise wait for itself for ever; the replay reproduces the record."""
    runtime = ensure_runtime(loggers=True)
    src = ("#include <pthread.h>\n#include <stdio.h>\nstatic long hits;\nstatic long next_hit(void) { hits++; return 1; }\n"
           "static void *w(void *a) { (void)a; long x = 0; for (int i = 0; i < 100; i++) x += next_hit() + hits;\n"
           "  for (int i = 0; i < 100; i++) hits += next_hit();\n  return (void *)x; }\n"
           "int main(void) { pthread_t t[2]; for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, w, 0);\n"
           "  for (int i = 0; i < 2; i++) pthread_join(t[i], 0); printf(\"%ld\\n\", hits); return 0; }\n")
    path, plan = plan_for(tmp_path, src)
    assert plan.errors == []
    ordered = {s.line: s for s in plan.sites if s.kind == "ordered"}
    assert path.read_text()[ordered[5].start:ordered[5].end] == "hits" and "the value read" in ordered[5].reason
    assert {s.entry for s in ordered.values()} == {"ftmb_ordered_reenter"}, ordered
    [rw] = apply_plan(plan)
    inst = tmp_path / "inst.c"
    inst.write_bytes(rw.text)
    assert "ftmb_ordered_begin(" not in rw.text.decode()
    hits = int(record_and_replay(runtime, inst, tmp_path))
    # 200 calls in the first loops, then 200 updates that add at least 1 each: nothing lost to a race
    assert hits >= 400, hits


def test_a_call_that_orders_the_object_through_a_recursive_cycle_is_seen(tmp_path):
    # odd() orders hits only through even(), which calls odd() back: one component of the call graph
    src = ("#include <pthread.h>\nstatic long hits;\nstatic long odd(int n);\n"
           "static long even(int n) { hits++; return n ? odd(n - 1) : 0; }\n"
           "static long odd(int n) { return n ? even(n - 1) : 1; }\n"
           "static long other(int n) { return n + 1; }\n"
           "static long count;\n"
           "static void *w(void *a) { (void)a; for (int i = 0; i < 100; i++) hits += odd(3);\n"
           "  for (int i = 0; i < 100; i++) count += other(i);\n  return 0; }\n"
           "int main(void) { pthread_t t[2]; for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, w, 0);\n"
           "  for (int i = 0; i < 2; i++) pthread_join(t[i], 0); return 0; }\n")
    _, plan = plan_for(tmp_path, src)
    assert plan.errors == []
    entries = {s.line: s.entry for s in plan.sites if s.kind == "ordered"}
    assert entries == {4: "ftmb_ordered_reenter", 8: "ftmb_ordered_reenter", 9: "ftmb_ordered_begin"}, entries


def test_same_named_static_functions_of_two_files_stay_apart(tmp_path):
    """a.c's static next() orders hits, b.c's static next() does not. a.c's region for hits encloses
    bump(), which orders other; b.c's region for other encloses b.c's own next(). Matched by name
    alone, b.c's call looked like a.c's next(), which orders hits: hits and other would wait for
    each other, and b.c's region would take them as one reentrant object."""
    a = tmp_path / "a.c"
    b = tmp_path / "b.c"
    a.write_text("#include <pthread.h>\nlong hits, other;\nstatic long next(void) { return hits++; }\n"
                 "static long bump(void) { return other++; }\n"
                 "void *wa(void *x) { (void)x; for (int i = 0; i < 100; i++) hits += bump() + next(); return 0; }\n"
                 "void *wb(void *x);\n"
                 "int main(void) { pthread_t p, q; pthread_create(&p, 0, wa, 0); pthread_create(&q, 0, wb, 0);\n"
                 "  pthread_join(p, 0); pthread_join(q, 0); return 0; }\n")
    b.write_text("extern long other;\nstatic long next(void) { return 2; }\n"
                 "void *wb(void *x) { (void)x; for (int i = 0; i < 100; i++) other += next(); return 0; }\n")
    _, plan = make_plan(from_files([a, b], ["-std=gnu11"]), load_semantics(), str(tmp_path), jobs=1)
    assert plan.errors == []
    assert [(s.file, s.line, s.entry) for s in plan.sites if s.kind == "ordered" and s.file == "b.c"] == \
        [("b.c", 3, "ftmb_ordered_begin")]


LOCK_ORDER = ("#include <pthread.h>\nstatic pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;\nstatic long counter, other;\n"
              "static long bump(void) { pthread_mutex_lock(&m); other++; pthread_mutex_unlock(&m); return 1; }\n"
              "static void *t1(void *a) { (void)a; for (int i = 0; i < 100; i++) {\n"
              "  pthread_mutex_lock(&m); counter++; pthread_mutex_unlock(&m); } return 0; }\n"
              "static void *t2(void *a) { (void)a; for (int i = 0; i < 100; i++) counter += bump(); return 0; }\n"
              "int main(void) { pthread_t a, b; pthread_create(&a, 0, t1, 0); pthread_create(&b, 0, t2, 0);\n"
              "  pthread_join(a, 0); pthread_join(b, 0); return (int)counter; }\n")


def test_a_region_enclosing_a_lock_taken_around_its_object_is_reported(tmp_path):
    """t1 orders counter while it holds m; t2's region for counter encloses bump(), which takes m:
    instrumented, t1 would wait for counter's region holding m while t2 waits for m inside it (the
    program built with these regions hung under `run`). The planner says so instead."""
    _, plan = plan_for(tmp_path, LOCK_ORDER)
    assert [p.where for p in plan.errors] == ["prog.c:7"]
    msg = plan.errors[0].message
    assert "encloses a call to bump(), which takes lock m, while counter is also ordered with m held (prog.c:6)" in msg
    assert "deadlock" in msg


def test_a_region_enclosing_a_lock_never_held_around_its_object_is_planned(tmp_path):
    # t1 no longer holds m around counter: one order only (counter, then m), nothing to report
    _, plan = plan_for(tmp_path, LOCK_ORDER.replace("pthread_mutex_lock(&m); counter++; pthread_mutex_unlock(&m);",
                                                    "counter++;"))
    assert plan.errors == []
    assert [s.line for s in plan.sites if s.kind == "ordered"] == [6, 7]


def test_two_regions_each_enclosing_a_call_that_orders_the_other_are_one_object(tmp_path):
    """t1 holds a while get_b() orders b, t2 holds b while get_a() orders a: as two objects each
    thread could hold one and wait for the other. They are ordered as one (reentrant: get_b()'s region
    runs inside a's), and the instrumented program records and replays without waiting for itself."""
    runtime = ensure_runtime(loggers=True)
    src = ("#include <pthread.h>\n#include <stdio.h>\nstatic long a, b;\n"
           "static long get_a(void) { a++; return 1; }\nstatic long get_b(void) { b++; return 1; }\n"
           "static void *t1(void *x) { (void)x; for (int i = 0; i < 100; i++) a += get_b(); return 0; }\n"
           "static void *t2(void *x) { (void)x; for (int i = 0; i < 100; i++) b += get_a(); return 0; }\n"
           "int main(void) { pthread_t p, q; pthread_create(&p, 0, t1, 0); pthread_create(&q, 0, t2, 0);\n"
           "  pthread_join(p, 0); pthread_join(q, 0); printf(\"%ld\\n\", a + b); return 0; }\n")
    path, plan = plan_for(tmp_path, src)
    assert plan.errors == []
    ordered = [s for s in plan.sites if s.kind == "ordered"]
    assert sorted(s.line for s in ordered) == [4, 5, 6, 7]
    assert len({s.objs for s in ordered}) == 1 and {s.entry for s in ordered} == {"ftmb_ordered_reenter"}
    assert any("ordered as one object with" in s.reason for s in ordered), [s.reason for s in ordered]
    [rw] = apply_plan(plan)
    inst = tmp_path / "inst.c"
    inst.write_bytes(rw.text)
    assert int(record_and_replay(runtime, inst, tmp_path)) >= 400


def test_a_region_of_both_objects_and_the_reverse_through_a_call_are_one_object(tmp_path):
    """The loop condition `b < a` begins a, then b (ascending ids); elsewhere b's region encloses
    get_a(), which orders a: a thread in the condition holds a and waits for b while the other holds
    b and waits for a. Merged, not refused."""
    src = ("#include <pthread.h>\nstatic long a, b;\nstatic long get_a(void) { return a++; }\n"
           "static void *t1(void *x) { (void)x; for (int i = 0; i < 100; i++) { while (b < a) b++; } return 0; }\n"
           "static void *t2(void *x) { (void)x; for (int i = 0; i < 100; i++) b += get_a(); return 0; }\n"
           "int main(void) { pthread_t p, q; pthread_create(&p, 0, t1, 0); pthread_create(&q, 0, t2, 0);\n"
           "  pthread_join(p, 0); pthread_join(q, 0); return (int)(a + b); }\n")
    _, plan = plan_for(tmp_path, src)
    assert plan.errors == []
    assert len({s.objs for s in plan.sites if s.kind == "ordered"}) == 1

def test_commutative_reduction_only_behind_its_flag_and_listed(tmp_path):
    from ftmb_instrument.plan import PlanOptions

    src = ("#include <pthread.h>\nstatic unsigned long pkts;\n"
           "static void *w(void *a) { (void)a; for (int i = 0; i < 100; i++) pkts += 2; return 0; }\n"
           "int main(void) { pthread_t t[2]; for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, w, 0);\n"
           "  for (int i = 0; i < 2; i++) pthread_join(t[i], 0); return (int)pkts; }\n")
    path, plan = plan_for(tmp_path, src)
    assert [s.kind for s in plan.sites if s.kind == "ordered"] == ["ordered"] and plan.reductions == ()
    _, reduced = make_plan(from_files([path], ["-std=gnu11"]), load_semantics(), str(tmp_path),
                           PlanOptions(unordered_commutative=True), jobs=1)
    assert not [s for s in reduced.sites if s.kind == "ordered"]
    assert len(reduced.reductions) == 1 and reduced.reductions[0].startswith("unordered_commutative: pkts")


def test_conditions_next_to_project_calls_compile_and_run(tmp_path, runtime):
    src = """#include <pthread.h>
#include <stdio.h>
static int done;
static long seen;
static long work(void) { return ++seen; }
static void *w(void *a)
{
	(void)a;
	while (!done) {
		if (seen > 50 && work() > 0)
			done = 1;
		else
			work();
	}
	return NULL;
}
int main(void)
{
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, w, NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	printf("done=%d\\n", done);
	return 0;
}
"""
    path, plan = plan_for(tmp_path, src)
    assert plan.errors == []
    [rw] = apply_plan(plan)
    inst = tmp_path / "inst.c"
    inst.write_bytes(rw.text)
    assert "while (__extension__ ({ __auto_type _ftmb_v" in rw.text.decode()
    assert build_and_run(runtime, inst, tmp_path / "inst", True) == "done=1\n"


def test_a_lock_reached_through_a_pointer_shares_its_id_with_every_lock_of_its_type(tmp_path):
    src = """#include <pthread.h>
static pthread_mutex_t a = PTHREAD_MUTEX_INITIALIZER, b = PTHREAD_MUTEX_INITIALIZER;
static pthread_spinlock_t s;
static long n, m;
static void *w(void *arg)
{
	pthread_mutex_t *l = arg;
	pthread_mutex_lock(l);
	n++;
	pthread_mutex_unlock(l);
	pthread_mutex_lock(&a);
	n++;
	pthread_mutex_unlock(&a);
	pthread_spin_lock(&s);
	m++;
	pthread_spin_unlock(&s);
	return NULL;
}
int main(void)
{
	pthread_t t[2];
	pthread_spin_init(&s, 0);
	pthread_create(&t[0], NULL, w, &a);
	pthread_create(&t[1], NULL, w, &b);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	return (int)(n + m);
}
"""
    _, plan = plan_for(tmp_path, src)
    locks = {s.line: s.objs[0] for s in plan.sites if s.kind == "lock"}
    assert set(locks) == {8, 10, 11, 13, 14, 16}
    # the mutex taken through `l` may be a: every mutex call shares one id; the spinlock keeps its own
    assert locks[8] == locks[10] == locks[11] == locks[13]
    assert locks[14] == locks[16] != locks[8]


C90_STYLE = r"""#include <pthread.h>
#include <stdio.h>

static long hits;

static void *worker(void *arg)
{
	long i;
	for (i = 0; i < 1000; i++) {
		long seen = hits;
		long next = seen + (long)(arg != NULL);
		hits = next;
	}
	return NULL;
}

int main(void)
{
	pthread_t t[2];
	int i;
	for (i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, worker, &hits);
	for (i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	printf("%d\n", hits > 0);
	return 0;
}
"""


def test_declarations_stay_declarations_for_c90_builds(tmp_path, runtime):
    """HAProxy builds with -Wdeclaration-after-statement: a region around a declaration (`long seen =
    hits;`) and the init hook in main are declarations themselves, so a program that keeps its
    declarations first compiles without a warning once instrumented, and behaves the same."""
    path, plan = plan_for(tmp_path, C90_STYLE)
    assert plan.errors == []
    assert any(s.kind == "ordered" and s.line == 10 for s in plan.sites)
    [rw] = apply_plan(plan)
    out = tmp_path / "prog.ftmb.c"
    out.write_bytes(rw.text)
    for source in (path, out):
        res = subprocess.run(["gcc", *FLAGS, "-Wdeclaration-after-statement", "-I", str(runtime["include"]),
                              "-fsyntax-only", str(source)], capture_output=True, text=True)
        assert res.returncode == 0 and res.stderr == "", res.stderr
    assert build_and_run(runtime, out, tmp_path / "prog", True) == "1\n"


PER_PROCESS = r"""#include <poll.h>
#include <stdio.h>
#include <unistd.h>

struct mac { unsigned char b[6]; };
void get_mac(int port, struct mac *out) { for (int i = 0; i < 6; i++) out->b[i] = (unsigned char)(port + i); }

int main(void)
{
    struct mac m;
    get_mac(3, &m);
    int pid = getpid();
    struct pollfd fds[2] = {{.fd = 0}, {.fd = 1}};  /* an array for poll's out_arg (HAProxy's fd.c) */
    int ready = poll(fds, 2, 0);
    printf("%d %d %d %d\n", pid > 0, m.b[0], m.b[5], ready >= 0);
    return 0;
}
"""


def test_per_process_values_are_logged_through_ftmb_nondet_bytes(tmp_path, runtime):
    """getpid() (a result), a model's out_arg (the pointee) and poll()'s array of descriptors go
    through ftmb_nondet_bytes; the program compiles cleanly and behaves the same."""
    model = tmp_path / "mac.toml"
    model.write_text('[[nondeterminism]]\nnames = ["get_mac"]\nout_arg = 1\n')
    path = tmp_path / "prog.c"
    path.write_text(PER_PROCESS)
    sem = load_semantics([model])
    _, plan = make_plan(from_files([path], ["-std=gnu11"]), sem, str(tmp_path), jobs=1)
    nondet = [s for s in plan.sites if s.kind == "nondet"]
    assert {s.entry for s in nondet} == {"ftmb_nondet_bytes"} and len(nondet) == 3
    [rw] = apply_plan(plan)
    text = rw.text.decode()
    assert "ftmb_nondet_bytes((void *)_ftmb_o" in text and "sizeof *_ftmb_o" in text  # get_mac's pointee
    assert "ftmb_nondet_bytes(&_ftmb_v" in text  # getpid's result
    out = tmp_path / "prog.ftmb.c"
    out.write_bytes(rw.text)
    assert build_and_run(runtime, out, tmp_path / "prog", True) == "1 3 8 1\n"
