"""External inputs: a scalar only signal handlers write (a stop flag) is planned as `external`.
Its reads become ftmb_external_read (the value is logged per thread, replay takes it from the log),
the handlers' accesses are left alone with their reason, and anything the rewrite cannot express
keeps the ordered strategy. The instrumented program compiles without warnings, and a recorded run
stopped by a real signal replays to the same result with no signal at all."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from session_util import end_session

from ftmb_instrument.frontend import from_files
from ftmb_instrument.plan import EXTERNAL_WRITE, Plan, is_external_type
from ftmb_instrument.rewrite import apply_plan
from ftmb_instrument.rewrite.pipeline import make_plan
from ftmb_instrument.semantics import load_semantics

RUNTIME = Path(__file__).resolve().parents[1] / "runtime"
BUILD = RUNTIME / "build"
FLAGS = ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2", "-pthread"]
TIMEOUT = 60

# Every context an rvalue of the flag appears in: a loop condition under `!`, a declaration's
# initializer, a call argument next to a project call, an `if` condition, an operand of `+`.
PROGRAM = r"""#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#define NT 2

static volatile sig_atomic_t stop;
static volatile _Bool seen_stop;

static void on_signal(int sig)
{
	(void)sig;
	if (!stop)
		stop = 1;
	seen_stop = 1;
}

static long weigh(long v)
{
	return v + 1;
}

static void *worker(void *arg)
{
	long n = 0, sum = 0;
	(void)arg;
	while (!stop) {
		int now = stop;
		sum += weigh(stop) + now;
		if (stop)
			break;
		n++;
		usleep(200);
	}
	return (void *)(n * 1000000 + sum + 10 * seen_stop);
}

int main(void)
{
	pthread_t t[NT];
	signal(SIGUSR1, on_signal);
	for (long i = 0; i < NT; i++)
		pthread_create(&t[i], NULL, worker, (void *)i);
	printf("started\n");
	fflush(stdout);
	for (int i = 0; i < NT; i++) {
		void *r;
		pthread_join(t[i], &r);
		printf("thread %d: %ld\n", i, (long)r);
	}
	return 0;
}
"""


@pytest.fixture(scope="module")
def runtime():
    subprocess.run(["make", "-s", "-C", str(RUNTIME), "-j2", "all"], check=True, capture_output=True, timeout=600)
    return {"include": RUNTIME / "include", "core": BUILD / "libftmb.a", "build": BUILD}


def plan_for(tmp: Path, source: str) -> tuple[Path, Plan]:
    path = tmp / "prog.c"
    path.write_text(source)
    _, plan = make_plan(from_files([path], ["-std=gnu11"]), load_semantics(), str(tmp), jobs=1)
    return path, plan


def strategy(plan: Plan, name: str) -> str:
    [obj] = [o for o in plan.objects if o.name == name]
    return obj.strategy


def lines_of(plan: Plan, kind: str) -> list[int]:
    return sorted(s.line for s in plan.sites if s.kind == kind)


def line_no(source: str, needle: str) -> int:
    return next(i for i, ln in enumerate(source.splitlines(), 1) if needle in ln)


@pytest.mark.parametrize("ctype, external", [
    ("volatile _Bool", True), ("volatile sig_atomic_t", True), ("const volatile unsigned long", True),
    ("uint8_t", True), ("enum state", True), ("long long", True), ("double", True),
    ("long double", False), ("volatile int *", False), ("int [4]", False), ("struct flags", False),
    ("_Atomic(int)", False), ("my_flag_t", False), ("", False),
])
def test_external_types_are_scalars_of_one_load(ctype, external):
    assert is_external_type(ctype) is external


def test_a_flag_only_a_signal_handler_writes_is_an_external_input(tmp_path):
    path, plan = plan_for(tmp_path, PROGRAM)
    assert plan.errors == []
    assert strategy(plan, "stop") == "external" and strategy(plan, "seen_stop") == "external"
    reads = [line_no(PROGRAM, s) for s in ("while (!stop)", "int now = stop", "weigh(stop)", "if (stop)")]
    reads.append(line_no(PROGRAM, "10 * seen_stop"))
    assert lines_of(plan, "external") == sorted(reads)
    assert lines_of(plan, "ordered") == []  # nothing waits on another thread for the flags
    text = path.read_bytes()
    for s in plan.sites:
        if s.kind == "external":
            name = text[s.start:s.end].decode()
            assert s.entry == "ftmb_external_read" and name in ("stop", "seen_stop")
            [edit] = s.edits
            assert edit.text == (f"(*(__typeof__({name}) const volatile *)"
                                 f"ftmb_external_read(&({name}), sizeof({name})))")
    # the handler's writes (and its own read) are not instrumented, each with its reason
    handler = {s.where: s.reason for s in plan.skipped if s.what.startswith(("stop @", "seen_stop @"))}
    assert handler == {
        f"prog.c:{line_no(PROGRAM, 'if (!stop)')}:7": "read by a signal handler, which no replay runs",
        f"prog.c:{line_no(PROGRAM, 'stop = 1;')}:3": EXTERNAL_WRITE,
        f"prog.c:{line_no(PROGRAM, 'seen_stop = 1;')}:2": EXTERNAL_WRITE,
    }


FALLBACKS = {
    "a worker writes it too": [("\t\tn++;\n", "\t\tn++;\n\t\tif (n > 100000)\n\t\t\tstop = 1;\n")],
    "read inside a macro": [("static volatile sig_atomic_t stop;",
                             "static volatile sig_atomic_t stop;\n#define STOPPED() (stop != 0)"),
                            ("\tif (stop)\n\t\t\tbreak;", "\tif (STOPPED())\n\t\t\tbreak;")],
    "read through its address": [("static volatile sig_atomic_t stop;", "static volatile sig_atomic_t stop;\n"
                                  "static const volatile sig_atomic_t *stop_at(void) { return &stop; }"),
                                 ("int now = stop;", "int now = *stop_at();")],
}


@pytest.mark.parametrize("why", FALLBACKS)
def test_reads_the_rewrite_cannot_express_keep_the_flag_ordered(tmp_path, why):
    source = PROGRAM
    for old, new in FALLBACKS[why]:
        assert old in source
        source = source.replace(old, new)
    _, plan = plan_for(tmp_path, source)
    assert plan.errors == []
    assert strategy(plan, "stop") == "ordered"
    assert strategy(plan, "seen_stop") == "external"  # decided per variable
    assert lines_of(plan, "external") == [line_no(source, "10 * seen_stop")]
    assert not [s for s in plan.skipped if s.reason == EXTERNAL_WRITE and s.what.startswith("stop @")]


def build(rt, source: Path, out: Path) -> Path:
    cmd = ["gcc", *FLAGS, "-I", str(rt["include"]), str(source), str(rt["core"]), "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return out


def run_until_signalled(cmd: list[str], env: dict[str, str]) -> str:
    """Run the program, send it SIGUSR1 once its workers have looped a while; its stdout after "started"."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "started\n"
        time.sleep(0.1)
        proc.send_signal(signal.SIGUSR1)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return out


