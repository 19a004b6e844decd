"""`ftmb-cc` on bad input and faults, run as the real console script: each is instrumented or
refused with one line and a nonzero exit, never compiled uninstrumented in silence, and nothing is
left behind (no traceback, no overlay path in a dependency file, no /tmp/ftmb-cc.* after a signal)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FTMB_CC = ROOT / ".venv" / "bin" / "ftmb-cc"

MAIN_C = """#include <stdio.h>
static long counter;
int main(void)
{
	counter++;
	printf("%ld\\n", counter);
	return 0;
}
"""


@pytest.fixture(scope="module")
def rt_dir(tmp_path_factory):
    return str(tmp_path_factory.getbasetemp() / "bad-cc-runtime")


@pytest.fixture
def work(tmp_path, rt_dir):
    (tmp_path / "m.c").write_text(MAIN_C)
    tmp = tmp_path / "tmpdir"  # ftmb-cc's temporary directories go here (TMPDIR)
    tmp.mkdir()
    env = {**os.environ, "FTMB_RUNTIME_BUILD": rt_dir, "FTMB_MODE": "passthrough", "TMPDIR": str(tmp)}
    env.pop("FTMB_PLAN", None)
    env.pop("FTMB_REAL_CC", None)
    return tmp_path, env


def cc(args, cwd, env, **kw):
    return subprocess.run([str(FTMB_CC), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, **kw)


def one_line_error(res, *needles: str) -> None:
    assert res.returncode != 0, res.stdout
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("ftmb-cc: error: "), res.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_preprocessing_only_shows_the_instrumented_source(work):
    d, env = work
    res = cc(["-E", "m.c"], d, env)
    assert res.returncode == 0, res.stderr
    assert "if (ftmb_init() != 0) return 1;" in res.stdout
    assert "FTMB_ABI_VERSION" not in res.stdout  # macros are expanded, as -E does
    # one unit of a larger program is refused under -E as under -c
    (d / "part.c").write_text("int helper(void);\nint use(void) { return helper(); }\n")
    one_line_error(cc(["-E", "part.c"], d, env), "part.c:2: uses helper")


def test_c_from_standard_input_is_instrumented(work):
    d, env = work
    # `-x c - -o p`: instrumented, and the runtime archives after it are linked, not compiled as C
    res = cc(["-x", "c", "-", "-o", "p"], d, env, input=MAIN_C)
    assert res.returncode == 0 and len(res.stderr) < 2000, res.stderr[-2000:]
    nm = subprocess.run(["nm", str(d / "p")], capture_output=True, text=True, check=True).stdout
    assert "ftmb_init" in nm
    assert subprocess.run([str(d / "p")], env=env, capture_output=True, text=True).stdout == "1\n"
    # a build system's compiler probe (HAProxy's Makefile tests each warning flag so): no main needed
    for flag, ok in (("-Wno-sign-compare", True), ("-Wsuch-warning-at-all", False)):
        res = cc(["-Werror", flag, "-E", "-xc", "-", "-o", "/dev/null"], d, env, input="")
        assert (res.returncode == 0) == ok, res.stderr
        assert "Traceback" not in res.stderr
    # compiled alone it must still be the whole program: one line naming <stdin>
    res = cc(["-xc", "-c", "-", "-o", "q.o"], d, env, input="int helper(void);\nint f(void) { return helper(); }\n")
    one_line_error(res, "<stdin>:2: uses helper")
    assert not (d / "q.o").exists()


def test_runtime_archives_after_x_c_are_linked_not_compiled(work):
    d, env = work
    (d / "prog.inc").write_text(MAIN_C)  # C by -x c only: refused, not compiled uninstrumented
    one_line_error(cc(["-x", "c", "prog.inc", "-o", "p"], d, env), "prog.inc", "name it .c")
    res = cc(["-x", "c", "m.c", "-o", "p"], d, env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(res.stderr) < 2000
    nm = subprocess.run(["nm", str(d / "p")], capture_output=True, text=True, check=True).stdout
    assert "ftmb_init" in nm and "ftmb_register_file" in nm
    assert subprocess.run([str(d / "p")], env=env, capture_output=True, text=True).stdout == "1\n"


@pytest.mark.parametrize("flags, dep", [(["-MMD", "-c", "m.c", "-o", "out.o"], "out.d"),
                                        (["-MD", "-MF", "deps/m.dep", "-c", "m.c"], "deps/m.dep"),
                                        (["-MMD", "m.c", "-o", "prog"], "prog.d")])
def test_dependency_files_name_the_users_sources(work, flags, dep):
    d, env = work
    (d / "deps").mkdir()
    env = {**env, "FTMB_CC_SINGLE_UNIT": "1"}
    res = cc(flags, d, env)
    assert res.returncode == 0, res.stderr
    text = (d / dep).read_text()
    assert f"{d}/m.c" in text or " m.c" in text, text
    assert "ftmb-cc." not in text and "overlay" not in text, text
    for word in text.replace("\\\n", " ").split()[1:]:
        assert Path(d, word).exists(), f"{dep} names {word}, which does not exist"


def test_missing_real_compiler_is_one_line(work):
    d, env = work
    one_line_error(cc(["m.c", "-o", "p"], d, {**env, "FTMB_REAL_CC": "/nonexistent/cc"}), "/nonexistent/cc",
                   "no such compiler")
    assert not (d / "p").exists()


@pytest.mark.parametrize("content, needle", [(b"\xff\xfe{", "not JSON"), (b"{not json", "not JSON"),
                                             (b"[1, 2]", "not an ftmb-plan"), (None, "cannot read plan")])
def test_bad_plan_is_one_line(work, content, needle):
    d, env = work
    plan = d / "plan.json"
    if content is not None:
        plan.write_bytes(content)
    one_line_error(cc(["-c", "m.c"], d, {**env, "FTMB_PLAN": str(plan)}), str(plan), needle)
    assert not (d / "m.o").exists()


@pytest.mark.parametrize("where", ["file/rt", "/proc/ftmb-cc-test"])
def test_unusable_runtime_build_directory_is_one_line(work, where):
    d, env = work
    (d / "file").write_text("a file, not a directory\n")
    path = where if where.startswith("/") else str(d / where)
    one_line_error(cc(["m.c", "-o", "p"], d, {**env, "FTMB_RUNTIME_BUILD": path}), path)
    assert not (d / "p").exists()


SLOW_CC = """#!{python}
import os, sys, time
open(os.environ["SLOW_CC_PIDFILE"], "w").write(str(os.getpid()))
time.sleep(60)
os.execvp("gcc", ["gcc", *sys.argv[1:]])
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stop_signal_leaves_no_temporary_directory_and_no_compiler(work, signum):
    d, env = work
    slow = d / "slowcc"
    slow.write_text(SLOW_CC.format(python=sys.executable))
    slow.chmod(0o755)
    pidfile = d / "slowcc.pid"
    env = {**env, "FTMB_REAL_CC": str(slow), "SLOW_CC_PIDFILE": str(pidfile)}
    proc = subprocess.Popen([str(FTMB_CC), "m.c", "-o", "p"], cwd=d, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not pidfile.exists() or not pidfile.read_text():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the compiler never started"
            time.sleep(0.1)
        tmpdir = Path(env["TMPDIR"])
        assert [p.name for p in tmpdir.iterdir() if p.name.startswith("ftmb-cc.")], "no overlay while compiling"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signum, err
    assert "Traceback" not in err, err
    assert not [p.name for p in tmpdir.iterdir() if p.name.startswith("ftmb-cc.")]
    compiler = int(pidfile.read_text())
    for _ in range(100):
        try:
            os.kill(compiler, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(compiler, signal.SIGKILL)
        pytest.fail("the compiler ftmb-cc ran outlived it")
