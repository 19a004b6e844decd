"""Inputs that used to be silently wrong, run away or mislead (issue 14): a model entry whose argument
index does not fit, a report with duplicate ids, a trace request that cannot be met, a compilation
database with a relative directory that does not exist, a symlink loop or a directory as a C file.
Each is one line naming the file and value, a nonzero exit, no traceback."""

from __future__ import annotations

import json

from bad_input_util import THREADED, cli, refused, snapshot

SPAWN = """#include <pthread.h>
int counter;
static void *worker(void *arg) { counter++; return arg; }
int start_worker(void *(*fn)(void *), void *arg) { pthread_t t; return pthread_create(&t, 0, fn, arg); }
int main(void) { start_worker(worker, 0); counter++; return counter; }
"""


def test_a_model_argument_index_out_of_range_is_refused(tmp_path):
    src = tmp_path / "spawner.c"
    src.write_text(SPAWN)
    model = tmp_path / "mine.toml"
    model.write_text('[[spawn]]\nnames = ["start_worker"]\nfunction_arg = 42\n')
    refused(cli("analyze", src, "--model", model, "--"), f"{model}: [[spawn]] #1", "'function_arg'", "42")
    model.write_text('[[spawn]]\nnames = ["start_worker"]\nfunction_arg = "fn"\n')
    refused(cli("analyze", src, "--model", model, "--"), f"{model}: [[spawn]] #1", "'function_arg' must be int")
    # in range for a model, but not for this function: named at the call
    model.write_text('[[lock]]\nnames = ["x"]\n\n[[spawn]]\nnames = ["start_worker"]\nfunction_arg = 5\n')
    refused(cli("analyze", src, "--model", model, "--"), f"{model}: [[spawn]] #1", "function_arg = 5",
            "start_worker", "spawner.c:5", "passes 2 argument(s)")
    model.write_text('[[spawn]]\nnames = ["start_worker"]\nfunction_arg = 0\narg_arg = 1\n')
    proc = cli("analyze", src, "--model", model, "--")
    assert proc.returncode == 0 and "worker" in proc.stdout and "shared_rw" in proc.stdout, proc.stdout


def report(tmp_path):
    src = tmp_path / "prog.c"
    src.write_text(THREADED)
    out = tmp_path / "r.json"
    proc = cli("analyze", src, "-f", "json", "-o", out, "--")
    assert proc.returncode == 0, proc.stderr
    return out


def test_diff_refuses_duplicate_ids(tmp_path):
    good = report(tmp_path)
    data = json.loads(good.read_text())
    var = data["variables"][0]
    data["variables"].append(dict(var, name=var["name"] + "_copy"))
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps(data))
    refused(cli("diff", good, dup), f"{dup}: variables[{len(data['variables']) - 1}]", var["id"], "unique")
    refused(cli("diff", dup, good), f"{dup}:", var["id"])
    assert cli("diff", good, good).returncode == 0


def test_traffic_checks_flows_and_packets_before_building_anything(tmp_path):
    out = tmp_path / "t.pcap"
    proc = cli("traffic", out, "--flows", "100000000", "--packets", "10", timeout=120)
    refused(proc, "packets=10", "flows=100000000")
    proc = cli("traffic", out, "--flows", "3000000", "--packets", "30000000", "--clients", "10.0.0.0/30",
               "--server", "198.51.100.10", timeout=120)
    refused(proc, "flows=3000000", "10.0.0.0/30")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_relative_database_directory_that_does_not_exist_is_named(tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    (tmp_path / "prog.c").write_text(THREADED)
    db = build / "compile_commands.json"
    db.write_text(json.dumps([{"directory": "no-such-dir", "file": "prog.c", "arguments": ["cc", "-c", "prog.c"]}]))
    err = refused(cli("analyze", "-p", build), str(db), "entry 1", "'no-such-dir' does not exist")
    assert "--project-root" not in err
    # relative to the database's own directory, as clang resolves it
    db.write_text(json.dumps([{"directory": "..", "file": "prog.c", "arguments": ["cc", "-c", "prog.c"]}]))
    proc = cli("analyze", "-p", build)
    assert proc.returncode == 0 and "counter" in proc.stdout, proc.stderr
    db.write_text(json.dumps([{"directory": "..", "file": "prog.c", "arguments": "cc -c prog.c"}]))
    refused(cli("analyze", "-p", build), str(db), "entry 1", "'arguments' must be a list of strings")
    db.write_bytes(b'[{"directory": "\xff"}]')
    refused(cli("analyze", "-p", build), str(db), "not UTF-8")


def test_a_symlink_loop_or_a_directory_is_not_no_such_file(tmp_path):
    (tmp_path / "loop.c").symlink_to(tmp_path / "loop2.c")
    (tmp_path / "loop2.c").symlink_to(tmp_path / "loop.c")
    (tmp_path / "dir.c").mkdir()
    before = snapshot(tmp_path)
    err = refused(cli("analyze", tmp_path / "loop.c", "--"), "loop.c: cannot read: Too many levels of symbolic links")
    assert "no such file" not in err
    err = refused(cli("instrument", tmp_path / "dir.c", "--"), "dir.c: is a directory")
    assert "no such file" not in err
    refused(cli("analyze", tmp_path / "missing.c", "--"), "missing.c: no such file")
    assert snapshot(tmp_path) == before