def test_recorded_stop_replays_from_the_log_without_a_signal(tmp_path, runtime):
    path, plan = plan_for(tmp_path, PROGRAM)
    [rw] = apply_plan(plan)
    inst = tmp_path / "inst.c"
    inst.write_bytes(rw.text)
    prog = build(runtime, inst, tmp_path / "inst")
    orig = build(runtime, path, tmp_path / "orig")
    # passthrough: the same program as the original
    for exe, mode in ((orig, None), (prog, "passthrough")):
        env = {**os.environ, "FTMB_MODE": mode} if mode else dict(os.environ)
        out = run_until_signalled([str(exe)], env)
        assert out.count("thread ") == 2

    # record, with real loggers; the output logger writes the log when the program exits
    session = f"ext-{uuid.uuid4().hex[:12]}"
    log = tmp_path / "ftmb.log"
    pcap = tmp_path / "in.pcap"
    pcap.write_bytes(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))  # no packets
    ol = subprocess.Popen([runtime["build"] / "ftmb-output-logger", "--session", session,
                           "--out", tmp_path / "out.pcap", "--threads", "4", "--log", log],
                          stderr=subprocess.PIPE, text=True)
    il = subprocess.Popen([runtime["build"] / "ftmb-input-logger", "--session", session,
                           "--in", pcap, "--queues", "1"], stderr=subprocess.PIPE, text=True)
    try:
        recorded = run_until_signalled([str(prog)], {**os.environ, "FTMB_MODE": "record", "FTMB_SESSION": session,
                                                    "FTMB_PEER_TIMEOUT_MS": "10000"})
        _, ol_err = ol.communicate(timeout=TIMEOUT)
        il.communicate(timeout=TIMEOUT)
    finally:
        end_session([ol, il], session)
    assert ol.returncode == 0, ol_err
    counts = [int(ln.split(": ")[1]) for ln in recorded.splitlines()]
    assert len(counts) == 2 and all(c >= 1000000 for c in counts)  # every worker looped, then stopped

    # replay: no signal comes, the flag in memory stays 0; the logged reads stop the workers
    env = {k: v for k, v in os.environ.items() if k != "FTMB_SESSION"}
    env.update(FTMB_MODE="replay", FTMB_REPLAY_LOG=str(log))
    res = subprocess.run(["timeout", str(TIMEOUT), str(prog)], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "started\n" + recorded
