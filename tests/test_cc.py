"""`ftmb-cc` as a real compiler: single files, separate compile and link, several sources in one
command, a precomputed whole-program plan (FTMB_PLAN), launcher mode, pass-through of what is
not a compile, and a failing instrumentation that produces no object (bad input:
test_bad_input_cc.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FTMB_CC = ROOT / ".venv" / "bin" / "ftmb-cc"
FTMB = ROOT / ".venv" / "bin" / "ftmb-instrument"

pytestmark = pytest.mark.skipif(not FTMB_CC.exists(), reason="the ftmb-cc console script is not installed")

# Two units: the counter lives in a.c, the workers that race on it in b.c.
A_C = """#include <stdio.h>
long counter;
void run_workers(int n);
int main(void)
{
	run_workers(3);
	printf("counter=%ld\\n", counter);
	return 0;
}
"""
B_C = """#include <pthread.h>
extern long counter;
static void *work(void *arg)
{
	(void)arg;
	for (int i = 0; i < 10000; i++)
		counter++;
	return NULL;
}
void run_workers(int n)
{
	pthread_t t[8];
	for (int i = 0; i < n; i++)
		pthread_create(&t[i], NULL, work, NULL);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
}
"""
CFLAGS = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread"]


@pytest.fixture
def env(tmp_path_factory):
    return {**os.environ, "FTMB_RUNTIME_BUILD": str(tmp_path_factory.getbasetemp() / "cc-runtime"),
            "FTMB_MODE": "passthrough"}


@pytest.fixture
def src(tmp_path):
    (tmp_path / "a.c").write_text(A_C)
    (tmp_path / "b.c").write_text(B_C)
    return tmp_path


def cc(args, cwd, env, *, launcher=()):
    return subprocess.run([str(FTMB_CC), *launcher, *args], cwd=cwd, env=env, capture_output=True, text=True)


def symbols(binary: Path) -> str:
    return subprocess.run(["nm", str(binary)], capture_output=True, text=True, check=True).stdout


def test_whole_program_in_one_command(src, env):
    res = cc([*CFLAGS, "a.c", "b.c", "-o", "prog"], src, env)
    assert res.returncode == 0, res.stderr
    syms = symbols(src / "prog")
    assert " T ftmb_ordered_begin" in syms and " T ftmb_init" in syms and " T ftmb_pthread_create" in syms
    run = subprocess.run([str(src / "prog")], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("counter=")
    # the originals are untouched
    assert (src / "b.c").read_text() == B_C


def test_as_launcher_with_separate_compile_and_link(src, env):
    """A single-file program compiled with -c, then linked (as Makefiles do): it uses only library
    functions, so it is the whole program and is instrumented alone."""
    (src / "one.c").write_text(A_C.replace("void run_workers(int n);", B_C.replace("#include <pthread.h>", "")
                                           .replace("extern long counter;", "")))
    (src / "one.c").write_text("#include <pthread.h>\n" + (src / "one.c").read_text())
    res = cc([*CFLAGS, "-c", "one.c", "-o", "one.o"], src, env, launcher=("gcc",))
    assert res.returncode == 0, res.stderr
    assert "ftmb_ordered_begin" in symbols(src / "one.o")
    res = cc(["one.o", "-pthread", "-o", "prog"], src, env, launcher=("gcc",))
    assert res.returncode == 0, res.stderr
    assert " T ftmb_init" in symbols(src / "prog")  # the runtime is linked in


@pytest.mark.parametrize("unit, where, message", [
    ("a.c", "a.c:6", "uses run_workers, which this unit does not define"),  # b.c defines it
    ("b.c", "b.c:7", "uses counter, which this unit does not define"),  # a.c defines it
])
def test_one_unit_of_a_larger_program_without_a_plan_is_refused(src, env, unit, where, message):
    res = cc([*CFLAGS, "-c", unit], src, env)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith(f"ftmb-cc: error: {where}: {message}: it is part of a larger program"), lines[0]
    assert "ftmb-instrument instrument -p BUILD --plan ftmb_plan.json" in lines[0] and "FTMB_PLAN=" in lines[0]
    assert not (src / unit.replace(".c", ".o")).exists()
    # a unit that uses nothing of the others still is not the whole program without a main
    (src / "lib.c").write_text("long twice(long x) { return 2 * x; }\n")
    res = cc([*CFLAGS, "-c", "lib.c"], src, env)
    assert res.returncode == 1 and "lib.c: defines no main: it is part of a larger program" in res.stderr
    # the user knows better
    res = cc([*CFLAGS, "-c", "lib.c"], src, {**env, "FTMB_CC_SINGLE_UNIT": "1"})
    assert res.returncode == 0, res.stderr


def test_project_headers_name_project_symbols_wherever_they_are(src, env):
    """A header outside the source's directory (include/ next to src/) is still the project's: a
    function declared there and defined in another unit makes the unit part of a larger program."""
    (src / "include").mkdir()
    (src / "include" / "work.h").write_text("void run_workers(int n);\n")
    (src / "a.c").write_text(A_C.replace("void run_workers(int n);", '#include "work.h"'))
    res = cc([*CFLAGS, "-I", str(src / "include"), "-c", "a.c"], src, env)
    assert res.returncode == 1 and "a.c:6: uses run_workers, which this unit does not define" in res.stderr


def test_precomputed_plan_gives_each_unit_the_whole_program_view(src, env):
    db = [{"directory": str(src), "file": f, "arguments": ["gcc", *CFLAGS, "-c", f]} for f in ("a.c", "b.c")]
    (src / "compile_commands.json").write_text(json.dumps(db))
    made = subprocess.run([str(FTMB), "instrument", "-p", str(src), "--plan", str(src / "ftmb_plan.json")],
                          env=env, capture_output=True, text=True, cwd=src)
    assert made.returncode == 0, made.stderr
    plan = json.loads((src / "ftmb_plan.json").read_text())
    # the race on counter is only visible with both units: b.c gets an ordered region
    assert any(s["kind"] == "ordered" and s["file"] == "b.c" for s in plan["sites"])
    env = {**env, "FTMB_PLAN": str(src / "ftmb_plan.json")}
    for f in ("a.c", "b.c"):
        res = cc([*CFLAGS, "-c", f], src, env)
        assert res.returncode == 0, res.stderr
    assert "ftmb_ordered_begin" in symbols(src / "b.o")
    assert "ftmb_init" in symbols(src / "a.o")
    res = cc(["a.o", "b.o", "-pthread", "-o", "prog"], src, env)
    assert res.returncode == 0, res.stderr
    run = subprocess.run([str(src / "prog")], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.startswith("counter=")


def test_preprocessing_only_preprocesses_the_instrumented_copy(src, env):
    # a.c alone is one unit of a larger program: -E refuses it as -c does, never passing it on plainly
    res = cc(["-E", "a.c"], src, env)
    assert res.returncode == 1 and "uses run_workers" in res.stderr and res.stdout == ""
    res = cc(["-E", "a.c"], src, {**env, "FTMB_CC_SINGLE_UNIT": "1"})
    assert res.returncode == 0, res.stderr
    assert "if (ftmb_init() != 0) return 1;" in res.stdout and "counter" in res.stdout
    res = cc(["-M", "a.c"], src, env)  # dependencies only: the original's, passed through
    assert res.returncode == 0 and "a.c" in res.stdout


def test_a_site_that_cannot_be_instrumented_fails_the_compile(src, env):
    (src / "bad.c").write_text(
        "#include <pthread.h>\nstatic int n;\n#define RETRY(x) do { void *at = &&again; again: if ((x)++ < 5) goto *at; } while (0)\n"
        "static void *w(void *a) { (void)a; for (;;) { RETRY(n); } }\n"
        "int main(void) { pthread_t t[2]; for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, w, 0);\n"
        "  for (int i = 0; i < 2; i++) pthread_join(t[i], 0); return 0; }\n")
    res = cc([*CFLAGS, "-c", "bad.c", "-o", "bad.o"], src, env)
    assert res.returncode == 1
    assert "bad.c:4: error: access to n in macro RETRY, whose expansion has a label" in res.stderr, res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("ftmb-cc: error: ")
    assert not (src / "bad.o").exists()


def test_a_unit_that_does_not_parse_names_its_first_error(src, env):
    (src / "broken.c").write_text("int main(void)\n{\n\treturn 0\n}\n")
    res = cc([*CFLAGS, "-c", "broken.c", "-o", "broken.o"], src, env)
    assert res.returncode == 1
    assert re.search(r"broken\.c:3:\d+: error: expected ';' after return statement", res.stderr), res.stderr
    assert res.stderr.strip().splitlines()[-1] == "ftmb-cc: error: 1 translation unit(s) failed to parse; nothing was compiled"
    assert not (src / "broken.o").exists()


def test_diagnostics_name_the_original_file(src, env):
    (src / "warn.c").write_text("int main(void)\n{\n\tint unused;\n\treturn 0;\n}\n")
    res = cc(["-Wall", "-c", "warn.c"], src, env)
    assert res.returncode == 0
    assert "warn.c:3:" in res.stderr and "unused" in res.stderr


@pytest.mark.skipif(subprocess.run(["which", "cmake"], capture_output=True).returncode != 0, reason="no cmake")
@pytest.mark.parametrize("how", ["compiler", "launcher"])
def test_cmake_project(src, env, tmp_path, how):
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.13)\nproject(demo C)\nfind_package(Threads REQUIRED)\n"
        "add_executable(demo a.c b.c)\ntarget_link_libraries(demo Threads::Threads)\n")
    opts = ([f"-DCMAKE_C_COMPILER={FTMB_CC}"] if how == "compiler" else
            [f"-DCMAKE_C_COMPILER_LAUNCHER={FTMB_CC}", f"-DCMAKE_C_LINKER_LAUNCHER={FTMB_CC}"])
    build = tmp_path / "build"
    conf = subprocess.run(["cmake", "-S", str(src), "-B", str(build), "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON", *opts],
                          env=env, capture_output=True, text=True)
    assert conf.returncode == 0, conf.stdout + conf.stderr
    # CMake compiles one unit at a time: without the whole program's plan the first unit is refused
    res = subprocess.run(["cmake", "--build", str(build)], env=env, capture_output=True, text=True)
    assert res.returncode != 0 and "it is part of a larger program" in res.stdout + res.stderr
    plan = tmp_path / "ftmb_plan.json"
    made = subprocess.run([str(FTMB), "instrument", "-p", str(build), "--plan", str(plan)], env=env,
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    res = subprocess.run(["cmake", "--build", str(build)], env={**env, "FTMB_PLAN": str(plan)}, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    syms = symbols(build / "demo")
    assert " T ftmb_init" in syms and "ftmb_ordered_begin" in syms


def test_rewritten_project_headers_are_compiled_not_the_originals(src, env):
    inc = src / "include"
    inc.mkdir()
    (inc / "count.h").write_text("extern long counter;\nstatic inline void bump(void) { counter++; }\n")
    (src / "b.c").write_text(B_C.replace("extern long counter;", '#include "count.h"')
                             .replace("counter++;", "bump();"))
    res = cc([*CFLAGS, "-Iinclude", "a.c", "b.c", "-o", "prog"], src, env)
    assert res.returncode == 0, res.stderr
    # the race is inside the header's inline function: its rewritten copy was compiled
    disasm = subprocess.run(["objdump", "-d", str(src / "prog")], capture_output=True, text=True).stdout
    assert re.search(r"(call|jmp)\s+[0-9a-f]+ <ftmb_ordered_begin_slow>", disasm)  # the inline fast path's fallback
    assert (inc / "count.h").read_text().startswith("extern long counter;")


def test_a_unit_the_plan_does_not_know_is_refused(src, env):
    db = [{"directory": str(src), "file": "a.c", "arguments": ["gcc", *CFLAGS, "-c", "a.c"]}]
    (src / "compile_commands.json").write_text(json.dumps(db))
    made = subprocess.run([str(FTMB), "instrument", "-p", str(src), "--plan", str(src / "plan.json")],
                          env=env, capture_output=True, text=True, cwd=src)
    assert made.returncode == 0, made.stderr
    res = cc([*CFLAGS, "-c", "b.c"], src, {**env, "FTMB_PLAN": str(src / "plan.json")})
    assert res.returncode == 1
    assert "b.c: not one of the translation units of the plan" in res.stderr
    assert not (src / "b.o").exists()


DPDK_MAIN = """#include <stdio.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
int main(int argc, char **argv)
{
	if (rte_eal_init(argc, argv) < 0)
		return 1;
	FILE *f = fopen("/proc/self/maps", "r");
	int n = 0, c;
	while ((c = fgetc(f)) != EOF)
		n += c == '\\n';
	printf("ports %u mappings %d\\n", rte_eth_dev_count_avail(), n);
	return 0;
}
"""


@pytest.mark.parametrize("link", ["default", "shared"])
def test_dpdk_is_linked_statically_unless_asked_shared(tmp_path, env, link):
    """`ftmb-cc $(pkg-config --cflags --libs libdpdk)` links DPDK's static archives: no DPDK shared
    object is needed, EAL loads no driver plugins (the checkpoint's fork copies ~200 mappings, not
    ~1000), and the drivers are all there (net_null probes); FTMB_DPDK_LINK=shared keeps the link
    as written."""
    (tmp_path / "m.c").write_text(DPDK_MAIN)
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libdpdk"], capture_output=True, text=True,
                           check=True).stdout.split()
    env = {**env, **({"FTMB_DPDK_LINK": "shared"} if link == "shared" else {})}
    res = cc(["-O2", "m.c", *flags, "-o", "m"], tmp_path, env)
    assert res.returncode == 0, res.stderr
    dynamic = subprocess.run(["readelf", "-d", str(tmp_path / "m")], capture_output=True, text=True,
                             check=True).stdout
    assert ("librte_eal.so" in dynamic) == (link == "shared")
    run = subprocess.run([str(tmp_path / "m"), "--no-huge", "-m", "64", "--no-pci", "--no-shconf", "--vdev",
                          "net_null0", "-l", "0", "--log-level=1"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    m = re.search(r"ports (\d+) mappings (\d+)", run.stdout)
    assert m and m.group(1) == "1", run.stdout
    assert (int(m.group(2)) < 400) == (link == "default"), run.stdout


def test_another_dpdk_is_left_linked_as_written(tmp_path, env):
    """-lrte_* found in a -L directory that holds another DPDK is not swapped for the system's archives."""
    other = tmp_path / "otherdpdk"
    other.mkdir()
    libdir = subprocess.run(["pkg-config", "--variable=libdir", "libdpdk"], capture_output=True, text=True,
                            check=True).stdout.strip()
    (other / "librte_eal.so").symlink_to(Path(libdir) / "librte_eal.so")
    (tmp_path / "m.c").write_text(DPDK_MAIN)
    cflags = subprocess.run(["pkg-config", "--cflags", "libdpdk"], capture_output=True, text=True,
                            check=True).stdout.split()
    res = cc(["-O2", "m.c", *cflags, f"-L{other}", "-lrte_eal", "-lrte_ethdev", "-o", "m"], tmp_path, env)
    assert res.returncode == 0, res.stderr
    dynamic = subprocess.run(["readelf", "-d", str(tmp_path / "m")], capture_output=True, text=True,
                             check=True).stdout
    assert "librte_eal.so" in dynamic


def test_an_unknown_dpdk_link_is_refused(src, env):
    res = cc([*CFLAGS, "a.c", "b.c", "-o", "prog"], src, {**env, "FTMB_DPDK_LINK": "dynamic"})
    assert res.returncode == 1
    assert res.stderr.strip() == "ftmb-cc: error: FTMB_DPDK_LINK=dynamic: expected static or shared"
    assert not (src / "prog").exists()
